from __future__ import annotations

import datetime as dt
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID

from espfast.cli import main
from espfast.control import der
from espfast.control.certs import (
    IKE_INTERMEDIATE,
    AuthenticationError,
    LocalCredential,
    TrustStore,
    check_identity,
    load_certificate_file,
    load_certificates,
)
from espfast.control.constants import HashAlgorithm
from espfast.control.identity import Identity
from espfast.control.signature import ALG_RSA_PSS, sign, verify

OCTETS = b"signed octets" * 10


def pki(*args: str | Path) -> int:
    return main(["pki", *map(str, args)])


def issue(ca_dir: Path, identity: str, out: Path, *extra: str) -> int:
    return pki("issue", "--ca", ca_dir, "--id", identity, "--out", out, *extra)


def openssl_verify(ca: Path, cert: Path, *options: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["openssl", "verify", *map(str, options), "-CAfile", str(ca), str(cert)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def signature_algorithm(cert: x509.Certificate) -> bytes:
    """The DER signatureAlgorithm of a certificate (second element of the Certificate)."""
    items = der.iter_tlvs(der.read_all(cert.public_bytes(serialization.Encoding.DER), der.SEQUENCE))
    return der.tlv(*items[1])


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@pytest.fixture(scope="module")
def ecdsa_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ca")
    assert pki("ca", "--out", out, "--type", "ecdsa", "--dn", "C=CH, O=espfast, CN=Test Root") == 0
    return out


def test_ca_files(ecdsa_ca: Path) -> None:
    assert stat.S_IMODE((ecdsa_ca / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((ecdsa_ca / "ca.crt").stat().st_mode) == 0o644
    ca = load_certificate_file(ecdsa_ca / "ca.crt")[0]
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca
    ku = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
    assert Identity.from_name(ca.subject) == Identity.parse("C=CH, O=espfast, CN=Test Root")
    TrustStore([ca])  # a valid trust anchor


def test_server_certificate(
    ecdsa_ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        issue(ecdsa_ca, "gw.example.org", tmp_path, "--san", "198.18.0.1", "--san", "2001:2::1")
        == 0
    )
    crt, key = tmp_path / "gw.example.org.crt", tmp_path / "gw.example.org.key"
    assert capsys.readouterr().out.split() == [str(crt), str(key)]
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    cert = load_certificate_file(crt)[0]
    ca = load_certificate_file(ecdsa_ca / "ca.crt")[0]

    # The extensions IKE clients demand.
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH, IKE_INTERMEDIATE]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["gw.example.org"]
    assert [str(a) for a in san.get_values_for_type(x509.IPAddress)] == ["198.18.0.1", "2001:2::1"]

    # Verifies through our TrustStore and, independently, through OpenSSL.
    assert TrustStore([ca]).verify_chain(cert, [], now()) == (cert, ca)
    result = openssl_verify(ecdsa_ca / "ca.crt", crt, "-purpose", "sslserver")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{crt}: OK" in result.stdout
    # Signed by another CA: both refuse it.
    other = tmp_path / "other"
    assert pki("ca", "--out", other, "--dn", "C=CH, O=espfast, CN=Test Root") == 0
    assert openssl_verify(other / "ca.crt", crt, "-purpose", "sslserver").returncode != 0
    with pytest.raises(AuthenticationError, match="bad signature"):
        TrustStore(load_certificate_file(other / "ca.crt")).verify_chain(cert, [], now())

    for good in ("gw.example.org", "198.18.0.1", "2001:2::1", "CN=gw.example.org"):
        check_identity(cert, Identity.parse(good))
    for bad in ("vpn.example.org", "198.18.0.2", "gw@example.org", "CN=vpn.example.org"):
        with pytest.raises(AuthenticationError):
            check_identity(cert, Identity.parse(bad))

    # The key authenticates: sign with the issued credential, verify with the certificate.
    cred = LocalCredential.load(crt, key)
    for peer in ([], [2]):
        method, data = sign(cred, OCTETS, peer)
        verify(method, data, OCTETS, cert)


def test_rsa_client_certificate(tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    assert pki("ca", "--out", ca_dir, "--type", "rsa", "--bits", "2048") == 0
    assert (
        issue(ca_dir, "carol@example.org", tmp_path, "--client", "--type", "rsa", "--bits", "2048")
        == 0
    )
    crt = tmp_path / "carol@example.org.crt"
    cert = load_certificate_file(crt)[0]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    result = openssl_verify(ca_dir / "ca.crt", crt, "-purpose", "sslclient")
    assert result.returncode == 0, result.stdout + result.stderr
    ca = load_certificate_file(ca_dir / "ca.crt")[0]
    assert TrustStore([ca]).verify_chain(cert, [], now()) == (cert, ca)
    check_identity(cert, Identity.parse("carol@example.org"))
    with pytest.raises(AuthenticationError):
        check_identity(cert, Identity.parse("dave@example.org"))
    cred = LocalCredential.load(crt, tmp_path / "carol@example.org.key")
    method, data = sign(cred, OCTETS, [])
    assert method == 1  # classic RSA for peers without RFC 7427
    verify(method, data, OCTETS, cert)


def test_dn_identity_and_ed25519(ecdsa_ca: Path, tmp_path: Path) -> None:
    assert issue(ecdsa_ca, "C=CH, O=espfast, CN=moon", tmp_path, "--type", "ed25519") == 0
    crt = tmp_path / "moon.crt"
    cert = load_certificate_file(crt)[0]
    check_identity(cert, Identity.parse("C=CH, O=espfast, CN=moon"))
    with pytest.raises(AuthenticationError):
        check_identity(cert, Identity.parse("C=CH, O=espfast, CN=sun"))
    assert LocalCredential.load(crt, tmp_path / "moon.key").identity == Identity.parse(
        "C=CH, O=espfast, CN=moon"
    )
    result = openssl_verify(ecdsa_ca / "ca.crt", crt, "-purpose", "sslserver")
    assert result.returncode == 0, result.stdout + result.stderr


def test_name_and_dn_options(ecdsa_ca: Path, tmp_path: Path) -> None:
    extra = ("--dn", "O=espfast, CN=gateway 9", "--name", "gw9", "--curve", "p384")
    assert issue(ecdsa_ca, "198.18.0.9", tmp_path, *extra) == 0
    cert = load_certificate_file(tmp_path / "gw9.crt")[0]
    assert Identity.from_name(cert.subject) == Identity.parse("O=espfast, CN=gateway 9")
    check_identity(cert, Identity.parse("198.18.0.9"))
    # Files are not overwritten without --force.
    assert issue(ecdsa_ca, "198.18.0.9", tmp_path, *extra) == 1
    assert issue(ecdsa_ca, "198.18.0.9", tmp_path, *extra, "--force") == 0
    assert load_certificate_file(tmp_path / "gw9.crt")[0] != cert


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--id", "keyid:#0102"], "cannot be a subjectAltName"),
        (["--id", "gw", "--san", "XX=bad"], "unknown attribute"),
        (["--id", "gw", "--dn", "CN=x, FOO=y"], "unknown attribute"),
        (["--id", "gw", "--type", "rsa", "--bits", "1024"], "at least 2048 bits"),
        (["--id", "gw", "--days", "0"], "at least one day"),
        (["--id", "gw", "--days", "40000"], "outlive its CA"),
        (["--id", ""], "empty identity"),
    ],
)
def test_issue_errors(
    ecdsa_ca: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    assert pki("issue", "--ca", ecdsa_ca, "--out", tmp_path, *args) == 1
    err = capsys.readouterr().err
    assert err.startswith("espfast pki issue: ") and message in err
    assert list(tmp_path.iterdir()) == []


def test_issue_without_ca(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert issue(tmp_path / "missing", "gw", tmp_path) == 1
    assert "cannot read" in capsys.readouterr().err
    (tmp_path / "ca.crt").write_text("not a certificate")
    assert issue(tmp_path, "gw", tmp_path) == 1
    assert "not an X.509 certificate" in capsys.readouterr().err


def test_ca_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pki("ca", "--out", tmp_path, "--dn", "no attributes here") == 1
    assert "espfast pki ca:" in capsys.readouterr().err
    assert pki("ca", "--out", tmp_path) == 0
    assert pki("ca", "--out", tmp_path) == 1
    assert "exists (use --force" in capsys.readouterr().err


# --- strongSwan's own pki tool (Debian strongswan-pki) as the independent judge ----------------


def sw_pki(*args: str | Path, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(
        ["pki", *map(str, args)], input=stdin, capture_output=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    return result.stdout


def test_strongswan_accepts_our_certificates(ecdsa_ca: Path, tmp_path: Path) -> None:
    assert issue(ecdsa_ca, "gw.example.org", tmp_path, "--san", "198.18.0.1") == 0
    assert issue(ecdsa_ca, "carol@example.org", tmp_path, "--client", "--type", "ed25519") == 0
    for crt in ("gw.example.org.crt", "carol@example.org.crt"):
        out = sw_pki("--verify", "--in", tmp_path / crt, "--cacert", ecdsa_ca / "ca.crt")
        assert b"certificate trusted, lifetimes valid" in out
    printed = sw_pki("--print", "--in", tmp_path / "gw.example.org.crt").decode()
    assert "altNames:  gw.example.org, 198.18.0.1" in printed
    assert "flags:     serverAuth ikeIntermediate" in printed
    # ... and strongSwan refuses one that another CA signed.
    other = tmp_path / "other"
    assert pki("ca", "--out", other, "--dn", "C=CH, O=espfast, CN=Test Root") == 0
    result = subprocess.run(
        ["pki", "--verify", "--in", tmp_path / "gw.example.org.crt", "--cacert", other / "ca.crt"],
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert result.returncode != 0


@pytest.mark.parametrize(
    ("key_type", "ca_args"),
    [
        ("ecdsa", ["--type", "ecdsa"]),
        ("rsa", ["--type", "rsa", "--rsa-padding", "pss"]),
    ],
)
def test_we_accept_strongswan_certificates(
    tmp_path: Path, key_type: str, ca_args: list[str]
) -> None:
    dn = "C=CH, O=strongSwan, CN=moon.strongswan.org"
    ca_key = sw_pki("--gen", "--type", key_type)
    (tmp_path / "ca.key").write_bytes(ca_key)
    ca_dn = "C=CH, O=strongSwan, CN=strongSwan Root CA"
    ca_crt = sw_pki("--self", "--ca", "--in", tmp_path / "ca.key", "--dn", ca_dn, *ca_args)
    (tmp_path / "ca.crt").write_bytes(ca_crt)
    key = sw_pki("--gen", "--type", key_type)
    pub = sw_pki("--pub", "--type", key_type, stdin=key)
    crt = sw_pki(
        "--issue", "--cacert", tmp_path / "ca.crt", "--cakey", tmp_path / "ca.key",
        "--dn", dn, "--san", "moon.strongswan.org", "--san", "198.18.0.1",
        "--flag", "serverAuth", "--flag", "ikeIntermediate", *ca_args[2:],
        stdin=pub,
    )  # fmt: skip
    ca = load_certificates(ca_crt)[0]
    cert = load_certificates(crt)[0]
    assert TrustStore([ca]).verify_chain(cert, [], now()) == (cert, ca)
    for good in ("moon.strongswan.org", "198.18.0.1", dn):
        check_identity(cert, Identity.parse(good))
    # Our DN strings encode exactly as strongSwan's: the subject's DER, byte for byte.
    assert cert.subject.public_bytes() == Identity.parse(dn).data
    assert ca.subject.public_bytes() == Identity.parse(ca_dn).data
    if "pss" in ca_args:
        # strongSwan's RSASSA-PSS AlgorithmIdentifier is the one we send in RFC 7427 AUTH.
        assert signature_algorithm(cert) == ALG_RSA_PSS[HashAlgorithm.SHA2_256]


# --- revocation ---------------------------------------------------------------------------------


def test_crl_revokes(ecdsa_ca: Path, tmp_path: Path) -> None:
    ca_dir = tmp_path / "ca"
    assert pki("ca", "--out", ca_dir) == 0
    for ident in ("gw1", "gw2", "gw3"):
        assert issue(ca_dir, ident, tmp_path) == 0
    crl_file = tmp_path / "ca.crl"
    assert pki("crl", "--ca", ca_dir, "--revoke", tmp_path / "gw1.crt", "--out", crl_file) == 0
    ca = load_certificate_file(ca_dir / "ca.crt")[0]
    gw1, gw2, gw3 = (load_certificate_file(tmp_path / f"gw{i}.crt")[0] for i in (1, 2, 3))
    store = TrustStore.load([ca_dir / "ca.crt"], [crl_file])
    with pytest.raises(AuthenticationError, match=r"is revoked \(CRL of "):
        store.verify_chain(gw1, [], now())
    assert store.verify_chain(gw2, [], now()) == (gw2, ca)
    # OpenSSL with CRL checking agrees.
    check = ("-crl_check", "-CRLfile", crl_file)
    revoked = openssl_verify(ca_dir / "ca.crt", tmp_path / "gw1.crt", *check)
    assert revoked.returncode != 0 and "revoked" in revoked.stdout + revoked.stderr
    fine = openssl_verify(ca_dir / "ca.crt", tmp_path / "gw2.crt", *check)
    assert fine.returncode == 0, fine.stdout + fine.stderr

    # A second run extends the list (by hex serial this time); gw1 stays revoked.
    assert pki("crl", "--ca", ca_dir, "--revoke", f"{gw3.serial_number:x}", "--out", crl_file) == 0
    store = TrustStore.load([ca_dir / "ca.crt"], [crl_file])
    for cert in (gw1, gw3):
        with pytest.raises(AuthenticationError, match="revoked"):
            store.verify_chain(cert, [], now())
    assert store.verify_chain(gw2, [], now()) == (gw2, ca)


def test_crl_errors(ecdsa_ca: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        pki("crl", "--ca", ecdsa_ca, "--revoke", "not-hex-nor-file", "--out", tmp_path / "x.crl")
        == 1
    )
    assert "neither a certificate file nor a hex serial" in capsys.readouterr().err
    other = tmp_path / "other"
    assert pki("ca", "--out", other, "--dn", "CN=Other CA") == 0
    assert issue(other, "gw", tmp_path) == 0
    assert (
        pki("crl", "--ca", ecdsa_ca, "--revoke", tmp_path / "gw.crt", "--out", tmp_path / "x.crl")
        == 1
    )
    assert "was not issued by this CA" in capsys.readouterr().err
    # Extending a CRL that another CA signed is refused.
    assert pki("crl", "--ca", other, "--revoke", "01", "--out", tmp_path / "other.crl") == 0
    assert pki("crl", "--ca", ecdsa_ca, "--revoke", "02", "--out", tmp_path / "other.crl") == 1
    assert "not issued by this CA" in capsys.readouterr().err
    (tmp_path / "bad.crl").write_text("garbage")
    assert pki("crl", "--ca", ecdsa_ca, "--revoke", "02", "--out", tmp_path / "bad.crl") == 1
    assert "not a PEM CRL" in capsys.readouterr().err


def test_ca_key_must_match(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert pki("ca", "--out", tmp_path / "a") == 0
    assert pki("ca", "--out", tmp_path / "b") == 0
    (tmp_path / "a" / "ca.key").write_bytes((tmp_path / "b" / "ca.key").read_bytes())
    assert issue(tmp_path / "a", "gw", tmp_path) == 1
    assert "is not the key of" in capsys.readouterr().err


# --- PKCS#12 for client devices -------------------------------------------------------------------


def test_p12_bundle(
    ecdsa_ca: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("ESPFAST_P12_PASSWORD", raising=False)
    assert (
        issue(ecdsa_ca, "carol@example.org", tmp_path, "--client", "--p12", "--name", "carol") == 0
    )
    out = capsys.readouterr().out.splitlines()
    p12 = tmp_path / "carol.p12"
    assert out[1:] == [str(tmp_path / "carol.crt"), str(tmp_path / "carol.key"), str(p12)]
    password = out[0].removeprefix(f"password of {p12}: ")
    assert len(password) >= 16 and password != out[0]
    assert stat.S_IMODE(p12.stat().st_mode) == 0o600
    key, cert, extra = pkcs12.load_key_and_certificates(p12.read_bytes(), password.encode())
    assert cert == load_certificate_file(tmp_path / "carol.crt")[0]
    assert key is not None and key.public_key() == cert.public_key()
    assert extra == load_certificate_file(ecdsa_ca / "ca.crt")
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(p12.read_bytes(), b"wrong")
    # OpenSSL reads it too, and sees the legacy (3DES) encryption clients import.
    info = subprocess.run(
        ["openssl", "pkcs12", "-info", "-in", str(p12), "-passin", f"pass:{password}", "-noout"],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert info.returncode == 0, info.stderr
    assert "pbeWithSHA1And3-KeyTripleDES-CBC" in info.stdout + info.stderr


def test_p12_password_from_environment(
    ecdsa_ca: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ESPFAST_P12_PASSWORD", "correct horse battery staple")
    assert issue(ecdsa_ca, "dave@example.org", tmp_path, "--client", "--p12", "--name", "dave") == 0
    assert "password of" not in capsys.readouterr().out
    data = (tmp_path / "dave.p12").read_bytes()
    key, cert, _ = pkcs12.load_key_and_certificates(data, b"correct horse battery staple")
    assert cert is not None and key is not None
