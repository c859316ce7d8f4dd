"""The fuzz rule for what a peer hands to ``cryptography`` and ``ipaddress``: certificates
(CERT payloads) and traffic selectors (TSi/TSr). Any bytes either parse or raise
RemoteProtocolError, and what parses can go through every later step (chain walk,
identity check, revocation lookup, signature check; prefixes, narrowing, printing) raising
nothing but RemoteProtocolError: never a ValueError from a library deep inside."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ikepair import Pair, configs
from test_fuzz_exchanges import payloads, sa_payloads
from test_fuzz_exchanges import selectors as ts_selectors

from espfast.ca import build_ca, generate_key, issue_cert
from espfast.control import revocation
from espfast.control.auth import certificate_auth
from espfast.control.buffer import Buffer
from espfast.control.certs import TrustStore, decode_certificate, describe
from espfast.control.constants import (
    AuthMethod,
    CertEncoding,
    CfgAttr,
    CfgType,
    ExchangeType,
    IdType,
    PayloadType,
)
from espfast.control.errors import RemoteProtocolError
from espfast.control.identity import Identity
from espfast.control.message import Message
from espfast.control.payloads import (
    PULLERS,
    AuthPayload,
    CertPayload,
    CpPayload,
    IdiPayload,
    IdrPayload,
    TsiPayload,
    TsPayload,
    TsrPayload,
)

NOW = dt.datetime.now(dt.UTC)
CA_KEY, EE_KEY = generate_key(), generate_key()
CA = build_ca(CA_KEY, "O=espfast, CN=Fuzz CA", now=NOW - dt.timedelta(days=1))
EE = issue_cert(CA, CA_KEY, EE_KEY.public_key(), Identity.parse("peer.example.test"),
                now=NOW - dt.timedelta(hours=1))  # fmt: skip
DER = EE.public_bytes(serialization.Encoding.DER)
CRL = (
    x509.CertificateRevocationListBuilder().issuer_name(CA.subject)
    .last_update(NOW - dt.timedelta(hours=1)).next_update(NOW + dt.timedelta(days=1))
    .sign(CA_KEY, hashes.SHA256())  # type: ignore[arg-type]
)  # fmt: skip
TRUST = TrustStore([CA], [CRL], revocation="strict")
VERIFIER = certificate_auth(None, TRUST, lambda: NOW.timestamp()).verifier
assert VERIFIER is not None
PEER_ID = (int(IdType.FQDN), b"peer.example.test")
# DER tags worth planting: INTEGER, NULL, UTF8String, PrintableString, IA5String,
# UniversalString, BMPString, SEQUENCE, SET, context-specific ones.
TAGS = [0x02, 0x05, 0x0C, 0x13, 0x16, 0x1C, 0x1E, 0x30, 0x31, 0x80, 0x81, 0xA0, 0xA3]


def through_every_step(data: bytes) -> None:
    """What the responder does with the body of a CERT payload, up to AUTH."""
    try:
        cert = decode_certificate(data)
    except RemoteProtocolError:
        return
    describe(cert)
    for step in (
        lambda: TRUST.verify_chain(cert, [cert], NOW),
        lambda: revocation.status(cert, CA, [CRL], NOW),
        lambda: VERIFIER(AuthMethod.DIGITAL_SIGNATURE, b"\x00" * 40, b"octets", [data], PEER_ID),
    ):
        with contextlib.suppress(RemoteProtocolError):
            step()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=700))
def test_any_bytes_as_a_certificate(data: bytes) -> None:
    through_every_step(data)


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_mutated_certificates(data: st.DataObject) -> None:
    raw = bytearray(DER)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(4, len(raw) - 1))
        raw[i] = data.draw(st.sampled_from(TAGS) | st.integers(0, 255))
    through_every_step(bytes(raw))


def test_the_certificate_of_the_review_parses_or_is_refused() -> None:
    """The review's case: the issuer's first attribute value made an INTEGER."""
    name = CA.subject.public_bytes()
    at = DER.index(name)
    tag = next(i for i in range(at, at + len(name)) if DER[i] in (0x0C, 0x13))
    bad = DER[:tag] + b"\x02" + DER[tag + 1 :]
    with contextlib.suppress(RemoteProtocolError):
        decode_certificate(bad)
        raise AssertionError("a certificate whose issuer does not parse was accepted")


def _ts_body(selectors: list[tuple[int, int, int, int, bytes, bytes]]) -> bytes:
    body = bytes([len(selectors), 0, 0, 0])
    for ts_type, proto, start_port, end_port, start, end in selectors:
        length = 8 + len(start) + len(end)
        body += bytes([ts_type, proto]) + length.to_bytes(2, "big")
        body += start_port.to_bytes(2, "big") + end_port.to_bytes(2, "big") + start + end
    return body


def _check_ts(body: bytes) -> None:
    for kind in (PayloadType.TSI, PayloadType.TSR):
        try:
            payload = PULLERS[kind](Buffer(body))
        except RemoteProtocolError:
            continue
        assert isinstance(payload, TsPayload)
        for ts in payload.selectors:
            assert ts.start_addr <= ts.end_addr  # type: ignore[operator]
            assert ts.networks() and str(ts)
            assert ts.intersect(ts) in (ts, None)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80))
def test_any_bytes_as_traffic_selectors(body: bytes) -> None:
    _check_ts(body)


addresses = st.sampled_from([4, 16]).flatmap(
    lambda n: st.tuples(st.binary(min_size=n, max_size=n), st.binary(min_size=n, max_size=n))
)
selectors = st.builds(
    lambda ts_type, proto, ports, addrs: (ts_type, proto, *ports, *addrs),
    st.sampled_from([7, 8, 9]), st.integers(0, 255),
    st.tuples(st.integers(0, 65535), st.integers(0, 65535)), addresses,
)  # fmt: skip


def _reversed(ts_type: int, _proto: int, sp: int, ep: int, start: bytes, end: bytes) -> bool:
    """A selector of a known type, with the right address length, whose range is reversed."""
    known = ts_type in (7, 8) and (len(start) == 4) == (ts_type == 7)
    return known and (start > end or (sp > ep and (sp, ep) != (65535, 0)))


@settings(max_examples=400, deadline=None)
@given(st.lists(selectors, min_size=1, max_size=4))
def test_well_formed_selectors_with_any_ranges(items: list[tuple[int, ...]]) -> None:
    """Right lengths, any order: reversed ranges are refused, the others work."""
    body = _ts_body(items)  # type: ignore[arg-type]
    _check_ts(body)
    if any(_reversed(*item) for item in items):
        try:
            PULLERS[PayloadType.TSI](Buffer(body))
        except RemoteProtocolError:
            return
        raise AssertionError("a reversed range was accepted")


# --- IKE_AUTH: the first encrypted request, where the peer is not authenticated yet ------

ids = st.builds(
    lambda cls, t, data: cls(t, data),
    st.sampled_from([IdiPayload, IdrPayload]), st.sampled_from([*list(IdType), 0, 200]),
    st.binary(min_size=1, max_size=24) | st.sampled_from([
        b"evil\n\x1b[2J", CA.subject.public_bytes(), b"\x30\x03\x31\x01\x00", bytes(4)]),
)  # fmt: skip
certs = st.builds(
    CertPayload, st.sampled_from([CertEncoding.X509_SIGNATURE, 12]),
    st.binary(max_size=64) | st.just(DER) | st.builds(
        lambda i, v: DER[:i] + bytes([v]) + DER[i + 1 :],
        st.integers(4, len(DER) - 1), st.sampled_from(TAGS)),
)  # fmt: skip
cps = st.builds(
    CpPayload, st.sampled_from([*list(CfgType), 9]),
    st.lists(st.tuples(st.sampled_from([*list(CfgAttr), 77]), st.binary(max_size=20)),
             max_size=3).map(tuple),
)  # fmt: skip
auth_payloads = st.one_of(ids, certs, cps, payloads)
# The shape of a real request (IDi, CERT, AUTH, SA, TSi, TSr), its parts fuzzed, so that
# most examples get past the payload rules to the identity and certificate checks.
skeleton = st.builds(
    lambda idi, cert, auth, sa, tsi, tsr, extra: [idi, *cert, auth, sa, tsi, tsr, *extra],
    ids.map(lambda p: IdiPayload(p.id_type, p.data)), st.lists(certs, max_size=2),
    st.builds(AuthPayload, st.sampled_from([*list(AuthMethod), 99]),
              st.binary(min_size=1, max_size=80)),
    sa_payloads, st.builds(TsiPayload, st.lists(ts_selectors, min_size=1, max_size=2).map(tuple)),
    st.builds(TsrPayload, st.lists(ts_selectors, min_size=1, max_size=2).map(tuple)),
    st.lists(auth_payloads, max_size=2),
)  # fmt: skip


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(auth_payloads, max_size=8) | skeleton, st.booleans())
def test_ike_auth_nonsense_is_answered(body: list[object], pubkey: bool) -> None:
    """Whatever an unauthenticated peer puts in IKE_AUTH, the responder answers (or drops)
    and raises nothing; no input gets past our checks to the last-resort net."""
    ci, cr = configs()
    if pubkey:
        # The peer is checked with certificates (we answer with the PSK: no key to sign).
        auth = certificate_auth(None, TRUST, lambda: NOW.timestamp())
        cr = dataclasses.replace(cr, auth=dataclasses.replace(auth, psk=b"s3cret-psk"))
    p = Pair(ci, cr)
    p.roundtrip()  # IKE_SA_INIT
    assert p.r is not None and p.i is not None
    msg = Message(p.i.spi_i, p.i.spi_r, ExchangeType.IKE_AUTH, 1, False, True,
                  tuple(body))  # type: ignore[arg-type]  # fmt: skip
    for data in p.i.encode(msg):
        p.r.receive_datagram(data, ("198.18.0.1", 500), 1.0)
    p.r.datagrams_to_send(1.0)
    assert p.r.tm.counters.unexpected_errors == 0
