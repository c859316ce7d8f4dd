"""Bad and abundant input at a running ``espfast up`` (the daemon with its real sockets):
garbage IKE datagrams on UDP 500 and 4500 are counted and dropped, a flood of
IKE_SA_INIT from many addresses is answered with COOKIEs past the half-open threshold,
and a legitimate initiator still gets its tunnel afterwards in both cases."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in, write_private
from espfast.up import pair_configs
from tests.netns.uplog import run_pair

PSK = "a pre-shared key long enough for the bad-input test"
PROBE = str(Path(__file__).with_name("ikeprobe.py"))
COOKIE_THRESHOLD = 5  # half-open IKE SAs before COOKIEs ([interface] cookie_threshold)


def counter(out: str, name: str) -> int:
    """A counter from the ``espfast up: name N, ...`` line printed at exit."""
    found = re.search(rf"\b{name} (\d+)", out)
    assert found, out
    return int(found[1])


def tunnel_comes_up(hosts: TwoHosts) -> bool:
    return wait_for(
        lambda: hosts.a.run("ping", "-c", "1", "-W", "1", "198.19.2.1", check=False)
        .returncode == 0,
        timeout=15,
    )  # fmt: skip


def test_garbage_datagrams_are_counted_and_the_tunnel_still_comes_up(tmp_path: Path) -> None:
    a_conf, b_conf = pair_configs(PSK)
    a_path = write_private(tmp_path / "a.toml", a_conf)
    with TwoHosts.create("i3") as hosts:
        b = start_in(hosts.b, write_private(tmp_path / "b.toml", b_conf), command="up")
        probe = hosts.a.run(sys.executable, PROBE, "garbage", str(a_path), hosts.addr_b)
        sent = json.loads(probe.stdout)["sent"]
        a = start_in(hosts.a, a_path, command="up")
        up = tunnel_comes_up(hosts)
        status_a, out_a, err_a = a.stop()
        status_b, out_b, err_b = b.stop()
    assert up, err_a + err_b
    assert (status_a, status_b) == (0, 0), err_a + err_b
    assert counter(out_b, "malformed") == sent, out_b
    assert counter(out_b, "ike sas up") == 1 and counter(out_b, "child sas installed") == 1
    assert counter(out_a, "ike sas up") == 1


def test_flood_from_many_addresses_gets_cookies_and_a_real_peer_gets_through(
    tmp_path: Path,
) -> None:
    a_conf, b_conf = pair_configs(PSK)
    b_conf = b_conf.replace(
        "[interface]\n", f"[interface]\ncookie_threshold = {COOKIE_THRESHOLD}\n"
    )
    a_path = write_private(tmp_path / "a.toml", a_conf)
    sources = [f"198.18.0.{n}" for n in range(100, 140)]
    with TwoHosts.create("i3") as hosts:
        for src in sources:
            hosts.a.run("ip", "addr", "add", f"{src}/32", "dev", "veth-a")
        b = start_in(hosts.b, write_private(tmp_path / "b.toml", b_conf), command="up")
        probe = hosts.a.run(sys.executable, PROBE, "flood", str(a_path), hosts.addr_b, *sources)
        answers = json.loads(probe.stdout)
        a = start_in(hosts.a, a_path, "-vv", command="up")
        up = tunnel_comes_up(hosts)
        status_a, out_a, err_a = a.stop()
        status_b, out_b, err_b = b.stop()
    assert up, err_a + err_b
    assert (status_a, status_b) == (0, 0), err_a + err_b
    # The first requests got real answers (state on the responder), every one past the
    # threshold only a COOKIE (no state), in the order they were sent.
    kinds = [answers[src] for src in sources]
    assert kinds == ["init"] * COOKIE_THRESHOLD + ["cookie"] * (len(sources) - COOKIE_THRESHOLD), (
        kinds
    )
    assert counter(out_b, "ike sas up") == 1 and counter(out_a, "ike sas up") == 1
    # The flood's half-open SAs still count: our initiator was asked for a COOKIE too,
    # and came back with it.
    assert re.search(r"IKE_SA_INIT 0 response \{ N\(COOKIE\) \}", err_a), err_a


def test_peer_certificate_from_an_untrusted_ca_fails_clearly_on_both_sides(
    tmp_path: Path,
) -> None:
    """b trusts another CA than the one that issued a's certificate: no tunnel, and each
    side's log says why in one line (b: the chain; a: AUTHENTICATION_FAILED)."""
    from espfast.cli import main

    pki = tmp_path / "pki"
    for ca in ("ca", "other"):
        assert main(["pki", "ca", "--out", str(pki / ca), "--dn", f"O=espfast, CN={ca}"]) == 0
    for name, addr in (("a", "198.18.0.1"), ("b", "198.18.0.2")):
        assert main(["pki", "issue", "--ca", str(pki / "ca"), "--id", addr, "--name", name,
                     "--out", str(pki / "ca")]) == 0  # fmt: skip
    texts = []
    for me, text, trusted in zip("ab", pair_configs(PSK), ("ca", "other"), strict=True):
        texts.append(text.replace(f'psk = "{PSK}"', (
            f'auth = "pubkey"\ncert = "{pki}/ca/{me}.crt"\nkey = "{pki}/ca/{me}.key"\n'
            f'cacerts = ["{pki}/{trusted}/ca.crt"]'
        )))  # fmt: skip
    with TwoHosts.create("i3") as hosts:
        run = run_pair(hosts, tmp_path, (texts[0], texts[1]), "AUTHENTICATION_FAILED")
    (out_a, out_b), (err_a, err_b) = run.out, run.err
    assert run.seen, err_a
    assert run.status == (0, 0), err_a + err_b
    assert counter(out_a, "ike sas up") == 0 and counter(out_b, "ike sas up") == 0
    assert "IKE SA down: peer answered AUTHENTICATION_FAILED" in err_a, err_a
    assert 'IKE SA down: IKE_AUTH refused: authentication failed: certificate "CN=198.18.0.1"' \
        in err_b and 'no trusted CA for issuer "CN=ca,O=espfast"' in err_b, err_b  # fmt: skip
