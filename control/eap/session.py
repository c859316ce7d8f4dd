"""An EAP conversation as IKEv2 runs it (RFC 7296 §2.16): the server (our gateway)
asks for the identity, runs EAP-MSCHAPv2 and ends with EAP-Success; the peer answers.

Both sides are driven one EAP packet at a time; the outcome is the EAP identity and the
MSK that both ends then use as the shared key of their final AUTH payloads.
"""

from __future__ import annotations

from collections.abc import Callable

from ..constants import IdType
from ..errors import RemoteProtocolError
from ..identity import Identity
from ..rng import Rng
from .message import EapCode, EapPacket, EapType
from .mschapv2 import MschapV2Peer, MschapV2Server, OpCode, parse_failure, unpack

# Requests the server sends at most: Identity, Challenge, Success (and a spare). A peer
# that needs more is stalling.
MAX_ROUNDS = 4
MAX_IDENTITY = 255  # octets of an EAP identity we accept (strongSwan's limit too)

# name -> NT password hash, or None for an unknown user.
UserLookup = Callable[[str], bytes | None]


class EapFailure(RemoteProtocolError):
    """EAP authentication failed. ``user`` (the EAP identity, if known) is for the log;
    the peer learns only AUTHENTICATION_FAILED, never which part failed."""

    def __init__(self, message: str, user: str = "", *, logged: bool = False) -> None:
        super().__init__(message, notify=24)  # AUTHENTICATION_FAILED
        self.user = user
        # The password was wrong (or the user unknown) and the peer has been told with an
        # MS-CHAPv2 Failure request: EAP-Failure goes with the refusal; the failure was
        # already logged when it was found.
        self.eap_failure: EapPacket | None = None
        self.logged = logged


