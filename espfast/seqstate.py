"""The sequence-number state of ``espfast static``: what a restart must not repeat.

With manual keys the AEAD nonce is salt || sequence number (RFC 4106 §3.1, RFC 7634 §2)
and the key never changes, so a restart that numbered packets from 1 again would encrypt
new packets under nonces already used (GCM: plaintext XORs and the GHASH key, hence
forgeries; RFC 4106 §8.1, RFC 8221 §4), and a restarted receiver would accept captured
old packets again. The state file keeps, per SA direction and key:

- outbound: a high-water mark the sequence number has not passed. It is *reserved ahead*
  (:data:`RESERVE` numbers) and on disk before the dataplane may use a number below it;
  the dataplane stops at it (``seq_limit``) until this module has written the next
  reservation, so a crash at any moment resumes above every number ever sent, and the
  hot path never writes a file. A clean stop writes the exact last number instead.
- inbound: a replay floor, every number up to it counts as received. Written at a clean
  stop (exact) and as a checkpoint at most every :data:`CHECKPOINT_S` while traffic flows,
  so after a crash only what arrived since the last checkpoint could be accepted again.

Entries are found by a fingerprint of the key (SHA-256 of a label and the key material:
the keys are random, the hash gives nothing away): the SPI may change, the key may not
come back without its state. The file is JSON, mode 0600, replaced atomically (a
temporary file, fsync, rename, fsync of the directory), and held under an exclusive lock
so that two processes never number packets under one key.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from espfast.dataplane import Direction, SaParams, SaStats

RESERVE = 1 << 20  # outbound numbers reserved per write
RENEW_BELOW = RESERVE // 2  # reserve again when fewer than this are left
CHECKPOINT_S = 1.0  # inbound floors are written at most this often (while they move)
POLL_S = 0.1  # how often the daemon looks (:meth:`SeqState.tick`)
VERSION = 1
_LABEL = b"espfast static sequence state v1\0"


class StateError(RuntimeError):
    """The state file is missing, unreadable, locked or cannot be written."""


def fingerprint(sa: SaParams) -> str:
    """Names a key in the state file without revealing it."""
    material = _LABEL + str(sa.direction).encode() + b"\0" + sa.enc_key + sa.integ_key
    return hashlib.sha256(material).hexdigest()[:32]


class _Dp(Protocol):
    def sa_stats(self, spi: int, direction: Direction) -> SaStats: ...
    def set_seq_limit(self, spi: int, limit: int) -> None: ...


@dataclass
class _Sa:
    name: str
    params: SaParams
    fp: str
    start: int  # outbound: initial_seq (last number possibly used); inbound: the floor
    mark: int  # what the file says now (outbound: the reservation = seq_limit)

    @property
    def seq_max(self) -> int:
        return 2**64 - 1 if self.params.esn else 2**32 - 1


class SeqState:
    """The state file of one config, locked while a tunnel runs (a context manager).

    :meth:`open` reads and checks it (nothing written: a refused or failed start costs
    no numbers); :meth:`start` writes the first reservations and gives each SA its
    ``initial_seq`` / ``seq_limit`` for :meth:`Dataplane.add_sa`; :meth:`tick` renews
    reservations and checkpoints floors; :meth:`close` writes the exact numbers after
    the dataplane stopped."""

    def __init__(self, path: Path, lock_fd: int, entries: dict[str, Any]) -> None:
        self.path = path
        self._lock_fd = lock_fd
        self._entries = entries  # fingerprint -> entry, including SAs no longer configured
        self._sas: list[_Sa] = []
        self._last_floor_write = 0.0
        self._closed = False

    @classmethod
    def open(cls, path: Path, sas: Iterable[tuple[str, SaParams]], *, fresh_keys: bool) -> SeqState:
        """Locks and reads ``path``; every SA must have an entry unless ``fresh_keys``
        says that those without one were never used. StateError with one clear line
        otherwise."""
        lock_fd = _lock(path)
        try:
            entries = _read(path)
            if entries is None and not fresh_keys:
                raise StateError(
                    f"no state file {path}: starting these keys at sequence number 0 "
                    "again would repeat nonces if they were used before. Restore the "
                    "file, or use new keys and start once with --fresh-keys"
                )
            state = cls(path, lock_fd, entries or {})
            state._plan(sas, fresh_keys)
        except BaseException:
            os.close(lock_fd)
            raise
        return state

    def _plan(self, sas: Iterable[tuple[str, SaParams]], fresh_keys: bool) -> None:
        for name, params in sas:
            fp = fingerprint(params)
            entry = self._entries.get(fp)
            if entry is None and not fresh_keys:
                raise StateError(
                    f"{self.path} has no state for SA {name!r} {params.direction} "
                    f"(SPI {params.spi:#010x}): a new key? then start with --fresh-keys"
                )
            start = _seq_of(entry, self.path) if entry else 0
            sa = _Sa(name, params, fp, start, start)
            if start >= sa.seq_max and params.direction is Direction.OUT:
                raise StateError(
                    f"SA {name!r} out (SPI {params.spi:#010x}): sequence numbers used up "
                    "(the key is spent: configure a new one)"
                )
            if params.direction is Direction.OUT:
                sa.mark = min(start + RESERVE, sa.seq_max)
            self._sas.append(sa)
            self._record(sa)

    def _record(self, sa: _Sa) -> None:
        self._entries[sa.fp] = {
            "name": sa.name,
            "direction": str(sa.params.direction),
            "spi": f"{sa.params.spi:#010x}",
            "seq": sa.mark,
        }

    def start(self) -> list[tuple[SaParams, int, int]]:
        """Writes the first reservations (on disk when it returns), then gives
        (params, initial_seq, seq_limit) for each SA, to install in the dataplane."""
        self._save()
        return [
            (sa.params, sa.start, sa.mark if sa.params.direction is Direction.OUT else 0)
            for sa in self._sas
        ]

    def tick(self, dp: _Dp, now: float | None = None) -> None:
        """Renew outbound reservations that run low (written before the dataplane may
        use them) and checkpoint inbound floors that moved (at most every CHECKPOINT_S)."""
        now = time.monotonic() if now is None else now
        renew: list[_Sa] = []
        floors = now - self._last_floor_write >= CHECKPOINT_S
        moved = False
        for sa in self._sas:
            seq = dp.sa_stats(sa.params.spi, sa.params.direction).seq
            if sa.params.direction is Direction.OUT:
                if sa.mark < sa.seq_max and sa.mark - seq < RENEW_BELOW:
                    sa.mark = min(seq + RESERVE, sa.seq_max)
                    renew.append(sa)
                    self._record(sa)
            elif floors and seq > sa.mark:
                sa.mark = seq
                moved = True
                self._record(sa)
        if not renew and not moved:
            return
        self._save()
        if moved:
            self._last_floor_write = now
        for sa in renew:
            dp.set_seq_limit(sa.params.spi, sa.mark)

    def close(self, dp: _Dp | None) -> None:
        """After the dataplane stopped: the exact numbers (outbound: the last one used;
        inbound: the highest accepted), then the lock goes. With ``dp`` None (it never
        ran) the reservations stay as written. Only the first call counts."""
        if self._closed:
            return
        self._closed = True
        try:
            if dp is not None:
                for sa in self._sas:
                    try:
                        seq = dp.sa_stats(sa.params.spi, sa.params.direction).seq
                    except ValueError:
                        continue  # never installed: its reservation stays
                    sa.mark = max(seq, sa.start)
                    self._record(sa)
                self._save()
        finally:
            os.close(self._lock_fd)

    def _save(self) -> None:
        text = json.dumps({"version": VERSION, "sas": self._entries}, indent=1, sort_keys=True)
        _write_atomic(self.path, text + "\n")


def _lock(path: Path) -> int:
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise StateError(f"cannot open {lock_path}: {e.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StateError(
            f"{path} is in use by another espfast static (two processes may never "
            "number packets under the same keys)"
        ) from None
    return fd


def _read(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not UTF-8"
        raise StateError(f"cannot read state file {path}: {reason}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = None
    if (
        not isinstance(data, dict)
        or data.get("version") != VERSION
        or not isinstance(data.get("sas"), dict)
    ):
        raise StateError(f"state file {path} is damaged or of another version; refusing to guess")
    return data["sas"]


def _seq_of(entry: object, path: Path) -> int:
    seq = entry.get("seq") if isinstance(entry, dict) else None
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**64:
        raise StateError(f"state file {path} is damaged (a bad sequence number)")
    return seq


def _write_atomic(path: Path, text: str) -> None:
    directory = path.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=directory)
    except OSError as e:
        raise StateError(f"cannot write state file {path}: {e.strerror}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StateError(f"cannot write state file {path}: {e.strerror}") from None


def default_path(config: Path) -> Path:
    """Next to the config: ``tunnel.toml`` keeps its state in ``tunnel.toml.state``."""
    return config.with_name(config.name + ".state")
