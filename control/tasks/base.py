"""The task interface shared by every exchange."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..message import Message
from ..payloads import Payload

if TYPE_CHECKING:
    from ..ike_sa import IkeSa


class Task:
    exchange: int = 0
    # Responder: set by ``process`` when the answer waits on someone else (a RADIUS
    # server); the task manager holds the request until ``resume``.
    deferred: bool = False

    def __init__(self, sa: IkeSa, initiator: bool) -> None:
        self.sa = sa
        self.initiator = initiator  # our role in this exchange (not in the IKE SA)

    def build(self) -> list[Payload]:
        raise NotImplementedError

    def process(self, msg: Message, raw: bytes) -> bool:
        raise NotImplementedError

    def rebind(self, sa: IkeSa) -> None:
        """Move a queued (not yet started) task to another IKE SA (after a rekey)."""
        self.sa = sa

    def resume(self) -> None:
        """What a deferred task waited for is there: ``build`` comes next."""
        raise NotImplementedError

    def failed(self, reason: str) -> None:
        """The exchange failed (timeout, error notify, bad response): clean up."""
