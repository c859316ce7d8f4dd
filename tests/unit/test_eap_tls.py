"""EAP-TLS (control/eap/tls.py): the framing (flags, fragments, reassembly within
bounds), the server against our peer and against a TLS client written here with
pyOpenSSL directly, MSK/EMSK derived independently (RFC 5216 §2.3 with the TLS 1.2
PRF of RFC 5246 §5 computed here; RFC 9190 §2.3 through the client's own exporter),
and the refusals: an untrusted or revoked certificate, an EAP identity the certificate
does not name, hostile fragments and garbage TLS."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from OpenSSL import SSL

from espfast.cli import main
from espfast.control.auth import certificate_check, certificate_identity
from espfast.control.certs import LocalCredential, TrustStore, load_certificate_file
from espfast.control.eap import EapCode, EapFailure, EapPacket, EapType
from espfast.control.eap.tls import (
    FRAGMENT,
    MAX_ROUNDS,
    MAX_TLS_MESSAGE,
    TLS_TYPE,
    EapTlsPeer,
    EapTlsServer,
    EapTlsSetup,
    Flags,
    Outgoing,
    Reassembly,
    pack,
    unpack,
)
from espfast.control.errors import RemoteProtocolError
from espfast.control.identity import Identity
from tests.unit.profile_pki import CLIENT_ID, GATEWAY_ID, Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("eaptls"))


@pytest.fixture(scope="module")
def rsa_pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """RSA certificates: the gateway's flight no longer fits one EAP packet."""
    return make_pki(tmp_path_factory.mktemp("eaptls-rsa"), "rsa")


def server_setup(pki: Pki, crls: tuple[Path, ...] = (), tls13: bool = True) -> EapTlsSetup:
    trust = TrustStore.load([pki.ca], crls)
    cred = LocalCredential.load(pki.cert("gw"), pki.key("gw"))
    return EapTlsSetup.server(cred, trust.cas, certificate_check(trust, time.time), tls13=tls13)


def peer_setup(pki: Pki, name: str = "alice", tls13: bool = True) -> EapTlsSetup:
    trust = TrustStore.load([pki.ca])
    cred = LocalCredential.load(pki.cert(name), pki.key(name))
    return EapTlsSetup.client(cred, certificate_check(trust, time.time), tls13=tls13)


def run_pair(server: EapTlsServer, peer: EapTlsPeer) -> int:
    """The whole conversation in memory; the number of requests the server sent."""
    peer.server_id = Identity.parse(GATEWAY_ID).encode()
    req: EapPacket | None = server.start()
    while req is not None:
        resp = peer.process(req)
        if resp is None:
            break
        req = server.process(resp)
        if req.code == EapCode.SUCCESS:
            assert peer.process(req) is None
            break
    return server.rounds


# -- framing -------------------------------------------------------------------------------


def test_pack_unpack() -> None:
    assert pack(Flags.START) == b"\x20"
    assert pack(Flags.MORE, b"ab", 10) == b"\xc0\x00\x00\x00\x0aab"
    assert unpack(b"\xc0\x00\x00\x00\x0aab") == (Flags.LENGTH | Flags.MORE, 10, b"ab")
    assert unpack(b"\x1fxyz") == (Flags.NONE, None, b"xyz")  # reserved bits ignored
    for bad in (b"", b"\x80", b"\x80\x00\x00\x01"):
        with pytest.raises(RemoteProtocolError):
            unpack(bad)


def test_outgoing_fragments_carry_length_first() -> None:
    data = bytes(range(256)) * 10  # 2560 octets: three fragments
    out = Outgoing(data)
    frags = [unpack(out.next())]
    while out.more:
        frags.append(unpack(out.next()))
    assert [f[0] for f in frags] == [Flags.LENGTH | Flags.MORE, Flags.MORE, Flags.NONE]
    assert frags[0][1] == len(data) and frags[1][1] is None
    assert [len(f[2]) for f in frags] == [FRAGMENT, FRAGMENT, len(data) - 2 * FRAGMENT]
    r = Reassembly()
    got = [r.add(*f) for f in frags]
    assert got[:2] == [None, None] and got[2] == data
    assert unpack(Outgoing(b"hello").next()) == (Flags.NONE, None, b"hello")


