"""RADIUS messages (RFC 2865, RFC 2866 accounting, RFC 3579 EAP), sans-I/O.

 0                   1                   2                   3
 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
|     Code      |  Identifier   |            Length             |
+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
|                         Authenticator (16 octets)             |
+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
|  Attributes: Type (1), Length (1, >= 2, counts itself), Value ...

The gateway is the RADIUS client (NAS). Every answer is checked before any attribute is
believed: the Response Authenticator (RFC 2865 §3) and, on Access answers, the
Message-Authenticator (RFC 3579 §3.2), both keyed with the shared secret. The secret
never appears in an exception or a repr.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass, field
from enum import IntEnum

from ..errors import RemoteProtocolError

HEADER = 20
MAX_LENGTH = 4096  # RFC 2865 §3: 20..4096 octets
MAX_VALUE = 253  # octets of one attribute's value; longer EAP messages are split (§3.1)


class Code(IntEnum):
    ACCESS_REQUEST = 1
    ACCESS_ACCEPT = 2
    ACCESS_REJECT = 3
    ACCOUNTING_REQUEST = 4
    ACCOUNTING_RESPONSE = 5
    ACCESS_CHALLENGE = 11


class Attr(IntEnum):
    USER_NAME = 1
    NAS_IP_ADDRESS = 4
    NAS_PORT = 5
    SERVICE_TYPE = 6
    FRAMED_IP_ADDRESS = 8
    FRAMED_MTU = 12
    REPLY_MESSAGE = 18
    STATE = 24
    CLASS = 25
    VENDOR_SPECIFIC = 26
    SESSION_TIMEOUT = 27
    CALLED_STATION_ID = 30
    CALLING_STATION_ID = 31
    NAS_IDENTIFIER = 32
    ACCT_STATUS_TYPE = 40
    ACCT_DELAY_TIME = 41
    ACCT_INPUT_OCTETS = 42
    ACCT_OUTPUT_OCTETS = 43
    ACCT_SESSION_ID = 44
    ACCT_SESSION_TIME = 46
    ACCT_INPUT_PACKETS = 47
    ACCT_OUTPUT_PACKETS = 48
    ACCT_TERMINATE_CAUSE = 49
    ACCT_INPUT_GIGAWORDS = 52
    ACCT_OUTPUT_GIGAWORDS = 53
    NAS_PORT_TYPE = 61
    EAP_MESSAGE = 79
    MESSAGE_AUTHENTICATOR = 80
    ACCT_INTERIM_INTERVAL = 85
    FRAMED_POOL = 88


class AcctStatus(IntEnum):  # RFC 2866 §5.1
    START = 1
    STOP = 2
    INTERIM_UPDATE = 3


MICROSOFT = 311  # RFC 2548 vendor id
MS_MPPE_SEND_KEY = 16
MS_MPPE_RECV_KEY = 17
NAS_PORT_TYPE_VIRTUAL = 5
SERVICE_TYPE_FRAMED = 2

Attribute = tuple[int, bytes]


def md5(data: bytes) -> bytes:
    """MD5, as RADIUS defines its authenticators and key hiding (RFC 2865 §3, RFC 2548)."""
    return hashlib.md5(data).digest()  # noqa: S324  # the protocol's, not our choice


class RadiusError(RemoteProtocolError):
    """A RADIUS answer we drop: malformed, or not from a server knowing the secret."""


@dataclass(frozen=True)
class Packet:
    code: int
    identifier: int
    authenticator: bytes
    attributes: tuple[Attribute, ...] = ()

    def get(self, attr: int) -> bytes | None:
        return next((v for a, v in self.attributes if a == attr), None)

    def all(self, attr: int) -> list[bytes]:
        return [v for a, v in self.attributes if a == attr]


@dataclass(frozen=True)
class Request:
    """A request we sent: what checking its answer needs."""

    identifier: int
    authenticator: bytes
    data: bytes = field(repr=False)


def _attrs_bytes(attrs: tuple[Attribute, ...] | list[Attribute]) -> bytes:
    out = bytearray()
    for a, v in attrs:
        if not 0 < len(v) <= MAX_VALUE or not 0 < a < 256:
            raise ValueError(f"RADIUS attribute {a} of {len(v)} octets")
        out += bytes([a, len(v) + 2]) + v
    return bytes(out)


def _header(code: int, identifier: int, length: int) -> bytes:
    return bytes([code, identifier]) + length.to_bytes(2, "big")


def decode(data: bytes) -> Packet:
    """A RADIUS packet's fields (authenticity unchecked); RadiusError if malformed."""
    if len(data) < HEADER:
        raise RadiusError(f"RADIUS packet of {len(data)} octets")
    length = int.from_bytes(data[2:4], "big")
    # RFC 2865 §3: octets beyond Length are padding and ignored; fewer is malformed.
    if not HEADER <= length <= min(len(data), MAX_LENGTH):
        raise RadiusError(f"RADIUS length {length} in {len(data)} octets")
    attrs: list[Attribute] = []
    pos = HEADER
    while pos < length:
        if pos + 2 > length:
            raise RadiusError("truncated RADIUS attribute")
        a, alen = data[pos], data[pos + 1]
        if alen < 2 or pos + alen > length:
            raise RadiusError(f"RADIUS attribute {a} of length {alen}")
        attrs.append((a, bytes(data[pos + 2 : pos + alen])))
        pos += alen
    return Packet(data[0], data[1], bytes(data[4:20]), tuple(attrs))


