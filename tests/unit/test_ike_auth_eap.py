"""IKE_AUTH with EAP-MSCHAPv2 (RFC 7296 §2.16) between an in-memory initiator (the
road warrior: EAP) and responder (the gateway: a certificate), as Windows clients do."""

from __future__ import annotations

import logging
import re
from dataclasses import replace

import pytest
from ikepair import Pair, events
from test_ike_auth_certs import NOW, cert_configs, pki

from espfast.control.auth import certificate_auth
from espfast.control.config import IkeConfig
from espfast.control.constants import ExchangeType, IdType
from espfast.control.eap import EapCode, EapPacket, EapPeer, EapType, nt_password_hash
from espfast.control.eap.mschapv2 import OpCode
from espfast.control.events import ChildSaUp, IkeSaDown, IkeSaUp

USERS = {"carol": nt_password_hash("carol-p4ss"), "dave": nt_password_hash("dave-p4ss")}


def eap_configs(user: str = "carol", password: str = "carol-p4ss",  # noqa: S107
                users: dict[str, bytes] = USERS) -> tuple[IkeConfig, IkeConfig]:  # fmt: skip
    ci, cr = cert_configs()
    trust, _, _ = pki("ecdsa")
    # The client has no certificate: it checks the gateway's and answers EAP.
    client = certificate_auth(None, trust, NOW.timestamp)
    ci = replace(ci, local_id=(IdType.IPV4_ADDR, bytes([198, 18, 0, 1])), auth=replace(
        client, eap_identity=user, eap_nt_hash=nt_password_hash(password)))  # fmt: skip
    cr = replace(cr, remote_id=None, auth=replace(cr.auth, eap_users=users.get))
    return ci, cr


def test_eap_mschapv2_handshake_and_msk_auth() -> None:
    p = Pair(*eap_configs())
    # IKE_SA_INIT { SA, KEi, Ni } -->   <-- { SA, KEr, Nr, CERTREQ }
    p.roundtrip()
    # IKE_AUTH { IDi, CERTREQ, IDr, SAi2, TSi, TSr } -->        (no AUTH: EAP)
    # <-- { IDr, CERT, AUTH, EAP(Request/Identity) }
    # IKE_AUTH { EAP(Response/Identity) } -->  <-- { EAP(Request/MSCHAPv2 Challenge) }
    # IKE_AUTH { EAP(Response/MSCHAPv2) } -->  <-- { EAP(Request/MSCHAPv2 Success) }
    # IKE_AUTH { EAP(Response/MSCHAPv2 Success) } -->  <-- { EAP(Success) }
    # IKE_AUTH { AUTH(MSK) } -->  <-- { AUTH(MSK), SAr2, TSi, TSr }
    p.establish(max_round_trips=8)
    assert p.round_trips == 6
    assert p.i is not None and p.i.is_established
    assert p.r is not None and p.r.is_established and p.r.pending_auth is None
    ev_i, ev_r = events(p.i), events(p.r)
    assert [type(e) for e in ev_i] == [IkeSaUp, ChildSaUp]
    assert [type(e) for e in ev_r] == [IkeSaUp, ChildSaUp]
    # The gateway knows the client by its EAP identity, not its IDi (an address).
    up = ev_r[0]
    assert isinstance(up, IkeSaUp) and up.remote_id == "carol"
    assert p.r.peer_id is not None and p.r.peer_id.data == b"carol"
    up_r, up_i = ev_r[1], ev_i[1]
    assert isinstance(up_r, ChildSaUp) and isinstance(up_i, ChildSaUp)
    assert up_r.spi_in == up_i.spi_out


