from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from espfast.ca import build_ca, generate_key, issue_cert
from espfast.control import der
from espfast.control.certs import AuthenticationError, LocalCredential, PrivateKey
from espfast.control.constants import AuthMethod, HashAlgorithm
from espfast.control.errors import LocalProtocolError
from espfast.control.identity import Identity
from espfast.control.signature import (
    ALG_ECDSA,
    ALG_ED25519,
    ALG_RSA_PKCS1,
    ALG_RSA_PSS,
    SUPPORTED_HASH_ALGORITHMS,
    Scheme,
    parse_algorithm_identifier,
    sign,
    verify,
)

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
OCTETS = b"InitiatorSignedOctets: IKE_SA_INIT request | Nr | prf(SK_pi, IDi')" * 3

_CA_KEY = generate_key("ecdsa")
_CA = build_ca(_CA_KEY, "CN=Sig CA", now=NOW)


def credential(key: PrivateKey, *, rsa_pss: bool = False) -> LocalCredential:
    cert = issue_cert(_CA, _CA_KEY, key.public_key(), Identity.parse("gw"), now=NOW)  # type: ignore[arg-type]
    return LocalCredential(cert, key, rsa_pss=rsa_pss)


KEYS = {
    "rsa": generate_key("rsa", bits=2048),
    "p256": generate_key("ecdsa", curve="p256"),
    "p384": generate_key("ecdsa", curve="p384"),
    "p521": generate_key("ecdsa", curve="p521"),
    "ed25519": generate_key("ed25519"),
}
CREDS = {name: credential(key) for name, key in KEYS.items()}
CREDS["rsa-pss"] = dataclasses.replace(CREDS["rsa"], rsa_pss=True)
# A second key of every kind, for "signed by the wrong key".
OTHER = {
    "rsa": credential(generate_key("rsa", bits=2048)),
    "p256": credential(generate_key("ecdsa", curve="p256")),
    "p384": credential(generate_key("ecdsa", curve="p384")),
    "p521": credential(generate_key("ecdsa", curve="p521")),
    "ed25519": credential(generate_key("ed25519")),
}
OTHER["rsa-pss"] = OTHER["rsa"]

# (credential, peer's SIGNATURE_HASH_ALGORITHMS, expected method, expected RFC 7427 prefix)
CASES = [
    ("rsa", [], AuthMethod.RSA_SIG, None),
    ("rsa", [1], AuthMethod.RSA_SIG, None),  # SHA-1 only: no shared hash, classic method
    ("rsa", [2, 3, 4], AuthMethod.DIGITAL_SIGNATURE, ALG_RSA_PKCS1[HashAlgorithm.SHA2_256]),
    ("rsa", [4], AuthMethod.DIGITAL_SIGNATURE, ALG_RSA_PKCS1[HashAlgorithm.SHA2_512]),
    ("rsa-pss", [2], AuthMethod.DIGITAL_SIGNATURE, ALG_RSA_PSS[HashAlgorithm.SHA2_256]),
    ("rsa-pss", [3], AuthMethod.DIGITAL_SIGNATURE, ALG_RSA_PSS[HashAlgorithm.SHA2_384]),
    ("rsa-pss", [4, 5], AuthMethod.DIGITAL_SIGNATURE, ALG_RSA_PSS[HashAlgorithm.SHA2_512]),
    ("p256", [], AuthMethod.ECDSA_SHA256_P256, None),
    ("p384", [], AuthMethod.ECDSA_SHA384_P384, None),
    ("p521", [], AuthMethod.ECDSA_SHA512_P521, None),
    ("p256", [1], AuthMethod.ECDSA_SHA256_P256, None),
    ("p256", [2, 3, 4, 5], AuthMethod.DIGITAL_SIGNATURE, ALG_ECDSA[HashAlgorithm.SHA2_256]),
    ("p384", [2, 3, 4], AuthMethod.DIGITAL_SIGNATURE, ALG_ECDSA[HashAlgorithm.SHA2_384]),
    ("p521", [2, 4], AuthMethod.DIGITAL_SIGNATURE, ALG_ECDSA[HashAlgorithm.SHA2_512]),
    ("p256", [4], AuthMethod.DIGITAL_SIGNATURE, ALG_ECDSA[HashAlgorithm.SHA2_512]),
    ("ed25519", [2, 5], AuthMethod.DIGITAL_SIGNATURE, ALG_ED25519),
]
IDS = [f"{c[0]}-{''.join(map(str, c[1])) or 'none'}" for c in CASES]


