"""A small certificate authority for IKE (the library behind ``espfast pki``).

Issued certificates carry what IKEv2 peers check (RFC 4945 §5.1.3, and what strongSwan
documents for the native Apple and Windows clients): the identity in subjectAltName
(dNSName, iPAddress or rfc822Name; a DN identity is the subject), keyUsage
digitalSignature, extendedKeyUsage serverAuth + iKEIntermediate for a gateway or
clientAuth for a client, basicConstraints CA:FALSE, and key identifiers.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from espfast.control.certs import (
    IKE_INTERMEDIATE,
    PrivateKey,
    load_certificate_file,
    load_private_key,
    read_file,
)
from espfast.control.constants import IdType
from espfast.control.identity import Identity, dn_to_string, parse_dn_der, parse_dn_string

CURVES: dict[str, ec.EllipticCurve] = {
    "p256": ec.SECP256R1(),
    "p384": ec.SECP384R1(),
    "p521": ec.SECP521R1(),
}
DEFAULT_CA_DN = "O=espfast, CN=espfast Root CA"
# Allow for peers whose clocks are a little behind ours.
BACKDATE = dt.timedelta(minutes=10)


def generate_key(key_type: str = "ecdsa", *, bits: int = 3072, curve: str = "p256") -> PrivateKey:
    if key_type == "ecdsa":
        if curve not in CURVES:
            raise ValueError(f"unknown curve {curve!r} (one of {', '.join(CURVES)})")
        return ec.generate_private_key(CURVES[curve])
    if key_type == "rsa":
        if bits < 2048:
            raise ValueError(f"RSA keys need at least 2048 bits, not {bits}")
        return rsa.generate_private_key(public_exponent=65537, key_size=bits)
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {key_type!r} (one of ecdsa, rsa, ed25519)")


def _hash_for(key: PrivateKey) -> hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None:
    """The signature hash a key signs certificates with (Ed25519 has its own)."""
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return None
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 384:
        return hashes.SHA512()
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.key_size > 256:
        return hashes.SHA384()
    return hashes.SHA256()


def name_from_der(data: bytes) -> x509.Name:
    """An x509.Name with the attributes of a DER DN, RDN by RDN."""
    rdns = []
    for rdn in parse_dn_der(data):
        try:
            attributes = [
                x509.NameAttribute(x509.ObjectIdentifier(oid), value.decode())
                for oid, _, value in rdn
            ]
        except ValueError as exc:
            raise ValueError(f"DN {dn_to_string(data)!r}: {exc}") from None
        rdns.append(x509.RelativeDistinguishedName(attributes))
    return x509.Name(rdns)


def name_from_dn(text: str) -> x509.Name:
    """An x509.Name from a DN string in strongSwan's syntax ("C=CH, O=x, CN=y")."""
    return name_from_der(parse_dn_string(text))


def _validity(
    builder: x509.CertificateBuilder, now: dt.datetime, days: int
) -> x509.CertificateBuilder:
    if days < 1:
        raise ValueError(f"validity must be at least one day, not {days}")
    return builder.not_valid_before(now - BACKDATE).not_valid_after(now + dt.timedelta(days=days))


def key_usage(**granted: bool) -> x509.KeyUsage:
    """A keyUsage extension with the named bits set and every other bit clear."""
    bits = dict.fromkeys(
        (
            "digital_signature",
            "content_commitment",
            "key_encipherment",
            "data_encipherment",
            "key_agreement",
            "key_cert_sign",
            "crl_sign",
            "encipher_only",
            "decipher_only",
        ),
        False,
    )
    unknown = set(granted) - set(bits)
    if unknown:
        raise ValueError(f"unknown keyUsage bits: {', '.join(sorted(unknown))}")
    return x509.KeyUsage(**(bits | granted))


def build_ca(
    key: PrivateKey,
    dn: str = DEFAULT_CA_DN,
    *,
    now: dt.datetime,
    days: int = 3650,
    path_length: int | None = None,
) -> x509.Certificate:
    """A self-signed CA certificate for ``key``."""
    name = name_from_dn(dn)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            key_usage(key_cert_sign=True, crl_sign=True),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return _validity(builder, now, days).sign(key, _hash_for(key))


def _general_name(identity: Identity) -> x509.GeneralName:
    if identity.type == IdType.FQDN:
        return x509.DNSName(identity.data.decode())
    if identity.type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
        return x509.IPAddress(ipaddress.ip_address(identity.data))
    if identity.type == IdType.RFC822_ADDR:
        return x509.RFC822Name(identity.data.decode())
    if identity.type == IdType.DER_ASN1_DN:
        return x509.DirectoryName(name_from_der(identity.data))
    raise ValueError(f"identity {identity} cannot be a subjectAltName (use a name, IP or email)")


