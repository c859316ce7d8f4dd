"""EAP-TLS (RFC 5216; TLS 1.3 per RFC 9190): the client proves itself with its
certificate inside a TLS handshake carried in EAP, and both ends take the MSK from the
TLS keying-material exporter.

The EAP-TLS Type-Data (after EAP Type 13), RFC 5216 §3.1 / §3.2:

 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
|     Flags     |      TLS Message Length (4 octets, if L)
+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
|                               |     TLS Data...
+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
Flags: L (0x80) length included, M (0x40) more fragments, S (0x20) EAP-TLS Start.

A TLS flight longer than one EAP packet goes in fragments; the receiver acknowledges
each but the last with an EAP-TLS packet without data. The peer controls the sizes and
the number of round trips, so both are bounded here (``MAX_TLS_MESSAGE``,
``MAX_ROUNDS``); the half-open timeout of the IKE SA bounds the time.

The TLS itself is OpenSSL's through pyOpenSSL over memory BIOs (no sockets: the bytes go
in and out of the EAP packets; OpenSSL draws its own randomness for the TLS randoms and
key shares, the injected Rng serves only the EAP identifier). No resumption (the session
cache is off: the TLS 1.3 NewSessionTickets OpenSSL still sends are never honoured) and
no renegotiation. OpenSSL only checks that the peer holds the key of the
certificate it sent; whether that certificate is acceptable (chain, validity,
revocation, the EAP identity in it) is decided by the connection's own check
(``CertCheck``, control/auth.py), the same one that judges certificates in IKE AUTH.

Keys (RFC 5216 §2.3, RFC 9190 §2.3): Key_Material = the TLS exporter with the label
"client EAP encryption" (TLS 1.2, no context) or "EXPORTER_EAP_TLS_Key_Material" with
the context 0x0D (TLS 1.3), 128 octets; MSK = the first 64, EMSK the next 64.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import IntFlag
from typing import TYPE_CHECKING, TypeVar

from cryptography.hazmat.primitives.serialization import Encoding
from OpenSSL import SSL
from OpenSSL.crypto import X509

from ..errors import RemoteProtocolError
from .message import EapCode, EapPacket, EapType
from .session import (
    MAX_IDENTITY,
    EapFailure,
    ServerMethod,
    _identity_text,
    identity_id,
    peer_answer,
)

if TYPE_CHECKING:
    from cryptography import x509

    from ..certs import LocalCredential

TLS_TYPE = 13  # EAP method type of EAP-TLS (RFC 5216 §3.1)
# Octets of one reassembled TLS flight we accept: a client certificate chain of a few
# certificates is a few KiB.
MAX_TLS_MESSAGE = 16384
FRAGMENT = 1000  # octets of TLS data we put in one EAP packet
# EAP requests in one conversation: Identity, Start, an acknowledgement for each fragment
# of the client's flights (MAX_TLS_MESSAGE in charon's 1024-octet fragments: 17), each
# fragment of ours, EAP-Success. strongSwan counts 32 messages at most.
MAX_ROUNDS = 40
KEY_MATERIAL = 128
LABEL_TLS12 = b"client EAP encryption"
LABEL_TLS13 = b"EXPORTER_EAP_TLS_Key_Material"
CONTEXT_TLS13 = bytes([TLS_TYPE])
_P = TypeVar("_P", EapPacket, EapPacket | None)
COMMITMENT = b"\x00"  # RFC 9190 §2.5: the server's last word, as TLS application data

# CertCheck(certificates DER end entity first, (ID type, ID data) they must prove)
# -> the holder's canonical identity; RemoteProtocolError(AUTHENTICATION_FAILED) if not.
CertCheck = Callable[[Sequence[bytes], tuple[int, bytes]], bytes]


class Flags(IntFlag):
    NONE = 0
    LENGTH = 0x80
    MORE = 0x40
    START = 0x20


def pack(flags: int, data: bytes = b"", total: int | None = None) -> bytes:
    """EAP-TLS Type-Data: flags, the TLS Message Length if ``total`` (L), the data."""
    if total is None:
        return bytes([flags & ~Flags.LENGTH]) + data
    return bytes([flags | Flags.LENGTH]) + total.to_bytes(4, "big") + data


def unpack(data: bytes) -> tuple[Flags, int | None, bytes]:
    """(flags, TLS Message Length or None, TLS data); RemoteProtocolError if malformed."""
    if not data:
        raise RemoteProtocolError("EAP-TLS packet without flags")
    flags = Flags(data[0] & 0xE0)  # the reserved bits are ignored (RFC 5216 §3.1)
    if not flags & Flags.LENGTH:
        return flags, None, data[1:]
    if len(data) < 5:
        raise RemoteProtocolError("EAP-TLS packet with L but no TLS Message Length")
    return flags, int.from_bytes(data[1:5], "big"), data[5:]


class Reassembly:
    """One TLS flight from fragments: ``add`` returns it once the last fragment is in.
    Declared and received lengths are bounded by ``limit``; a later fragment may repeat
    the first one's length but not change it."""

    def __init__(self, limit: int = MAX_TLS_MESSAGE) -> None:
        self.limit = limit
        self.total: int | None = None
        self.parts: list[bytes] = []
        self.size = 0

    @property
    def pending(self) -> bool:
        return bool(self.parts) or self.total is not None

    def add(self, flags: Flags, total: int | None, data: bytes) -> bytes | None:
        if total is not None:
            if total > self.limit or (self.total is not None and total != self.total):
                raise RemoteProtocolError(f"EAP-TLS message length {total} (limit {self.limit})")
            self.total = total
        elif flags & Flags.MORE and not self.pending:
            raise RemoteProtocolError("first EAP-TLS fragment without a TLS Message Length")
        self.size += len(data)
        bound = self.limit if self.total is None else self.total
        if self.size > bound:
            raise RemoteProtocolError(f"EAP-TLS fragments exceed {bound} octets")
        if flags & Flags.MORE:
            if not data:
                raise RemoteProtocolError("empty EAP-TLS fragment with M set")
            self.parts.append(data)
            return None
        if self.total is not None and self.size != self.total:
            raise RemoteProtocolError(f"EAP-TLS message of {self.size} octets, "
                                      f"announced {self.total}")  # fmt: skip
        out = b"".join((*self.parts, data))
        self.total, self.parts, self.size = None, [], 0
        return out


