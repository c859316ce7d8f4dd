"""Virtual IPs (RFC 7296 §2.19): a client asks in IKE_AUTH (CP(CFG_REQUEST)), the gateway
answers from its pool (CP(CFG_REPLY)) and narrows the Child SA to the address it gave."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest
from ikepair import NET_B, A, B, configs, drain, exchange, shuttle

from espfast.control.buffer import Buffer
from espfast.control.config import ChildConfig, IkeConfig
from espfast.control.constants import CfgAttr, CfgType, IdType
from espfast.control.events import (
    ChildSaFailed,
    ChildSaRekeyed,
    ChildSaUp,
    IkeSaDown,
    IkeSaUp,
    TrafficSelector,
)
from espfast.control.manager import IkeManager
from espfast.control.payloads import CpPayload, encode_body, pull_cp
from espfast.control.pool import AddressPool
from espfast.control.proposals import parse_esp
from espfast.control.rng import DeterministicRng
from espfast.control.vip import assigned, reply, request, requested, subnets, subnets_requested

ANY4 = TrafficSelector.from_network("0.0.0.0/0")
POOL = ipaddress.ip_network("198.19.100.0/24")
DNS = ipaddress.ip_address("198.19.2.53")
IP = ipaddress.ip_address


def gateway_and_client(pool: str = str(POOL)) -> tuple[IkeConfig, IkeConfig]:
    """The client asks for any IPv4 address (strongSwan's vips = 0.0.0.0) and proposes
    0.0.0.0/0 as its side; the gateway hands out ``pool`` and names a DNS server."""
    ci, cr = configs()
    child_i = ChildConfig("net", (ANY4,), (NET_B,), parse_esp("aes128gcm16"))
    ci = replace(ci, children=(child_i,), vips=(IP("0.0.0.0"),))
    cr = replace(cr, pool=(ipaddress.ip_network(pool),), dns=(DNS,), remote_id=None)
    return cr, ci


def connect(gw: IkeManager, ci: IkeConfig, who: bytes, host: str = A[0], now: float = 0
            ) -> tuple[IkeManager, list[object], list[object]]:  # fmt: skip
    """A client with identity ``who`` connects to ``gw``: (client, its events, gw's)."""
    client = IkeManager([], rng=DeterministicRng(who.decode() + host), local=(host, 500))
    cfg = replace(ci, local_id=(IdType.FQDN, who))
    client.initiate(cfg, local=(host, 500), remote=B, now=now)
    exchange(gw, [(client, host)], now=now)
    return client, drain(client), drain(gw)


def test_cp_payload_round_trip_and_attributes() -> None:
    cp = request((IP("0.0.0.0"), IP("::")))
    assert pull_cp(Buffer(encode_body(cp))) == cp
    assert requested(cp) == (4, 6)
    assert cp.values(CfgAttr.INTERNAL_IP4_DNS) == [b""]
    answer = reply((IP("198.19.100.1"), IP("2001:2:0:100::1")), (DNS, IP("2001:2::53")))
    assert pull_cp(Buffer(encode_body(answer))) == answer
    assert assigned(answer) == (
        (IP("198.19.100.1"), IP("2001:2:0:100::1")),
        (DNS, IP("2001:2::53")),
    )
    # A particular address asked for travels as its value; junk values are left out.
    assert request((IP("198.19.100.9"),)).values(CfgAttr.INTERNAL_IP4_ADDRESS) == [
        IP("198.19.100.9").packed
    ]
    junk = CpPayload(CfgType.REPLY, ((CfgAttr.INTERNAL_IP4_ADDRESS, b"\x01\x02"), (99, b"x")))
    assert assigned(junk) == ((), ())
    assert requested(answer) == () and assigned(cp) == ((), ())


def test_pool_leases_by_identity() -> None:
    pool = AddressPool((ipaddress.ip_network("198.19.100.0/30"),))
    a = pool.acquire(b"alice", 4, holder=1)
    b = pool.acquire(b"bob", 4, holder=2)
    assert (a, b) == (IP("198.19.100.1"), IP("198.19.100.2"))  # no network, no broadcast
    assert pool.acquire(b"carol", 4, holder=3) is None  # all leased and held
    assert pool.acquire(b"alice", 4, holder=4) == a  # alice again (a reauthentication)
    pool.release(1)
    assert pool.held() == {a: b"alice", b: b"bob"}  # holder 4 still has it
    pool.release(4)
    assert pool.acquire(b"alice", 4, holder=5) == a  # her lease waited for her
    pool.release(5)
    assert pool.acquire(b"carol", 4, holder=6) == a  # unheld: the pool gives it away
    assert pool.acquire(b"alice", 4, holder=7) is None
    assert pool.acquire(b"alice", 6, holder=7) is None  # no IPv6 in this pool
    v6 = AddressPool((ipaddress.ip_network("2001:2:0:100::/126"),))
    assert v6.acquire(b"alice", 6, holder=1) == IP("2001:2:0:100::1")


def test_client_gets_an_address_and_the_child_sa_is_narrowed_to_it() -> None:
    cr, ci = gateway_and_client()
    gw = IkeManager([cr], rng=DeterministicRng("gw"), local=B)
    _, ev_c, ev_g = connect(gw, ci, b"alice.example.org")
    up_c = next(e for e in ev_c if isinstance(e, IkeSaUp))
    up_g = next(e for e in ev_g if isinstance(e, IkeSaUp))
    assert (up_c.virtual_ips, up_c.dns) == (("198.19.100.1",), (str(DNS),))
    assert up_g.peer_virtual_ips == ("198.19.100.1",) and up_g.virtual_ips == ()
    child_c = next(e for e in ev_c if isinstance(e, ChildSaUp))
    child_g = next(e for e in ev_g if isinstance(e, ChildSaUp))
    vip_ts = (TrafficSelector.from_network("198.19.100.1/32"),)
    assert child_c.local_ts == vip_ts and child_g.remote_ts == vip_ts
    assert child_c.remote_ts == child_g.local_ts == (NET_B,)


def test_each_identity_keeps_its_address_and_an_empty_pool_says_so() -> None:
    cr, ci = gateway_and_client(pool="198.19.100.0/30")  # two addresses
    gw = IkeManager([cr], rng=DeterministicRng("gw"), local=B)
    alice, _, ev = connect(gw, ci, b"alice.example.org")
    assert next(e for e in ev if isinstance(e, IkeSaUp)).peer_virtual_ips == ("198.19.100.1",)
    _, _, ev = connect(gw, ci, b"bob.example.org", host="198.18.0.3")
    assert next(e for e in ev if isinstance(e, IkeSaUp)).peer_virtual_ips == ("198.19.100.2",)
    # Carol finds the pool empty: INTERNAL_ADDRESS_FAILURE, no Child SA; her end gives up.
    _, ev_c, ev = connect(gw, ci, b"carol.example.org", host="198.18.0.4")
    assert not [e for e in ev if isinstance(e, ChildSaUp)]
    down = [e for e in ev_c if isinstance(e, IkeSaDown)]
    assert down and "virtual IP" in down[0].reason and down[0].cause == "failed"
    assert len(gw.sas) == 2  # and it deleted the IKE SA the gateway had made for it
    # Alice leaves and comes back from elsewhere: the same address again.
    (sa,) = alice.sas
    sa.delete(1)
    shuttle(alice, gw, now=1)
    _, _, ev = connect(gw, ci, b"alice.example.org", host="198.18.0.5", now=2)
    assert next(e for e in ev if isinstance(e, IkeSaUp)).peer_virtual_ips == ("198.19.100.1",)


@pytest.mark.parametrize("pool", ["", "198.19.100.0/24"])
def test_a_client_that_asks_nothing_gets_nothing(pool: str) -> None:
    """No virtual IP asked for, none given. Without a pool the child's remote_ts is the
    peer's side (a site); with one, a peer speaks only from the addresses leased to it,
    so a client holding none gets no Child SA (TS_UNACCEPTABLE), though its IKE SA is up."""
    cr, ci = gateway_and_client()
    cr = replace(cr, pool=(ipaddress.ip_network(pool),) if pool else ())
    ci = replace(ci, vips=(), children=configs()[0].children)
    gw = IkeManager([cr], rng=DeterministicRng("gw"), local=B)
    _, ev_c, ev_g = connect(gw, ci, b"alice.example.org")
    up_c = next(e for e in ev_c if isinstance(e, IkeSaUp))
    up_g = next(e for e in ev_g if isinstance(e, IkeSaUp))
    assert up_c.virtual_ips == () and up_g.peer_virtual_ips == ()
    assert [type(e) for e in ev_g].count(ChildSaUp) == (0 if pool else 1)
    if pool:
        (failed,) = [e for e in ev_c if isinstance(e, ChildSaFailed)]
        assert "TS_UNACCEPTABLE" in failed.reason


def test_rekeys_keep_the_address_and_the_narrowing() -> None:
    """The gateway's IKE SA is rekeyed (new SPIs) and then the Child SA, by the gateway:
    the rekeyed IKE SA still holds the client's address in the pool, and the gateway
    proposes the client's address alone (not its child's remote_ts, which may be the whole
    pool: the client could then send from its neighbours' addresses)."""
    cr, ci = gateway_and_client(pool="198.19.100.0/30")
    gw = IkeManager([cr], rng=DeterministicRng("gw"), local=B)
    client, _, _ = connect(gw, ci, b"alice.example.org")
    (sa_g,) = gw.sas
    sa_g.rekey(1)
    exchange(gw, [(client, A[0])], now=1)
    (new_g,) = [sa for sa in gw.sas if not sa.is_destroyed]
    assert new_g is not sa_g and new_g.remote_vips == (IP("198.19.100.1"),)
    (spi,) = new_g.children
    new_g.rekey_child(spi, 2)
    exchange(gw, [(client, A[0])], now=2)
    rekeyed = [e for e in drain(gw) if isinstance(e, ChildSaRekeyed)]
    assert rekeyed and rekeyed[-1].new.remote_ts == (
        TrafficSelector.from_network("198.19.100.1/32"),
    )
    assert gw.pools["gw-b"].held() == {
        IP("198.19.100.1"): bytes([IdType.FQDN]) + b"alice.example.org"
    }
    # Gone: the address is no longer held (still leased to alice, for her return).
    new_g.delete(3)
    exchange(gw, [(client, A[0])], now=3)
    assert gw.pools["gw-b"].held() == {}


def test_subnets_round_trip_and_junk() -> None:
    cp = request((IP("0.0.0.0"), IP("::")))
    assert subnets_requested(cp) == (4, 6)
    nets = (ipaddress.ip_network("198.19.2.0/24"), ipaddress.ip_network("2001:2:0:2::/64"))
    answer = reply((IP("198.19.100.1"),), (DNS,), nets)  # an IPv4 lease: IPv4 subnets only
    assert pull_cp(Buffer(encode_body(answer))) == answer
    assert subnets(answer) == nets[:1]
    assert answer.values(CfgAttr.INTERNAL_IP4_SUBNET) == [bytes([198, 19, 2, 0, 255, 255, 255, 0])]
    both = reply((IP("198.19.100.1"), IP("2001:2:0:100::1")), (), nets)
    assert subnets(both) == nets
    junk = CpPayload(CfgType.REPLY, (
        (CfgAttr.INTERNAL_IP4_SUBNET, bytes([198, 19, 2, 0, 255, 0, 255, 0])),  # no prefix
        (CfgAttr.INTERNAL_IP4_SUBNET, bytes([198, 19, 2, 1, 255, 255, 255, 0])),  # host bits
        (CfgAttr.INTERNAL_IP6_SUBNET, bytes(16) + b"\x81"),  # /129
        (CfgAttr.INTERNAL_IP4_SUBNET, b"\x01"),
    ))  # fmt: skip
    assert subnets(junk) == () and subnets(cp) == () and subnets_requested(answer) == ()


def _connect_to_subnet_gateway(caplog: pytest.LogCaptureFixture, who: bytes) -> None:
    """A client ``who`` comes up with a gateway whose child protects NET_B (logs at INFO)."""
    cr, ci = gateway_and_client()
    cr = replace(cr, children=(ChildConfig("net", (NET_B,), (ANY4,), parse_esp("aes128gcm16")),))
    gw = IkeManager([cr], rng=DeterministicRng("gw"), local=B)
    caplog.set_level("INFO", logger="espfast.control")
    _, ev_c, _ = connect(gw, ci, who)
    assert any(isinstance(e, IkeSaUp) for e in ev_c)


def test_gateway_names_its_subnets_to_a_client_that_asks(caplog: pytest.LogCaptureFixture) -> None:
    _connect_to_subnet_gateway(caplog, b"erin.example.org")
    assert f"the peer protects {NET_B}" in caplog.text, caplog.text


def test_a_flood_of_subnet_requests_gets_one_answer(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A client asks for the subnets 500 times over, with junk values: the gateway's
    answer names each of its subnets once, and the client logs them once."""
    import espfast.control.vip as vip_module

    honest, sent = vip_module.request, []

    def flood(vips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]) -> CpPayload:
        cp = honest(vips)
        junk = [(int(CfgAttr.INTERNAL_IP4_SUBNET), bytes([i % 256]) * (i % 9)) for i in range(500)]
        sent.append(len(junk))
        return CpPayload(cp.cfg_type, (*cp.attributes, *junk))

    monkeypatch.setattr(vip_module, "request", flood)
    _connect_to_subnet_gateway(caplog, b"mallory.example.org")
    assert sent == [500]
    assert caplog.text.count(f"the peer protects {NET_B}\n") == 1, caplog.text
