"""FreeRADIUS (Debian's package) for tests: a private copy of its configuration under the
test's tmp directory (never /etc/freeradius itself), with our clients, users and
accounting detail files, run in the test's namespace as a child process (``-X``: one
process, its log on stdout) and ended by PID."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from espfast.netns import Namespace, wait_for

SYSTEM_CONF = Path("/etc/freeradius/3.0")  # read (copied), never written


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
