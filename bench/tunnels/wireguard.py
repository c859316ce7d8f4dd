"""Debian's wireguard-go (userspace WireGuard), configured with wireguard-tools.

Keys come from ``wg genkey``/``wg pubkey``, the interface is configured with ``wg
set`` through wireguard-go's UAPI socket (/var/run/wireguard/<ifname>.sock, so every
interface gets a unique name), inner addresses 198.19.1.1/24 and 198.19.2.1/24 with
MTU 1400 (the same inner MTU as the other tunnels).
"""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.tunnels import INNER_A, INNER_B, Endpoints
from bench.tunnels.peerutil import (
    INNER_MTU,
    INNER_NET_A,
    INNER_NET_B,
    TunnelError,
    log_tail,
    require,
    wait_ping,
)
from espfast.netns import Namespace, TwoHosts, run, wait_for

PORT = 51820
UAPI_DIR = Path("/var/run/wireguard")


def keypair() -> tuple[str, str]:
    """(private, public) as base64 text, from wireguard-tools."""
    private = run(["wg", "genkey"]).stdout.strip()
    public = subprocess.run(
        ["wg", "pubkey"], input=private, capture_output=True, text=True, check=True, timeout=10
    ).stdout.strip()
    return private, public


@dataclass
class WireguardGo:
    name: str = "wireguard-go"

    def _start(self, ns: Namespace, ifname: str, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = ns.popen(
                "wireguard-go",
                "-f",
                ifname,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        sock = UAPI_DIR / f"{ifname}.sock"
        if not wait_for(lambda: sock.exists() or proc.poll() is not None, timeout=10.0):
            raise TunnelError(f"wireguard-go made no UAPI socket {sock}\n{log_tail(log)}")
        if proc.poll() is not None:
            raise TunnelError(f"wireguard-go exited with {proc.returncode}\n{log_tail(log)}")
        return proc

    @contextlib.contextmanager
    def up(self, hosts: TwoHosts) -> Iterator[Endpoints]:
        require("wireguard-go", "wg")
        tag = secrets.token_hex(3)
        sides = [
            (hosts.a, f"efwg-a-{tag}", INNER_A, hosts.addr_b, INNER_NET_B),
            (hosts.b, f"efwg-b-{tag}", INNER_B, hosts.addr_a, INNER_NET_A),
        ]
        keys = [keypair(), keypair()]
        procs: list[subprocess.Popen[bytes]] = []
        with tempfile.TemporaryDirectory(prefix="ef-peer-wg-") as tmp:
            logs = [Path(tmp, "a.log"), Path(tmp, "b.log")]
            try:
                for i, (ns, ifname, inner, peer_addr, peer_net) in enumerate(sides):
                    procs.append(self._start(ns, ifname, logs[i]))
                    key_file = Path(tmp, f"{i}.key")
                    key_file.touch(mode=0o600)
                    key_file.write_text(keys[i][0])
                    ns.run(
                        "wg", "set", ifname, "listen-port", str(PORT),
                        "private-key", str(key_file),
                        "peer", keys[1 - i][1],
                        "endpoint", f"{peer_addr}:{PORT}",
                        "allowed-ips", peer_net,
                    )  # fmt: skip
                    key_file.unlink()
                    ns.run("ip", "addr", "add", f"{inner}/24", "dev", ifname)
                    ns.run("ip", "link", "set", ifname, "mtu", str(INNER_MTU), "up")
                    # wg set configures the crypto routing only; the kernel route is ours.
                    ns.run("ip", "route", "add", peer_net, "dev", ifname)
                wait_ping(hosts.a, INNER_A, INNER_B, procs, logs)
                yield Endpoints(INNER_A, INNER_B, [p.pid for p in procs])
            finally:
                for (ns, *_), proc in zip(sides, procs, strict=False):
                    ns.stop(proc)
