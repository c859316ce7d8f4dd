"""IKEv2 messages (RFC 7296 §3.1-§3.2, §3.14): header, payload chain, SK encryption.

``decode(data, crypter)`` turns a datagram into a ``Message`` whose ``payloads`` are the
plaintext payloads followed by the decrypted contents of the SK payload; ``encode(msg,
crypter)`` does the reverse (with a crypter, every payload goes inside SK). ``check_rules``
applies the table of which payloads each exchange allows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from .buffer import Buffer
from .constants import (
    IKE_VERSION,
    ExchangeType,
    HeaderFlag,
    NotifyType,
    PayloadType,
    is_error_notify,
)
from .errors import IntegrityError, RemoteProtocolError
from .payloads import (
    PULLERS,
    NotifyPayload,
    Payload,
    SkfPayload,
    SkPayload,
    UnknownPayload,
    encode_body,
    payload_type,
)

HEADER_LEN = 28
GENERIC_HEADER_LEN = 4
CRITICAL = 0x80

# --------------------------------------------------------------------------------------
# IKE header (§3.1)
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                       IKE SA Initiator's SPI                  |
# |                                                               |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                       IKE SA Responder's SPI                  |
# |                                                               |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                          Message ID                           |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# |                            Length                             |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
#
# Generic payload header (§3.2)
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# | Next Payload  |C|  RESERVED   |         Payload Length        |
# +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    spi_i: int
    spi_r: int
    next_payload: int
    exchange: int
    flags: int
    message_id: int
    length: int

    @property
    def is_response(self) -> bool:
        return bool(self.flags & HeaderFlag.RESPONSE)

    @property
    def from_initiator(self) -> bool:
        """Sent by the original initiator of the IKE SA (the I flag, §3.1)."""
        return bool(self.flags & HeaderFlag.INITIATOR)


def parse_header(data: bytes) -> Header:
    buf = Buffer(data[:HEADER_LEN])
    spi_i = buf.pull_uint64()
    spi_r = buf.pull_uint64()
    next_payload = buf.pull_uint8()
    version = buf.pull_uint8()
    exchange = buf.pull_uint8()
    flags = buf.pull_uint8()
    message_id = buf.pull_uint32()
    length = buf.pull_uint32()
    if version >> 4 != IKE_VERSION >> 4:
        raise RemoteProtocolError(
            f"IKE major version {version >> 4}", notify=NotifyType.INVALID_MAJOR_VERSION
        )
    if length != len(data):
        raise RemoteProtocolError(f"header length {length}, datagram {len(data)} bytes")
    return Header(spi_i, spi_r, next_payload, exchange, flags, message_id, length)


def push_header(buf: Buffer, h: Header) -> None:
    buf.push_uint64(h.spi_i)
    buf.push_uint64(h.spi_r)
    buf.push_uint8(h.next_payload)
    buf.push_uint8(IKE_VERSION)
    buf.push_uint8(h.exchange)
    buf.push_uint8(h.flags)
    buf.push_uint32(h.message_id)
    buf.push_uint32(h.length)


class SkCrypter(Protocol):
    """What SK encryption needs from crypto.py (RFC 7296 §3.14, RFC 5282)."""

    block_size: int

    def sealed_len(self, plain_len: int) -> int:
        """IV + ciphertext + ICV length for ``plain_len`` padded bytes."""
        ...

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        """IV | ciphertext | ICV of ``plaintext`` (already padded), authenticating ``aad``."""
        ...

    def open(self, aad: bytes, body: bytes) -> bytes:
        """The padded plaintext; RemoteProtocolError if the ICV does not verify."""
        ...


P = TypeVar("P")


@dataclass(frozen=True)
class Message:
    spi_i: int
    spi_r: int
    exchange: int
    message_id: int
    is_response: bool
    from_initiator: bool
    payloads: tuple[Payload, ...] = ()
    encrypted: bool = field(default=False, compare=False)

    def get(self, cls: type[P]) -> P | None:
        for p in self.payloads:
            if isinstance(p, cls):
                return p
        return None

    def all(self, cls: type[P]) -> list[P]:
        return [p for p in self.payloads if isinstance(p, cls)]

    def need(self, cls: type[P]) -> P:
        """The first payload of ``cls``; RemoteProtocolError when there is none."""
        p = self.get(cls)
        if p is None:
            raise RemoteProtocolError(f"missing {cls.__name__.removesuffix('Payload')} payload")
        return p

    def notify(self, notify_type: int) -> NotifyPayload | None:
        for p in self.payloads:
            if isinstance(p, NotifyPayload) and p.notify_type == notify_type:
                return p
        return None

    def error_notify(self) -> NotifyPayload | None:
        for p in self.payloads:
            if isinstance(p, NotifyPayload) and is_error_notify(p.notify_type):
                return p
        return None

    @property
    def flags(self) -> int:
        flags = HeaderFlag.NONE
        if self.is_response:
            flags |= HeaderFlag.RESPONSE
        if self.from_initiator:
            flags |= HeaderFlag.INITIATOR
        return int(flags)


def decode_chain(buf: Buffer, first: int) -> tuple[list[Payload], int | None]:
    """Parse payloads until Next Payload is 0. Returns them and, when the chain ends in
    an SK or SKF payload, the type of the first payload inside it (which the SK header's
    Next Payload names); SK/SKF must be the last payload (§3.14)."""
    payloads: list[Payload] = []
    ptype = first
    inner_first: int | None = None
    while ptype != PayloadType.NONE:
        next_type = buf.pull_uint8()
        critical = buf.pull_uint8() & CRITICAL
        length = buf.pull_uint16()
        if length < GENERIC_HEADER_LEN:
            raise RemoteProtocolError(f"payload length {length} < 4")
        body = buf.sub(length - GENERIC_HEADER_LEN)
        puller = PULLERS.get(ptype)
        if puller is None:
            if critical:
                # RFC 7296 §2.5: reject the whole message, naming the payload type.
                raise RemoteProtocolError(
                    f"unsupported critical payload {ptype}",
                    notify=NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD,
                    notify_data=bytes([ptype]),
                )
            payloads.append(UnknownPayload(ptype, body.pull_rest()))
        else:
            p = puller(body)
            body.expect_eof(f"payload {PayloadType(ptype).name}")
            payloads.append(p)
            if ptype in (PayloadType.SK, PayloadType.SKF):
                inner_first = next_type
                buf.expect_eof("message after the encrypted payload")
                break
        ptype = next_type
    return payloads, inner_first


def encode_chain(payloads: tuple[Payload, ...] | list[Payload], last_next: int = 0) -> bytes:
    buf = Buffer()
    for i, p in enumerate(payloads):
        nxt = payload_type(payloads[i + 1]) if i + 1 < len(payloads) else last_next
        body = encode_body(p)
        buf.push_uint8(nxt)
        buf.push_uint8(0)
        buf.push_uint16(GENERIC_HEADER_LEN + len(body))
        buf.push_bytes(body)
    return buf.out


def _unpad(padded: bytes) -> bytes:
    # §3.14: ... | Padding | Pad Length |; the pad length octet counts the padding only.
    if not padded:
        raise RemoteProtocolError("empty encrypted payload")
    pad = padded[-1]
    if pad + 1 > len(padded):
        raise RemoteProtocolError("pad length beyond the encrypted payload")
    return padded[: -pad - 1]


def _pad(plain: bytes, block_size: int) -> bytes:
    pad = (-(len(plain) + 1)) % block_size
    return plain + bytes(pad) + bytes([pad])


def decode(data: bytes, crypter: SkCrypter | None = None) -> Message:
    """Parse (and, with a crypter, decrypt and verify) one IKE message."""
    if len(data) < HEADER_LEN:
        raise RemoteProtocolError(f"datagram of {len(data)} bytes is shorter than a header")
    h = parse_header(data)
    buf = Buffer(data)
    buf.pull_bytes(HEADER_LEN)
    try:
        payloads, inner_first = decode_chain(buf, h.next_payload)
    except RemoteProtocolError as exc:
        if crypter is None:
            raise
        # Nothing is authenticated yet: garbage to drop, not a request to answer.
        raise IntegrityError(f"malformed unprotected part: {exc}") from None
    buf.expect_eof("message after its last payload")  # the header's length covers only these
    encrypted = False
    sk = payloads[-1] if payloads else None
    if crypter is not None and not isinstance(sk, SkPayload):
        raise IntegrityError("message without an encrypted payload")
    if isinstance(sk, SkPayload):
        if crypter is None:
            raise RemoteProtocolError("encrypted payload before keys exist")
        payloads.pop()
        offset = len(data) - len(sk.data)
        plain = _unpad(crypter.open(data[:offset], data[offset:]))
        inner, nested = decode_chain(Buffer(plain), inner_first or 0)
        if nested is not None:
            raise RemoteProtocolError("encrypted payload inside an encrypted payload")
        payloads.extend(inner)
        encrypted = True
    return Message(
        h.spi_i, h.spi_r, h.exchange, h.message_id, h.is_response, h.from_initiator,
        tuple(payloads), encrypted,
    )  # fmt: skip


def decrypt_fragment(data: bytes, crypter: SkCrypter) -> tuple[Header, SkfPayload, int, bytes]:
    """RFC 7383 §2.6: verify and decrypt one SKF fragment on its own. Returns the header,
    the fragment, the first inner payload type (fragment 1) and the plaintext piece."""
    h = parse_header(data)
    buf = Buffer(data)
    buf.pull_bytes(HEADER_LEN)
    payloads, inner_first = decode_chain(buf, h.next_payload)
    if len(payloads) != 1 or not isinstance(payloads[0], SkfPayload):
        raise RemoteProtocolError("a fragment must carry exactly one SKF payload")
    skf = payloads[0]
    offset = len(data) - len(skf.data)
    plain = _unpad(crypter.open(data[:offset], data[offset:]))
    return h, skf, inner_first or 0, plain


def reassemble(h: Header, inner_first: int, pieces: list[bytes]) -> Message:
    """The message carried by a complete set of fragments (already decrypted, in order)."""
    inner, nested = decode_chain(Buffer(b"".join(pieces)), inner_first)
    if nested is not None:
        raise RemoteProtocolError("encrypted payload inside fragments")
    return Message(
        h.spi_i, h.spi_r, h.exchange, h.message_id, h.is_response, h.from_initiator,
        tuple(inner), True,
    )  # fmt: skip


def _header_bytes(msg: Message, next_payload: int, length: int) -> bytes:
    buf = Buffer()
    push_header(
        buf,
        Header(msg.spi_i, msg.spi_r, next_payload, msg.exchange, msg.flags,
               msg.message_id, length),
    )  # fmt: skip
    return buf.out


def encode(msg: Message, crypter: SkCrypter | None = None) -> bytes:
    """Serialize ``msg``; with a crypter all payloads travel inside one SK payload."""
    if crypter is None:
        chain = encode_chain(msg.payloads)
        first = payload_type(msg.payloads[0]) if msg.payloads else 0
        return _header_bytes(msg, first, HEADER_LEN + len(chain)) + chain
    inner = encode_chain(msg.payloads)
    first_inner = payload_type(msg.payloads[0]) if msg.payloads else 0
    padded = _pad(inner, crypter.block_size)
    body_len = crypter.sealed_len(len(padded))
    total = HEADER_LEN + GENERIC_HEADER_LEN + body_len
    aad = _header_bytes(msg, PayloadType.SK, total) + _generic(first_inner, body_len)
    return aad + crypter.seal(aad, padded)


def encode_fragments(msg: Message, crypter: SkCrypter, max_size: int) -> list[bytes]:
    """RFC 7383 §2.5: the message split into SKF fragments of at most ``max_size`` bytes
    each (the whole datagram, IKE header included)."""
    inner = encode_chain(msg.payloads)
    first_inner = payload_type(msg.payloads[0]) if msg.payloads else 0
    overhead = HEADER_LEN + GENERIC_HEADER_LEN + 4
    # The largest plaintext piece whose sealed, padded form fits.
    piece = max_size - overhead - crypter.sealed_len(0) - crypter.block_size
    if piece <= 0:
        raise ValueError(f"fragment size {max_size} too small")
    pieces = [inner[i : i + piece] for i in range(0, len(inner), piece)] or [b""]
    out = []
    for number, chunk in enumerate(pieces, 1):
        padded = _pad(chunk, crypter.block_size)
        body_len = crypter.sealed_len(len(padded))
        total = overhead + body_len
        nxt = first_inner if number == 1 else 0
        aad = (
            _header_bytes(msg, PayloadType.SKF, total)
            + _generic(nxt, 4 + body_len)
            + number.to_bytes(2, "big")
            + len(pieces).to_bytes(2, "big")
        )
        out.append(aad + crypter.seal(aad, padded))
    return out


def _generic(next_payload: int, body_len: int) -> bytes:
    return bytes([next_payload, 0]) + (GENERIC_HEADER_LEN + body_len).to_bytes(2, "big")


# --------------------------------------------------------------------------------------
# Which payloads each exchange allows (after decryption): type -> (min, max).
# RFC 7296 §1.2-§1.5. Minimums apply only to messages without an error notify (an error
# response carries the notify alone). Notify and Vendor ID may appear any number of times.
# --------------------------------------------------------------------------------------

ANY = 1 << 16
_T = PayloadType
_COMMON: dict[int, tuple[int, int]] = {_T.NOTIFY: (0, ANY), _T.VENDOR_ID: (0, ANY)}

RULES: dict[tuple[int, bool], dict[int, tuple[int, int]]] = {
    (ExchangeType.IKE_SA_INIT, False): {_T.SA: (1, 1), _T.KE: (1, 1), _T.NONCE: (1, 1)},
    (ExchangeType.IKE_SA_INIT, True): {
        _T.SA: (1, 1), _T.KE: (1, 1), _T.NONCE: (1, 1), _T.CERTREQ: (0, ANY),
    },
    (ExchangeType.IKE_AUTH, False): {
        _T.IDI: (1, 1), _T.CERT: (0, ANY), _T.CERTREQ: (0, ANY), _T.IDR: (0, 1),
        _T.AUTH: (1, 1), _T.SA: (1, 1), _T.TSI: (1, 1), _T.TSR: (1, 1), _T.CP: (0, 1),
    },
    (ExchangeType.IKE_AUTH, True): {
        _T.IDR: (1, 1), _T.CERT: (0, ANY), _T.AUTH: (1, 1), _T.SA: (0, 1),
        _T.TSI: (0, 1), _T.TSR: (0, 1), _T.CP: (0, 1),
    },
    (ExchangeType.CREATE_CHILD_SA, False): {
        _T.SA: (1, 1), _T.NONCE: (1, 1), _T.KE: (0, 1), _T.TSI: (0, 1), _T.TSR: (0, 1),
    },
    (ExchangeType.CREATE_CHILD_SA, True): {
        _T.SA: (1, 1), _T.NONCE: (1, 1), _T.KE: (0, 1), _T.TSI: (0, 1), _T.TSR: (0, 1),
    },
    (ExchangeType.INFORMATIONAL, False): {_T.DELETE: (0, ANY), _T.CP: (0, 1)},
    (ExchangeType.INFORMATIONAL, True): {_T.DELETE: (0, ANY), _T.CP: (0, 1)},
}  # fmt: skip

# IKE_AUTH with EAP (RFC 7296 §2.16): the initiator's first request omits AUTH; the
# responder's answers carry EAP (its first also IDr, CERT, AUTH; its last AUTH and the
# Child SA); the initiator's later requests carry EAP or, the last, AUTH alone.
EAP_RULES: dict[str, dict[int, tuple[int, int]]] = {
    "first": {
        _T.IDI: (1, 1), _T.CERT: (0, ANY), _T.CERTREQ: (0, ANY), _T.IDR: (0, 1),
        _T.SA: (1, 1), _T.TSI: (1, 1), _T.TSR: (1, 1), _T.CP: (0, 1),
    },
    "request": {_T.EAP: (0, 1), _T.AUTH: (0, 1)},
    "response": {
        _T.IDR: (0, 1), _T.CERT: (0, ANY), _T.AUTH: (0, 1), _T.EAP: (0, 1), _T.SA: (0, 1),
        _T.TSI: (0, 1), _T.TSR: (0, 1), _T.CP: (0, 1),
    },
}  # fmt: skip

# Exchanges whose payloads must all be inside SK (§3.14).
ENCRYPTED_EXCHANGES = frozenset(
    {ExchangeType.IKE_AUTH, ExchangeType.CREATE_CHILD_SA, ExchangeType.INFORMATIONAL}
)


def check_rules(msg: Message, rules: dict[int, tuple[int, int]] | None = None) -> None:
    """RemoteProtocolError(INVALID_SYNTAX) unless the payloads fit the exchange's rules
    (or ``rules``, e.g. one of EAP_RULES)."""
    if rules is None:
        rules = RULES.get((msg.exchange, msg.is_response))
    if rules is None:
        raise RemoteProtocolError(f"unknown exchange type {msg.exchange}")
    if msg.exchange in ENCRYPTED_EXCHANGES and not msg.encrypted:
        raise RemoteProtocolError(f"{ExchangeType(msg.exchange).name} without encryption")
    counts: dict[int, int] = {}
    for p in msg.payloads:
        if isinstance(p, UnknownPayload):
            continue
        t = payload_type(p)
        counts[t] = counts.get(t, 0) + 1
    has_error = msg.is_response and (
        msg.error_notify() is not None or msg.notify(NotifyType.COOKIE) is not None
    )
    for t, n in counts.items():
        lo_hi = rules.get(t) or _COMMON.get(t)
        if lo_hi is None:
            raise RemoteProtocolError(
                f"{PayloadType(t).name} payload not allowed in {ExchangeType(msg.exchange).name}"
            )
        if n > lo_hi[1]:
            raise RemoteProtocolError(f"{n} {PayloadType(t).name} payloads, at most {lo_hi[1]}")
    if not has_error:
        for t, (lo, _) in rules.items():
            if counts.get(t, 0) < lo:
                raise RemoteProtocolError(
                    f"{ExchangeType(msg.exchange).name} without {PayloadType(t).name} payload"
                )
