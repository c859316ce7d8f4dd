"""IkeManager: two daemons' worth of IKE SAs wired together in memory."""

from __future__ import annotations

from dataclasses import replace

import pytest
from ikepair import A, B, configs, drain, exchange, shuttle, up_managers

from espfast.control.config import Lifetime
from espfast.control.events import (
    ChildSaClosing,
    ChildSaDown,
    ChildSaUp,
    IkeSaDown,
    IkeSaRekeyed,
    IkeSaUp,
)
from espfast.control.ike_sa import IkeSa
from espfast.control.manager import REPLACE_DELAY, Datagram, IkeManager
from espfast.control.rng import DeterministicRng
from espfast.control.tasks.ike_rekey import REPLACED_GRACE

NEVER = Lifetime(0, 0, 0)


def test_manager_dispatches_by_spi_and_follows_rekeys() -> None:
    ci, cr = configs()
    gw_a = IkeManager([], rng=DeterministicRng("a"), local=A)
    gw_b = IkeManager([cr], rng=DeterministicRng("b"), local=B)
    # Two IKE SAs from a to b at once: each datagram must reach its own SA.
    sa1 = gw_a.initiate(ci, local=A, remote=B, now=0)
    sa2 = gw_a.initiate(ci, local=A, remote=B, now=0)
    shuttle(gw_a, gw_b)
    assert sa1.is_established and sa2.is_established
    ev_a, ev_b = drain(gw_a), drain(gw_b)
    assert [type(e) for e in ev_a].count(IkeSaUp) == 2
    assert [type(e) for e in ev_b].count(ChildSaUp) == 2
    assert len(gw_b.sas) == 2 and len(gw_b.status()) == 2
    # The responder rekeys its IKE SA; the manager swaps in the new one.
    (b_first,) = [sa for sa in gw_b.sas if sa.spi_i == sa1.spi_i]
    b_first.rekey(0)
    shuttle(gw_a, gw_b)
    ev_a, ev_b = drain(gw_a), drain(gw_b)
    assert [type(e) for e in ev_b] == [IkeSaRekeyed]  # the old SA closes quietly
    assert [type(e) for e in ev_a] == [IkeSaRekeyed]
    assert len(gw_a.sas) == 2 and len(gw_b.sas) == 2
    new_b = ev_b[0].new_sa  # type: ignore[attr-defined]
    assert new_b.initiator  # the rekey initiator initiates the new IKE SA (§2.18)
    # Deleting through the new SA reaches the peer's new SA.
    (spi,) = new_b.children
    new_b.delete_child(spi, 0)
    shuttle(gw_a, gw_b)
    assert [type(e) for e in drain(gw_a)] == [ChildSaDown]
    assert [type(e) for e in drain(gw_b)] == [ChildSaClosing, ChildSaDown]
    # Timers: no retransmission outstanding, only the lifetimes (rekey after 1 h less
    # up to 6 min of jitter); an IKE SA deletion leaves no SA behind.
    timer = gw_a.get_timer()
    assert timer is not None and 3600 - 360 <= timer <= 3600
    for sa in gw_a.sas:
        sa.delete(0)
    shuttle(gw_a, gw_b)
    assert gw_a.sas == [] and gw_b.sas == []


def test_manager_retransmits_through_handle_timer() -> None:
    ci, _ = configs()
    gw = IkeManager([], rng=DeterministicRng("a"), local=A)
    gw.initiate(ci, local=A, remote=B, now=0)
    first = gw.datagrams_to_send(0)
    assert gw.get_timer() == 4.0
    gw.handle_timer(4.0)
    assert gw.datagrams_to_send(4.0) == first
    for t in (4.0 + 7.2, 30.0, 60.0, 120.0, 240.0):
        gw.handle_timer(t)
    assert [type(e) for e in drain(gw)] == [IkeSaDown] and gw.sas == []


