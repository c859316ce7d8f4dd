"""X.509 for IKE: loading certificates and keys, chain verification, identity checks.

Why not ``cryptography.x509.verification``: it implements the CA/Browser Forum Web PKI
profile, which refuses things IKE deployments rely on: Ed25519 keys (RFC 8420 allows them
in IKE), RSA keys below 2048 bits with a clear reason of our own, certificates without a
subjectAltName identified by their DN, and it has no revocation. So the chain walk below
uses ``cryptography`` primitives (``verify_directly_issued_by`` for the signature) and
applies the RFC 5280 §6.1 checks IKE needs: validity of every certificate, issuer names,
signatures, the CA flag and keyCertSign on every issuer, pathLenConstraint, unknown
critical extensions, and revocation from configured CRLs or serial numbers. Extended key
usage follows strongSwan and RFC 4945 §5.1.3.12: none at all, or one of serverAuth,
clientAuth, ipsecIKE, iKEIntermediate or anyExtendedKeyUsage.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import itertools
import logging
import warnings
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, ObjectIdentifier

from . import revocation as revocation_policy
from .constants import IdType, NotifyType
from .errors import RemoteProtocolError
from .identity import Identity
from .revocation import DECODE_ERRORS
from .text import printable

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

_E = TypeVar("_E", bound=x509.ExtensionType)
log = logging.getLogger("espfast.control")

MIN_RSA_BITS = 2048
SUPPORTED_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
MAX_CHAIN_LENGTH = 8
# A peer controls the intermediates it sends: bound the work a chain search can cost.
MAX_INTERMEDIATES = 16
MAX_PATHS = 64

# RFC 4945 §5.1.3.12 / RFC 4809: iKEIntermediate, which strongSwan's pki sets for gateways.
IKE_INTERMEDIATE = ObjectIdentifier("1.3.6.1.5.5.8.2.2")
IKE_EKUS = frozenset(
    {
        ExtendedKeyUsageOID.SERVER_AUTH,
        ExtendedKeyUsageOID.CLIENT_AUTH,
        ExtendedKeyUsageOID.IPSEC_IKE,
        ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE,
        IKE_INTERMEDIATE,
    }
)
# Critical extensions the walk below understands (RFC 5280 §4.2: reject other critical ones).
_HANDLED_CRITICAL = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.CERTIFICATE_POLICIES,
    }
)


class AuthenticationError(RemoteProtocolError):
    """The peer's certificate or AUTH payload is not acceptable: answer AUTHENTICATION_FAILED."""

    def __init__(self, message: str) -> None:
        super().__init__(message, notify=NotifyType.AUTHENTICATION_FAILED)


def describe(cert: x509.Certificate) -> str:
    """A short human name for a certificate in messages: its subject and serial (escaped:
    a peer's certificate names whatever it likes)."""
    return f'"{name_str(cert.subject)}" (serial {cert.serial_number:x})'


def name_str(name: x509.Name) -> str:
    """An X.509 name for messages, RFC 4514 style, non-printable characters escaped."""
    return printable(name.rfc4514_string())


# --- loading --------------------------------------------------------------------------------


def load_certificates(data: bytes, source: str = "data") -> list[x509.Certificate]:
    """All certificates in PEM (one or more) or DER ``data``; ValueError if none parse."""
    try:
        if b"-----BEGIN" in data:
            certs = x509.load_pem_x509_certificates(data)
        else:
            certs = [x509.load_der_x509_certificate(data)]
    except DECODE_ERRORS as exc:
        raise ValueError(f"{source}: not an X.509 certificate (PEM or DER): {exc}") from None
    for cert in certs:
        check_public_key(cert, source)
    return certs


