"""The client side of a road-warrior tunnel: the DNS servers the gateway named in its
CFG_REPLY (INTERNAL_IP4_DNS / INTERNAL_IP6_DNS, RFC 7296 §3.15.1), applied while an IKE
SA that got them is up, and withdrawn when the last one goes and when the daemon ends
(SIGTERM included: ``espfast up`` unwinds and calls :meth:`Resolver.close`).

``[interface] resolver`` says how:

- ``"auto"`` (the default): ``resolvconf -a <interface>`` (the servers on its standard
  input; ``resolvconf -d <interface>`` withdraws them) where resolvconf is installed,
  else ``resolvectl dns <interface> ...`` and ``resolvectl domain <interface> ~.`` (all
  names asked of these servers; ``resolvectl revert`` withdraws them) where
  systemd-resolved runs, else nothing but a log line;
- ``"resolvconf"``, ``"resolvectl"``: that one, an error logged if it fails;
- ``"file"``: /etc/resolv.conf rewritten in place (only when asked for: it overrides
  whatever manages that file), its old content restored on exit; a copy waits in
  /run/espfast/resolv.conf.saved meanwhile, for a daemon that is killed;
- ``"off"``: the servers are only logged.

All need the daemon to run as root (no ``user``): they write files of root's.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from espfast.control.events import IkeSaDown, IkeSaUp

log = logging.getLogger(__name__)

MODES = ("auto", "resolvconf", "resolvectl", "file", "off")
RESOLVED = Path("/run/systemd/resolve")  # systemd-resolved runs: its runtime directory
SAVED = Path("/run/espfast/resolv.conf.saved")  # resolver = "file": the old content
TIMEOUT = 10.0  # seconds for resolvconf / resolvectl


def _run(argv: Sequence[str], stdin: str = "") -> None:
    subprocess.run(argv, input=stdin.encode(), check=True, capture_output=True, timeout=TIMEOUT)


class Resolver:
    """Applies the DNS servers of our IKE SAs to the system resolver for ``iface``."""

    def __init__(
        self,
        iface: str,
        mode: str = "auto",
        *,
        run: Callable[[Sequence[str], str], None] = _run,
        which: Callable[[str], str | None] = shutil.which,
        resolv_conf: Path = Path("/etc/resolv.conf"),
        resolved: Path = RESOLVED,
        saved: Path = SAVED,
    ) -> None:
        assert mode in MODES, mode
        self.iface, self._run, self._file, self._backup = iface, run, resolv_conf, saved
        if mode == "auto":
            if which("resolvconf"):
                mode = "resolvconf"
            elif which("resolvectl") and resolved.is_dir():
                mode = "resolvectl"
            else:
                mode = "off"
        self.mode = mode
        self._held: dict[int, tuple[str, ...]] = {}  # IKE SA id -> its DNS servers
        self._applied: tuple[str, ...] = ()
        self._saved: bytes | None = None  # mode "file": what /etc/resolv.conf held

    @property
    def applied(self) -> tuple[str, ...]:
        return self._applied

    def on_event(self, event: Any) -> None:
        """A daemon listener: IkeSaUp with our virtual IPs and DNS servers, IkeSaDown."""
        if isinstance(event, IkeSaUp) and event.virtual_ips and event.dns:
            self._held[event.ike_sa_id] = event.dns
        elif isinstance(event, IkeSaDown) and event.ike_sa_id in self._held:
            del self._held[event.ike_sa_id]
        else:
            return
        self._update()

    def close(self) -> None:
        """Withdraw what is applied (the daemon ends)."""
        self._held.clear()
        self._update()

    def _update(self) -> None:
        servers = tuple(dict.fromkeys(s for dns in self._held.values() for s in dns))
        if servers == self._applied:
            return
        try:
            if servers:
                self._apply(servers)
            else:
                self._withdraw()
        except (OSError, subprocess.SubprocessError) as e:
            err = getattr(e, "stderr", b"") or b""
            log.error("%s: cannot %s the DNS servers (%s): %s %s", self.iface,
                      "apply" if servers else "withdraw", self.mode, e,
                      err.decode(errors="replace").strip())  # fmt: skip
            return
        self._applied = servers
        if servers:
            log.info("%s: DNS servers %s (%s)", self.iface, ", ".join(servers), self.mode)
        else:
            log.info("%s: DNS servers withdrawn (%s)", self.iface, self.mode)

    def _apply(self, servers: tuple[str, ...]) -> None:
        text = "".join(f"nameserver {s}\n" for s in servers)
        if self.mode == "resolvconf":
            self._run(["resolvconf", "-a", self.iface], text)
        elif self.mode == "resolvectl":
            self._run(["resolvectl", "dns", self.iface, *servers], "")
            self._run(["resolvectl", "domain", self.iface, "~."], "")
        elif self.mode == "file":
            if self._saved is None:
                self._saved = self._file.read_bytes()
                self._backup.parent.mkdir(mode=0o700, exist_ok=True)
                self._backup.write_bytes(self._saved)
            self._file.write_text(f"# espfast up: from the gateway of {self.iface}\n" + text)

    def _withdraw(self) -> None:
        if self.mode == "resolvconf":
            self._run(["resolvconf", "-d", self.iface], "")
        elif self.mode == "resolvectl":
            self._run(["resolvectl", "revert", self.iface], "")
        elif self.mode == "file" and self._saved is not None:
            self._file.write_bytes(self._saved)
            self._saved = None
            self._backup.unlink(missing_ok=True)
