"""Certificate exchange and connection choice in memory: ``send_cert`` (always | ifasked |
never) in both roles, classic signature methods forced on our side (``auth = rsa|ecdsa``),
fragmentation off or accept-only, and the responder's ``remote_addrs`` (a peer from
elsewhere gets NO_PROPOSAL_CHOSEN)."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest
from ikepair import A, Pair, configs, events
from test_ike_auth_certs import NOW, cert_configs, pki

from espfast.control.auth import certificate_auth
from espfast.control.constants import AuthMethod, PayloadType
from espfast.control.events import IkeSaDown
from espfast.control.message import Message
from espfast.control.payloads import AuthPayload, CertPayload


def spy(sa: object) -> list[Message]:
    sent: list[Message] = []
    encode = sa.encode  # type: ignore[attr-defined]

    def record(msg: Message) -> list[bytes]:
        sent.append(msg)
        return encode(msg)  # type: ignore[no-any-return]

    sa.encode = record  # type: ignore[attr-defined]
    return sent


def cert_payloads(msg: Message) -> int:
    return len(msg.all(CertPayload))


@pytest.mark.parametrize(("send_cert", "certreq", "sends"), [
    ("always", False, True), ("ifasked", True, True), ("ifasked", False, False),
    ("never", True, False),
])  # fmt: skip
def test_responder_send_cert(send_cert: str, certreq: bool, sends: bool) -> None:
    ci, cr = cert_configs("ecdsa")
    if not certreq:
        ci = replace(ci, auth=replace(ci.auth, certreq=()))
    cr = replace(cr, auth=replace(cr.auth, send_cert=send_cert))
    p = Pair(ci, cr)
    p.roundtrip()
    assert p.r is not None
    sent = spy(p.r)
    p.establish()
    (auth_response,) = sent
    assert (cert_payloads(auth_response) > 0) == sends
    # Without our certificate the initiator cannot verify us.
    assert p.i.is_established == sends
    if not sends:
        (down,) = [e for e in events(p.i) if isinstance(e, IkeSaDown)]
        assert "no certificate" in down.reason


@pytest.mark.parametrize(("send_cert", "certreq", "sends"), [
    ("ifasked", True, True), ("ifasked", False, False), ("never", True, False),
])  # fmt: skip
def test_initiator_send_cert(send_cert: str, certreq: bool, sends: bool) -> None:
    ci, cr = cert_configs("ecdsa")
    ci = replace(ci, auth=replace(ci.auth, send_cert=send_cert))
    if not certreq:  # the responder's IKE_SA_INIT response carries no CERTREQ
        cr = replace(cr, auth=replace(cr.auth, certreq=()))
    p = Pair(ci, cr)
    sent = spy(p.i)
    p.establish()
    auth_request = next(m for m in sent if m.get(AuthPayload) is not None)
    assert (cert_payloads(auth_request) > 0) == sends
    assert p.i.is_established == sends


@pytest.mark.parametrize(("key_type", "method"), [
    ("ecdsa", AuthMethod.ECDSA_SHA256_P256), ("rsa", AuthMethod.RSA_SIG),
])  # fmt: skip
def test_classic_forced_although_the_peer_announces_rfc7427(key_type: str, method: int) -> None:
    trust, cred_a, _ = pki(key_type)
    ci, cr = cert_configs(key_type)
    ci = replace(ci, auth=certificate_auth(cred_a, trust, NOW.timestamp, classic=True))
    p = Pair(ci, cr)
    sent = spy(p.i)
    p.establish()
    assert p.i.is_established
    auth = next(m for m in sent if m.get(AuthPayload) is not None).get(AuthPayload)
    assert auth is not None and auth.method == method


def test_responder_refuses_a_peer_outside_remote_addrs() -> None:
    ci, cr = configs()
    elsewhere = replace(cr, remote_addrs=(ipaddress.ip_network("198.18.7.0/24"),))
    p = Pair(ci, elsewhere)
    p.establish()
    assert p.r is None and p.i.is_destroyed
    (down,) = [e for e in events(p.i) if isinstance(e, IkeSaDown)]
    assert "NO_PROPOSAL_CHOSEN" in down.reason
    assert p.responder.counters.refused_address == 1
    allowed = replace(cr, remote_addrs=(ipaddress.ip_network(f"{A[0]}/32"),))
    p = Pair(ci, allowed)
    p.establish()
    assert p.i.is_established


def test_fragmentation_no_and_accept() -> None:
    """The RSA chain is over 1280 bytes: with fragmentation off at either end it crosses
    whole; with "accept" (fragment size 65000) at the initiator, the initiator sends it
    whole and the responder, told the initiator takes fragments, splits its own."""
    ci, cr = cert_configs("rsa")
    p = Pair(replace(ci, fragmentation=False), cr)
    p.roundtrip()
    req, resp = p.roundtrip()
    assert len(req) == len(resp) == 1 and len(req[0]) > 1280 and len(resp[0]) > 1280
    assert p.i.is_established
    p = Pair(replace(ci, fragment_size=65000), cr)
    p.roundtrip()
    req, resp = p.roundtrip()
    assert len(req) == 1 and len(req[0]) > 1280
    assert len(resp) > 1 and all(d[16] == PayloadType.SKF for d in resp)
    assert p.i.is_established