def read_file(path: str | Path) -> bytes:
    """A credential file's bytes; ValueError naming the file if it cannot be read."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None


def load_certificate_file(path: str | Path) -> list[x509.Certificate]:
    return load_certificates(read_file(path), str(path))


def decode_certificate(data: bytes) -> x509.Certificate:
    """The body of a CERT payload with encoding 4 (X.509 Certificate - Signature, DER).

    RFC 7296 §3.6. A peer's certificate that does not parse, or whose key IKE cannot use,
    is an AuthenticationError.
    """
    try:
        with warnings.catch_warnings():
            # cryptography warns (on stderr, once per place) about what a peer can put in
            # a certificate: a serial number that is not positive (which it will refuse one
            # day: we refuse it now), a country name of the wrong length. Not on our log.
            warnings.simplefilter("ignore", UserWarning)
            cert = x509.load_der_x509_certificate(bytes(data))
            if cert.serial_number <= 0:  # RFC 5280 §4.1.2.2; CRL lookups cannot take it
                raise ValueError("its serial number is not a positive integer")
            # cryptography parses names, extensions and the key only when asked: ask now,
            # so that a certificate that decodes is one every later check can read.
            cert.issuer.rfc4514_string()
            cert.subject.rfc4514_string()
            _ = cert.extensions
            check_public_key(cert, "peer certificate")
    except DECODE_ERRORS as exc:
        raise AuthenticationError(f"bad certificate from the peer: {exc}") from None
    return cert


def encode_certificate(cert: x509.Certificate) -> bytes:
    """The body of our CERT payload (encoding 4): the certificate's DER."""
    return cert.public_bytes(serialization.Encoding.DER)


def key_hash(cert: x509.Certificate) -> bytes:
    """SHA-1 of the certificate's DER SubjectPublicKeyInfo: how CERTREQ names a CA.

    RFC 7296 §3.7; also one of the key IDs strongSwan matches ID_KEY_ID against.
    """
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha1(spki).digest()  # noqa: S324 - an identifier, not a security hash


def check_public_key(cert: x509.Certificate, source: str = "certificate") -> PublicKey:
    """The certificate's public key if IKE can use it, else ValueError saying why."""
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ValueError(f"{source}: unreadable public key: {exc}") from None
    return _check_key(key, f"{source} {describe(cert)}")


def _check_key(key: object, what: str) -> PublicKey:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"{what}: RSA key of {key.key_size} bits, need {MIN_RSA_BITS}")
        return key
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, SUPPORTED_CURVES):
            raise ValueError(f"{what}: unsupported curve {key.curve.name} (use P-256/384/521)")
        return key
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    kind = type(key).__name__.removeprefix("_").replace("PublicKey", "")
    raise ValueError(f"{what}: unsupported key type {kind} (use RSA, ECDSA or Ed25519)")


def load_private_key(data: bytes, source: str = "key", password: bytes | None = None) -> PrivateKey:
    """A PEM or DER (PKCS#8, PKCS#1, SEC1) private key of a type IKE can sign with."""
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, password)
        else:
            key = serialization.load_der_private_key(data, password)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # The library's message names the problem (bad password, bad format), never the key.
        raise ValueError(f"{source}: cannot load private key: {exc}") from None
    _check_key(key.public_key(), source)
    assert isinstance(key, PrivateKey)  # _check_key accepted its public half
    return key


@dataclass(frozen=True)
class LocalCredential:
    """What we authenticate with: our certificate, its private key and the chain to send."""

    cert: x509.Certificate
    key: PrivateKey = field(repr=False)
    chain: tuple[x509.Certificate, ...] = ()
    # RFC 7427 with an RSA key: RSASSA-PSS if True, else PKCS#1 v1.5 (strongSwan's default).
    rsa_pss: bool = False

    def __post_init__(self) -> None:
        public = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        in_cert = self.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if public != in_cert:
            raise ValueError(f"private key does not belong to certificate {describe(self.cert)}")

    @classmethod
    def load(
        cls,
        cert_path: str | Path,
        key_path: str | Path,
        chain: Sequence[str | Path] = (),
        *,
        password: bytes | None = None,
        rsa_pss: bool = False,
    ) -> LocalCredential:
        """Our credential from files; the certificate file may carry the chain after it."""
        certs = load_certificate_file(cert_path)
        key = load_private_key(read_file(key_path), str(key_path), password)
        extra = [c for path in chain for c in load_certificate_file(path)]
        return cls(certs[0], key, tuple(certs[1:] + extra), rsa_pss=rsa_pss)

    @property
    def identity(self) -> Identity:
        """The default identity: the certificate's subject DN (as strongSwan does)."""
        return Identity.from_name(self.cert.subject)


