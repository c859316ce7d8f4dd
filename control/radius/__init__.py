"""RADIUS (RFC 2865, RFC 2866, RFC 3579) for relaying EAP to a shared user database,
sans-I/O: the message codec (codec.py) and one relayed EAP conversation (relay.py).
The UDP client with retransmission and failover is in the shell (espfast/radius.py)."""

from .codec import AcctStatus, Attr, Code, Packet, RadiusError, Request
from .relay import RadiusAnswer, RadiusRelay, answer_of

__all__ = [
    "AcctStatus",
    "Attr",
    "Code",
    "Packet",
    "RadiusAnswer",
    "RadiusError",
    "RadiusRelay",
    "Request",
    "answer_of",
]
