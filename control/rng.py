"""Randomness providers. control/ never draws randomness itself: an ``Rng`` is injected.

``SystemRng`` is what the daemon injects; ``DeterministicRng`` makes tests repeatable and
must never be used for real keys.
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol


class Rng(Protocol):
    def random_bytes(self, n: int) -> bytes: ...


class SystemRng:
    """The operating system's CSPRNG."""

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)


class DeterministicRng:
    """SHAKE-256 over (seed, counter): the same seed gives the same stream. Tests only."""

    def __init__(self, seed: bytes | str = b"espfast") -> None:
        self._seed = seed.encode() if isinstance(seed, str) else seed
        self._counter = 0

    def random_bytes(self, n: int) -> bytes:
        self._counter += 1
        h = hashlib.shake_256(self._seed + self._counter.to_bytes(8, "big"))
        return h.digest(n)
