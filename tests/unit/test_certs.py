from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from espfast.ca import build_ca, cert_pem, generate_key, issue_cert, key_pem, key_usage
from espfast.control.certs import (
    AuthenticationError,
    LocalCredential,
    PrivateKey,
    TrustStore,
    check_identity,
    decode_certificate,
    encode_certificate,
    key_hash,
    load_certificates,
    load_private_key,
)
from espfast.control.constants import IdType
from espfast.control.identity import Identity

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)

# Key generation dominates these tests: make each kind of key once.
KEYS: dict[str, PrivateKey] = {
    "ca": generate_key("ecdsa"),
    "ca2": generate_key("ecdsa"),
    "inter": generate_key("ecdsa", curve="p384"),
    "ee": generate_key("ecdsa"),
    "rsa": generate_key("rsa", bits=2048),
    "ed25519": generate_key("ed25519"),
    "p521": generate_key("ecdsa", curve="p521"),
}
CA = build_ca(KEYS["ca"], "C=CH, O=espfast, CN=Test CA", now=NOW - 30 * DAY)
STORE = TrustStore([CA])


def weak_rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(65537, 1024)  # noqa: S505 - refusing it is the test


def name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def make_cert(
    subject: x509.Name,
    public_key: object,
    issuer: x509.Name,
    issuer_key: PrivateKey,
    *,
    not_before: dt.datetime = NOW - DAY,
    not_after: dt.datetime = NOW + 30 * DAY,
    extensions: tuple[tuple[x509.ExtensionType, bool], ...] = (),
    serial: int = 1000,
    sign_hash: hashes.HashAlgorithm | None = None,
) -> x509.Certificate:
    """Any certificate, including ones espfast.ca would refuse to make."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical)
    if sign_hash is None and not isinstance(issuer_key, ed25519.Ed25519PrivateKey):
        sign_hash = hashes.SHA256()
    return builder.sign(issuer_key, sign_hash)  # type: ignore[arg-type]


def ca_exts(path_length: int | None = None) -> tuple[tuple[x509.ExtensionType, bool], ...]:
    return (
        (x509.BasicConstraints(ca=True, path_length=path_length), True),
        (key_usage(key_cert_sign=True, crl_sign=True), True),
    )


def server(
    identity: str = "gw.example.org", key: PrivateKey | None = None, **kw: object
) -> x509.Certificate:
    key = key or KEYS["ee"]
    return issue_cert(CA, KEYS["ca"], key.public_key(), Identity.parse(identity), now=NOW, **kw)  # type: ignore[arg-type]


# --- loading ---------------------------------------------------------------------------------


def test_load_pem_bundle_and_der() -> None:
    ee = server()
    assert load_certificates(cert_pem(ee) + cert_pem(CA)) == [ee, CA]
    assert load_certificates(ee.public_bytes(serialization.Encoding.DER)) == [ee]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"\x30\x82\x01",  # truncated DER
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    ],
)
def test_load_certificates_rejects(data: bytes) -> None:
    with pytest.raises(ValueError, match=r"not an X\.509 certificate"):
        load_certificates(data, "peer.crt")


def test_load_truncated_der() -> None:
    der = server().public_bytes(serialization.Encoding.DER)
    for cut in (1, len(der) // 2, len(der) - 1):
        with pytest.raises(ValueError, match=r"not an X\.509 certificate"):
            load_certificates(der[:cut])


@pytest.mark.parametrize("kind", ["rsa", "ed25519", "p521", "ee", "inter"])
def test_load_private_key_types(kind: str) -> None:
    key = KEYS[kind]
    loaded = load_private_key(key_pem(key))
    assert loaded.public_key() == key.public_key()
    der = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    assert load_private_key(der).public_key() == key.public_key()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: dsa.generate_private_key(2048), "unsupported key type DSA"),
        (lambda: ed448.Ed448PrivateKey.generate(), "unsupported key type Ed448"),
        (lambda: ec.generate_private_key(ec.SECP256K1()), "unsupported curve secp256k1"),
        (weak_rsa, "RSA key of 1024 bits"),
    ],
)
def test_load_private_key_unsupported(make: object, message: str) -> None:
    key = make()  # type: ignore[operator]
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ValueError, match=message):
        load_private_key(pem, "my.key")


def test_load_private_key_bad_data() -> None:
    with pytest.raises(ValueError, match="cannot load private key"):
        load_private_key(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ValueError, match="cannot load private key"):
        load_private_key(b"\x30\x03\x02\x01")
    encrypted = KEYS["ee"].private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret"),
    )
    with pytest.raises(ValueError, match="cannot load private key"):
        load_private_key(encrypted)
    assert load_private_key(encrypted, password=b"secret").public_key() == KEYS["ee"].public_key()


def test_local_credential(tmp_path: Path) -> None:
    ee = server()
    (tmp_path / "gw.crt").write_bytes(cert_pem(ee))
    (tmp_path / "gw.key").write_bytes(key_pem(KEYS["ee"]))
    (tmp_path / "ca.crt").write_bytes(cert_pem(CA))
    cred = LocalCredential.load(
        tmp_path / "gw.crt", tmp_path / "gw.key", chain=[tmp_path / "ca.crt"]
    )
    assert cred.cert == ee
    assert cred.chain == (CA,)
    assert cred.identity == Identity.parse("CN=gw.example.org")
    secret = KEYS["ee"].private_numbers().private_value  # type: ignore[union-attr]
    assert f"{secret:x}" not in repr(cred) and str(secret) not in repr(cred)
    assert "key=" not in repr(cred)
    (tmp_path / "other.key").write_bytes(key_pem(KEYS["ca2"]))
    with pytest.raises(ValueError, match="does not belong to certificate"):
        LocalCredential.load(tmp_path / "gw.crt", tmp_path / "other.key")


# --- chain verification -----------------------------------------------------------------------


def test_verify_direct() -> None:
    ee = server()
    assert STORE.verify_chain(ee, [], NOW) == (ee, CA)
    assert STORE.verify_chain(ee, [], NOW.timestamp()) == (ee, CA)
    assert STORE.verify_chain(ee, [], NOW.replace(tzinfo=None)) == (ee, CA)


def test_verify_needs_time() -> None:
    with pytest.raises(TypeError):
        STORE.verify_chain(server(), [], None)


@pytest.mark.parametrize("kind", ["rsa", "ed25519", "p521"])
def test_verify_key_types(kind: str) -> None:
    ca = build_ca(KEYS[kind], "CN=Other CA", now=NOW - DAY)
    ee = issue_cert(ca, KEYS[kind], KEYS["ee"].public_key(), Identity.parse("gw"), now=NOW)  # type: ignore[arg-type]
    assert TrustStore([ca]).verify_chain(ee, [], NOW) == (ee, ca)


def intermediate(
    path_length: int | None = None, key: str = "inter", cn: str = "Inter"
) -> x509.Certificate:
    return make_cert(
        name(cn), KEYS[key].public_key(), CA.subject, KEYS["ca"], extensions=ca_exts(path_length)
    )


def test_verify_through_intermediate() -> None:
    inter = intermediate()
    ee = make_cert(name("gw"), KEYS["ee"].public_key(), inter.subject, KEYS["inter"])
    decoy = intermediate(key="ca2", cn="Decoy")
    assert STORE.verify_chain(ee, [decoy, inter], NOW) == (ee, inter, CA)
    with pytest.raises(AuthenticationError, match='no trusted CA for issuer "CN=Inter"'):
        STORE.verify_chain(ee, [], NOW)


def test_error_is_authentication_failed() -> None:
    with pytest.raises(AuthenticationError) as exc:
        TrustStore([]).verify_chain(server(), [], NOW)
    assert exc.value.notify == 24  # AUTHENTICATION_FAILED


def test_expired() -> None:
    ee = server()
    with pytest.raises(AuthenticationError, match="expired on"):
        STORE.verify_chain(ee, [], NOW + 731 * DAY)


def test_not_yet_valid() -> None:
    ee = server()
    with pytest.raises(AuthenticationError, match="is not valid before"):
        STORE.verify_chain(ee, [], NOW - DAY)


def test_ca_expired() -> None:
    old_ca = make_cert(
        CA.subject,
        KEYS["ca"].public_key(),
        CA.subject,
        KEYS["ca"],
        extensions=ca_exts(),
        not_after=NOW - DAY,
        not_before=NOW - 99 * DAY,
    )
    ee = server()
    with pytest.raises(AuthenticationError, match=r"Test CA.*expired"):
        TrustStore([old_ca]).verify_chain(ee, [], NOW)


def test_self_signed_untrusted() -> None:
    key = KEYS["ee"]
    selfie = make_cert(name("gw"), key.public_key(), name("gw"), key)
    with pytest.raises(AuthenticationError, match=r"self-signed certificate .* not trusted"):
        STORE.verify_chain(selfie, [], NOW)
    # ... unless it is itself configured as trusted.
    selfie_ca = make_cert(name("gw"), key.public_key(), name("gw"), key, extensions=ca_exts())
    assert TrustStore([selfie_ca]).verify_chain(selfie_ca, [], NOW) == (selfie_ca,)


def test_signed_by_another_ca() -> None:
    # Same issuer name, different key: the signature gives it away.
    impostor = build_ca(KEYS["ca2"], "C=CH, O=espfast, CN=Test CA", now=NOW - DAY)
    ee = issue_cert(impostor, KEYS["ca2"], KEYS["ee"].public_key(), Identity.parse("gw"), now=NOW)  # type: ignore[arg-type]
    with pytest.raises(AuthenticationError, match="bad signature by"):
        STORE.verify_chain(ee, [], NOW)
    # Another name altogether: no path.
    other = build_ca(KEYS["ca2"], "CN=Other CA", now=NOW - DAY)
    ee2 = issue_cert(other, KEYS["ca2"], KEYS["ee"].public_key(), Identity.parse("gw"), now=NOW)  # type: ignore[arg-type]
    with pytest.raises(AuthenticationError, match="no trusted CA"):
        STORE.verify_chain(ee2, [other], NOW)


def test_revoked_by_serial() -> None:
    ee = server()
    store = TrustStore([CA], revoked_serials=[ee.serial_number])
    with pytest.raises(AuthenticationError, match=r"revoked \(by configuration\)"):
        store.verify_chain(ee, [], NOW)
    assert store.verify_chain(server(), [], NOW)[0] != ee  # another serial is fine


def _crl(issuer: x509.Name, key: PrivateKey, serials: list[int]) -> x509.CertificateRevocationList:
    builder = x509.CertificateRevocationListBuilder().issuer_name(issuer)
    builder = builder.last_update(NOW - DAY).next_update(NOW + DAY)
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(NOW - DAY)
            .build()
        )
    return builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]


def test_revoked_by_crl(tmp_path: Path) -> None:
    ee = server()
    crl = _crl(CA.subject, KEYS["ca"], [ee.serial_number])
    (tmp_path / "ca.crt").write_bytes(cert_pem(CA))
    (tmp_path / "ca.crl").write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    store = TrustStore.load([tmp_path / "ca.crt"], [tmp_path / "ca.crl"])
    with pytest.raises(AuthenticationError, match=r"revoked \(CRL of CN=Test CA,O=espfast,C=CH: "):
        store.verify_chain(ee, [], NOW)
    # A CRL not signed by the issuer is ignored.
    forged = _crl(CA.subject, KEYS["ca2"], [ee.serial_number])
    assert TrustStore([CA], [forged]).verify_chain(ee, [], NOW) == (ee, CA)
    (tmp_path / "bad.crl").write_bytes(b"not a crl")
    with pytest.raises(ValueError, match=r"bad\.crl: not a usable CRL"):
        TrustStore.load([tmp_path / "ca.crt"], [tmp_path / "bad.crl"])


def test_revoked_intermediate() -> None:
    inter = intermediate()
    ee = make_cert(name("gw"), KEYS["ee"].public_key(), inter.subject, KEYS["inter"], serial=7)
    store = TrustStore([CA], [_crl(CA.subject, KEYS["ca"], [inter.serial_number])])
    with pytest.raises(AuthenticationError, match=r'"CN=Inter".*revoked'):
        store.verify_chain(ee, [inter], NOW)


def test_issuer_not_a_ca() -> None:
    fake_inter = make_cert(name("Inter"), KEYS["inter"].public_key(), CA.subject, KEYS["ca"])
    ee = make_cert(name("gw"), KEYS["ee"].public_key(), fake_inter.subject, KEYS["inter"])
    with pytest.raises(AuthenticationError, match="is not a CA"):
        STORE.verify_chain(ee, [fake_inter], NOW)


def test_ca_without_key_cert_sign() -> None:
    inter = make_cert(
        name("Inter"),
        KEYS["inter"].public_key(),
        CA.subject,
        KEYS["ca"],
        extensions=(
            (x509.BasicConstraints(ca=True, path_length=None), True),
            (key_usage(digital_signature=True), True),
        ),
    )
    ee = make_cert(name("gw"), KEYS["ee"].public_key(), inter.subject, KEYS["inter"])
    with pytest.raises(AuthenticationError, match="may not sign certificates"):
        STORE.verify_chain(ee, [inter], NOW)


def test_path_length() -> None:
    root = make_cert(
        name("Root0"), KEYS["ca"].public_key(), name("Root0"), KEYS["ca"], extensions=ca_exts(0)
    )
    inter = make_cert(
        name("Inter"), KEYS["inter"].public_key(), root.subject, KEYS["ca"], extensions=ca_exts()
    )
    ee = make_cert(name("gw"), KEYS["ee"].public_key(), inter.subject, KEYS["inter"])
    with pytest.raises(AuthenticationError, match="path length constraint 0 exceeded"):
        TrustStore([root]).verify_chain(ee, [inter], NOW)
    # pathLen 0 still lets the root sign end entities directly.
    direct = make_cert(name("gw"), KEYS["ee"].public_key(), root.subject, KEYS["ca"])
    assert TrustStore([root]).verify_chain(direct, [], NOW) == (direct, root)


@pytest.mark.parametrize(
    ("extension", "message"),
    [
        (
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]),
            "extendedKeyUsage is not for IKE",
        ),
        (key_usage(key_encipherment=True), "keyUsage allows no digitalSignature"),
        (
            x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00"),
            "unsupported critical extension",
        ),
    ],
)
def test_end_entity_constraints(extension: x509.ExtensionType, message: str) -> None:
    ee = make_cert(
        name("gw"), KEYS["ee"].public_key(), CA.subject, KEYS["ca"], extensions=((extension, True),)
    )
    with pytest.raises(AuthenticationError, match=message):
        STORE.verify_chain(ee, [], NOW)


@pytest.mark.parametrize(
    "eku",
    [
        [ExtendedKeyUsageOID.SERVER_AUTH],
        [ExtendedKeyUsageOID.CLIENT_AUTH],
        [ExtendedKeyUsageOID.IPSEC_IKE],
        [x509.ObjectIdentifier("1.3.6.1.5.5.8.2.2")],
        [ExtendedKeyUsageOID.EMAIL_PROTECTION, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE],
    ],
)
def test_ike_ekus_accepted(eku: list[x509.ObjectIdentifier]) -> None:
    ee = make_cert(
        name("gw"),
        KEYS["ee"].public_key(),
        CA.subject,
        KEYS["ca"],
        extensions=((x509.ExtendedKeyUsage(eku), False),),
    )
    assert STORE.verify_chain(ee, [], NOW) == (ee, CA)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ec.generate_private_key(ec.SECP256K1()), "unsupported curve"),
        (weak_rsa, "RSA key of 1024 bits"),
        (lambda: ed448.Ed448PrivateKey.generate(), "unsupported key type Ed448"),
    ],
)
def test_peer_key_unsupported(make: object, message: str) -> None:
    key = make()  # type: ignore[operator]
    ee = make_cert(name("gw"), key.public_key(), CA.subject, KEYS["ca"])
    with pytest.raises(AuthenticationError, match=message):
        STORE.verify_chain(ee, [], NOW)


def test_trust_store_rejects_non_ca() -> None:
    with pytest.raises(ValueError, match=r"trusted CA.*not a CA"):
        TrustStore([server()])


# --- identities ------------------------------------------------------------------------------


def test_check_identity() -> None:
    ee = server(
        "gw.example.org",
        sans=[Identity.parse(s) for s in ("198.18.0.1", "2001:2::1", "admin@example.org")],
        dn="C=CH, O=espfast, CN=gw.example.org",
    )
    for good in (
        "gw.example.org",
        "GW.example.ORG",
        "198.18.0.1",
        "2001:2::1",
        "admin@example.org",
        "C=CH, O=espfast, CN=gw.example.org",
        "c=ch, O=espfast, cn=gw.example.org",  # C is a PrintableString on both sides
    ):
        check_identity(ee, Identity.parse(good))
    ski = ee.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    check_identity(ee, Identity.parse("keyid:#" + ski.hex()))
    for bad in (
        "gw2.example.org",
        "198.18.0.2",
        "2001:2::2",
        "other@example.org",
        "C=CH, O=espfast, CN=gw2.example.org",
        "CN=gw.example.org",
        # As strongSwan: case only folds when both values are PrintableStrings, and
        # cryptography wrote O as a UTF8String.
        "C=CH, O=ESPFAST, CN=gw.example.org",
        "keyid:#0011",
        "fqdn:198.18.0.1",
    ):
        with pytest.raises(AuthenticationError, match="does not match certificate"):
            check_identity(ee, Identity.parse(bad))


def test_check_identity_cn_is_not_a_san() -> None:
    # As strongSwan: an FQDN identity must be in subjectAltName, a CN alone does not count.
    ee = make_cert(name("gw.example.org"), KEYS["ee"].public_key(), CA.subject, KEYS["ca"])
    with pytest.raises(AuthenticationError):
        check_identity(ee, Identity.parse("gw.example.org"))
    check_identity(ee, Identity.parse("CN=gw.example.org"))


def test_check_identity_directory_name_san() -> None:
    alt = x509.SubjectAlternativeName([x509.DirectoryName(name("alias"))])
    ee = make_cert(
        name("gw"), KEYS["ee"].public_key(), CA.subject, KEYS["ca"], extensions=((alt, False),)
    )
    check_identity(ee, Identity.parse("CN=alias"))
    check_identity(ee, Identity.parse("CN=gw"))


# --- CERT and CERTREQ payload bodies -----------------------------------------------------------


def test_cert_payload_round_trip() -> None:
    ee = server()
    assert decode_certificate(encode_certificate(ee)) == ee


@pytest.mark.parametrize("data", [b"", b"\x30", b"garbage", cert_pem(CA)])
def test_decode_certificate_rejects(data: bytes) -> None:
    with pytest.raises(AuthenticationError, match="bad certificate from the peer"):
        decode_certificate(data)


def test_decode_certificate_unsupported_key() -> None:
    ee = make_cert(name("gw"), weak_rsa().public_key(), CA.subject, KEYS["ca"])
    with pytest.raises(AuthenticationError, match="RSA key of 1024 bits"):
        decode_certificate(encode_certificate(ee))


def test_certreq_data() -> None:
    # RFC 7296 §3.7: SHA-1 of each CA's SubjectPublicKeyInfo, concatenated.
    spki = CA.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    other = build_ca(KEYS["ca2"], "CN=Other", now=NOW)
    data = TrustStore([CA, other]).certreq_data()
    assert len(data) == 40
    assert data[:20] == hashlib.sha1(spki).digest()  # noqa: S324 - what RFC 7296 names
    assert data[20:] == key_hash(other)
    # An ID_KEY_ID naming that hash matches the certificate, as in strongSwan.
    check_identity(CA, Identity(IdType.KEY_ID, key_hash(CA)))


def test_chain_search_is_bounded() -> None:
    # Intermediates that all name each other as issuer: many candidate paths, none valid.
    loop = [
        make_cert(
            name("Loop"),
            KEYS["inter"].public_key(),
            name("Loop"),
            KEYS["ca2"],
            serial=i + 1,
            extensions=ca_exts(),
        )
        for i in range(16)
    ]
    ee = make_cert(name("gw"), KEYS["ee"].public_key(), name("Loop"), KEYS["inter"])
    with pytest.raises(AuthenticationError, match='no trusted CA for issuer "CN=Loop"'):
        STORE.verify_chain(ee, loop, NOW)
    with pytest.raises(AuthenticationError, match="at most 16 are accepted"):
        STORE.verify_chain(ee, [*loop, CA], NOW)


def test_missing_files_are_value_errors(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ValueError, match=r"cannot read .*nope\.pem: No such file"):
        TrustStore.load([missing])
    (tmp_path / "ca.crt").write_bytes(cert_pem(CA))
    with pytest.raises(ValueError, match="cannot read"):
        TrustStore.load([tmp_path / "ca.crt"], [missing])
    with pytest.raises(ValueError, match="cannot read"):
        LocalCredential.load(tmp_path / "ca.crt", missing)
