"""MOBIKE as the initiator (RFC 4555): a liveness check that watches the NAT mapping, and
UPDATE_SA_ADDRESSES when our address changed (a road warrior moved) or the NAT in front
of us gave us a new mapping (§3.8). The responder's side is in tasks/informational.

A liveness check behind a NAT (§3.8, as strongSwan does):
INFORMATIONAL { N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP) } -->
                  <-- { N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP) }
The responder's DESTINATION hash names the address it saw us at: when it is not the one
it named before, the NAT mapped us anew and we say so (§3.5):
INFORMATIONAL { N(UPDATE_SA_ADDRESSES), N(NAT_DETECTION_*), N(COOKIE2) } -->
                  <-- { N(NAT_DETECTION_*), N(COOKIE2) }
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import TYPE_CHECKING

from ..constants import ExchangeType, NotifyType
from ..events import PeerAddressChanged
from ..message import Message, check_rules
from ..payloads import NotifyPayload, Payload
from .base import Task
from .ike_init import detect_nat, natd_notifies

if TYPE_CHECKING:
    from ..ike_sa import IkeSa

COOKIE2_LEN = 16  # RFC 4555 §3.6: 8..64 octets


class MobikeInformational(Task):
    """Initiator only. ``update``: UPDATE_SA_ADDRESSES from the current addresses (with
    COOKIE2, the return-routability check of §3.6); otherwise a liveness check carrying
    NAT detection, which turns into an update when the mapping changed."""

    exchange = ExchangeType.INFORMATIONAL

    def __init__(self, sa: IkeSa, update: bool, moved: bool = True) -> None:
        super().__init__(sa, True)
        self.update = update
        self.moved = moved  # an update for a move we know of (not only a new mapping seen)
        self.cookie2 = b""

    def build(self) -> list[Payload]:
        sa = self.sa
        out: list[Payload] = []
        if self.update:
            out.append(NotifyPayload(NotifyType.UPDATE_SA_ADDRESSES))
        out += natd_notifies(sa, sa.spi_r)
        if self.update:
            self.cookie2 = sa.rng.random_bytes(COOKIE2_LEN)
            out.append(NotifyPayload(NotifyType.COOKIE2, self.cookie2))
        return out

    def process(self, msg: Message, raw: bytes) -> bool:
        check_rules(msg)
        sa = self.sa
        for n in msg.all(NotifyPayload):
            if n.notify_type in (NotifyType.UNEXPECTED_NAT_DETECTED, NotifyType.INVALID_SYNTAX):
                sa.log(f"the peer refused our address update: notify {n.notify_type}")
                return True
        if self.update:
            echo = msg.notify(NotifyType.COOKIE2)
            if echo is None or not hmac.compare_digest(echo.data, self.cookie2):
                # §3.6: not an answer to our update (or not over this path).
                sa.log("UPDATE_SA_ADDRESSES answered without our COOKIE2: ignored")
                return True
        before, framing = sa.natd_dest, sa.esp_in_udp
        detect_nat(sa, msg)
        if sa.esp_in_udp != framing:
            # a NAT came or went on the new path (encap = no): the Child SAs switch
            # between plain ESP and ESP in UDP, at the peer's address as it is
            sa.log(f"ESP {'in UDP' if sa.esp_in_udp else 'plain'} from now on")
            sa.emit(PeerAddressChanged(sa.ike_sa_id, sa.remote, sa.esp_in_udp))
        if self.update:
            sa.moves += self.moved
            sa.log(f"addresses updated: {sa.local[0]}:{sa.local[1]} - "
                   f"{sa.remote[0]}:{sa.remote[1]}, nat local {sa.nat_local}")  # fmt: skip
        elif sa.natd_dest and before != sa.natd_dest:
            # Not knowing the mapping before (the first check since we floated to 4500
            # or rekeyed the IKE SA: the hashes cover the SPIs) we cannot tell whether it
            # changed: the update makes sure, and moves nothing if it did not.
            sa.log("the NAT in front of us mapped us anew: updating the addresses" if before
                   else "confirming our NAT mapping with an address update")  # fmt: skip
            sa.tm.queue_task(MobikeInformational(sa, True, moved=bool(before)), sa.now)
        return True

    def failed(self, reason: str) -> None:
        pass


class ReturnRoutability(Task):
    """The MOBIKE responder's check that the peer is really at its new address (RFC 4555
    §3.5, §5.2): INFORMATIONAL { N(COOKIE2) } --> sent there, answered with the cookie
    <-- { N(COOKIE2) }; only then do the Child SAs follow (PeerAddressChanged)."""

    exchange = ExchangeType.INFORMATIONAL

    def __init__(self, sa: IkeSa, addr: tuple[str, int]) -> None:
        super().__init__(sa, True)
        self.addr = addr
        self.cookie2 = b""

    def build(self) -> list[Payload]:
        self.cookie2 = self.sa.rng.random_bytes(COOKIE2_LEN)
        return [NotifyPayload(NotifyType.COOKIE2, self.cookie2)]

    def process(self, msg: Message, raw: bytes) -> bool:
        check_rules(msg)
        sa = self.sa
        echo = msg.notify(NotifyType.COOKIE2)
        if echo is None or not hmac.compare_digest(echo.data, self.cookie2):
            sa.log("return routability check answered without our COOKIE2: not moving")
        elif sa.remote != self.addr:
            sa.log("the peer moved again meanwhile: its next check decides")
        else:
            sa.followed(self.addr)
        return True

    def failed(self, reason: str) -> None:
        pass


def no_nats_data(src: tuple[str, int], dst: tuple[str, int]) -> bytes:
    """N(NO_NATS_ALLOWED) data (RFC 4555 §3.9): the source and destination addresses,
    then ports, of the IP header the sender used."""
    return (ipaddress.ip_address(src[0]).packed + ipaddress.ip_address(dst[0]).packed
            + src[1].to_bytes(2, "big") + dst[1].to_bytes(2, "big"))  # fmt: skip
