"""AUTH payload computation (RFC 7296 §2.15): the signed octets and PSK authentication.

PSK is computed here; signatures come from control/signature.py (the ikeauth engineer's
sign/verify) through the hooks in config.AuthConfig, which ``certificate_auth`` fills.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Collection, Sequence

from cryptography import x509

from .certs import (
    AuthenticationError,
    LocalCredential,
    TrustStore,
    check_identity,
    decode_certificate,
    encode_certificate,
)
from .config import AuthConfig
from .constants import IdType, NotifyType
from .crypto import Prf
from .errors import RemoteProtocolError
from .identity import Identity
from .signature import SUPPORTED_HASH_ALGORITHMS, sign, verify

KEY_PAD = b"Key Pad for IKEv2"


def signed_octets(real_message: bytes, peer_nonce: bytes, prf: Prf, sk_p: bytes,
                  id_body: bytes) -> bytes:  # fmt: skip
    """InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI (and the mirror for
    the responder), MACedIDFor = prf(SK_p, RestOfIDPayload): the ID payload body."""
    return real_message + peer_nonce + prf(sk_p, id_body)


def psk_auth(prf: Prf, secret: bytes, octets: bytes) -> bytes:
    """AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)."""
    return prf(prf(secret, KEY_PAD), octets)


def psk_verify(prf: Prf, secret: bytes, octets: bytes, auth_data: bytes) -> bool:
    """Constant-time comparison of the peer's PSK AUTH data with the expected value."""
    return hmac.compare_digest(psk_auth(prf, secret, octets), auth_data)


def canonical_id(peer: tuple[int, bytes]) -> bytes:
    """The canonical form of an ID payload (Identity.canonical), or its bytes as they are
    when they do not parse."""
    try:
        return Identity.decode(*peer).canonical()
    except RemoteProtocolError:
        return bytes([peer[0] & 0xFF]) + peer[1]


def certificate_identity(cert: x509.Certificate) -> bytes:
    """Who a certificate's holder is, whatever ID it claims (its DN, a subjectAltName in
    any letter case, its key ID): the subject DN, canonical; for a certificate with an
    empty subject, its public key's SHA-1 key ID (RFC 5280 §4.2.1.2 method 1)."""
    if len(cert.subject):
        return Identity.from_name(cert.subject).canonical()
    keyid = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest
    return Identity(IdType.KEY_ID, keyid).canonical()


def id_matches(peer: tuple[int, bytes], pattern: tuple[int, bytes]) -> bool:
    """Whether the peer's ID payload satisfies a configured identity (strongSwan's
    wildcards: ``*.example.org``, ``*@example.org``, ``CN=*``)."""
    try:
        return Identity.decode(*peer).matches(Identity.decode(*pattern))
    except RemoteProtocolError:
        return peer == pattern


def certificate_check(
    trust: TrustStore, wall_clock: Callable[[], float], refresh: Callable[[], None] | None = None
) -> Callable[[Sequence[bytes], tuple[int, bytes]], bytes]:
    """The judgement of a peer's certificates (DER, end entity first) for an identity,
    in IKE AUTH and in EAP-TLS alike: the chain to one of ``trust``'s CAs, valid at
    ``wall_clock()``, not revoked per its CRLs and policy (``refresh`` first reloads
    changed CRL files), and the identity its subject DN or a subjectAltName. Returns the
    holder's canonical identity; AuthenticationError (AUTHENTICATION_FAILED) if not."""

    def check(certs: Sequence[bytes], peer_id: tuple[int, bytes]) -> bytes:
        if not certs:
            raise AuthenticationError("the peer sent no certificate")
        if refresh is not None:
            refresh()
        end_entity = decode_certificate(certs[0])
        intermediates = [decode_certificate(c) for c in certs[1:]]
        trust.verify_chain(end_entity, intermediates, wall_clock())
        check_identity(end_entity, Identity.decode(*peer_id))
        return certificate_identity(end_entity)

    return check


def certificate_auth(
    cred: LocalCredential | None,
    trust: TrustStore,
    wall_clock: Callable[[], float],
    refresh: Callable[[], None] | None = None,
    *,
    classic: bool = False,
) -> AuthConfig:
    """AUTH with certificates: we sign with ``cred`` (RFC 7427 when the peer announced
    hash algorithms, else classic RSA/ECDSA) and verify the peer's chain against
    ``trust`` at ``wall_clock()`` (seconds since the epoch; injected, control/ reads no
    clock), its identity against the certificate, then its signature. ``refresh``, if
    given, runs before each verification (the shell reloads changed CRL files into
    ``trust`` there). ``classic``: always the classic methods (RSA 1, ECDSA 9/10/11), as
    strongSwan's ``auth = rsa|ecdsa``, whatever hash algorithms the peer announced."""

    def signer(octets: bytes, peer_hash_algs: Collection[int]) -> tuple[int, bytes]:
        if cred is None:
            raise RemoteProtocolError("no local certificate configured",
                                      notify=NotifyType.AUTHENTICATION_FAILED)  # fmt: skip
        return sign(cred, octets, () if classic else peer_hash_algs)

    check = certificate_check(trust, wall_clock, refresh)

    def verifier(method: int, data: bytes, octets: bytes, certs: Sequence[bytes],
                 peer_id: tuple[int, bytes]) -> bytes:  # fmt: skip
        holder = check(certs, peer_id)
        verify(method, data, octets, decode_certificate(certs[0]))
        return holder

    ours = () if cred is None else (cred.cert, *cred.chain)
    return AuthConfig(
        signer=signer if cred is not None else None,
        verifier=verifier,
        certs=tuple(encode_certificate(c) for c in ours),
        certreq=(trust.certreq_data(),) if trust.cas else (),
        cacerts=tuple(encode_certificate(c) for c in trust.cas),
        hash_algorithms=tuple(int(h) for h in SUPPORTED_HASH_ALGORITHMS),
        peer_uses_psk=False,
    )
