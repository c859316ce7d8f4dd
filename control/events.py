"""What the control plane tells its I/O shell (the daemon): frozen dataclasses.

Key material only ever sits in fields declared ``repr=False``; the daemon hands those
bytes to the dataplane once and drops them.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import TYPE_CHECKING

from .constants import TsType

if TYPE_CHECKING:
    from .ike_sa import IkeSa

IpAddress = IPv4Address | IPv6Address
IpNetwork = IPv4Network | IPv6Network


@dataclass(frozen=True)
class TrafficSelector:
    """RFC 7296 §3.13.1: an address range, an IP protocol (0 = any) and a port range."""

    ts_type: int
    ip_protocol: int
    start_port: int
    end_port: int
    start_addr: IpAddress
    end_addr: IpAddress

    @classmethod
    def from_network(
        cls, network: str | IpNetwork, ip_protocol: int = 0, ports: tuple[int, int] = (0, 65535)
    ) -> TrafficSelector:
        net = ipaddress.ip_network(network, strict=False) if isinstance(network, str) else network
        ts_type = TsType.IPV4_ADDR_RANGE if net.version == 4 else TsType.IPV6_ADDR_RANGE
        return cls(
            int(ts_type), ip_protocol, ports[0], ports[1], net.network_address,
            net.broadcast_address,
        )  # fmt: skip

    def networks(self) -> list[IpNetwork]:
        """The range as a list of prefixes (``ipaddress.summarize_address_range``)."""
        return list(ipaddress.summarize_address_range(self.start_addr, self.end_addr))

    def intersect(self, other: TrafficSelector) -> TrafficSelector | None:
        """The common part of two selectors (RFC 7296 §2.9 narrowing), or None."""
        if self.ts_type != other.ts_type:
            return None
        if self.ip_protocol and other.ip_protocol and self.ip_protocol != other.ip_protocol:
            return None
        start_port = max(self.start_port, other.start_port)
        end_port = min(self.end_port, other.end_port)
        start_addr = max(self.start_addr, other.start_addr)
        end_addr = min(self.end_addr, other.end_addr)
        if start_port > end_port or start_addr > end_addr:  # type: ignore[operator]
            return None
        proto = self.ip_protocol or other.ip_protocol
        return TrafficSelector(self.ts_type, proto, start_port, end_port, start_addr, end_addr)

    def __str__(self) -> str:
        nets = ",".join(str(n) for n in self.networks())
        suffix = ""
        if self.ip_protocol or (self.start_port, self.end_port) != (0, 65535):
            suffix = f"[{self.ip_protocol}/{self.start_port}-{self.end_port}]"
        return nets + suffix


@dataclass(frozen=True)
class IkeSaUp:
    ike_sa_id: int
    name: str
    local_id: str
    remote_id: str
    peer: tuple[str, int]
    algorithms: str  # e.g. "aes256gcm16-prfsha384-ecp384"
    # Virtual IPs (RFC 7296 §2.19): the addresses the peer gave us (with the DNS servers
    # it named), and those we gave the peer.
    virtual_ips: tuple[str, ...] = ()
    dns: tuple[str, ...] = ()
    peer_virtual_ips: tuple[str, ...] = ()


@dataclass(frozen=True)
class ChildAction:
    """What to do about one child of a connection that went down (strongSwan's names):
    "trap" (install a trap; on matching traffic call IkeManager.acquire) or "restart" /
    "start" (negotiated again at once; IkeManager does it itself)."""

    child: str
    action: str


@dataclass(frozen=True)
class IkeSaDown:
    """``cause``: "dpd" (the peer stopped answering: retransmissions ran out), "peer"
    (the peer deleted it), "expired" (life_time), "local" (we deleted it), "failed"
    (never came up) or "replaced" (INITIAL_CONTACT). ``actions``: the children's
    dpd_action (cause "dpd") or close_action (cause "peer") other than clear/none."""

    ike_sa_id: int
    name: str
    reason: str
    cause: str = ""
    actions: tuple[ChildAction, ...] = ()


@dataclass(frozen=True)
class IkeSaRekeyed:
    """The IKE SA was rekeyed (RFC 7296 §2.18): ``new_sa`` (new SPIs, same peer, same
    ``ike_sa_id``) carries the Child SAs from now on; route datagrams with its SPIs to it.
    The old SA then closes quietly: no IkeSaDown for it, the IKE SA lives on."""

    ike_sa_id: int
    name: str
    new_sa: IkeSa = field(repr=False, compare=False)


@dataclass(frozen=True)
class IkeSaReauthenticating:
    """Reauthentication (RFC 7296 §2.8.3, make-before-break) has begun: ``new_sa`` is a
    fresh IKE SA (IKE_SA_INIT + IKE_AUTH, new credentials check) with the same
    ``ike_sa_id``. Serve it like an IKE SA you initiated (datagrams by its SPIs, its
    timers, its events). Each Child SA it re-creates comes as ChildSaRekeyed (old SPIs ->
    new ChildSaUp): install the new SAs before removing the old ones, as for a rekey.
    Once all are up the old IKE SA is deleted: ChildSaDown for the old Child SAs, and no
    IkeSaDown (the IKE SA lives on in ``new_sa``). Should the new SA fail before it is
    up, the old one carries on and tries again later."""

    ike_sa_id: int
    name: str
    new_sa: IkeSa = field(repr=False, compare=False)


@dataclass(frozen=True)
class ChildSaUp:
    ike_sa_id: int
    name: str
    spi_in: int
    spi_out: int
    transform: str  # the dataplane Transform keyword, e.g. "aes128gcm16"
    esn: bool
    enc_key_in: bytes = field(repr=False)
    integ_key_in: bytes = field(repr=False)
    enc_key_out: bytes = field(repr=False)
    integ_key_out: bytes = field(repr=False)
    local_ts: tuple[TrafficSelector, ...] = ()
    remote_ts: tuple[TrafficSelector, ...] = ()
    peer: tuple[str, int] = ("", 0)
    # ESP in UDP (RFC 3948: a NAT between us, or either end forces it, encap = yes);
    # False: plain ESP, IP protocol 50 (RFC 7296 §2.23: no NAT and encap = no).
    encap: bool = True
    # We sent the request that made it: the peer had both halves in place before it
    # answered, so sending on it at once is safe (make-before-break, RFC 7296 §2.8).
    exchange_initiator: bool = False


@dataclass(frozen=True)
class ChildSaClosing:
    """We are deleting this Child SA (alone, or with its IKE SA): the peer drops its
    inbound half when our DELETE arrives, so nothing more should be sent on it.
    ChildSaDown follows once the peer confirms (or the IKE SA ends)."""

    ike_sa_id: int
    name: str
    spi_in: int


@dataclass(frozen=True)
class ChildSaDown:
    """``action``: when the peer deleted this Child SA alone, its close_action if not
    "none" ("trap": install a trap, "start": IkeManager negotiates it again)."""

    ike_sa_id: int
    name: str
    spi_in: int
    spi_out: int
    reason: str = ""
    action: str = ""


@dataclass(frozen=True)
class ChildSaFailed:
    """A Child SA could not be negotiated (the IKE SA itself may still be up)."""

    ike_sa_id: int
    name: str
    reason: str


@dataclass(frozen=True)
class ChildSaRekeyed:
    ike_sa_id: int
    name: str
    old_spi_in: int
    old_spi_out: int
    new: ChildSaUp


@dataclass(frozen=True)
class PeerAddressChanged:
    ike_sa_id: int
    peer: tuple[str, int]
    encap: bool = True  # as ChildSaUp.encap, at the new address (a NAT may have come or gone)


@dataclass(frozen=True)
class RadiusRequest:
    """IKE SA ``ike_sa_id`` relays the peer's EAP: send an Access-Request with these
    attributes (control/radius/relay.py) and hand the answer to IkeManager.radius_answer."""

    ike_sa_id: int
    attributes: tuple[tuple[int, bytes], ...]


Event = (
    IkeSaUp | IkeSaDown | IkeSaRekeyed | IkeSaReauthenticating | ChildSaUp | ChildSaClosing
    | ChildSaDown
    | ChildSaFailed | ChildSaRekeyed | PeerAddressChanged | RadiusRequest
)  # fmt: skip
