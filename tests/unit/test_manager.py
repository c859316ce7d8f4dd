"""IkeManager: two daemons' worth of IKE SAs wired together in memory."""

from __future__ import annotations

from ikepair import A, B, configs

from espfast.control.events import (
    ChildSaDown,
    ChildSaUp,
    IkeSaDown,
    IkeSaRekeyed,
    IkeSaUp,
)
from espfast.control.manager import IkeManager
from espfast.control.rng import DeterministicRng


def shuttle(a: IkeManager, b: IkeManager, now: float = 0.0, rounds: int = 10) -> None:
    """Deliver datagrams both ways until both managers are quiet."""
    for _ in range(rounds):
        moved = False
        for src, dst, src_host in ((a, b, A[0]), (b, a, B[0])):
            for data, remote, local_port in src.datagrams_to_send(now):
                moved = True
                dst.receive_datagram(data, (src_host, local_port), now, (remote[0], remote[1]))
        if not moved:
            return


def drain(m: IkeManager) -> list[object]:
    out = []
    while (e := m.next_event()) is not None:
        out.append(e)
    return out


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
    assert [type(e) for e in ev_b] == [IkeSaRekeyed, IkeSaDown]
    assert [type(e) for e in ev_a] == [IkeSaRekeyed, IkeSaDown]
    assert len(gw_a.sas) == 2 and len(gw_b.sas) == 2
    new_b = ev_b[0].new_sa  # type: ignore[attr-defined]
    assert new_b.initiator  # the rekey initiator initiates the new IKE SA (§2.18)
    # Deleting through the new SA reaches the peer's new SA.
    (spi,) = new_b.children
    new_b.delete_child(spi, 0)
    shuttle(gw_a, gw_b)
    assert [type(e) for e in drain(gw_a)] == [ChildSaDown]
    assert [type(e) for e in drain(gw_b)] == [ChildSaDown]
    # Timers: nothing outstanding; an IKE SA deletion leaves no SA behind.
    assert gw_a.get_timer() is None
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
