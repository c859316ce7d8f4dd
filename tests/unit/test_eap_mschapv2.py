"""EAP-MSCHAPv2 against the published vectors, and the EAP codec and sessions alone."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from espfast.control.eap import (
    EapCode,
    EapFailure,
    EapPacket,
    EapPeer,
    EapServer,
    EapType,
    decode_eap,
    encode_eap,
    nt_password_hash,
)
from espfast.control.eap import mschapv2 as m
from espfast.control.eap.md4 import md4
from espfast.control.errors import RemoteProtocolError
from espfast.control.rng import DeterministicRng

# RFC 2759 §9.2 (examples of MS-CHAPv2 intermediate values).
USER = b"User"
PASSWORD = "clientPass"
AUTH_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
CHALLENGE = bytes.fromhex("D02E4386BCE91226")
PASSWORD_HASH = bytes.fromhex("44EBBA8D5312B8D611474411F56989AE")
NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
PASSWORD_HASH_HASH = bytes.fromhex("41C00C584BD2D91C4017A2A12FA59F3F")
AUTH_RESPONSE = b"S=407A5589115FD0D6209F510FE9C04566932CDA56"
# RFC 3079 §3.5.3 (the same exchange, 128-bit keys; the server's send key).
MASTER_KEY = bytes.fromhex("FDECE3717A8C838CB388E527AE3CDD31")
SEND_START_KEY = bytes.fromhex("8B7CDC149B993A1BA118CB153F56DCCB")


def test_md4_rfc1320_vectors() -> None:
    # RFC 1320 §A.5 test suite.
    assert md4(b"").hex() == "31d6cfe0d16ae931b73c59d7e0c089c0"
    assert md4(b"abc").hex() == "a448017aaf21d8525fc10ae87aa6729d"
    assert md4(b"message digest").hex() == "d9130a8164549fe818874806e1c7014b"
    assert md4(b"1234567890" * 8).hex() == "e33b4ddc9c38f2199c3e7b164fcc0536"


def test_rfc2759_vectors() -> None:
    assert nt_password_hash(PASSWORD) == PASSWORD_HASH
    assert md4(PASSWORD_HASH) == PASSWORD_HASH_HASH
    assert m.challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, USER) == CHALLENGE
    assert m.challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, b"DOMAIN\\User") == CHALLENGE
    assert m.challenge_response(CHALLENGE, PASSWORD_HASH) == NT_RESPONSE
    assert m.generate_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, USER,
                                  PASSWORD_HASH) == NT_RESPONSE  # fmt: skip
    assert m.authenticator_response(PASSWORD_HASH, NT_RESPONSE, PEER_CHALLENGE,
                                    AUTH_CHALLENGE, USER) == AUTH_RESPONSE  # fmt: skip


def test_rfc3079_master_keys() -> None:
    master = m.master_key(PASSWORD_HASH, NT_RESPONSE)
    assert master == MASTER_KEY
    assert m.asymmetric_start_key(master, send=True, server=True) == SEND_START_KEY
    # The server's send key is the client's receive key, and the other way round.
    assert m.asymmetric_start_key(master, send=False, server=False) == SEND_START_KEY
    client_send = m.asymmetric_start_key(master, send=True, server=False)
    assert client_send == m.asymmetric_start_key(master, send=False, server=True)
    assert client_send != SEND_START_KEY
    # MSK = MasterReceiveKey | MasterSendKey (the server's), zero-padded to 64 octets.
    key = m.msk(PASSWORD_HASH, NT_RESPONSE)
    assert key == client_send + SEND_START_KEY + bytes(32)


def test_eap_codec_roundtrip_and_errors() -> None:
    p = EapPacket(EapCode.REQUEST, 7, EapType.IDENTITY, b"")
    assert decode_eap(encode_eap(p)) == p
    s = EapPacket(EapCode.SUCCESS, 9)
    assert encode_eap(s) == b"\x03\x09\x00\x04" and decode_eap(b"\x03\x09\x00\x04") == s
    for bad in (b"", b"\x01\x01\x00", b"\x01\x01\x00\x04", b"\x03\x01\x00\x05x",
                b"\x09\x01\x00\x05\x01", b"\x02\x01\x00\x09\x01abc"):  # fmt: skip
        with pytest.raises(RemoteProtocolError):
            decode_eap(bad)


def _run(server: EapServer, peer: EapPeer) -> EapPacket:
    pkt = server.start()
    while True:
        answer = peer.process(pkt)
        if answer is None:
            return pkt
        pkt = server.process(decode_eap(encode_eap(answer)))


def test_server_and_peer_agree_on_the_msk() -> None:
    users = {"carol": nt_password_hash("p4ssw0rd")}
    server = EapServer(users.get, DeterministicRng("s"))
    peer = EapPeer("carol", nt_password_hash("p4ssw0rd"), DeterministicRng("p"))
    last = _run(server, peer)
    assert last.code == EapCode.SUCCESS
    assert server.identity == "carol"
    assert server.msk is not None and server.msk == peer.msk and len(server.msk) == 64


@pytest.mark.parametrize("user, password", [("carol", "wrong"), ("mallory", "p4ssw0rd")])
def test_wrong_password_and_unknown_user_fail_alike(user: str, password: str) -> None:
    users = {"carol": nt_password_hash("p4ssw0rd")}
    server = EapServer(users.get, DeterministicRng("s"))
    peer = EapPeer(user, nt_password_hash(password), DeterministicRng("p"))
    with pytest.raises(EapFailure) as info:
        _run(server, peer)
    assert str(info.value) == "EAP-MSCHAPv2 authentication failed"
    assert info.value.user == user and server.msk is None


def test_peer_refuses_a_server_that_does_not_know_the_password() -> None:
    server = EapServer({"carol": nt_password_hash("other")}.get, DeterministicRng("s"))
    challenge = server.process(EapPacket(EapCode.RESPONSE, server.start().identifier,
                                         EapType.IDENTITY, b"carol"))  # fmt: skip
    peer = EapPeer("carol", nt_password_hash("p4ssw0rd"), DeterministicRng("p"))
    peer.process(EapPacket(EapCode.REQUEST, 1, EapType.IDENTITY))
    peer.process(challenge)
    forged = m.pack(m.OpCode.SUCCESS, 0, b"S=" + b"0" * 40 + b" M=hi")
    with pytest.raises(EapFailure):
        peer.process(EapPacket(EapCode.REQUEST, 3, EapType.MSCHAPV2, forged))
    with pytest.raises(EapFailure):  # and no EAP-Success without that proof
        EapPeer("carol", b"x" * 16, DeterministicRng("q")).process(EapPacket(EapCode.SUCCESS, 4))


def test_server_bounds_and_refuses_misbehaviour() -> None:
    server = EapServer({}.get, DeterministicRng("s"))
    req = server.start()
    with pytest.raises(EapFailure):  # wrong identifier
        server.process(EapPacket(EapCode.RESPONSE, req.identifier ^ 1, EapType.IDENTITY, b"a"))
    server = EapServer({}.get, DeterministicRng("s"))
    req = server.start()
    with pytest.raises(EapFailure):  # an empty identity
        server.process(EapPacket(EapCode.RESPONSE, req.identifier, EapType.IDENTITY, b""))
    server = EapServer({}.get, DeterministicRng("s"))
    req = server.start()
    with pytest.raises(EapFailure):  # Nak
        server.process(EapPacket(EapCode.RESPONSE, req.identifier, EapType.NAK, b"\x04"))


def test_peer_naks_other_methods() -> None:
    peer = EapPeer("carol", b"x" * 16, DeterministicRng("p"))
    nak = peer.process(EapPacket(EapCode.REQUEST, 5, 4, b"md5-challenge"))
    assert nak == EapPacket(EapCode.RESPONSE, 5, EapType.NAK, bytes([EapType.MSCHAPV2]))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80), st.binary(max_size=80), st.integers(0, 3))
def test_fuzz_any_bytes_parse_or_are_refused(first: bytes, second: bytes, tweak: int) -> None:
    """Whatever the peer sends in its EAP payloads: a packet to answer, or a
    RemoteProtocolError (EapFailure is one) — never another exception."""
    server = EapServer({"carol": nt_password_hash("pw")}.get, DeterministicRng("s"))
    req = server.start()
    peer = EapPeer("carol", nt_password_hash("pw"), DeterministicRng("p"))
    try:
        # A real first round, then the fuzzed bytes (with a valid header, often).
        reply = server.process(decode_eap(encode_eap(EapPacket(
            EapCode.RESPONSE, req.identifier, EapType.IDENTITY, b"carol"))))  # fmt: skip
        for data in (first, second):
            if tweak & 1:
                data = bytes([2, reply.identifier]) + (len(data) + 4).to_bytes(2, "big") + data
            reply = server.process(decode_eap(data))
    except RemoteProtocolError:
        pass
    for data in (first, second):
        if tweak & 2:
            data = bytes([1, 1]) + (len(data) + 4).to_bytes(2, "big") + data
        with contextlib.suppress(RemoteProtocolError):
            peer.process(decode_eap(data))
