"""The EAP packet (RFC 3748 §4) as IKEv2 carries it in the EAP payload (RFC 7296 §3.16).

 0                   1                   2                   3
 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
|     Code      |  Identifier   |            Length             |
+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
|     Type      |  Type-Data ...  (Request and Response only)
+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-

Success and Failure are four octets, without Type. Octets beyond Length are padding
(RFC 3748 §4.1) and are refused here: an IKE payload has its own length.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ..errors import RemoteProtocolError

MAX_EAP_LENGTH = 1500  # what any method we speak needs, and more


class EapCode(IntEnum):
    REQUEST = 1
    RESPONSE = 2
    SUCCESS = 3
    FAILURE = 4


class EapType(IntEnum):
    IDENTITY = 1
    NOTIFICATION = 2
    NAK = 3  # Legacy Nak: the peer proposes other methods (RFC 3748 §5.3.1)
    MSCHAPV2 = 26


@dataclass(frozen=True)
class EapPacket:
    code: int
    identifier: int
    type: int = 0  # Request and Response only
    data: bytes = b""

    @property
    def has_type(self) -> bool:
        return self.code in (EapCode.REQUEST, EapCode.RESPONSE)


def decode_eap(data: bytes) -> EapPacket:
    """An EAP packet from the EAP payload body; RemoteProtocolError if malformed."""
    if len(data) < 4:
        raise RemoteProtocolError(f"EAP packet of {len(data)} bytes")
    code, identifier, length = data[0], data[1], int.from_bytes(data[2:4], "big")
    if length != len(data) or length > MAX_EAP_LENGTH:
        raise RemoteProtocolError(f"EAP length {length} in a payload of {len(data)} bytes")
    if code in (EapCode.SUCCESS, EapCode.FAILURE):
        if length != 4:
            raise RemoteProtocolError(f"EAP {EapCode(code).name} of {length} bytes")
        return EapPacket(code, identifier)
    if code not in (EapCode.REQUEST, EapCode.RESPONSE):
        raise RemoteProtocolError(f"unknown EAP code {code}")
    if length < 5:
        raise RemoteProtocolError("EAP request or response without a type")
    return EapPacket(code, identifier, data[4], bytes(data[5:]))


def encode_eap(p: EapPacket) -> bytes:
    body = bytes([p.type]) + p.data if p.has_type else b""
    return bytes([p.code, p.identifier]) + (4 + len(body)).to_bytes(2, "big") + body


def printable(text: str) -> str:
    """``text`` as a log may show it: quoted, anything unprintable escaped."""
    return repr(text)
