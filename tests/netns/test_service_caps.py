"""``espfast up`` as packaging/espfast.service runs it: an unprivileged user whose only
capabilities are CAP_NET_ADMIN and CAP_NET_BIND_SERVICE (bounding set, ambient, no new
privileges), its config readable through its group, its control socket in a directory of
its own. It must create its TUN device, bind UDP 500 and 4500 and carry traffic; with no
capabilities it must fail with a clear error, not a traceback.

Debian's udev makes /dev/net/tun 0666 (any user opens it; creating a device then takes
CAP_NET_ADMIN). Where it is 0600 (some VMs and CI machines), the daemon here gets a 0666
node of its own, in a private mount namespace: the machine's node is left alone."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from espfast.netns import Namespace, TwoHosts, wait_for
from espfast.static import READY, Running, start_in, write_private
from espfast.up import pair_configs

PSK = "a pre-shared key long enough for the unit test"
USER, GROUP = "nobody", "nogroup"
UNIT_CAPS = "net_admin,net_bind_service"  # packaging/espfast.service's two capabilities
CAP_NET_BIND_SERVICE, CAP_NET_ADMIN = 10, 12


def as_service(caps: str) -> list[str]:
    """Become USER with exactly ``caps`` (as ambient capabilities), with a 0666 TUN node."""
    drop = "-all" + "".join(f",+{c}" for c in caps.split(",") if c)
    tun = "mount -t tmpfs -o mode=0755 ef-tun /dev/net && mknod -m 666 /dev/net/tun c 10 200"
    return [
        "unshare", "--mount", "--propagation", "private", "sh", "-c", f'{tun} && exec "$@"', "sh",
        "setpriv", f"--reuid={USER}", f"--regid={GROUP}", "--clear-groups",
        f"--inh-caps={drop}", f"--ambient-caps={drop}", f"--bounding-set={drop}",
        "--no-new-privs", "--",
    ]  # fmt: skip


@pytest.fixture
def service_dir() -> Iterator[Path]:
    """Like /etc/espfast + /run/espfast: a directory the service user can reach, with a
    run/ it owns (RuntimeDirectory)."""
    top = Path(tempfile.mkdtemp(prefix="ef-unit-"))
    try:
        top.chmod(0o755)
        run = top / "run"
        run.mkdir(mode=0o700)
        os.chown(run, pwd.getpwnam(USER).pw_uid, grp.getgrnam(GROUP).gr_gid)
        yield top
    finally:
        shutil.rmtree(top)


def config_for_service(top: Path, text: str) -> Path:
    """root:GROUP, 0640, as README says for /etc/espfast/espfast.toml."""
    path = write_private(top / "espfast.toml", text)
    os.chown(path, 0, grp.getgrnam(GROUP).gr_gid)
    path.chmod(0o640)
    return path


def start_as_service(ns: Namespace, config: Path, caps: str, socket: Path) -> Running:
    proc = ns.popen(
        *as_service(caps), sys.executable, "-m", "espfast", "up", "-c", str(config),
        "--socket", str(socket),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    head = ns.wait_ready(proc, READY, f"espfast up as {USER} in {ns.name}")
    return Running(ns, proc, head)


def capabilities(pid: int) -> tuple[int, int]:
    """(real uid, effective capability mask) of a process."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["Uid"].split()[0]), int(fields["CapEff"].strip(), 16)


def test_up_with_only_the_units_capabilities(tmp_path: Path, service_dir: Path) -> None:
    a_conf, b_conf = pair_configs(PSK)
    with TwoHosts.create("cap") as hosts:
        b = start_in(hosts.b, write_private(tmp_path / "b.toml", b_conf), command="up")
        a = start_as_service(
            hosts.a, config_for_service(service_dir, a_conf), UNIT_CAPS, service_dir / "run/s"
        )
        uid, caps = capabilities(a.proc.pid)
        up = wait_for(
            lambda: hosts.a.run("ping", "-c", "1", "-W", "1", "198.19.2.1", check=False)
            .returncode == 0,
            timeout=15,
        )  # fmt: skip
        listening = hosts.a.run("ss", "-Hunlp").stdout
        status = hosts.a.run(
            sys.executable, "-m", "espfast", "status", "--socket", str(service_dir / "run/s")
        ).stdout
        status_a, _, err_a = a.stop()
        status_b, _, err_b = b.stop()
    assert uid == pwd.getpwnam(USER).pw_uid
    assert caps == (1 << CAP_NET_ADMIN) | (1 << CAP_NET_BIND_SERVICE)
    assert up, err_a + err_b
    assert "198.18.0.1:500 " in listening and "198.18.0.1:4500 " in listening, listening
    assert "ESTABLISHED" in status, status
    assert (status_a, status_b) == (0, 0), err_a + err_b


def test_up_without_capabilities_fails_clearly(service_dir: Path) -> None:
    a_conf, _ = pair_configs(PSK)
    config = config_for_service(service_dir, a_conf)
    with Namespace.create("cap") as ns:
        proc = ns.popen(
            *as_service(""), sys.executable, "-m", "espfast", "up", "-c", str(config),
            "--socket", str(service_dir / "run/s"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        _, err = proc.communicate(timeout=30)
    text = err.decode(errors="replace")
    assert proc.returncode != 0
    assert "Traceback" not in text, text
    assert "espfast up: cannot create TUN device 'espfast0'" in text, text
    assert "Operation not permitted" in text, text