def issue_cert(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey,
    identity: Identity,
    *,
    now: dt.datetime,
    sans: Sequence[Identity] = (),
    dn: str | None = None,
    client: bool = False,
    days: int = 730,
) -> x509.Certificate:
    """An end-entity certificate for ``identity`` signed by the CA."""
    if dn is not None:
        subject = name_from_dn(dn)
    elif identity.type == IdType.DER_ASN1_DN:
        subject = name_from_der(identity.data)
    else:
        subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, str(identity))])
    alt_names: list[x509.GeneralName] = []
    for ident in ([] if identity.type == IdType.DER_ASN1_DN else [identity]) + list(sans):
        general = _general_name(ident)
        if general not in alt_names:
            alt_names.append(general)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] if client else [ExtendedKeyUsageOID.SERVER_AUTH]
    if not client:
        usages.append(IKE_INTERMEDIATE)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            key_usage(digital_signature=True),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    not_after = now + dt.timedelta(days=days)
    if not_after > ca_cert.not_valid_after_utc:
        expires = f"{ca_cert.not_valid_after_utc:%Y-%m-%d}"
        raise ValueError(f"the certificate would outlive its CA (CA expires {expires})")
    return _validity(builder, now, days).sign(ca_key, _hash_for(ca_key))


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_file(path: Path, data: bytes, *, mode: int, force: bool) -> None:
    """Write ``data`` with ``mode`` from the start (no window where a key is readable)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise ValueError(f"{path} exists (use --force to overwrite)") from None
    with os.fdopen(fd, "wb") as out:
        os.fchmod(out.fileno(), mode)
        out.write(data)


def file_name(identity: Identity) -> str:
    if identity.type == IdType.DER_ASN1_DN:
        cns = [v for rdn in parse_dn_der(identity.data) for oid, _, v in rdn if oid == "2.5.4.3"]
        text = cns[-1].decode("utf-8", "replace") if cns else "cert"
    else:
        text = str(identity)
    return re.sub(r"[^A-Za-z0-9._@-]", "_", text)[:64] or "cert"


def load_ca(ca_dir: Path) -> tuple[x509.Certificate, PrivateKey]:
    """The CA certificate and key that ``espfast pki ca`` wrote into ``ca_dir``."""
    ca_cert = load_certificate_file(ca_dir / "ca.crt")[0]
    ca_key = load_private_key(read_file(ca_dir / "ca.key"), str(ca_dir / "ca.key"))
    if ca_key.public_key() != ca_cert.public_key():
        raise ValueError(f"{ca_dir / 'ca.key'} is not the key of {ca_dir / 'ca.crt'}")
    return ca_cert, ca_key


def build_crl(
    ca_cert: x509.Certificate,
    ca_key: PrivateKey,
    serials: Iterable[int],
    *,
    now: dt.datetime,
    days: int = 30,
    previous: x509.CertificateRevocationList | None = None,
) -> x509.CertificateRevocationList:
    """A CRL revoking ``serials`` plus whatever ``previous`` (the CA's last CRL) revoked."""
    if days < 1:
        raise ValueError(f"validity must be at least one day, not {days}")
    revoked: dict[int, dt.datetime] = {}
    if previous is not None:
        if previous.issuer != ca_cert.subject or not previous.is_signature_valid(
            ca_cert.public_key()  # type: ignore[arg-type]
        ):
            raise ValueError("the existing CRL was not issued by this CA")
        revoked = {entry.serial_number: entry.revocation_date_utc for entry in previous}
    for serial in serials:
        revoked.setdefault(serial, now)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(now - BACKDATE)
        .next_update(now + dt.timedelta(days=days))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    for serial, when in sorted(revoked.items()):
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(ca_key, _hash_for(ca_key))


def pkcs12_bundle(
    name: str,
    cert: x509.Certificate,
    key: PrivateKey,
    ca_cert: x509.Certificate,
    password: bytes,
) -> bytes:
    """A password-protected PKCS#12 file (key, certificate, CA) for client devices.

    Encrypted with PBES1 SHA-1/3DES and a SHA-1 MAC, the combination every native IKEv2
    client imports (older macOS, iOS and Windows refuse OpenSSL 3's AES/PBKDF2 default);
    the password is what protects the file, so it should be long and random.
    """
    if not password:
        raise ValueError("a PKCS#12 file needs a password")
    encryption = (
        serialization.PrivateFormat.PKCS12.encryption_builder()
        .kdf_rounds(50000)
        .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
        .hmac_hash(hashes.SHA1())  # noqa: S303 - the MAC algorithm those importers know
        .build(password)
    )
    return pkcs12.serialize_key_and_certificates(
        name.encode(),
        key,
        cert,
        [ca_cert],
        encryption,
    )
