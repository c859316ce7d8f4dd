"""A byte buffer with network-order pull/push helpers.

Pulling past the end raises RemoteProtocolError(INVALID_SYNTAX): whatever the peer sent,
a parser built on this either succeeds or raises that one error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .errors import RemoteProtocolError


class Buffer:
    """Read cursor over ``data`` (parsing) or a growing bytearray (building)."""

    def __init__(self, data: bytes = b"") -> None:
        self._data = memoryview(bytes(data))
        self._out = bytearray()
        self.pos = 0

    # -- parsing ---------------------------------------------------------------------------
    def remaining(self) -> int:
        return len(self._data) - self.pos

    def eof(self) -> bool:
        return self.pos >= len(self._data)

    def pull_bytes(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self._data):
            raise RemoteProtocolError(f"truncated: wanted {n} bytes, {self.remaining()} left")
        out = bytes(self._data[self.pos : self.pos + n])
        self.pos += n
        return out

    def pull_rest(self) -> bytes:
        return self.pull_bytes(self.remaining())

    def pull_uint8(self) -> int:
        return self.pull_bytes(1)[0]

    def pull_uint16(self) -> int:
        return int.from_bytes(self.pull_bytes(2), "big")

    def pull_uint32(self) -> int:
        return int.from_bytes(self.pull_bytes(4), "big")

    def pull_uint64(self) -> int:
        return int.from_bytes(self.pull_bytes(8), "big")

    def sub(self, length: int) -> Buffer:
        """A buffer over the next ``length`` bytes, which this one skips."""
        return Buffer(self.pull_bytes(length))

    def expect_eof(self, what: str) -> None:
        if not self.eof():
            raise RemoteProtocolError(f"{self.remaining()} trailing bytes in {what}")

    # -- building --------------------------------------------------------------------------
    @property
    def out(self) -> bytes:
        return bytes(self._out)

    def push_bytes(self, data: bytes) -> None:
        self._out += data

    def push_uint8(self, v: int) -> None:
        self._out.append(v)

    def push_uint16(self, v: int) -> None:
        self._out += v.to_bytes(2, "big")

    def push_uint32(self, v: int) -> None:
        self._out += v.to_bytes(4, "big")

    def push_uint64(self, v: int) -> None:
        self._out += v.to_bytes(8, "big")

    @contextmanager
    def push_length16(self, offset: int) -> Iterator[None]:
        """Back-patch a 16-bit length at ``start + offset`` with the length of the block
        pushed inside the ``with`` (the length counts from ``start``)."""
        start = len(self._out)
        yield
        length = len(self._out) - start
        if length > 0xFFFF:
            raise ValueError(f"block of {length} bytes does not fit a 16-bit length")
        self._out[start + offset : start + offset + 2] = length.to_bytes(2, "big")