@pytest.mark.parametrize(("name", "peer", "method", "prefix"), CASES, ids=IDS)
def test_sign_verify(name: str, peer: list[int], method: int, prefix: bytes | None) -> None:
    cred = CREDS[name]
    got_method, data = sign(cred, OCTETS, peer)
    assert got_method == method
    if prefix is not None:
        assert data[0] == len(prefix) and data[1 : 1 + len(prefix)] == prefix
    verify(got_method, data, OCTETS, cred.cert)


@pytest.mark.parametrize(("name", "peer", "method", "prefix"), CASES, ids=IDS)
def test_tampered_octets(name: str, peer: list[int], method: int, prefix: bytes | None) -> None:
    method, data = sign(CREDS[name], OCTETS, peer)
    tampered = bytearray(OCTETS)
    tampered[7] ^= 0x01
    with pytest.raises(AuthenticationError, match="does not verify"):
        verify(method, data, bytes(tampered), CREDS[name].cert)
    with pytest.raises(AuthenticationError):
        verify(method, data[:-1] + bytes([data[-1] ^ 0x80]), OCTETS, CREDS[name].cert)


@pytest.mark.parametrize(("name", "peer", "method", "prefix"), CASES, ids=IDS)
def test_wrong_key(name: str, peer: list[int], method: int, prefix: bytes | None) -> None:
    method, data = sign(CREDS[name], OCTETS, peer)
    with pytest.raises(AuthenticationError) as exc:
        verify(method, data, OCTETS, OTHER[name].cert)
    assert exc.value.notify == 24  # AUTHENTICATION_FAILED


@pytest.mark.parametrize(("name", "peer", "method", "prefix"), CASES, ids=IDS)
def test_wrong_method(name: str, peer: list[int], method: int, prefix: bytes | None) -> None:
    method, data = sign(CREDS[name], OCTETS, peer)
    others = {1, 9, 10, 11, 14} - {method}
    for wrong in [*others, AuthMethod.PSK, 3, 0, 200]:
        with pytest.raises(AuthenticationError):
            verify(wrong, data, OCTETS, CREDS[name].cert)


def test_ed25519_needs_identity_hash() -> None:
    with pytest.raises(LocalProtocolError, match="Identity hash"):
        sign(CREDS["ed25519"], OCTETS, [])
    with pytest.raises(LocalProtocolError):
        sign(CREDS["ed25519"], OCTETS, [2, 3, 4])


def test_announced_hashes() -> None:
    # RFC 7427 §4 values: SHA2-256=2, SHA2-384=3, SHA2-512=4, Identity=5; SHA-1 (1) is out.
    assert [int(h) for h in SUPPORTED_HASH_ALGORITHMS] == [2, 3, 4, 5]


# --- the RFC 7427 AlgorithmIdentifiers --------------------------------------------------------

# RFC 7427 Appendix A (A.1.x, A.3.x) and RFC 8420 §2 (Ed25519), as printed there.
RFC7427_A1_2 = "300d06092a864886f70d01010b0500"  # sha256WithRSAEncryption
RFC7427_A1_3 = "300d06092a864886f70d01010c0500"  # sha384WithRSAEncryption
RFC7427_A1_4 = "300d06092a864886f70d01010d0500"  # sha512WithRSAEncryption
RFC7427_A3_2 = "300a06082a8648ce3d040302"  # ecdsa-with-sha256
RFC7427_A3_3 = "300a06082a8648ce3d040303"  # ecdsa-with-sha384
RFC7427_A3_4 = "300a06082a8648ce3d040304"  # ecdsa-with-sha512
RFC8420_ED25519 = "300506032b6570"
# RFC 7427 Appendix A.4.2: RSASSA-PSS with the default (SHA-1) parameters spelled out.
RFC7427_A4_2 = (
    "303e06092a864886f70d01010a3031a00b300906052b0e03021a0500a118301606092a864886f70d010108"
    "300906052b0e03021a0500a203020114a303020101"
)


def test_algorithm_identifiers_match_rfc() -> None:
    assert ALG_RSA_PKCS1[HashAlgorithm.SHA2_256].hex() == RFC7427_A1_2
    assert ALG_RSA_PKCS1[HashAlgorithm.SHA2_384].hex() == RFC7427_A1_3
    assert ALG_RSA_PKCS1[HashAlgorithm.SHA2_512].hex() == RFC7427_A1_4
    assert ALG_ECDSA[HashAlgorithm.SHA2_256].hex() == RFC7427_A3_2
    assert ALG_ECDSA[HashAlgorithm.SHA2_384].hex() == RFC7427_A3_3
    assert ALG_ECDSA[HashAlgorithm.SHA2_512].hex() == RFC7427_A3_4
    assert ALG_ED25519.hex() == RFC8420_ED25519


