"""Certificate revocation from configured CRLs, with strongSwan's three policies.

Nothing is fetched: the CRLs are the ones the operator configured (``crls = [...]``, the
shell reloads them when the files change). For a certificate and the CA that issued it the
answer is one of strongSwan's validation states:

    REVOKED   a CRL of that CA, its signature verified with the CA's key, lists the serial
              (a stale CRL counts too: revocation is never undone)
    GOOD      a current CRL of that CA (thisUpdate <= now <= nextUpdate) does not list it
    STALE     only CRLs past their nextUpdate (or without one) were there to look in
    FAILED    the certificate names a CRL distribution point URI, but we hold no CRL of
              its CA (strongSwan would have fetched one and failed)
    SKIPPED   no CRL of its CA and no URI to get one from

``revocation`` (strongSwan's swanctl.conf ``remote.revocation``) decides what gets in:
``strict`` takes only GOOD; ``ifuri`` GOOD or SKIPPED (it fails only where the certificate
names a URI, or the CRL is stale); ``relaxed`` (the default) everything but REVOKED. As in
strongSwan, the policy applies to the peer's own certificate; an intermediate CA is
refused only when it is revoked. A CRL whose signature does not verify with the CA's key
is ignored, as if it were not there.
"""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Iterable, Sequence

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.x509.oid import ExtensionOID

from .text import printable

log = logging.getLogger("espfast.control")

POLICIES = ("strict", "ifuri", "relaxed")
# What cryptography raises for DER it cannot make sense of (certificates and CRLs alike;
# certs.py uses it too): not only ValueError.
DECODE_ERRORS = (
    ValueError,
    TypeError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)

# Critical CRL extensions we understand (RFC 5280 §5.2: a CRL with an unknown critical
# extension must not be used). Partial and delta CRLs (issuingDistributionPoint,
# deltaCRLIndicator) are not: they would make a certificate outside their scope look GOOD.
_HANDLED_CRITICAL = frozenset({ExtensionOID.AUTHORITY_KEY_IDENTIFIER, ExtensionOID.CRL_NUMBER})


class Status(enum.Enum):
    GOOD = "good"
    REVOKED = "revoked"
    STALE = "stale"
    FAILED = "failed"
    SKIPPED = "skipped"


def accepts(policy: str, status: Status) -> bool:
    """Whether ``policy`` lets a certificate with ``status`` in (see the module docstring)."""
    if status is Status.REVOKED:
        return False
    if policy == "strict":
        return status is Status.GOOD
    if policy == "ifuri":
        return status in (Status.GOOD, Status.SKIPPED)
    return True


def load_crl(data: bytes, source: str) -> x509.CertificateRevocationList:
    """A CRL from PEM or DER ``data``, read through so that every later use of it works;
    ValueError naming ``source`` and the problem otherwise."""
    try:
        crl = (x509.load_pem_x509_crl if b"-----BEGIN" in data else x509.load_der_x509_crl)(data)
        crl.issuer.rfc4514_string()
        _ = crl.last_update_utc, crl.next_update_utc, crl.signature_hash_algorithm
        for ext in crl.extensions:
            if ext.critical and ext.oid not in _HANDLED_CRITICAL:
                raise ValueError(f"unsupported critical extension {ext.oid.dotted_string}")
        for entry in crl:
            _ = entry.serial_number, entry.revocation_date_utc, entry.extensions
    except DECODE_ERRORS as exc:
        raise ValueError(f"{source}: not a usable CRL (PEM or DER): {exc}") from None
    return crl


def signed_by(crl: x509.CertificateRevocationList, ca: x509.Certificate) -> bool:
    """Whether ``ca`` issued ``crl``: its name and a signature that verifies with its key."""
    if crl.issuer != ca.subject:
        return False
    try:
        return crl.is_signature_valid(ca.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError, UnsupportedAlgorithm):
        return False


def names_crl_uri(cert: x509.Certificate) -> bool:
    """Whether the certificate's cRLDistributionPoints name a URI to fetch its CRL from."""
    try:
        ext = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    except x509.ExtensionNotFound:
        return False
    return any(
        isinstance(name, x509.UniformResourceIdentifier)
        for point in ext.value
        for name in point.full_name or ()
    )


def status(
    cert: x509.Certificate,
    issuer: x509.Certificate,
    crls: Iterable[x509.CertificateRevocationList],
    when: dt.datetime,
) -> tuple[Status, str]:
    """The revocation state of ``cert`` (issued by ``issuer``) and a few words on it."""
    own = [crl for crl in crls if signed_by(crl, issuer)]
    for crl in own:
        entry = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if entry is not None:
            when_revoked = f"{entry.revocation_date_utc:%Y-%m-%d}"
            return Status.REVOKED, f"revoked on {when_revoked}{_reason(entry)}"
    fresh = [c for c in own if _current(c, when)]
    if fresh:
        return Status.GOOD, "not in the CRL"
    if own:
        newest = max(own, key=lambda c: c.last_update_utc)
        until = newest.next_update_utc
        return Status.STALE, (
            "the CRL is stale" + (f" since {until:%Y-%m-%d %H:%M} UTC" if until else "")
        )
    if names_crl_uri(cert):
        return Status.FAILED, "no CRL of its CA (the certificate names a CRL URI; none is fetched)"
    return Status.SKIPPED, "no CRL of its CA"


def _current(crl: x509.CertificateRevocationList, when: dt.datetime) -> bool:
    until = crl.next_update_utc
    return crl.last_update_utc <= when and until is not None and when <= until


def _reason(entry: x509.RevokedCertificate) -> str:
    try:
        reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason
    except (x509.ExtensionNotFound, ValueError):
        return ""
    return f", reason {reason.name}"


def check_against(
    cas: Sequence[x509.Certificate], crl: x509.CertificateRevocationList, source: str
) -> None:
    """ValueError if one of our CAs has the CRL's issuer name but none of them signed it
    (a CRL of some other CA, or a damaged file): a configuration mistake worth saying."""
    named = [ca for ca in cas if ca.subject == crl.issuer]
    if named and not any(signed_by(crl, ca) for ca in named):
        raise ValueError(
            f'{source}: the CRL of "{printable(crl.issuer.rfc4514_string())}" is not signed '
            "by that CA's key"
        )
