"""The Configuration payloads of virtual IPs (RFC 7296 §2.19, §3.15), both ends:

  initiator (client):  IKE_AUTH { ..., CP(CFG_REQUEST) = INTERNAL_IP4_ADDRESS(),
                                  INTERNAL_IP4_DNS(), ... } -->
  responder (gateway):       <-- { ..., CP(CFG_REPLY) = INTERNAL_IP4_ADDRESS(a),
                                  INTERNAL_IP4_DNS(d), ..., TSi = a/32, TSr }

An IPv6 address travels with its prefix length (17 bytes, §3.15.1). The responder narrows
the Child SA's TSi to the addresses it gave (ChildNegotiation.choose).
"""

from __future__ import annotations

import ipaddress

from .constants import CfgAttr, CfgType
from .payloads import CpPayload

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_ADDRESS = {4: CfgAttr.INTERNAL_IP4_ADDRESS, 6: CfgAttr.INTERNAL_IP6_ADDRESS}
_DNS = {4: CfgAttr.INTERNAL_IP4_DNS, 6: CfgAttr.INTERNAL_IP6_DNS}


def _value(addr: IPAddress) -> bytes:
    return addr.packed + (b"\x80" if addr.version == 6 else b"")  # IPv6: prefix length 128


def request(vips: tuple[IPAddress, ...]) -> CpPayload:
    """The client's CFG_REQUEST: an address of each family in ``vips`` (a particular one
    unless it is 0.0.0.0 / ::) and that family's DNS servers."""
    attrs: list[tuple[int, bytes]] = []
    for addr in vips:
        attrs.append((_ADDRESS[addr.version], b"" if addr.is_unspecified else _value(addr)))
    for version in sorted({a.version for a in vips}):
        attrs.append((_DNS[version], b""))
    return CpPayload(CfgType.REQUEST, tuple(attrs))


def requested(cp: CpPayload | None) -> tuple[int, ...]:
    """The IP versions a CFG_REQUEST asks an address of (once each)."""
    if cp is None or cp.cfg_type != CfgType.REQUEST:
        return ()
    return tuple(v for v in (4, 6) if cp.values(_ADDRESS[v]))


def reply(vips: tuple[IPAddress, ...], dns: tuple[IPAddress, ...]) -> CpPayload:
    """The gateway's CFG_REPLY: the addresses it gave, and DNS servers of their families."""
    versions = {a.version for a in vips}
    attrs = [(_ADDRESS[a.version], _value(a)) for a in vips]
    attrs += [(_DNS[d.version], d.packed) for d in dns if d.version in versions]
    return CpPayload(CfgType.REPLY, tuple(attrs))


def assigned(cp: CpPayload | None) -> tuple[tuple[IPAddress, ...], tuple[IPAddress, ...]]:
    """From the gateway's CFG_REPLY: (the addresses it gave us, its DNS servers); what is
    malformed is left out."""
    if cp is None or cp.cfg_type != CfgType.REPLY:
        return (), ()
    vips: list[IPAddress] = []
    dns: list[IPAddress] = []
    for attr, value in cp.attributes:
        if attr == CfgAttr.INTERNAL_IP4_ADDRESS and len(value) == 4:
            vips.append(ipaddress.IPv4Address(value))
        elif attr == CfgAttr.INTERNAL_IP6_ADDRESS and len(value) == 17:
            vips.append(ipaddress.IPv6Address(value[:16]))
        elif attr == CfgAttr.INTERNAL_IP4_DNS and len(value) == 4:
            dns.append(ipaddress.IPv4Address(value))
        elif attr == CfgAttr.INTERNAL_IP6_DNS and len(value) == 16:
            dns.append(ipaddress.IPv6Address(value))
    return tuple(vips), tuple(dns)