@pytest.mark.parametrize(
    "fragments",
    [
        [(Flags.LENGTH | Flags.MORE, MAX_TLS_MESSAGE + 1, b"x")],  # announced too long
        [(Flags.LENGTH | Flags.MORE, 4, b"xyz"), (Flags.NONE, None, b"yz")],  # beyond L
        [(Flags.LENGTH | Flags.MORE, 4, b"xy"), (Flags.LENGTH, 5, b"yz")],  # L changes
        [(Flags.MORE, None, b"xy")],  # first of several without L
        [(Flags.LENGTH | Flags.MORE, 6, b"xy"), (Flags.NONE, None, b"z")],  # short of L
        [(Flags.LENGTH | Flags.MORE, 6, b"xy"), (Flags.MORE, None, b"")],  # empty with M
        [(Flags.NONE, None, b"x" * (MAX_TLS_MESSAGE + 1))],  # unannounced, too long
    ],
)
def test_reassembly_refuses(fragments: list[tuple[Flags, int | None, bytes]]) -> None:
    r = Reassembly()
    with pytest.raises(RemoteProtocolError):
        for f in fragments:
            r.add(*f)


def test_reassembly_bounds_unannounced_fragments() -> None:
    r = Reassembly()
    r.add(Flags.LENGTH | Flags.MORE, MAX_TLS_MESSAGE, b"x" * 1000)
    with pytest.raises(RemoteProtocolError):
        while True:
            r.add(Flags.MORE, None, b"x" * 1000)


# -- against our peer -----------------------------------------------------------------------


@pytest.mark.parametrize("tls13", [True, False], ids=["tls13", "tls12"])
@pytest.mark.parametrize("keys", ["ecdsa", "rsa"])
def test_pair_agrees_on_keys(request: pytest.FixtureRequest, keys: str, tls13: bool) -> None:
    pki: Pki = request.getfixturevalue("pki" if keys == "ecdsa" else "rsa_pki")
    server = EapTlsServer(server_setup(pki), 7)
    peer = EapTlsPeer(CLIENT_ID, peer_setup(pki, tls13=tls13))
    rounds = run_pair(server, peer)
    assert server.version == peer.version == ("TLSv1.3" if tls13 else "TLSv1.2")
    assert server.msk is not None and len(server.msk) == 64
    assert server.msk == peer.msk and server.emsk == peer.emsk and server.msk != server.emsk
    assert server.identity == CLIENT_ID
    alice = load_certificate_file(pki.cert("alice"))[0]
    assert server.peer_key == certificate_identity(alice)
    assert rounds < MAX_ROUNDS


def refused(server: EapTlsServer, peer: EapTlsPeer) -> str:
    with pytest.raises(EapFailure) as info:
        run_pair(server, peer)
    assert info.value.notify == 24  # AUTHENTICATION_FAILED
    assert server.msk is None
    return str(info.value)


def test_untrusted_certificate_is_refused(pki: Pki) -> None:
    # mallory: alice's name, from another CA
    why = refused(
        EapTlsServer(server_setup(pki), 1), EapTlsPeer(CLIENT_ID, peer_setup(pki, "mallory"))
    )
    assert "no trusted CA" in why, why


def test_identity_not_in_certificate_is_refused(pki: Pki) -> None:
    why = refused(EapTlsServer(server_setup(pki), 1),
                  EapTlsPeer("bob@example.test", peer_setup(pki)))  # fmt: skip
    assert "identity bob@example.test does not match" in why, why


def test_revoked_certificate_is_refused(pki: Pki, tmp_path: Path) -> None:
    crl = tmp_path / "ca.crl"
    assert main(["pki", "crl", "--ca", str(pki.ca.parent), "--revoke", str(pki.cert("alice")),
                 "--out", str(crl)]) == 0  # fmt: skip
    why = refused(
        EapTlsServer(server_setup(pki, (crl,)), 1), EapTlsPeer(CLIENT_ID, peer_setup(pki))
    )
    assert "revoked" in why, why


# -- against a TLS client written here ------------------------------------------------------


