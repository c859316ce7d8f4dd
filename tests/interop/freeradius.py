"""FreeRADIUS (Debian's package) for tests: a private copy of its configuration under the
test's tmp directory (never /etc/freeradius itself), with our clients, users and
accounting detail files, run in the test's namespace as a child process (``-X``: one
process, its log on stdout) and ended by PID."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from espfast.netns import Namespace, wait_for
from espfast.static import write_private

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "netns"))
from eapconf import GW_ID, GW_NET, POOL, client_lines, pki_and_users
from updaemon import client_conf, gateway_conf

SYSTEM_CONF = Path("/etc/freeradius/3.0")  # read (copied), never written
# The gateway's side towards its RADIUS servers, the live one, one that never answers.
GW_RADIUS, RADIUS, DEAD = "198.18.5.1", "198.18.5.2", "198.18.5.3"
SECRET = "s3cret-shared-with-freeradius"
FRAMED = "198.19.100.77"  # carol's Framed-IP-Address


@contextlib.contextmanager
def behind(gw: Namespace) -> Iterator[Namespace]:
    """A namespace for RADIUS servers behind the gateway's ``gw``: GW_RADIUS there,
    RADIUS here, on a veth pair of their own."""
    with Namespace.create("radius") as rns:
        gw.run("ip", "link", "add", "veth-r", "type", "veth", "peer", "name", "veth-g",
               "netns", rns.name)  # fmt: skip
        gw.run("ip", "addr", "add", f"{GW_RADIUS}/24", "dev", "veth-r")
        rns.run("ip", "addr", "add", f"{RADIUS}/24", "dev", "veth-g")
        gw.run("ip", "link", "set", "veth-r", "up")
        rns.run("ip", "link", "set", "veth-g", "up")
        yield rns


@dataclass
class FreeRadius:
    ns: Namespace
    confdir: Path
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def detail(self) -> str:
        """What its accounting detail files hold so far."""
        acct = self.confdir / "radacct"
        return "".join(p.read_text(errors="replace") for p in sorted(acct.rglob("detail*")))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()  # by PID: the process we started
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def write_config(tmp: Path, *, clients: dict[str, str], users: str) -> Path:
    """A FreeRADIUS configuration directory in ``tmp``: ``clients`` (address -> shared
    secret), ``users`` (the users file: check items and reply attributes), EAP with
    MSCHAPv2 first, accounting into ``radacct/`` of the directory."""
    conf = tmp / "raddb"
    shutil.copytree(SYSTEM_CONF, conf, symlinks=True)
    for sub in ("log", "run", "radacct"):
        (conf / sub).mkdir()
    main = (conf / "radiusd.conf").read_text()
    main = re.sub(r"(?m)^raddbdir = .*$", f"raddbdir = {conf}", main)
    main = re.sub(r"(?m)^logdir = .*$", f"logdir = {conf}/log", main)
    main = re.sub(r"(?m)^radacctdir = .*$", f"radacctdir = {conf}/radacct", main)
    main = re.sub(r"(?m)^run_dir = .*$", f"run_dir = {conf}/run", main)
    main = re.sub(r"(?m)^(\s*)(user|group) = freerad$", r"\1# \2 = freerad", main)
    (conf / "radiusd.conf").write_text(main)
    eap = conf / "mods-available" / "eap"
    eap.write_text(re.sub(r"(?m)^(\tdefault_eap_type = )md5$", r"\1mschapv2", eap.read_text()))
    (conf / "clients.conf").write_text(
        "".join(
            f"client c{i} {{\n\tipaddr = {addr}\n\tsecret = {secret}\n}}\n"
            for i, (addr, secret) in enumerate(clients.items())
        )
    )
    authorize = conf / "mods-config" / "files" / "authorize"
    if authorize.is_symlink():
        authorize.unlink()
    authorize.write_text(users)
    return conf


def start(ns: Namespace, conf: Path) -> FreeRadius:
    log = conf / "log" / "debug.log"
    out = log.open("wb")
    proc = ns.popen("freeradius", "-X", "-d", str(conf), stdout=out, stderr=subprocess.STDOUT)
    out.close()
    radius = FreeRadius(ns, conf, proc, log)
    ready = wait_for(lambda: "Ready to process requests" in radius.text() or
                     proc.poll() is not None, timeout=30)  # fmt: skip
    if not ready or proc.poll() is not None:
        radius.stop()
        raise RuntimeError("FreeRADIUS did not start:\n" + radius.text()[-3000:])
    return radius


def confs(
    tmp_path: Path, password: str, servers: tuple[str, ...] = (DEAD, RADIUS)
) -> tuple[Path, Path]:
    """(gateway, client) ``espfast up`` configs: the gateway relays EAP to ``servers``
    (in that order), the client is carol with ``password``."""
    pki, _ = pki_and_users(tmp_path)
    secret = write_private(tmp_path / "radius.secret", SECRET + "\n")
    auth = (f'auth = "pubkey"\ncert = "{pki}/gw.crt"\nkey = "{pki}/gw.key"\n'
            'remote_auth = "eap-radius"')  # fmt: skip
    gateway = gateway_conf(
        listen="198.18.0.2",
        local_id=GW_ID,
        auth=auth,
        pool=POOL,
        dns="198.19.2.53",
        inner=f"{GW_NET}/24",
        local_ts="198.19.2.0/24",
    )
    entries = ", ".join(f'{{address = "{a}:1812", secret_file = "{secret}", acct_port = 1813}}'
                        for a in servers)  # fmt: skip
    gateway += f"""
[radius]
servers = [{entries}]
timeout = 1
retransmit_tries = 1
accounting = true
"""  # fmt: skip
    pw = write_private(tmp_path / "carol.pw", password + "\n")
    rw = client_conf(
        listen="198.18.0.1",
        gateway="198.18.0.2",
        local_id="198.18.0.1",
        remote_id=GW_ID,
        auth=client_lines(pki, pw),
        remote_ts="198.19.2.0/24",
    )
    return write_private(tmp_path / "gw.toml", gateway), write_private(tmp_path / "rw.toml", rw)
