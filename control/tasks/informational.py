"""INFORMATIONAL (RFC 7296 §1.4): Delete payloads, liveness checks, error notifications.

INFORMATIONAL { [N,] [D,] [CP,] ... } -->
                               <-- { [N,] [D,] [CP,] ... }
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from ..constants import ExchangeType, NotifyType, ProtocolId, is_error_notify
from ..events import PeerAddressChanged
from ..message import Message, check_rules
from ..payloads import DeletePayload, NotifyPayload, Payload
from .base import Task
from .ike_init import detect_nat, natd_notifies
from .mobike import ReturnRoutability, no_nats_data, take_peer_addresses

if TYPE_CHECKING:
    from ..ike_sa import IkeSa


class Informational(Task):
    """Initiator: sends ``payloads`` (a Delete, a notify, or nothing for a liveness
    check). Responder: honours Delete payloads and answers as §1.4.1 says."""

    exchange = ExchangeType.INFORMATIONAL

    def __init__(self, sa: IkeSa, initiator: bool, payloads: tuple[Payload, ...] = ()) -> None:
        super().__init__(sa, initiator)
        self.payloads = payloads
        self.answer: list[Payload] = []
        self.delete_ike = False

    def build(self) -> list[Payload]:
        if self.initiator:
            if any(isinstance(p, DeletePayload) and p.protocol == ProtocolId.IKE
                   for p in self.payloads):  # fmt: skip
                self.sa.deleting()
            return list(self.payloads)
        return self.answer

    def process(self, msg: Message, raw: bytes) -> bool:
        check_rules(msg)
        sa = self.sa
        if self.initiator:
            if self.sa.is_deleting:
                sa.destroy(sa.close_reason or "deleted")
                return True
            for d in msg.all(DeletePayload):
                if d.protocol == ProtocolId.ESP:
                    for spi in d.spis:
                        sa.child_deleted_by_peer(int.from_bytes(spi, "big"))
            for spi_in in self._our_deleted_spis():
                sa.remove_child(spi_in, "deleted")
            return True
        for d in msg.all(DeletePayload):
            if d.protocol == ProtocolId.IKE:
                # §1.4.1: answer with an empty INFORMATIONAL, then the IKE SA is gone.
                self.delete_ike = True
                self.answer = []
                return True
            if d.protocol == ProtocolId.ESP:
                ours = []
                for spi in d.spis:
                    mine = sa.child_deleted_by_peer(int.from_bytes(spi, "big"))
                    if mine is not None:
                        ours.append(mine.to_bytes(4, "big"))
                    elif sa.tm.active is not None:
                        # Perhaps the SA our outstanding CREATE_CHILD_SA is creating: its
                        # response may come after this DELETE (reordering).
                        sa.early_deletes.add(int.from_bytes(spi, "big"))
                if ours:
                    self.answer.append(DeletePayload(ProtocolId.ESP, tuple(ours)))
        if sa.mobike:
            take_peer_addresses(sa, msg)  # §3.6 (encrypted and authenticated: the peer's)
        if sa.mobike and msg.notify(NotifyType.UPDATE_SA_ADDRESSES) is not None:
            self._update_addresses(msg)
        else:
            if sa.mobike and msg.notify(NotifyType.NAT_DETECTION_SOURCE_IP) is not None:
                # RFC 4555 §3.8: a liveness check watching the NAT; our DESTINATION hash
                # names where the check came from, so the peer notices a new mapping.
                # Nothing moves until it says so with UPDATE_SA_ADDRESSES.
                self.answer += natd_notifies(sa, sa.spi_r, sa.request_from)
            cookie2 = msg.notify(NotifyType.COOKIE2)
            if sa.mobike and cookie2 is not None:  # §3.6: a return routability check
                self.answer.append(NotifyPayload(NotifyType.COOKIE2, cookie2.data))
        for n in msg.all(NotifyPayload):
            if n.notify_type == NotifyType.AUTHENTICATION_FAILED or (
                is_error_notify(n.notify_type) and not sa.is_established
            ):
                self.delete_ike = True
        return True

    def _update_addresses(self, msg: Message) -> None:
        """RFC 4555 §3.5, as responder: the initiator moved (a road warrior changed
        networks) and says so from its new address. The IKE SA and its Child SAs follow
        it there (PeerAddressChanged: the shell points the outbound SAs at it); the
        answer carries our NAT detection for the new path and echoes COOKIE2 (§3.6)."""
        sa = self.sa
        no_nats = msg.notify(NotifyType.NO_NATS_ALLOWED)
        if no_nats is not None and not hmac.compare_digest(
            no_nats.data, no_nats_data(sa.request_from, sa.local)
        ):
            # §3.9: the peer sent from addresses that reached us translated.
            sa.log("UPDATE_SA_ADDRESSES with NO_NATS_ALLOWED came through a NAT: not moving")
            self.answer.append(NotifyPayload(NotifyType.UNEXPECTED_NAT_DETECTED))
            return
        framing = sa.esp_in_udp
        moving = sa.request_from != sa.remote
        if moving:
            # IKE follows at once (the answer goes there anyway); ESP once the peer
            # answers a return routability check there (§3.5, §5.2: an authenticated
            # peer must not point our traffic at someone else's address).
            sa.remote = sa.request_from
            sa.tm.queue.append(ReturnRoutability(sa, sa.request_from))  # after our answer
        detect_nat(sa, msg)
        if not moving and sa.esp_in_udp != framing:
            # the same address, but a NAT came or went (encap = no): the Child SAs switch
            # framing (a move does it with the return routability check)
            sa.emit(PeerAddressChanged(sa.ike_sa_id, sa.remote, sa.esp_in_udp))
        if msg.notify(NotifyType.NAT_DETECTION_SOURCE_IP) is not None:
            self.answer += natd_notifies(sa, sa.spi_r)
        cookie2 = msg.notify(NotifyType.COOKIE2)
        if cookie2 is not None:
            self.answer.append(NotifyPayload(NotifyType.COOKIE2, cookie2.data))

    def _our_deleted_spis(self) -> list[int]:
        return [
            int.from_bytes(spi, "big")
            for p in self.payloads
            if isinstance(p, DeletePayload) and p.protocol == ProtocolId.ESP
            for spi in p.spis
        ]

    def responded(self, raw: bytes) -> None:
        if not self.delete_ike:
            return
        from .ike_rekey import IkeRekey

        origin = self.sa.rekeyed_from
        if (
            origin is not None
            and self.sa.replaced_by is None  # not the old SA of a later rekey
            and origin.peer_ike_rekey is not None
            and origin.peer_ike_rekey[1] is self.sa
            and isinstance(origin.tm.active, IkeRekey)
        ):
            # §2.8.2 seen from the side whose answer is late: the peer closes the SA it
            # made in the collision, so ours will win. Its Child SAs wait on the old SA
            # for our rekey's answer, which moves them into our new SA.
            origin.children.update(self.sa.children)
            self.sa.children = {}
            self.sa.move_queue(origin)
            origin.replaced_by = None
            origin.peer_ike_rekey = None
            self.sa.replaced_by = origin  # closes quietly: the IKE SA lives on

        if isinstance(self.sa.tm.active, IkeRekey):
            # The peer closes the SA our own rekey is running on: its rekey won a §2.8.2
            # collision (or saw none), so the SA it made stays and starts its exchanges.
            # Hear our rekey's answer first, so that we can close the redundant SA it
            # made; then this one goes.
            collision = self.sa.peer_ike_rekey
            if collision is not None and self.sa.replaced_by is collision[1]:
                collision[1].release(self.sa.now, queue_from=self.sa)
            self.sa.destroy_when_idle = "deleted by peer"
            self.sa.down_cause = "peer"
            return
        self.sa.down_cause = "peer"
        self.sa.destroy("deleted by peer")

    def failed(self, reason: str) -> None:
        pass
