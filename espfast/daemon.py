"""The IKEv2 daemon behind ``espfast up``: an asyncio I/O shell around espfast.control.

The control plane is sans-I/O (see espfast/control/__init__.py); this module owns
everything else: the UDP 500 socket, the UDP 4500 socket (shared with the dataplane: IKE
arrives through ``Dataplane.recv_ike`` and leaves through ``send_ike``, which add and strip
the non-ESP marker), one timer per IKE SA on the event loop, the TUN device
(espfast/tun.py), and turning control-plane events into dataplane calls:

    ChildSaUp           -> add_sa(inbound), add_sa(outbound), route the remote prefixes
    ChildSaRekeyed      -> the new SAs first (the newest outbound SA with the same
                           selectors takes over), then the old outbound SA; the old inbound
                           SA lingers REKEY_GRACE seconds for packets already in flight
    ChildSaDown         -> remove_sa both directions (the dataplane zeroes the keys)
    PeerAddressChanged  -> update_peer on the IKE SA's outbound SAs

:class:`Daemon` is the shell without the sockets (it is handed a dataplane, a route
function and a sender for port 500), so two of them can be tested against each other in
memory; espfast/up.py (the ``espfast up`` command) adds the sockets, TUN device and signals.

Today: PSK or certificate authentication, initiating at start (``remote`` set) and
answering (any connection), Child SA rekeying after ``rekey_time``, dead-peer detection
every ``dpd_delay``, initiating again (with backoff) when an IKE SA it initiated ends.
Not yet: IKE SA rekeying, an ``espfast status`` socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from espfast.control.errors import RemoteProtocolError
from espfast.control.events import (
    ChildSaDown,
    ChildSaFailed,
    ChildSaRekeyed,
    ChildSaUp,
    Event,
    IkeSaDown,
    IkeSaUp,
    PeerAddressChanged,
    TrafficSelector,
)
from espfast.control.ike_sa import IkeSa
from espfast.control.message import parse_header
from espfast.control.responder import Responder
from espfast.control.rng import Rng
from espfast.dataplane import Direction, SaParams, Transform

if TYPE_CHECKING:
    from espfast.config import ConnectionConfig, UpConfig

log = logging.getLogger(__name__)

Addr = tuple[str, int]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IKE_PORT, NATT_PORT = 500, 4500
REKEY_GRACE = 2.0  # seconds the old inbound SA stays after a rekey
SHUTDOWN_TIMEOUT = 3.0  # seconds to wait for the peers to confirm our DELETEs
RETRY_DELAY, RETRY_MAX = 5.0, 120.0  # seconds before initiating again; doubling up to this


class DataplaneLike(Protocol):
    """What the daemon needs of espfast.dataplane.Dataplane (a fake in unit tests)."""

    def add_sa(self, sa: SaParams) -> None: ...
    def remove_sa(self, spi: int, direction: Direction) -> None: ...
    def update_peer(self, spi: int, peer: tuple[str, int]) -> None: ...
    def send_ike(self, data: bytes, peer: tuple[str, int]) -> None: ...


@dataclass
class Counters:
    datagrams_in: int = 0
    datagrams_out: int = 0
    malformed: int = 0
    child_sas_installed: int = 0
    child_sas_removed: int = 0
    child_sas_rekeyed: int = 0
    event_errors: int = 0
    ike_sas_up: int = 0
    ike_sas_down: int = 0


@dataclass
class _Child:
    ike_sa_id: int
    spi_out: int
    rekey: asyncio.TimerHandle | None = None


@dataclass
class Daemon:
    """The I/O shell's logic, handed its I/O: see the module docstring."""

    config: UpConfig
    dataplane: DataplaneLike
    add_routes: Callable[[Iterable[IPNetwork]], None]
    send_500: Callable[[bytes, Addr], None]
    rng: Rng
    loop: asyncio.AbstractEventLoop
    counters: Counters = field(default_factory=Counters)
    sas: dict[int, IkeSa] = field(default_factory=dict)  # by our SPI
    children: dict[int, _Child] = field(default_factory=dict)  # by inbound SPI
    rekey_grace: float = REKEY_GRACE
    retry_delay: float = RETRY_DELAY
    _stopping: bool = False
    _retries: dict[str, int] = field(default_factory=dict)  # by connection name
    _retry_timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    _timers: dict[int, asyncio.TimerHandle] = field(default_factory=dict)  # by our SPI
    _dpd: dict[int, asyncio.TimerHandle] = field(default_factory=dict)  # by ike_sa_id
    _by_id: dict[int, IkeSa] = field(default_factory=dict)  # by ike_sa_id
    _rekeying: set[int] = field(default_factory=set)  # inbound SPIs we started a rekey of
    _front: Responder | None = None
    _down: asyncio.Event = field(default_factory=asyncio.Event)

    def _conn(self, ike_sa_id: int) -> ConnectionConfig | None:
        sa = self._by_id.get(ike_sa_id)
        return None if sa is None else self._conn_named(sa.config.name)

    def _conn_named(self, name: str) -> ConnectionConfig | None:
        return next((c for c in self.config.connections if c.ike.name == name), None)

    def _keep(self, key: int, sa: IkeSa) -> None:
        self.sas[key] = sa
        self._by_id[sa.ike_sa_id] = sa

    @property
    def local(self) -> str:
        return self.config.interface.listen[0]

    def start(self) -> None:
        """Open the front door for peers, and initiate every connection with a remote."""
        confs = [c.ike for c in self.config.connections]
        self._front = Responder(confs, (self.local, IKE_PORT), self.rng)
        for conn in self.config.connections:
            if conn.remote is not None:
                self.initiate(conn)

    def initiate(self, conn: ConnectionConfig) -> IkeSa:
        assert conn.remote is not None
        sa = IkeSa.initiate(
            conn.ike,
            local=(self.local, IKE_PORT),
            remote=conn.remote,
            rng=self.rng,
            now=self.loop.time(),
        )
        self._keep(sa.spi_i, sa)
        log.info("%s: initiating to %s", conn.name, conn.remote[0])
        self._service(sa)
        return sa

    # -- input ---------------------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Addr, port: int) -> None:
        """An IKE datagram that arrived on our ``port`` (500, or 4500 without its marker)."""
        self.counters.datagrams_in += 1
        now = self.loop.time()
        try:
            header = parse_header(data)
        except RemoteProtocolError as e:
            self.counters.malformed += 1
            log.debug("dropped a malformed IKE datagram from %s: %s", addr[0], e)
            return
        # The I flag says who sent it: the original initiator talks to our responder SPI.
        ours = header.spi_r if header.from_initiator else header.spi_i
        sa = self.sas.get(ours)
        if sa is not None:
            sa.receive_datagram(data, addr, now, local=(self.local, port))
            self._service(sa)
            return
        assert self._front is not None
        new = self._front.receive_datagram(data, addr, now, local=(self.local, port))
        self._flush_front(now)
        if new is not None:
            self._keep(new.spi_r, new)
            self._service(new)

    def _flush_front(self, now: float) -> None:
        assert self._front is not None
        for out, addr in self._front.datagrams_to_send(now):
            self._send(out, addr, IKE_PORT)

    # -- output, timers and events ---------------------------------------------------------

    def _send(self, data: bytes, addr: Addr, local_port: int) -> None:
        self.counters.datagrams_out += 1
        try:
            if local_port == NATT_PORT:
                self.dataplane.send_ike(data, addr)
            else:
                self.send_500(data, addr)
        except OSError as e:  # e.g. no route yet: the SA's retransmission timer retries
            log.warning("cannot send IKE to %s: %s", addr[0], e)

    def _service(self, sa: IkeSa) -> None:
        """After any input or timer: act on the SA's events, send what it wants sent,
        re-arm its timer, forget it once destroyed. Events first: a Child SA is in the
        dataplane before the answer that lets the peer use it leaves."""
        while (event := sa.next_event()) is not None:
            try:
                self._on_event(event)
            except (ValueError, OSError) as e:  # e.g. the dataplane refused an SA
                self.counters.event_errors += 1
                log.error("%s: cannot act on %s: %s", sa.config.name, type(event).__name__, e)
        now = self.loop.time()
        for data, addr in sa.datagrams_to_send(now):
            self._send(data, addr, sa.local[1])
        key = sa.spi_i if sa.initiator else sa.spi_r
        handle = self._timers.pop(key, None)
        if handle is not None:
            handle.cancel()
        if sa.is_destroyed:
            self.sas.pop(key, None)
            self._by_id.pop(sa.ike_sa_id, None)
            dpd = self._dpd.pop(sa.ike_sa_id, None)
            if dpd is not None:
                dpd.cancel()
            if sa.initiator:
                self._schedule_retry(sa.config.name)
            if not self.sas:
                self._down.set()
            return
        when = sa.get_timer()
        if when is not None:
            self._timers[key] = self.loop.call_at(when, self._on_timer, sa)

    def _on_timer(self, sa: IkeSa) -> None:
        sa.handle_timer(self.loop.time())
        self._service(sa)

    def _on_event(self, event: Event) -> None:
        match event:
            case IkeSaUp():
                self.counters.ike_sas_up += 1
                self._schedule_dpd(event.ike_sa_id)
                conn = self._conn(event.ike_sa_id)
                if conn is not None:
                    self._retries.pop(conn.ike.name, None)
                log.warning(
                    "%s: IKE SA up with %s (%s), %s",
                    event.name,
                    event.peer[0],
                    event.remote_id,
                    event.algorithms,
                )
            case ChildSaUp():
                self._install(event)
            case ChildSaRekeyed():
                self._install(event.new)
                self._remove(event.old_spi_out, Direction.OUT)
                old = self.children.pop(event.old_spi_in, None)
                if old is not None and old.rekey is not None:
                    old.rekey.cancel()
                self.counters.child_sas_rekeyed += 1
                self.loop.call_later(self.rekey_grace, self._remove, event.old_spi_in, Direction.IN)
                if event.old_spi_in in self._rekeying:
                    # RFC 7296 §2.8: who started the rekey deletes the old SA; the peer
                    # (strongSwan, for one) moves its outbound traffic when it sees that.
                    self._rekeying.discard(event.old_spi_in)
                    sa = self._by_id.get(event.ike_sa_id)
                    if sa is not None:  # _service sends it once the events are done
                        sa.delete_child(event.old_spi_in, self.loop.time())
            case ChildSaDown():
                self._uninstall(event.spi_in)
                log.warning("%s: child SA %08x down %s", event.name, event.spi_in, event.reason)
            case ChildSaFailed():
                log.warning("%s: child SA failed: %s", event.name, event.reason)
            case PeerAddressChanged():
                for child in self.children.values():
                    if child.ike_sa_id == event.ike_sa_id:
                        self.dataplane.update_peer(child.spi_out, event.peer)
            case IkeSaDown():
                self.counters.ike_sas_down += 1
                for spi_in, child in list(self.children.items()):
                    if child.ike_sa_id == event.ike_sa_id:
                        self._uninstall(spi_in)
                log.warning("%s: IKE SA down: %s", event.name, event.reason)

    def _install(self, ev: ChildSaUp) -> None:
        local, remote = _networks(ev.local_ts), _networks(ev.remote_ts)
        transform = Transform(ev.transform)

        def params(d: Direction, spi: int, enc: bytes, integ: bytes) -> SaParams:
            return SaParams(
                spi=spi,
                direction=d,
                transform=transform,
                enc_key=enc,
                integ_key=integ,
                local_ts=local,
                remote_ts=remote,
                peer=ev.peer if d is Direction.OUT else None,
                esn=ev.esn,
            )

        self.dataplane.add_sa(params(Direction.IN, ev.spi_in, ev.enc_key_in, ev.integ_key_in))
        try:
            self.dataplane.add_sa(
                params(Direction.OUT, ev.spi_out, ev.enc_key_out, ev.integ_key_out)
            )
        except ValueError:
            self._remove(ev.spi_in, Direction.IN)
            raise
        self.children[ev.spi_in] = _Child(ev.ike_sa_id, ev.spi_out, self._schedule_rekey(ev))
        self.counters.child_sas_installed += 1
        self.add_routes(remote)
        log.warning(
            "%s: child SA up, %s, in %08x out %08x, %s === %s",
            ev.name,
            transform,
            ev.spi_in,
            ev.spi_out,
            ", ".join(map(str, local)),
            ", ".join(map(str, remote)),
        )

    def _schedule_rekey(self, ev: ChildSaUp) -> asyncio.TimerHandle | None:
        conn = self._conn(ev.ike_sa_id)
        seconds = conn.rekey_time.get(ev.name, 0) if conn is not None else 0
        if not seconds:
            return None
        # Up to 10% early, at random: two ends with the same rekey_time rarely collide.
        delay = seconds * (1 - 0.1 * self.rng.random_bytes(1)[0] / 255)
        return self.loop.call_later(delay, self._rekey, ev.ike_sa_id, ev.spi_in)

    def _rekey(self, ike_sa_id: int, spi_in: int) -> None:
        sa = self._by_id.get(ike_sa_id)
        if sa is None or spi_in not in self.children or spi_in not in sa.children:
            return
        log.info("%s: rekeying child SA %08x", sa.config.name, spi_in)
        self._rekeying.add(spi_in)
        sa.rekey_child(spi_in, self.loop.time())
        self._service(sa)

    def _schedule_retry(self, name: str) -> None:
        """A connection we initiate keeps trying: again after retry_delay, doubling each
        failed attempt up to RETRY_MAX (a successful IKE SA resets it)."""
        conn = self._conn_named(name)
        if self._stopping or conn is None or conn.remote is None or name in self._retry_timers:
            return
        attempt = self._retries.get(name, 0)
        self._retries[name] = attempt + 1
        delay = min(self.retry_delay * 2**attempt, RETRY_MAX)
        log.warning("%s: initiating again in %.0f s", name, delay)
        self._retry_timers[name] = self.loop.call_later(delay, self._retry, conn)

    def _retry(self, conn: ConnectionConfig) -> None:
        self._retry_timers.pop(conn.ike.name, None)
        if not self._stopping:
            self.initiate(conn)

    def _schedule_dpd(self, ike_sa_id: int) -> None:
        conn = self._conn(ike_sa_id)
        if conn is not None and conn.dpd_delay:
            self._dpd[ike_sa_id] = self.loop.call_later(conn.dpd_delay, self._check, ike_sa_id)

    def _check(self, ike_sa_id: int) -> None:
        """Dead peer detection (RFC 7296 §2.4): an empty INFORMATIONAL every dpd_delay; a
        peer that never answers ends the IKE SA through the retransmission timeout."""
        sa = self._by_id.get(ike_sa_id)
        if sa is None or sa.is_destroyed:
            return
        if sa.is_established:
            sa.check_liveness(self.loop.time())
            self._service(sa)
        self._schedule_dpd(ike_sa_id)

    def _uninstall(self, spi_in: int) -> None:
        child = self.children.pop(spi_in, None)
        if child is None:
            return
        if child.rekey is not None:
            child.rekey.cancel()
        self._rekeying.discard(spi_in)
        self._remove(spi_in, Direction.IN)
        self._remove(child.spi_out, Direction.OUT)
        self.counters.child_sas_removed += 1

    def _remove(self, spi: int, direction: Direction) -> None:
        with contextlib.suppress(ValueError):  # already gone
            self.dataplane.remove_sa(spi, direction)

    # -- shutdown ----------------------------------------------------------------------------

    async def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Delete every IKE SA (INFORMATIONAL { D }) and wait, bounded, for the answers."""
        self._stopping = True
        for handle in self._retry_timers.values():
            handle.cancel()
        now = self.loop.time()
        for sa in list(self.sas.values()):
            sa.delete(now)
            self._service(sa)
        if self.sas:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._down.wait(), timeout)
        for handle in [*self._timers.values(), *self._dpd.values()]:
            handle.cancel()
        for spi_in in list(self.children):
            self._uninstall(spi_in)


def _networks(selectors: tuple[TrafficSelector, ...]) -> tuple[IPNetwork, ...]:
    nets: list[IPNetwork] = []
    for ts in selectors:
        if ts.ip_protocol or (ts.start_port, ts.end_port) != (0, 65535):
            log.warning("traffic selector %s: the dataplane matches addresses only", ts)
        nets.extend(ts.networks())
    return tuple(nets)
