"""IkeManager.reconfigure (a reload): the responder answers for the new connections,
half-open IKE SAs choose among them only, and start_children / terminate act on one
connection's IKE SAs."""

from __future__ import annotations

from dataclasses import replace

from ikepair import A, B, configs, drain, shuttle

from espfast.control.events import ChildSaUp, IkeSaDown, IkeSaUp
from espfast.control.manager import IkeManager
from espfast.control.rng import DeterministicRng


def half_open() -> tuple[IkeManager, IkeManager]:
    """a's IKE_SA_INIT request has reached b (b holds a half-open IKE SA), no more."""
    ci, cr = configs()
    gw_a = IkeManager([], rng=DeterministicRng("a"), local=A)
    gw_b = IkeManager([cr], rng=DeterministicRng("b"), local=B)
    gw_a.initiate(ci, local=A, remote=B, now=0)
    for data, _, port in gw_a.datagrams_to_send(0):
        gw_b.receive_datagram(data, (A[0], port), 0, local=(B[0], port))
    assert len(gw_b.sas) == 1 and not gw_b.sas[0].is_established
    return gw_a, gw_b


def test_half_open_sas_authenticate_against_the_new_configuration() -> None:
    gw_a, gw_b = half_open()
    old = gw_b.sas[0].config
    new = replace(old, dpd_delay=7.0)  # the same connection, changed
    gw_b.reconfigure([new], cookie_threshold=3, half_open_limit=9)
    assert gw_b.responder is not None and gw_b.responder.configs == (new,)
    assert (gw_b.responder.cookie_threshold, gw_b.responder.half_open_limit) == (3, 9)
    shuttle(gw_a, gw_b)
    (sa,) = gw_b.sas
    assert sa.is_established and sa.config is new
    assert [type(e) for e in drain(gw_b)] == [IkeSaUp, ChildSaUp]


def test_no_connection_left_to_answer_for_drops_half_open_sas() -> None:
    _, gw_b = half_open()
    gw_b.reconfigure([], cookie_threshold=10, half_open_limit=1000)
    assert gw_b.responder is None and gw_b.sas == []
    assert [type(e) for e in drain(gw_b)] == [IkeSaDown]


def test_start_children_and_terminate() -> None:
    ci, cr = configs()
    gw_a = IkeManager([], rng=DeterministicRng("a"), local=A)
    gw_b = IkeManager([cr], rng=DeterministicRng("b"), local=B)
    sa = gw_a.start_children(ci, ci.children, local=A, remote=B, now=0)
    shuttle(gw_a, gw_b)
    assert sa.is_established and gw_a.connection_sas(ci.name) == [sa]
    drain(gw_a)
    # Again: the child is there, nothing is negotiated, the same IKE SA answers.
    assert gw_a.start_children(ci, ci.children, local=A, remote=B, now=0) is sa
    shuttle(gw_a, gw_b)
    assert drain(gw_a) == [] and len(sa.children) == 1
    assert gw_a.terminate("other", 0) == []
    assert gw_a.terminate(ci.name, 0) == [sa]
    shuttle(gw_a, gw_b)
    assert gw_a.sas == [] and gw_b.sas == []
    assert any(isinstance(e, IkeSaDown) and e.cause == "local" for e in drain(gw_a))