def eap_attributes(eap: bytes) -> list[Attribute]:
    """RFC 3579 §3.1: an EAP packet in as many EAP-Message attributes as it needs."""
    return [(Attr.EAP_MESSAGE, eap[i : i + MAX_VALUE]) for i in range(0, len(eap), MAX_VALUE)]


def eap_message(p: Packet) -> bytes:
    """The EAP packet of an answer (the EAP-Message attributes joined), b"" if none."""
    return b"".join(p.all(Attr.EAP_MESSAGE))


def access_request(identifier: int, authenticator: bytes, secret: bytes,
                   attrs: list[Attribute]) -> Request:  # fmt: skip
    """An Access-Request with ``attrs`` and a Message-Authenticator (RFC 3579 §3.2: every
    request carrying EAP-Message has one). ``authenticator``: 16 random octets."""
    if len(authenticator) != 16:
        raise ValueError("a Request Authenticator has 16 octets")
    body = _attrs_bytes(attrs) + bytes([Attr.MESSAGE_AUTHENTICATOR, 18])
    length = HEADER + len(body) + 16
    if length > MAX_LENGTH:
        raise ValueError(f"Access-Request of {length} octets")
    unsigned = _header(Code.ACCESS_REQUEST, identifier, length) + authenticator + body
    mac = hmac.new(secret, unsigned + bytes(16), "md5").digest()
    return Request(identifier, authenticator, unsigned + mac)


def accounting_request(identifier: int, secret: bytes, attrs: list[Attribute]) -> Request:
    """An Accounting-Request (RFC 2866 §3): its authenticator is MD5 over the packet with
    16 zero octets in its place, and the secret."""
    body = _attrs_bytes(attrs)
    head = _header(Code.ACCOUNTING_REQUEST, identifier, HEADER + len(body))
    auth = md5(head + bytes(16) + body + secret)
    return Request(identifier, auth, head + auth + body)


def encode_answer(code: int, request: Request, attrs: list[Attribute], secret: bytes, *,
                  with_mac: bool = True) -> bytes:  # fmt: skip
    """A server's answer to ``request`` (RFC 2865 §3 Response Authenticator, RFC 3579
    §3.2 Message-Authenticator): for test servers, and the symmetry of verify_answer."""
    body = _attrs_bytes(attrs)
    if with_mac:
        body += bytes([Attr.MESSAGE_AUTHENTICATOR, 18]) + bytes(16)
    head = _header(code, request.identifier, HEADER + len(body))
    if with_mac:
        mac = hmac.new(secret, head + request.authenticator + body, "md5").digest()
        body = body[:-16] + mac
    return head + md5(head + request.authenticator + body + secret) + body


def verify_answer(data: bytes, request: Request, secret: bytes) -> Packet:
    """The answer to ``request`` if it is one and authentic (RFC 2865 §3 Response
    Authenticator; RFC 3579 §3.2 Message-Authenticator, required on Access answers);
    RadiusError otherwise."""
    p = decode(data)
    if p.identifier != request.identifier:
        raise RadiusError("RADIUS answer to another identifier")
    access = request.data[0] == Code.ACCESS_REQUEST
    expected = (Code.ACCESS_ACCEPT, Code.ACCESS_REJECT, Code.ACCESS_CHALLENGE) if access \
        else (Code.ACCOUNTING_RESPONSE,)  # fmt: skip
    if p.code not in expected:
        raise RadiusError(f"unexpected RADIUS code {p.code}")
    length = int.from_bytes(data[2:4], "big")
    raw = bytes(data[:length])
    resp = md5(raw[:4] + request.authenticator + raw[HEADER:] + secret)
    if not hmac.compare_digest(resp, p.authenticator):
        raise RadiusError("RADIUS Response Authenticator does not verify")
    if access:
        macs = p.all(Attr.MESSAGE_AUTHENTICATOR)
        if len(macs) != 1 or len(macs[0]) != 16:
            raise RadiusError("RADIUS answer without one Message-Authenticator")
        zeroed = _zero_mac(raw)
        mac = hmac.new(secret, zeroed[:4] + request.authenticator + zeroed[HEADER:], "md5")
        if not hmac.compare_digest(mac.digest(), macs[0]):
            raise RadiusError("RADIUS Message-Authenticator does not verify")
    return p


