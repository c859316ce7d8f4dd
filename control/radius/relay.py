"""EAP relayed to a RADIUS server (RFC 3579), the gateway's side, sans-I/O.

  client (IKE_AUTH, EAP payload)     gateway (NAS)            RADIUS server
  EAP-Response/Identity       -->    Access-Request { User-Name, EAP-Message, M-A } -->
                              <--    <-- Access-Challenge { EAP-Message, State, M-A }
  EAP-Response/...            -->    Access-Request { ..., State (echoed), M-A }    -->
   ...
  EAP-Success                 <--    <-- Access-Accept { EAP-Message, MS-MPPE-*-Key,
                                                          Framed-IP-Address, M-A }

The EAP method runs between the client and the server; the gateway only checks that what
it relays is an EAP packet and that the server's answers are authentic (codec.py). The
I/O shell sends the attributes this builds and hands back a ``RadiusAnswer``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ..eap.message import EapCode, decode_eap
from ..errors import RemoteProtocolError
from .codec import (
    NAS_PORT_TYPE_VIRTUAL,
    SERVICE_TYPE_FRAMED,
    Attr,
    Attribute,
    Code,
    Packet,
    eap_attributes,
    eap_message,
    framed_ip,
    msk,
    u32,
)

MAX_RELAY_ROUNDS = 50  # Access-Challenges per conversation (EAP-TLS needs a dozen or so)
MAX_STATE = 253


@dataclass(frozen=True)
class RadiusAnswer:
    """A verified answer, as the control plane needs it. ``code`` None: no server
    answered (all timed out, or the shell had no room for another conversation)."""

    code: int | None
    eap: bytes = b""
    state: bytes | None = None
    msk: bytes | None = field(default=None, repr=False)
    framed_ip: ipaddress.IPv4Address | None = None
    framed_pool: str = ""
    classes: tuple[bytes, ...] = ()
    reason: str = ""


def answer_of(p: Packet, secret: bytes, req_auth: bytes) -> RadiusAnswer:
    """What a verified Access answer says (the shell calls this: the MPPE keys need the
    secret and the authenticator of our request)."""
    state = p.get(Attr.STATE)
    if p.code == Code.ACCESS_ACCEPT:
        pool = p.get(Attr.FRAMED_POOL)
        return RadiusAnswer(p.code, eap_message(p), state, msk(p, secret, req_auth),
                            framed_ip(p), pool.decode("utf-8", "replace") if pool else "",
                            tuple(p.all(Attr.CLASS)))  # fmt: skip
    return RadiusAnswer(p.code, eap_message(p), state)


class RadiusRelay:
    """One EAP conversation relayed for one IKE SA: the attributes of each Access-Request
    (the server's State echoed, RFC 2865 §5.24) and the checks on each answer."""

    def __init__(self, nas_id: str, calling: str, called: str) -> None:
        self.nas_id = nas_id
        self.calling = calling  # the client's address, Calling-Station-Id
        self.called = called  # ours, Called-Station-Id
        self.user = b""
        self.state: bytes | None = None
        self.rounds = 0
        self.classes: tuple[bytes, ...] = ()

    def request(self, eap: bytes, user: bytes) -> list[Attribute]:
        """The attributes of the Access-Request carrying the client's EAP ``eap``."""
        self.user = user
        attrs: list[Attribute] = [
            (Attr.USER_NAME, user),
            (Attr.SERVICE_TYPE, u32(SERVICE_TYPE_FRAMED)),
            (Attr.NAS_PORT_TYPE, u32(NAS_PORT_TYPE_VIRTUAL)),
            (Attr.NAS_IDENTIFIER, self.nas_id.encode()),
            (Attr.CALLED_STATION_ID, self.called.encode()),
            (Attr.CALLING_STATION_ID, self.calling.encode()),
            *eap_attributes(eap),
        ]
        if self.state is not None:
            attrs.append((Attr.STATE, self.state))
        return attrs

    def answered(self, a: RadiusAnswer) -> tuple[bytes, bool]:
        """(the EAP packet to send the client, whether the user is authenticated).
        RemoteProtocolError for a rejection, a server that is gone, or an answer that
        does not make sense."""
        if a.code is None:
            raise RemoteProtocolError(a.reason or "no RADIUS server answered")
        if a.code == Code.ACCESS_REJECT:
            raise RemoteProtocolError("the RADIUS server rejected the user")
        if not a.eap:
            raise RemoteProtocolError("RADIUS answer without an EAP-Message")
        pkt = decode_eap(a.eap)
        if a.code == Code.ACCESS_CHALLENGE:
            self.rounds += 1
            if self.rounds > MAX_RELAY_ROUNDS:
                raise RemoteProtocolError("too many RADIUS challenges")
            if pkt.code != EapCode.REQUEST:
                raise RemoteProtocolError("Access-Challenge without an EAP-Request")
            if a.state is not None and len(a.state) > MAX_STATE:
                raise RemoteProtocolError("RADIUS State too long")
            self.state = a.state
            return a.eap, False
        if a.code != Code.ACCESS_ACCEPT or pkt.code != EapCode.SUCCESS:
            raise RemoteProtocolError("Access-Accept without EAP-Success")
        if a.msk is None or len(a.msk) < 32:
            raise RemoteProtocolError("Access-Accept without MS-MPPE keys (no MSK)")
        self.classes = a.classes
        return a.eap, True
