"""IKE_AUTH with certificates and signatures (RFC 7296 §2.15, RFC 7427) through the
ikeauth sign/verify API, and IKE fragmentation (RFC 7383) of the certificate chain."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from functools import cache

import pytest
from ikepair import Pair, configs, events

from espfast.ca import build_ca, generate_key, issue_cert
from espfast.control.auth import certificate_auth
from espfast.control.certs import LocalCredential, TrustStore
from espfast.control.config import IkeConfig
from espfast.control.constants import AuthMethod, PayloadType
from espfast.control.events import ChildSaUp, IkeSaDown, IkeSaUp
from espfast.control.identity import Identity

NOW = dt.datetime(2026, 11, 27, 3, 0, tzinfo=dt.UTC)


@cache
def pki(key_type: str) -> tuple[TrustStore, LocalCredential, LocalCredential]:
    ca_key = generate_key("ecdsa")
    ca = build_ca(ca_key, now=NOW)

    def cred(name: str) -> LocalCredential:
        key = generate_key(key_type, bits=3072)
        cert = issue_cert(ca, ca_key, key.public_key(), Identity.parse(name), now=NOW)
        return LocalCredential(cert, key, (ca,) if key_type == "rsa" else ())

    return TrustStore([ca]), cred("a.example.org"), cred("b.example.org")


def cert_configs(key_type: str = "ecdsa", *, when: dt.datetime = NOW,
                 trust_r: TrustStore | None = None) -> tuple[IkeConfig, IkeConfig]:  # fmt: skip
    trust, cred_a, cred_b = pki(key_type)
    ci, cr = configs()
    clock = when.timestamp
    ci = replace(ci, auth=certificate_auth(cred_a, trust, clock))
    cr = replace(cr, auth=certificate_auth(cred_b, trust_r or trust, clock))
    return ci, cr


@pytest.mark.parametrize("key_type", ["ecdsa", "rsa", "ed25519"])
def test_certificate_handshake(key_type: str) -> None:
    p = Pair(*cert_configs(key_type))
    # IKE_SA_INIT { SA, KEi, Ni, N(SHA) } -->   <-- { SA, KEr, Nr, CERTREQ, N(SHA) }
    p.roundtrip()
    # IKE_AUTH { IDi, CERT, CERTREQ, IDr, AUTH(14), SAi2, TSi, TSr } -->
    # <-- { IDr, CERT, AUTH(14), SAr2, TSi, TSr }
    p.establish()
    assert p.round_trips == 2 and p.i.is_established
    assert [type(e) for e in events(p.i)] == [IkeSaUp, ChildSaUp]
    assert [type(e) for e in events(p.r)] == [IkeSaUp, ChildSaUp]


def test_rsa_chain_is_fragmented_to_fit_1280_bytes() -> None:
    p = Pair(*cert_configs("rsa"))
    p.roundtrip()
    req, resp = p.roundtrip()
    # IKE_AUTH { SKF(1/n) }, ... --> each fragment fits a 1280-byte path MTU with headers.
    assert len(req) > 1 and len(resp) > 1
    assert all(d[16] == PayloadType.SKF and len(d) <= 1280 - 52 for d in req + resp)
    assert p.i.is_established and p.r is not None and p.r.is_established


@pytest.mark.parametrize(
    ("key_type", "method"), [("ecdsa", AuthMethod.ECDSA_SHA256_P256), ("rsa", AuthMethod.RSA_SIG)]
)
def test_classic_signature_methods_without_rfc7427(key_type: str, method: int) -> None:
    from espfast.control.payloads import AuthPayload

    ci, cr = cert_configs(key_type)
    # A peer that announces no SIGNATURE_HASH_ALGORITHMS (as Apple and Windows clients)
    # gets ECDSA method 9 (RFC 4754) or RSA method 1 from us.
    ci = replace(ci, auth=replace(ci.auth, hash_algorithms=()))
    p = Pair(ci, cr)
    p.roundtrip()
    assert p.r is not None
    sent = []
    encode = p.r.encode

    def spy(msg):  # type: ignore[no-untyped-def]
        sent.append(msg)
        return encode(msg)

    p.r.encode = spy  # type: ignore[method-assign]
    p.establish()
    assert p.i.is_established
    auth = sent[0].get(AuthPayload)
    assert auth is not None and auth.method == method


def test_revoked_by_configuration_is_refused() -> None:
    trust, cred_a, _ = pki("ecdsa")
    revoked = TrustStore(trust.cas, revoked_serials={cred_a.cert.serial_number})
    p = Pair(*cert_configs("ecdsa", trust_r=revoked))
    p.establish()
    assert p.r is not None and p.r.is_destroyed and p.i.is_destroyed
    (down,) = [e for e in events(p.r) if isinstance(e, IkeSaDown)]
    assert "revoked" in down.reason


def test_untrusted_certificate_is_refused() -> None:
    other_ca_key = generate_key("ecdsa")
    other = TrustStore([build_ca(other_ca_key, "CN=Other CA", now=NOW)])
    p = Pair(*cert_configs("ecdsa", trust_r=other))
    p.establish()
    assert p.i.is_destroyed and p.r is not None and p.r.is_destroyed
    (down,) = [e for e in events(p.r) if isinstance(e, IkeSaDown)]
    assert "no trusted CA" in down.reason
    (down,) = [e for e in events(p.i) if isinstance(e, IkeSaDown)]
    assert "AUTHENTICATION_FAILED" in down.reason


def test_expired_certificate_is_refused() -> None:
    p = Pair(*cert_configs("ecdsa", when=NOW + dt.timedelta(days=800)))
    p.establish()
    assert p.r is not None and p.r.is_destroyed
    (down,) = [e for e in events(p.r) if isinstance(e, IkeSaDown)]
    assert "authentication failed" in down.reason


def test_identity_must_match_the_certificate() -> None:
    from espfast.control.constants import IdType

    ci, cr = cert_configs("ecdsa")
    ci = replace(ci, local_id=(IdType.FQDN, b"c.example.org"))  # not in a's certificate
    cr = replace(cr, remote_id=None)
    p = Pair(ci, cr)
    p.establish()
    assert p.r is not None and p.r.is_destroyed
    (down,) = [e for e in events(p.r) if isinstance(e, IkeSaDown)]
    assert "does not match certificate" in down.reason


def test_psk_peer_against_certificate_config_is_refused() -> None:
    ci, _ = configs()
    _, cr = cert_configs("ecdsa")
    p = Pair(ci, cr)
    p.establish()
    assert p.i.is_destroyed
    (down,) = [e for e in events(p.r) if isinstance(e, IkeSaDown)]
    assert "no certificate" in down.reason or "method" in down.reason
