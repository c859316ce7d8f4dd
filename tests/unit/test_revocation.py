"""Revocation from configured CRLs (espfast.control.revocation, TrustStore): strongSwan's
states (GOOD, REVOKED, STALE, FAILED, SKIPPED) and policies (strict, ifuri, relaxed), the
CRL's signature checked against its CA, stale and damaged CRLs, the ``crls`` /
``revocation`` config keys, and the shell reading changed CRL files again."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtensionOID

from espfast.ca import build_ca, build_crl, cert_pem, generate_key, issue_cert, key_pem
from espfast.config import ConfigError, load_up
from espfast.control import revocation
from espfast.control.certs import AuthenticationError, PrivateKey, TrustStore
from espfast.control.identity import Identity
from espfast.control.revocation import Status
from espfast.crls import CrlFiles
from espfast.static import write_private
from espfast.up import pair_configs

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
DAY = dt.timedelta(days=1)
CA_KEY, OTHER_KEY, EE_KEY = generate_key(), generate_key(), generate_key()
CA = build_ca(CA_KEY, "O=espfast, CN=Revocation CA", now=NOW - 30 * DAY)
OTHER = build_ca(OTHER_KEY, "O=espfast, CN=Revocation CA", now=NOW - 30 * DAY)  # same name


def peer_cert(*, uri: bool = False) -> x509.Certificate:
    cert = issue_cert(CA, CA_KEY, EE_KEY.public_key(), Identity.parse("peer.example.test"),
                      now=NOW - DAY)  # fmt: skip
    if not uri:
        return cert
    point = x509.DistributionPoint(
        [x509.UniformResourceIdentifier("http://crl.example.test/ca.crl")], None, None, None
    )
    builder = x509.CertificateBuilder(
        issuer_name=cert.issuer, subject_name=cert.subject, public_key=cert.public_key(),
        serial_number=cert.serial_number, not_valid_before=cert.not_valid_before_utc,
        not_valid_after=cert.not_valid_after_utc, extensions=list(cert.extensions),
    ).add_extension(x509.CRLDistributionPoints([point]), critical=False)  # fmt: skip
    return builder.sign(CA_KEY, hashes.SHA256())  # type: ignore[arg-type]


Extensions = tuple[tuple[x509.ExtensionType, bool], ...]


Crl = x509.CertificateRevocationList


def crl(serials: list[int], *, key: PrivateKey = CA_KEY, this: dt.datetime = NOW - DAY,
        until: dt.datetime = NOW + DAY, extra: Extensions = ()) -> Crl:  # fmt: skip
    builder = x509.CertificateRevocationListBuilder().issuer_name(CA.subject)
    builder = builder.last_update(this).next_update(until)
    for ext, critical in extra:
        builder = builder.add_extension(ext, critical)
    for serial in serials:
        entry = x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(this)
        entry = entry.add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), False)
        builder = builder.add_revoked_certificate(entry.build())
    return builder.sign(key, hashes.SHA256())  # type: ignore[arg-type]


def pem(c: x509.CertificateRevocationList) -> bytes:
    return c.public_bytes(serialization.Encoding.PEM)


EE = peer_cert()
EE_URI = peer_cert(uri=True)
STALE = crl([], this=NOW - 10 * DAY, until=NOW - DAY)

# (the CRLs held, the certificate) -> the state strongSwan's revocation plugin reports
STATES = {
    "listed": ([crl([EE.serial_number])], EE, Status.REVOKED),
    "listed in a stale CRL": ([crl([EE.serial_number], until=NOW - DAY)], EE, Status.REVOKED),
    "current CRL": ([crl([123])], EE, Status.GOOD),
    "current and stale": ([STALE, crl([])], EE, Status.GOOD),
    "stale CRL only": ([STALE], EE, Status.STALE),
    "not yet valid": ([crl([], this=NOW + DAY, until=NOW + 2 * DAY)], EE, Status.STALE),
    "no CRL": ([], EE, Status.SKIPPED),
    "no CRL, a URI": ([], EE_URI, Status.FAILED),
    "forged CRL only": ([crl([EE.serial_number], key=OTHER_KEY)], EE, Status.SKIPPED),
}


@pytest.mark.parametrize("case", STATES)
def test_status(case: str) -> None:
    crls, cert, expected = STATES[case]
    assert revocation.status(cert, CA, crls, NOW)[0] is expected


# strongSwan's auth_cfg constraint: strict needs GOOD, ifuri GOOD or SKIPPED, relaxed
# anything but REVOKED.
POLICY = {
    "strict": {Status.GOOD},
    "ifuri": {Status.GOOD, Status.SKIPPED},
    "relaxed": {Status.GOOD, Status.SKIPPED, Status.FAILED, Status.STALE},
}


@pytest.mark.parametrize("policy", revocation.POLICIES)
def test_policies(policy: str) -> None:
    for case, (crls, cert, state) in STATES.items():
        store = TrustStore([CA], crls, revocation=policy)
        if state in POLICY[policy]:
            assert store.verify_chain(cert, [], NOW) == (cert, CA), case
        else:
            with pytest.raises(AuthenticationError, match=r"is revoked|revocation status"):
                store.verify_chain(cert, [], NOW)


def test_revoked_message_names_the_certificate_the_ca_date_and_reason() -> None:
    store = TrustStore([CA], [crl([EE.serial_number])])
    with pytest.raises(AuthenticationError) as exc:
        store.verify_chain(EE, [], NOW)
    assert str(exc.value) == (
        f'certificate "CN=peer.example.test" (serial {EE.serial_number:x}) is revoked (CRL of '
        f"CN=Revocation CA,O=espfast: revoked on {NOW - DAY:%Y-%m-%d}, reason key_compromise)"
    )
    with pytest.raises(AuthenticationError, match=r"revocation status stale \(the CRL is stale "
                       r"since .*\), revocation = strict needs a current CRL"):  # fmt: skip
        TrustStore([CA], [STALE], revocation="strict").verify_chain(EE, [], NOW)


def test_relaxed_logs_an_accepted_stale_status(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, "espfast.control"):
        TrustStore([CA], [STALE]).verify_chain(EE, [], NOW)
    assert "revocation status unknown (the CRL is stale since" in caplog.text


def test_policy_applies_to_the_end_entity_an_intermediate_only_if_revoked() -> None:
    inter_key = generate_key()
    inter = issue_cert(CA, CA_KEY, inter_key.public_key(), Identity.parse("CN=Inter"),
                       now=NOW - DAY)  # fmt: skip
    inter = x509.CertificateBuilder(
        issuer_name=CA.subject, subject_name=inter.subject, public_key=inter.public_key(),
        serial_number=inter.serial_number, not_valid_before=NOW - DAY, not_valid_after=NOW + DAY,
    ).add_extension(x509.BasicConstraints(ca=True, path_length=None), True).sign(
        CA_KEY, hashes.SHA256())  # type: ignore[arg-type]  # fmt: skip
    ee = issue_cert(inter, inter_key, EE_KEY.public_key(), Identity.parse("ee.example.test"),
                    now=NOW - DAY, days=1)  # fmt: skip
    inter_crl = x509.CertificateRevocationListBuilder().issuer_name(inter.subject)
    inter_crl = inter_crl.last_update(NOW - DAY).next_update(NOW + DAY)
    ee_good = inter_crl.sign(inter_key, hashes.SHA256())  # type: ignore[arg-type]
    # strict: the end entity's CA has a current CRL; the intermediate's (CA's) none.
    store = TrustStore([CA], [ee_good], revocation="strict")
    assert store.verify_chain(ee, [inter], NOW) == (ee, inter, CA)
    store.set_crls([ee_good, crl([inter.serial_number])])
    with pytest.raises(AuthenticationError, match=r'"CN=Inter".*is revoked'):
        store.verify_chain(ee, [inter], NOW)


def test_load_crl_refuses_what_it_cannot_use(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"x\.crl: not a usable CRL"):
        revocation.load_crl(b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n", "x.crl")
    with pytest.raises(ValueError, match=r"x\.crl: not a usable CRL"):
        revocation.load_crl(os.urandom(200), "x.crl")
    delta = crl([], extra=((x509.DeltaCRLIndicator(1), True),))
    with pytest.raises(ValueError, match=f"unsupported critical extension "
                       f"{ExtensionOID.DELTA_CRL_INDICATOR.dotted_string}"):  # fmt: skip
        revocation.load_crl(pem(delta), "delta.crl")
    good = crl([EE.serial_number])
    der = good.public_bytes(serialization.Encoding.DER)
    assert revocation.load_crl(der, "der") == good
    # Every byte string either loads or is a ValueError naming the file.
    for i in range(0, len(der), 3):
        damaged = der[:i] + bytes([der[i] ^ 0x55]) + der[i + 1 :]
        try:
            revocation.load_crl(damaged, "d.crl")
        except ValueError as exc:
            assert str(exc).startswith("d.crl: ")


def test_a_crl_of_our_ca_signed_by_another_key_is_a_load_error() -> None:
    store = TrustStore([CA])
    with pytest.raises(ValueError, match="is not signed by that CA's key"):
        store.load_crl(pem(crl([], key=OTHER_KEY)), "forged.crl")
    # Of a CA we do not hold (an intermediate the peers send): taken, checked when used.
    third = build_ca(OTHER_KEY, "CN=Third CA", now=NOW - DAY)
    assert TrustStore([third]).load_crl(pem(crl([])), "x").issuer == CA.subject


# --- the shell: config keys and CRL files read again -------------------------------------


def pki(tmp_path: Path) -> Path:
    (tmp_path / "ca.crt").write_bytes(cert_pem(CA))
    (tmp_path / "a.crt").write_bytes(cert_pem(EE))
    write_private(tmp_path / "a.key", key_pem(EE_KEY).decode())
    (tmp_path / "ca.crl").write_bytes(pem(crl([])))
    return tmp_path


def up_conf(tmp_path: Path, extra: str) -> Path:
    text = pair_configs("a pre-shared key long enough for the test")[0]
    text = text.replace('psk = "a pre-shared key long enough for the test"', (
        f'auth = "pubkey"\ncert = "{tmp_path}/a.crt"\nkey = "{tmp_path}/a.key"\n'
        f'cacerts = ["{tmp_path}/ca.crt"]\n{extra}'
    ))  # fmt: skip
    text = text.replace('local_id = "198.18.0.1"', 'local_id = "peer.example.test"')
    return write_private(tmp_path / "a.toml", text)


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        ('crls = ["none.crl"]', ["connection[0].crls", "none.crl"]),
        ('crls = ["a.crt"]', ["connection[0].crls", "a.crt: not a usable CRL"]),
        ('crls = ["forged.crl"]', ["connection[0].crls", "not signed by that CA's key"]),
        ('revocation = "paranoid"', ["connection[0].revocation", "'paranoid' is not one of"]),
        ('revocation = "strict"', ["connection[0].revocation", "without crls"]),
    ],
)
def test_config_errors(tmp_path: Path, extra: str, words: list[str]) -> None:
    pki(tmp_path)
    (tmp_path / "forged.crl").write_bytes(pem(crl([], key=OTHER_KEY)))
    extra = extra.replace('["', f'["{tmp_path}/')
    with pytest.raises(ConfigError) as exc:
        load_up(up_conf(tmp_path, extra))
    for word in words:
        assert word in str(exc.value), str(exc.value)


def test_config_crls_and_revocation(tmp_path: Path) -> None:
    pki(tmp_path)
    conf = load_up(up_conf(tmp_path, f'crls = ["{tmp_path}/ca.crl"]\nrevocation = "ifuri"'))
    assert conf.connections[0].ike.auth.verifier is not None
    with pytest.raises(ConfigError, match=r"unknown key.*crls|crls.*unknown"):
        text = pair_configs("a pre-shared key long enough for the test")[0] + 'crls = ["x"]\n'
        load_up(write_private(tmp_path / "psk.toml", text))


def test_changed_files_are_read_again_and_a_bad_update_keeps_the_old_crl(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "ca.crl"
    path.write_bytes(pem(crl([])))
    store = TrustStore([CA], revocation="strict")
    files = CrlFiles([path], store)
    files.load()
    assert store.verify_chain(EE, [], NOW)
    files.poll()  # nothing changed: nothing read
    assert files.reloads == 0
    path.write_bytes(pem(crl([EE.serial_number, 5])))
    files.poll()
    assert files.reloads == 1
    with pytest.raises(AuthenticationError, match="is revoked"):
        store.verify_chain(EE, [], NOW)
    with caplog.at_level(logging.ERROR, "espfast.crls"):
        path.write_bytes(b"half a CRL")  # a damaged update: the revocation stays
        files.poll()
        files.poll()  # the same broken file: not logged again
        assert files.reload_errors == 1
        with pytest.raises(AuthenticationError, match="is revoked"):
            store.verify_chain(EE, [], NOW)
        path.unlink()
        files.poll()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages  # one line per change, none for the unchanged file
    assert messages[0].startswith(f"{path}: not a usable CRL (PEM or DER): ")
    assert messages[1] == f"cannot read {path}: No such file or directory; the CRL read before " \
        "stays in force"  # fmt: skip
    tmp = tmp_path / "new.crl"
    tmp.write_bytes(pem(crl([])))
    tmp.rename(path)  # an atomic replacement
    files.poll()
    assert store.verify_chain(EE, [], NOW)


def test_build_crl_of_espfast_pki_is_usable() -> None:
    made = build_crl(CA, CA_KEY, [EE.serial_number], now=NOW)
    loaded = TrustStore([CA]).load_crl(pem(made), "ca.crl")
    assert revocation.status(EE, CA, [loaded], NOW)[0] is Status.REVOKED
