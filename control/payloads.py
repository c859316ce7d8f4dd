"""IKEv2 payloads (RFC 7296 §3): frozen dataclasses with pull_x / push_x pairs.

Each ``pull_*`` parses a payload *body* (the bytes after the 4-byte generic payload
header) and must consume it exactly; each ``push_*`` writes the body. The generic header
and the payload chain live in message.py.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .buffer import Buffer
from .constants import (
    AuthMethod,
    PayloadType,
    ProtocolId,
    TransformAttr,
    TransformType,
    TsType,
)
from .errors import RemoteProtocolError
from .events import TrafficSelector

# --------------------------------------------------------------------------------------
# SA payload (RFC 7296 §3.3)
#
# Transform substructure (§3.3.2):
#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Last Substruc |   RESERVED    |        Transform Length       |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |Transform Type |   RESERVED    |          Transform ID         |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                      Transform Attributes                     ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#
# Attribute (§3.3.5), AF=1 (TV) is the only form with a type we know (Key Length):
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |A|       Attribute Type        |    AF=0  Attribute Length     |
# |F|                             |    AF=1  Attribute Value      |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                   AF=0  Attribute Value                       |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# --------------------------------------------------------------------------------------

LAST_SUBSTRUCT_LAST = 0
LAST_SUBSTRUCT_PROPOSAL = 2
LAST_SUBSTRUCT_TRANSFORM = 3


@dataclass(frozen=True)
class Transform:
    type: int
    id: int
    key_length: int | None = None  # bits; the only attribute IKEv2 defines
    unknown_attrs: bool = False  # RFC 7296 §3.3.6: reject a transform with unknown attributes


def pull_transform(buf: Buffer) -> tuple[bool, Transform]:
    last = buf.pull_uint8()
    buf.pull_uint8()
    length = buf.pull_uint16()
    if length < 8:
        raise RemoteProtocolError(f"transform length {length} < 8")
    body = buf.sub(length - 4)
    ttype = body.pull_uint8()
    body.pull_uint8()
    tid = body.pull_uint16()
    key_length = None
    unknown = False
    while not body.eof():
        attr = body.pull_uint16()
        if attr & 0x8000:
            value = body.pull_uint16()
            if attr & 0x7FFF == TransformAttr.KEY_LENGTH:
                key_length = value
            else:
                unknown = True
        else:
            body.pull_bytes(body.pull_uint16())
            unknown = True
    if last not in (LAST_SUBSTRUCT_LAST, LAST_SUBSTRUCT_TRANSFORM):
        raise RemoteProtocolError(f"bad transform substructure marker {last}")
    return last == LAST_SUBSTRUCT_LAST, Transform(ttype, tid, key_length, unknown)


def push_transform(buf: Buffer, t: Transform, last: bool) -> None:
    with buf.push_length16(2):
        buf.push_uint8(LAST_SUBSTRUCT_LAST if last else LAST_SUBSTRUCT_TRANSFORM)
        buf.push_uint8(0)
        buf.push_uint16(0)
        buf.push_uint8(t.type)
        buf.push_uint8(0)
        buf.push_uint16(t.id)
        if t.key_length is not None:
            buf.push_uint16(0x8000 | TransformAttr.KEY_LENGTH)
            buf.push_uint16(t.key_length)


# Proposal substructure (§3.3.1):
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Last Substruc |   RESERVED    |         Proposal Length       |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Proposal Num  |  Protocol ID  |    SPI Size   |Num  Transforms|
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                        SPI (variable)                         ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                        <Transforms>                           ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+


@dataclass(frozen=True)
class Proposal:
    num: int
    protocol: int
    spi: bytes
    transforms: tuple[Transform, ...]

    def of_type(self, ttype: TransformType) -> tuple[Transform, ...]:
        return tuple(t for t in self.transforms if t.type == ttype)


def pull_proposal(buf: Buffer) -> tuple[bool, Proposal]:
    last = buf.pull_uint8()
    buf.pull_uint8()
    length = buf.pull_uint16()
    if length < 8:
        raise RemoteProtocolError(f"proposal length {length} < 8")
    body = buf.sub(length - 4)
    num = body.pull_uint8()
    protocol = body.pull_uint8()
    spi_size = body.pull_uint8()
    count = body.pull_uint8()
    spi = body.pull_bytes(spi_size)
    transforms = []
    for i in range(count):
        is_last, t = pull_transform(body)
        if is_last != (i == count - 1):
            raise RemoteProtocolError("transform count and last-substructure markers disagree")
        transforms.append(t)
    body.expect_eof("proposal")
    if last not in (LAST_SUBSTRUCT_LAST, LAST_SUBSTRUCT_PROPOSAL):
        raise RemoteProtocolError(f"bad proposal substructure marker {last}")
    return last == LAST_SUBSTRUCT_LAST, Proposal(num, protocol, spi, tuple(transforms))


def push_proposal(buf: Buffer, p: Proposal, last: bool) -> None:
    with buf.push_length16(2):
        buf.push_uint8(LAST_SUBSTRUCT_LAST if last else LAST_SUBSTRUCT_PROPOSAL)
        buf.push_uint8(0)
        buf.push_uint16(0)
        buf.push_uint8(p.num)
        buf.push_uint8(p.protocol)
        buf.push_uint8(len(p.spi))
        buf.push_uint8(len(p.transforms))
        buf.push_bytes(p.spi)
        for i, t in enumerate(p.transforms):
            push_transform(buf, t, i == len(p.transforms) - 1)


@dataclass(frozen=True)
class SaPayload:
    TYPE: ClassVar[PayloadType] = PayloadType.SA
    proposals: tuple[Proposal, ...]


def pull_sa(buf: Buffer) -> SaPayload:
    proposals: list[Proposal] = []
    while True:
        last, p = pull_proposal(buf)
        lone = last and not proposals  # a response's choice keeps its offered number
        if (p.num != len(proposals) + 1 and not (lone and p.num >= 1)
                and not (proposals and p.num == proposals[-1].num)):  # fmt: skip
            # RFC 7296 §3.3.1: numbered from 1, incrementing (equal numbers are the
            # IKEv1-style AND of proposals, which IKEv2 does not have; we refuse them).
            # An accepted proposal is answered with the number it had in the offer.
            raise RemoteProtocolError(f"proposal number {p.num} out of sequence")
        proposals.append(p)
        if last:
            break
    buf.expect_eof("SA payload")
    return SaPayload(tuple(proposals))


def push_sa(buf: Buffer, sa: SaPayload) -> None:
    for i, p in enumerate(sa.proposals):
        push_proposal(buf, p, i == len(sa.proposals) - 1)


# --------------------------------------------------------------------------------------
# Key Exchange payload (§3.4)
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |   Diffie-Hellman Group Num    |           RESERVED            |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                       Key Exchange Data                       ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KePayload:
    TYPE: ClassVar[PayloadType] = PayloadType.KE
    group: int
    data: bytes


def pull_ke(buf: Buffer) -> KePayload:
    group = buf.pull_uint16()
    buf.pull_uint16()
    return KePayload(group, buf.pull_rest())


def push_ke(buf: Buffer, ke: KePayload) -> None:
    buf.push_uint16(ke.group)
    buf.push_uint16(0)
    buf.push_bytes(ke.data)


# --------------------------------------------------------------------------------------
# Identification payloads IDi / IDr (§3.5)
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |   ID Type     |                 RESERVED                      |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                   Identification Data                         ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# The AUTH computation signs this body (RestOfIDPayload), so id_body() gives it.
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdPayload:
    TYPE: ClassVar[PayloadType] = PayloadType.IDI
    id_type: int
    data: bytes

    def body(self) -> bytes:
        buf = Buffer()
        push_id(buf, self)
        return buf.out


@dataclass(frozen=True)
class IdiPayload(IdPayload):
    TYPE: ClassVar[PayloadType] = PayloadType.IDI


@dataclass(frozen=True)
class IdrPayload(IdPayload):
    TYPE: ClassVar[PayloadType] = PayloadType.IDR


def _pull_id_as(cls: type[IdPayload]) -> Callable[[Buffer], IdPayload]:
    def pull(buf: Buffer) -> IdPayload:
        id_type = buf.pull_uint8()
        buf.pull_bytes(3)
        data = buf.pull_rest()
        if not data:
            raise RemoteProtocolError("empty identification data")
        return cls(id_type, data)

    return pull


def push_id(buf: Buffer, p: IdPayload) -> None:
    buf.push_uint8(p.id_type)
    buf.push_bytes(b"\x00\x00\x00")
    buf.push_bytes(p.data)


# --------------------------------------------------------------------------------------
# Certificate (§3.6) and Certificate Request (§3.7)
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Cert Encoding |                                               |
# +-+-+-+-+-+-+-+-+                                               |
# ~                       Certificate Data / Certification Authority ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CertPayload:
    TYPE: ClassVar[PayloadType] = PayloadType.CERT
    encoding: int
    data: bytes


@dataclass(frozen=True)
class CertReqPayload:
    TYPE: ClassVar[PayloadType] = PayloadType.CERTREQ
    encoding: int
    data: bytes  # concatenated SHA-1 hashes of CA public keys (SubjectPublicKeyInfo)


def pull_cert(buf: Buffer) -> CertPayload:
    return CertPayload(buf.pull_uint8(), buf.pull_rest())


def pull_certreq(buf: Buffer) -> CertReqPayload:
    return CertReqPayload(buf.pull_uint8(), buf.pull_rest())


def push_cert(buf: Buffer, p: CertPayload | CertReqPayload) -> None:
    buf.push_uint8(p.encoding)
    buf.push_bytes(p.data)


# --------------------------------------------------------------------------------------
# Authentication payload (§3.8)
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Auth Method   |                RESERVED                       |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                      Authentication Data                      ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthPayload:
    TYPE: ClassVar[PayloadType] = PayloadType.AUTH
    method: int
    data: bytes = field(repr=False)

    def __repr__(self) -> str:
        name = AuthMethod(self.method).name if self.method in set(AuthMethod) else self.method
        return f"AuthPayload(method={name}, {len(self.data)} bytes)"


def pull_auth(buf: Buffer) -> AuthPayload:
    method = buf.pull_uint8()
    buf.pull_bytes(3)
    data = buf.pull_rest()
    if not data:
        raise RemoteProtocolError("empty authentication data")
    return AuthPayload(method, data)


def push_auth(buf: Buffer, p: AuthPayload) -> None:
    buf.push_uint8(p.method)
    buf.push_bytes(b"\x00\x00\x00")
    buf.push_bytes(p.data)


# --------------------------------------------------------------------------------------
# Nonce payload (§3.9): 16..256 octets of random data
# --------------------------------------------------------------------------------------

NONCE_MIN = 16
NONCE_MAX = 256


@dataclass(frozen=True)
class NoncePayload:
    TYPE: ClassVar[PayloadType] = PayloadType.NONCE
    data: bytes


def pull_nonce(buf: Buffer) -> NoncePayload:
    data = buf.pull_rest()
    if not NONCE_MIN <= len(data) <= NONCE_MAX:
        raise RemoteProtocolError(f"nonce of {len(data)} bytes (must be 16..256)")
    return NoncePayload(data)


def push_nonce(buf: Buffer, p: NoncePayload) -> None:
    buf.push_bytes(p.data)


# --------------------------------------------------------------------------------------
# Notify payload (§3.10)
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |  Protocol ID  |   SPI Size    |      Notify Message Type      |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                Security Parameter Index (SPI)                 ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                       Notification Data                       ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NotifyPayload:
    TYPE: ClassVar[PayloadType] = PayloadType.NOTIFY
    notify_type: int
    data: bytes = b""
    protocol: int = ProtocolId.NONE
    spi: bytes = b""


def pull_notify(buf: Buffer) -> NotifyPayload:
    protocol = buf.pull_uint8()
    spi_size = buf.pull_uint8()
    ntype = buf.pull_uint16()
    spi = buf.pull_bytes(spi_size)
    return NotifyPayload(ntype, buf.pull_rest(), protocol, spi)


def push_notify(buf: Buffer, p: NotifyPayload) -> None:
    buf.push_uint8(p.protocol)
    buf.push_uint8(len(p.spi))
    buf.push_uint16(p.notify_type)
    buf.push_bytes(p.spi)
    buf.push_bytes(p.data)


# --------------------------------------------------------------------------------------
# Delete payload (§3.11)
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Protocol ID   |   SPI Size    |          Num of SPIs          |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~               Security Parameter Index(es) (SPI)              ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# --------------------------------------------------------------------------------------


_DELETE_SPI_SIZE: dict[int, int] = {ProtocolId.IKE: 0, ProtocolId.AH: 4, ProtocolId.ESP: 4}


@dataclass(frozen=True)
class DeletePayload:
    TYPE: ClassVar[PayloadType] = PayloadType.DELETE
    protocol: int
    spis: tuple[bytes, ...] = ()


def pull_delete(buf: Buffer) -> DeletePayload:
    protocol = buf.pull_uint8()
    spi_size = buf.pull_uint8()
    count = buf.pull_uint16()
    expected = _DELETE_SPI_SIZE.get(protocol)
    if expected is None or spi_size != expected:
        raise RemoteProtocolError(f"delete for protocol {protocol} with SPI size {spi_size}")
    if protocol == ProtocolId.IKE and count:
        raise RemoteProtocolError("IKE SA delete with SPIs")
    spis = tuple(buf.pull_bytes(spi_size) for _ in range(count))
    return DeletePayload(protocol, spis)


def push_delete(buf: Buffer, p: DeletePayload) -> None:
    buf.push_uint8(p.protocol)
    buf.push_uint8(len(p.spis[0]) if p.spis else 0)
    buf.push_uint16(len(p.spis))
    for spi in p.spis:
        buf.push_bytes(spi)


# --------------------------------------------------------------------------------------
# Vendor ID payload (§3.12): opaque
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VendorIdPayload:
    TYPE: ClassVar[PayloadType] = PayloadType.VENDOR_ID
    data: bytes


def pull_vendor_id(buf: Buffer) -> VendorIdPayload:
    return VendorIdPayload(buf.pull_rest())


def push_vendor_id(buf: Buffer, p: VendorIdPayload) -> None:
    buf.push_bytes(p.data)


# --------------------------------------------------------------------------------------
# Traffic Selector payloads TSi / TSr (§3.13)
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Number of TSs |                 RESERVED                      |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                       <Traffic Selectors>                     ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#
# Traffic Selector (§3.13.1):
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |   TS Type     |IP Protocol ID*|       Selector Length         |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |           Start Port*         |           End Port*           |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                         Starting Address*                     ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                         Ending Address*                       ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# --------------------------------------------------------------------------------------

_TS_ADDR_LEN: dict[int, int] = {TsType.IPV4_ADDR_RANGE: 4, TsType.IPV6_ADDR_RANGE: 16}


@dataclass(frozen=True)
class TsPayload:
    TYPE: ClassVar[PayloadType] = PayloadType.TSI
    selectors: tuple[TrafficSelector, ...]


@dataclass(frozen=True)
class TsiPayload(TsPayload):
    TYPE: ClassVar[PayloadType] = PayloadType.TSI


@dataclass(frozen=True)
class TsrPayload(TsPayload):
    TYPE: ClassVar[PayloadType] = PayloadType.TSR


def pull_traffic_selector(buf: Buffer) -> TrafficSelector:
    ts_type = buf.pull_uint8()
    proto = buf.pull_uint8()
    length = buf.pull_uint16()
    addr_len = _TS_ADDR_LEN.get(ts_type)
    if addr_len is None:
        raise RemoteProtocolError(f"unsupported traffic selector type {ts_type}")
    if length != 8 + 2 * addr_len:
        raise RemoteProtocolError(f"traffic selector length {length} for type {ts_type}")
    start_port = buf.pull_uint16()
    end_port = buf.pull_uint16()
    start = ipaddress.ip_address(buf.pull_bytes(addr_len))
    end = ipaddress.ip_address(buf.pull_bytes(addr_len))
    # A range that ends before it starts selects nothing and breaks every later use of
    # it (prefixes, narrowing): malformed, as strongSwan's substructure check has it.
    # §3.13.1's one exception: ports 65535-0 are OPAQUE.
    if start > end:  # type: ignore[operator]  # same family: same addr_len
        raise RemoteProtocolError(f"traffic selector range {start} - {end} ends before it starts")
    if start_port > end_port and (start_port, end_port) != (65535, 0):
        raise RemoteProtocolError(f"traffic selector ports {start_port}-{end_port} are reversed")
    return TrafficSelector(ts_type, proto, start_port, end_port, start, end)


def _pull_ts_as(cls: type[TsPayload]) -> Callable[[Buffer], TsPayload]:
    def pull(buf: Buffer) -> TsPayload:
        count = buf.pull_uint8()
        buf.pull_bytes(3)
        if count == 0:
            raise RemoteProtocolError("traffic selector payload without selectors")
        selectors = tuple(pull_traffic_selector(buf) for _ in range(count))
        return cls(selectors)

    return pull


def push_ts(buf: Buffer, p: TsPayload) -> None:
    buf.push_uint8(len(p.selectors))
    buf.push_bytes(b"\x00\x00\x00")
    for ts in p.selectors:
        buf.push_uint8(ts.ts_type)
        buf.push_uint8(ts.ip_protocol)
        buf.push_uint16(8 + 2 * len(ts.start_addr.packed))
        buf.push_uint16(ts.start_port)
        buf.push_uint16(ts.end_port)
        buf.push_bytes(ts.start_addr.packed)
        buf.push_bytes(ts.end_addr.packed)


# --------------------------------------------------------------------------------------
# Encrypted and Authenticated payload SK (§3.14) and its fragment SKF (RFC 7383 §2.5)
# SK:  IV | encrypted (inner payloads | padding | pad length) | ICV
# SKF:
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |        Fragment Number        |        Total Fragments        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                     IV | encrypted | ICV                      |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# The "Next Payload" of SK/SKF names the first inner payload (in SKF: fragment 1 only).
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SkPayload:
    TYPE: ClassVar[PayloadType] = PayloadType.SK
    data: bytes


@dataclass(frozen=True)
class SkfPayload:
    TYPE: ClassVar[PayloadType] = PayloadType.SKF
    number: int
    total: int
    data: bytes


def pull_sk(buf: Buffer) -> SkPayload:
    return SkPayload(buf.pull_rest())


def push_sk(buf: Buffer, p: SkPayload) -> None:
    buf.push_bytes(p.data)


def pull_skf(buf: Buffer) -> SkfPayload:
    number = buf.pull_uint16()
    total = buf.pull_uint16()
    if not 1 <= number <= total:
        raise RemoteProtocolError(f"fragment {number} of {total}")
    return SkfPayload(number, total, buf.pull_rest())


def push_skf(buf: Buffer, p: SkfPayload) -> None:
    buf.push_uint16(p.number)
    buf.push_uint16(p.total)
    buf.push_bytes(p.data)


# --------------------------------------------------------------------------------------
# Payloads we do not know: kept so that a caller can see them, skipped otherwise.
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# Configuration payload CP (§3.15), and its attributes (§3.15.1):
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |   CFG Type    |                    RESERVED                   |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |R|         Attribute Type      |            Length             |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# ~                             Value                             ~
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CpPayload:
    TYPE: ClassVar[PayloadType] = PayloadType.CP
    cfg_type: int
    attributes: tuple[tuple[int, bytes], ...] = ()  # (attribute type, value) in order

    def values(self, attr: int) -> list[bytes]:
        """The values of every attribute of type ``attr``."""
        return [v for t, v in self.attributes if t == attr]


def pull_cp(buf: Buffer) -> CpPayload:
    cfg_type = buf.pull_uint8()
    buf.pull_bytes(3)
    attrs = []
    while buf.remaining():
        attr = buf.pull_uint16() & 0x7FFF  # the R bit is reserved: ignored
        attrs.append((attr, buf.pull_bytes(buf.pull_uint16())))
    return CpPayload(cfg_type, tuple(attrs))


def push_cp(buf: Buffer, p: CpPayload) -> None:
    buf.push_uint8(p.cfg_type)
    buf.push_bytes(bytes(3))
    for attr, value in p.attributes:
        buf.push_uint16(attr & 0x7FFF)
        buf.push_uint16(len(value))
        buf.push_bytes(value)


# --------------------------------------------------------------------------------------
# EAP payload (§3.16): one EAP packet (RFC 3748 §4), decoded by control/eap/message.py
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EapPayload:
    TYPE: ClassVar[PayloadType] = PayloadType.EAP
    data: bytes


def pull_eap(buf: Buffer) -> EapPayload:
    return EapPayload(buf.pull_rest())


def push_eap(buf: Buffer, p: EapPayload) -> None:
    buf.push_bytes(p.data)


@dataclass(frozen=True)
class UnknownPayload:
    TYPE: ClassVar[PayloadType] = PayloadType.NONE
    payload_type: int
    data: bytes


Payload = (
    SaPayload | KePayload | IdPayload | CertPayload | CertReqPayload | AuthPayload
    | NoncePayload | NotifyPayload | DeletePayload | VendorIdPayload | TsPayload
    | CpPayload | EapPayload | SkPayload | SkfPayload | UnknownPayload
)  # fmt: skip

# Dispatch tables: payload type -> body parser / body writer.
PULLERS: dict[int, Callable[[Buffer], Payload]] = {
    PayloadType.SA: pull_sa,
    PayloadType.KE: pull_ke,
    PayloadType.IDI: _pull_id_as(IdiPayload),
    PayloadType.IDR: _pull_id_as(IdrPayload),
    PayloadType.CERT: pull_cert,
    PayloadType.CERTREQ: pull_certreq,
    PayloadType.AUTH: pull_auth,
    PayloadType.NONCE: pull_nonce,
    PayloadType.NOTIFY: pull_notify,
    PayloadType.DELETE: pull_delete,
    PayloadType.VENDOR_ID: pull_vendor_id,
    PayloadType.TSI: _pull_ts_as(TsiPayload),
    PayloadType.TSR: _pull_ts_as(TsrPayload),
    PayloadType.CP: pull_cp,
    PayloadType.EAP: pull_eap,
    PayloadType.SK: pull_sk,
    PayloadType.SKF: pull_skf,
}

PUSHERS: dict[type, Callable[[Buffer, Any], None]] = {
    SaPayload: push_sa,
    KePayload: push_ke,
    IdiPayload: push_id,
    IdrPayload: push_id,
    CertPayload: push_cert,
    CertReqPayload: push_cert,
    AuthPayload: push_auth,
    NoncePayload: push_nonce,
    NotifyPayload: push_notify,
    DeletePayload: push_delete,
    VendorIdPayload: push_vendor_id,
    TsiPayload: push_ts,
    TsrPayload: push_ts,
    CpPayload: push_cp,
    EapPayload: push_eap,
    SkPayload: push_sk,
    SkfPayload: push_skf,
}


def payload_type(p: Payload) -> int:
    if isinstance(p, UnknownPayload):
        return p.payload_type
    return int(p.TYPE)


def encode_body(p: Payload) -> bytes:
    if isinstance(p, UnknownPayload):
        return p.data
    buf = Buffer()
    PUSHERS[type(p)](buf, p)
    return buf.out