def p_hash(secret: bytes, seed: bytes, n: int, algo: Callable[..., object]) -> bytes:
    """RFC 5246 §5 P_hash, for the TLS 1.2 PRF."""
    out, a = b"", seed
    while len(out) < n:
        a = hmac.new(secret, a, algo).digest()  # type: ignore[arg-type]
        out += hmac.new(secret, a + seed, algo).digest()  # type: ignore[arg-type]
    return out[:n]


class PlainClient:
    """EAP-TLS by hand: a pyOpenSSL client and the RFC 5216 framing, nothing of ours
    but pack/unpack."""

    def __init__(self, pki: Pki, tls13: bool) -> None:
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_max_proto_version(SSL.TLS1_3_VERSION if tls13 else SSL.TLS1_2_VERSION)
        ctx.use_certificate_file(str(pki.cert("alice")))
        ctx.use_privatekey_file(str(pki.key("alice")))
        ctx.load_verify_locations(str(pki.ca))
        ctx.set_verify(SSL.VERIFY_PEER, lambda *a: bool(a[-1]))
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_connect_state()
        self.pending = b""
        self.sent = 0  # octets of the current flight already sent
        self.inbox = b""

    def _out(self) -> bytes:
        out = b""
        while True:
            try:
                out += self.conn.bio_read(65536)
            except SSL.WantReadError:
                return out

    def answer(self, req: EapPacket) -> EapPacket:
        def resp(data: bytes, t: int = TLS_TYPE) -> EapPacket:
            return EapPacket(EapCode.RESPONSE, req.identifier, t, data)

        if req.type == EapType.IDENTITY:
            return resp(CLIENT_ID.encode(), EapType.IDENTITY)
        flags, _, data = unpack(req.data)
        if flags & Flags.START:
            with contextlib.suppress(SSL.WantReadError):
                self.conn.do_handshake()
            self.pending = self._out()
        elif not data and self.pending:
            pass  # the server acknowledged a fragment
        else:
            self.inbox += data
            if flags & Flags.MORE:
                return resp(b"\x00")  # acknowledge
            self.conn.bio_write(self.inbox)
            self.inbox = b""
            try:
                self.conn.do_handshake()
                self.conn.recv(16)  # TLS 1.3: the commitment
            except SSL.WantReadError:
                pass
            self.pending = self._out()
        first = self.sent == 0
        chunk, self.pending = self.pending[:900], self.pending[900:]
        self.sent = len(self.pending) and self.sent + len(chunk)
        if self.pending and first:  # L and M: the flight's length, more to come
            total = len(chunk) + len(self.pending)
            return resp(b"\xc0" + total.to_bytes(4, "big") + chunk)
        return resp((b"\x40" if self.pending else b"\x00") + chunk)

    def msk_emsk(self) -> bytes:
        if self.conn.get_protocol_version_name() == "TLSv1.3":
            return self.conn.export_keying_material(b"EXPORTER_EAP_TLS_Key_Material", 128, b"\x0d")
        algo = hashlib.sha384 if self.conn.get_cipher_name().endswith("SHA384") else hashlib.sha256
        seed = b"client EAP encryption" + self.conn.client_random() + self.conn.server_random()
        return p_hash(self.conn.master_key(), seed, 128, algo)


@pytest.mark.parametrize("tls13", [True, False], ids=["tls13", "tls12"])
def test_msk_matches_an_independent_client(pki: Pki, tls13: bool) -> None:
    server = EapTlsServer(server_setup(pki), 200)
    client = PlainClient(pki, tls13)
    req = server.start()
    while req.code == EapCode.REQUEST:
        req = server.process(client.answer(req))
    assert req.code == EapCode.SUCCESS
    keys = client.msk_emsk()
    assert server.msk == keys[:64] and server.emsk == keys[64:]


# -- hostile peers --------------------------------------------------------------------------


def started(pki: Pki) -> tuple[EapTlsServer, EapPacket]:
    server = EapTlsServer(server_setup(pki), 0)
    req = server.start()
    req = server.process(EapPacket(EapCode.RESPONSE, req.identifier, EapType.IDENTITY,
                                   CLIENT_ID.encode()))  # fmt: skip
    assert unpack(req.data)[0] == Flags.START
    return server, req