def test_initial_contact_clears_stale_sas_after_a_peer_restart() -> None:
    # gw_a restarts (its SAs are lost without a DELETE) and connects again:
    # IKE_AUTH { ..., N(INITIAL_CONTACT) } --> ; gw_b drops the stale IKE SA.
    gw_b, _, _, stale, evs = second_client("no", initial_contact=True)
    assert [type(e) for e in evs] == [IkeSaUp, ChildSaUp, ChildSaDown, IkeSaDown]
    assert "INITIAL_CONTACT" in evs[-1].reason  # type: ignore[attr-defined]
    assert stale.is_destroyed and len(gw_b.sas) == 1


def up_pair(seed: str) -> tuple[IkeManager, IkeManager, IkeSa, IkeSa]:
    """Two managers with one IKE SA (and its Child SA) up between them."""
    gw_a, gw_b = up_managers(*configs(), seed)
    (sa_a,) = gw_a.sas
    (sa_b,) = gw_b.sas
    return gw_a, gw_b, sa_a, sa_b


def collide(seed: str) -> bool:
    """Both ends rekey one IKE SA at once; returns whether a's new SA survived."""
    gw_a, gw_b, sa_a, sa_b = up_pair(seed)
    # Both ends rekey the IKE SA at once (RFC 7296 §2.8.2): the requests cross.
    sa_a.rekey(0)
    sa_b.rekey(0)
    shuttle(gw_a, gw_b)
    ev_a, ev_b = drain(gw_a), drain(gw_b)
    assert [type(e) for e in ev_a].count(IkeSaRekeyed) == 2
    assert [type(e) for e in ev_b].count(IkeSaRekeyed) == 2
    # One IKE SA is left on each side, the same one, and it owns the Child SA.
    (left_a,) = gw_a.sas
    (left_b,) = gw_b.sas
    assert (left_a.spi_i, left_a.spi_r) == (left_b.spi_i, left_b.spi_r)
    a_won = left_a.initiator
    assert len(left_a.children) == 1 and len(left_b.children) == 1
    assert not [e for e in ev_a + ev_b if isinstance(e, ChildSaDown)]
    # And it works.
    (spi,) = left_a.children
    left_a.delete_child(spi, 0)
    shuttle(gw_a, gw_b)
    assert [type(e) for e in drain(gw_b)] == [ChildSaDown]

    return a_won


def test_simultaneous_ike_rekey_leaves_one_ike_sa_with_the_child() -> None:
    # The seeds give nonces where either end's exchange has the lowest nonce, so both
    # branches of §2.8.2 run.
    assert {collide(seed) for seed in ("one", "two", "three", "four")} == {True, False}


def test_late_ike_sa_init_copy_does_not_start_another_sa() -> None:
    ci, cr = configs()
    gw_a = IkeManager([], rng=DeterministicRng("a"), local=A)
    gw_b = IkeManager([cr], rng=DeterministicRng("b"), local=B)
    gw_a.initiate(ci, local=A, remote=B, now=0)
    ((init, _, _),) = gw_a.datagrams_to_send(0)
    gw_b.receive_datagram(init, (A[0], 500), 0, B)
    for data, remote, port in gw_b.datagrams_to_send(0):
        gw_a.receive_datagram(data, (B[0], port), 0, remote)
    shuttle(gw_a, gw_b)
    assert len(gw_b.sas) == 1 and gw_b.sas[0].is_established
    gw_b.receive_datagram(init, (A[0], 500), 1, B)  # the network delivers a stale copy
    assert len(gw_b.sas) == 1 and gw_b.datagrams_to_send(1) == []


