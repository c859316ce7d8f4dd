"""IKE_AUTH with EAP (RFC 7296 §2.16): the gateway authenticates with its certificate,
the client with EAP-MSCHAPv2 or EAP-TLS (or what a RADIUS server speaks); both then send
AUTH keyed with the EAP MSK.

IKE_AUTH { IDi, [CERTREQ,] [IDr,] [CP(CFG_REQUEST),] SAi2, TSi, TSr } -->  (no AUTH)
                        <-- { IDr, [CERT,] AUTH, EAP(Request/Identity) }
IKE_AUTH { EAP(Response/Identity) } -->
                        <-- { EAP(Request/MSCHAPv2 Challenge) }
IKE_AUTH { EAP(Response/MSCHAPv2 Response) } -->
                        <-- { EAP(Request/MSCHAPv2 Success) }
IKE_AUTH { EAP(Response/MSCHAPv2 Success) } -->
                        <-- { EAP(Success) }
(EAP-TLS instead: Request/TLS Start, then the TLS flights in fragments, each answered
by the other end; control/eap/tls.py.)
IKE_AUTH { AUTH } -->                              AUTH = prf(prf(MSK, "Key Pad for
                        <-- { AUTH, [CP(CFG_REPLY),] SAr2, TSi, TSr }      IKEv2"), octets)

One task object carries the whole conversation: the initiator's ``process`` returns False
until the last response (the task manager sends the next request under the next Message
ID); the responder keeps itself as ``sa.pending_auth`` until it answered the last AUTH.
The responder's EAP identity becomes the peer's canonical identity (``sa.peer_id``), as
strongSwan's eap_id: leases and uniqueness follow the user, not the IDi.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .. import policy
from ..auth import canonical_id, psk_auth, psk_verify
from ..config import ChildConfig
from ..constants import AuthMethod, NotifyType
from ..eap import EapCode, EapFailure, EapPacket, EapPeer, EapServer, decode_eap, encode_eap
from ..eap.message import EapType, printable
from ..eap.session import _identity_text, identity_id
from ..eap.tls import EapTlsPeer, EapTlsServer
from ..errors import PeerError, RemoteProtocolError
from ..events import RadiusRequest
from ..message import EAP_RULES, Message, check_rules
from ..payloads import AuthPayload, EapPayload, IdiPayload, IdPayload, IdrPayload, Payload
from ..radius import Code
from ..radius.relay import RadiusAnswer, RadiusRelay
from .ike_auth import IkeAuth, _auth_failed, _name

if TYPE_CHECKING:
    from ..ike_sa import IkeSa


def eap_peer_id(identity: str) -> IdiPayload:
    """The ID a user's EAP identity stands for, read as strongSwan reads one (its id
    syntax; what is not an identity there becomes a KEY_ID)."""
    return IdiPayload(*identity_id(identity))


class IkeAuthEap(IkeAuth):
    def __init__(self, sa: IkeSa, initiator: bool, child: ChildConfig | None = None) -> None:
        super().__init__(sa, initiator, child)
        self.stage = "first"  # -> "eap" -> "auth" (-> "done", responder)
        self.eap_out: EapPacket | None = None  # the EAP packet our next message carries
        self.msk: bytes | None = None
        self.peer: EapPeer | EapTlsPeer | None = None
        self.server: EapServer | EapTlsServer | None = None
        self.first: Message | None = None  # responder: the request with SA, TS, CP
        self.idi: IdPayload | None = None
        self.sign_next = False  # responder: the next response carries IDr, CERT, AUTH
        self.peer_mobike = False  # initiator: the gateway sent MOBIKE_SUPPORTED
        # Responder, EAP-RADIUS: the relayed conversation, the user's EAP identity, and
        # while an Access-Request is out, ``deferred`` (the task manager holds our
        # answer) until the shell sets ``radius_answer`` and the manager resumes us.
        self.relay: RadiusRelay | None = None
        self.user = ""
        self.deferred = False
        self.radius_answer: RadiusAnswer | None = None
        if initiator:
            auth = sa.config.auth
            assert auth.eap_identity
            if auth.eap_tls_peer is not None:
                self.peer = EapTlsPeer(auth.eap_identity, auth.eap_tls_peer)
            else:
                assert auth.eap_nt_hash is not None
                self.peer = EapPeer(auth.eap_identity, auth.eap_nt_hash, sa.rng)

    def _msk_auth(self, octets: bytes) -> AuthPayload:
        assert self.msk is not None
        return AuthPayload(AuthMethod.PSK, psk_auth(self.sa.prf, self.msk, octets))

    def _our_auth(self, id_payload: IdPayload) -> list[Payload]:
        if self.initiator:
            return []  # the first request: no AUTH, which asks for EAP
        if self.stage == "done":
            return [self._msk_auth(self._octets(True, id_payload))]
        return super()._our_auth(id_payload)

    def build(self) -> list[Payload]:
        eap: list[Payload] = [] if self.eap_out is None else [EapPayload(encode_eap(self.eap_out))]
        if self.initiator:
            if self.stage == "first":
                return super().build()
            if self.stage == "eap":
                return eap
            return [self._msk_auth(self._octets(True, IdiPayload(*self.sa.config.local_id)))]
        if self.stage == "done":
            return super().build()
        if self.sign_next:
            self.sign_next = False
            idr = IdrPayload(*self.sa.config.local_id)
            return [idr, *self._our_auth(idr), *eap]
        return eap

    def _eap_in(self, msg: Message) -> EapPacket:
        p = msg.get(EapPayload)
        if p is None:
            raise _auth_failed("no EAP payload")
        return decode_eap(p.data)

    # -- initiator ---------------------------------------------------------------------
    def _process_initiator(self, msg: Message) -> bool:
        sa = self.sa
        err = msg.error_notify()
        if err is not None and msg.get(AuthPayload) is None:
            raise PeerError(f"peer answered {_name(err.notify_type)}", err.notify_type)
        check_rules(msg, EAP_RULES["response"])
        if msg.notify(NotifyType.MOBIKE_SUPPORTED) is not None:
            self.peer_mobike = True
        if self.stage == "first":
            idr = msg.need(IdrPayload)
            sa.peer_key = self._check_peer(msg, idr)  # the gateway's certificate, signature
            sa.peer_id = idr
            if isinstance(self.peer, EapTlsPeer):  # its TLS certificate must name it too
                self.peer.server_id = (idr.id_type, idr.data)
        if self.stage in ("first", "eap"):
            assert self.peer is not None
            self.eap_out = self.peer.process(self._eap_in(msg))
            if self.eap_out is None:
                self.msk, self.stage = self.peer.msk, "auth"
            else:
                self.stage = "eap"
            return False
        auth = msg.get(AuthPayload)
        assert sa.peer_id is not None
        if (
            auth is None
            or auth.method != AuthMethod.PSK
            or self.msk is None
            or not psk_verify(sa.prf, self.msk, self._octets(False, sa.peer_id), auth.data)
        ):
            raise _auth_failed("the gateway's AUTH does not match the EAP MSK")
        self.msk = None
        return self._complete(msg, self.peer_mobike)

    # -- responder ---------------------------------------------------------------------
    def _process_responder(self, msg: Message) -> bool:
        sa = self.sa
        if self.stage == "first":
            check_rules(msg, EAP_RULES["first"])
            idi = msg.need(IdiPayload)
            # The best connection for the IDi (control/policy.py) that asks for EAP and
            # allows the IKE proposal negotiated; EAP then decides who the peer is.
            ours = (sa.config, *(c for c in sa.candidates if c is not sa.config))
            configs = policy.candidates(ours, (idi.id_type, idi.data), sa.chosen, eap=True)
            if not configs:
                raise _auth_failed(f"no EAP connection for peer {sa.id_str(idi)} "
                                   f"with {sa.chosen}")  # fmt: skip
            cfg = sa.config = configs[0]
            self.first, self.idi = msg, idi
            if cfg.auth.eap_radius:
                self.relay = RadiusRelay(cfg.name, f"{sa.remote[0]}[{sa.remote[1]}]",
                                         f"{sa.local[0]}[{sa.local[1]}]")  # fmt: skip
                ident = sa.rng.random_bytes(1)[0]
                self.eap_out = EapPacket(EapCode.REQUEST, ident, EapType.IDENTITY)
            elif cfg.auth.eap_tls is not None:
                self.server = EapTlsServer(cfg.auth.eap_tls, sa.rng.random_bytes(1)[0])
                self.eap_out = self.server.start()
            else:
                assert cfg.auth.eap_users is not None
                self.server = EapServer(cfg.auth.eap_users, sa.rng)
                self.eap_out = self.server.start()
            self.stage, self.sign_next = "eap", True
            sa.pending_auth = self
            return True
        check_rules(msg, EAP_RULES["request"])
        if self.relay is not None and self.stage == "eap":
            return self._relay(msg)
        assert self.first is not None and self.idi is not None
        if self.stage == "eap":
            assert self.server is not None
            try:
                self.eap_out = self.server.process(self._eap_in(msg))
            except EapFailure as exc:
                if not exc.logged:
                    self._eap_failed(exc.user, exc)
                if exc.eap_failure is not None:  # RFC 3748 §4.2: the conversation ends
                    exc.payloads = (EapPayload(encode_eap(exc.eap_failure)),)
                raise
            if self.server.failed:  # the MS-CHAPv2 Failure request goes out (one line)
                self._eap_failed(self.server.identity)
            if self.eap_out.code == EapCode.SUCCESS:
                self.msk, self.stage = self.server.msk, "auth"
            return True
        auth = msg.get(AuthPayload)
        if self.stage != "auth" or auth is None or self.msk is None:
            raise _auth_failed("no AUTH after EAP")
        if auth.method != AuthMethod.PSK or not psk_verify(
            sa.prf, self.msk, self._octets(False, self.idi), auth.data
        ):
            raise _auth_failed("the peer's AUTH does not match the EAP MSK")
        self.stage, self.eap_out = "done", None
        user = self.server.identity if self.server is not None else self.user
        sa.peer_id = eap_peer_id(user)
        # EAP-TLS: the certificate's holder, as with certificates in IKE AUTH.
        holder = self.server.peer_key if self.server is not None else None
        sa.peer_key = holder or canonical_id((sa.peer_id.id_type, sa.peer_id.data))
        method = self.server.method if self.server is not None else "EAP-RADIUS"
        sa.log(f"{method} authenticated {printable(user)}")
        return self._admit(self.first, printable(user))

    def _eap_failed(self, user: str, exc: EapFailure | None = None) -> None:
        """The one log line of a failed EAP authentication: the user, escaped; for
        EAP-MSCHAPv2 never the password (nor whether it was the password or the user
        name), for EAP-TLS why the certificate or the handshake was refused."""
        who = printable(user) if user else "an unnamed user"
        method = self.server.method if self.server is not None else "EAP"
        tls = exc is not None and isinstance(self.server, EapTlsServer)
        why = f": {printable(str(exc))}" if tls else ""
        self.sa.log(f"{method} authentication of {who} failed{why}", logging.WARNING)

    # -- responder, EAP relayed to RADIUS ----------------------------------------------
    def _radius_failed(self, reason: str) -> EapFailure:
        who = printable(self.user) if self.user else "an unnamed user"
        self.sa.log(f"EAP-RADIUS authentication of {who} failed: {reason}", logging.WARNING)
        return EapFailure(reason, self.user)

    def _relay(self, msg: Message) -> bool:
        """The peer's EAP packet goes to the RADIUS server; our answer waits for its."""
        assert self.relay is not None and self.eap_out is not None
        p = msg.get(EapPayload)
        try:
            if p is None:
                raise RemoteProtocolError("no EAP payload")
            pkt = decode_eap(p.data)
            if pkt.code != EapCode.RESPONSE or pkt.identifier != self.eap_out.identifier:
                raise RemoteProtocolError("unexpected EAP packet (code or identifier)")
            if not self.user:
                if pkt.type != EapType.IDENTITY:
                    raise RemoteProtocolError("no EAP identity")
                self.user = _identity_text(pkt.data)
        except RemoteProtocolError as exc:
            raise self._radius_failed(str(exc)) from None
        attrs = self.relay.request(p.data, self.user.encode())
        self.sa.emit(RadiusRequest(self.sa.ike_sa_id, tuple(attrs)))
        self.deferred = True
        return True

    def resume(self) -> None:
        """The RADIUS server answered (or none did): the EAP packet for the peer."""
        assert self.relay is not None
        answer, self.radius_answer = self.radius_answer, None
        if answer is None:
            raise self._radius_failed("no RADIUS answer")
        try:
            eap, accepted = self.relay.answered(answer)
            self.eap_out = decode_eap(eap)
        except RemoteProtocolError as exc:
            failed = self._radius_failed(str(exc))
            if answer.code == Code.ACCESS_REJECT and self.eap_out is not None:
                # RFC 3579 §2.6.3: the rejected user gets EAP-Failure (ours, to the
                # Identifier of its last response, rather than what the server put there).
                end = EapPacket(EapCode.FAILURE, self.eap_out.identifier)
                failed.payloads = (EapPayload(encode_eap(end)),)
            raise failed from None
        if accepted:
            self.msk, self.stage = answer.msk, "auth"
            self.sa.framed_ip, self.sa.framed_pool = answer.framed_ip, answer.framed_pool

    def process(self, msg: Message, raw: bytes) -> bool:
        if self.initiator:
            return self._process_initiator(msg)
        return self._process_responder(msg)

    def responded(self, raw: bytes) -> None:
        if self.stage == "done":
            self.sa.pending_auth = None
            self.msk = None
            super().responded(raw)

    def failed(self, reason: str) -> None:
        self.sa.pending_auth = None
