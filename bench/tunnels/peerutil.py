"""What the peer tunnels (strongSwan, wireguard-go, OpenVPN) share: the inner
addresses, a bounded wait for ping through the tunnel, log tails for errors, and
throw-away certificates (also used by tests/interop)."""

from __future__ import annotations

import datetime
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from espfast.netns import Namespace, which

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

INNER_NET_A = "198.19.1.0/24"
INNER_NET_B = "198.19.2.0/24"
INNER_MTU = 1400
UP_TIMEOUT = 20.0


class TunnelError(RuntimeError):
    """A peer tunnel did not come up; the message carries its processes' log tails."""


def require(*programs: str) -> None:
    """Fail with one clear line when a peer's programs are not installed."""
    missing = [p for p in programs if which(p) is None]
    if missing:
        raise TunnelError(
            f"not installed: {', '.join(missing)} (make bench installs BENCH_APT_PKGS)"
        )


def tun_offloads(ns: Namespace, ifname: str) -> str:
    """Which TUN offloads engaged, as ``ethtool -k`` shows them on ``ifname``."""
    if which("ethtool") is None:
        return "unknown (ethtool not installed)"
    out = ns.run("ethtool", "-k", ifname, check=False).stdout
    feats = dict(
        (k.strip(), v.split()[0])
        for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)
        if v.split()
    )
    shown = ["tx-tcp-segmentation", "tx-tcp6-segmentation", "tx-checksumming"]
    text = ", ".join(f"{k} {feats.get(k, '?')}" for k in shown)
    tso = feats.get("tx-tcp-segmentation") == "on"
    return ("TUN TSO/GRO on: " if tso else "TUN offloads off: ") + text


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return f"({path} does not exist)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def wait_ping(
    ns: Namespace,
    src: str,
    dst: str,
    procs: Sequence[subprocess.Popen[bytes]],
    logs: Sequence[Path],
    timeout: float = UP_TIMEOUT,
) -> None:
    """Ping ``dst`` from ``src`` in ``ns`` until one echo comes back (bounded by
    ``timeout``); fail early if a tunnel process exits."""

    def failure(why: str) -> TunnelError:
        tails = "\n".join(f"--- {log} ---\n{log_tail(log)}" for log in logs)
        return TunnelError(f"{why}\n{tails}")

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if proc.poll() is not None:
                raise failure(f"{proc.args!r} exited with {proc.returncode}")
        ping = ns.run("ping", "-n", "-q", "-c", "1", "-W", "1", "-I", src, dst, check=False)
        if ping.returncode == 0:
            return
        time.sleep(0.1)
    raise failure(f"no ping from {src} to {dst} through the tunnel within {timeout}s")


def new_key(kind: str, rsa_bits: int = 2048) -> PrivateKey:
    """A fresh ``ecdsa`` (P-256) or ``rsa`` (``rsa_bits``) private key."""
    if kind == "ecdsa":
        return ec.generate_private_key(ec.SECP256R1())
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
    raise ValueError(f"key kind must be ecdsa or rsa, not {kind!r}")


def issue(
    cn: str,
    key: PrivateKey,
    issuer: tuple[x509.Certificate, PrivateKey] | None = None,
    *,
    dns: Sequence[str] = (),
    eku: Sequence[x509.ObjectIdentifier] = (),
    ca: bool = False,
) -> x509.Certificate:
    """A one-day certificate for ``cn``: a self-signed CA when ``issuer`` is None, else
    signed by ``issuer`` — an intermediate CA with ``ca``, or an end-entity certificate
    (with DNS SANs and EKUs as given)."""
    now = datetime.datetime.now(datetime.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    is_ca = issuer is None or ca
    issuer_name, signer = (subject, key) if issuer is None else (issuer[0].subject, issuer[1])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not is_ca,
                content_commitment=False,
                key_encipherment=not is_ca and isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False,
                key_agreement=not is_ca and isinstance(key, ec.EllipticCurvePrivateKey),
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if dns:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(name) for name in dns]), critical=False
        )
    if eku:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    return builder.sign(signer, hashes.SHA256())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (for a temporary directory only)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