def test_ike_rekey_collision_holds_the_new_sa_until_settled() -> None:
    """RFC 7296 §2.8.2: the SA made by answering the peer's rekey, while our own rekey
    is under way, may be the one that loses; nothing of ours starts on it until our
    rekey's answer settles which SA stays. Exchanges queued meanwhile land on the
    survivor, on both sides."""
    outcomes = set()
    for seed in ("one", "two", "three", "four"):
        gw_a, gw_b, sa_a, sa_b = up_pair(seed)
        # CREATE_CHILD_SA { SA(IKE), Ni, KEi } from both ends at once; a's goes first.
        sa_a.rekey(0)
        sa_b.rekey(0)
        req_a = gw_a.datagrams_to_send(0)
        req_b = gw_b.datagrams_to_send(0)
        for data, remote, port in req_a:
            gw_b.receive_datagram(data, (A[0], port), 0, remote)
        # b answered a's rekey; the SA it made waits (b's own rekey is unanswered).
        held = [e.new_sa for e in drain(gw_b) if isinstance(e, IkeSaRekeyed)]
        assert len(held) == 1 and held[0].on_hold
        # A new Child SA asked for meanwhile does not start on the held SA.
        sa_b.create_child(sa_b.config.children[0], 0)
        answer = gw_b.datagrams_to_send(0)
        assert len(answer) == 1 and held[0].tm.active is None
        # --> b's rekey request and b's answer to a's both reach a.
        for data, remote, port in req_b + answer:
            gw_a.receive_datagram(data, (B[0], port), 0, remote)
        shuttle(gw_a, gw_b)
        drain(gw_a)
        drain(gw_b)
        (left_a,) = gw_a.sas
        (left_b,) = gw_b.sas
        assert (left_a.spi_i, left_a.spi_r) == (left_b.spi_i, left_b.spi_r)
        assert not left_a.on_hold and not left_b.on_hold
        assert len(left_a.children) == 2
        assert {c.spi_out for c in left_a.children.values()} == set(left_b.children)
        outcomes.add(left_a.initiator)
    assert outcomes == {True, False}  # both branches of §2.8.2 ran


def test_peer_deletes_the_old_sa_while_our_colliding_rekey_waits() -> None:
    """§2.8.2 seen from one side only: a's rekey is answered before b's request reaches
    a, so a sees no collision and deletes the old SA. b, holding the SA it made for a,
    learns from that DELETE that a's SA stays: it is released at once (b's queued
    exchange starts on it), and b's own rekey, refused, is not retried."""
    gw_a, gw_b, sa_a, sa_b = up_pair("late")

    def to_b(sent: list[Datagram]) -> None:
        deliver(gw_b, sent, A[0], 0)

    def to_a(sent: list[Datagram]) -> None:
        deliver(gw_a, sent, B[0], 0)

    sa_a.rekey(0)
    sa_b.rekey(0)
    req_a, req_b = gw_a.datagrams_to_send(0), gw_b.datagrams_to_send(0)
    # CREATE_CHILD_SA { SA(IKE), Ni, KEi } --> reaches b, whose own request is delayed.
    to_b(req_a)
    (held,) = [e.new_sa for e in drain(gw_b) if isinstance(e, IkeSaRekeyed)]
    assert held.on_hold
    sa_b.create_child(sa_b.config.children[0], 0)  # waits with the held SA
    # <-- { SA(IKE), Nr, KEr }: a rekeyed without collision; INFORMATIONAL { D(IKE) } -->
    to_a(gw_b.datagrams_to_send(0))
    to_b(gw_a.datagrams_to_send(0))
    assert not held.on_hold and sa_b.is_destroyed is False
    out_b = gw_b.datagrams_to_send(0)  # <-- { } for the DELETE, CREATE_CHILD_SA on held
    assert len(out_b) == 2
    # b's late rekey request reaches a's closing SA: <-- N(TEMPORARY_FAILURE)
    to_a(req_b)
    to_a(out_b)
    shuttle(gw_a, gw_b)
    ev_a, ev_b = drain(gw_a), drain(gw_b)
    assert not [e for e in ev_a + ev_b if isinstance(e, IkeSaDown)]
    (left_a,) = gw_a.sas
    (left_b,) = gw_b.sas
    assert left_b is held and (left_a.spi_i, left_a.spi_r) == (held.spi_i, held.spi_r)
    assert len(held.children) == 2
    assert {c.spi_out for c in left_a.children.values()} == set(held.children)
    # The refused rekey is not retried in 10-20 s: the held SA keeps its own schedule.
    assert sa_b.is_destroyed and held.rekey_at is not None and held.rekey_at > 1000