class Outgoing:
    """Our TLS flight, handed out FRAGMENT octets at a time (L on the first of several)."""

    def __init__(self, data: bytes = b"") -> None:
        self.data = data
        self.pos = 0

    @property
    def more(self) -> bool:
        return self.pos < len(self.data)

    def next(self) -> bytes:
        chunk = self.data[self.pos : self.pos + FRAGMENT]
        first, self.pos = self.pos == 0, self.pos + len(chunk)
        if self.more:
            return pack(Flags.MORE, chunk, len(self.data) if first else None)
        return pack(Flags.NONE, chunk)


def _drain(conn: SSL.Connection) -> bytes:
    out = b""
    while True:
        try:
            chunk = conn.bio_read(65536)
        except SSL.WantReadError:
            return out
        if not chunk:
            return out
        out += chunk


def _step(conn: SSL.Connection, data: bytes) -> bool:
    """Feed the peer's flight to TLS; whether the handshake is complete."""
    if data:
        conn.bio_write(data)
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        return False
    return True


def key_material(conn: SSL.Connection) -> tuple[bytes, bytes]:
    """(MSK, EMSK) of a completed handshake (RFC 5216 §2.3, RFC 9190 §2.3)."""
    if conn.get_protocol_version_name() == "TLSv1.3":
        keys = conn.export_keying_material(LABEL_TLS13, KEY_MATERIAL, CONTEXT_TLS13)
    else:
        keys = conn.export_keying_material(LABEL_TLS12, KEY_MATERIAL)
    return keys[:64], keys[64:]


def peer_certificates(conn: SSL.Connection) -> list[bytes]:
    """The certificates the TLS peer sent, DER, its own first."""
    leaf = conn.get_peer_certificate(as_cryptography=True)
    if leaf is None:
        return []
    der = [leaf.public_bytes(Encoding.DER)]
    for c in conn.get_peer_cert_chain(as_cryptography=True) or ():
        d = c.public_bytes(Encoding.DER)
        if d not in der:  # a client's chain starts with its own certificate
            der.append(d)
    return der


def _accept_any(conn: SSL.Connection, cert: X509, err: int, depth: int, ok: int) -> bool:
    return True  # OpenSSL checks possession of the key; CertCheck judges the certificate


def _context(method: int, cred: LocalCredential | None, cas: Sequence[x509.Certificate],
             tls13: bool) -> SSL.Context:  # fmt: skip
    ctx = SSL.Context(method)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_3_VERSION if tls13 else SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION)
    if method == SSL.TLS_CLIENT_METHOD:
        # strongSwan's TLS 1.2 server (libtls) sends no renegotiation_info (RFC 5746);
        # with renegotiation off at our end that extension protects nothing.
        ctx.set_options(SSL.OP_LEGACY_SERVER_CONNECT)
    ctx.set_session_cache_mode(SSL.SESS_CACHE_OFF)
    if cred is not None:
        ctx.use_certificate(cred.cert)
        ctx.use_privatekey(cred.key)
        for c in cred.chain:
            ctx.add_extra_chain_cert(c)
        ctx.check_privatekey()
    ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _accept_any)
    if method == SSL.TLS_SERVER_METHOD:
        for ca in cas:  # named in our CertificateRequest: the client picks its certificate
            ctx.add_client_ca(ca)
    return ctx