@pytest.mark.parametrize("user, password", [("carol", "wrong"), ("mallory", "carol-p4ss")])
def test_bad_password_gets_authentication_failed(
    user: str, password: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """draft-kamath-pppext-eap-mschapv2 §2 (RFC 2759 §6): a wrong password, or an unknown
    user, gets an MS-CHAPv2 Failure request (E=691, no retry); the client's Failure
    response gets EAP-Failure with N(AUTHENTICATION_FAILED). One log line names the user;
    none holds the password."""
    seen: list[EapPacket] = []  # what the client's EAP peer received
    real = EapPeer.process
    monkeypatch.setattr(EapPeer, "process", lambda self, pkt: seen.append(pkt) or real(self, pkt))
    p = Pair(*eap_configs(user, password))
    p.roundtrip()
    with caplog.at_level(logging.DEBUG, logger="espfast.control"):
        for _ in range(4):
            p.roundtrip()
    assert p.i is not None and p.i.is_destroyed
    assert p.r is not None and p.r.is_destroyed
    down = [e for e in events(p.i) if isinstance(e, IkeSaDown)]
    assert down and "AUTHENTICATION_FAILED" in down[0].reason
    # <-- { EAP(Request/MSCHAPv2 Failure "E=691 R=0 C=... V=3 M=...") }
    failure = seen[-1]
    assert (failure.code, failure.type, failure.data[0]) == (EapCode.REQUEST, EapType.MSCHAPV2,
                                                             OpCode.FAILURE)  # fmt: skip
    assert re.fullmatch(rb"E=691 R=0 C=[0-9A-F]{32} V=3 M=.+", failure.data[4:]), failure
    # IKE_AUTH { EAP(Response/MSCHAPv2 Failure) } -->  <-- { N(AUTHENTICATION_FAILED), EAP }
    sent = [r.getMessage() for r in caplog.records if "sending IKE_AUTH" in r.getMessage()]
    assert sent[-1].startswith("gw-b") and sent[-1].endswith("{ N(AUTHENTICATION_FAILED) EAP }")
    assert "{ EAP }" in sent[-2]  # the client's Failure response
    named = [r.getMessage() for r in caplog.records if repr(user) in r.getMessage()]
    assert named == [f"gw-b[{p.r.ike_sa_id & 0xFFFF}]: EAP-MSCHAPv2 authentication of "
                     f"{user!r} failed"]  # fmt: skip
    assert not any(password in r.getMessage() for r in caplog.records)


def test_the_gateway_ends_with_eap_failure() -> None:
    """The EAP-Failure the gateway sends with AUTHENTICATION_FAILED, at the EAP layer:
    the Failure response gets EAP-Failure with the response's Identifier (RFC 3748 §4.2);
    so does anything else the client sends after the Failure request."""
    from espfast.control.eap import EapFailure, EapServer
    from espfast.control.rng import DeterministicRng

    for answer in (bytes([OpCode.FAILURE]), b"\x02\x00\x00\x05x"):
        server = EapServer(USERS.get, DeterministicRng("s"))
        peer = EapPeer("carol", nt_password_hash("wrong"), DeterministicRng("p"))
        out = peer.process(server.start())
        assert out is not None
        out = peer.process(server.process(out))  # Identity -> Challenge -> Response
        assert out is not None
        failure = server.process(out)
        assert server.failed and failure.data[0] == OpCode.FAILURE
        reply = peer.process(failure)
        assert reply is not None and reply.data == bytes([OpCode.FAILURE])
        assert peer.refused == 691
        reply = replace(reply, data=answer)
        with pytest.raises(EapFailure) as caught:
            server.process(reply)
        assert caught.value.logged and caught.value.eap_failure is not None
        assert caught.value.eap_failure.code == EapCode.FAILURE
        assert caught.value.eap_failure.identifier == reply.identifier
        with pytest.raises(EapFailure, match=r"refused our EAP-MSCHAPv2 password \(error 691\)"):
            peer.process(caught.value.eap_failure)


def test_unprintable_user_name_is_escaped(caplog: pytest.LogCaptureFixture) -> None:
    p = Pair(*eap_configs("eve\x1b[31m\nx", "pw"))
    p.roundtrip()
    with caplog.at_level(logging.INFO, logger="espfast.control"):
        for _ in range(4):
            p.roundtrip()
    lines = [r.getMessage() for r in caplog.records if "EAP-MSCHAPv2" in r.getMessage()]
    assert lines and all("\x1b" not in x and "\n" not in x for x in lines)
    assert "'eve\\x1b[31m\\nx'" in lines[0]


def test_gateway_without_eap_refuses_a_client_without_auth() -> None:
    ci, cr = eap_configs()
    cr = replace(cr, auth=replace(cr.auth, eap_users=None))
    p = Pair(ci, cr)
    p.roundtrip()
    p.roundtrip()
    assert p.i is not None and p.i.is_destroyed
    down = [e for e in events(p.i) if isinstance(e, IkeSaDown)]
    assert "AUTHENTICATION_FAILED" in down[0].reason


def test_forged_msk_auth_is_refused() -> None:
    from espfast.control.message import Message
    from espfast.control.payloads import AuthPayload

    p = Pair(*eap_configs())
    for _ in range(5):
        p.roundtrip()
    # The client's last request would carry AUTH(MSK); replace it with a wrong one.
    assert p.i is not None and p.r is not None
    p.i.datagrams_to_send(0.0)
    i = p.i
    bogus = Message(i.spi_i, i.spi_r, ExchangeType.IKE_AUTH, i.tm.my_mid, False, True,
                    (AuthPayload(2, bytes(48)),))  # fmt: skip
    for d in i.encode(bogus):
        p.r.receive_datagram(d, (i.local[0], i.local[1]), 0.0)
    assert p.r.is_destroyed and not p.r.is_established
    # <-- { N(AUTHENTICATION_FAILED) }
    for data, _ in p.r.datagrams_to_send(0.0):
        i.tm.my_mid = bogus.message_id  # (as if the client had sent the forged request)
        i.receive_datagram(data, p.r.local, 0.0)
    down = [e for e in events(i) if isinstance(e, IkeSaDown)]
    assert down and "AUTHENTICATION_FAILED" in down[0].reason
