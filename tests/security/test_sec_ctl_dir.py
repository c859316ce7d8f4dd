"""Attacks on the control socket's directory (espfast/ctlsock.py).

Another local user who could plant something where the daemon puts its control socket
could block it or, worse, have ``espfast status`` (run as root) talk to an impostor. The
daemon refuses, with one line, a pre-existing path that is a symlink, not a directory,
another user's directory, or a directory others may write to (also above it, unless
sticky), and a socket another user left; what it creates is 0700/0600 (0750/0660 and the
group with ``--socket-group``) and owned by the service user when it has one.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from espfast.ctl import ControlError, ControlServer
from espfast.netns import Namespace
from espfast.static import write_private
from espfast.up import pair_configs

NOBODY = 65534
GROUP = 61234  # a group no user of this machine is in
DOC = {
    "schema": 1,
    "daemon": {"pid": 1, "version": "0.1.0", "started": 0.0, "config": "x.toml"},
    "ike_sas": [],
}


def bind(path: Path, **kw: int) -> ControlServer:
    server = ControlServer(lambda: DOC, path, **kw)  # type: ignore[arg-type,return-value]
    server.bind()
    return server


def release(server: ControlServer) -> None:
    """Close a bound server (never started): its socket goes."""
    asyncio.run(server.close())


def refused(path: Path, match: str, **kw: int) -> None:
    with pytest.raises(ControlError, match=match):
        bind(path, **kw)


@pytest.fixture
def base() -> Iterator[Path]:
    # Others may enter it (unlike pytest's tmp dirs): the group test's client is uid 65534.
    with tempfile.TemporaryDirectory(prefix="ef-ctl-") as d:
        os.chmod(d, 0o755)  # noqa: S103 (not writable by others)
        yield Path(d)


def test_symlink_refused(base: Path) -> None:
    target = base / "elsewhere"
    target.mkdir(mode=0o700)
    (base / "run").symlink_to(target)
    refused(base / "run" / "espfast.sock", r"run is a symbolic link; refusing to use it$")
    assert list(target.iterdir()) == []  # nothing was created through it


def test_file_refused(base: Path) -> None:
    (base / "run").write_text("planted")
    refused(base / "run" / "espfast.sock", r"run is not a directory; refusing to use it$")
    assert (base / "run").read_text() == "planted"


def test_other_users_directory_refused(base: Path) -> None:
    d = base / "run"
    d.mkdir(mode=0o700)
    os.chown(d, NOBODY, NOBODY)
    refused(d / "espfast.sock", rf"run is owned by uid {NOBODY}; refusing to use it$")
    # ... unless it is the service user's own (the daemon will run as it).
    release(bind(d / "espfast.sock", owner=NOBODY))


def test_writable_by_others_refused(base: Path) -> None:
    d = base / "run"
    d.mkdir()
    os.chmod(d, 0o777)  # noqa: S103 (the point of the test)
    refused(d / "espfast.sock", r"run is writable by other users; refusing to use it$")
    os.chmod(d, 0o770)  # noqa: S103 (the point of the test)
    refused(d / "espfast.sock", r"run is writable by other users")


def test_writable_ancestor_refused_sticky_allowed(base: Path) -> None:
    shared = base / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # noqa: S103 (the point of the test)
    refused(shared / "espfast" / "espfast.sock", r"shared is writable by other users")
    assert not (shared / "espfast").exists()
    os.chmod(shared, 0o1777)  # noqa: S103 (like /tmp: others cannot rename what is ours)
    server = bind(shared / "espfast" / "espfast.sock")
    assert stat.S_IMODE(os.stat(shared / "espfast").st_mode) == 0o700
    release(server)


def test_planted_socket_of_another_user_refused(base: Path) -> None:
    d = base / "run"
    d.mkdir(mode=0o755)
    planted = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    planted.bind(str(d / "espfast.sock"))
    planted.close()
    os.chown(d / "espfast.sock", NOBODY, NOBODY)
    refused(d / "espfast.sock", rf"espfast.sock is owned by uid {NOBODY}; not touching it$")
    assert (d / "espfast.sock").exists()


def test_created_modes_and_owners(base: Path) -> None:
    server = bind(base / "a" / "espfast.sock")
    st_dir, st_sock = os.stat(base / "a"), os.stat(base / "a" / "espfast.sock")
    assert (stat.S_IMODE(st_dir.st_mode), st_dir.st_uid) == (0o700, 0)
    assert (stat.S_IMODE(st_sock.st_mode), st_sock.st_uid) == (0o600, 0)
    release(server)
    assert not (base / "a" / "espfast.sock").exists()
    server = bind(base / "b" / "espfast.sock", owner=NOBODY, group=GROUP)
    st_dir, st_sock = os.stat(base / "b"), os.stat(base / "b" / "espfast.sock")
    assert (stat.S_IMODE(st_dir.st_mode), st_dir.st_uid, st_dir.st_gid) == (0o750, NOBODY, GROUP)
    assert (stat.S_IMODE(st_sock.st_mode), st_sock.st_uid, st_sock.st_gid) == (
        0o660, NOBODY, GROUP,
    )  # fmt: skip
    release(server)


SERVER = """
import asyncio, json, signal, sys
from pathlib import Path
from espfast.ctl import ControlServer

async def main() -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with ControlServer(lambda: json.loads(sys.argv[2]), Path(sys.argv[1]),
                             group=int(sys.argv[3])):
        print("ready", flush=True)
        await stop.wait()

asyncio.run(main())
"""


def status_as(path: Path, uid: int, gid: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups",
         sys.executable, "-m", "espfast", "status", "--socket", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_socket_group_members_only(base: Path) -> None:
    path = base / "run" / "espfast.sock"
    proc = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(path), json.dumps(DOC), str(GROUP)],
        stdout=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        member = status_as(path, NOBODY, GROUP)
        other = status_as(path, NOBODY, NOBODY)
    finally:
        proc.terminate()
        proc.wait(10)
    assert member.returncode == 0 and "IKE SAs: none" in member.stdout, member.stderr
    assert other.returncode == 1
    assert "permission denied" in other.stderr


def test_espfast_up_says_one_line(base: Path) -> None:
    target = base / "elsewhere"
    target.mkdir(mode=0o700)
    (base / "run").symlink_to(target)
    conf = write_private(base / "a.toml", pair_configs("a pre-shared key for the dir test")[0])
    with Namespace.create("cd") as ns:
        out = ns.run(
            sys.executable, "-m", "espfast", "up", "-c", str(conf),
            "--socket", str(base / "run" / "espfast.sock"), check=False,
        )  # fmt: skip
        links = ns.run("ip", "-o", "link").stdout
    assert out.returncode == 1
    assert out.stderr == (f"espfast up: {base / 'run'} is a symbolic link; refusing to use it\n")
    assert "espfast0" not in links  # refused before anything was set up
