"""The IKEv2 daemon behind ``espfast up``: an asyncio I/O shell around espfast.control.

The control plane is sans-I/O (see espfast/control/__init__.py); this module owns
everything else: the UDP 500 socket, the UDP 4500 socket (shared with the dataplane: IKE
arrives through ``Dataplane.recv_ike`` and leaves through ``send_ike``, which add and strip
the non-ESP marker), the timer on the event loop, the TUN device
(espfast/tun.py), and turning control-plane events into dataplane calls:

    ChildSaUp           -> add_sa(inbound), add_sa(outbound), route the remote prefixes
    ChildSaRekeyed      -> make-before-break (RFC 7296 §2.8): the new inbound SA at once;
                           the new outbound SA (the newest outbound SA with the same
                           selectors takes over, the old outbound SA goes) only once the
                           peer is known to have its inbound half: at once when we sent the
                           request (the peer installed it before answering), else on
                           evidence: the first packet on the new inbound SA (the peer
                           switched, so it has our answer) or the old Child SA's DELETE.
                           Never on a timer: the rekey's responder learns the new keys
                           before the initiator does, and when its answer is lost the
                           initiator only learns them from a retransmission, seconds later.
                           The old inbound SA stays until the old Child SA is deleted, then
                           REKEY_GRACE seconds more for packets in flight.
    ChildSaClosing      -> we are deleting it: its outbound SA goes at once (an older one
                           with the same selectors, if any, takes over), as the peer drops
                           its inbound half when our DELETE arrives
    ChildSaDown         -> remove_sa both directions (the dataplane zeroes the keys); its
                           routes are withdrawn unless a trap or another Child SA needs them
    IkeSaDown           -> the same for each of its Child SAs; strongSwan's dpd_action /
                           close_action are IkeManager's: "restart" negotiates again there,
                           "trap" leaves a trap (routes stay into the TUN device)
    PeerAddressChanged  -> update_peer on the IKE SA's Child SAs (both directions, framing),
                           and the peer of a rekeyed Child SA's outbound SA still waiting
                           to be switched to
    (every SA)          -> owned by its connection and the peer's canonical identity
                           (IkeSa.peer_key): the dataplane refuses an outbound SA that
                           would take over another owner's route (SelectorConflict, counted
                           in sa_conflicts), and we delete that Child SA; only the same
                           owner's Child SAs are each other's rekeys and twins
    IkeSaUp/IkeSaDown   -> the virtual IPs the peer gave us go on the TUN device while an
                           IKE SA holds them (``set_addresses``)

Every TRAFFIC_INTERVAL seconds the shell reads the dataplane's counters (of at most
READ_PER_TICK Child SAs, in turn, so that a tick costs the same with 10,000): each Child SA's
bytes, packets and outbound sequence number go to the control plane (``child_traffic``:
rekey_bytes, rekey_packets, sequence-number exhaustion), inbound packets count as a sign
of life for dead peer detection. An idle tunnel is not read: after a read that found no
counter changed, the shell asks the dataplane for a notice of the next packet
(Dataplane.watch_traffic, sent by the C workers on the IKE fd), reads once more (what
moved before the request), and if still nothing moved stops until that notice, which
starts the reads again (``traffic_moved``). Every change the reads act on is a packet that
moved, so nothing is missed; an idle daemon wakes only for its own timers.

Traps (start_action / dpd_action / close_action = trap) keep their routes into the TUN
device; the dataplane reports the destinations of inner packets that found no SA
(Dataplane.take_no_sa, rate-limited in C), and :meth:`traffic_without_sa` acquires the
traps whose remote prefixes hold one (IkeManager.acquire, idempotent while the
negotiation runs).

:class:`Daemon` is the shell without the sockets (it is handed a dataplane, a route
function and a sender for port 500), so two of them can be tested against each other in
memory; espfast/up.py (the ``espfast up`` command) adds the sockets, TUN device and signals.

The IKE SAs live behind espfast.control.manager.IkeManager (dispatch by SPI, the responder
front door, IKE SA rekeying and reauthentication, Child SA lifetimes, dead peer detection,
strongSwan's dpd/close actions); this shell adds one loop timer for it, initiating again
(with backoff) when an IKE SA it initiated ends with nothing restarting it, and the status
document for ``espfast status`` (espfast/ctl.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import ipaddress
import logging
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, TypeVar

from espfast import __version__
from espfast.control.errors import RemoteProtocolError
from espfast.control.events import (
    ChildSaClosing,
    ChildSaDown,
    ChildSaFailed,
    ChildSaRekeyed,
    ChildSaUp,
    Event,
    IkeSaDown,
    IkeSaReauthenticating,
    IkeSaRekeyed,
    IkeSaUp,
    PeerAddressChanged,
    RadiusRequest,
    TrafficSelector,
)
from espfast.control.ike_sa import IkeSa
from espfast.control.manager import IkeManager
from espfast.control.message import parse_header
from espfast.control.radius import RadiusAnswer
from espfast.control.rng import Rng
from espfast.ctl import (
    SCHEMA_VERSION,
    DaemonStatus,
    IkeSaStatus,
    StatusDocument,
    child_sa_status,
)
from espfast.dataplane import Direction, SaParams, SaStats, SelectorConflict, Transform
from espfast.logfmt import event as logged
from espfast.mobility import is_wildcard, source_for
from espfast.static import fmt_endpoint

if TYPE_CHECKING:
    from espfast.accounting import Accounting
    from espfast.config import ConnectionConfig, UpConfig
    from espfast.radius import RadiusClient

log = logging.getLogger(__name__)
K = TypeVar("K")

Addr = tuple[str, int]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
IKE_PORT, NATT_PORT = 500, 4500
REKEY_GRACE = 2.0  # seconds the old inbound SA stays after the switch to the new one
SHUTDOWN_TIMEOUT = 3.0  # seconds to wait for the peers to confirm our DELETEs
TRAFFIC_INTERVAL = 0.5  # seconds between reads of the dataplane's counters
READ_PER_TICK = 1000  # Child SAs whose counters are read at each of those reads
RETRY_DELAY, RETRY_MAX = 5.0, 120.0  # seconds before initiating again; doubling up to this
GUARD_LINES, GUARD_WINDOW = 10, 10.0  # at most this many error lines per window (seconds)


class DataplaneLike(Protocol):
    """What the daemon needs of espfast.dataplane.Dataplane (a fake in unit tests)."""

    def add_sa(self, sa: SaParams) -> None: ...
    def remove_sa(self, spi: int, direction: Direction) -> None: ...
    def update_peer(
        self,
        spi: int,
        peer: tuple[str, int],
        *,
        direction: Direction = Direction.OUT,
        raw_esp: bool | None = None,
    ) -> None: ...
    def send_ike(self, data: bytes, peer: tuple[str, int]) -> None: ...
    def send_keepalive(self, peer: tuple[str, int]) -> None: ...
    def sa_stats(self, spi: int, direction: Direction) -> SaStats: ...
    def watch_traffic(self) -> None: ...


@dataclass
class Counters:
    datagrams_in: int = 0
    datagrams_out: int = 0
    malformed: int = 0
    child_sas_installed: int = 0
    child_sas_removed: int = 0
    child_sas_rekeyed: int = 0
    ike_sas_rekeyed: int = 0
    ike_sas_reauthenticated: int = 0
    traps_acquired: int = 0
    event_errors: int = 0
    ike_sas_up: int = 0
    ike_sas_down: int = 0
    # Summed over every IKE SA so far (espfast.control's TaskManager counters): requests
    # we sent again, and the peer's retransmitted requests answered from the cache.
    ike_retransmits: int = 0
    ike_requests_answered_from_cache: int = 0
    # The peers' messages that failed our checks (answered with an error notify, or ending
    # our exchange), and those of them that raised something unanticipated (TaskManager);
    # input_errors: exceptions that escaped the control plane altogether, each one logged
    # in one line and dropped (none is expected; each is a gap to close).
    ike_protocol_errors: int = 0
    ike_unexpected_errors: int = 0
    input_errors: int = 0
    # Unauthenticated peers (control/responder.py, control/fragments.py): COOKIEs asked
    # for; IKE_SA_INIT requests dropped (half_open_limit, block_threshold, a bad KE
    # value) or refused; half-open IKE SAs that made room for another address; IKE
    # fragments dropped (unexpected Message ID, over a bound, expired).
    ike_sa_init_cookies_sent: int = 0
    ike_sa_init_dropped: int = 0
    ike_sa_init_refused: int = 0
    half_open_evicted: int = 0
    ike_fragments_dropped: int = 0
    keepalives_sent: int = 0  # NAT keepalives (RFC 3948 §2.3)
    esp_follows: int = 0  # IKE SAs that followed their peer's ESP to a new source (follow_esp)


@dataclass
class _Child:
    ike_sa_id: int
    spi_out: int
    up: ChildSaUp  # the event without its keys, for the status document
    established: float  # UNIX time
    packets_in: int = 0  # at the last read of the counters
    owner: int = 0  # SaParams.owner: connection and canonical peer identity


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
    children: dict[int, _Child] = field(default_factory=dict)  # by inbound SPI
    remove_routes: Callable[[Iterable[IPNetwork]], None] = lambda nets: None
    # Add (True) or remove (False) addresses on the TUN device: our virtual IPs.
    set_addresses: Callable[[Iterable[IPInterface], bool], None] = lambda addrs, add: None
    # Our usable addresses (espfast/mobility.local_addresses), for N(ADDITIONAL_*): only
    # with a wildcard listen address (we receive on no other otherwise); cached, read
    # again on every change of addresses or routes (path_changed).
    addresses: Callable[[], tuple[str, ...]] | None = None
    _addresses: tuple[str, ...] | None = None
    rekey_grace: float = REKEY_GRACE
    retry_delay: float = RETRY_DELAY
    traffic_interval: float = TRAFFIC_INTERVAL
    _mgr: IkeManager | None = None
    _timer: asyncio.TimerHandle | None = None
    _retries: dict[str, int] = field(default_factory=dict)  # by connection name
    _retry_timers: dict[str, asyncio.TimerHandle] = field(default_factory=dict)
    _established: dict[int, float] = field(default_factory=dict)  # ike_sa_id -> UNIX time
    _idle: asyncio.Event = field(default_factory=asyncio.Event)
    _traffic: asyncio.TimerHandle | None = None
    _keepalive: asyncio.TimerHandle | None = None
    # Rekeyed Child SAs still sending on their predecessor's outbound SA (see ChildSaRekeyed
    # in the module docstring), by the new inbound SPI: (the old inbound SPI, the new
    # outbound SA). Two can wait on one old SA: both sides rekeyed it at once (RFC 7296
    # §2.8.1); the loser's never sends and goes with its DELETE.
    _switch: dict[int, tuple[int, SaParams]] = field(default_factory=dict)
    # Replaced Child SAs whose inbound SA stays until they are deleted: inbound SPI -> the
    # IKE SA id they belong to.
    _retiring: dict[int, int] = field(default_factory=dict)
    # Called with every control-plane event after the daemon acted on it (metrics, the
    # control socket's initiate/terminate waiting for an outcome: espfast/operations.py).
    listeners: list[Callable[[Event], None]] = field(default_factory=list)
    # _guard's log budget: (start of the window, lines logged in it, errors not logged).
    _guard_log: tuple[float, int, int] = (float("-inf"), 0, 0)
    _vips: dict[str, set[int]] = field(default_factory=dict)  # our virtual IP -> IKE SA ids
    _shutting_down: bool = False
    _read_pos: int = 0  # where the next read of the counters starts (see _read_counters)
    # Counters at the last read: inbound SPI -> (packets in, packets out, outbound seq); and
    # whether the dataplane was asked for a traffic notice since (see the module docstring).
    _seen: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    _watching: bool = False
    # Indexes over ``children`` (kept by _put_child / _pop_child, and where a Child SA's
    # spi_out changes), so that an event costs the same with 1 or 10,000 Child SAs: by
    # IKE SA, by the selectors of their ChildSaUp (twins), how many Child SAs send on
    # each outbound SPI, how many route each remote network.
    _kids_of: dict[int, dict[int, None]] = field(default_factory=dict)
    _by_sel: dict[tuple[object, ...], dict[int, None]] = field(default_factory=dict)
    _out_refs: Counter[int] = field(default_factory=Counter)
    _net_refs: Counter[IPNetwork] = field(default_factory=Counter)
    # The RADIUS client for remote_auth = "eap-radius" (espfast/radius.py), if configured.
    radius: RadiusClient | None = None
    accounting: Accounting | None = None  # RADIUS accounting of those it let in
    # The Class attributes of each IKE SA's Access-Accept, for its accounting (RFC 2865
    # §5.25: sent back unchanged).
    _radius_classes: dict[int, tuple[bytes, ...]] = field(default_factory=dict)

    @property
    def local(self) -> str:
        return self.config.interface.listen[0]

    @property
    def mgr(self) -> IkeManager:
        assert self._mgr is not None, "start() first"
        return self._mgr

    @property
    def sas(self) -> list[IkeSa]:
        """The IKE SAs alive now (rekeyed and reauthenticated ones included)."""
        return [sa for sa in self.mgr.sas if not sa.is_destroyed]

    def start(self) -> None:
        """Answer peers on every connection, and initiate every connection with a remote."""
        confs = [c.ike for c in self.config.connections]
        iface = self.config.interface
        self._mgr = IkeManager(confs, rng=self.rng, local=(self.local, IKE_PORT),
                               cookie_threshold=iface.cookie_threshold,
                               half_open_limit=iface.half_open_limit,
                               cookie_threshold_ip=iface.cookie_threshold_ip,
                               block_threshold=iface.block_threshold,
                               ike_sas_per_identity=iface.ike_sas_per_identity,
                               child_sas_per_ike_sa=iface.child_sas_per_ike_sa)  # fmt: skip
        self._mgr.local_addresses = self.local_addresses
        for conn in self.config.connections:
            self.start_connection(conn)
        self._traffic = self.loop.call_later(self.traffic_interval, self._read_counters)
        if iface.keepalive:
            self._keepalive = self.loop.call_later(iface.keepalive, self._send_keepalives)

    def start_connection(self, conn: ConnectionConfig) -> None:
        """What the config says to do with ``conn`` at start (or when a reload adds it):
        install its traps, initiate its children to start."""
        if conn.remote is None:
            return
        for child in conn.children_to("trap"):
            self.mgr.trap(conn.ike, child, local=(self.local, IKE_PORT), remote=conn.remote)
            self.add_routes(_child_networks(conn, child))
            what = logged("trap_installed", connection=conn.name, child=child)
            log.warning("%s: trap for child %s installed", conn.name, child, extra=what)
        if conn.children_to("start"):
            self.initiate(conn)

    def initiate(self, conn: ConnectionConfig) -> None:
        """IKE_SA_INIT + IKE_AUTH with the first child to start (start_action = start, or
        failing that one that is restarted), CREATE_CHILD_SA for the others."""
        assert conn.remote is not None
        names = _children_to_start(conn)
        if not names:
            return
        cfgs = {c.name: c for c in conn.ike.children}
        log.info("%s: initiating to %s", conn.name, conn.remote[0],
                 extra=logged("initiating", connection=conn.name, peer=conn.remote[0]))  # fmt: skip
        now = self.loop.time()
        sa = self.mgr.initiate(conn.ike, local=(self.local_for(conn.remote[0]), IKE_PORT),
                               remote=conn.remote, now=now, child=cfgs[names[0]])  # fmt: skip
        for name in names[1:]:
            sa.create_child(cfgs[name], now)
        self._pump()

    # -- input, output, timers -------------------------------------------------------------

    def datagram_received(self, data: bytes, addr: Addr, port: int) -> None:
        """An IKE datagram that arrived on our ``port`` (500, or 4500 without its marker)."""
        self.counters.datagrams_in += 1
        try:
            parse_header(data)
        except RemoteProtocolError as e:
            self.counters.malformed += 1
            log.debug("dropped a malformed IKE datagram from %s: %s", addr[0], e)
            return
        front = self.mgr.responder  # it drops new requests whose payloads do not parse
        before = front.counters.dropped_malformed if front is not None else 0
        local = (self.local_for(addr[0]), port)
        with self._guard(f"an IKE datagram from {addr[0]}"):
            self.mgr.receive_datagram(data, addr, self.loop.time(), local=local)
        if front is not None and front.counters.dropped_malformed != before:
            self.counters.malformed += 1
        self._pump()

    def _pump(self) -> None:
        """After any input or timer: act on the events, send what is to be sent, re-arm
        the timer. Events first: a Child SA is in the dataplane before the answer that
        lets the peer use it leaves."""
        while (event := self.mgr.next_event()) is not None:
            try:
                self._on_event(event)
            except (ValueError, OSError) as e:  # e.g. the dataplane refused an SA
                self.counters.event_errors += 1
                what = type(event).__name__
                log.error("IKE SA %d: cannot act on %s: %s", event.ike_sa_id, what, e,
                          extra=logged("event_error", ike_sa=event.ike_sa_id, on=what))  # fmt: skip
            for listener in self.listeners:
                try:
                    listener(event)
                except Exception:  # a bug in an observer must not stop the daemon
                    self.counters.event_errors += 1
                    log.exception("IKE SA %d: a listener failed on %s", event.ike_sa_id,
                                  type(event).__name__)  # fmt: skip
        for data, addr, port in self.mgr.datagrams_to_send(self.loop.time()):
            self._send(data, addr, port)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self.mgr.get_timer()
        if when is not None:
            self._timer = self.loop.call_at(when, self._on_timer)
        if self._shutting_down and self.mgr.idle:
            self._idle.set()

    def count_ike(self) -> Counters:
        """Our counters, with those summed over the IKE SAs and the front door (see
        Counters): for the status document, the metrics and the end. (Not per datagram:
        that would walk every IKE SA.)"""
        c = self.counters
        (c.ike_retransmits, c.ike_requests_answered_from_cache, c.ike_protocol_errors,
         c.ike_unexpected_errors) = self.mgr.task_counters()  # fmt: skip
        c.ike_fragments_dropped = self.mgr.fragments.dropped
        front = self.mgr.responder
        if front is not None:
            fc = front.counters
            c.ike_sa_init_cookies_sent = fc.cookies_sent
            c.ike_sa_init_dropped = (fc.dropped_half_open_limit + fc.dropped_block_threshold
                                     + fc.dropped_bad_ke)  # fmt: skip
            c.ike_sa_init_refused = fc.refused
            c.half_open_evicted = fc.evicted
        return c

    def _on_timer(self) -> None:
        self._timer = None
        with self._guard("a timer"):
            self.mgr.handle_timer(self.loop.time())
        self._pump()

    @contextlib.contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        """Last line of defence around the control plane: an exception that escapes it
        (what a peer sent got past every check) is counted and logged in one line (the
        traceback at DEBUG), at most GUARD_LINES lines per GUARD_WINDOW seconds (a peer
        that found such a hole must not flood the log); the daemon goes on serving."""
        try:
            yield
        except Exception as e:  # any: see the docstring
            self.counters.input_errors += 1
            now = self.loop.time()
            start, lines, quiet = self._guard_log
            if now - start >= GUARD_WINDOW:
                if quiet:
                    log.error("%d more such errors were not logged", quiet)
                start, lines, quiet = now, 0, 0
            if lines < GUARD_LINES:
                log.error("error handling %s: %s: %s", what, type(e).__name__, e)
                log.debug("the traceback of that error", exc_info=e)
                lines += 1
            else:
                quiet += 1
            self._guard_log = (start, lines, quiet)

    def _read_counters(self) -> None:
        """The dataplane's counters into the control plane (see the module docstring)."""
        self._traffic = None
        now = self.loop.time()
        # At most READ_PER_TICK Child SAs a tick, in turn (with many, each is read less
        # often, and a tick costs the same).
        spis = list(self.children)
        seen: dict[int, tuple[int, int, int]] = {}
        start = self._read_pos % len(spis) if spis else 0
        batch = (spis[start:] + spis[:start])[:READ_PER_TICK]
        self._read_pos = start + len(batch)
        for spi_in in batch:
            child = self.children.get(spi_in)
            sa = self._holder(child.ike_sa_id, spi_in) if child is not None else None
            if child is None or sa is None:
                continue
            try:
                rx = self.dataplane.sa_stats(spi_in, Direction.IN)
                tx = self.dataplane.sa_stats(child.spi_out, Direction.OUT)
            except ValueError:  # removed meanwhile
                continue
            seen[spi_in] = (rx.packets, tx.packets, tx.seq)
            if rx.packets > child.packets_in:
                child.packets_in = rx.packets
                sa.peer_alive(now)
                if spi_in in self._switch:  # the peer sends on it: it has our answer
                    self._switch_out(spi_in)
            sa.child_traffic(spi_in, rx.bytes + tx.bytes, rx.packets + tx.packets, now,
                             seq_out=tx.seq)  # fmt: skip
        # Idle: every SA read, nothing moved, no switch waiting for the peer.
        quiet = len(spis) <= READ_PER_TICK and not self._switch and seen == self._seen
        self._seen = seen
        self._pump()
        if self.mgr.closing or (quiet and self._watching):
            return  # idle: traffic_moved() reads again
        self._watching = quiet
        if quiet:
            self.dataplane.watch_traffic()
        self._traffic = self.loop.call_later(self.traffic_interval, self._read_counters)

    def traffic_moved(self) -> None:
        """The dataplane's notice that a packet moved (Dataplane.take_traffic): read the
        counters now if the reads had stopped for an idle tunnel."""
        self._watching = False
        if self._traffic is None and self._mgr is not None and not self.mgr.closing:
            self._read_counters()

    def _holder(self, ike_sa_id: int, spi_in: int) -> IkeSa | None:
        """The IKE SA that carries Child SA ``spi_in`` (of IKE SA ``ike_sa_id``: after a
        rekey the newest, during a reauthentication the one it replaces)."""
        newest = self.mgr.by_id(ike_sa_id)
        for sa in (newest, newest.reauth_of if newest is not None else None):
            if sa is not None and spi_in in sa.current.children:
                return sa.current
        return None

    def local_for(self, peer: str) -> str:
        """Our address towards ``peer``: the listen address, or when that is the wildcard
        (a roaming client, espfast/mobility.py) the one the kernel sends from now."""
        if not is_wildcard(self.local):
            return self.local
        return source_for(peer) or self.local

    def local_addresses(self, sa: IkeSa) -> tuple[str, ...] | None:
        """Our addresses the IKE SA's peer may reach us at besides its own (RFC 4555
        §3.6), of its family, without our virtual IPs; None when we cannot tell."""
        if self.addresses is None or not is_wildcard(self.local):
            return None
        if self._addresses is None:
            try:
                self._addresses = self.addresses()
            except Exception as e:  # (netlink: TunError) announce none rather than fail
                log.warning("cannot list our addresses: %s", e)
                return None
        vips = {str(a) for a in sa.local_vips}
        version = ipaddress.ip_address(sa.local[0]).version
        return tuple(a for a in self._addresses
                     if a not in vips and ipaddress.ip_address(a).version == version)  # fmt: skip

    def path_moved(self) -> None:
        """Our addresses or routes are changing (espfast/mobility.py: every batch of
        netlink events, at once): every IKE SA we initiated with MOBIKE whose path now
        leaves from another address moves there with its Child SAs (UPDATE_SA_ADDRESSES,
        RFC 4555 §3.5). Without a route to the peer it stays put until the next change
        (or its liveness check gives up). Our address list is not read again here (the
        settled look, :meth:`path_changed`, does, and tells the peer if it changed): the
        peer's traffic to us waits for the update. A gateway that initiates nothing with
        MOBIKE skips the look (its own route changes for Child SAs come in batches too)."""
        if not any(c.remote is not None and c.ike.mobike for c in self.config.connections):
            return
        self._follow_routes(self.loop.time(), settled=False)
        self._pump()

    def path_changed(self) -> None:
        """The change settled (espfast/mobility.py): the paths looked at again (a first
        look may have seen a half-made state), and our address list read again; the
        peers are told if it changed (RFC 4555 §3.6)."""
        now = self.loop.time()
        self._follow_routes(now, settled=True)
        self._addresses = None  # read again
        for sa in self.sas:
            if sa.replaced_by is None and sa.announce_addresses(now):
                log.info("%s: telling %s our addresses changed", sa.config.name, sa.remote[0])
        self._pump()

    def _follow_routes(self, now: float, settled: bool) -> None:
        """``settled``: the burst of events is over; before, a missing route may be a
        half-made state (said at DEBUG only)."""
        for sa in self.sas:
            if not (sa.is_established and sa.mobike and sa.original_initiator) \
                    or sa.is_deleting or sa.replaced_by is not None:  # fmt: skip
                continue
            src = source_for(sa.remote[0])
            if src is None:
                log.log(logging.WARNING if settled else logging.DEBUG, "%s: no route to %s now",
                        sa.config.name, sa.remote[0])  # fmt: skip
                continue
            if src != sa.local[0]:
                log.info("%s: path to %s now leaves from %s (was %s): moving", sa.config.name,
                         sa.remote[0], src, sa.local[0],
                         extra=logged("ike_sa_moving", connection=sa.config.name,
                                      ike_sa=sa.ike_sa_id, local=src))  # fmt: skip
                sa.update_addresses(now, local=(src, sa.local[1]))

    def esp_moved(self, moves: Iterable[tuple[int, Addr]]) -> None:
        """Authenticated ESP of inbound SA ``spi_in`` came from a new source (the
        dataplane's take_moved, for IKE SAs with follow_esp): the IKE SA follows, and
        PeerAddressChanged re-points its outbound SAs (update_peer, under the dataplane's
        table lock: atomic for the workers)."""
        for spi_in, addr in moves:
            child = self.children.get(spi_in)
            sa = self._holder(child.ike_sa_id, spi_in) if child is not None else None
            if sa is not None and sa.follow_esp(addr):
                self.counters.esp_follows += 1
                log.info("%s: following the peer's ESP to %s", sa.config.name,
                         fmt_endpoint(addr),
                         extra=logged("esp_follow", connection=sa.config.name,
                                      ike_sa=sa.ike_sa_id, peer=addr[0]))  # fmt: skip
        self._pump()

    def _send_keepalives(self) -> None:
        """RFC 3948 §2.3: from behind a NAT, a 0xFF octet to each peer on port 4500 every
        ``keepalive`` seconds, so that the NAT keeps our mapping while we are quiet."""
        for sa in self.sas:
            if sa.is_established and sa.nat_local and sa.local[1] == NATT_PORT \
                    and sa.replaced_by is None:  # fmt: skip
                try:
                    self.dataplane.send_keepalive(sa.remote)
                    self.counters.keepalives_sent += 1
                except OSError as e:  # e.g. no route while the uplink changes
                    log.debug("cannot send a NAT keepalive to %s: %s", sa.remote[0], e)
        if not self.mgr.closing:
            every = self.config.interface.keepalive
            self._keepalive = self.loop.call_later(every, self._send_keepalives)

    def traffic_without_sa(
        self, destinations: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address]
    ) -> None:
        """Inner packets to ``destinations`` found no outbound SA: acquire the traps that
        cover them (see the module docstring)."""
        dests = set(destinations)
        if dests:
            log.debug("inner packets found no SA: to %s", ", ".join(sorted(map(str, dests))))
        if not dests or not self.mgr.traps:
            return
        installed = {(self._conn_of(c.ike_sa_id), c.up.name) for c in self.children.values()}
        for name, kid in list(self.mgr.traps):
            conn = next((c for c in self.config.connections if c.name == name), None)
            if conn is None or (name, kid) in installed:
                continue
            nets = _child_networks(conn, kid)
            hit = any(d in n for d in dests for n in nets if d.version == n.version)
            if hit and self.mgr.acquire(name, kid, self.loop.time()) is not None:
                self.counters.traps_acquired += 1  # per notice while negotiating
                log.info("%s: traffic for trapped child %s: negotiating", name, kid)
        self._pump()

    def _conn_of(self, ike_sa_id: int) -> str:
        sa = self.mgr.by_id(ike_sa_id)  # (by id: a walk over the IKE SAs per child is quadratic)
        return sa.config.name if sa is not None else ""

    def _send(self, data: bytes, addr: Addr, local_port: int) -> None:
        self.counters.datagrams_out += 1
        try:
            if local_port == NATT_PORT:
                self.dataplane.send_ike(data, addr)
            else:
                self.send_500(data, addr)
        except OSError as e:  # e.g. no route yet: the SA's retransmission timer retries
            log.warning("cannot send IKE to %s: %s", addr[0], e)

    # -- events ------------------------------------------------------------------------------

    def _on_event(self, event: Event) -> None:
        match event:
            case IkeSaUp():
                self.counters.ike_sas_up += 1
                self._established[event.ike_sa_id] = time.time()
                self._retries.pop(event.name, None)
                vips = ", ".join(event.virtual_ips + event.peer_virtual_ips)
                dns = ", ".join(event.dns)
                log.info(
                    "%s: IKE SA up with %s, %s === %s, %s%s%s",
                    event.name,
                    fmt_endpoint(event.peer),
                    event.local_id,
                    event.remote_id,
                    event.algorithms,
                    f", virtual IP {vips}" if vips else "",
                    f", DNS {dns}" if dns else "",
                    extra=logged("ike_sa_up", connection=event.name, ike_sa=event.ike_sa_id,
                             peer=fmt_endpoint(event.peer), local_id=event.local_id,
                             remote_id=event.remote_id, proposal=event.algorithms,
                             virtual_ips=event.virtual_ips + event.peer_virtual_ips),
                )  # fmt: skip
                self._hold_vips(event.ike_sa_id, event.virtual_ips)
                classes = self._radius_classes.pop(event.ike_sa_id, ())
                if self.accounting is not None and self._relayed(event.name):
                    self.accounting.up(event, classes)
            case IkeSaRekeyed():
                self.counters.ike_sas_rekeyed += 1
                log.info("%s: IKE SA rekeyed", event.name, extra=logged(
                    "ike_sa_rekeyed", connection=event.name, ike_sa=event.ike_sa_id))  # fmt: skip
            case IkeSaReauthenticating():
                self.counters.ike_sas_reauthenticated += 1
                what = logged("ike_sa_reauthenticating", connection=event.name,
                              ike_sa=event.ike_sa_id)  # fmt: skip
                log.info("%s: IKE SA reauthenticating", event.name, extra=what)
            case ChildSaUp():
                # A Child SA like one we have, with the same peer: the peer reauthenticated
                # (RFC 7296 §2.8.3: to us, the responder, a fresh IKE SA) or re-created it:
                # make-before-break as for a rekey, the old one goes with its IKE SA.
                owner, _ = self._owner(event.ike_sa_id)
                twin = next((spi for spi in self._by_sel.get(_selectors(event), ())
                             if self.children[spi].owner == owner), None)  # fmt: skip
                if twin is None:
                    self._install_new(event)
                else:
                    self._install_rekeyed(event, twin, self.children[twin].spi_out)
            case ChildSaRekeyed():
                old = self._pop_child(event.old_spi_in)
                if old is not None:
                    self._retiring[event.old_spi_in] = old.ike_sa_id
                    self._account_child(old, event.old_spi_in)
                self._install_rekeyed(event.new, event.old_spi_in, event.old_spi_out)
                self.counters.child_sas_rekeyed += 1
            case ChildSaClosing():
                self._closing(event.spi_in)
            case ChildSaDown():
                replaced = event.spi_in not in self.children  # a rekey already logged it
                self._uninstall(event.spi_in)  # also switches a successor waiting for this
                if not replaced:
                    what = logged("child_sa_down", child=event.name, ike_sa=event.ike_sa_id,
                                  spi_in=f"{event.spi_in:08x}", reason=event.reason)  # fmt: skip
                    log.info("%s: child SA %08x down: %s", event.name, event.spi_in, event.reason,
                             extra=what)  # fmt: skip
            case ChildSaFailed():
                log.warning("%s: child SA failed: %s", event.name, event.reason,
                            extra=logged("child_sa_failed", child=event.name,
                                         ike_sa=event.ike_sa_id, reason=event.reason))  # fmt: skip
            case RadiusRequest():
                self._relay(event)
            case PeerAddressChanged():
                log.debug(
                    "dataplane: IKE SA %d's outbound SAs now to %s",
                    event.ike_sa_id & 0xFFFF,
                    fmt_endpoint(event.peer),
                )
                for spi_in in self._kids_of.get(event.ike_sa_id, {}):
                    self._repoint(spi_in, event)
            case IkeSaDown():
                self.counters.ike_sas_down += 1
                self._established.pop(event.ike_sa_id, None)
                for spi_in in list(self._kids_of.get(event.ike_sa_id, {})):
                    self._uninstall(spi_in)
                for spi_in, ike_sa_id in list(self._retiring.items()):
                    if ike_sa_id == event.ike_sa_id:  # never deleted on its own
                        del self._retiring[spi_in]
                        self._remove(spi_in, Direction.IN)
                self._hold_vips(event.ike_sa_id, ())
                self._radius_classes.pop(event.ike_sa_id, None)
                if self.accounting is not None:
                    self.accounting.down(event.ike_sa_id, event.cause)
                level = logging.WARNING if event.cause in ("failed", "dpd") else logging.INFO
                # The cause is worth saying where it is not in the reason already.
                cause = f" ({event.cause})" if event.cause in ("dpd", "expired") else ""
                log.log(level, "%s: IKE SA down%s: %s", event.name, cause, event.reason,
                        extra=logged("ike_sa_down", connection=event.name, ike_sa=event.ike_sa_id,
                                     cause=event.cause, reason=event.reason))  # fmt: skip
                # The manager restarts or traps what has a dpd/close action; after a
                # clear/none action (dpd, peer), a local delete or INITIAL_CONTACT nothing
                # is restarted; what never came up (or ran out its life) is tried again.
                if event.cause in ("failed", "expired", ""):
                    self._schedule_retry(event.name)

    def _repoint(self, spi_in: int, event: PeerAddressChanged) -> None:
        """A Child SA's peer moved: its outbound SA sends there, its inbound SA takes
        plain ESP from there, both in the framing the new path wants (a NAT may have come
        or gone, RFC 7296 §2.23)."""
        raw = not event.encap
        try:
            self.dataplane.update_peer(self.children[spi_in].spi_out, event.peer, raw_esp=raw)
            self.dataplane.update_peer(spi_in, event.peer, direction=Direction.IN, raw_esp=raw)
        except ValueError as e:
            self.counters.event_errors += 1
            log.error("child SA %08x: cannot follow the peer to %s: %s", spi_in, event.peer[0], e)
        pending = self._switch.get(spi_in)
        if pending is not None:  # a rekey's outbound half, not sending yet
            rekeyed, out = pending
            moved = dataclasses.replace(out, peer=event.peer, raw_esp=raw)
            self._switch[spi_in] = (rekeyed, moved)

    def _hold_vips(self, ike_sa_id: int, vips: tuple[str, ...]) -> None:
        """IKE SA ``ike_sa_id`` now holds the virtual IPs ``vips`` (none: it went): each
        is on the TUN device while some IKE SA holds it."""
        for addr in vips:
            if addr not in self._vips:
                self._set_vip(addr, True)
            self._vips.setdefault(addr, set()).add(ike_sa_id)
        for addr, holders in list(self._vips.items()):
            if addr not in vips:
                holders.discard(ike_sa_id)
                if not holders:
                    del self._vips[addr]
                    self._set_vip(addr, False)

    def _set_vip(self, addr: str, add: bool) -> None:
        iface = ipaddress.ip_interface(addr)
        try:
            self.set_addresses([iface], add)
        except (OSError, RuntimeError) as e:  # TunError: netlink said no
            self.counters.event_errors += 1
            log.error("cannot %s virtual IP %s: %s", "add" if add else "remove", addr, e)

    def _schedule_retry(self, name: str) -> None:
        """A connection we initiate keeps trying: again after retry_delay, doubling each
        failed attempt up to RETRY_MAX (a successful IKE SA resets it)."""
        conn = next((c for c in self.config.connections if c.ike.name == name), None)
        if self.mgr.closing or conn is None or conn.remote is None:
            return
        if name in self._retry_timers:
            return
        attempt = self._retries.get(name, 0)
        self._retries[name] = attempt + 1
        delay = min(self.retry_delay * 2**attempt, RETRY_MAX)
        log.warning("%s: initiating again in %.0f s", name, delay,
                    extra=logged("retry_scheduled", connection=name, delay=delay))  # fmt: skip
        self._retry_timers[name] = self.loop.call_later(delay, self._retry, conn)

    def _retry(self, conn: ConnectionConfig) -> None:
        self._retry_timers.pop(conn.ike.name, None)
        if not self.mgr.closing:
            self.initiate(conn)

    def _install_rekeyed(self, ev: ChildSaUp, old_spi_in: int, old_spi_out: int) -> None:
        """The successor of a Child SA: its inbound SA now, its outbound SA when the peer
        has the other half (see ChildSaRekeyed in the module docstring)."""
        out = self._install(ev, spi_out_now=old_spi_out, rekeyed=old_spi_in)
        self._switch[ev.spi_in] = (old_spi_in, out)
        if ev.exchange_initiator:
            self._switch_out(ev.spi_in)

    def _switch_out(self, new_spi_in: int) -> None:
        """Start sending on a rekeyed Child SA's new outbound SA."""
        pending = self._switch.pop(new_spi_in, None)
        child = self.children.get(new_spi_in)
        if pending is None or child is None:
            return
        _, out = pending
        ours = next((sa.children[new_spi_in] for sa in self.sas if new_spi_in in sa.children), None)
        if ours is not None and ours.deleting:
            # The redundant SA of a rekey collision (RFC 7296 §2.8.1), which we are
            # deleting: the peer drops its inbound half on our DELETE, so never send on it.
            return
        old_spi_out = child.spi_out
        try:
            self.dataplane.add_sa(out)
        except ValueError as e:
            self.counters.event_errors += 1
            log.error("%s: cannot install outbound SA %08x: %s", child.up.name, out.spi, e)
            return
        log.debug("dataplane: %s sends on %08x (was %08x)", child.up.name, out.spi, old_spi_out)
        self._out_refs[old_spi_out] -= 1
        self._out_refs[out.spi] += 1
        child.spi_out = out.spi
        self._release_out(old_spi_out)

    def _closing(self, spi_in: int) -> None:
        """We are deleting this Child SA (see ChildSaClosing in the module docstring)."""
        child = self.children.get(spi_in)
        if child is None:  # a rekey's old SA: its successor sends already
            return
        # A re-created twin waiting on it (the peer set it up: it has both halves).
        for new in [n for n, (old, _) in self._switch.items() if old == spi_in]:
            self._switch_out(new)
        if self._out_refs[child.spi_out] <= 1:  # nobody else sends on it
            self._remove(child.spi_out, Direction.OUT)

    def _release_out(self, spi_out: int) -> None:
        """Remove an outbound SA unless a Child SA still sends on it (a successor not yet
        switched, see ChildSaRekeyed in the module docstring)."""
        if self._out_refs[spi_out] <= 0:
            self._out_refs.pop(spi_out, None)
            self._remove(spi_out, Direction.OUT)

    def _owner(self, ike_sa_id: int) -> tuple[int, int]:
        """SaParams.owner and .group for the Child SAs of IKE SA ``ike_sa_id``: its
        connection and the peer's canonical identity (the same across rekeys and
        reauthentications), and its connection."""
        sa = next((s for s in self.sas if s.ike_sa_id == ike_sa_id), None)
        if sa is None:
            return ike_sa_id, 0
        conn = sa.config.name.encode()
        return _hash64(conn + b"\0" + sa.peer_key), _hash64(conn)

    def _install_new(self, ev: ChildSaUp) -> None:
        """A new Child SA; one whose outbound selectors another peer's SA holds is
        refused by the dataplane (SelectorConflict): we delete it, the other stays."""
        try:
            self._install(ev)
        except SelectorConflict as e:
            self.counters.event_errors += 1
            log.error("%s: child SA %08x refused: %s", ev.name, ev.spi_in, e)
            sa = next((s for s in self.sas if s.ike_sa_id == ev.ike_sa_id), None)
            if sa is not None:
                sa.delete_child(ev.spi_in, self.loop.time())

    def _install(
        self, ev: ChildSaUp, spi_out_now: int | None = None, rekeyed: int | None = None
    ) -> SaParams:
        """Install a new Child SA; with ``spi_out_now`` (a rekey of the Child SA whose
        inbound SPI is ``rekeyed``), only its inbound SA: the caller gets the outbound one
        to install later, and meanwhile ``spi_out_now`` carries its traffic."""
        local, remote = _networks(ev.local_ts), _networks(ev.remote_ts)
        transform = Transform(ev.transform)
        owner, group = self._owner(ev.ike_sa_id)
        ike = self.mgr.by_id(ev.ike_sa_id)
        follow = ike is not None and ike.config.follow_esp  # the inbound SA reports moves

        def params(d: Direction, spi: int, enc: bytes, integ: bytes) -> SaParams:
            return SaParams(
                spi=spi,
                direction=d,
                transform=transform,
                enc_key=enc,
                integ_key=integ,
                local_ts=local,
                remote_ts=remote,
                # plain ESP: the inbound SA takes it from the peer's address only
                peer=ev.peer if d is Direction.OUT or follow or not ev.encap else None,
                raw_esp=not ev.encap,
                esn=ev.esn,
                owner=owner,
                group=group,
                follow=follow,
            )

        self.dataplane.add_sa(params(Direction.IN, ev.spi_in, ev.enc_key_in, ev.integ_key_in))
        out = params(Direction.OUT, ev.spi_out, ev.enc_key_out, ev.integ_key_out)
        if spi_out_now is None:
            try:
                self.dataplane.add_sa(out)
            except ValueError:
                self._remove(ev.spi_in, Direction.IN)
                raise
        keyless = dataclasses.replace(
            ev, enc_key_in=b"", integ_key_in=b"", enc_key_out=b"", integ_key_out=b""
        )
        self._put_child(
            ev.spi_in,
            _Child(
                ev.ike_sa_id,
                ev.spi_out if spi_out_now is None else spi_out_now,
                keyless,
                time.time(),
                owner=owner,
            ),
        )
        self.counters.child_sas_installed += 1
        self.add_routes(remote)
        log.info(
            "%s: child SA %s, %s, in %08x out %08x, %s === %s",
            ev.name,
            "up" if rekeyed is None else f"rekeyed (was in {rekeyed:08x})",
            transform,
            ev.spi_in,
            ev.spi_out,
            ", ".join(map(str, local)),
            ", ".join(map(str, remote)),
            extra=logged(
                "child_sa_up" if rekeyed is None else "child_sa_rekeyed",
                child=ev.name, ike_sa=ev.ike_sa_id, transform=str(transform),
                spi_in=f"{ev.spi_in:08x}", spi_out=f"{ev.spi_out:08x}",
                local_ts=[str(n) for n in local], remote_ts=[str(n) for n in remote],
            ),
        )  # fmt: skip
        return out

    def _uninstall(self, spi_in: int) -> None:
        successors = [new for new, (old, _) in self._switch.items() if old == spi_in]
        for new in successors:  # the predecessor is deleted: its successors send from now on
            self._switch_out(new)
        self._switch.pop(spi_in, None)  # a successor that goes before it ever sent
        if self._retiring.pop(spi_in, None) is not None or successors:
            # A replaced Child SA: packets sent on it may still be on their way.
            self.loop.call_later(self.rekey_grace, self._remove, spi_in, Direction.IN)
        child = self._pop_child(spi_in)
        if child is None:
            return
        self._account_child(child, spi_in)
        if not successors:
            self._remove(spi_in, Direction.IN)
        self._release_out(child.spi_out)
        self.counters.child_sas_removed += 1
        # Routes go with the last Child SA using them, unless a trap keeps them.
        keep: set[IPNetwork] = set()
        for (name, child_name), _ in self.mgr.traps.items():
            conn = next((c for c in self.config.connections if c.name == name), None)
            if conn is not None:
                keep.update(_child_networks(conn, child_name))
        nets = _networks(child.up.remote_ts)
        gone = [n for n in nets if n not in keep and not self._net_refs[n]]
        if gone:
            try:
                self.remove_routes(gone)
            except (OSError, RuntimeError) as e:  # TunError: netlink said no
                log.warning("cannot withdraw the routes to %s: %s", ", ".join(map(str, gone)), e)

    def _put_child(self, spi_in: int, child: _Child) -> None:
        self._pop_child(spi_in)
        self.children[spi_in] = child
        self._kids_of.setdefault(child.ike_sa_id, {})[spi_in] = None
        self._by_sel.setdefault(_selectors(child.up), {})[spi_in] = None
        self._out_refs[child.spi_out] += 1
        for net in _networks(child.up.remote_ts, quiet=True):
            self._net_refs[net] += 1

    def _pop_child(self, spi_in: int) -> _Child | None:
        child = self.children.pop(spi_in, None)
        if child is None:
            return None
        _unindex(self._kids_of, child.ike_sa_id, spi_in)
        _unindex(self._by_sel, _selectors(child.up), spi_in)
        self._out_refs[child.spi_out] -= 1
        for net in _networks(child.up.remote_ts, quiet=True):
            self._net_refs[net] -= 1
            if self._net_refs[net] <= 0:
                del self._net_refs[net]
        return child

    def _remove(self, spi: int, direction: Direction) -> None:
        log.debug("dataplane: removing %s SA %08x", direction.name.lower(), spi)
        with contextlib.suppress(ValueError):  # already gone
            self.dataplane.remove_sa(spi, direction)

    # -- status ------------------------------------------------------------------------------

    def status_document(
        self, started: float, config_path: str, dataplane: dict[str, int] | None = None
    ) -> StatusDocument:
        """What ``espfast status`` shows (espfast/ctl.py): IKE SAs, their Child SAs with
        their dataplane counters, our counters and (given) the dataplane's. No keys."""
        self.count_ike()
        ike_sas: list[IkeSaStatus] = []
        by_ike: dict[int, list[int]] = {}  # (one pass: a walk per IKE SA would be quadratic)
        for spi_in, c in self.children.items():
            by_ike.setdefault(c.ike_sa_id, []).append(spi_in)
        for sa in self.sas:
            st = sa.status()
            children = [
                child_sa_status(
                    c.up,
                    self.dataplane.sa_stats(spi_in, Direction.IN),
                    self.dataplane.sa_stats(c.spi_out, Direction.OUT),
                    established=c.established,
                    rekey_at=self._wall(sa.children[spi_in].rekey_at),
                )
                for spi_in, c in ((s, self.children[s]) for s in by_ike.get(sa.ike_sa_id, ()))
                if spi_in in sa.children
            ]
            ike_sas.append(
                {
                    "name": sa.config.name,
                    "state": sa.state.value.upper(),
                    "initiator": sa.initiator,
                    "local_addr": fmt_endpoint(sa.local),
                    "remote_addr": fmt_endpoint(sa.remote),
                    "local_id": str(st["local_id"]),
                    "remote_id": str(st["remote_id"]),
                    "spi_i": sa.spi_i,
                    "spi_r": sa.spi_r,
                    "proposal": str(st["algorithms"]),
                    "established": self._established.get(sa.ike_sa_id),
                    "child_sas": children,
                    "nat_local": sa.nat_local,
                    "nat_remote": sa.nat_remote,
                    "mobike": sa.mobike,
                    "moves": sa.moves,
                }
            )
            if sa.local_vips:
                ike_sas[-1]["virtual_ips"] = [str(a) for a in sa.local_vips]
            if sa.remote_vips:
                ike_sas[-1]["peer_virtual_ips"] = [str(a) for a in sa.remote_vips]
            if sa.peer_addresses:
                ike_sas[-1]["peer_addresses"] = list(sa.peer_addresses)
        daemon: DaemonStatus = {
            "pid": os.getpid(),
            "version": __version__,
            "started": started,
            "config": config_path,
            "counters": dataclasses.asdict(self.counters),
        }
        if dataplane is not None:
            daemon["dataplane"] = dataplane
        return {"schema": SCHEMA_VERSION, "daemon": daemon, "ike_sas": ike_sas}

    def _wall(self, when: float | None) -> float | None:
        """A time on the loop's (monotonic) clock as UNIX time."""
        return None if when is None else time.time() + when - self.loop.time()

    def _relayed(self, name: str) -> bool:
        """Whether connection ``name`` lets its peers in through RADIUS."""
        conn = next((c for c in self.config.connections if c.name == name), None)
        return conn is not None and conn.ike.auth.eap_radius

    def _child_counts(self, spi_in: int, spi_out: int) -> tuple[int, int, int, int]:
        """(octets in, octets out, packets in, packets out) of a Child SA installed now."""
        try:
            i = self.dataplane.sa_stats(spi_in, Direction.IN)
            o = self.dataplane.sa_stats(spi_out, Direction.OUT)
        except ValueError:  # not (or no longer) in the dataplane
            return 0, 0, 0, 0
        return i.bytes, o.bytes, i.packets, o.packets

    def radius_counts(self, ike_sa_id: int) -> tuple[int, int, int, int]:
        """The counts of IKE SA ``ike_sa_id``'s Child SAs installed now (accounting)."""
        total = [0, 0, 0, 0]
        for spi_in, c in self.children.items():
            if c.ike_sa_id == ike_sa_id:
                total = [a + b for a, b in zip(total, self._child_counts(spi_in, c.spi_out),
                                               strict=True)]  # fmt: skip
        a, b, c_, d = total
        return a, b, c_, d

    def _account_child(self, child: _Child, spi_in: int) -> None:
        if self.accounting is not None:
            self.accounting.child_gone(child.ike_sa_id, self._child_counts(spi_in, child.spi_out))

    def _relay(self, event: RadiusRequest) -> None:
        """An IKE SA's EAP goes to the RADIUS servers; their answer resumes it."""
        ike_sa_id = event.ike_sa_id

        def done(answer: RadiusAnswer) -> None:
            if answer.classes:
                self._radius_classes[ike_sa_id] = answer.classes[:16]
            with self._guard("a RADIUS answer"):
                self.mgr.radius_answer(ike_sa_id, answer, self.loop.time())
            self._pump()

        if self.radius is None:
            self.loop.call_soon(done, RadiusAnswer(None, reason="no [radius] servers"))
            return
        self.radius.access(list(event.attributes), done)

    # -- shutdown ----------------------------------------------------------------------------

    async def shutdown(self, timeout: float = SHUTDOWN_TIMEOUT) -> None:
        """Delete every IKE SA (INFORMATIONAL { D }) and wait, bounded, for the answers."""
        for handle in self._retry_timers.values():
            handle.cancel()
        for timer in (self._traffic, self._keepalive):
            if timer is not None:
                timer.cancel()
        self._idle.clear()
        self._shutting_down = True
        self.mgr.shutdown(self.loop.time())
        self._pump()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
        if self._timer is not None:
            self._timer.cancel()
        for spi_in in list(self.children):
            self._uninstall(spi_in)


