"""Least privilege and no core dumps (espfast/privs.py), on real daemons in namespaces.

- ``espfast up`` as a non-root uid with CAP_NET_ADMIN and CAP_NET_BIND_SERVICE and nothing
  else (inheritable, ambient and bounding sets: what ``docker run --user 65534 --cap-add
  NET_ADMIN --device /dev/net/tun`` gives), at both ends, in a private mount namespace
  whose /dev/net/tun is a 0666 node like a container's: the tunnel comes up, ping passes.
- ``espfast up`` started as root, one end with ``--user 65534``, the other staying root:
  every thread has exactly CAP_NET_ADMIN + CAP_NET_BIND_SERVICE effective, permitted and
  bounding, nothing inheritable or ambient, no_new_privs; core file size 0; not dumpable
  (the /proc/PID files of the uid-65534 daemon belong to root).
- ``espfast static`` on port 4500 keeps CAP_NET_ADMIN alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from espfast.netns import Namespace, TwoHosts, wait_for
from espfast.privs import CAP_NET_ADMIN, CAP_NET_BIND_SERVICE
from espfast.static import READY, Running, pair_configs, start_in, write_private
from espfast.up import pair_configs as up_pair_configs

NOBODY = 65534
PSK = "a pre-shared key for the privilege tests"
NET_ADMIN = 1 << CAP_NET_ADMIN
BOTH = NET_ADMIN | 1 << CAP_NET_BIND_SERVICE
CAPS = "+net_admin,+net_bind_service"
# A container's /dev/net/tun: a 0666 node (this host's may be root's alone), in a mount
# namespace of the daemon's own; then the capabilities and the uid, as a container has them.
CONTAINER = """set -e
mount -t tmpfs -o mode=0755 tmpfs "$1"
mknod -m 0666 "$1/tun" c 10 200
mount --bind "$1/tun" /dev/net/tun
shift
exec setpriv --reuid={uid} --regid={uid} --clear-groups --inh-caps=-all,{caps} \
  --ambient-caps=-all,{caps} --bounding-set=-all,{caps} "$@"