def _identity_text(data: bytes) -> str:
    if not 0 < len(data) <= MAX_IDENTITY or b"\0" in data:
        raise EapFailure(f"EAP identity of {len(data)} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise EapFailure("EAP identity is not UTF-8") from None


def identity_id(identity: str) -> tuple[int, bytes]:
    """The ID (type, data) an EAP identity stands for, read as strongSwan reads one (its
    id syntax; what is not an identity there becomes a KEY_ID)."""
    try:
        return Identity.parse(identity).encode()
    except ValueError:
        return (IdType.KEY_ID, identity.encode())


class ServerMethod:
    """What every EAP server method shares: the requests it sends (numbered from a
    random identifier, at most ``max_rounds``), the peer's EAP identity, the MSK once
    the peer authenticated, and the peer's canonical identity if the method proves one
    beyond the EAP identity (``peer_key``)."""

    method = ""
    max_rounds = MAX_ROUNDS

    def __init__(self, identifier: int) -> None:
        self.identifier = identifier
        self.rounds = 0
        self.identity = ""
        self.msk: bytes | None = None
        self.peer_key: bytes | None = None
        # The peer failed and was told so by the method (EAP-MSCHAPv2's Failure request):
        # the next message ends the conversation.
        self.failed = False

    def _request(self, eap_type: int, data: bytes) -> EapPacket:
        self.rounds += 1
        if self.rounds > self.max_rounds:
            raise EapFailure(f"too many {self.method} rounds", self.identity)
        self.identifier = (self.identifier + 1) & 0xFF
        return EapPacket(EapCode.REQUEST, self.identifier, eap_type, data)

    def start(self) -> EapPacket:
        """The first request: EAP-Request/Identity."""
        return self._request(EapType.IDENTITY, b"")


class EapServer(ServerMethod):
    """The authenticator side: Identity, then EAP-MSCHAPv2 against ``users``."""

    method = "EAP-MSCHAPv2"

    def __init__(self, users: UserLookup, rng: Rng, name: bytes = b"espfast") -> None:
        super().__init__(rng.random_bytes(1)[0])
        self.users = users
        self.rng = rng
        self.name = name
        self._mschap: MschapV2Server | None = None
        self._verified = False

    def process(self, pkt: EapPacket) -> EapPacket:
        """The next packet to send (a Request, or EAP-Success once authenticated);
        EapFailure when the peer does not authenticate (or misbehaves)."""
        if pkt.code != EapCode.RESPONSE or pkt.identifier != self.identifier:
            raise EapFailure("unexpected EAP packet (code or identifier)", self.identity)
        if self.failed:
            # The peer's Failure response (or anything else): EAP-Failure, the end.
            exc = EapFailure("EAP-MSCHAPv2 authentication failed", self.identity, logged=True)
            exc.eap_failure = EapPacket(EapCode.FAILURE, self.identifier)
            raise exc
        if pkt.type == EapType.IDENTITY and self._mschap is None and not self.identity:
            self.identity = _identity_text(pkt.data)
            self._mschap = MschapV2Server(self.rng.random_bytes(16), self.identifier + 1 & 0xFF,
                                          self.name)  # fmt: skip
            return self._request(EapType.MSCHAPV2, self._mschap.challenge_data())
        if pkt.type == EapType.NAK:
            raise EapFailure("the peer refused EAP-MSCHAPv2 (Nak)", self.identity)
        if pkt.type != EapType.MSCHAPV2 or self._mschap is None:
            raise EapFailure(f"unexpected EAP type {pkt.type}", self.identity)
        opcode, ms_id, rest = unpack(pkt.data)
        if opcode == OpCode.RESPONSE and not self._verified:
            if ms_id != self._mschap.ms_id:
                raise EapFailure("EAP-MSCHAPv2 response to another challenge", self.identity)
            peer_challenge, nt_response, name = self._mschap.parse_response(rest)
            known = self.users(self.identity)
            # An unknown user costs the same work as a wrong password and ends the same.
            nt_hash = known if known is not None else self.rng.random_bytes(16)
            success = self._mschap.verify(peer_challenge, nt_response, name, nt_hash)
            if success is None or known is None:
                # draft-kamath §2: a Failure request (E=691 R=0); the peer's Failure
                # response then gets EAP-Failure (below).
                self.failed = True
                failure = self._mschap.failure_data(self.rng.random_bytes(16))
                return self._request(EapType.MSCHAPV2, failure)
            self._verified = True
            return self._request(EapType.MSCHAPV2, success)
        if opcode == OpCode.SUCCESS and self._verified:
            self.msk = self._mschap.msk
            return EapPacket(EapCode.SUCCESS, self.identifier)
        raise EapFailure(f"unexpected EAP-MSCHAPv2 opcode {opcode}", self.identity)


def peer_answer(pkt: EapPacket, identity: str, method: int) -> EapPacket | None:
    """A peer's answer to what is not its method's business (None: a request of
    ``method``): Identity, Notification, a Legacy Nak proposing ``method`` (RFC 3748
    §5.3.1); EapFailure on EAP-Failure or another code."""
    if pkt.code == EapCode.FAILURE:
        raise EapFailure("the server sent EAP-Failure")
    if pkt.code != EapCode.REQUEST:
        raise EapFailure(f"unexpected EAP code {pkt.code}")
    if pkt.type == EapType.IDENTITY:
        return EapPacket(EapCode.RESPONSE, pkt.identifier, EapType.IDENTITY, identity.encode())
    if pkt.type == EapType.NOTIFICATION:
        return EapPacket(EapCode.RESPONSE, pkt.identifier, EapType.NOTIFICATION)
    if pkt.type != method:
        return EapPacket(EapCode.RESPONSE, pkt.identifier, EapType.NAK, bytes([method]))
    return None


class EapPeer:
    """The peer side: our identity, then EAP-MSCHAPv2 with our NT hash."""

    def __init__(self, identity: str, nt_hash: bytes, rng: Rng) -> None:
        self.identity = identity
        self.rounds = 0
        self.msk: bytes | None = None
        self._mschap = MschapV2Peer(identity.encode(), nt_hash, rng.random_bytes(16))
        self._authenticated = False
        self.refused: int | None = None  # a Failure request's error code (E=), once one came

    def process(self, pkt: EapPacket) -> EapPacket | None:
        """Our response to a server packet; None after EAP-Success (``msk`` is set).
        EapFailure on EAP-Failure or a server that does not prove itself."""
        self.rounds += 1
        if self.rounds > MAX_ROUNDS + 1:
            raise EapFailure("too many EAP rounds")
        if pkt.code == EapCode.SUCCESS:
            if not self._authenticated:
                raise EapFailure("EAP-Success before the server proved itself")
            self.msk = self._mschap.msk
            return None
        if pkt.code == EapCode.FAILURE and self.refused is not None:
            raise EapFailure(f"the server refused our EAP-MSCHAPv2 password "
                             f"(error {self.refused})")  # fmt: skip
        answer = peer_answer(pkt, self.identity, EapType.MSCHAPV2)
        if answer is not None:
            return answer
        opcode, ms_id, rest = unpack(pkt.data)
        if opcode == OpCode.CHALLENGE and not self._authenticated:
            return self._response(pkt, EapType.MSCHAPV2, self._mschap.respond(ms_id, rest))
        if opcode == OpCode.SUCCESS and not self._authenticated:
            if not self._mschap.check_success(rest):
                raise EapFailure("the server's EAP-MSCHAPv2 authenticator response is wrong")
            self._authenticated = True
            return self._response(pkt, EapType.MSCHAPV2, bytes([OpCode.SUCCESS]))
        if opcode == OpCode.FAILURE and not self._authenticated and self.refused is None:
            # draft-kamath §2: answer the Failure request; EAP-Failure follows.
            self.refused = parse_failure(rest) or 0
            return self._response(pkt, EapType.MSCHAPV2, bytes([OpCode.FAILURE]))
        raise EapFailure(f"unexpected EAP-MSCHAPv2 opcode {opcode}")

    def _response(self, req: EapPacket, eap_type: int, data: bytes) -> EapPacket:
        return EapPacket(EapCode.RESPONSE, req.identifier, eap_type, data)
