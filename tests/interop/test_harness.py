"""The charon harness itself: charon <-> charon over kernel-libipsec, in two namespaces.

Scaffolding until the espfast <-> strongSwan scenarios exist: it proves that two
isolated charon instances can be configured, driven and observed from a test.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.tunnels.peerutil import cert_pem, issue, key_pem, new_key
from espfast.netns import TwoHosts, wait_for
from tests.interop.conftest import INNER6_A, INNER6_B, INNER_A, INNER_B, CharonFactory
from tests.interop.strongswan import (
    Charon,
    CharonError,
    Connection,
    Psk,
    psk_pair,
    swanctl_conf,
)

PSK = Psk(ids=("a.peer.test", "b.peer.test"), secret=b"interop harness test secret")


TS = ("198.19.1.0/24", "198.19.2.0/24")


def _confs(hosts: TwoHosts, **options: str) -> tuple[str, str]:
    return psk_pair((hosts.addr_a, hosts.addr_b), PSK, TS, **options)


def test_psk_tunnel_lifecycle(hosts: TwoHosts, charons: CharonFactory) -> None:
    ts = ("198.19.1.0/24,2001:2:0:1::/64", "198.19.2.0/24,2001:2:0:2::/64")
    conf_a, conf_b = psk_pair((hosts.addr_a, hosts.addr_b), PSK, ts)
    a = charons.start(hosts.a, conf_a)
    b = charons.start(hosts.b, conf_b)
    assert "CHILD_SA net{1} established" in a.initiate("net")
    child_a = a.wait_child("net", timeout=10)
    child_b = b.wait_child("net", timeout=10)
    assert child_a["encap"] == "yes"
    assert child_a["spi-out"] == child_b["spi-in"]
    hosts.a.run("ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", INNER_A, INNER_B)
    hosts.a.run("ping", "-6", "-c", "1", "-W", "2", "-I", INNER6_A, INNER6_B)
    assert int(b.installed_children("net")[0]["packets-in"]) >= 4
    # CREATE_CHILD_SA rekey: new SPIs, traffic still flows.
    a.rekey("net")
    a.wait_log("CHILD_SA net{2} established", timeout=10)
    assert any(c["spi-in"] != child_a["spi-in"] for c in a.installed_children("net"))
    hosts.a.run("ping", "-c", "1", "-W", "2", "-I", INNER_A, INNER_B)
    # INFORMATIONAL { D } closes the IKE SA on both ends.
    a.terminate("peer")
    assert a.list_sas() == []
    assert wait_for(lambda: b.list_sas() == [], timeout=10)
    b.wait_log("deleting IKE_SA peer[1]")
    # The handshake benchmark's in-process vici path: establish and delete, in a row.
    times = a.handshake_times("peer", "net", 2)
    assert len(times) == 2 and all(0 < t < 10 for t in times)
    assert a.handshake_rate([("peer", "net")]) > 0
    assert a.list_sas() == []


def test_proposal_mismatch_fails_with_log(hosts: TwoHosts, charons: CharonFactory) -> None:
    conf_a = _confs(hosts, proposals="aes256-sha384-ecp384")[0]
    a = charons.start(hosts.a, conf_a)
    b = charons.start(hosts.b, _confs(hosts)[1])
    with pytest.raises(CharonError, match="NO_PROPOSAL_CHOSEN"):
        a.initiate("net", timeout=10)
    assert "received proposals unacceptable" in b.log()
    assert a.installed_children("net") == []


@pytest.mark.parametrize(
    ("kind", "settings", "method"),
    [
        ("ecdsa", {}, "ECDSA_WITH_SHA256_DER"),  # RFC 7427 (both announce it)
        ("rsa", {"signature_authentication": "no"}, "RSA signature"),  # classic method 1
    ],
)
def test_certificate_tunnel(
    hosts: TwoHosts, charons: CharonFactory, kind: str, settings: dict[str, str], method: str
) -> None:
    ca_key = new_key(kind)
    ca = issue("interop CA", ca_key)
    ends = []
    for side, ts, peer_ts in (("a", *TS), ("b", *reversed(TS))):
        key = new_key(kind)
        cert = issue(f"{side}.peer.test", key, (ca, ca_key), dns=[f"{side}.peer.test"])
        files = {
            "x509ca/ca.pem": cert_pem(ca),
            f"x509/{side}.pem": cert_pem(cert),
            f"private/{side}.key": key_pem(key),
        }
        ends.append((side, ts, peer_ts, files))
    for (side, ts, peer_ts, files), (peer, *_), ns, addrs in (
        (ends[0], ends[1], hosts.a, (hosts.addr_a, hosts.addr_b)),
        (ends[1], ends[0], hosts.b, (hosts.addr_b, hosts.addr_a)),
    ):
        conn = Connection(
            local_addrs=addrs[0], remote_addrs=addrs[1],
            local_id=f"{side}.peer.test", remote_id=f"{peer}.peer.test",
            local_ts=ts, remote_ts=peer_ts, auth="pubkey", local_cert=f"{side}.pem",
        )  # fmt: skip
        charons.start(ns, swanctl_conf([conn]), files=files, settings=settings)
    a, b = charons.started
    a.initiate("net")
    b.wait_child("net", timeout=10)
    assert f"authentication of 'a.peer.test' (myself) with {method}" in a.log()
    hosts.a.run("ping", "-c", "2", "-i", "0.2", "-W", "2", "-I", INNER_A, INNER_B)


def test_config_errors_and_secrets(tmp_path: Path, hosts: TwoHosts) -> None:
    with pytest.raises(ValueError, match="auth must be psk or pubkey"):
        Connection("a", "b", "a", "b", "0.0.0.0/0", "0.0.0.0/0", auth="eap-md5").render()
    with pytest.raises(ValueError, match="outside the swanctl directory"):
        Charon.start(hosts.a, tmp_path, "", files={"../escape.pem": b"x"})
    assert not (tmp_path / "escape.pem").exists()
    assert PSK.secret.decode() not in repr(PSK)
    with pytest.raises(CharonError, match="invalid config file"):
        Charon.start(hosts.a, tmp_path / "bad", "connections { broken")