# --- verification ---------------------------------------------------------------------------


def _utc(now: dt.datetime | float) -> dt.datetime:
    if isinstance(now, dt.datetime):
        return now if now.tzinfo else now.replace(tzinfo=dt.UTC)
    if not isinstance(now, int | float):
        raise TypeError(f"the time must be a datetime or seconds since the epoch, not {now!r}")
    return dt.datetime.fromtimestamp(now, dt.UTC)


def _ext(cert: x509.Certificate, kind: type[_E]) -> x509.Extension[_E] | None:
    try:
        return cert.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None
    except DECODE_ERRORS as exc:  # duplicate or malformed extensions
        raise AuthenticationError(f"certificate {describe(cert)}: bad extensions: {exc}") from None


def _extensions(cert: x509.Certificate) -> x509.Extensions:
    try:
        return cert.extensions
    except DECODE_ERRORS as exc:  # duplicate or malformed extensions
        raise AuthenticationError(f"certificate {describe(cert)}: bad extensions: {exc}") from None


class TrustStore:
    """The CAs we trust and what we know to be revoked.

    ``cas``: trust anchors (root or intermediate CA certificates). ``crls``: revocation
    lists, each used for certificates of the CA that signed it (control/revocation.py;
    :meth:`set_crls` replaces them, e.g. when the files change). ``revoked_serials``:
    serial numbers refused outright, whoever issued them (revocation by configuration).
    ``revocation``: strongSwan's policy, strict | ifuri | relaxed (control/revocation.py).
    """

    def __init__(
        self,
        cas: Iterable[x509.Certificate],
        crls: Iterable[x509.CertificateRevocationList] = (),
        revoked_serials: Collection[int] = (),
        revocation: str = "relaxed",
    ) -> None:
        if revocation not in revocation_policy.POLICIES:
            raise ValueError(
                f"revocation {revocation!r} is not one of {', '.join(revocation_policy.POLICIES)}"
            )
        self.revocation = revocation
        self.cas = tuple(cas)
        for ca in self.cas:
            check_public_key(ca, "trusted CA")
            try:
                self._check_ca(ca, below=0)
            except AuthenticationError as exc:
                raise ValueError(f"trusted CA: {exc}") from None
        self.crls: tuple[x509.CertificateRevocationList, ...] = ()
        self.set_crls(crls)
        self.revoked_serials = frozenset(revoked_serials)

    @classmethod
    def load(
        cls,
        ca_paths: Iterable[str | Path],
        crl_paths: Iterable[str | Path] = (),
        revoked_serials: Collection[int] = (),
        revocation: str = "relaxed",
    ) -> TrustStore:
        cas = [c for path in ca_paths for c in load_certificate_file(path)]
        store = cls(cas, (), revoked_serials, revocation)
        store.set_crls(store.load_crl(read_file(path), str(path)) for path in crl_paths)
        return store

    def load_crl(self, data: bytes, source: str) -> x509.CertificateRevocationList:
        """A CRL for this store: it parses, and if one of our CAs has its issuer's name,
        that CA signed it; else ValueError saying which and why."""
        crl = revocation_policy.load_crl(data, source)
        revocation_policy.check_against(self.cas, crl, source)
        return crl

    def set_crls(self, crls: Iterable[x509.CertificateRevocationList]) -> None:
        """From now on, revocation is looked up in ``crls`` (all of them, replacing the
        ones before)."""
        self.crls = tuple(crls)

    def certreq_data(self) -> bytes:
        """The Certification Authority field of our CERTREQ (encoding 4): the SHA-1 hashes
        of our CAs' public keys, concatenated (RFC 7296 §3.7)."""
        return b"".join(key_hash(ca) for ca in self.cas)

    def verify_chain(
        self,
        end_entity: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        now: dt.datetime | float,
    ) -> tuple[x509.Certificate, ...]:
        """The verified chain (end entity first, trust anchor last), or AuthenticationError.

        ``now`` is wall-clock time (an aware datetime, or seconds since the epoch), never a
        monotonic clock; the caller supplies it, control/ reads no clock.
        """
        when = _utc(now)
        try:
            check_public_key(end_entity, "peer certificate")
        except ValueError as exc:
            raise AuthenticationError(str(exc)) from None
        if len(intermediates) > MAX_INTERMEDIATES:
            raise AuthenticationError(
                f"peer sent {len(intermediates)} intermediate certificates, at most "
                f"{MAX_INTERMEDIATES} are accepted"
            )
        first_error: AuthenticationError | None = None
        for path in self._paths(end_entity, list(intermediates)):
            try:
                self._check_path(path, when)
            except AuthenticationError as exc:
                first_error = first_error or exc
                continue
            return tuple(path)
        if first_error is not None:
            raise first_error
        if end_entity.issuer == end_entity.subject:
            raise AuthenticationError(
                f"self-signed certificate {describe(end_entity)} is not trusted"
            )
        raise AuthenticationError(
            f"certificate {describe(end_entity)}: no trusted CA for issuer "
            f'"{name_str(end_entity.issuer)}"'
        )

    def _paths(
        self, cert: x509.Certificate, pool: list[x509.Certificate]
    ) -> Iterator[list[x509.Certificate]]:
        """Candidate paths from ``cert`` to an anchor, found by names only (anchors first).

        Depth-first, visiting at most MAX_PATHS partial paths, so that a peer sending
        intermediates that name each other cannot make the search explode.
        """
        if cert in self.cas:
            yield [cert]
            return
        budget = [MAX_PATHS]

        def extend(path: list[x509.Certificate]) -> Iterator[list[x509.Certificate]]:
            tip = path[-1]
            budget[0] -= 1
            if len(path) > MAX_CHAIN_LENGTH or budget[0] < 0:
                return
            for ca in self.cas:
                if ca.subject == tip.issuer:
                    yield [*path, ca]
            for inter in pool:
                if inter.subject == tip.issuer and inter not in path and inter not in self.cas:
                    yield from extend([*path, inter])

        yield from extend([cert])

    def _check_path(self, path: list[x509.Certificate], when: dt.datetime) -> None:
        for cert in path:
            _extensions(cert)
            for ext in cert.extensions:
                if ext.critical and ext.oid not in _HANDLED_CRITICAL:
                    raise AuthenticationError(
                        f"certificate {describe(cert)}: unsupported critical extension "
                        f"{ext.oid.dotted_string}"
                    )
            if when < cert.not_valid_before_utc:
                raise AuthenticationError(
                    f"certificate {describe(cert)} is not valid before "
                    f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC"
                )
            if when > cert.not_valid_after_utc:
                raise AuthenticationError(
                    f"certificate {describe(cert)} expired on "
                    f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC"
                )
        if len(path) > 1:  # else the peer's certificate is itself a configured anchor
            _check_end_entity(path[0])
        # Each issuer: a CA allowed to sign, its signature on the child, path length.
        for below, (child, issuer) in enumerate(itertools.pairwise(path)):
            try:
                check_public_key(issuer, "CA certificate")
            except ValueError as exc:
                raise AuthenticationError(str(exc)) from None
            self._check_ca(issuer, below)
            try:
                child.verify_directly_issued_by(issuer)
            except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm) as exc:
                detail = str(exc) or "signature does not verify"
                raise AuthenticationError(
                    f"certificate {describe(child)}: bad signature by {describe(issuer)}: {detail}"
                ) from None
            self._check_revoked(child, issuer, when, end_entity=below == 0)

    def _check_ca(self, ca: x509.Certificate, below: int) -> None:
        """``below``: how many non-self-issued intermediate CAs the path has under ``ca``."""
        bc = _ext(ca, x509.BasicConstraints)
        if bc is None or not bc.value.ca:
            raise AuthenticationError(f"certificate {describe(ca)} is not a CA (basicConstraints)")
        ku = _ext(ca, x509.KeyUsage)
        if ku is not None and not ku.value.key_cert_sign:
            raise AuthenticationError(f"CA {describe(ca)} may not sign certificates (keyUsage)")
        if bc.value.path_length is not None and below > bc.value.path_length:
            raise AuthenticationError(
                f"CA {describe(ca)}: path length constraint {bc.value.path_length} exceeded"
            )

    def _check_revoked(
        self, cert: x509.Certificate, issuer: x509.Certificate, when: dt.datetime,
        *, end_entity: bool,
    ) -> None:  # fmt: skip
        """Refuse ``cert`` if it is revoked; the peer's own certificate (``end_entity``)
        also if the policy wants more than "not known to be revoked"."""
        if cert.serial_number in self.revoked_serials:
            raise AuthenticationError(f"certificate {describe(cert)} is revoked (by configuration)")
        status, detail = revocation_policy.status(cert, issuer, self.crls, when)
        if status is revocation_policy.Status.REVOKED:
            raise AuthenticationError(
                f"certificate {describe(cert)} is revoked (CRL of {name_str(issuer.subject)}: "
                f"{detail})"
            )
        if not end_entity:
            return
        if not revocation_policy.accepts(self.revocation, status):
            raise AuthenticationError(
                f"certificate {describe(cert)}: revocation status {status.value} ({detail}), "
                f"revocation = {self.revocation} needs "
                + ("a current CRL" if self.revocation == "strict" else "a current CRL or no URI")
            )
        if status is revocation_policy.Status.STALE:
            log.info("certificate %s: revocation status unknown (%s), accepted "
                     "(revocation = relaxed)", describe(cert), detail)  # fmt: skip


