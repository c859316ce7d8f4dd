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
With ``mobike_no_nats`` the update also carries N(NO_NATS_ALLOWED) (§3.9).

Additional addresses (§3.6): ours go out in IKE_AUTH, in updates and, when they change,
on their own (AddressUpdate: INFORMATIONAL { N(ADDITIONAL_*)... } -->); the peer's are
taken from authenticated messages only, bounded, and serve only as candidate paths:
when the current path stops answering, the initiator's retransmissions also go to them
(probe_destinations; IkeSa.path_found moves to the first that answers).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
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
# The peer's additional addresses we keep (RFC 4555 §3.6): a peer that sends more is
# either broken or hostile; the first ones are plenty of candidate paths.
MAX_PEER_ADDRESSES = 8
PROBE_AFTER = 1  # retransmissions to the current path before the others are tried too
_ADDRESS_NOTIFIES = (NotifyType.ADDITIONAL_IP4_ADDRESS, NotifyType.ADDITIONAL_IP6_ADDRESS,
                     NotifyType.NO_ADDITIONAL_ADDRESSES)  # fmt: skip


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
            if sa.config.mobike_no_nats:  # §3.9: the addresses we send from, untranslated
                out.append(NotifyPayload(NotifyType.NO_NATS_ALLOWED,
                                         no_nats_data(sa.local, sa.remote)))  # fmt: skip
        out += natd_notifies(sa, sa.spi_r)
        if self.update:
            self.cookie2 = sa.rng.random_bytes(COOKIE2_LEN)
            out.append(NotifyPayload(NotifyType.COOKIE2, self.cookie2))
            out += address_notifies(sa)  # §3.6: may ride along with the update
        return out

    def process(self, msg: Message, raw: bytes) -> bool:
        check_rules(msg)
        sa = self.sa
        for n in msg.all(NotifyPayload):
            if n.notify_type in (NotifyType.UNEXPECTED_NAT_DETECTED, NotifyType.INVALID_SYNTAX):
                sa.log(f"the peer refused our address update: notify {n.notify_type}",
                       logging.WARNING)  # fmt: skip
                sa.updates_refused += 1
                return True
        if self.update:
            echo = msg.notify(NotifyType.COOKIE2)
            if echo is None or not hmac.compare_digest(echo.data, self.cookie2):
                # §3.6: not an answer to our update (or not over this path).
                sa.log("UPDATE_SA_ADDRESSES answered without our COOKIE2: ignored")
                return True
        take_peer_addresses(sa, msg)  # (a peer may send its list along, §3.6)
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


class AddressUpdate(Task):
    """Our additional addresses changed (RFC 4555 §3.6; as strongSwan, either end):
    INFORMATIONAL { N(ADDITIONAL_*)... | N(NO_ADDITIONAL_ADDRESSES) } --> <-- { }"""

    exchange = ExchangeType.INFORMATIONAL

    def __init__(self, sa: IkeSa) -> None:
        super().__init__(sa, True)

    def build(self) -> list[Payload]:
        return list[Payload](address_notifies(self.sa))

    def process(self, msg: Message, raw: bytes) -> bool:
        check_rules(msg)
        return True

    def failed(self, reason: str) -> None:
        pass


def address_notifies(sa: IkeSa) -> list[NotifyPayload]:
    """N(ADDITIONAL_IP4/IP6_ADDRESS) for each of our usable addresses other than the IKE
    SA's own (the shell's ``IkeSa.local_addresses``), N(NO_ADDITIONAL_ADDRESSES) when
    there are none; nothing when the shell cannot tell (a fixed listen address: we
    receive on no other). What is sent is remembered (``announced``), so that the shell
    sends an update only when it changed."""
    addrs = sa.local_addresses(sa)
    if addrs is None:
        return []
    ours = tuple(a for a in dict.fromkeys(addrs) if a != sa.local[0])
    sa.announced = ours
    if not ours:
        return [NotifyPayload(NotifyType.NO_ADDITIONAL_ADDRESSES)]
    out = []
    for a in ours:
        ip = ipaddress.ip_address(a)
        kind = NotifyType.ADDITIONAL_IP4_ADDRESS if ip.version == 4 else \
            NotifyType.ADDITIONAL_IP6_ADDRESS  # fmt: skip
        out.append(NotifyPayload(kind, ip.packed))
    return out


def take_peer_addresses(sa: IkeSa, msg: Message) -> None:
    """The peer's additional addresses (RFC 4555 §3.6), from an authenticated message
    only (IKE_AUTH once the peer is verified, or a later INFORMATIONAL): a message that
    names any (or N(NO_ADDITIONAL_ADDRESSES)) replaces the list. They are only ever
    candidate paths, tried when the current one fails (and answers to a retransmitted
    request are also sent there): never where traffic moves on their say-so alone. At
    most MAX_PEER_ADDRESSES, of the family of the current path (the dataplane's socket);
    malformed, unspecified, multicast and loopback ones are dropped."""
    notes = [n for n in msg.all(NotifyPayload) if n.notify_type in _ADDRESS_NOTIFIES]
    if not notes:
        return
    keep: dict[str, None] = {}
    skipped = 0
    version = ipaddress.ip_address(sa.remote[0]).version
    for n in notes:
        if n.notify_type == NotifyType.NO_ADDITIONAL_ADDRESSES:
            continue
        size = 4 if n.notify_type == NotifyType.ADDITIONAL_IP4_ADDRESS else 16
        if len(n.data) != size or len(keep) >= MAX_PEER_ADDRESSES:
            skipped += 1
            continue
        ip = ipaddress.ip_address(n.data)
        broadcast = ip.version == 4 and ip == ipaddress.IPv4Address("255.255.255.255")
        if ip.version != version or ip.is_unspecified or ip.is_multicast or ip.is_loopback \
                or broadcast:  # fmt: skip
            skipped += 1
            continue
        keep[str(ip)] = None
    sa.peer_addresses = tuple(keep)
    dropped = f" ({skipped} ignored)" if skipped else ""
    sa.log(f"the peer's additional addresses: {', '.join(keep) or 'none'}{dropped}")


def probe_destinations(sa: IkeSa, tries: int) -> tuple[tuple[str, int], ...]:
    """Where a retransmission of ours goes besides the current path (RFC 4555 §3.5: the
    initiator finds a working path when the current one stops answering, as strongSwan
    does): the peer's additional addresses and the one we first reached it at, on the
    current port. The source of each is the kernel's route towards it (the dataplane's
    socket is bound to the wildcard address, so ESP leaves from there too)."""
    if not (sa.mobike and sa.original_initiator and sa.is_established) or sa.is_deleting \
            or tries < PROBE_AFTER:  # fmt: skip
        return ()
    port = sa.remote[1]
    version = ipaddress.ip_address(sa.remote[0]).version
    alts = [a for a in (*sa.peer_addresses, sa.first_remote[0])
            if a != sa.remote[0] and ipaddress.ip_address(a).version == version]  # fmt: skip
    return tuple((a, port) for a in dict.fromkeys(alts))