def _zero_mac(raw: bytes) -> bytes:
    out = bytearray(raw)
    pos = HEADER
    while pos + 2 <= len(out):
        a, alen = out[pos], out[pos + 1]
        if a == Attr.MESSAGE_AUTHENTICATOR and alen == 18:
            out[pos + 2 : pos + 18] = bytes(16)
        pos += max(alen, 2)
    return bytes(out)


# -- MS-MPPE keys (RFC 2548 §2.4.2, §2.4.3) ---------------------------------------------
def vendor_attributes(p: Packet, vendor: int) -> list[Attribute]:
    """The sub-attributes of ``vendor``'s Vendor-Specific attributes (RFC 2865 §5.26)."""
    out: list[Attribute] = []
    for v in p.all(Attr.VENDOR_SPECIFIC):
        if len(v) < 4 or int.from_bytes(v[:4], "big") != vendor:
            continue
        pos = 4
        while pos + 2 <= len(v):
            t, tlen = v[pos], v[pos + 1]
            if tlen < 2 or pos + tlen > len(v):
                raise RadiusError(f"malformed vendor {vendor} attribute")
            out.append((t, v[pos + 2 : pos + tlen]))
            pos += tlen
    return out


def _mppe_stream(secret: bytes, seed: bytes, blocks: list[bytes]) -> list[bytes]:
    # b(1) = MD5(S + R + A), b(i) = MD5(S + c(i-1)); each over the previous ciphertext.
    out, prev = [], seed
    for c in blocks:
        out.append(md5(secret + prev))
        prev = c
    return out


def mppe_decrypt(value: bytes, secret: bytes, req_auth: bytes) -> bytes:
    """The key of an MS-MPPE-Send/Recv-Key value: Salt (2, high bit set) || String."""
    salt, c = value[:2], value[2:]
    if len(value) < 18 or not salt[0] & 0x80 or len(c) % 16:
        raise RadiusError(f"malformed MS-MPPE key of {len(value)} octets")
    blocks = [c[i : i + 16] for i in range(0, len(c), 16)]
    pads = _mppe_stream(secret, req_auth + salt, blocks)
    plain = b"".join(
        bytes(x ^ y for x, y in zip(b, p, strict=True)) for b, p in zip(blocks, pads, strict=True)
    )
    n = plain[0]
    if n == 0 or n + 1 > len(plain):
        raise RadiusError("MS-MPPE key length out of range")
    return plain[1 : 1 + n]


def mppe_encrypt(key: bytes, secret: bytes, req_auth: bytes, salt: bytes) -> bytes:
    """What a server sends for ``key`` (tests, and the symmetry of the decryption)."""
    plain = bytes([len(key)]) + key
    plain += bytes(-len(plain) % 16)
    out, prev = bytearray(), req_auth + salt
    for i in range(0, len(plain), 16):
        pad = md5(secret + prev)
        c = bytes(x ^ y for x, y in zip(plain[i : i + 16], pad, strict=True))
        out += c
        prev = c
    return salt + bytes(out)


def msk(p: Packet, secret: bytes, req_auth: bytes) -> bytes | None:
    """The EAP MSK of an Access-Accept: Recv-Key || Send-Key (as strongSwan's eap-radius
    and RFC 5216 §2.3 order them), None without both keys."""
    keys = dict(vendor_attributes(p, MICROSOFT))
    if MS_MPPE_RECV_KEY not in keys or MS_MPPE_SEND_KEY not in keys:
        return None
    recv = mppe_decrypt(keys[MS_MPPE_RECV_KEY], secret, req_auth)
    send = mppe_decrypt(keys[MS_MPPE_SEND_KEY], secret, req_auth)
    return recv + send


def framed_ip(p: Packet) -> ipaddress.IPv4Address | None:
    """The Framed-IP-Address of an Access-Accept, when it names one address for the
    client: 255.255.255.254 (the NAS picks) and 255.255.255.255 (the user may) mean our
    pool decides (RFC 2865 §5.8); anything not unicast is refused."""
    v = p.get(Attr.FRAMED_IP_ADDRESS)
    if v is None:
        return None
    if len(v) != 4:
        raise RadiusError(f"Framed-IP-Address of {len(v)} octets")
    addr = ipaddress.IPv4Address(v)
    if int(addr) >= 0xFFFFFFFE:
        return None
    if addr.is_unspecified or addr.is_multicast or addr.is_loopback or addr.is_reserved:
        raise RadiusError(f"Framed-IP-Address {addr} is not a unicast address")
    return addr


def u32(n: int) -> bytes:
    return (n & 0xFFFFFFFF).to_bytes(4, "big")