def _signature_algorithm(cert: x509.Certificate) -> bytes:
    """The DER signatureAlgorithm of a certificate (second element of the Certificate)."""
    items = der.iter_tlvs(der.read_all(cert.public_bytes(serialization.Encoding.DER), der.SEQUENCE))
    return der.tlv(*items[1])


@pytest.mark.parametrize(
    "hash_alg", [HashAlgorithm.SHA2_256, HashAlgorithm.SHA2_384, HashAlgorithm.SHA2_512]
)
def test_pss_identifier_matches_openssl(hash_alg: HashAlgorithm) -> None:
    # An independent encoder: cryptography/OpenSSL signing a certificate with the same
    # RSASSA-PSS parameters (hash, MGF1 with the same hash, salt = hash length).
    hash_cls = {2: hashes.SHA256, 3: hashes.SHA384, 4: hashes.SHA512}[int(hash_alg)]
    key = KEYS["rsa"]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_CA.subject)
        .issuer_name(_CA.subject)
        .public_key(key.public_key())  # type: ignore[arg-type]
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + dt.timedelta(days=1))
        .sign(
            key,  # type: ignore[arg-type]
            hash_cls(),
            rsa_padding=padding.PSS(mgf=padding.MGF1(hash_cls()), salt_length=hash_cls.digest_size),
        )
    )
    assert _signature_algorithm(cert) == ALG_RSA_PSS[hash_alg]
    assert parse_algorithm_identifier(ALG_RSA_PSS[hash_alg]) == Scheme(
        "rsa-pss", hash_alg, hash_alg, hash_cls.digest_size
    )


def test_other_identifiers_match_openssl() -> None:
    ed_ca = build_ca(KEYS["ed25519"], "CN=x", now=NOW)
    assert _signature_algorithm(ed_ca) == ALG_ED25519
    assert _signature_algorithm(_CA) == ALG_ECDSA[HashAlgorithm.SHA2_256]
    rsa_ca = build_ca(KEYS["rsa"], "CN=x", now=NOW)
    assert _signature_algorithm(rsa_ca) == ALG_RSA_PKCS1[HashAlgorithm.SHA2_256]


def test_parse_rfc_forms() -> None:
    with pytest.raises(ValueError, match="SHA-1"):
        parse_algorithm_identifier(bytes.fromhex(RFC7427_A4_2))
    # The PSS-SHA-256 identifier with trailerField 1 spelled out, as RFC 7427 A.4 prints
    # them, is the same scheme as strongSwan's DER form without it.
    ours = ALG_RSA_PSS[HashAlgorithm.SHA2_256]
    params = der.iter_tlvs(der.read_all(ours, der.SEQUENCE))[1][1] + bytes.fromhex("a303020101")
    spelled = der.tlv(
        der.SEQUENCE,
        der.tlv(der.OID, der.iter_tlvs(ours[2:])[0][1]) + der.tlv(der.SEQUENCE, params),
    )
    assert parse_algorithm_identifier(spelled) == parse_algorithm_identifier(ours)
    # RSA PKCS#1 v1.5 without the NULL parameters is accepted too.
    bare = der.tlv(der.SEQUENCE, der.tlv(der.OID, bytes.fromhex("2a864886f70d01010b")))
    assert parse_algorithm_identifier(bare) == Scheme("rsa-pkcs1", HashAlgorithm.SHA2_256)


@pytest.mark.parametrize(
    "alg_hex",
    [
        "300d06092a864886f70d0101050500",  # sha1WithRSAEncryption (RFC 7427 A.1.1)
        "300906072a8648ce3d0401",  # ecdsa-with-SHA1
        "300b06092a864886f70d01010a",  # RSASSA-PSS without parameters = SHA-1 defaults
        "300b06092a864886f70d01010a3000",  # RSASSA-PSS, empty parameters (RFC 7427 A.4.1)
        "300b06092a864886f70d0101010500",  # rsaEncryption is no signature algorithm
        "300906072a8648ce380403",  # dsa-with-sha1
        "300706032b65700500",  # Ed25519 with parameters
        "300c06082a8648ce3d0403020500",  # ECDSA with parameters
        "300f06092a864886f70d01010b020101",  # RSA with INTEGER parameters
        "3000",
        "3003020101",
        "0500",
        "",
    ],
)
def test_bad_algorithm_identifiers(alg_hex: str) -> None:
    alg = bytes.fromhex(alg_hex)
    with pytest.raises(ValueError):
        parse_algorithm_identifier(alg)
    _, data = sign(CREDS["rsa"], OCTETS, [2])
    signature = data[1 + data[0] :]
    with pytest.raises(AuthenticationError):
        verify(14, bytes([len(alg)]) + alg + signature, OCTETS, CREDS["rsa"].cert)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00",
        b"\x00abc",
        b"\x05",
        b"\x0f" + ALG_RSA_PKCS1[HashAlgorithm.SHA2_256],
        b"\xff" * 10,
    ],
)
def test_truncated_rfc7427_data(data: bytes) -> None:
    with pytest.raises(AuthenticationError, match="AUTH method 14"):
        verify(14, data, OCTETS, CREDS["rsa"].cert)