def tls_response(req: EapPacket, data: bytes) -> EapPacket:
    return EapPacket(EapCode.RESPONSE, req.identifier, TLS_TYPE, data)


def test_endless_fragments_end_within_the_round_limit(pki: Pki) -> None:
    server, req = started(pki)
    with pytest.raises(EapFailure, match="rounds"):
        req = server.process(tls_response(req, pack(Flags.MORE, b"\x16", 16000)))
        for _ in range(MAX_ROUNDS + 1):
            req = server.process(tls_response(req, pack(Flags.MORE, b"\x16")))
    assert server.rounds <= MAX_ROUNDS + 1


@pytest.mark.parametrize(
    "data",
    [
        b"\x17\x03\x03\x00\x05hello",  # application data before any handshake
        b"\x16\x03\x01\x00\x04\x01\x00\x00\x00",  # a ClientHello without a body
        b"GET / HTTP/1.1\r\n\r\n",
        b"\x16\x03\x01\x00",  # a record header cut short: TLS waits, EAP-TLS does not
    ],
)
def test_garbage_tls_is_a_clean_failure(pki: Pki, data: bytes) -> None:
    server, req = started(pki)
    with pytest.raises(EapFailure) as info:
        server.process(tls_response(req, pack(Flags.NONE, data)))
    assert info.value.notify == 24


def test_data_where_an_ack_is_due_and_wrong_packets(pki: Pki, rsa_pki: Pki) -> None:
    server, req = started(pki)
    with pytest.raises(EapFailure):  # an empty EAP-TLS response answers nothing
        server.process(tls_response(req, pack(Flags.NONE)))
    server, req = started(pki)
    for bad in (replace(tls_response(req, b"\x00"), identifier=(req.identifier + 1) & 0xFF),
                EapPacket(EapCode.RESPONSE, req.identifier, EapType.NAK, b"\x1a"),
                EapPacket(EapCode.RESPONSE, req.identifier, 26, b"\x02")):  # fmt: skip
        with pytest.raises(EapFailure):
            EapTlsServer(server_setup(pki), 0).process(bad)
        with pytest.raises(EapFailure):
            started(pki)[0].process(bad)
    # A response with a valid ClientHello, then data where the server's second
    # fragment should have been acknowledged.
    server, req = started(rsa_pki)
    client = PlainClient(rsa_pki, True)
    nxt = server.process(client.answer(req))
    while not unpack(nxt.data)[2]:  # the gateway acknowledges the ClientHello's fragments
        nxt = server.process(client.answer(nxt))
    assert unpack(nxt.data)[0] & Flags.MORE  # the gateway's flight needs more than one
    with pytest.raises(EapFailure, match="acknowledgement"):
        server.process(tls_response(nxt, pack(Flags.NONE, b"\x16\x03\x03")))


def test_server_certificate_of_the_wrong_name_is_refused_by_the_peer(pki: Pki) -> None:
    peer = EapTlsPeer(CLIENT_ID, peer_setup(pki))
    server = EapTlsServer(server_setup(pki), 3)
    req: EapPacket | None = server.start()
    peer.server_id = Identity.parse("other.example.test").encode()
    with pytest.raises(EapFailure):
        while req is not None and req.code == EapCode.REQUEST:
            resp = peer.process(req)
            assert resp is not None
            req = server.process(resp)


# -- fuzz: any bytes parse or are refused as the peer's fault -------------------------------


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_unpack_parses_or_refuses(data: bytes) -> None:
    try:
        flags, total, rest = unpack(data)
    except RemoteProtocolError:
        return
    assert pack(flags, rest, total) == bytes([data[0] & 0xE0]) + data[1:]  # reserved bits off


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=1200), min_size=1, max_size=6))
def test_server_takes_any_responses_as_failure_or_request(pki: Pki, datas: list[bytes]) -> None:
    server, req = started(pki)
    for data in datas:
        try:
            req = server.process(tls_response(req, data))
        except EapFailure as exc:
            assert exc.notify == 24
            return
        assert req.code == EapCode.REQUEST and req.type == TLS_TYPE
