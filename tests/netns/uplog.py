"""Reading what a running ``espfast up`` logs (its stderr) while it runs."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path

from espfast.netns import TwoHosts, wait_for
from espfast.static import Running, start_in, write_private


class Stderr:
    """What a running ``espfast up`` has written to stderr so far (read without waiting);
    call :meth:`done` before ``Running.stop``, which reads the rest."""

    def __init__(self, up: Running) -> None:
        assert up.proc.stderr is not None
        self.up = up
        self.pipe = up.proc.stderr
        os.set_blocking(self.pipe.fileno(), False)

    def read(self) -> str:
        with contextlib.suppress(BlockingIOError):  # nothing (more) there yet
            while chunk := os.read(self.pipe.fileno(), 65536):
                self.up.stderr_head += chunk.decode(errors="replace")
        return self.text

    @property
    def text(self) -> str:
        """Everything read so far, from the start (Running.stderr_head)."""
        return self.up.stderr_head

    def done(self) -> None:
        self.read()
        os.set_blocking(self.pipe.fileno(), True)


@dataclass
class PairRun:
    """What a run of two ``espfast up`` (a initiating to b) left: exit statuses, stdout
    (the counters) and everything each logged, and whether ``until`` showed up in a's log."""

    seen: bool
    status: tuple[int, int]
    out: tuple[str, str]
    err: tuple[str, str]


def run_pair(
    hosts: TwoHosts, workdir: Path, confs: tuple[str, str], until: str,
    verbosity: tuple[str, str] = ("-v", "-v"), timeout: float = 10.0,
) -> PairRun:  # fmt: skip
    """Start b then a with ``confs`` and ``verbosity`` (a's, b's), wait (bounded) until a
    logs ``until``, stop both by PID."""
    b = start_in(hosts.b, write_private(workdir / "b.toml", confs[1]), verbosity[1], command="up")
    a = start_in(hosts.a, write_private(workdir / "a.toml", confs[0]), verbosity[0], command="up")
    seen_a, seen_b = Stderr(a), Stderr(b)
    seen = wait_for(lambda: until in seen_a.read(), timeout=timeout)
    seen_a.done()
    seen_b.done()
    status_a, out_a, err_a = a.stop()
    status_b, out_b, err_b = b.stop()
    return PairRun(
        seen,
        (status_a, status_b),
        (out_a, out_b),
        (err_a, err_b),
    )
