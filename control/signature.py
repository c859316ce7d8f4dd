"""Signature authentication of IKE SAs (RFC 7296 §2.15, RFC 7427, RFC 4754).

The ikecore layer computes the signed octets (InitiatorSignedOctets/ResponderSignedOctets)
and calls ``sign`` for our AUTH payload and ``verify`` for the peer's. Methods:

- 14, Digital Signature (RFC 7427): AUTH data is a one-octet length, an ASN.1
  AlgorithmIdentifier naming the scheme, then the signature. We sign with it whenever the
  peer sent SIGNATURE_HASH_ALGORITHMS with a hash we share: RSASSA-PKCS1-v1_5 or
  RSASSA-PSS with SHA-2, ECDSA with SHA-2 (DER Ecdsa-Sig-Value), Ed25519 (hash "Identity",
  RFC 8420).
- 1, RSA Digital Signature (RFC 7296 §3.8): PKCS#1 v1.5 with SHA-1, what the native Apple
  and Windows clients send and expect.
- 9/10/11, ECDSA with SHA-256/P-256, SHA-384/P-384, SHA-512/P-521 (RFC 4754 §3, §7): the
  signature is r || s, each as wide as the curve order.

Every refusal of a peer's AUTH is an ``AuthenticationError`` (AUTHENTICATION_FAILED). No
secret is compared here: the signature checks happen inside OpenSSL.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from . import der
from .certs import AuthenticationError, LocalCredential, check_public_key
from .constants import AuthMethod, HashAlgorithm
from .errors import LocalProtocolError

# What we put in our SIGNATURE_HASH_ALGORITHMS notify (RFC 7427 §4): SHA-1 is not
# acceptable for signatures any more (RFC 8247 §3.2).
SUPPORTED_HASH_ALGORITHMS: tuple[HashAlgorithm, ...] = (
    HashAlgorithm.SHA2_256,
    HashAlgorithm.SHA2_384,
    HashAlgorithm.SHA2_512,
    HashAlgorithm.IDENTITY,
)

_HASHES: dict[HashAlgorithm, type[hashes.SHA256 | hashes.SHA384 | hashes.SHA512]] = {
    HashAlgorithm.SHA2_256: hashes.SHA256,
    HashAlgorithm.SHA2_384: hashes.SHA384,
    HashAlgorithm.SHA2_512: hashes.SHA512,
}

# OIDs (RFC 8017 Appendix C, RFC 5758 §3.2, RFC 8410 §3, RFC 5754 §2).
OID_RSA_PSS = "1.2.840.113549.1.1.10"
OID_MGF1 = "1.2.840.113549.1.1.8"
OID_ED25519 = "1.3.101.112"
_OID_SHA = {
    HashAlgorithm.SHA2_256: "2.16.840.1.101.3.4.2.1",
    HashAlgorithm.SHA2_384: "2.16.840.1.101.3.4.2.2",
    HashAlgorithm.SHA2_512: "2.16.840.1.101.3.4.2.3",
}
_OID_SHA1 = "1.3.14.3.2.26"
_OID_RSA_PKCS1 = {
    HashAlgorithm.SHA2_256: "1.2.840.113549.1.1.11",
    HashAlgorithm.SHA2_384: "1.2.840.113549.1.1.12",
    HashAlgorithm.SHA2_512: "1.2.840.113549.1.1.13",
}
_OID_ECDSA = {
    HashAlgorithm.SHA2_256: "1.2.840.10045.4.3.2",
    HashAlgorithm.SHA2_384: "1.2.840.10045.4.3.3",
    HashAlgorithm.SHA2_512: "1.2.840.10045.4.3.4",
}
_OID_SHA1_WITH_RSA = "1.2.840.113549.1.1.5"
_OID_ECDSA_SHA1 = "1.2.840.10045.4.1"

_NULL = der.tlv(der.NULL, b"")
_HASH_LEN = {HashAlgorithm.SHA2_256: 32, HashAlgorithm.SHA2_384: 48, HashAlgorithm.SHA2_512: 64}


def algorithm_identifier(oid: str, parameters: bytes | None = None) -> bytes:
    """AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }."""
    return der.tlv(der.SEQUENCE, der.tlv(der.OID, der.encode_oid(oid)) + (parameters or b""))


def pss_algorithm_identifier(hash_alg: HashAlgorithm) -> bytes:
    """RSASSA-PSS with ``hash_alg``, MGF1 with the same hash, salt as long as the hash.

    RFC 8017 Appendix A.2.3: RSASSA-PSS-params ::= SEQUENCE { hashAlgorithm [0],
    maskGenAlgorithm [1], saltLength [2], trailerField [3] DEFAULT 1 }; DER leaves the
    default trailerField out (strongSwan too, RFC 7427 Appendix A.4.2 shows it spelled out;
    ``verify`` accepts both). Hash AlgorithmIdentifiers carry NULL parameters (RFC 4055 §2.1).
    """
    hash_id = algorithm_identifier(_OID_SHA[hash_alg], _NULL)
    params = der.tlv(
        der.SEQUENCE,
        der.tlv(0xA0, hash_id)
        + der.tlv(0xA1, algorithm_identifier(OID_MGF1, hash_id))
        + der.tlv(0xA2, der.tlv(der.INTEGER, bytes([_HASH_LEN[hash_alg]]))),
    )
    return algorithm_identifier(OID_RSA_PSS, params)


# RFC 7427 Appendix A gives these as hex; here they are derived from the OIDs, and
# tests/unit/test_signature.py checks them against the appendix:
#   A.1.2 sha256WithRSAEncryption  30 0d 06 09 2a 86 48 86 f7 0d 01 01 0b 05 00
#   A.3.2 ecdsa-with-sha256        30 0a 06 08 2a 86 48 ce 3d 04 03 02
# RSA PKCS#1 v1.5 carries NULL parameters, ECDSA none (RFC 5758 §3.2), Ed25519 none
# (RFC 8410 §3, RFC 8420 §2).
ALG_RSA_PKCS1 = {h: algorithm_identifier(oid, _NULL) for h, oid in _OID_RSA_PKCS1.items()}
ALG_ECDSA = {h: algorithm_identifier(oid) for h, oid in _OID_ECDSA.items()}
ALG_RSA_PSS = {h: pss_algorithm_identifier(h) for h in _HASHES}
ALG_ED25519 = algorithm_identifier(OID_ED25519)

# RFC 4754 §7: each classic ECDSA method fixes the curve and the hash.
_CLASSIC_ECDSA: dict[AuthMethod, tuple[str, HashAlgorithm, int]] = {
    AuthMethod.ECDSA_SHA256_P256: ("secp256r1", HashAlgorithm.SHA2_256, 32),
    AuthMethod.ECDSA_SHA384_P384: ("secp384r1", HashAlgorithm.SHA2_384, 48),
    AuthMethod.ECDSA_SHA512_P521: ("secp521r1", HashAlgorithm.SHA2_512, 66),
}
_CURVE_METHOD = {curve: method for method, (curve, _, _) in _CLASSIC_ECDSA.items()}


@dataclass(frozen=True)
class Scheme:
    """A signature scheme named by an RFC 7427 AlgorithmIdentifier."""

    kind: str  # "rsa-pkcs1", "rsa-pss", "ecdsa" or "ed25519"
    hash: HashAlgorithm  # IDENTITY for Ed25519
    mgf1_hash: HashAlgorithm | None = None  # RSASSA-PSS only
    salt_length: int = 0  # RSASSA-PSS only


def _hash_from_id(data: bytes) -> HashAlgorithm:
    items = der.iter_tlvs(der.read_all(data, der.SEQUENCE))
    if not items or items[0][0] != der.OID or len(items) > 2:
        raise ValueError("malformed hash AlgorithmIdentifier")
    if len(items) == 2 and items[1] != (der.NULL, b""):
        raise ValueError("hash AlgorithmIdentifier with parameters")
    oid = der.decode_oid(items[0][1])
    if oid == _OID_SHA1:
        raise ValueError("SHA-1 is not accepted for signatures (RFC 8247)")
    for hash_alg, known in _OID_SHA.items():
        if oid == known:
            return hash_alg
    raise ValueError(f"unsupported hash {oid}")


def _parse_pss_params(params: bytes) -> Scheme:
    """RSASSA-PSS-params (RFC 8017 Appendix A.2.3), defaults SHA-1 / MGF1-SHA-1 / 20 / 1."""
    fields = dict(der.iter_tlvs(der.read_all(params, der.SEQUENCE)))
    if set(fields) - {0xA0, 0xA1, 0xA2, 0xA3}:
        raise ValueError("malformed RSASSA-PSS parameters")
    if 0xA0 not in fields or 0xA1 not in fields:
        raise ValueError("SHA-1 is not accepted for signatures (RFC 8247)")
    hash_alg = _hash_from_id(fields[0xA0])
    mgf = der.iter_tlvs(der.read_all(fields[0xA1], der.SEQUENCE))
    if len(mgf) != 2 or mgf[0][0] != der.OID or der.decode_oid(mgf[0][1]) != OID_MGF1:
        raise ValueError("RSASSA-PSS mask generation is not MGF1")
    mgf1_hash = _hash_from_id(der.tlv(mgf[1][0], mgf[1][1]))
    salt = 20
    if 0xA2 in fields:
        salt_body = der.read_all(fields[0xA2], der.INTEGER)
        if not salt_body or salt_body[0] & 0x80 or len(salt_body) > 2:
            raise ValueError("bad RSASSA-PSS saltLength")
        salt = int.from_bytes(salt_body, "big")
    if 0xA3 in fields and der.read_all(fields[0xA3], der.INTEGER) != b"\x01":
        raise ValueError("bad RSASSA-PSS trailerField")
    return Scheme("rsa-pss", hash_alg, mgf1_hash, salt)


def parse_algorithm_identifier(data: bytes) -> Scheme:
    """The scheme an RFC 7427 AlgorithmIdentifier names; ValueError if we do not take it."""
    items = der.iter_tlvs(der.read_all(data, der.SEQUENCE))
    if not items or items[0][0] != der.OID or len(items) > 2:
        raise ValueError("malformed AlgorithmIdentifier")
    oid = der.decode_oid(items[0][1])
    params = der.tlv(*items[1]) if len(items) == 2 else None
    if oid in (_OID_SHA1_WITH_RSA, _OID_ECDSA_SHA1):
        raise ValueError("SHA-1 is not accepted for signatures (RFC 8247)")
    for hash_alg, known in _OID_RSA_PKCS1.items():
        if oid == known:
            if params not in (None, _NULL):
                raise ValueError("RSA PKCS#1 v1.5 AlgorithmIdentifier with parameters")
            return Scheme("rsa-pkcs1", hash_alg)
    for hash_alg, known in _OID_ECDSA.items():
        if oid == known:
            if params is not None:
                raise ValueError("ECDSA AlgorithmIdentifier with parameters")
            return Scheme("ecdsa", hash_alg)
    if oid == OID_ED25519:
        if params is not None:
            raise ValueError("Ed25519 AlgorithmIdentifier with parameters")
        return Scheme("ed25519", HashAlgorithm.IDENTITY)
    if oid == OID_RSA_PSS:
        if params is None:
            raise ValueError("SHA-1 is not accepted for signatures (RFC 8247)")
        return _parse_pss_params(params)
    raise ValueError(f"unsupported signature algorithm {oid}")


def _pss(scheme: Scheme) -> padding.PSS:
    assert scheme.mgf1_hash is not None
    return padding.PSS(
        mgf=padding.MGF1(_HASHES[scheme.mgf1_hash]()), salt_length=scheme.salt_length
    )


# --- signing --------------------------------------------------------------------------------


def _pick(preferred: list[HashAlgorithm], peer: Collection[int]) -> HashAlgorithm | None:
    return next((h for h in preferred if h in peer), None)


def sign(
    cred: LocalCredential, octets: bytes, peer_hash_algs: Collection[int]
) -> tuple[int, bytes]:
    """Our AUTH payload: (AUTH method, AUTH data) signing ``octets`` with ``cred``.

    ``peer_hash_algs``: the hashes in the peer's SIGNATURE_HASH_ALGORITHMS notify, empty if
    it sent none. With a shared hash we use RFC 7427 (method 14), else the classic method
    for the key (1 for RSA, 9/10/11 for ECDSA); Ed25519 needs RFC 7427 with "Identity".
    """
    key = cred.key
    peer = set(peer_hash_algs)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        if HashAlgorithm.IDENTITY not in peer:
            raise LocalProtocolError(
                "an Ed25519 key needs RFC 7427 signatures, and the peer did not announce the "
                "Identity hash in SIGNATURE_HASH_ALGORITHMS"
            )
        return AuthMethod.DIGITAL_SIGNATURE, _with_alg(ALG_ED25519, key.sign(octets))
    if isinstance(key, ec.EllipticCurvePrivateKey):
        method = _CURVE_METHOD.get(key.curve.name)
        if method is None:
            raise LocalProtocolError(f"unsupported curve {key.curve.name}")
        _, own_hash, width = _CLASSIC_ECDSA[method]
        choice = _pick([own_hash, *_HASHES], peer)
        if choice is not None:
            sig = key.sign(octets, ec.ECDSA(_HASHES[choice]()))
            return AuthMethod.DIGITAL_SIGNATURE, _with_alg(ALG_ECDSA[choice], sig)
        r, s = decode_dss_signature(key.sign(octets, ec.ECDSA(_HASHES[own_hash]())))
        return method, r.to_bytes(width, "big") + s.to_bytes(width, "big")
    choice = _pick(list(_HASHES), peer)
    if choice is None:
        # RFC 7296 §3.8 method 1: RSASSA-PKCS1-v1_5 over SHA-1 of the octets.
        return AuthMethod.RSA_SIG, key.sign(octets, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
    if cred.rsa_pss:
        scheme = Scheme("rsa-pss", choice, choice, _HASH_LEN[choice])
        sig = key.sign(octets, _pss(scheme), _HASHES[choice]())
        return AuthMethod.DIGITAL_SIGNATURE, _with_alg(ALG_RSA_PSS[choice], sig)
    sig = key.sign(octets, padding.PKCS1v15(), _HASHES[choice]())
    return AuthMethod.DIGITAL_SIGNATURE, _with_alg(ALG_RSA_PKCS1[choice], sig)


def _with_alg(alg_id: bytes, signature: bytes) -> bytes:
    # RFC 7427 §3: ASN.1 Length (1 octet) | AlgorithmIdentifier | Signature Value.
    return bytes([len(alg_id)]) + alg_id + signature


# --- verification ---------------------------------------------------------------------------


def verify(method: int, data: bytes, octets: bytes, cert: x509.Certificate) -> None:
    """Check the peer's AUTH payload against its certificate; AuthenticationError if bad."""
    try:
        key = check_public_key(cert, "peer certificate")
    except ValueError as exc:
        raise AuthenticationError(str(exc)) from None
    try:
        _verify(method, bytes(data), octets, key)
    except InvalidSignature:
        raise AuthenticationError(
            f"AUTH signature (method {method}) does not verify with the peer's certificate"
        ) from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise AuthenticationError(f"AUTH method {method}: {exc}") from None


