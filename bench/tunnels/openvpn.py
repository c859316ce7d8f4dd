"""OpenVPN 2.6 over UDP with AES-256-GCM, in TLS mode, point to point.

a is the TLS server and b the TLS client (``--tls-server`` / ``--tls-client`` with
``--ifconfig``; no server-mode address pool is needed for two hosts). Certificates
(a throw-away ECDSA P-256 CA, one server and one client certificate) are made on the
fly with cryptography in a temporary directory. The data channel cipher is
negotiated (``--data-ciphers AES-256-GCM``), the kernel data channel offload is off
(this kernel has no ovpn-dco module), inner MTU 1400 as for the other tunnels.
"""

from __future__ import annotations

import contextlib
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.x509.oid import ExtendedKeyUsageOID

from bench.tunnels import INNER_A, INNER_B, Endpoints
from bench.tunnels.peerutil import (
    INNER_MTU,
    TunnelError,
    cert_pem,
    issue,
    key_pem,
    log_tail,
    new_key,
    require,
    wait_ping,
)
from espfast.netns import Namespace, TwoHosts, wait_for

PORT = 1194
CIPHER = "AES-256-GCM"
NEGOTIATED = f"Data Channel: cipher '{CIPHER}'"


def write_pki(directory: Path) -> None:
    """ca.pem, and a.pem/a.key (TLS server), b.pem/b.key (TLS client) in ``directory``."""
    ca_key = new_key("ecdsa")
    ca = issue("espfast bench CA", ca_key)
    (directory / "ca.pem").write_bytes(cert_pem(ca))
    for side, eku in (
        ("a", ExtendedKeyUsageOID.SERVER_AUTH),
        ("b", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = new_key("ecdsa")
        (directory / f"{side}.pem").write_bytes(
            cert_pem(issue(f"{side}.bench.test", key, (ca, ca_key), eku=[eku]))
        )
        key_path = directory / f"{side}.key"
        key_path.touch(mode=0o600)
        key_path.write_bytes(key_pem(key))


@dataclass
class OpenVpn:
    name: str = "openvpn"
    extra: tuple[str, ...] = ()  # more options for both ends (e.g. "--ping", "10")

    def _argv(self, pki: Path, side: str, local: str, remote: str) -> list[str]:
        mine, theirs = (INNER_A, INNER_B) if side == "a" else (INNER_B, INNER_A)
        role = ["--tls-server", "--dh", "none", "--remote-cert-tls", "client"]
        if side == "b":
            role = ["--tls-client", "--remote-cert-tls", "server"]
        return [
            "openvpn",
            "--dev", "efovpn", "--dev-type", "tun", "--disable-dco",
            "--proto", "udp", "--local", local, "--lport", str(PORT),
            "--remote", remote, "--rport", str(PORT),
            "--ifconfig", mine, theirs, "--tun-mtu", str(INNER_MTU),
            "--data-ciphers", CIPHER, "--cipher", CIPHER,
            "--ca", str(pki / "ca.pem"), "--cert", str(pki / f"{side}.pem"),
            "--key", str(pki / f"{side}.key"), *role,
            "--verb", "3", *self.extra,
        ]  # fmt: skip

    @contextlib.contextmanager
    def up(self, hosts: TwoHosts) -> Iterator[Endpoints]:
        require("openvpn")
        procs: list[tuple[Namespace, subprocess.Popen[bytes]]] = []
        with tempfile.TemporaryDirectory(prefix="ef-peer-ovpn-") as tmp:
            pki = Path(tmp)
            write_pki(pki)
            logs = [pki / "a.log", pki / "b.log"]
            try:
                for ns, side, local, remote, log in (
                    (hosts.a, "a", hosts.addr_a, hosts.addr_b, logs[0]),
                    (hosts.b, "b", hosts.addr_b, hosts.addr_a, logs[1]),
                ):
                    with log.open("wb") as out:
                        proc = ns.popen(
                            *self._argv(pki, side, local, remote),
                            stdout=out,
                            stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL,
                        )
                    procs.append((ns, proc))
                wait_ping(hosts.a, INNER_A, INNER_B, [p for _, p in procs], logs)
                for log in logs:
                    if not wait_for(lambda log=log: NEGOTIATED in log.read_text(), timeout=5.0):
                        raise TunnelError(f"{log}: no {NEGOTIATED!r}\n{log_tail(log)}")
                yield Endpoints(INNER_A, INNER_B, [p.pid for _, p in procs])
            finally:
                for ns, proc in reversed(procs):
                    ns.stop(proc)
