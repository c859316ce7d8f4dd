"""IKE message reassembly (RFC 7383), bounded.

Each fragment is verified on its own before it is kept (RFC 7383 §2.6). What a peer can
make us hold is bounded: only the Message ID the exchange expects is reassembled (the
peer's next request, the answer to our outstanding request: the caller checks), at most
``MAX_FRAGMENTS`` fragments and ``MAX_BYTES_PER_SA`` bytes per IKE SA, at most
``MAX_BYTES_TOTAL`` for all IKE SAs sharing one :class:`FragmentBudget` (a daemon's),
and an incomplete message is dropped ``TIMEOUT`` seconds after its first fragment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_FRAGMENTS = 32
MAX_BYTES_PER_SA = 64 * 1024
MAX_BYTES_TOTAL = 16 * 1024 * 1024
TIMEOUT = 10.0  # seconds


@dataclass
class FragmentBudget:
    """Bytes held in incomplete messages by all the IKE SAs that share it."""

    limit: int = MAX_BYTES_TOTAL
    used: int = 0
    dropped: int = 0  # fragments refused: unexpected, over a bound, or expired sets

    def take(self, n: int) -> bool:
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


@dataclass
class _Message:
    total: int
    started: float
    first_type: int = 0
    pieces: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class Reassembly:
    """The incomplete messages of one IKE SA, keyed by (Message ID, is_response)."""

    def __init__(self, budget: FragmentBudget) -> None:
        self.budget = budget
        self._msgs: dict[tuple[int, bool], _Message] = {}
        self.held = 0

    def add(self, key: tuple[int, bool], number: int, total: int, first_type: int,
            piece: bytes, now: float) -> tuple[int, list[bytes]] | None:  # fmt: skip
        """Keep fragment ``number`` of ``total``; the first inner payload type and the
        pieces in order once the message is complete, else None (also when the fragment
        was refused: ``budget.dropped`` counts those)."""
        self.expire(now)
        if not 1 <= number <= total <= MAX_FRAGMENTS:
            self.budget.dropped += 1
            return None
        msg = self._msgs.get(key)
        if msg is not None and msg.total != total:  # the peer started over
            self._drop(key)
            msg = None
        if msg is None:
            msg = self._msgs[key] = _Message(total, now)
        if number in msg.pieces:
            return None  # a duplicate
        if self.held + len(piece) > MAX_BYTES_PER_SA or not self.budget.take(len(piece)):
            self.budget.dropped += 1
            self._drop(key)
            return None
        msg.pieces[number] = piece
        msg.size += len(piece)
        self.held += len(piece)
        if number == 1:
            msg.first_type = first_type
        if len(msg.pieces) < total:
            return None
        self._drop(key)
        return msg.first_type, [msg.pieces[n] for n in range(1, total + 1)]

    def deadline(self) -> float | None:
        """When the oldest incomplete message is dropped."""
        if not self._msgs:
            return None
        return min(m.started for m in self._msgs.values()) + TIMEOUT

    def expire(self, now: float) -> None:
        for key, msg in list(self._msgs.items()):
            if now >= msg.started + TIMEOUT:
                self.budget.dropped += 1
                self._drop(key)

    def clear(self) -> None:
        for key in list(self._msgs):
            self._drop(key)

    def _drop(self, key: tuple[int, bool]) -> None:
        msg = self._msgs.pop(key, None)
        if msg is not None:
            self.held -= msg.size
            self.budget.give(msg.size)
