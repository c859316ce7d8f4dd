"""IKE SA rekeying with CREATE_CHILD_SA (RFC 7296 §1.3.2, §2.18):

  CREATE_CHILD_SA { SA(IKE, SPIi'), Ni, KEi } -->
                                <-- { SA(IKE, SPIr'), Nr, KEr }
  then, on the old IKE SA:   INFORMATIONAL { D(IKE) } -->   <-- { }

Simultaneous rekeying from both ends (§2.8.2): the new SA made with the lowest of the
four nonces is closed by its initiator, the other keeps the Child SAs.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..constants import ExchangeType, NotifyType, ProtocolId
from ..crypto import KeyExchange, check_public_value
from ..errors import PeerError, RemoteProtocolError
from ..message import Message, check_rules
from ..payloads import DeletePayload, KePayload, NoncePayload, Payload, SaPayload
from ..proposals import Chosen, accept_choice, select
from .base import Task
from .ike_init import NONCE_LEN
from .informational import Informational

if TYPE_CHECKING:
    from ..ike_sa import IkeSa


REPLACED_GRACE = 240.0  # seconds a rekeyed IKE SA waits for the peer's DELETE (its retransmissions)


def _hand_over(loser: IkeSa, winner: IkeSa, now: float) -> None:
    """§2.8.2: the redundant new IKE SA gives its Child SAs and queued exchanges to the
    one that stays, and forwards whatever still lands on it."""
    winner.children.update(loser.children)
    loser.children = {}
    loser.move_queue(winner)
    loser.replaced_by = winner
    loser.rekey_at = None
    # Should its DELETE never come (the peer may not even know the loser: its own
    # rekey's answer can be lost for good), the grace period closes it. ``now``, not
    # loser.now: the loser may have heard nothing for a while.
    loser.expire_at = now + REPLACED_GRACE
    loser.timers_changed()  # (the input being handled is the old SA's, not the loser's)
    winner.timers_changed()


class IkeRekey(Task):
    exchange = ExchangeType.CREATE_CHILD_SA

    def __init__(self, sa: IkeSa, initiator: bool) -> None:
        super().__init__(sa, initiator)
        self.group = sa.chosen.dh if sa.chosen else sa.config.ike_proposals[0].dh[0]
        self.ke: KeyExchange | None = None
        self.nonce = b""
        self.spi = 0  # our SPI in the new IKE SA
        self.chosen: Chosen | None = None
        self.peer_spi = 0
        self.peer_nonce = b""
        self.shared = b""

    def build(self) -> list[Payload]:
        sa = self.sa
        if not self.nonce:
            self.nonce = sa.rng.random_bytes(NONCE_LEN)
        if not self.spi:
            self.spi = int.from_bytes(sa.rng.random_bytes(8), "big") or 1
        spi = self.spi.to_bytes(8, "big")
        if self.initiator:
            if self.ke is None or self.ke.group != self.group:
                self.ke = KeyExchange(self.group, sa.rng)
            # Our group first in every proposal that has it: the KE matches what we ask.
            specs = [replace(s, dh=(self.group, *[g for g in s.dh if g != self.group]))
                     for s in sa.config.ike_proposals if self.group in s.dh]  # fmt: skip
            props = tuple(s.to_proposal(i + 1, spi) for i, s in enumerate(specs))
            return [SaPayload(props), NoncePayload(self.nonce),
                    KePayload(self.group, self.ke.public)]  # fmt: skip
        assert self.chosen is not None and self.ke is not None
        return [SaPayload((self.chosen.to_proposal(spi),)), NoncePayload(self.nonce),
                KePayload(self.ke.group, self.ke.public)]  # fmt: skip

    def process(self, msg: Message, raw: bytes) -> bool:
        sa = self.sa
        if self.initiator:
            invalid_ke = msg.notify(NotifyType.INVALID_KE_PAYLOAD)
            if invalid_ke is not None and len(invalid_ke.data) == 2:
                group = int.from_bytes(invalid_ke.data, "big")
                if group != self.group and any(group in s.dh for s in sa.config.ike_proposals):
                    self.group = group
                    return False
            err = msg.error_notify()
            if err is not None:
                raise PeerError(f"peer refused to rekey the IKE SA ({err.notify_type})",
                                err.notify_type)  # fmt: skip
            check_rules(msg)
            sa_p, nonce, ke = msg.need(SaPayload), msg.need(NoncePayload), msg.need(KePayload)
            chosen = accept_choice(sa.config.ike_proposals, sa_p.proposals)
            if len(chosen.spi) != 8 or ke.group != self.group or chosen.dh != self.group:
                raise RemoteProtocolError("bad IKE SA rekey response")
            assert self.ke is not None
            shared = self.ke.shared(ke.data)
            peer_spi = int.from_bytes(chosen.spi, "big")
            collision = sa.peer_ike_rekey
            new = sa.rekeyed(initiator=True, spi_i=self.spi, spi_r=peer_spi, chosen=chosen,
                             ni=self.nonce, nr=nonce.data, shared=shared, now=sa.now)  # fmt: skip
            if collision is not None and min(self.nonce, nonce.data) < collision[0]:
                # §2.8.2: both ends rekeyed at once and ours has the lowest nonce: our
                # new SA is redundant, we close it; the peer deletes the old one.
                theirs = collision[1]
                _hand_over(new, theirs, sa.now)
                sa.replaced_by = theirs
                new.tm.queue.insert(0, Informational(new, True, (DeletePayload(ProtocolId.IKE),)))
                new.tm.initiate(sa.now)
                theirs.release(sa.now)
                return True
            if collision is not None:
                # Ours wins: the Child SAs live on in our new SA; the peer closes its own
                # (or, should its DELETE never come, we do after a grace period).
                _hand_over(collision[1], new, sa.now)
                collision[1].on_hold = False
            # The rekey initiator deletes the old IKE SA (§1.3.2).
            sa.tm.queue.insert(0, Informational(sa, True, (DeletePayload(ProtocolId.IKE),)))
            new.tm.initiate(sa.now)
            return True
        busy = sa.tm.active is not None and not isinstance(sa.tm.active, IkeRekey)
        if sa.replaced_by is not None or sa.is_deleting or busy:
            # §2.25.2: this IKE SA was already rekeyed or is closing; or a request of ours
            # is still in flight on it, whose answer must not land on a deleted SA.
            raise RemoteProtocolError("IKE SA already rekeyed, closing or busy",
                                      notify=NotifyType.TEMPORARY_FAILURE)  # fmt: skip
        check_rules(msg)
        sa_p, nonce, ke = msg.need(SaPayload), msg.need(NoncePayload), msg.need(KePayload)
        usable = [replace(s, dh=(ke.group,)) for s in sa.config.ike_proposals if ke.group in s.dh]
        try:
            self.chosen = select(usable, sa_p.proposals)
        except RemoteProtocolError:
            chosen = select(sa.config.ike_proposals, sa_p.proposals)
            raise RemoteProtocolError(
                f"IKE rekey KE for group {ke.group}, we want {chosen.dh}",
                notify=NotifyType.INVALID_KE_PAYLOAD, notify_data=chosen.dh.to_bytes(2, "big"),
            ) from None  # fmt: skip
        if len(self.chosen.spi) != 8:
            raise RemoteProtocolError("IKE SA rekey proposal without an 8-byte SPI")
        self.peer_spi = int.from_bytes(self.chosen.spi, "big")
        self.peer_nonce = nonce.data
        check_public_value(ke.group, ke.data)  # before our own key costs anything
        self.ke = KeyExchange(self.chosen.dh, sa.rng)
        self.shared = self.ke.shared(ke.data)
        return True

    def responded(self, raw: bytes) -> None:
        assert self.chosen is not None
        sa = self.sa
        ours_under_way = isinstance(sa.tm.active, IkeRekey)
        # §2.8.2: with our own rekey under way, the SA made here may lose the collision
        # and be deleted by the peer: it starts nothing (our queued exchanges wait on the
        # old SA) until our rekey's answer settles which SA stays.
        new = sa.rekeyed(initiator=False, spi_i=self.peer_spi, spi_r=self.spi,
                         chosen=self.chosen, ni=self.peer_nonce, nr=self.nonce,
                         shared=self.shared, now=sa.now, on_hold=ours_under_way)  # fmt: skip
        if ours_under_way:
            sa.peer_ike_rekey = (min(self.peer_nonce, self.nonce), new)
        else:
            new.tm.initiate(sa.now)

    def failed(self, reason: str) -> None:
        sa = self.sa
        sa.log(f"IKE SA rekeying failed: {reason}")
        collision = sa.peer_ike_rekey
        if collision is not None and sa.replaced_by is collision[1]:
            # The peer's rekey, which we answered meanwhile, stands alone: its SA stays.
            sa.peer_ike_rekey = None
            collision[1].release(sa.now, queue_from=sa)
            return
        if sa.replaced_by is None:
            sa.retry_rekey_later()
