"""Lifetimes with strongSwan's meaning (rekey_time, life_time, rand_time, rekey_bytes)
and liveness checks, driven by an injected clock (no sleeps)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from ikepair import Pair, configs, events

from espfast.control.child_sa import seq_rekey_threshold
from espfast.control.config import IkeConfig, Lifetime
from espfast.control.constants import ExchangeType
from espfast.control.events import (
    ChildSaClosing,
    ChildSaDown,
    ChildSaRekeyed,
    IkeSaDown,
    IkeSaRekeyed,
)
from espfast.control.message import parse_header

NEVER = Lifetime(0, 0, 0)


def with_child_life(cfg: IkeConfig, life: Lifetime) -> IkeConfig:
    return replace(cfg, children=(replace(cfg.children[0], lifetime=life),), lifetime=NEVER)


def child_life_pair(life: Lifetime) -> Pair:
    """An established pair whose initiator's Child SA has ``life`` (the responder's none)."""
    ci, cr = configs()
    p = Pair(with_child_life(ci, life), with_child_life(cr, NEVER))
    p.establish()
    events(p.i)
    events(p.r)
    return p


def run_until(p: Pair, t_end: float) -> None:
    """Advance the clock timer by timer, delivering everything, until ``t_end``."""
    assert p.i is not None
    for _ in range(100):
        timers = [t for t in (p.i.get_timer(), p.r.get_timer() if p.r else None) if t]
        nxt = min(timers) if timers else None
        if nxt is None or nxt > t_end:
            p.now = t_end
            return
        p.now = nxt
        for sa in (p.i, p.r):
            if sa is not None:
                sa.handle_timer(p.now)
        p.i_to_r()
        p.r_to_i()
        p.i_to_r()


def test_child_sa_rekeys_before_rekey_time_and_deletes_the_old_one() -> None:
    p = child_life_pair(Lifetime(rekey_time=100, life_time=200, rand_time=10))
    (child,) = p.i.children.values()
    assert child.rekey_at is not None and 90 <= child.rekey_at <= 100
    assert child.expire_at == 200
    run_until(p, 101)
    evs = events(p.i)
    assert [type(e) for e in evs] == [ChildSaRekeyed, ChildSaClosing, ChildSaDown]
    assert evs[0].old_spi_in == child.spi_in  # type: ignore[union-attr]
    assert [type(e) for e in events(p.r)] == [ChildSaRekeyed, ChildSaDown]
    (new,) = p.i.children.values()
    assert new.rekey_at is not None and new.rekey_at > 180


def test_child_sa_hard_expiry_when_rekeying_fails() -> None:
    p = child_life_pair(Lifetime(rekey_time=0, life_time=50, rand_time=0))
    run_until(p, 51)
    assert [type(e) for e in events(p.i)] == [ChildSaClosing, ChildSaDown]
    assert not p.i.children and not p.r.children


def test_rekey_bytes_from_dataplane_counters() -> None:
    p = child_life_pair(Lifetime(rekey_time=0, life_time=0, rand_time=0, rekey_bytes=10_000_000))
    (spi,) = p.i.children
    p.i.child_traffic(spi, 9_999_999, 100, p.now)
    assert p.i.datagrams_to_send(p.now) == []
    p.i.child_traffic(spi, 10_000_000, 101, p.now)
    (req,) = p.i_to_r()
    assert parse_header(req).exchange == ExchangeType.CREATE_CHILD_SA
    p.r_to_i()
    assert [type(e) for e in events(p.i)] == [ChildSaRekeyed, ChildSaClosing]


def test_ike_sa_rekeys_on_schedule() -> None:
    ci, cr = configs()
    ci = replace(ci, lifetime=Lifetime(rekey_time=500, life_time=600, rand_time=50))
    p = Pair(ci, replace(cr, lifetime=NEVER))
    p.establish()
    assert p.i.rekey_at is not None and 450 <= p.i.rekey_at <= 500
    old = p.i
    run_until(p, 501)
    (rekeyed,) = [e for e in events(old) if isinstance(e, IkeSaRekeyed)]
    assert old.is_destroyed and rekeyed.new_sa.is_established
    assert rekeyed.new_sa.rekey_at is not None and rekeyed.new_sa.rekey_at > 900


def test_dead_peer_detection() -> None:
    ci, cr = configs()
    p = Pair(replace(ci, dpd_delay=30.0), cr)
    p.establish()
    events(p.i)
    assert p.i.get_timer() == 30.0
    # The peer answers: the SA stays, the next check is 30 s after that answer.
    run_until(p, 31)
    assert p.i.is_established and p.i.tm.my_mid == 3
    p.i.peer_alive(50.0)  # ESP seen at t=50 postpones the next check
    assert p.i.get_timer() == 80.0
    # The peer is gone: retransmissions run out and the IKE SA goes down.
    p.now = 80.0
    p.i.handle_timer(p.now)
    while not p.i.is_destroyed:
        p.i_to_r(drop=True)
        timer = p.i.get_timer()
        assert timer is not None
        p.now = timer
        p.i.handle_timer(p.now)
    downs = [e for e in events(p.i) if isinstance(e, IkeSaDown)]
    assert "not responding" in downs[0].reason


@pytest.mark.parametrize("esn", [False, True])
def test_sequence_number_exhaustion_rekeys_in_time(esn: bool) -> None:
    # RFC 4303 §3.3.3: the outbound counter must never cycle; the dataplane's SaStats.seq
    # of the outbound SA comes in as seq_out, with no byte or packet limit configured.
    ci, cr = configs(esp="aes128gcm16-esn" if esn else "aes128gcm16")
    p = Pair(with_child_life(ci, NEVER), with_child_life(cr, NEVER))
    p.establish()
    events(p.i)
    (spi,) = p.i.children
    space = 2**64 if esn else 2**32
    threshold = seq_rekey_threshold(esn)
    assert space * 15 // 16 - 1 <= threshold < space - 2**20  # rekeys with room to spare
    p.i.child_traffic(spi, 1500 * (threshold - 1), threshold - 1, p.now,
                      seq_out=threshold - 1)  # fmt: skip
    assert p.i.datagrams_to_send(p.now) == []
    if esn:  # a 64-bit counter past 2^32 is nowhere near its end
        p.i.child_traffic(spi, 0, 0, p.now, seq_out=2**32 + 5)
        assert p.i.datagrams_to_send(p.now) == []
    # CREATE_CHILD_SA { N(REKEY_SA), SA, Ni, TSi, TSr } -->
    p.i.child_traffic(spi, 0, 0, p.now, seq_out=threshold)
    (req,) = p.i_to_r()
    assert parse_header(req).exchange == ExchangeType.CREATE_CHILD_SA
    p.i.child_traffic(spi, 0, 0, p.now, seq_out=threshold + 1000)  # once only
    assert p.i.datagrams_to_send(p.now) == []
    # <-- { SA, Nr, TSi, TSr }; then D(ESP, old) -->  <--: the old SA is gone.
    p.r_to_i()
    p.i_to_r()
    p.r_to_i()
    assert [type(e) for e in events(p.i)] == [ChildSaRekeyed, ChildSaClosing, ChildSaDown]
    (new,) = p.i.children
    assert new != spi and p.i.children[new].chosen.esn == esn
