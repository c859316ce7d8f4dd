"""Attack: misbehave in EAP-MSCHAPv2 at an ``espfast up`` gateway (RFC 7296 §2.16).

From a, unauthenticated road warriors (tests/security/eapprobe.py, over UDP) send
malformed or out-of-order EAP, skip EAP, try a wrong password and an unknown user, and
stall the conversation. The gateway refuses each cleanly (an error notify, the half-open
IKE SA gone), answers a wrong password and an unknown user alike, never logs a
password, keeps stalled conversations within its half-open limit and drops them when
the half-open timeout ends; then an honest client gets in."""

from __future__ import annotations

import sys
from pathlib import Path

from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in, write_private

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "netns"))
from eapconf import PASSWORD, confs
from eapprobe import half_open, probe
from updaemon import peek

HALF_OPEN_LIMIT = 3
MALFORMED = ("truncated", "length", "wrong-id", "nak", "huge-identity", "bad-mschap",
             "early-success", "skip-eap")  # fmt: skip


def test_eap_misbehaviour_is_refused_and_bounded(tmp_path: Path) -> None:
    gw_conf, rw_conf = confs(tmp_path, PASSWORD)
    gw_text = gw_conf.read_text().replace(
        "[interface]\n",
        f"[interface]\nhalf_open_limit = {HALF_OPEN_LIMIT}\ncookie_threshold = 100\n",
    )
    write_private(gw_conf, gw_text)
    rw_text = rw_conf.read_text()
    wrong_pw = write_private(tmp_path / "wrong.pw", "a wrong password\n")
    wrong = write_private(tmp_path / "wrong.toml", rw_text.replace(
        f"{tmp_path}/carol.pw", str(wrong_pw)))  # fmt: skip
    unknown = write_private(tmp_path / "unknown.toml", rw_text.replace(
        'eap_id = "carol"', 'eap_id = "mallory"'))  # fmt: skip
    sources = [f"198.18.0.{n}" for n in range(100, 120)]
    with TwoHosts.create("seap") as hosts:
        for src in sources:
            hosts.a.run("ip", "addr", "add", f"{src}/32", "dev", "veth-a")
        gw = start_in(hosts.b, gw_conf, "-v", command="up")
        try:
            tgt = hosts.addr_b
            bad_pw = probe(hosts.a, "honest", wrong, tgt, sources[10])
            no_user = probe(hosts.a, "honest", unknown, tgt, sources[11])
            log_pw = peek(gw)
            results = {m: probe(hosts.a, m, rw_conf, tgt, src)
                       for m, src in zip(MALFORMED, sources, strict=False)}  # fmt: skip
            left_after_malformed = half_open(hosts.b)
            stalls = [probe(hosts.a, "stall", rw_conf, tgt, s, 4.0) for s in sources[12:17]]
            held = half_open(hosts.b)
            # The half-open timeout (30 s) ends every stalled conversation.
            expired = wait_for(lambda: half_open(hosts.b) == 0, timeout=45)
            honest = probe(hosts.a, "honest", rw_conf, tgt, sources[17])
        finally:
            rc, _, err = gw.stop()
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    for mode, r in results.items():
        assert r["outcome"] == "refused", (mode, r)
        last = r["responses"][-1]
        assert last in (["N(AUTHENTICATION_FAILED)"], ["N(INVALID_SYNTAX)"]), (mode, r)
    assert left_after_malformed == 0
    # A wrong password and an unknown user: the same answers, the same refusal.
    assert bad_pw["outcome"] == no_user["outcome"] == "refused", (bad_pw, no_user)
    assert bad_pw["responses"] == no_user["responses"], (bad_pw, no_user)
    # draft-kamath §2: an MS-CHAPv2 Failure request first (an EAP payload, 48), then,
    # to the client's Failure response, AUTHENTICATION_FAILED with EAP-Failure.
    assert bad_pw["responses"][-2:] == [["48"], ["N(AUTHENTICATION_FAILED)", "48"]], bad_pw
    assert "a wrong password" not in err and PASSWORD not in err
    # One line each, naming the user (and nothing about which part failed).
    assert [x for x in log_pw.splitlines() if "'carol'" in x or "'mallory'" in x] == [
        x for x in log_pw.splitlines() if "EAP-MSCHAPv2 authentication of" in x
    ]
    assert sum("authentication of 'carol' failed" in x for x in log_pw.splitlines()) == 1
    assert sum("authentication of 'mallory' failed" in x for x in log_pw.splitlines()) == 1
    # Stalled conversations hold at most the half-open limit, and only until it expires.
    outcomes = [s["outcome"] for s in stalls]
    assert outcomes.count("stalled") == HALF_OPEN_LIMIT, outcomes
    assert held == HALF_OPEN_LIMIT
    assert expired
    assert honest["outcome"] == "established", honest
