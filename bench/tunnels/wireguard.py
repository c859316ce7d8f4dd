"""wireguard-go (userspace WireGuard), configured with wireguard-tools.

Two builds can be measured side by side: ``wireguard-go`` is the binary named by the
environment variable WIREGUARD_GO (point it at the newest wireguard-go, built from its
source: its TUN TSO/GRO and UDP GSO/GRO offloads make it several times faster than older
builds), or else the one on PATH; ``wireguard-go-debian`` is Debian's package (0.0.20220316
in Debian 12, from before those offloads), listed when WIREGUARD_GO names another binary.
Each run records the binary's version and whether the offloads engaged on its TUN device
(``ethtool -k``: tx-tcp-segmentation, i.e. TSO, which the kernel offers wireguard-go only
when it asks for virtio-net headers), and the report prints them.

Keys come from ``wg genkey``/``wg pubkey``, the interface is configured with ``wg
set`` through wireguard-go's UAPI socket (/var/run/wireguard/<ifname>.sock, so every
interface gets a unique name), inner addresses 198.19.1.1/24 and 198.19.2.1/24 with
MTU 1400 (the same inner MTU as the other tunnels).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
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
    tun_offloads,
    wait_ping,
)
from espfast.netns import Namespace, TwoHosts, run, wait_for

PORT = 51820
UAPI_DIR = Path("/var/run/wireguard")
ENV = "WIREGUARD_GO"
DEBIAN_BINARY = "/usr/bin/wireguard-go"  # the package's path (Debian 12)


def user_binary() -> str:
    """The wireguard-go to compare against: $WIREGUARD_GO, else the one on PATH."""
    return os.environ.get(ENV) or shutil.which("wireguard-go") or "wireguard-go"


def debian_binary() -> str | None:
    """Debian's wireguard-go when it is installed and WIREGUARD_GO names another one."""
    chosen = os.environ.get(ENV)
    if not chosen or not Path(DEBIAN_BINARY).exists():
        return None
    if Path(chosen).resolve() == Path(DEBIAN_BINARY).resolve():
        return None
    return DEBIAN_BINARY


def version(binary: str) -> str:
    """``wireguard-go --version``'s first line, e.g. "wireguard-go v0.0.20250522", with
    "(Debian package <version>)" for the packaged one."""
    try:
        out = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except OSError as e:
        return f"{binary}: {e.strerror}"
    first = out.strip().splitlines()[0] if out.strip() else f"{binary}: no version"
    if Path(binary).resolve() == Path(DEBIAN_BINARY).resolve():
        pkg = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", "wireguard-go"],
            capture_output=True, text=True, timeout=10, check=False,
        ).stdout.strip()  # fmt: skip
        first += f" (Debian package {pkg or '?'})"
    return first


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
    binary: str = ""  # empty: user_binary()

    def _start(self, ns: Namespace, ifname: str, log: Path) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            proc = ns.popen(
                self.binary or user_binary(),
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
        binary = self.binary or user_binary()
        require(binary, "wg")
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
                info = {"version": version(binary), "offloads": tun_offloads(hosts.a, sides[0][1])}
                yield Endpoints(INNER_A, INNER_B, [p.pid for p in procs], info)
            finally:
                for (ns, *_), proc in zip(sides, procs, strict=False):
                    ns.stop(proc)
