"""What the peer tunnels (strongSwan, wireguard-go, OpenVPN) share: the inner
addresses, a bounded wait for ping through the tunnel, and log tails for errors."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from espfast.netns import Namespace

INNER_A = "198.19.1.1"
INNER_B = "198.19.2.1"
INNER_NET_A = "198.19.1.0/24"
INNER_NET_B = "198.19.2.0/24"
INNER_MTU = 1400
UP_TIMEOUT = 20.0


class TunnelError(RuntimeError):
    """A peer tunnel did not come up; the message carries its processes' log tails."""


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_ping(
    ns: Namespace,
    src: str,
    dst: str,
    procs: Sequence[subprocess.Popen[bytes]],
    logs: Sequence[Path],
    timeout: float = UP_TIMEOUT,
) -> None:
    """Ping ``dst`` from ``src`` in ``ns`` until one echo comes back (bounded by
    ``timeout``); fail early if a tunnel process exits."""

    def failure(why: str) -> TunnelError:
        tails = "\n".join(f"--- {log} ---\n{log_tail(log)}" for log in logs)
        return TunnelError(f"{why}\n{tails}")

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise failure(f"{proc.args!r} exited with {proc.returncode}")
        ping = ns.run("ping", "-n", "-q", "-c", "1", "-W", "1", "-I", src, dst, check=False)
        if ping.returncode == 0:
            return
        time.sleep(0.1)
    raise failure(f"no ping from {src} to {dst} through the tunnel within {timeout}s")