def _check_end_entity(cert: x509.Certificate) -> None:
    ku = _ext(cert, x509.KeyUsage)
    if ku is not None and not (ku.value.digital_signature or ku.value.content_commitment):
        raise AuthenticationError(
            f"certificate {describe(cert)}: keyUsage allows no digitalSignature"
        )
    eku = _ext(cert, x509.ExtendedKeyUsage)
    if eku is not None and not IKE_EKUS.intersection(eku.value):
        raise AuthenticationError(
            f"certificate {describe(cert)}: extendedKeyUsage is not for IKE "
            "(need serverAuth, clientAuth, ipsecIKE or iKEIntermediate)"
        )


def _key_ids(cert: x509.Certificate) -> set[bytes]:
    """What an ID_KEY_ID may name (as strongSwan): the subjectKeyIdentifier or key SHA-1."""
    ids = set()
    ski = _ext(cert, x509.SubjectKeyIdentifier)
    if ski is not None:
        ids.add(ski.value.digest)
    ids.add(x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest)
    ids.add(key_hash(cert))
    return ids


def check_identity(cert: x509.Certificate, identity: Identity) -> None:
    """AuthenticationError unless ``identity`` is the subject DN or a subjectAltName."""
    if identity.type == IdType.DER_ASN1_DN:
        if Identity.from_name(cert.subject) == identity:
            return
        names = _ext(cert, x509.SubjectAlternativeName)
        if names is not None and any(
            Identity.from_name(n) == identity
            for n in names.value.get_values_for_type(x509.DirectoryName)
        ):
            return
    elif identity.type == IdType.KEY_ID:
        if identity.data in _key_ids(cert):
            return
    else:
        ext = _ext(cert, x509.SubjectAlternativeName)
        san = ext.value if ext is not None else x509.SubjectAlternativeName([])
        if identity.type == IdType.FQDN:
            wanted = identity.data.decode("ascii", "replace").lower()
            if any(n.lower() == wanted for n in san.get_values_for_type(x509.DNSName)):
                return
        elif identity.type == IdType.RFC822_ADDR:
            wanted = identity.data.decode("ascii", "replace").lower()
            if any(n.lower() == wanted for n in san.get_values_for_type(x509.RFC822Name)):
                return
        elif identity.type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
            wanted_ip = ipaddress.ip_address(identity.data)
            if wanted_ip in san.get_values_for_type(x509.IPAddress):
                return
    raise AuthenticationError(f"identity {identity} does not match certificate {describe(cert)}")
