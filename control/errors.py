"""The two kinds of error the control plane raises.

``LocalProtocolError``: we, or the code calling us, misused the API (a bug or a bad
configuration); nothing goes on the wire because of it.

``RemoteProtocolError``: the peer sent something we cannot accept. It carries the notify
type to answer with (RFC 7296 §3.10.1), e.g. INVALID_SYNTAX for a malformed message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .constants import NotifyType

if TYPE_CHECKING:
    from .payloads import Payload


class ProtocolError(Exception):
    """Base class of every control-plane protocol error."""


class LocalProtocolError(ProtocolError):
    """The caller (or our own configuration) did something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something bad; ``notify`` is the error notify type to answer with.

    ``notify_data`` is the notification data to send with it (e.g. the accepted DH group
    for INVALID_KE_PAYLOAD). Neither the message nor the data ever holds key material.
    """

    def __init__(
        self, message: str, *, notify: int = NotifyType.INVALID_SYNTAX, notify_data: bytes = b""
    ) -> None:
        # INVALID_SYNTAX is the RFC 7296 §3.10.1 answer to anything malformed.
        super().__init__(message)
        self.notify = notify
        self.notify_data = notify_data
        # Payloads the answer carries after the error notify (e.g. EAP-Failure, RFC 3748).
        self.payloads: tuple[Payload, ...] = ()


class IntegrityError(RemoteProtocolError):
    """An encrypted payload failed its integrity check: the message is dropped silently
    (RFC 7296 §2.21), never answered."""


class PeerError(ProtocolError):
    """The peer answered our request with an error notify (``notify``); the exchange
    failed on its side."""

    def __init__(self, message: str, notify: int) -> None:
        super().__init__(message)
        self.notify = notify
