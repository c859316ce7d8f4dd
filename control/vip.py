"""The Configuration payloads of virtual IPs (RFC 7296 §2.19, §3.15), both ends:

  initiator (client):  IKE_AUTH { ..., CP(CFG_REQUEST) = INTERNAL_IP4_ADDRESS(),
                                  INTERNAL_IP4_DNS(), INTERNAL_IP4_SUBNET(), ... } -->
  responder (gateway):       <-- { ..., CP(CFG_REPLY) = INTERNAL_IP4_ADDRESS(a),
                                  INTERNAL_IP4_DNS(d), INTERNAL_IP4_SUBNET(n), ...,
                                  TSi = a/32, TSr }

INTERNAL_IP4_SUBNET / INTERNAL_IP6_SUBNET (§3.15.1, split tunnelling): the networks the
gateway protects, its Child SAs' local_ts, sent to a client that asks for them (native
clients route these); an espfast client routes the Child SA's narrowed TSr, the same
networks, and logs them.

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
_SUBNET = {4: CfgAttr.INTERNAL_IP4_SUBNET, 6: CfgAttr.INTERNAL_IP6_SUBNET}
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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
    for version in sorted({a.version for a in vips}):
        attrs.append((_SUBNET[version], b""))
    return CpPayload(CfgType.REQUEST, tuple(attrs))


def requested(cp: CpPayload | None) -> tuple[int, ...]:
    """The IP versions a CFG_REQUEST asks an address of (once each)."""
    if cp is None or cp.cfg_type != CfgType.REQUEST:
        return ()
    return tuple(v for v in (4, 6) if cp.values(_ADDRESS[v]))


def subnets_requested(cp: CpPayload | None) -> tuple[int, ...]:
    """The IP versions a CFG_REQUEST asks the protected subnets of."""
    if cp is None or cp.cfg_type != CfgType.REQUEST:
        return ()
    return tuple(v for v in (4, 6) if cp.values(_SUBNET[v]))


def _subnet_value(net: IPNetwork) -> bytes:
    if net.version == 4:
        return net.network_address.packed + net.netmask.packed  # address and mask
    return net.network_address.packed + bytes([net.prefixlen])


def reply(
    vips: tuple[IPAddress, ...], dns: tuple[IPAddress, ...], subnets: tuple[IPNetwork, ...] = ()
) -> CpPayload:
    """The gateway's CFG_REPLY: the addresses it gave, and DNS servers and ``subnets`` of
    their families."""
    versions = {a.version for a in vips}
    attrs = [(_ADDRESS[a.version], _value(a)) for a in vips]
    attrs += [(_DNS[d.version], d.packed) for d in dns if d.version in versions]
    attrs += [(_SUBNET[n.version], _subnet_value(n)) for n in subnets if n.version in versions]
    return CpPayload(CfgType.REPLY, tuple(attrs))


def subnets(cp: CpPayload | None) -> tuple[IPNetwork, ...]:
    """From the gateway's CFG_REPLY: the subnets it protects; what is malformed (a mask
    that is not a prefix, host bits, a prefix length over 128) is left out."""
    if cp is None or cp.cfg_type != CfgType.REPLY:
        return ()
    out: list[IPNetwork] = []
    for attr, value in cp.attributes:
        try:
            if attr == CfgAttr.INTERNAL_IP4_SUBNET and len(value) == 8:
                addr, mask = ipaddress.IPv4Address(value[:4]), ipaddress.IPv4Address(value[4:])
                out.append(ipaddress.IPv4Network(f"{addr}/{mask}"))
            elif attr == CfgAttr.INTERNAL_IP6_SUBNET and len(value) == 17:
                out.append(ipaddress.IPv6Network((ipaddress.IPv6Address(value[:16]), value[16])))
        except ValueError:
            continue
    return tuple(dict.fromkeys(out))


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