"""


@contextlib.contextmanager
def nobody_dir() -> Iterator[Path]:
    """A directory uid 65534 owns and can reach (pytest's tmp dirs are root's, 0700)."""
    d = Path(tempfile.mkdtemp(prefix="ef-priv-"))
    try:
        os.chown(d, NOBODY, NOBODY)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def give(path: Path, owner: int) -> Path:
    os.chown(path, owner, owner)
    return path


def start_as_container(ns: Namespace, conf: Path, work: Path) -> Running:
    """``espfast up`` as uid 65534 with only NET_ADMIN + NET_BIND_SERVICE (see CONTAINER)."""
    devdir = work / f"dev-{ns.name}"
    devdir.mkdir()
    script = CONTAINER.format(uid=NOBODY, caps=CAPS)
    proc = ns.popen(
        "unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(devdir),
        sys.executable, "-m", "espfast", "up", "-v", "-c", str(conf),
        "--socket", str(work / f"run-{ns.name}" / "espfast.sock"),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    head = ns.wait_ready(proc, READY, f"espfast up as uid {NOBODY} in {ns.name}", 30)
    return Running(ns, proc, head)


def status_fields(pid: int, tid: int | None = None) -> dict[str, str]:
    path = Path(f"/proc/{pid}/status" if tid is None else f"/proc/{pid}/task/{tid}/status")
    return dict(line.split(":\t", 1) for line in path.read_text().splitlines() if ":\t" in line)


def check_process(pid: int, caps: int, uid: int) -> None:
    """Every thread of ``pid``: uid, exactly ``caps``, nothing to pass on; no core dumps."""
    tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
    assert len(tids) > 2  # the dataplane's workers and the netlink thread: checked too
    for tid in tids:
        st = status_fields(pid, tid)
        assert st["Uid"].split() == [str(uid)] * 4, (tid, st["Uid"])
        for key, want in (("CapEff", caps), ("CapPrm", caps), ("CapBnd", caps),
                          ("CapInh", 0), ("CapAmb", 0)):  # fmt: skip
            assert int(st[key], 16) == want, (tid, key, st[key])
        assert st["NoNewPrivs"].strip() == "1"
    limits = Path(f"/proc/{pid}/limits").read_text()
    assert re.search(r"^Max core file size\s+0\s+0\s", limits, re.M), limits
    # Not dumpable: /proc/PID/* belongs to root whatever the process's uid.
    assert os.stat(f"/proc/{pid}/status").st_uid == 0
    assert "espfast" in Path(f"/proc/{pid}/cmdline").read_text()


def pinged(hosts: TwoHosts) -> bool:
    return wait_for(
        lambda: hosts.a.run("ping", "-c", "1", "-W", "1", "198.19.2.1", check=False)
        .returncode == 0,
        timeout=20,
    )  # fmt: skip


def test_up_as_nobody_with_net_admin_only() -> None:
    a_conf, b_conf = up_pair_configs(PSK)
    with nobody_dir() as work, TwoHosts.create("pv") as hosts:
        b = start_as_container(hosts.b, give(write_private(work / "b.toml", b_conf), NOBODY), work)
        a = start_as_container(hosts.a, give(write_private(work / "a.toml", a_conf), NOBODY), work)
        up = pinged(hosts)
        ping = hosts.b.run("ping", "-c", "3", "-i", "0.2", "198.19.1.1", check=False)
        check_process(a.pid, BOTH, NOBODY)
        check_process(b.pid, BOTH, NOBODY)
        status = subprocess.run(
            [sys.executable, "-m", "espfast", "status", "--socket",
             str(work / f"run-{hosts.a.name}" / "espfast.sock")],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        status_a, _, err_a = a.stop()
        status_b, _, err_b = b.stop()
    assert up, err_a + err_b
    assert ping.returncode == 0, ping.stdout
    assert status.returncode == 0 and "ESTABLISHED" in status.stdout, status.stderr
    assert (status_a, status_b) == (0, 0), err_a + err_b
    assert "privileges dropped: uid 65534, capabilities CAP_NET_BIND_SERVICE,CAP_NET_ADMIN" in err_a


def test_up_started_as_root_drops_to_net_admin(tmp_path: Path) -> None:
    a_conf, b_conf = up_pair_configs(PSK)
    with TwoHosts.create("pr") as hosts:
        # b stays uid 0 with two capabilities; a becomes uid 65534 (its config stays
        # root's, 0600: it is read before the switch).
        b = start_in(hosts.b, write_private(tmp_path / "b.toml", b_conf), "-v", command="up")
        a = start_in(hosts.a, write_private(tmp_path / "a.toml", a_conf), "-v", "--user",
                     str(NOBODY), command="up")  # fmt: skip
        up = pinged(hosts)
        check_process(a.pid, BOTH, NOBODY)
        check_process(b.pid, BOTH, 0)
        status_a, _, err_a = a.stop()
        status_b, _, err_b = b.stop()
    assert up, err_a + err_b
    assert (status_a, status_b) == (0, 0), err_a + err_b
    assert PSK not in err_a + err_b


def test_static_keeps_net_admin_alone(tmp_path: Path) -> None:
    a_conf, b_conf = pair_configs()
    with TwoHosts.create("ps") as hosts:
        a = start_in(hosts.a, write_private(tmp_path / "a.toml", a_conf))
        b = start_in(hosts.b, write_private(tmp_path / "b.toml", b_conf))
        up = pinged(hosts)
        check_process(a.pid, NET_ADMIN, 0)
        status_a, _, err_a = a.stop()
        status_b, _, err_b = b.stop()
    assert up, err_a + err_b
    assert (status_a, status_b) == (0, 0), err_a + err_b