def test_ike_rekey_collision_won_closes_the_sa_made_for_the_peer_after_the_grace_period() -> None:
    """§2.8.2 with the answer to b's rekey lost for good: a's rekey wins, so the SA a made
    answering b's is redundant, but b, never answered, does not know it exists and never
    deletes it. The grace period closes it on a, although the input that started the
    grace period was the old SA's (the manager must hear of the redundant SA's new
    deadline), and it counts from then, not from the last time that SA heard anything."""
    ci, cr = (replace(c, lifetime=NEVER, children=(replace(c.children[0], lifetime=NEVER),))
              for c in configs())  # fmt: skip
    gw_a, gw_b = up_managers(ci, cr, "won")
    (sa_a,), (sa_b,) = gw_a.sas, gw_b.sas
    sa_a.rekey(0)
    sa_b.rekey(0)
    req_a, req_b = gw_a.datagrams_to_send(0), gw_b.datagrams_to_send(0)
    deliver(gw_b, req_a, A[0], 0)  # b answers a's rekey (its own is under way)
    deliver(gw_a, req_b, B[0], 0)  # a answers b's rekey...
    (held,) = [e.new_sa for e in drain(gw_a) if isinstance(e, IkeSaRekeyed)]
    assert held.on_hold
    gw_a.datagrams_to_send(0)  # ...and that answer is lost, with every copy after it
    deliver(gw_a, gw_b.datagrams_to_send(1), B[0], 1)  # b's answer: a's rekey wins
    assert held.replaced_by is not None and held.replaced_by.initiator
    assert held.expire_at == 1 + REPLACED_GRACE
    # The link is clean from here: a deletes the old SA, b's rekey on it is never
    # answered, and nobody but the grace period knows of ``held``.
    now = 1.0
    while True:
        shuttle(gw_a, gw_b, now)
        timers = [t for t in (gw_a.get_timer(), gw_b.get_timer()) if t is not None]
        if not timers:
            break
        now = max(now, min(timers))
        gw_a.handle_timer(now)
        gw_b.handle_timer(now)
    assert held.is_destroyed
    (left_a,), (left_b,) = gw_a.sas, gw_b.sas
    assert (left_a.spi_i, left_a.spi_r) == (left_b.spi_i, left_b.spi_r)
    assert {c.spi_out for c in left_a.children.values()} == set(left_b.children)


def deliver(gw: IkeManager, sent: list[Datagram], host: str, now: float) -> None:
    """What the other manager sent (from ``host``) reaches ``gw``."""
    for data, remote, port in sent:
        gw.receive_datagram(data, (host, port), now, remote)


def second_client(
    policy: str, *, host: str = A[0], initial_contact: bool = False
) -> tuple[IkeManager, IkeManager, IkeManager, IkeSa, list[object]]:
    """gw_b (unique = ``policy``) has an IKE SA with a client at A; then a second client
    with the same identity connects from ``host``. Returns gw_b, the two clients, gw_b's
    first IKE SA and gw_b's events for the second."""
    ci, cr = configs()
    cr = replace(cr, unique=policy)
    gw_b = IkeManager([cr], rng=DeterministicRng("b"), local=B)
    first = IkeManager([], rng=DeterministicRng("a1"), local=A)
    first.initiate(ci, local=A, remote=B, now=0)
    shuttle(first, gw_b)
    drain(gw_b)
    (old,) = gw_b.sas
    second = IkeManager([], rng=DeterministicRng("a2"), local=(host, 500))
    second.initiate(replace(ci, initial_contact=initial_contact), local=(host, 500), remote=B,
                    now=1)  # fmt: skip
    exchange(gw_b, [(first, A[0]), (second, host)], now=1)
    return gw_b, first, second, old, drain(gw_b)


def test_unique_no_keeps_duplicates() -> None:
    gw_b, _, _, old, evs = second_client("no", host="198.18.0.3")
    assert [type(e) for e in evs] == [IkeSaUp, ChildSaUp]
    assert len(gw_b.sas) == 2 and old.is_established


def test_unique_never_ignores_initial_contact() -> None:
    gw_b, _, _, old, evs = second_client("never", initial_contact=True)
    assert [type(e) for e in evs] == [IkeSaUp, ChildSaUp]
    assert len(gw_b.sas) == 2 and old.is_established


