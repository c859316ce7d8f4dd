"""Reauthentication on reauth_time (RFC 7296 §2.8.3), make-before-break: a new IKE SA
with fresh IKE_SA_INIT/IKE_AUTH and re-created Child SAs comes up before the old IKE SA
is deleted. Two managers in memory, the clock injected."""

from __future__ import annotations

from dataclasses import replace

from ikepair import A, B, configs, drain, shuttle

from espfast.control.config import AuthConfig, IkeConfig, Lifetime
from espfast.control.constants import ExchangeType
from espfast.control.events import (
    ChildSaDown,
    ChildSaRekeyed,
    ChildSaUp,
    IkeSaDown,
    IkeSaReauthenticating,
    IkeSaUp,
)
from espfast.control.manager import IkeManager
from espfast.control.message import parse_header
from espfast.control.rng import DeterministicRng

REAUTH = Lifetime(rekey_time=0, life_time=0, rand_time=60, reauth_time=3600)
NEVER = Lifetime(0, 0, 0)


def life(cfg: IkeConfig, ike: Lifetime) -> IkeConfig:
    """``ike`` for the IKE SA; Child SAs that never rekey on their own."""
    return replace(cfg, lifetime=ike, children=(replace(cfg.children[0], lifetime=NEVER),))


def gateways(ci: IkeConfig, cr: IkeConfig) -> tuple[IkeManager, IkeManager]:
    gw_a = IkeManager([], rng=DeterministicRng("a"), local=A)
    gw_b = IkeManager([cr], rng=DeterministicRng("b"), local=B)
    gw_a.initiate(ci, local=A, remote=B, now=0)
    shuttle(gw_a, gw_b)
    (sa,) = gw_a.sas
    # A second Child SA: CREATE_CHILD_SA { SA, Ni, TSi, TSr } -->  <-- { SA, Nr, TSi, TSr }
    sa.create_child(ci.children[0], 0)
    shuttle(gw_a, gw_b)
    drain(gw_a)
    drain(gw_b)
    return gw_a, gw_b


def send_a(gw_a: IkeManager, gw_b: IkeManager, now: float) -> list[int]:
    """Deliver what gateway a has to send; returns the exchange types."""
    sent = gw_a.datagrams_to_send(now)
    for data, remote, port in sent:
        gw_b.receive_datagram(data, (A[0], port), now, remote)
    return [parse_header(d).exchange for d, _, _ in sent]


def test_reauthentication_is_make_before_break() -> None:
    ci, cr = configs()
    gw_a, gw_b = gateways(life(ci, REAUTH), life(cr, NEVER))
    (old,) = gw_a.sas
    (old_b,) = gw_b.sas
    old_children = {spi: c.spi_out for spi, c in old.children.items()}
    assert len(old_children) == 2
    assert old.reauth_at is not None and 3540 <= old.reauth_at <= 3600
    assert gw_a.get_timer() == old.reauth_at
    now = old.reauth_at
    gw_a.handle_timer(now)
    # A new IKE SA from scratch: IKE_SA_INIT { SA, KEi, Ni } --> ...
    (reauth,) = drain(gw_a)
    assert isinstance(reauth, IkeSaReauthenticating)
    new = reauth.new_sa
    assert new.ike_sa_id == old.ike_sa_id and new.spi_i != old.spi_i
    assert not new.config.initial_contact  # the peer must keep the old SA until we delete it
    assert send_a(gw_a, gw_b, now) == [ExchangeType.IKE_SA_INIT]
    shuttle(gw_a, gw_b, now)
    assert new.is_established and old.is_destroyed and not old_b.children
    # ... IKE_AUTH { IDi, AUTH, SA, TSi, TSr } -->: the peer checked our credentials anew.
    assert new.peer_id is not None and len(new.children) == 2
    ev_a = drain(gw_a)
    # Make-before-break: each Child SA is re-created (announced as a rekey of the old
    # one) before the old IKE SA's INFORMATIONAL { D(IKE) } takes the old ones down;
    # the IKE SA itself never goes down for the shell.
    kinds = [type(e) for e in ev_a]
    assert kinds == [IkeSaUp, ChildSaRekeyed, ChildSaRekeyed, ChildSaDown, ChildSaDown]
    rekeyed = [e for e in ev_a if isinstance(e, ChildSaRekeyed)]
    assert {e.old_spi_in for e in rekeyed} == set(old_children)
    assert {e.new.spi_in for e in rekeyed} == set(new.children)
    downs = [e for e in ev_a if isinstance(e, ChildSaDown)]
    assert {e.spi_in for e in downs} == set(old_children)
    assert all(e.ike_sa_id == old.ike_sa_id for e in ev_a)  # type: ignore[attr-defined]
    # The peer sees a new IKE SA with new Child SAs, then the old one deleted.
    ev_b = [type(e) for e in drain(gw_b)]
    assert ev_b == [IkeSaUp, ChildSaUp, ChildSaUp, ChildSaDown, ChildSaDown, IkeSaDown]
    (left_b,) = gw_b.sas
    assert (left_b.spi_i, left_b.spi_r) == (new.spi_i, new.spi_r)
    assert {c.spi_out for c in new.children.values()} == set(left_b.children)
    # The next reauthentication is scheduled on the new IKE SA.
    assert new.reauth_at is not None and new.reauth_at > now + 3500


def test_failed_reauthentication_keeps_the_old_ike_sa_and_retries() -> None:
    ci, cr = configs()
    gw_a, gw_b = gateways(life(ci, REAUTH), life(cr, NEVER))
    (old,) = gw_a.sas
    # The peer's credentials changed meanwhile: the fresh IKE_AUTH fails.
    assert gw_b.responder is not None
    bad = replace(life(cr, NEVER), auth=AuthConfig(psk=b"another-secret"))
    gw_b.responder.configs = (bad,)
    now = old.reauth_at
    assert now is not None
    gw_a.handle_timer(now)
    # IKE_SA_INIT -->  <--   IKE_AUTH -->  <-- N(AUTHENTICATION_FAILED)
    assert send_a(gw_a, gw_b, now) == [ExchangeType.IKE_SA_INIT]
    shuttle(gw_a, gw_b, now)
    ev_a = drain(gw_a)
    assert [type(e) for e in ev_a] == [IkeSaReauthenticating]
    new = ev_a[0].new_sa  # type: ignore[union-attr]
    assert new.is_destroyed and not old.is_destroyed and len(old.children) == 2
    # No IkeSaDown: the IKE SA (the old one) carries on, and tries again in 10-20 s.
    assert old.reauth_at is not None and now + 10 <= old.reauth_at <= now + 20
    assert old.reauth_by is None and gw_a.sas == [old]


def test_only_the_initiator_reauthenticates_on_schedule() -> None:
    # Both ends configured with reauth_time: only the end that set the IKE SA up acts,
    # also after the responder rekeyed the IKE SA, so they never reauthenticate at once.
    ci, cr = configs()
    gw_a, gw_b = gateways(life(ci, REAUTH), life(cr, REAUTH))
    (sa_b,) = gw_b.sas
    assert sa_b.reauth_at is None and gw_a.sas[0].reauth_at is not None
    # CREATE_CHILD_SA { SA(IKE) ... } from b: b is the new IKE SA's initiator, a still
    # the one that reauthenticates.
    sa_b.rekey(1)
    shuttle(gw_a, gw_b, 1)
    (new_a,) = gw_a.sas
    (new_b,) = gw_b.sas
    assert new_b.initiator and not new_a.initiator
    assert new_b.reauth_at is None and new_a.reauth_at is not None
