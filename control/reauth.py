"""Reauthentication, make-before-break (RFC 7296 §2.8.3; strongSwan's reauth_time with
make_before_break): a new IKE SA is set up from scratch beside the old one,

  new IKE SA:  IKE_SA_INIT -->  <--   IKE_AUTH { IDi, AUTH, SA, TSi, TSr } -->  <--
               CREATE_CHILD_SA { SA, Ni, TSi, TSr } -->  <--   (each further Child SA)
  old IKE SA:  INFORMATIONAL { D(IKE) } -->  <--

Each Child SA of the old IKE SA is re-created on the new one and announced as a rekey of
its predecessor (ChildSaRekeyed), so the shell installs the new SAs before the old ones
go; only when every re-creation has ended is the old IKE SA deleted.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from .child_sa import ChildSa
from .events import IkeSaReauthenticating
from .tasks.child_create import CreateChild
from .tasks.ike_rekey import IkeRekey

if TYPE_CHECKING:
    from .ike_sa import IkeSa


def start(old: IkeSa, now: float) -> IkeSa | None:
    """Begin reauthenticating ``old``; returns the new IKE SA (None: nothing to do)."""
    from .ike_sa import IkeSa

    if old.reauth_by is not None or old.replaced_by is not None or not old.is_established:
        return None
    if old.is_deleting or old.on_hold or old.reauth_of is not None:
        return None  # closing, unsettled, or itself still replacing another
    if any(isinstance(t, IkeRekey) for t in (old.tm.active, *old.tm.queue)):
        old.retry_reauth_later()  # one replacement at a time: after the rekey
        return None
    names = [c.name for c in old.children.values()]
    known = {c.name for c in old.config.children}
    names = [n for n in names if n in known] or [c.name for c in old.config.children[:1]]
    if not names:
        return None
    # Not the first contact: the peer must not drop the old SA before we do.
    config = replace(old.config, initial_contact=False)
    new = IkeSa.initiate(config, local=old.local, remote=old.remote, rng=old.rng, now=now,
                         child=old._child_config(names[0]),
                         ike_sa_id=old.ike_sa_id)  # fmt: skip
    new.reauth_of = old
    new.first_local, new.first_remote = old.first_local, old.first_remote
    old.reauth_by = new
    old.rekey_at = old.reauth_at = None  # the new SA takes over these
    for name in names[1:]:
        new.tm.queue.append(CreateChild(new, True, old._child_config(name)))
    old.log(f"reauthenticating: new IKE SA {new.spi_i:016x}_i")
    old.emit(IkeSaReauthenticating(old.ike_sa_id, old.config.name, new))
    return new


def predecessor(new: IkeSa, child: ChildSa) -> ChildSa | None:
    """The old IKE SA's Child SA that ``child`` (made on the new IKE SA) re-creates."""
    old = new.reauth_of
    if old is None:
        return None
    for candidate in old.current.children.values():
        if candidate.name == child.name and candidate.spi_in not in new.reauth_done:
            new.reauth_done.add(candidate.spi_in)
            return candidate
    return None


def step(new: IkeSa, now: float) -> None:
    """Between exchanges of the new IKE SA: once it is up and no re-creation is left,
    the old IKE SA goes (its exchanges not yet started move over)."""
    old = new.reauth_of
    if old is None or not new.is_established:
        return
    if any(isinstance(t, CreateChild) for t in new.tm.queue):
        return
    new.reauth_of = None
    old.reauth_by = None
    if old.is_destroyed:
        return
    old.log(f"reauthenticated as {new.spi_i:016x}_i {new.spi_r:016x}_r: deleting the old SA")
    old.move_queue(new)
    old.replaced_by = new  # closes quietly; the IKE SA lives on in the new one
    old.superseded = True
    old.expire_at = None
    old._delete_self(now)


def failed(new: IkeSa, reason: str) -> None:
    """The new IKE SA failed before it was up: the old one carries on, and tries again
    in a while (as a failed rekey does, RFC 7296 §2.25)."""
    old = new.reauth_of
    new.reauth_of = None
    if old is None or old.is_destroyed:
        return
    old.reauth_by = None
    old.log(f"reauthentication failed: {reason}")
    old.retry_reauth_later()