class EapTlsSetup:
    """One connection's EAP-TLS, built once at configuration: the TLS context (our
    certificate and key; the CAs named in our CertificateRequest, server only) and the
    check that judges the peer's certificate. Its repr names only the role: what it
    holds comes from the files of the connection (which a reload compares)."""

    __slots__ = ("check", "context", "role")

    def __init__(self, context: SSL.Context, check: CertCheck, role: str) -> None:
        self.context = context
        self.check = check
        self.role = role

    def __repr__(self) -> str:
        return f"EapTlsSetup({self.role})"

    @classmethod
    def server(cls, cred: LocalCredential, cas: Sequence[x509.Certificate], check: CertCheck,
               *, tls13: bool = True) -> EapTlsSetup:  # fmt: skip
        return cls(_context(SSL.TLS_SERVER_METHOD, cred, cas, tls13), check, "server")

    @classmethod
    def client(cls, cred: LocalCredential, check: CertCheck, *, tls13: bool = True
               ) -> EapTlsSetup:  # fmt: skip
        return cls(_context(SSL.TLS_CLIENT_METHOD, cred, (), tls13), check, "client")


class _TlsEnd:
    """What both ends keep: the TLS connection, the flights in and out, the keys."""

    identity: str

    def _tls_init(self, setup: EapTlsSetup) -> None:
        self.setup = setup
        self.emsk: bytes | None = None
        self.version = ""
        self._conn: SSL.Connection | None = None
        self._in = Reassembly()
        self._out = Outgoing()

    def _guarded(self, step: Callable[[EapPacket], _P], pkt: EapPacket) -> _P:
        """``step(pkt)`` with every refusal (TLS, framing) an EapFailure."""
        try:
            return step(pkt)
        except EapFailure:
            raise
        except SSL.Error as exc:
            raise EapFailure(f"TLS handshake failed ({_ssl_reason(exc)})", self.identity) from None
        except RemoteProtocolError as exc:
            raise EapFailure(str(exc), self.identity) from None


class EapTlsServer(ServerMethod, _TlsEnd):
    """The authenticator: EAP-Identity, then EAP-TLS; the peer's certificate must pass
    ``setup.check`` for its EAP identity (strongSwan's eap_id: the identity is the
    subject DN or a subjectAltName of the certificate). ``peer_key``: the certificate's
    canonical identity."""

    method = "EAP-TLS"
    max_rounds = MAX_ROUNDS

    def __init__(self, setup: EapTlsSetup, identifier: int) -> None:
        super().__init__(identifier)
        self._tls_init(setup)
        self._finishing = False  # our last flight is out; the peer's ack ends it

    def process(self, pkt: EapPacket) -> EapPacket:
        """The next packet to send (a Request, or EAP-Success once the peer's
        certificate passed); EapFailure otherwise."""
        return self._guarded(self._process, pkt)

    def _process(self, pkt: EapPacket) -> EapPacket:
        if pkt.code != EapCode.RESPONSE or pkt.identifier != self.identifier:
            raise EapFailure("unexpected EAP packet (code or identifier)", self.identity)
        if pkt.type == EapType.IDENTITY and self._conn is None and not self.identity:
            self.identity = _identity_text(pkt.data)
            self._conn = SSL.Connection(self.setup.context, None)
            self._conn.set_accept_state()
            return self._request(TLS_TYPE, pack(Flags.START))
        if pkt.type == EapType.NAK:
            raise EapFailure("the peer refused EAP-TLS (Nak)", self.identity)
        if pkt.type != TLS_TYPE or self._conn is None:
            raise EapFailure(f"unexpected EAP type {pkt.type}", self.identity)
        flags, total, data = unpack(pkt.data)
        if self._out.more or self._finishing:  # the peer acknowledges what we sent
            if data or flags & Flags.MORE:
                raise RemoteProtocolError("EAP-TLS data where an acknowledgement was due")
            if self._out.more:
                return self._request(TLS_TYPE, self._out.next())
            return self._success()
        flight = self._in.add(flags, total, data)
        if flight is None:
            return self._request(TLS_TYPE, pack(Flags.NONE))  # acknowledge the fragment
        done = _step(self._conn, flight)
        out = _drain(self._conn)
        if done:
            self._verify_peer()
            if self.version == "TLSv1.3":
                self._conn.send(COMMITMENT)
                out += _drain(self._conn)
            self._finishing = True
        elif not out:
            raise RemoteProtocolError("EAP-TLS flight that needs no answer (incomplete TLS)")
        self._out = Outgoing(out)
        return self._request(TLS_TYPE, self._out.next())

    def _verify_peer(self) -> None:
        assert self._conn is not None
        self.version = self._conn.get_protocol_version_name()
        certs = peer_certificates(self._conn)
        if not certs:
            raise EapFailure("the peer sent no certificate", self.identity)
        try:
            self.peer_key = self.setup.check(certs, identity_id(self.identity))
        except RemoteProtocolError as exc:
            raise EapFailure(str(exc), self.identity) from None
        self.msk, self.emsk = key_material(self._conn)

    def _success(self) -> EapPacket:
        if self.msk is None:
            raise EapFailure("EAP-TLS ended before the handshake", self.identity)
        self._conn = None
        return EapPacket(EapCode.SUCCESS, self.identifier)


