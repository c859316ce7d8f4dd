"""Attack: misbehave in EAP-TLS at an ``espfast up`` gateway (RFC 5216/9190 in IKEv2).

From a, unauthenticated road warriors (tests/security/eaptlsprobe.py, over UDP) announce
an oversize TLS message, send fragments without end, garbage TLS records and a second
ClientHello in place of their certificate; one presents carol's valid certificate under
dave's EAP identity. The gateway refuses each with AUTHENTICATION_FAILED within its
round limit, logs one line for each, counts each as a protocol error (and none as an
unexpected one), holds stalled handshakes only within its half-open limit and only
until the half-open timeout; then an honest client gets in."""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

from espfast.control.eap.tls import MAX_ROUNDS
from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "netns"))
import eapprobe
from eapprobe import half_open
from eaptlsconf import CAROL, DAVE, client_toml, gateway_toml, make_tls_pki
from updaemon import counters, peek

probe = partial(eapprobe.probe, script=str(Path(__file__).parent / "eaptlsprobe.py"))
HALF_OPEN_LIMIT = 3
ATTACKS = ("oversize", "fragments", "garbage", "restart")


def test_eap_tls_misbehaviour_is_refused_and_bounded(tmp_path: Path) -> None:
    pki = make_tls_pki(tmp_path / "pki")
    sources = [f"198.18.0.{n}" for n in range(100, 120)]
    with TwoHosts.create("et") as hosts:
        for src in sources:
            hosts.a.run("ip", "addr", "add", f"{src}/32", "dev", "veth-a")
        limits = f"half_open_limit = {HALF_OPEN_LIMIT}\ncookie_threshold = 100\n"
        gw_conf = gateway_toml(tmp_path, pki, listen=hosts.addr_b, extra=limits)
        tgt = hosts.addr_b
        rw = client_toml(tmp_path, pki, gateway=tgt, listen=sources[0])
        misnamed = client_toml(tmp_path, pki, gateway=tgt, listen=sources[0], eap_id=DAVE)
        gw = start_in(hosts.b, gw_conf, "-v", command="up")
        try:
            results = {m: probe(hosts.a, m, rw, tgt, src)
                       for m, src in zip(ATTACKS, sources, strict=False)}  # fmt: skip
            results["misnamed"] = probe(hosts.a, "honest", misnamed, tgt, sources[8])
            left_after_attacks = half_open(hosts.b)
            log_attacks = peek(gw)
            stalls = [probe(hosts.a, "stall", rw, tgt, s, 4.0) for s in sources[10:15]]
            held = half_open(hosts.b)
            # The half-open timeout (30 s) ends every stalled handshake.
            expired = wait_for(lambda: half_open(hosts.b) == 0, timeout=45)
            honest = probe(hosts.a, "honest", rw, tgt, sources[17])
        finally:
            rc, out, err = gw.stop()
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    for mode, r in results.items():
        assert r["outcome"] == "refused", (mode, r)
        assert r["responses"][-1] == ["N(AUTHENTICATION_FAILED)"], (mode, r)
    # Endless fragments end at the round limit (MAX_ROUNDS requests), before the probe's.
    assert len(results["fragments"]["responses"]) <= MAX_ROUNDS + 1, results["fragments"]
    assert left_after_attacks == 0
    # One line per refusal, naming the EAP identity and why.
    lines = [x for x in log_attacks.splitlines() if "EAP-TLS authentication of" in x]
    assert len(lines) == len(ATTACKS) + 1, lines
    assert sum(f"'{CAROL}' failed" in x for x in lines) == len(ATTACKS), lines
    (misnamed_line,) = [x for x in lines if f"'{DAVE}'" in x]
    assert "does not match" in misnamed_line, misnamed_line
    assert any("exceed" in x or "length" in x for x in lines), lines
    assert any("rounds" in x for x in lines), lines
    # Counted: each refusal a protocol error; none of them unanticipated.
    ends = counters(out)
    assert ends["ike_protocol_errors"] >= len(ATTACKS) + 1, ends
    assert ends["ike_unexpected_errors"] == 0 and ends["input_errors"] == 0, ends
    # Stalled handshakes hold at most the half-open limit, and only until it expires.
    outcomes = [s["outcome"] for s in stalls]
    assert outcomes.count("stalled") == HALF_OPEN_LIMIT, outcomes
    assert held == HALF_OPEN_LIMIT
    assert expired
    assert honest["outcome"] == "established", honest
    assert f"EAP-TLS authenticated '{CAROL}'" in err
