"""All IKE SAs of one daemon behind one sans-I/O face: datagrams are dispatched by SPI,
new IKE_SA_INIT requests go to the responder front door, rekeyed IKE SAs replace their
predecessors, and events come out of one queue.

    mgr = IkeManager(configs, rng=SystemRng(), local=(ip, 500))
    sa = mgr.initiate(config, local=(ip, 500), remote=(peer, 500), now=now)
    mgr.receive_datagram(data, addr, now, local=(ip, port))   # marker already stripped
    for data, remote, local_port in mgr.datagrams_to_send(now): ...   # 4500: add marker
    if (t := mgr.get_timer()) is not None and now >= t: mgr.handle_timer(now)
    while (event := mgr.next_event()) is not None: ...

What happens when a peer dies or closes (strongSwan's dpd_action / close_action of each
child, reported in IkeSaDown.actions and ChildSaDown.action): "restart" / "start" are
negotiated again here at once; "trap" leaves a trap (``traps``): the shell calls
``acquire(connection, child, now)`` when traffic for the child's remote_ts finds no SA.
``trap()`` sets one up front (start_action = trap). ``shutdown(now)`` deletes every IKE
SA (SIGTERM); ``idle`` says when all are gone.

Uniqueness (strongSwan's ``unique``, IkeConfig.unique), for IKE SAs of one connection
with the same peer identity ("duplicates"; canonical, IkeSa.peer_key: one for every
spelling of it, so that neither uniqueness nor the pool's leases can be dodged): a
peer's INITIAL_CONTACT removes the older ones (RFC 7296 §2.4) unless the policy is
"never"; "no" does nothing more. "keep" refuses (AUTHENTICATION_FAILED) a new one from
another address while one is established.
"replace": an IKE SA the peer sets up from another address replaces its duplicates at
once (a client that moved, or came back). Duplicates with the same address are settled
REPLACE_DELAY seconds after the newer came up, if both are still there (the usual one,
a peer reauthenticating make-before-break, deletes the old one itself long before):
  - two whose set-ups overlapped (both ends reauthenticated, or initiated, at once): the
    one with the lower SPIs goes. Both ends pick the same one, so an espfast at the
    other end with unique = replace agrees, and a strongSwan (unique = no) keeps both
    until told.
  - otherwise, one the peer set up replaces the older one.

Scale: the work per datagram and per timer does not grow with the number of IKE SAs.
Datagrams go to their IKE SA by SPI; each IKE SA tells the manager when it has something
to say (IkeSa.touched), so events, datagrams and timers are collected from those only;
the next timer of each IKE SA sits in a heap; duplicates are found through an index by
peer identity. What one authenticated identity may hold is capped
(``ike_sas_per_identity`` IKE SAs per connection, ``child_sas_per_ike_sa`` Child SAs each).
"""

from __future__ import annotations

import heapq
import itertools
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace

from .config import ChildConfig, IkeConfig, configs_for_peer
from .errors import LocalProtocolError
from .events import (
    ChildSaDown,
    Event,
    IkeSaDown,
    IkeSaReauthenticating,
    IkeSaRekeyed,
    IkeSaUp,
)
from .ike_sa import Addr, FragmentBudget, IkeSa
from .message import HEADER_LEN
from .pool import AddressPool, IPAddress
from .radius.relay import RadiusAnswer
from .responder import BLOCK_THRESHOLD, COOKIE_THRESHOLD_IP, Responder
from .rng import Rng
from .tasks.ike_auth_eap import IkeAuthEap
from .text import printable


def pool_key(connection: str, name: str) -> str:
    """IkeManager.pools' key of a connection's named pool (never a connection's name)."""
    return f"{connection}\0{name}"


def drop_pools(pools: dict[str, AddressPool], connection: str) -> None:
    """Forget a connection's pools (its default one and its named ones)."""
    for key in [k for k in pools if k == connection or k.startswith(connection + "\0")]:
        del pools[key]


REPLACE_DELAY = 10.0  # seconds before unique = replace deletes a same-address duplicate
IKE_SAS_PER_IDENTITY = 10
CHILD_SAS_PER_IKE_SA = 64

Datagram = tuple[bytes, Addr, int]  # data, remote address, local port to send from


