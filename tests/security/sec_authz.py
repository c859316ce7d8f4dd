"""Helpers for the attacks of authenticated peers on ``espfast up`` (tests/security/
test_sec_vip_hijack.py, test_sec_identity_spellings.py, test_sec_connection_policy.py).

The attacker is espfast's own control plane driven in the test process
(tests/interop/ike_driver.py) from a second address of namespace a, beside whatever
``espfast up`` runs there: it holds a valid credential and sends what a crafted config
makes it send. It has no dataplane; :class:`Attacker` counts the ESP that reaches it.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from espfast.config import load_up
from espfast.control.config import IkeConfig
from espfast.control.events import ChildSaFailed, ChildSaUp, IkeSaDown, IkeSaUp
from espfast.control.ike_sa import IkeSa
from espfast.control.rng import SystemRng
from espfast.netns import Namespace, TwoHosts
from espfast.static import control_socket_in, write_private

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "netns"))
from ike_driver import NON_ESP_MARKER, IkeDriver

ATTACKER = "198.18.0.3"  # a second address of namespace a


class Attacker(IkeDriver):
    """An IKE initiator at ATTACKER in namespace a that counts ESP sent to it."""

    def __init__(self, hosts: TwoHosts) -> None:
        hosts.a.run("ip", "addr", "add", f"{ATTACKER}/24", "dev", "veth-a")
        super().__init__(hosts.a, ATTACKER)
        self.gateway = hosts.addr_b
        self.esp = 0

    def _deliver(self, data: bytes, src: tuple[str, int], port: int, now: float) -> None:
        if port == 4500 and len(data) > 8 and not data.startswith(NON_ESP_MARKER):
            self.esp += 1  # ESP the gateway sent us
            return
        super()._deliver(data, src, port, now)

    def connect(self, config: IkeConfig, timeout: float = 15.0) -> IkeSa:
        """One IKE SA with ``config`` to the gateway, run until it is up or gone."""
        now = time.monotonic()
        sa = IkeSa.initiate(config, local=(ATTACKER, 500), remote=(self.gateway, 500),
                            rng=SystemRng(), now=now)  # fmt: skip
        self.sas.append(sa)
        self.run(lambda: sa.is_destroyed or (sa.is_established and not sa.tm.active),
                 timeout=timeout)  # fmt: skip
        return sa

    def outcome(self, sa: IkeSa) -> list[str]:
        """What became of ``sa`` and its first Child SA, as event names (with the
        reason of a failure)."""
        out = []
        for e in self.events:
            if getattr(e, "ike_sa_id", None) != sa.ike_sa_id:
                continue
            if isinstance(e, IkeSaUp | ChildSaUp):
                out.append(type(e).__name__)
            elif isinstance(e, ChildSaFailed | IkeSaDown):
                out.append(f"{type(e).__name__}: {e.reason}")
        return out


def ike_config(path: Path, text: str, **changes: object) -> IkeConfig:
    """The IkeConfig of the first connection of an ``espfast up`` config ``text`` (written
    to ``path``), with ``changes`` (e.g. another local_id)."""
    conf = load_up(write_private(path, text)).connections[0].ike
    return replace(conf, **changes)  # type: ignore[arg-type]


def daemon_status(ns: Namespace) -> dict[str, Any]:
    """``espfast status --json``, the whole document ({} if the daemon does not answer)."""
    out = ns.run(
        sys.executable, "-m", "espfast", "status", "--socket", str(control_socket_in(ns)),
        "--json", check=False,
    )  # fmt: skip
    if out.returncode != 0:
        return {}
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def drain(attacker: Attacker, seconds: float = 0.5) -> None:
    """Let the attacker read (and count) what reaches it for a moment."""
    end = time.monotonic() + seconds
    attacker.run(lambda: time.monotonic() >= end, timeout=seconds + 5)