def _verify(method: int, data: bytes, octets: bytes, key: object) -> None:
    if method == AuthMethod.DIGITAL_SIGNATURE:
        _verify_rfc7427(data, octets, key)
    elif method == AuthMethod.RSA_SIG:
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("RSA signature but the certificate has no RSA key")
        key.verify(data, octets, padding.PKCS1v15(), hashes.SHA1())  # noqa: S303
    elif method in _CLASSIC_ECDSA:
        curve, hash_alg, width = _CLASSIC_ECDSA[AuthMethod(method)]
        if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != curve:
            raise ValueError(f"needs a {curve} key in the certificate")
        if len(data) != 2 * width:
            raise ValueError(f"signature must be {2 * width} octets (r || s), not {len(data)}")
        r, s = int.from_bytes(data[:width], "big"), int.from_bytes(data[width:], "big")
        key.verify(encode_dss_signature(r, s), octets, ec.ECDSA(_HASHES[hash_alg]()))
    else:
        raise ValueError("not a signature method espfast accepts")


def _verify_rfc7427(data: bytes, octets: bytes, key: object) -> None:
    if len(data) < 2 or data[0] == 0 or len(data) <= 1 + data[0]:
        raise ValueError("truncated RFC 7427 signature data")
    alg_len = data[0]
    scheme = parse_algorithm_identifier(data[1 : 1 + alg_len])
    signature = data[1 + alg_len :]
    if scheme.kind == "ed25519":
        if not isinstance(key, ed25519.Ed25519PublicKey):
            raise ValueError("Ed25519 signature but the certificate has no Ed25519 key")
        key.verify(signature, octets)
    elif scheme.kind == "ecdsa":
        if not isinstance(key, ec.EllipticCurvePublicKey):
            raise ValueError("ECDSA signature but the certificate has no ECDSA key")
        key.verify(signature, octets, ec.ECDSA(_HASHES[scheme.hash]()))
    else:
        if not isinstance(key, rsa.RSAPublicKey):
            raise ValueError("RSA signature but the certificate has no RSA key")
        pad = _pss(scheme) if scheme.kind == "rsa-pss" else padding.PKCS1v15()
        key.verify(signature, octets, pad, _HASHES[scheme.hash]())