class IkeManager:
    def __init__(self, configs: Sequence[IkeConfig], *, rng: Rng, local: Addr,
                 cookie_threshold: int = 10, half_open_limit: int = 1000,
                 cookie_threshold_ip: int = COOKIE_THRESHOLD_IP,
                 block_threshold: int = BLOCK_THRESHOLD,
                 ike_sas_per_identity: int = IKE_SAS_PER_IDENTITY,
                 child_sas_per_ike_sa: int = CHILD_SAS_PER_IKE_SA) -> None:  # fmt: skip
        """``configs``: the connections we answer for (none: initiate only); ``local``:
        our address for NAT detection when the shell cannot say where a datagram came in.
        The limits: control/responder.py and the module docstring."""
        self.rng = rng
        self.local = local
        self.responder: Responder | None = None
        if configs:
            self.responder = Responder(configs, local, rng, cookie_threshold=cookie_threshold,
                                       half_open_limit=half_open_limit,
                                       cookie_threshold_ip=cookie_threshold_ip,
                                       block_threshold=block_threshold)  # fmt: skip
        self.ike_sas_per_identity = ike_sas_per_identity
        self.child_sas_per_ike_sa = child_sas_per_ike_sa
        self._per_source = {"cookie_threshold_ip": cookie_threshold_ip,
                            "block_threshold": block_threshold}  # fmt: skip
        self.fragments = FragmentBudget()  # reassembly memory of all IKE SAs together
        self._by_spi: dict[int, IkeSa] = {}  # our own SPI -> IKE SA
        self._by_id: dict[int, IkeSa] = {}  # ike_sa_id -> its newest IKE SA (see by_id)
        # IKE SAs that have something to say since we last looked (id() -> IKE SA).
        self._touched: dict[int, IkeSa] = {}
        # Timers: a heap of (when, n, IKE SA); an entry counts while it is the one in
        # _timer_of for that SA (others are stale and skipped).
        self._timers: list[tuple[float, int, IkeSa]] = []
        self._timer_of: dict[int, float] = {}
        self._seq = itertools.count()
        # Established IKE SAs by (connection, peer ID type, peer ID): duplicates, caps.
        self._by_peer: dict[tuple[str, bytes], dict[int, IkeSa]] = {}
        self._peer_key: dict[int, tuple[str, bytes]] = {}
        # TaskManager counters of the IKE SAs no longer here (see task_counters).
        self._gone_counts = (0, 0, 0, 0)
        self._responding: dict[int, IkeSa] = {}  # initiator's SPI -> IKE SA we answer
        self._events: deque[Event] = deque()
        self._out: list[Datagram] = []
        # (connection, child) -> what to initiate when traffic hits its trap.
        self.traps: dict[tuple[str, str], tuple[IkeConfig, Addr, Addr]] = {}
        self.closing = False  # shutting down: nothing is restarted or trapped any more
        self.replace_delay = REPLACE_DELAY
        # unique = replace: (when, an IKE SA whose same-address duplicates to settle then).
        self._settle: list[tuple[float, IkeSa]] = []
        # Virtual IPs (pool.py): by connection, and by pool_key() for its framed_pools.
        self.pools: dict[str, AddressPool] = {}
        # The shell's: our usable addresses for an IKE SA's N(ADDITIONAL_*) (RFC 4555
        # §3.6), None when it cannot tell (IkeSa.local_addresses).
        self.local_addresses: Callable[[IkeSa], tuple[str, ...] | None] = lambda sa: None

    @property
    def sas(self) -> list[IkeSa]:
        return list(self._by_spi.values())

    def initiate(self, config: IkeConfig, *, local: Addr, remote: Addr, now: float,
                 child: ChildConfig | None = None) -> IkeSa:  # fmt: skip
        if any(o.config.name == config.name and not o.is_destroyed for o in self._by_spi.values()):
            # INITIAL_CONTACT only when we hold no other IKE SA of this connection.
            config = replace(config, initial_contact=False)
        sa = IkeSa.initiate(config, local=local, remote=remote, rng=self.rng, now=now,
                            child=child)  # fmt: skip
        self._add(sa)
        return sa

    def receive_datagram(self, data: bytes, addr: Addr, now: float,
                         local: Addr | None = None) -> None:  # fmt: skip
        if len(data) < HEADER_LEN:
            return
        spi_i = int.from_bytes(data[0:8], "big")
        spi_r = int.from_bytes(data[8:16], "big")
        from_initiator = bool(data[19] & 0x08)
        # The I flag says whose message it is: the original initiator's messages carry
        # our SPI as responder SPI, the responder's messages ours as initiator SPI.
        sa = self._by_spi.get(spi_r if from_initiator else spi_i)
        if sa is None and from_initiator and spi_r == 0:
            # A late copy of an IKE_SA_INIT request whose SA exists already: that SA
            # answers it from its cache or drops it; it must not start another SA.
            known = self._responding.get(spi_i)
            if known is not None and known.remote[0] == addr[0]:
                sa = known
        if sa is not None and sa.spi_i == spi_i:
            sa.receive_datagram(data, addr, now, local)
            self._touch(sa)
            return
        if self.responder is None:
            return
        new = self.responder.receive_datagram(data, addr, now, local)
        if new is not None:
            self._add(new)
        for d, remote in self.responder.datagrams_to_send(now):
            self._out.append((d, remote, local[1] if local else 500))

    def datagrams_to_send(self, now: float) -> list[Datagram]:
        self._flush()
        out, self._out = self._out, []
        return out

    def handle_timer(self, now: float) -> None:
        due = [sa for when, sa in self._settle if now >= when]
        self._settle = [(when, sa) for when, sa in self._settle if now < when]
        for sa in due:
            self._settle_duplicates(sa.current, now)
        self._flush()  # the timers of what changed since
        while self._timers and self._timers[0][0] <= now:
            when, _, sa = heapq.heappop(self._timers)
            if self._timer_of.get(id(sa)) != when:
                continue  # stale
            del self._timer_of[id(sa)]
            # (Early if the SA's timer moved later meanwhile: then it does nothing.)
            sa.handle_timer(now)
            self._touch(sa)

    def get_timer(self) -> float | None:
        self._flush()
        while self._timers and self._timer_of.get(id(self._timers[0][2])) != self._timers[0][0]:
            heapq.heappop(self._timers)
        timers = [self._timers[0][0]] if self._timers else []
        timers += [when for when, _ in self._settle]
        return min(timers) if timers else None

    def next_event(self) -> Event | None:
        self._flush()
        return self._events.popleft() if self._events else None

    def task_counters(self) -> tuple[int, int, int, int]:
        """Summed over every IKE SA so far (TaskManager counters): requests sent again,
        the peer's retransmitted requests answered from the cache, the peer's messages
        that failed our checks, and those of them that raised something unanticipated."""
        totals = list(self._gone_counts)
        for sa in self._by_spi.values():
            for i, n in enumerate(_task_counts(sa)):
                totals[i] += n
        return totals[0], totals[1], totals[2], totals[3]

    def _touch(self, sa: IkeSa) -> None:
        self._touched[id(sa)] = sa

    def _flush(self) -> None:
        """Events, datagrams and the next timer of every IKE SA touched since last time
        (an SA may bring new ones: rekey, reauthentication)."""
        while self._touched:
            key = next(iter(self._touched))
            sa = self._touched.pop(key)
            self._collect(sa)
            if sa.is_destroyed:
                continue
            self._out += [(d, remote, sa.local[1]) for d, remote in sa.datagrams_to_send(0)]
            when = sa.get_timer()
            if when is None:
                self._timer_of.pop(key, None)
            elif self._timer_of.get(key) != when:
                self._timer_of[key] = when
                heapq.heappush(self._timers, (when, next(self._seq), sa))
        if len(self._timers) > 4 * len(self._timer_of) + 64:  # drop the stale entries
            live = {id(sa): sa for _, _, sa in self._timers}
            self._timers = [(when, next(self._seq), live[k]) for k, when in self._timer_of.items()]
            heapq.heapify(self._timers)

    def by_id(self, ike_sa_id: int) -> IkeSa | None:
        """The newest IKE SA with this id (a rekeyed one keeps it): ``.current`` of it
        carries the Child SAs."""
        return self._by_id.get(ike_sa_id)

    def status(self) -> list[dict[str, object]]:
        return [sa.status() for sa in self._by_spi.values()]

    def _duplicates(self, sa: IkeSa) -> list[IkeSa]:
        """The established IKE SAs other than ``sa`` (and its own predecessors) of the
        same connection with the same peer identity."""
        out = []
        for other in list(self._by_peer.get(_peer_key(sa), {}).values()):
            if other is sa or other.config.name != sa.config.name or not _same_peer(other, sa):
                continue
            if not other.is_established or other.replaced_by is not None:
                continue
            if other is sa.reauth_of or other.reauth_by is sa:
                continue
            out.append(other)
        return out

    def _drop_stale(self, fresh: IkeSa) -> None:
        """RFC 7296 §2.4 INITIAL_CONTACT: the peer (restarted) holds no other IKE SA with
        us, so every older one with the same identity and connection is gone."""
        for other in self._duplicates(fresh):
            if other.established_seq < fresh.established_seq:
                other.destroy("replaced: the peer sent INITIAL_CONTACT")
                self._collect(other)

    def _replace(self, fresh: IkeSa) -> None:
        """unique = replace, when ``fresh`` comes up (see the module docstring)."""
        settle = False
        for other in self._duplicates(fresh):
            if other.remote[0] == fresh.remote[0]:
                fresh.log(f"IKE SA {other.spi_i:016x}_i is a duplicate: settling it in "
                          f"{self.replace_delay:g} s (unique = replace)")  # fmt: skip
                settle = True
            elif not fresh.original_initiator and not other.is_deleting:
                fresh.log(f"replacing IKE SA {other.spi_i:016x}_i with this one from "
                          f"{fresh.remote[0]} (unique = replace)")  # fmt: skip
                other.delete(fresh.now)
                self._collect(other)
        if settle:
            self._settle.append((fresh.now + self.replace_delay, fresh))

    def _settle_duplicates(self, sa: IkeSa, now: float) -> None:
        """unique = replace, REPLACE_DELAY after ``sa`` came up: which of it and its
        same-address duplicates go (see the module docstring)."""
        for other in self._duplicates(sa):
            if not sa.is_established or sa.is_deleting:
                return
            if other.remote[0] != sa.remote[0] or other.is_deleting:
                continue
            if _overlapped(sa, other):
                loser = min(sa, other, key=lambda x: (x.spi_i, x.spi_r))
            elif not sa.original_initiator and other.established_at < sa.established_at:
                loser = other
            else:
                continue
            loser.log("deleting a duplicate IKE SA (unique = replace)")
            loser.delete(now)
            self._collect(loser)

    def trap(self, config: IkeConfig, child: str, *, local: Addr, remote: Addr) -> None:
        """A trap for ``child`` of ``config`` (start_action = trap): nothing is sent
        until ``acquire``."""
        if not any(c.name == child for c in config.children):
            raise LocalProtocolError(f"connection {config.name!r} has no child {child!r}")
        self.traps[(config.name, child)] = (config, local, remote)

    def acquire(self, name: str, child: str, now: float) -> IkeSa | None:
        """Traffic hit the trap of connection ``name``'s ``child``: negotiate the Child SA
        (on the connection's IKE SA if one is up or coming up, else on a new one).
        Idempotent: while the Child SA exists or is being made, nothing more happens.
        None when there is no such trap."""
        entry = self.traps.get((name, child))
        if entry is None or self.closing:
            return None
        config, local, remote = entry
        cfg = next(c for c in config.children if c.name == child)
        for sa in self._by_spi.values():
            if sa.config.name != name or sa.is_destroyed or sa.is_deleting:
                continue
            if sa.replaced_by is not None or sa.reauth_of is not None:
                continue
            if any(c.name == child for c in sa.children.values()) or _negotiating(sa, child):
                return sa
            sa.create_child(cfg, now)
            return sa
        return self.initiate(config, local=local, remote=remote, now=now, child=cfg)

    def reconfigure(self, configs: Sequence[IkeConfig], *, cookie_threshold: int,
                    half_open_limit: int) -> None:  # fmt: skip
        """A reloaded configuration: the responder answers for ``configs`` from now on.
        IKE SAs already there keep the configuration they were made with (the shell
        terminates those of removed or changed connections itself)."""
        if not configs:
            self.responder = None
        elif self.responder is None:
            self.responder = Responder(configs, self.local, self.rng,
                                       cookie_threshold=cookie_threshold,
                                       half_open_limit=half_open_limit,
                                       **self._per_source)  # fmt: skip
        else:
            self.responder.configs = tuple(configs)
            self.responder.cookie_threshold = cookie_threshold
            self.responder.half_open_limit = half_open_limit
        names = {c.name for c in configs}
        for key in [k for k in self.traps if k[0] not in names]:
            del self.traps[key]
        # Half-open IKE SAs we answer pick their connection in IKE_AUTH among the
        # configurations of now, never among those the reload replaced or removed.
        by_name = {c.name: c for c in configs}
        for sa in list(self._by_spi.values()):
            if sa.initiator or sa.is_established or sa.is_destroyed:
                continue
            if not configs:
                sa.destroy("the configuration was reloaded")
                self._collect(sa)
                continue
            allowed = configs_for_peer(configs, sa.remote[0])
            if not allowed:
                sa.destroy("the reloaded configuration has no connection for this address")
                self._collect(sa)
                continue
            sa.candidates = allowed
            if not any(sa.config is c for c in allowed):
                named = by_name.get(sa.config.name)
                sa.config = named if named in allowed else allowed[0]

    def connection_sas(self, name: str) -> list[IkeSa]:
        """The IKE SAs of connection ``name`` that are not gone, rekeyed or deleting."""
        return [sa for sa in self._by_spi.values()
                if sa.config.name == name and not sa.is_destroyed and not sa.is_deleting
                and sa.replaced_by is None and sa.reauth_of is None]  # fmt: skip

    def start_children(self, config: IkeConfig, children: Sequence[ChildConfig], *,
                       local: Addr, remote: Addr, now: float) -> IkeSa:  # fmt: skip
        """Negotiate ``children`` of ``config`` (swanctl --initiate): on the connection's
        IKE SA if one is up or coming up (children it has or is making are left alone),
        else on a new IKE SA (the first in IKE_AUTH, the others with CREATE_CHILD_SA)."""
        if not children:
            raise LocalProtocolError(f"connection {config.name!r}: no child to initiate")
        for sa in self.connection_sas(config.name):
            have = {c.name for c in sa.children.values()}
            for cfg in children:
                if cfg.name not in have and not _negotiating(sa, cfg.name):
                    sa.create_child(cfg, now)
            return sa
        sa = self.initiate(config, local=local, remote=remote, now=now, child=children[0])
        for cfg in children[1:]:
            sa.create_child(cfg, now)
        return sa

    def terminate(self, name: str, now: float) -> list[IkeSa]:
        """Delete every IKE SA of connection ``name`` (INFORMATIONAL { D }; half-open ones
        just go), as ``shutdown`` does for all. Returns those being deleted."""
        return self._delete_all(now, "terminated", name)

    def _delete_all(self, now: float, reason: str, name: str | None = None) -> list[IkeSa]:
        """INFORMATIONAL { D(IKE) } on every IKE SA (of connection ``name``) that is not
        gone; those rekeyed away just go (their successor says DELETE). Returns the ones
        deleted."""
        deleted = []
        for sa in list(self._by_spi.values()):
            if sa.is_destroyed or (name is not None and sa.config.name != name):
                continue
            if sa.replaced_by is not None or sa.reauth_by is not None:
                sa.destroy(reason)
            else:
                sa.delete(now)
                deleted.append(sa)
            self._collect(sa)
        return deleted

    def shutdown(self, now: float) -> None:
        """Clean shutdown (the shell's SIGTERM): INFORMATIONAL { D(IKE) } on every IKE
        SA that is up, half-open ones dropped, nothing restarted. Send what
        ``datagrams_to_send`` gives, feed answers for a moment, stop once ``idle``."""
        self.closing = True
        self.traps.clear()
        self._delete_all(now, "shutting down")

    @property
    def idle(self) -> bool:
        self._flush()  # (destroyed IKE SAs leave the tables there)
        return all(sa.is_destroyed for sa in self._by_spi.values())

    def _act(self, sa: IkeSa, event: Event) -> None:
        """strongSwan's dpd_action / close_action: negotiate again, or leave a trap."""
        if self.closing:
            return
        cfgs = {c.name: c for c in sa.config.children}
        start: list[str] = []
        if isinstance(event, IkeSaDown):
            for a in event.actions:
                if a.action == "trap":
                    self.traps[(sa.config.name, a.child)] = (sa.config, sa.first_local,
                                                             sa.first_remote)  # fmt: skip
                elif a.child in cfgs:
                    start.append(a.child)
            if start:
                new = self.initiate(sa.config, local=sa.first_local, remote=sa.first_remote,
                                    now=sa.now, child=cfgs[start[0]])  # fmt: skip
                for name in start[1:]:
                    new.create_child(cfgs[name], sa.now)
        elif isinstance(event, ChildSaDown) and event.action and event.name in cfgs:
            if event.action == "trap":
                self.traps[(sa.config.name, event.name)] = (sa.config, sa.first_local,
                                                            sa.first_remote)  # fmt: skip
            elif not sa.current.is_destroyed and not sa.current.is_deleting:
                sa.current.create_child(cfgs[event.name], sa.now)

    def _lease(self, sa: IkeSa, version: int) -> IPAddress | None:
        """A virtual IP of ``version`` for the peer of ``sa`` from its connection's pool,
        or from the named pool its RADIUS server chose (Framed-Pool, RFC 2869 §5.18)."""
        if not sa.config.pool or not sa.peer_key:
            return None
        key, nets, exact = sa.config.name, sa.config.pool, sa.config.pool_exact
        if sa.framed_pool:
            named = next((p for p in sa.config.framed_pools if p[0] == sa.framed_pool), None)
            if named is None:
                sa.log(f"Framed-Pool '{printable(sa.framed_pool)}' is none of the connection's "
                       "framed_pools", logging.WARNING)  # fmt: skip
                return None
            key, nets, exact = pool_key(sa.config.name, named[0]), named[1], named[2]
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = AddressPool(nets, exact)
        identity = sa.peer_key
        if version == 4 and sa.framed_ip is not None:  # EAP-RADIUS's Framed-IP-Address
            addr = pool.claim(sa.framed_ip, identity, sa.ike_sa_id)
            if addr is None:
                sa.log(f"Framed-IP-Address {sa.framed_ip} is outside the pool or in use",
                       logging.WARNING)  # fmt: skip
            return addr
        return pool.acquire(identity, version, sa.ike_sa_id)

    def _admit(self, sa: IkeSa) -> str:
        """Why the peer that just authenticated on ``sa`` may not have it (empty: it may):
        at most ``ike_sas_per_identity`` IKE SAs per identity and connection."""
        held = [o for o in self._by_peer.get(_peer_key(sa), {}).values()
                if o is not sa and o.replaced_by is None and not o.is_destroyed]  # fmt: skip
        if len(held) >= self.ike_sas_per_identity:
            return (f"{sa.id_str(sa.peer_id) if sa.peer_id else 'the peer'} holds "
                    f"{len(held)} IKE SAs already (ike_sas_per_identity)")  # fmt: skip
        self._index(sa)  # it counts from now on (IKE_AUTH requests may come in a burst)
        return ""

    def _index(self, sa: IkeSa) -> None:
        """An established IKE SA into the index by peer identity."""
        if not sa.peer_key or id(sa) in self._peer_key:
            return
        key = _peer_key(sa)
        self._peer_key[id(sa)] = key
        self._by_peer.setdefault(key, {})[id(sa)] = sa

    def radius_answer(self, ike_sa_id: int, answer: RadiusAnswer, now: float) -> bool:
        """The answer to IKE SA ``ike_sa_id``'s RadiusRequest: its IKE_AUTH response
        goes out. False if that SA no longer waits for one (gone, timed out)."""
        sa = self._by_id.get(ike_sa_id)  # found by id: no walk over every IKE SA
        if sa is None or sa.is_destroyed or not sa.tm.deferred:
            return False
        task = sa.tm.deferred[0]
        if not isinstance(task, IkeAuthEap):
            return False
        task.radius_answer = answer
        sa.tm.resume(now)
        self._touch(sa)
        return True

    def _add(self, sa: IkeSa) -> None:
        sa.duplicates = self._duplicates
        sa.lease = self._lease
        sa.admit = self._admit
        sa.touched = self._touch
        sa.local_addresses = lambda s: self.local_addresses(s)
        sa.fragments = self.fragments
        sa.max_children = self.child_sas_per_ike_sa
        self._by_spi[sa.spi_i if sa.initiator else sa.spi_r] = sa
        self._by_id[sa.ike_sa_id] = sa
        if not sa.initiator:
            self._responding[sa.spi_i] = sa
        if sa.is_established:
            self._index(sa)
        self._touch(sa)

    def _collect(self, sa: IkeSa) -> None:
        came_up = False
        while (event := sa.next_event()) is not None:
            if isinstance(event, (IkeSaRekeyed, IkeSaReauthenticating)):
                self._add(event.new_sa)
            if isinstance(event, IkeSaUp):
                came_up = True
                self._index(sa)
            self._events.append(event)
            if isinstance(event, (IkeSaDown, ChildSaDown)):
                self._act(sa, event)
        if came_up and sa.initial_contact and sa.config.unique != "never":
            self._drop_stale(sa)
        elif came_up and sa.config.unique == "replace":
            self._replace(sa)
        if sa.is_destroyed:
            key = pool_key(sa.config.name, sa.framed_pool) if sa.framed_pool else sa.config.name
            pool = self.pools.get(key)
            if pool is not None and (sa.replaced_by is None or sa.superseded):
                pool.release(sa.ike_sa_id)  # (a rekeyed SA's successor holds them on)
            # Its last words (e.g. the answer to the peer's DELETE) still go out.
            self._out += [(d, remote, sa.local[1]) for d, remote in sa.datagrams_to_send(0)]
            self._remove(sa)

    def _remove(self, sa: IkeSa) -> None:
        """A destroyed IKE SA leaves every table (by its keys: no walk over all SAs)."""
        if self._by_spi.get(sa.spi_i if sa.initiator else sa.spi_r) is not sa:
            return  # gone already
        gone = [a + b for a, b in zip(self._gone_counts, _task_counts(sa), strict=True)]
        self._gone_counts = gone[0], gone[1], gone[2], gone[3]
        for table, spi in ((self._by_spi, sa.spi_i if sa.initiator else sa.spi_r),
                           (self._responding, sa.spi_i), (self._by_id, sa.ike_sa_id)):  # fmt: skip
            if table.get(spi) is sa:
                del table[spi]
        key = self._peer_key.pop(id(sa), None)
        if key is not None:
            bucket = self._by_peer[key]
            bucket.pop(id(sa), None)
            if not bucket:
                del self._by_peer[key]
        self._timer_of.pop(id(sa), None)
        self._touched.pop(id(sa), None)