def _child_networks(conn: ConnectionConfig, child: str) -> tuple[IPNetwork, ...]:
    """The remote prefixes a child of ``conn`` asks for."""
    cfg = next((c for c in conn.ike.children if c.name == child), None)
    return () if cfg is None else tuple(n for ts in cfg.remote_ts for n in ts.networks())


def _children_to_start(conn: ConnectionConfig) -> list[str]:
    """The children to negotiate when the connection is initiated (or again): those with
    start_action = start, else those that dpd_action / close_action restart."""
    names = conn.children_to("start")
    if names:
        return names
    return [c.name for c in conn.ike.children
            if c.dpd_action == "restart" or c.close_action == "start"]  # fmt: skip


def _hash64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


def _unindex(index: dict[K, dict[int, None]], key: K, spi_in: int) -> None:
    bucket = index.get(key)
    if bucket is not None:
        bucket.pop(spi_in, None)
        if not bucket:
            del index[key]


def _selectors(up: ChildSaUp) -> tuple[object, ...]:
    """What makes two Child SAs twins (see ChildSaUp in Daemon._on_event)."""
    return (up.name, up.peer, up.local_ts, up.remote_ts)


def _networks(selectors: tuple[TrafficSelector, ...], quiet: bool = False) -> tuple[IPNetwork, ...]:
    nets: list[IPNetwork] = []
    for ts in selectors:
        if not quiet and (ts.ip_protocol or (ts.start_port, ts.end_port) != (0, 65535)):
            log.warning("traffic selector %s: the dataplane matches addresses only", ts)
        nets.extend(ts.networks())
    return tuple(nets)
