"""What happens when the peer dies or closes: strongSwan's dpd_action (clear, trap,
restart) and close_action (none, trap, start) per child, the trap API the daemon uses
to negotiate on traffic, and the clean shutdown that deletes every IKE SA. Two managers
in memory, the clock injected (no sleeps)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from ikepair import A, B, configs, drain, shuttle, up_managers

from espfast.control.config import ChildConfig, IkeConfig, Lifetime
from espfast.control.constants import ExchangeType
from espfast.control.errors import LocalProtocolError
from espfast.control.events import (
    ChildAction,
    ChildSaDown,
    ChildSaUp,
    IkeSaDown,
    IkeSaUp,
)
from espfast.control.manager import IkeManager
from espfast.control.message import parse_header
from espfast.control.rng import DeterministicRng

NEVER = Lifetime(0, 0, 0)
DPD = 30.0


def conf(cfg: IkeConfig, **child: str) -> IkeConfig:
    kid = replace(cfg.children[0], lifetime=NEVER, **child)  # type: ignore[arg-type]
    return replace(cfg, lifetime=NEVER, dpd_delay=DPD, children=(kid,))


def up(ci: IkeConfig, cr: IkeConfig) -> tuple[IkeManager, IkeManager]:
    gw_a, gw_b = up_managers(ci, cr)
    assert len(gw_a.sas) == 1 and gw_a.sas[0].is_established
    return gw_a, gw_b


def peer_dies(gw_a: IkeManager) -> tuple[float, list[object], list[int]]:
    """b is gone: a's liveness check INFORMATIONAL { } --> goes unanswered until its
    retransmissions run out. Returns the time, a's events, and the exchanges a sent
    after giving up."""
    now = 0.0
    (sa,) = gw_a.sas
    while not sa.is_destroyed:
        timer = gw_a.get_timer()
        assert timer is not None and timer < 2000
        now = timer
        gw_a.handle_timer(now)
        if not sa.is_destroyed:
            gw_a.datagrams_to_send(now)  # lost
    evs = drain(gw_a)
    after = [parse_header(d).exchange for d, _, _ in gw_a.datagrams_to_send(now)]
    return now, evs, after


def test_dpd_action_clear_takes_the_sa_down_and_nothing_more() -> None:
    ci, cr = configs()
    gw_a, _ = up(conf(ci), conf(cr))
    _, evs, after = peer_dies(gw_a)
    (down,) = [e for e in evs if isinstance(e, IkeSaDown)]
    assert down.cause == "dpd" and down.actions == () and "not responding" in down.reason
    assert [type(e) for e in evs] == [ChildSaDown, IkeSaDown]
    assert after == [] and gw_a.sas == [] and gw_a.get_timer() is None


def test_dpd_action_restart_negotiates_again_at_once() -> None:
    ci, cr = configs()
    gw_a, _ = up(conf(ci, dpd_action="restart"), conf(cr))
    now, evs, after = peer_dies(gw_a)
    (down,) = [e for e in evs if isinstance(e, IkeSaDown)]
    assert down.cause == "dpd" and down.actions == (ChildAction("net", "restart"),)
    # IKE_SA_INIT --> again, to where the first one went, with INITIAL_CONTACT later.
    assert after == [ExchangeType.IKE_SA_INIT]
    (new,) = gw_a.sas
    assert new.first_remote == B and new.config.initial_contact
    # The peer comes back (restarted: no state): the tunnel is up again.
    gw_b = IkeManager([conf(configs()[1])], rng=DeterministicRng("b2"), local=B)
    new.tm.handle_timer(new.tm.next_retransmit or now)  # the first copy was lost
    shuttle(gw_a, gw_b, now)
    assert new.is_established and len(new.children) == 1
    assert [type(e) for e in drain(gw_a)] == [IkeSaUp, ChildSaUp]


def test_dpd_action_trap_waits_for_traffic_then_negotiates() -> None:
    ci, cr = configs()
    gw_a, gw_b = up(conf(ci, dpd_action="trap"), conf(cr))
    now, evs, after = peer_dies(gw_a)
    (down,) = [e for e in evs if isinstance(e, IkeSaDown)]
    assert down.actions == (ChildAction("net", "trap"),)
    assert after == [] and gw_a.sas == [] and ("gw-a", "net") in gw_a.traps
    assert gw_a.acquire("gw-a", "other", now) is None  # no such trap
    # Traffic for 198.19.2.0/24 finds no SA: the daemon calls acquire().
    sa = gw_a.acquire("gw-a", "net", now)
    assert sa is not None and gw_a.sas == [sa]
    # More packets while it is being negotiated: nothing more happens.
    assert gw_a.acquire("gw-a", "net", now) is sa and len(gw_a.sas) == 1
    gw_b.sas[0].destroy("peer restarted")  # b lost its state meanwhile
    drain(gw_b)
    shuttle(gw_a, gw_b, now)
    assert sa.is_established and len(sa.children) == 1
    assert gw_a.acquire("gw-a", "net", now) is sa
    assert gw_a.datagrams_to_send(now) == [] and len(sa.children) == 1


def test_trap_up_front_and_on_an_established_ike_sa() -> None:
    ci, cr = (conf(c) for c in configs())
    ci, cr = (
        replace(c, children=(*c.children, ChildConfig("other", k.local_ts, k.remote_ts)))
        for c, k in ((ci, ci.children[0]), (cr, cr.children[0]))
    )
    gw_a, _ = up(ci, cr)
    with pytest.raises(LocalProtocolError, match="no child"):
        gw_a.trap(ci, "nope", local=A, remote=B)
    gw_a.trap(ci, "other", local=A, remote=B)  # start_action = trap
    (sa,) = gw_a.sas
    # The connection's IKE SA is up: CREATE_CHILD_SA { SA, Ni, TSi, TSr } --> on it.
    assert gw_a.acquire("gw-a", "other", 1) is sa
    assert [parse_header(d).exchange for d, _, _ in gw_a.datagrams_to_send(1)] == [
        ExchangeType.CREATE_CHILD_SA
    ]
    assert gw_a.acquire("gw-a", "other", 1) is sa  # under way: nothing more
    assert gw_a.datagrams_to_send(1) == []


def test_close_action_start_when_the_peer_deletes_the_ike_sa() -> None:
    ci, cr = configs()
    gw_a, gw_b = up(conf(ci, close_action="start"), conf(cr))
    # <-- INFORMATIONAL { D(IKE) } from the peer;  { } -->
    gw_b.sas[0].delete(5)
    shuttle(gw_a, gw_b, 5)
    evs = drain(gw_a)
    (down,) = [e for e in evs if isinstance(e, IkeSaDown)]
    assert down.cause == "peer" and down.actions == (ChildAction("net", "start"),)
    # ... and IKE_SA_INIT --> at once: the tunnel is back.
    (new,) = gw_a.sas
    assert new.is_established and len(new.children) == 1
    assert [type(e) for e in evs[-2:]] == [IkeSaUp, ChildSaUp]


def test_close_action_of_a_child_deleted_by_the_peer() -> None:
    for action in ("none", "start", "trap"):
        ci, cr = configs()
        gw_a, gw_b = up(conf(ci, close_action=action), conf(cr))
        (sa_b,) = gw_b.sas
        (spi_b,) = sa_b.children
        # <-- INFORMATIONAL { D(ESP, spi) };  { D(ESP, spi') } -->
        sa_b.delete_child(spi_b, 5)
        shuttle(gw_a, gw_b, 5)
        evs = drain(gw_a)
        downs = [e for e in evs if isinstance(e, ChildSaDown)]
        assert downs[0].action == ("" if action == "none" else action)
        (sa,) = gw_a.sas
        if action == "start":  # CREATE_CHILD_SA --> again
            assert len(sa.children) == 1 and isinstance(evs[-1], ChildSaUp)
        else:
            assert not sa.children
        assert (("gw-a", "net") in gw_a.traps) == (action == "trap")


def test_rekeyed_child_sa_deleted_by_the_peer_is_not_restarted() -> None:
    ci, cr = configs()
    gw_a, gw_b = up(conf(ci, close_action="start"), conf(cr))
    (sa_b,) = gw_b.sas
    (spi_b,) = sa_b.children
    # The peer rekeys: CREATE_CHILD_SA { N(REKEY_SA) ... } then D(ESP, old) <--
    sa_b.rekey_child(spi_b, 5)
    shuttle(gw_a, gw_b, 5)
    downs = [e for e in drain(gw_a) if isinstance(e, ChildSaDown)]
    assert len(downs) == 1 and downs[0].action == ""
    assert len(gw_a.sas[0].children) == 1


def test_shutdown_deletes_every_ike_sa() -> None:
    ci, cr = configs()
    ci, cr = conf(ci, dpd_action="restart", close_action="start"), conf(cr)
    gw_a, gw_b = up(ci, cr)
    # A second IKE SA with the same peer (no INITIAL_CONTACT: the first one stays).
    gw_a.initiate(replace(ci, name="gw-a2", initial_contact=False), local=A, remote=B, now=0)
    shuttle(gw_a, gw_b)
    drain(gw_a)
    drain(gw_b)
    assert len(gw_a.sas) == 2 and len(gw_b.sas) == 2
    # SIGTERM: INFORMATIONAL { D(IKE) } --> on each;  <-- { }
    gw_a.shutdown(1)
    out = gw_a.datagrams_to_send(1)
    assert [parse_header(d).exchange for d, _, _ in out] == [ExchangeType.INFORMATIONAL] * 2
    for data, remote, port in out:
        gw_b.receive_datagram(data, (A[0], port), 1, remote)
    shuttle(gw_a, gw_b, 1)
    assert gw_a.idle and gw_b.sas == []
    downs_a = [e for e in drain(gw_a) if isinstance(e, IkeSaDown)]
    assert [d.cause for d in downs_a] == ["local", "local"]
    downs_b = [e for e in drain(gw_b) if isinstance(e, IkeSaDown)]
    assert [d.cause for d in downs_b] == ["peer", "peer"]
    assert gw_a.sas == [] and gw_a.get_timer() is None  # nothing restarted


def test_bad_actions_are_refused() -> None:
    ci, _ = configs()
    with pytest.raises(ValueError, match="dpd_action 'hold' is not one of clear, trap"):
        conf(ci, dpd_action="hold")
    with pytest.raises(ValueError, match="close_action 'restart' is not one of none"):
        conf(ci, close_action="restart")