class EapTlsPeer(_TlsEnd):
    """The peer side: our EAP identity, then EAP-TLS with our certificate; the server's
    certificate must pass ``setup.check`` for ``server_id`` (set once the gateway's IKE
    identity is known)."""

    def __init__(self, identity: str, setup: EapTlsSetup) -> None:
        if not 0 < len(identity.encode()) <= MAX_IDENTITY:
            raise ValueError(f"EAP identity of {len(identity.encode())} bytes")
        self.identity = identity
        self._tls_init(setup)
        self.server_id: tuple[int, bytes] | None = None
        self.rounds = 0
        self.msk: bytes | None = None
        self._done = False
        self._committed = False

    def process(self, pkt: EapPacket) -> EapPacket | None:
        """Our response to a server packet; None after EAP-Success (``msk`` is set)."""
        return self._guarded(self._process, pkt)

    def _process(self, pkt: EapPacket) -> EapPacket | None:
        self.rounds += 1
        if self.rounds > MAX_ROUNDS + 1:
            raise EapFailure("too many EAP-TLS rounds")
        if pkt.code == EapCode.SUCCESS:
            if not (self._done and self._committed) or self._conn is None:
                raise EapFailure("EAP-Success before the TLS handshake ended")
            self.msk, self.emsk = key_material(self._conn)
            self._conn = None
            return None
        answer = peer_answer(pkt, self.identity, TLS_TYPE)
        if answer is not None:
            return answer
        flags, total, data = unpack(pkt.data)
        if flags & Flags.START:
            if self._conn is not None:
                raise RemoteProtocolError("a second EAP-TLS Start")
            self._conn = SSL.Connection(self.setup.context, None)
            self._conn.set_connect_state()
            _step(self._conn, b"")
            self._out = Outgoing(_drain(self._conn))
            return self._response(pkt, TLS_TYPE, self._out.next())
        if self._conn is None:
            raise RemoteProtocolError("EAP-TLS before Start")
        if self._out.more:
            if data or flags & Flags.MORE:
                raise RemoteProtocolError("EAP-TLS data where an acknowledgement was due")
            return self._response(pkt, TLS_TYPE, self._out.next())
        flight = self._in.add(flags, total, data)
        if flight is None:
            return self._response(pkt, TLS_TYPE, pack(Flags.NONE))
        if self._done:
            self._conn.bio_write(flight)
        elif _step(self._conn, flight):
            self._done = True
            self._check_server()
        if self._done and not self._committed:
            self._read_commitment()
        self._out = Outgoing(_drain(self._conn))
        return self._response(pkt, TLS_TYPE, self._out.next())

    def _check_server(self) -> None:
        assert self._conn is not None
        self.version = self._conn.get_protocol_version_name()
        if self.server_id is None:
            raise EapFailure("the gateway's identity is not known")
        self.setup.check(peer_certificates(self._conn), self.server_id)
        if self.version != "TLSv1.3":
            self._committed = True  # TLS 1.2: the server's Finished ends the handshake

    def _read_commitment(self) -> None:
        assert self._conn is not None
        try:
            data = self._conn.recv(16)
        except SSL.WantReadError:
            return
        if data != COMMITMENT:
            raise RemoteProtocolError("TLS application data other than the commitment")
        self._committed = True

    def _response(self, req: EapPacket, eap_type: int, data: bytes) -> EapPacket:
        return EapPacket(EapCode.RESPONSE, req.identifier, eap_type, data)


def _ssl_reason(exc: SSL.Error) -> str:
    """OpenSSL's reason, short (its error queue: (library, function, reason) tuples)."""
    try:
        return "; ".join(str(e[-1]) for e in exc.args[0])[:200] or type(exc).__name__
    except (IndexError, TypeError):
        return type(exc).__name__
