"""IKE_AUTH with EAP relayed to RADIUS (control/radius/relay.py, the deferred IKE_AUTH
answers of the task manager), in memory: the "RADIUS server" here is our own EAP-MSCHAPv2
server answering the relayed EAP, as FreeRADIUS does in tests/interop."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import replace

import pytest
from ikepair import B, Pair, events
from test_ike_auth_eap import USERS, eap_configs

from espfast.control.config import IkeConfig
from espfast.control.eap import EapFailure, EapServer, decode_eap, encode_eap
from espfast.control.events import ChildSaUp, IkeSaDown, IkeSaUp, RadiusRequest, TrafficSelector
from espfast.control.manager import IkeManager, pool_key
from espfast.control.pool import AddressPool
from espfast.control.radius import Attr, Code, RadiusAnswer
from espfast.control.rng import DeterministicRng
from espfast.control.tasks.ike_auth_eap import IkeAuthEap


def radius_configs(
    user: str = "carol",
    password: str = "carol-p4ss",  # noqa: S107
) -> tuple[IkeConfig, IkeConfig]:
    ci, cr = eap_configs(user, password)
    pool = (ipaddress.IPv4Network("198.19.100.0/24"),)
    any4 = TrafficSelector.from_network("0.0.0.0/0")
    ci = replace(
        ci,
        vips=(ipaddress.IPv4Address("0.0.0.0"),),
        children=(replace(ci.children[0], local_ts=(any4,)),),
    )
    cr = replace(cr, auth=replace(cr.auth, eap_users=None, eap_radius=True), pool=pool,
                 children=(replace(cr.children[0], remote_ts=(TrafficSelector.from_network(
                     "198.19.100.0/24"),)),))  # fmt: skip
    return ci, cr


class FakeServer:
    """Answers relayed EAP as a RADIUS server would (the EAP method runs here)."""

    def __init__(self, framed: str | None = None, pool: str = "") -> None:
        self.eap: EapServer | None = None
        self.framed = ipaddress.IPv4Address(framed) if framed else None
        self.pool = pool  # Framed-Pool
        self.states: list[bytes | None] = []

    def answer(self, req: RadiusRequest) -> RadiusAnswer:
        attrs = dict(req.attributes)
        self.states.append(attrs.get(Attr.STATE))
        eap = b"".join(v for a, v in req.attributes if a == Attr.EAP_MESSAGE)
        pkt = decode_eap(eap)
        if self.eap is None:  # the identity response: start the method
            self.eap = EapServer(USERS.get, DeterministicRng("radius"))
            self.eap.identifier = pkt.identifier
            self.eap.rounds = 1
        try:
            out = self.eap.process(pkt)
        except EapFailure:
            return RadiusAnswer(Code.ACCESS_REJECT, b"\x04\x00\x00\x04")
        if out.code == 3:  # EAP-Success
            return RadiusAnswer(Code.ACCESS_ACCEPT, encode_eap(out), msk=self.eap.msk,
                                framed_ip=self.framed, framed_pool=self.pool)  # fmt: skip
        return RadiusAnswer(Code.ACCESS_CHALLENGE, encode_eap(out), b"state-%d" % len(self.states))


def run(p: Pair, server: FakeServer, rounds: int = 12, mgr: IkeManager | None = None) -> None:
    mgr = mgr or IkeManager([], rng=DeterministicRng("m"), local=B)  # for its pools
    for _ in range(rounds):
        if p.r is not None:
            p.r.lease = mgr._lease
        assert p.i is not None
        if p.i.is_established or p.i.is_destroyed:
            return
        p.i_to_r()
        if p.r is not None and p.r.tm.deferred is not None:
            # The gateway answers nothing until RADIUS did; a retransmission is dropped.
            assert p.r_to_i() == []
            reqs = [e for e in events(p.r) if isinstance(e, RadiusRequest)]
            assert len(reqs) == 1
            task = p.r.tm.deferred[0]
            assert isinstance(task, IkeAuthEap)
            task.radius_answer = server.answer(reqs[0])
            p.r.tm.resume(p.now)
        p.r_to_i()


def test_relayed_eap_framed_ip_and_state_echo() -> None:
    p = Pair(*radius_configs())
    server = FakeServer("198.19.100.42")
    run(p, server)
    assert p.i is not None and p.i.is_established
    assert p.r is not None and p.r.is_established
    assert server.states == [None, b"state-1", b"state-2"]  # State echoed, RFC 2865 §5.24
    ev_r = events(p.r)
    up = next(e for e in ev_r if isinstance(e, IkeSaUp))
    assert up.remote_id == "carol"
    ev_i = events(p.i)
    assert [type(e) for e in ev_i] == [IkeSaUp, ChildSaUp]
    up_i = ev_i[0]
    assert isinstance(up_i, IkeSaUp) and up_i.virtual_ips == ("198.19.100.42",)


def test_bad_password_rejected_one_line(caplog: pytest.LogCaptureFixture) -> None:
    p = Pair(*radius_configs("carol", "wrong"))
    with caplog.at_level(logging.DEBUG, logger="espfast.control"):
        run(p, FakeServer())
    # Access-Reject --> <-- { N(AUTHENTICATION_FAILED), EAP(Failure) } (RFC 3579 §2.6.3)
    sent = [r.getMessage() for r in caplog.records if "sending IKE_AUTH" in r.getMessage()]
    assert sent[-1].startswith("gw-b") and sent[-1].endswith("{ N(AUTHENTICATION_FAILED) EAP }")
    assert p.i is not None and p.i.is_destroyed
    down = [e for e in events(p.i) if isinstance(e, IkeSaDown)]
    assert down and "AUTHENTICATION_FAILED" in down[0].reason
    named = [r.getMessage() for r in caplog.records if "'carol'" in r.getMessage()]
    assert len(named) == 1 and "EAP-RADIUS authentication of 'carol' failed" in named[0]
    assert not any("wrong" in r.getMessage() for r in caplog.records)


def test_no_server_answers() -> None:
    p = Pair(*radius_configs())
    p.roundtrip()
    p.roundtrip()  # <-- EAP(Request/Identity)
    p.i_to_r()
    assert p.r is not None and p.r.tm.deferred is not None
    task = p.r.tm.deferred[0]
    assert isinstance(task, IkeAuthEap)
    task.radius_answer = RadiusAnswer(None, reason="no RADIUS server answered")
    p.r.tm.resume(p.now)
    p.r_to_i()
    assert p.i is not None and p.i.is_destroyed and p.r.is_destroyed


def test_framed_ip_claims_only_free_addresses_of_the_pool() -> None:
    pool = AddressPool((ipaddress.IPv4Network("198.19.100.0/24"),))
    a77 = ipaddress.IPv4Address("198.19.100.77")
    assert pool.claim(a77, b"carol", holder=1) == a77
    assert pool.claim(a77, b"dave", holder=2) is None  # carol holds it: not dave's
    assert pool.claim(ipaddress.IPv4Address("198.19.1.1"), b"dave", holder=2) is None
    assert pool.acquire(b"dave", 4, holder=2) != a77  # the pool never hands it out again
    pool.release(1)
    assert pool.claim(a77, b"dave", holder=3) == a77  # unheld: the server may move it
    assert pool.acquire(b"carol", 4, holder=4) not in (a77, None)  # carol's lease moved


STAFF = ("staff", (ipaddress.IPv4Network("198.19.110.0/24"),), frozenset())


@pytest.mark.parametrize(
    ("pool", "framed", "expect"),
    [
        ("staff", None, "198.19.110.1"),  # the named pool's first address
        ("staff", "198.19.110.42", "198.19.110.42"),  # Framed-IP-Address within it
        ("", None, "198.19.100.1"),  # no Framed-Pool: the connection's pool
        ("staff", "198.19.100.42", None),  # Framed-IP-Address outside the named pool
        ("nosuch", None, None),  # a name the connection does not have: no address
    ],
)
def test_framed_pool_leases_from_the_named_pool(
    pool: str, framed: str | None, expect: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """RFC 2869 §5.18: the Access-Accept's Framed-Pool names the pool the user's address
    comes from (one of the connection's ``framed_pools``); a name it does not have gives
    the user no address (INTERNAL_ADDRESS_FAILURE: never the default pool instead)."""
    ci, cr = radius_configs()
    p = Pair(ci, replace(cr, framed_pools=(STAFF,)))
    mgr = IkeManager([], rng=DeterministicRng("m"), local=B)
    with caplog.at_level(logging.INFO, logger="espfast.control"):
        run(p, FakeServer(framed, pool), mgr=mgr)
    assert p.i is not None
    if expect is None:
        # The gateway leased nothing (INTERNAL_ADDRESS_FAILURE for the Child SA); the
        # client, which asked for an address, deletes its IKE SA.
        assert p.r is not None and p.r.remote_vips == ()
        assert p.i.local_vips == () and (p.i.is_deleting or p.i.is_destroyed)
        assert all(not pl.held() for pl in mgr.pools.values())
        if pool == "nosuch":
            assert "Framed-Pool 'nosuch' is none of the connection's framed_pools" in caplog.text
        return
    up_i = next(e for e in events(p.i) if isinstance(e, IkeSaUp))
    assert up_i.virtual_ips == (expect,)
    # The lease is held in that pool (the gateway's IKE SA remembers which one, for
    # releasing it there).
    assert p.r is not None and p.r.framed_pool == pool
    key = pool_key(cr.name, "staff") if pool else cr.name
    assert [str(a) for a in mgr.pools[key].held()] == [expect]


def test_a_hostile_framed_pool_name_is_logged_escaped(caplog: pytest.LogCaptureFixture) -> None:
    ci, cr = radius_configs()
    p = Pair(ci, replace(cr, framed_pools=(STAFF,)))
    with caplog.at_level(logging.INFO, logger="espfast.control"):
        run(p, FakeServer(None, "staff\x1b[31m\nfake log line"))
    lines = [r.getMessage() for r in caplog.records if "Framed-Pool" in r.getMessage()]
    assert lines == [f"gw-b[{p.r.ike_sa_id & 0xFFFF}]: Framed-Pool 'staff\\x1b[31m\\nfake log "  # type: ignore[union-attr]
                     "line' is none of the connection's framed_pools"]  # fmt: skip
