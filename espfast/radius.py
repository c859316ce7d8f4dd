"""The RADIUS client of the gateway: an asyncio UDP socket, retransmission with a
per-server timeout, failover along the configured servers, one identifier space per
server, and a bound on the requests waiting at once (each waiting EAP conversation holds
a half-open IKE SA; a slow server must not pile up state without end).

The messages themselves are espfast.control.radius (sans-I/O). Answers are believed only
from the server asked, to the identifier asked, with a Response Authenticator and a
Message-Authenticator that verify; anything else is counted and dropped. The shared
secrets never reach a log line or a repr.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

from espfast.control.radius import RadiusAnswer, RadiusError, answer_of
from espfast.control.radius.codec import (
    Attribute,
    Code,
    Packet,
    Request,
    access_request,
    accounting_request,
    verify_answer,
)

if TYPE_CHECKING:
    from espfast.config import Table, _KeySources

log = logging.getLogger("espfast.radius")

Addr = tuple[str, int]


@dataclass(frozen=True)
class RadiusServer:
    address: Addr  # authentication (1812)
    secret: bytes = field(repr=False)
    acct_port: int = 1813


@dataclass(frozen=True)
class RadiusConfig:
    servers: tuple[RadiusServer, ...]
    timeout: float = 2.0  # seconds before the first retransmission to a server
    retransmit_tries: int = 2  # retransmissions to one server before the next is tried
    accounting: bool = False
    interim_interval: float = 0.0  # seconds between interim updates (0: none)
    max_pending: int = 256  # requests waiting for an answer at once, all servers
    nas_identifier: str = "espfast"


@dataclass
class RadiusCounters:
    """What the RADIUS client did (printed at exit, served as espfast_radius_*_total)."""

    requests: int = 0  # requests sent to a server (Access and Accounting; not retransmits)
    accepts: int = 0  # verified Access-Accepts
    rejects: int = 0  # verified Access-Rejects
    challenges: int = 0  # verified Access-Challenges (a step of the EAP conversation)
    accounting_sent: int = 0  # accounting records (Start, Interim-Update, Stop) to send
    accounting_answered: int = 0  # ... that a server acknowledged
    retransmits: int = 0
    timeouts: int = 0  # a server that did not answer a request (then the next one)
    failovers: int = 0
    dropped_unknown: int = 0  # from no server we asked, or to no identifier waiting
    dropped_forged: int = 0  # authenticators that do not verify, malformed answers
    refused_busy: int = 0  # max_pending reached: failed at once


MAX_QUEUED = 8  # unchecked answers waiting for one request; more are dropped
Build = Callable[["RadiusServer", int], Request]  # (server, identifier) -> the request


class _Pending:
    def __init__(self, server: RadiusServer, request_data: bytes) -> None:
        self.server = server
        self.data = request_data
        # Answers to check, in arrival order (forgeries among them are dropped there);
        # bounded, as anyone may send them.
        self.answers: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED)


class RadiusClient(asyncio.DatagramProtocol):
    def __init__(
        self, cfg: RadiusConfig, random_bytes: Callable[[int], bytes] = os.urandom
    ) -> None:
        self.cfg = cfg
        self.random_bytes = random_bytes
        self.counters = RadiusCounters()
        self.transport: asyncio.DatagramTransport | None = None
        self.current = 0  # the server that answered last: asked first
        self._next_id: dict[Addr, int] = {}
        self._pending: dict[tuple[Addr, int], _Pending] = {}
        self._waiting = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def open(self, local: str = "") -> None:
        """Bind the socket (to ``local``, else the wildcard: each server is then asked
        from the address the route to it gives, the one its clients.conf knows)."""
        loop = asyncio.get_running_loop()
        v6 = ":" in self.cfg.servers[0].address[0]
        family = socket.AF_INET6 if v6 else socket.AF_INET
        bind = local or ("::" if v6 else "0.0.0.0")  # noqa: S104  # a client's port
        await loop.create_datagram_endpoint(lambda: self, local_addr=(bind, 0), family=family)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (asyncio's datagram transports do not all derive from DatagramTransport)
        self.transport = cast(asyncio.DatagramTransport, transport)

    async def drain(self, timeout: float) -> None:
        """Wait (at most ``timeout``) for the requests under way, e.g. the accounting
        Stops of a shutdown."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout)

    def close(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        if self.transport is not None:
            self.transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if len(data) < 20:
            self.counters.dropped_unknown += 1
            return
        key = ((str(addr[0]), int(str(addr[1]))), data[1])
        p = self._pending.get(key)
        if p is None or p.answers.full():
            self.counters.dropped_unknown += 1
            return
        p.answers.put_nowait(bytes(data))

    # -- the two kinds of request ------------------------------------------------------
    def access(self, attrs: list[Attribute], done: Callable[[RadiusAnswer], None]) -> None:
        """Send an Access-Request with ``attrs``; ``done`` gets the verified answer (or
        RadiusAnswer(None) when no server answered or too many wait already)."""
        if self._waiting >= self.cfg.max_pending:
            self.counters.refused_busy += 1
            done(RadiusAnswer(None, reason="too many RADIUS requests waiting"))
            return
        self._spawn(self._access(attrs, done))

    def account(self, attrs: list[Attribute]) -> None:
        """Send an Accounting-Request (fire and forget; retransmitted and failed over)."""
        if not self.cfg.accounting:
            return
        if self._waiting >= self.cfg.max_pending:
            self.counters.refused_busy += 1
            return
        self._spawn(self._account(attrs))

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        self._waiting += 1  # counted from now: a burst of requests meets the bound at once
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._waiting -= 1
        self._tasks.discard(task)

    async def _access(self, attrs: list[Attribute], done: Callable[[RadiusAnswer], None]) -> None:
        auth = self.random_bytes(16)
        try:
            result = await self._exchange(
                lambda s, ident: access_request(ident, auth, s.secret, attrs), lambda s: s.address
            )
        except (OSError, ValueError) as e:  # e.g. no route, or attributes too long
            log.warning("cannot send an Access-Request: %s", e)
            result = None
        if result is None:
            done(RadiusAnswer(None, reason="no RADIUS server answered"))
            return
        packet, server = result
        if packet.code == Code.ACCESS_ACCEPT:
            self.counters.accepts += 1
        elif packet.code == Code.ACCESS_REJECT:
            self.counters.rejects += 1
        elif packet.code == Code.ACCESS_CHALLENGE:
            self.counters.challenges += 1
        try:
            done(answer_of(packet, server.secret, auth))
        except RadiusError as e:
            done(RadiusAnswer(None, reason=str(e)))

    async def _account(self, attrs: list[Attribute]) -> None:
        self.counters.accounting_sent += 1
        result = await self._exchange(
            lambda s, ident: accounting_request(ident, s.secret, attrs),
            lambda s: (s.address[0], s.acct_port),
        )
        if result is None:
            log.warning("no RADIUS accounting server answered")
        else:
            self.counters.accounting_answered += 1

    async def _exchange(self, build: Build, dest: Callable[[RadiusServer], Addr]
                        ) -> tuple[Packet, RadiusServer] | None:  # fmt: skip
        """Ask the servers in turn, from the one that answered last; the verified answer
        and its server, or None."""
        n = len(self.cfg.servers)
        for step in range(n):
            index = (self.current + step) % n
            server = self.cfg.servers[index]
            answer = await self._ask(server, dest(server), build)
            if answer is not None:
                if step:
                    self.counters.failovers += 1
                self.current = index
                return answer, server
        return None

    async def _ask(self, server: RadiusServer, addr: Addr, build: Build) -> Packet | None:
        ident = self._identifier(addr)
        if ident is None:
            return None
        request = build(server, ident)
        key = (addr, ident)
        pending = self._pending[key] = _Pending(server, request.data)
        self.counters.requests += 1
        timeout = self.cfg.timeout
        try:
            for attempt in range(self.cfg.retransmit_tries + 1):
                if attempt:
                    self.counters.retransmits += 1
                assert self.transport is not None
                try:
                    self.transport.sendto(pending.data, addr)
                except OSError as e:  # no route to it: the next server
                    log.warning("cannot send to RADIUS server %s:%d: %s", addr[0], addr[1], e)
                    return None
                deadline = asyncio.get_running_loop().time() + timeout
                while True:
                    left = deadline - asyncio.get_running_loop().time()
                    if left <= 0:
                        break
                    try:
                        data = await asyncio.wait_for(pending.answers.get(), left)
                    except TimeoutError:
                        break
                    try:
                        return verify_answer(data, request, server.secret)
                    except RadiusError as e:
                        self.counters.dropped_forged += 1
                        log.debug("RADIUS answer from %s dropped: %s", addr[0], e)  # counted
                timeout *= 2
            self.counters.timeouts += 1
            log.warning("RADIUS server %s:%d did not answer", addr[0], addr[1])
            return None
        finally:
            del self._pending[key]

    def _identifier(self, addr: Addr) -> int | None:
        """A free identifier of ``addr``'s space (RFC 2865 §3: unique per outstanding
        request to one server and port)."""
        start = self._next_id.get(addr, self.random_bytes(1)[0])
        for i in range(256):
            ident = (start + i) & 0xFF
            if (addr, ident) not in self._pending:
                self._next_id[addr] = (ident + 1) & 0xFF
                return ident
        return None


def parse_radius(t: Table, keys: _KeySources) -> RadiusConfig:
    """The [radius] table of an ``espfast up`` config (names as strongSwan's eap-radius)."""
    from espfast.config import Table, _seconds, _secret, parse_endpoint

    value = t.get("servers")
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise t.error("servers", "must be a list of tables ({address = ..., secret_file = ...})")
    servers = []
    for i, item in enumerate(value):
        st = Table(item, f"{t.path('servers')}[{i}]", t.source)
        address = parse_endpoint(st, "address", st.get_str("address", required=True), 1812)
        text, where = _secret(st, "secret", keys)
        secret = (text.rstrip("\r\n") if where.endswith("_file") else text).encode()
        if not secret:
            raise st.error(where, "is empty")
        acct = st.get_int("acct_port", 1813, 1, 65535)
        st.done()
        servers.append(RadiusServer(address, secret, acct))
    cfg = RadiusConfig(
        servers=tuple(servers),
        timeout=_seconds(t, "timeout", 2.0),
        retransmit_tries=t.get_int("retransmit_tries", 2, 0, 10),
        accounting=t.get_bool("accounting", False),
        interim_interval=_seconds(t, "interim_interval", 0.0),
        max_pending=t.get_int("max_pending", 256, 1, 65536),
        nas_identifier=t.get_str("nas_identifier", "espfast"),
    )
    if cfg.timeout <= 0:
        raise t.error("timeout", "must be > 0")
    t.done()
    return cfg