def test_classic_ecdsa_wrong_length() -> None:
    method, data = sign(CREDS["p256"], OCTETS, [])
    for bad in (data[:-1], data + b"\x00", b""):
        with pytest.raises(AuthenticationError, match="64 octets"):
            verify(method, bad, OCTETS, CREDS["p256"].cert)


def test_scheme_for_wrong_key_type() -> None:
    # An RFC 7427 ECDSA signature checked against an RSA certificate, and so on.
    _, ecdsa_data = sign(CREDS["p256"], OCTETS, [2])
    with pytest.raises(AuthenticationError, match="no ECDSA key"):
        verify(14, ecdsa_data, OCTETS, CREDS["rsa"].cert)
    _, rsa_data = sign(CREDS["rsa"], OCTETS, [2])
    with pytest.raises(AuthenticationError, match="no RSA key"):
        verify(14, rsa_data, OCTETS, CREDS["p256"].cert)
    _, ed_data = sign(CREDS["ed25519"], OCTETS, [5])
    with pytest.raises(AuthenticationError, match="no Ed25519 key"):
        verify(14, ed_data, OCTETS, CREDS["p256"].cert)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([1, 9, 10, 11, 14]), st.binary(max_size=300))
def test_verify_fuzz(method: int, data: bytes) -> None:
    # Any AUTH data either verifies (it cannot, by chance) or raises AuthenticationError.
    with pytest.raises(AuthenticationError):
        verify(method, data, OCTETS, CREDS["rsa" if method in (1, 14) else "p256"].cert)


# --- OpenSSL's command line as an independent verifier ----------------------------------------

_DGST = {
    HashAlgorithm.SHA2_256: "-sha256",
    HashAlgorithm.SHA2_384: "-sha384",
    HashAlgorithm.SHA2_512: "-sha512",
}


def _openssl_args(method: int, data: bytes) -> tuple[list[str], bytes]:
    """The openssl command (minus files) that checks this AUTH data, and the raw signature."""
    if method == AuthMethod.RSA_SIG:
        return ["dgst", "-sha1"], data
    if method in (9, 10, 11):
        width = len(data) // 2
        r, s = int.from_bytes(data[:width], "big"), int.from_bytes(data[width:], "big")
        return ["dgst", {9: "-sha256", 10: "-sha384", 11: "-sha512"}[method]], encode_dss_signature(
            r, s
        )
    scheme = parse_algorithm_identifier(data[1 : 1 + data[0]])
    signature = data[1 + data[0] :]
    if scheme.kind == "ed25519":
        return ["pkeyutl", "-rawin"], signature
    args = ["dgst", _DGST[scheme.hash]]
    if scheme.kind == "rsa-pss":
        args += [
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            f"rsa_pss_saltlen:{scheme.salt_length}",
        ]
    return args, signature


@pytest.mark.parametrize(("name", "peer", "method", "prefix"), CASES, ids=IDS)
def test_openssl_verifies_our_signatures(
    tmp_path: Path, name: str, peer: list[int], method: int, prefix: bytes | None
) -> None:
    cred = CREDS[name]
    method, data = sign(cred, OCTETS, peer)
    args, signature = _openssl_args(method, data)
    (tmp_path / "pub.pem").write_bytes(
        cred.cert.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    (tmp_path / "octets").write_bytes(OCTETS)
    (tmp_path / "sig").write_bytes(signature)
    if args[0] == "pkeyutl":
        cmd = [
            "openssl",
            *args,
            "-verify",
            "-pubin",
            "-inkey",
            "pub.pem",
            "-in",
            "octets",
            "-sigfile",
            "sig",
        ]
    else:
        cmd = ["openssl", *args, "-verify", "pub.pem", "-signature", "sig", "octets"]
    result = subprocess.run(
        cmd, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Verified OK" in result.stdout or "Signature Verified Successfully" in result.stdout
    # The same command refuses other octets.
    (tmp_path / "octets").write_bytes(OCTETS + b"x")
    result = subprocess.run(
        cmd, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=30
    )
    assert result.returncode != 0
