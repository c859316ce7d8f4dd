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
import datetime
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from bench.tunnels import Endpoints
from bench.tunnels.peerutil import INNER_A, INNER_B, INNER_MTU, TunnelError, log_tail, wait_ping
from espfast.netns import Namespace, TwoHosts, wait_for

PORT = 1194
CIPHER = "AES-256-GCM"
NEGOTIATED = f"Data Channel: cipher '{CIPHER}'"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    eku: x509.ObjectIdentifier | None,
) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=eku is None, path_length=None), critical=True)
    )
    if eku is None:
        usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)
    else:
        usage = x509.KeyUsage(True, False, False, False, True, False, False, False, False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    return builder.add_extension(usage, critical=True).sign(issuer_key, hashes.SHA256())


def write_pki(directory: Path) -> None:
    """ca.pem, and a.pem/a.key (TLS server), b.pem/b.key (TLS client) in ``directory``."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = _cert("espfast bench CA", ca_key, "espfast bench CA", ca_key, None)
    (directory / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for side, eku in (
        ("a", ExtendedKeyUsageOID.SERVER_AUTH),
        ("b", ExtendedKeyUsageOID.CLIENT_AUTH),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(f"{side}.bench.test", key, "espfast bench CA", ca_key, eku)
        (directory / f"{side}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path = directory / f"{side}.key"
        key_path.touch(mode=0o600)
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


@dataclass
class OpenVpn:
    name: str = "openvpn"

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
            "--verb", "3",
        ]  # fmt: skip

    @contextlib.contextmanager
    def up(self, hosts: TwoHosts) -> Iterator[Endpoints]:
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
