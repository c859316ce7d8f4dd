"""The control socket is root-only: ``espfast status`` as an unprivileged user is refused
by the socket's 0600 bits, and (were the bits opened up) by the server's SO_PEERCRED check.

Needs root to run the client as another user (uid 65534). The server is a separate process
serving a fixed status document, as the daemon would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from espfast.netns import wait_for

NOBODY = 65534
SERVER = """
import asyncio, json, signal, sys
from pathlib import Path
from espfast.ctl import ControlServer

async def main() -> None:
    doc = json.loads(sys.argv[2])
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with ControlServer(lambda: doc, Path(sys.argv[1])):
        print("ready", flush=True)
        await stop.wait()

asyncio.run(main())
"""
DOC = {
    "schema": 1,
    "daemon": {"pid": 1, "version": "0.1.0", "started": 0.0, "config": "x.toml"},
    "ike_sas": [],
}


@pytest.fixture
def served() -> Iterator[tuple[Path, subprocess.Popen[bytes]]]:
    # A directory others may enter (0755), unlike pytest's tmp dirs: only the socket's own
    # bits stand between another user and the daemon.
    with tempfile.TemporaryDirectory(prefix="ef-rly-") as d:
        os.chmod(d, 0o755)  # noqa: S103 (the point of the test)
        path = Path(d) / "espfast.sock"
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(path), json.dumps(DOC)], stdout=subprocess.PIPE
        )
        try:
            assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
            yield path, proc
        finally:
            proc.terminate()
            proc.wait(10)


def status(path: Path, *, user: int | None = None) -> subprocess.CompletedProcess[str]:
    as_user = (
        [] if user is None else ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    )
    return subprocess.run(
        [*as_user, sys.executable, "-m", "espfast", "status", "--socket", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_root_only(served: tuple[Path, subprocess.Popen[bytes]]) -> None:
    path, proc = served
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    as_root = status(path)
    assert as_root.returncode == 0, as_root.stderr
    assert "IKE SAs: none" in as_root.stdout
    as_nobody = status(path, user=NOBODY)
    assert as_nobody.returncode == 1
    assert as_nobody.stderr == (
        f"espfast status: cannot open the control socket {path}: permission denied (run as root)\n"
    )
    # Even with the bits opened up, the server refuses a peer that is not root.
    os.chmod(path, 0o666)  # noqa: S103 (the point of the test)
    as_nobody = status(path, user=NOBODY)
    assert as_nobody.returncode == 1
    assert as_nobody.stderr == "espfast status: the daemon says: permission denied\n"
    # SIGTERM: the server removes its socket; status then says nobody runs.
    proc.terminate()
    assert proc.wait(10) == 0
    assert wait_for(lambda: not path.exists(), timeout=5)
    gone = status(path)
    assert gone.returncode == 1
    assert gone.stderr == (
        f"espfast status: the espfast daemon is not running (no control socket {path})\n"
    )