def test_unique_replace_from_another_address_deletes_the_old_sa_at_once() -> None:
    gw_b, _, _, old, evs = second_client("replace", host="198.18.0.3")
    # Up, and the old one deleted (the first client confirmed).
    assert [type(e) for e in evs] == [IkeSaUp, ChildSaUp, ChildSaClosing, ChildSaDown, IkeSaDown]
    assert old.is_destroyed
    (left,) = gw_b.sas
    assert left.remote[0] == "198.18.0.3"


def test_unique_replace_from_the_same_address_deletes_the_old_sa_later() -> None:
    """Likely the peer reauthenticating (make-before-break): it deletes the old IKE SA
    itself; if it does not, REPLACE_DELAY later gw_b does."""
    gw_b, first, _, old, evs = second_client("replace")
    assert [type(e) for e in evs] == [IkeSaUp, ChildSaUp]
    assert old.is_established and len(gw_b.sas) == 2
    timer = gw_b.get_timer()
    assert timer is not None and timer <= 1 + REPLACE_DELAY
    gw_b.handle_timer(1 + REPLACE_DELAY - 0.1)
    assert old.is_established
    gw_b.handle_timer(1 + REPLACE_DELAY)
    exchange(gw_b, [(first, A[0])], now=1 + REPLACE_DELAY)
    assert [type(e) for e in drain(gw_b)] == [ChildSaClosing, ChildSaDown, IkeSaDown]
    assert old.is_destroyed and len(gw_b.sas) == 1


def test_unique_replace_spares_the_old_sa_when_the_new_one_went_first() -> None:
    gw_b, _, second, old, _ = second_client("replace")
    (fresh,) = [sa for sa in gw_b.sas if sa is not old]
    fresh.delete(2)
    exchange(gw_b, [(second, A[0])], now=2)
    gw_b.handle_timer(1 + REPLACE_DELAY)
    assert old.is_established and gw_b.sas == [old]


@pytest.mark.parametrize("policies", [("replace", "no"), ("replace", "replace")])
@pytest.mark.parametrize("seed", ["1", "2", "3", "4"])
def test_unique_replace_settles_two_ike_sas_set_up_at_once(
    policies: tuple[str, str], seed: str
) -> None:
    """Both ends initiate at once (as both ends reauthenticating at once do): two IKE SAs
    with the same identities. REPLACE_DELAY later one is left, the same on both sides,
    whether the other end does nothing about duplicates (strongSwan's unique = no) or
    the same as this one."""
    ci, cr = configs()
    ci, cr = replace(ci, unique=policies[0]), replace(cr, unique=policies[1])
    gw_a = IkeManager([ci], rng=DeterministicRng("a" + seed), local=A)
    gw_b = IkeManager([cr], rng=DeterministicRng("b" + seed), local=B)
    gw_a.initiate(ci, local=A, remote=B, now=0)
    gw_b.initiate(cr, local=B, remote=A, now=0)
    shuttle(gw_a, gw_b)
    assert len(gw_a.sas) == len(gw_b.sas) == 2
    for t in (REPLACE_DELAY, REPLACE_DELAY + 1):
        for gw in (gw_a, gw_b):
            gw.handle_timer(t)
        shuttle(gw_a, gw_b, now=t)
    (left_a,) = gw_a.sas
    (left_b,) = gw_b.sas
    assert (left_a.spi_i, left_a.spi_r) == (left_b.spi_i, left_b.spi_r)
    assert len(left_a.children) == len(left_b.children) == 1


def test_unique_keep_refuses_a_second_sa_from_another_address() -> None:
    gw_b, _, second, old, evs = second_client("keep", host="198.18.0.3")
    assert not [e for e in evs if isinstance(e, IkeSaUp)]
    assert gw_b.sas == [old] and old.is_established
    down = [e for e in drain(second) if isinstance(e, IkeSaDown)]
    assert down and "AUTHENTICATION_FAILED" in down[0].reason


def test_unique_keep_lets_a_reauthentication_from_the_same_address_in() -> None:
    gw_b, _, _, old, evs = second_client("keep")
    assert [type(e) for e in evs] == [IkeSaUp, ChildSaUp]
    assert len(gw_b.sas) == 2 and old.is_established
