"""The charon harness itself: charon <-> charon over kernel-libipsec, in two namespaces.

Scaffolding until the espfast <-> strongSwan scenarios exist: it proves that two
isolated charon instances can be configured, driven and observed from a test.
"""

from __future__ import annotations

import pytest

from espfast.netns import TwoHosts
from tests.interop.conftest import INNER_A, INNER_B, CharonFactory
from tests.interop.strongswan import CharonError, Psk, psk_pair

PSK = Psk(ids=("a.peer.test", "b.peer.test"), secret=b"interop harness test secret")


def _confs(hosts: TwoHosts, **options: str) -> tuple[str, str]:
    ts = ("198.19.1.0/24", "198.19.2.0/24")
    return psk_pair((hosts.addr_a, hosts.addr_b), PSK, ts, **options)


def test_psk_tunnel_carries_ping(hosts: TwoHosts, charons: CharonFactory) -> None:
    conf_a, conf_b = _confs(hosts)
    a = charons.start(hosts.a, conf_a)
    b = charons.start(hosts.b, conf_b)
    assert "CHILD_SA net{1} established" in a.initiate("net")
    child_a = a.wait_child("net", timeout=10)
    child_b = b.wait_child("net", timeout=10)
    assert child_a["encap"] == "yes"
    assert child_a["spi-out"] == child_b["spi-in"]
    hosts.a.run("ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", INNER_A, INNER_B)
    assert int(b.installed_children("net")[0]["packets-in"]) >= 3


def test_proposal_mismatch_fails_with_log(hosts: TwoHosts, charons: CharonFactory) -> None:
    conf_a = _confs(hosts, proposals="aes256-sha384-ecp384")[0]
    a = charons.start(hosts.a, conf_a)
    b = charons.start(hosts.b, _confs(hosts)[1])
    with pytest.raises(CharonError, match="NO_PROPOSAL_CHOSEN"):
        a.initiate("net", timeout=10)
    assert "received proposals unacceptable" in b.log()
    assert a.installed_children("net") == []