def _peer_key(sa: IkeSa) -> tuple[str, bytes]:
    """The index key: the connection and the peer's canonical identity (IkeSa.peer_key),
    so that no spelling of an identity escapes uniqueness or ike_sas_per_identity."""
    return (sa.config.name, sa.peer_key)


def _same_peer(a: IkeSa, b: IkeSa) -> bool:
    """Whether the peer proved the same identity to ``a`` and ``b`` (IDi or IDr), however
    it spelled it (IkeSa.peer_key)."""
    return bool(a.peer_key) and a.peer_key == b.peer_key


def _overlapped(a: IkeSa, b: IkeSa) -> bool:
    """Whether the set-ups of ``a`` and ``b`` overlapped in time."""
    return a.created <= b.established_at and b.created <= a.established_at


def _negotiating(sa: IkeSa, child: str) -> bool:
    """Whether an exchange making ``child`` is under way or queued on ``sa``."""
    from .tasks.child_create import CreateChild
    from .tasks.ike_auth import IkeAuth

    tasks = [sa.tm.active, *sa.tm.queue]
    for t in tasks:
        cfg = t.neg.cfg if isinstance(t, (CreateChild, IkeAuth)) else None
        if cfg is not None and cfg.name == child:
            return True
    return False


def _task_counts(sa: IkeSa) -> tuple[int, int, int, int]:
    """The TaskManager counters summed over IKE SAs (see IkeManager.task_counters)."""
    c = sa.tm.counters
    return (c.retransmits, c.retransmitted_requests_answered, c.protocol_errors,
            c.unexpected_errors)  # fmt: skip
