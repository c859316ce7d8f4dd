"""RADIUS accounting (RFC 2866) of the road warriors that EAP-RADIUS let in: Start when
their IKE SA is up, Interim-Update every ``interim_interval``, Stop when it goes, with
the bytes and packets of its Child SAs (Acct-Input-* what the client sent us, Acct-
Output-* what we sent it; Gigawords above 2^32, RFC 2869 §5.1).

The daemon tells us about IKE SAs and about the counters of each Child SA it removes
(``child_gone``); ``live`` reads those still installed."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from espfast.control.events import IkeSaUp
from espfast.control.radius import AcctStatus, Attr
from espfast.control.radius.codec import NAS_PORT_TYPE_VIRTUAL, SERVICE_TYPE_FRAMED, Attribute, u32
from espfast.radius import RadiusClient

log = logging.getLogger("espfast.accounting")

# (input octets, output octets, input packets, output packets)
Counts = tuple[int, int, int, int]

# RFC 2866 §5.10 Acct-Terminate-Cause by IkeSaDown.cause
TERMINATE_CAUSE = {"peer": 1, "dpd": 2, "expired": 5, "failed": 9}  # else Admin-Reset (6)


@dataclass
class _Session:
    session_id: str
    user: str
    peer: str
    framed: tuple[str, ...]
    started: float
    classes: tuple[bytes, ...] = ()  # the Access-Accept's Class attributes, echoed
    gone: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # counts of removed SAs
    timer: asyncio.TimerHandle | None = None


class Accounting:
    def __init__(self, client: RadiusClient, loop: asyncio.AbstractEventLoop,
                 live: Callable[[int], Counts]) -> None:  # fmt: skip
        self.client = client
        self.loop = loop
        self.live = live  # ike_sa_id -> the counts of its Child SAs installed now
        self.sessions: dict[int, _Session] = {}

    def up(self, ev: IkeSaUp, classes: tuple[bytes, ...] = ()) -> None:
        peer = f"{ev.peer[0]}[{ev.peer[1]}]"
        session_id = f"{ev.ike_sa_id:016x}-{int(time.time()):x}"
        s = _Session(session_id, ev.remote_id, peer, ev.peer_virtual_ips, time.monotonic(),
                     classes)  # fmt: skip
        self.sessions[ev.ike_sa_id] = s
        self.client.account(self._attrs(s, AcctStatus.START))
        self._arm(ev.ike_sa_id)

    def child_gone(self, ike_sa_id: int, counts: Counts) -> None:
        s = self.sessions.get(ike_sa_id)
        if s is not None:
            s.gone = [a + b for a, b in zip(s.gone, counts, strict=True)]

    def down(self, ike_sa_id: int, cause: str) -> None:
        s = self.sessions.pop(ike_sa_id, None)
        if s is None:
            return
        if s.timer is not None:
            s.timer.cancel()
        counts = self._counts(ike_sa_id, s)
        attrs = self._attrs(s, AcctStatus.STOP, counts)
        attrs.append((Attr.ACCT_TERMINATE_CAUSE, u32(TERMINATE_CAUSE.get(cause, 6))))
        self.client.account(attrs)

    def close(self) -> None:
        for s in self.sessions.values():
            if s.timer is not None:
                s.timer.cancel()

    def _arm(self, ike_sa_id: int) -> None:
        interval = self.client.cfg.interim_interval
        s = self.sessions.get(ike_sa_id)
        if s is not None and interval > 0:
            s.timer = self.loop.call_later(interval, self._interim, ike_sa_id)

    def _interim(self, ike_sa_id: int) -> None:
        s = self.sessions.get(ike_sa_id)
        if s is None:
            return
        self.client.account(self._attrs(s, AcctStatus.INTERIM_UPDATE, self._counts(ike_sa_id, s)))
        self._arm(ike_sa_id)

    def _counts(self, ike_sa_id: int, s: _Session) -> Counts:
        live = self.live(ike_sa_id)
        a, b, c, d = (x + y for x, y in zip(s.gone, live, strict=True))
        return a, b, c, d

    def _attrs(self, s: _Session, status: int, counts: Counts | None = None) -> list[Attribute]:
        attrs: list[Attribute] = [
            (Attr.ACCT_STATUS_TYPE, u32(status)),
            (Attr.ACCT_SESSION_ID, s.session_id.encode()),
            (Attr.USER_NAME, s.user.encode()[:253] or b"?"),
            (Attr.NAS_IDENTIFIER, self.client.cfg.nas_identifier.encode()),
            (Attr.NAS_PORT_TYPE, u32(NAS_PORT_TYPE_VIRTUAL)),
            (Attr.SERVICE_TYPE, u32(SERVICE_TYPE_FRAMED)),
            (Attr.CALLING_STATION_ID, s.peer.encode()),
        ]
        attrs += [(Attr.CLASS, c) for c in s.classes]
        for a in s.framed:
            ip = ipaddress.ip_address(a)
            if ip.version == 4:
                attrs.append((Attr.FRAMED_IP_ADDRESS, ip.packed))
        if counts is not None:
            octets_in, octets_out, packets_in, packets_out = counts
            attrs += [
                (Attr.ACCT_INPUT_OCTETS, u32(octets_in)),
                (Attr.ACCT_OUTPUT_OCTETS, u32(octets_out)),
                (Attr.ACCT_INPUT_GIGAWORDS, u32(octets_in >> 32)),
                (Attr.ACCT_OUTPUT_GIGAWORDS, u32(octets_out >> 32)),
                (Attr.ACCT_INPUT_PACKETS, u32(packets_in)),
                (Attr.ACCT_OUTPUT_PACKETS, u32(packets_out)),
                (Attr.ACCT_SESSION_TIME, u32(int(time.monotonic() - s.started))),
            ]
        return attrs
