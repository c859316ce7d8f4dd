"""espfast/privs.py without privileges: what is kept, names, users; the config's ``user``.

The drop itself runs in real daemons: tests/security/test_sec_privs.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from espfast.config import ConfigError, load_static
from espfast.privs import (
    CAP_NET_ADMIN,
    CAP_NET_BIND_SERVICE,
    PrivilegeError,
    cap_names,
    get_caps,
    mask,
    needed_caps,
    resolve_user,
)
from espfast.static import pair_configs, write_private


def test_needed_caps() -> None:
    assert needed_caps(4500) == (CAP_NET_ADMIN,)
    assert needed_caps(500, 4500) == (CAP_NET_ADMIN, CAP_NET_BIND_SERVICE)
    assert needed_caps(1023) == (CAP_NET_ADMIN, CAP_NET_BIND_SERVICE)
    assert needed_caps(1024) == (CAP_NET_ADMIN,)


def test_cap_names() -> None:
    assert cap_names(0) == "none"
    assert cap_names(mask(CAP_NET_ADMIN, CAP_NET_BIND_SERVICE)) == (
        "CAP_NET_BIND_SERVICE,CAP_NET_ADMIN"
    )
    assert cap_names(1 << 21) == "cap_21"


def test_resolve_user() -> None:
    root = resolve_user("root")
    assert (root.uid, root.gid) == (0, 0)
    assert resolve_user("0").name == "root"
    lost = resolve_user("4000000")  # a uid without a passwd entry: gid = uid, no groups
    assert (lost.uid, lost.gid, lost.groups) == (4000000, 4000000, ())
    with pytest.raises(PrivilegeError, match="no such user 'no-such-espfast-user'"):
        resolve_user("no-such-espfast-user")


def test_refuses_with_threads() -> None:
    # pytest may or may not have threads of its own: a child process is sure to be alone,
    # then it starts one.
    code = (
        "import threading, time\n"
        "from espfast.privs import drop_privileges, PrivilegeError\n"
        "threading.Thread(target=time.sleep, args=(2,), daemon=True).start()\n"
        "try:\n    drop_privileges((12,))\n"
        "except PrivilegeError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "cannot drop privileges with 2 threads running (a bug)\n"


def test_drop_in_a_child_keeps_only_what_is_asked() -> None:
    # Any uid: the child keeps at most NET_ADMIN (what it has of it), nothing else.
    code = (
        "from espfast.privs import drop_privileges, get_caps\n"
        "left = drop_privileges((12,))\n"
        "print(left.effective, left.permitted, left.inheritable)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    have = get_caps().permitted & mask(CAP_NET_ADMIN)
    assert out.stdout.split() == [str(have), str(have), "0"]


def test_switching_user_needs_root() -> None:
    # As an unprivileged process (root's test run makes its child uid 65534 first).
    code = (
        "from espfast.privs import drop_privileges, resolve_user, PrivilegeError\n"
        "try:\n    drop_privileges((12,), resolve_user('0'))\n"
        "except PrivilegeError as e:\n    print(e)\n"
    )
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    argv = [*(as_nobody if os.geteuid() == 0 else []), sys.executable, "-c", code]
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert out.stdout == (
        "cannot switch to user root: that needs root (CAP_SETUID and CAP_SETGID)\n"
    )


def test_config_user(tmp_path: Path) -> None:
    a, _ = pair_configs()
    conf = write_private(
        tmp_path / "a.toml", a.replace("[interface]\n", '[interface]\nuser = "espfast"\n')
    )
    assert load_static(conf).interface.user == "espfast"
    assert load_static(write_private(tmp_path / "b.toml", a)).interface.user is None
    bad = write_private(
        tmp_path / "c.toml", a.replace("[interface]\n", '[interface]\nuser = " "\n')
    )
    with pytest.raises(ConfigError, match=r"interface.user: is empty"):
        load_static(bad)


def _dontdump(address: int) -> bool:
    """Whether the mapping holding ``address`` is marked "dd" (MADV_DONTDUMP) in smaps."""
    inside = False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        head = line.split(" ", 1)[0]
        if "-" in head and not head.endswith(":"):
            lo, hi = (int(x, 16) for x in head.split("-"))
            inside = lo <= address < hi
        elif inside and line.startswith("VmFlags:"):
            return " dd" in line
    return False


def test_key_buffers_are_never_dumped() -> None:
    from espfast._dataplane import ffi
    from espfast.dataplane import _key_buffer

    buf = _key_buffer(b"\x11" * 36)
    address = int(ffi.cast("uintptr_t", buf))
    assert _dontdump(address)
    assert bytes(ffi.buffer(buf, 36)) == b"\x11" * 36
    ffi.release(buf)  # cleansed and back in the pool
    assert not _dontdump(id(object()))  # ordinary heap: the probe tells the two apart
