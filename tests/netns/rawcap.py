"""Helpers for the plain-ESP tests (encap = no): configs that say so, and a bounded
packet capture on a namespace's veth read back with scapy."""

from __future__ import annotations

import contextlib
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from espfast.netns import Namespace, wait_for

CAPTURE_SECONDS = 120  # tcpdump ends on its own after this, whatever the test does
CAPTURE_PACKETS = 30_000  # enough to see both framings; scapy reads 200,000 in ~40 s


def encap_no(conf: str, section: str) -> str:
    """``conf`` (TOML text) with ``encap = "no"`` in every ``[[section]]``."""
    out, n = re.subn(rf"^\[\[{re.escape(section)}\]\]\n", f'[[{section}]]\nencap = "no"\n', conf,
                     flags=re.M)  # fmt: skip
    assert n, f"no [[{section}]] in the config"
    return out


@dataclass
class Capture:
    """tcpdump on ``iface`` in ``ns`` into ``path`` (bounded in time and packets)."""

    ns: Namespace
    iface: str
    path: Path
    proc: subprocess.Popen[bytes] | None = None
    packets: list[Any] = field(default_factory=list)

    def start(self) -> None:
        self.proc = self.ns.popen(
            "timeout", str(CAPTURE_SECONDS), "tcpdump", "-i", self.iface, "-n", "-U",
            "--immediate-mode",
            "-s", "256", "-c", str(CAPTURE_PACKETS), "-w", str(self.path), "ip or ip6",
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        # tcpdump writes the pcap header once it listens
        assert wait_for(lambda: self.path.exists() and self.path.stat().st_size >= 24, 10), (
            "tcpdump did not start"
        )

    def stop(self) -> list[Any]:
        import scapy.layers.inet6
        import scapy.layers.l2  # noqa: F401
        from scapy.utils import rdpcap

        assert self.proc is not None
        # Written packet by packet (-U, --immediate-mode): done once the file stops growing.
        sizes = [-1]

        def settled() -> bool:
            sizes.append(self.path.stat().st_size)
            return sizes[-1] == sizes[-2]

        wait_for(settled, timeout=5, interval=0.3)
        self.ns.stop(self.proc)
        self.packets = list(rdpcap(str(self.path)))
        return self.packets


@contextlib.contextmanager
def capture(ns: Namespace, iface: str, path: Path) -> Iterator[Capture]:
    cap = Capture(ns, iface, path)
    cap.start()
    try:
        yield cap
    finally:
        if cap.proc is not None and cap.proc.poll() is None:
            ns.stop(cap.proc)


def esp_and_natt(packets: list[Any]) -> tuple[list[Any], list[Any]]:
    """(IP protocol 50 packets, UDP 4500 packets that are not IKE) of a capture."""
    from scapy.layers.inet import IP, UDP

    esp = [p for p in packets if IP in p and p[IP].proto == 50]
    natt = [
        p for p in packets
        if UDP in p and 4500 in (p[UDP].sport, p[UDP].dport)
        and bytes(p[UDP].payload)[:4] != b"\0\0\0\0"
    ]  # fmt: skip
    return esp, natt
