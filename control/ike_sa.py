"""One IKE SA, sans-I/O (RFC 7296).

Feed it datagrams and the time; take datagrams, timers and events out:

    sa = IkeSa.initiate(config, local=("198.18.0.1", 500), remote=("198.18.0.2", 500),
                        rng=SystemRng(), now=loop.time())
    for data, addr in sa.datagrams_to_send(now): sock.sendto(data, addr)
    sa.receive_datagram(data, addr, now); sa.handle_timer(now); sa.get_timer()
    while (event := sa.next_event()) is not None: ...

Datagrams addressed to port 4500 go out with the non-ESP marker (the I/O shell adds it);
``receive_datagram`` takes them with the marker already stripped.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
from collections import deque
from collections.abc import Callable
from enum import Enum

from . import reauth
from .child_sa import ChildSa, seq_rekey_threshold
from .config import ChildConfig, IkeConfig
from .constants import (
    NATT_PORT,
    ExchangeType,
    IdType,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from .crypto import (
    ENCR_ALGS,
    INTEG_ALGS,
    PRFS,
    Crypter,
    IkeKeys,
    Prf,
    derive_ike_keys,
    make_crypter,
    skeyseed,
    skeyseed_rekey,
)
from .errors import IntegrityError, LocalProtocolError, RemoteProtocolError
from .events import (
    ChildAction,
    ChildSaClosing,
    ChildSaDown,
    ChildSaRekeyed,
    Event,
    IkeSaDown,
    IkeSaRekeyed,
    IkeSaUp,
    PeerAddressChanged,
)
from .fragments import FragmentBudget, Reassembly
from .message import (
    Header,
    Message,
    decode,
    decrypt_fragment,
    encode,
    encode_fragments,
    parse_header,
    reassemble,
)
from .payloads import AuthPayload, DeletePayload, IdiPayload, IdPayload, Payload, SaPayload
from .proposals import Chosen, key_lengths
from .rng import Rng
from .task_manager import TaskManager
from .tasks.base import Task
from .tasks.child_create import CreateChild
from .tasks.ike_auth import IkeAuth
from .tasks.ike_auth_eap import IkeAuthEap
from .tasks.ike_init import IkeInit
from .tasks.ike_rekey import REPLACED_GRACE, IkeRekey
from .tasks.informational import Informational
from .tasks.mobike import AddressUpdate, MobikeInformational
from .text import printable

log = logging.getLogger("espfast.control")

Addr = tuple[str, int]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
HALF_OPEN_TIMEOUT = 30.0  # seconds a responder waits for IKE_AUTH (strongSwan's default)
MAX_CHILDREN = 64  # Child SAs the peer may create on one IKE SA (IkeManager sets it)
REKEY_RETRY = 10.0  # seconds (plus up to as much again) before a failed rekey is retried
# Path MTU minus IPv6 + UDP headers and the non-ESP marker (RFC 7383 §2.5.1).
FRAGMENT_OVERHEAD = 40 + 8 + 4


_ESTABLISHED = itertools.count(1)


class State(Enum):
    CONNECTING = "connecting"
    ESTABLISHED = "established"
    DELETING = "deleting"
    DESTROYED = "destroyed"


class IkeSa:
    def __init__(self, config: IkeConfig, *, initiator: bool, local: Addr, remote: Addr,
                 rng: Rng, now: float, spi_i: int = 0, ike_sa_id: int | None = None,
                 candidates: tuple[IkeConfig, ...] = ()) -> None:  # fmt: skip
        self.config = config
        self.candidates = candidates or (config,)
        self.initiator = initiator
        # Whether we set up this IKE SA's lineage (kept across rekeys, whoever rekeyed):
        # only that end reauthenticates on reauth_time, so that the two ends never
        # reauthenticate at once into two IKE SAs.
        self.original_initiator = initiator
        self.local = local
        self.remote = remote
        # Where the Child SAs send ESP: ``remote`` once the peer proved it is there (a
        # MOBIKE move waits for the return routability check, RFC 4555 §5.2).
        self.esp_remote = remote
        # Where it all began (kept across rekeys): a restart starts from here again.
        self.first_local, self.first_remote = local, remote
        self.down_cause = ""  # why it went down (IkeSaDown.cause)
        self.rng = rng
        own_spi = self._new_spi()
        self.spi_i = own_spi if initiator else spi_i
        self.spi_r = 0 if initiator else own_spi
        self.ike_sa_id = ike_sa_id if ike_sa_id is not None else own_spi
        self.state = State.CONNECTING
        self.now = now  # the time of the input being handled (the caller's clock)
        self.created = now
        self.tm = TaskManager(self)
        self.children: dict[int, ChildSa] = {}
        self._events: deque[Event] = deque()
        self._out: list[tuple[bytes, Addr]] = []
        self._fragments = Reassembly(FragmentBudget())  # (IkeManager shares one budget)
        self.half_open_deadline: float | None = None if initiator else now + HALF_OPEN_TIMEOUT
        # Negotiated in IKE_SA_INIT.
        self.chosen: Chosen | None = None
        self.prf: Prf = PRFS[next(iter(PRFS))]
        self.keys = IkeKeys(*(bytearray() for _ in range(7)))
        self._crypt_in: Crypter | None = None
        self._crypt_out: Crypter | None = None
        self.nonce_i = self.nonce_r = b""
        self.init_request = self.init_response = b""
        self.peer_fragmentation = False
        self.peer_hash_algorithms: tuple[int, ...] = ()
        self.peer_certreq = False  # the peer sent CERTREQ (for send_cert = "ifasked")
        self.nat_local = self.nat_remote = False
        self.mobike = False  # RFC 4555 negotiated: only UPDATE_SA_ADDRESSES moves the peer
        self.natd_dest = b""  # the peer's last NAT_DETECTION_DESTINATION_IP hash (us as seen)
        self.moves = 0  # how many times the IKE SA changed addresses (NAT rebinding, MOBIKE)
        # RFC 4555 §3.6: the peer's additional addresses (authenticated, bounded: only
        # ever candidate paths, tasks/mobike.take_peer_addresses), ours as last sent, and
        # the shell's view of our usable addresses (None: it cannot tell; IkeManager's).
        self.peer_addresses: tuple[str, ...] = ()
        self.announced: tuple[str, ...] | None = None
        self.local_addresses: Callable[[IkeSa], tuple[str, ...] | None] = lambda sa: None
        self.probing: tuple[Addr, ...] = ()  # where our outstanding request went besides
        self.updates_refused = 0  # our UPDATE_SA_ADDRESSES the peer refused (§3.9)
        self.datagram_from: Addr = remote  # where the datagram being handled came from
        self.request_from: Addr = remote  # where the request being handled came from
        self.peer_id: IdPayload | None = None
        # Who the peer is, whatever it wrote in its ID payload (auth.canonical_id, or the
        # certificate's auth.certificate_identity): leases and uniqueness key on it.
        self.peer_key = b""
        self.initial_contact = False  # the peer said it holds no other SA with us
        self.established_seq = 0  # order of establishment among all IKE SAs
        self.established_at = 0.0
        self.replaced_by: IkeSa | None = None  # set once rekeyed (RFC 7296 §2.18)
        self.rekeyed_from: IkeSa | None = None  # the IKE SA this one replaced
        self.destroy_when_idle = ""  # a reason: destroy once our outstanding request ends
        self.early_deletes: set[int] = set()  # peer SPIs deleted before we saw them made
        # The peer's rekey of this SA, while ours was under way: the lowest nonce of its
        # exchange and the SA it made (§2.8.2 collision).
        self.peer_ike_rekey: tuple[bytes, IkeSa] | None = None
        # The new IKE SA of such a collision, until it is settled: it may be the loser,
        # so it starts no exchange of its own (its queue waits).
        self.on_hold = False
        self.delete_reason = ""
        self.close_reason = ""  # why we are deleting it, if not simply "deleted"
        # Lifetimes and liveness (absolute times on the caller's clock).
        self.rekey_at: float | None = None
        self.expire_at: float | None = None
        self.rekeying = False
        self.last_heard = now
        # Reauthentication (control/reauth.py): when, the new SA replacing this one, or
        # (on the new SA) the old one and which of its Child SAs were re-created.
        self.reauth_at: float | None = None
        self.reauth_by: IkeSa | None = None
        self.reauth_of: IkeSa | None = None
        self.reauth_done: set[int] = set()
        # Replaced by reauthentication: the peer sees two unrelated IKE SAs, so a Child
        # SA still being made here stays here (and goes with it), unlike after a rekey.
        self.superseded = False
        # The other IKE SAs with the peer's identity under this connection (IkeManager's,
        # for its uniqueness policy; see IkeConfig.unique).
        self.duplicates: Callable[[IkeSa], list[IkeSa]] = lambda sa: []
        # Virtual IPs (RFC 7296 §2.19): what the peer gave us (and its DNS servers), what
        # we gave the peer (from IkeManager's pool for the connection, through ``lease``).
        self.local_vips: tuple[IPAddress, ...] = ()
        self.dns: tuple[IPAddress, ...] = ()
        self.remote_vips: tuple[IPAddress, ...] = ()
        self.lease: Callable[[IkeSa, int], IPAddress | None] = lambda sa, version: None
        # Responder: the IKE_AUTH task of an EAP conversation under way (RFC 7296 §2.16),
        # which takes the peer's next IKE_AUTH requests.
        self.pending_auth: Task | None = None
        # IkeManager's: told whenever this SA has something to say (datagrams, events,
        # a new timer), and asked whether a peer that authenticated may keep it (an
        # empty reason: yes). Child SAs the peer may create here: max_children.
        self.touched: Callable[[IkeSa], None] = lambda sa: None
        self.admit: Callable[[IkeSa], str] = lambda sa: ""
        self.max_children = MAX_CHILDREN

        # Responder, EAP-RADIUS: the Framed-IP-Address the server gave the peer's user.
        self.framed_ip: ipaddress.IPv4Address | None = None
        self.framed_pool = ""  # EAP-RADIUS: the Access-Accept's Framed-Pool (a pool's name)

    @property
    def fragments(self) -> FragmentBudget:
        return self._fragments.budget

    @fragments.setter
    def fragments(self, budget: FragmentBudget) -> None:
        """Reassembly memory shared with other IKE SAs (IkeManager's)."""
        self._fragments.clear()
        self._fragments = Reassembly(budget)

    # -- construction --------------------------------------------------------------------
    @classmethod
    def initiate(
        cls, config: IkeConfig, *, local: Addr, remote: Addr, rng: Rng, now: float,
        child: ChildConfig | None = None, ike_sa_id: int | None = None,
    ) -> IkeSa:  # fmt: skip
        """An IKE SA that starts IKE_SA_INIT and IKE_AUTH (with ``child``, by default the
        first child of the config) right away."""
        if child is None and config.children:
            child = config.children[0]
        if child is None:
            raise LocalProtocolError(f"connection {config.name!r} has no child to negotiate")
        sa = cls(config, initiator=True, local=local, remote=remote, rng=rng, now=now,
                 ike_sa_id=ike_sa_id)  # fmt: skip
        sa.tm.queue.append(IkeInit(sa, True))
        auth = IkeAuthEap if config.auth.eap_identity else IkeAuth
        sa.tm.queue.append(auth(sa, True, child))
        sa.tm.initiate(now)
        return sa

    def _new_spi(self) -> int:
        while True:
            spi = int.from_bytes(self.rng.random_bytes(8), "big")
            if spi:
                return spi

    # -- the sans-I/O interface ------------------------------------------------------------
    def receive_datagram(self, data: bytes, addr: Addr, now: float,
                         local: Addr | None = None) -> None:  # fmt: skip
        """One IKE datagram from ``addr`` (non-ESP marker already stripped). ``local``:
        the address it arrived on, when the shell knows it (port 4500 after NAT-T)."""
        if self.is_destroyed:
            return
        self.now = now
        try:
            header = parse_header(data)
        except RemoteProtocolError as exc:
            self.log(f"dropped a malformed datagram from {addr[0]}: {exc}")
            return
        if not self._ours(header):
            return
        msg: Message | RemoteProtocolError
        try:
            decoded = self._decode(header, data)
        except IntegrityError as exc:
            self.log(f"dropped a message failing its integrity check: {exc}")
            return
        except RemoteProtocolError as exc:
            if header.is_response:
                self.log(f"dropped a malformed response: {exc}")
                return
            msg = exc
        else:
            self.last_heard = now
            if decoded is None:  # a fragment; more to come
                return
            msg = decoded
        self.datagram_from = addr
        if header.is_response:
            assert isinstance(msg, Message)
            probed, mid = self.probing, self.tm.my_mid
            self.tm.on_response(msg, data, now)
            if addr in probed and self.tm.my_mid != mid:  # it answered our probe there
                self.path_found(addr, local, now)
            return
        if isinstance(msg, Message) and self.tm.peer_mid == header.message_id:
            if local is not None and not (self.mobike and self.original_initiator
                                          and self.is_established):  # fmt: skip
                # (A MOBIKE initiator's address changes only with its updates.)
                self.local = local
            self.request_from = addr
            if addr != self.remote and not (self.mobike and self.is_established):
                # RFC 7296 §2.23: a NAT mapping changed. With MOBIKE, only
                # UPDATE_SA_ADDRESSES moves the peer (RFC 4555 §3.5; tasks/informational).
                self.peer_moved(addr)
        self.tm.on_request(msg, header.message_id, header.exchange, data, now)

    def handle_timer(self, now: float) -> None:
        self.now = now
        self._fragments.expire(now)
        if self.half_open_deadline is not None and now >= self.half_open_deadline:
            self.half_open_deadline = None
            if not self.is_established:
                self.destroy("half-open IKE SA timed out")
                return
        self.tm.handle_timer(now)
        if self.is_destroyed or self.state is not State.ESTABLISHED:
            return
        if self.expire_at is not None and now >= self.expire_at:
            self.expire_at = None
            self.log("IKE SA lifetime over" if self.replaced_by is None else
                     "the peer did not delete the IKE SA it rekeyed")  # fmt: skip
            self.down_cause = "expired"
            self._delete_self(now)
            return
        if self.reauth_at is not None and now >= self.reauth_at:
            self.reauth_at = None
            reauth.start(self, now)
        if self.rekey_at is not None and now >= self.rekey_at and not self.rekeying:
            self.rekeying = True
            self.rekey(now)
        for spi, child in list(self.children.items()):
            if child.expire_at is not None and now >= child.expire_at:
                child.expire_at = child.rekey_at = None
                self.log(f"Child SA {child.name} {spi:08x} lifetime over")
                self.delete_child(spi, now)
            elif child.rekey_at is not None and now >= child.rekey_at and not child.rekeying:
                child.rekeying = True
                self.rekey_child(spi, now)
        dpd = self._dpd_at()
        if dpd is not None and now >= dpd:
            self.last_heard = now  # one check at a time; retransmissions decide the rest
            self.check_liveness(now)

    def get_timer(self) -> float | None:
        if self.is_destroyed:
            return None
        timers = [self.tm.get_timer(), self.half_open_deadline, self._fragments.deadline()]
        if self.state is State.ESTABLISHED:
            timers += [self.expire_at, None if self.rekeying else self.rekey_at, self._dpd_at(),
                       self.reauth_at]  # fmt: skip
            for c in self.children.values():
                timers += [c.expire_at, None if c.rekeying else c.rekey_at]
        due = [t for t in timers if t is not None]
        return min(due) if due else None

    def child_traffic(self, spi_in: int, octets: int, packets: int, now: float, *,
                      seq_out: int = 0) -> None:  # fmt: skip
        """The dataplane's counters for a Child SA (both directions, cumulative): rekey it
        when they pass rekey_bytes / rekey_packets, or when ``seq_out``, the outbound
        SA's last sequence number sent (SaStats.seq), nears the end of the 32-bit (or,
        with ESN, 64-bit) space (RFC 4303 §3.3.3)."""
        child = self.children.get(spi_in)
        if child is None or child.rekeying:
            return
        life = self._child_config(child.name).lifetime
        why = ""
        if life.rekey_bytes and octets >= life.rekey_bytes:
            why = f"{octets} bytes"
        elif life.rekey_packets and packets >= life.rekey_packets:
            why = f"{packets} packets"
        elif seq_out >= seq_rekey_threshold(child.chosen.esn):
            why = f"sequence number {seq_out} nearing exhaustion"
        if why:
            self.log(f"Child SA {child.name} {spi_in:08x}: rekeying after {why}")
            child.rekeying = True
            self.rekey_child(spi_in, now)

    def peer_alive(self, now: float) -> None:
        """Traffic from the peer was seen (e.g. inbound ESP): no liveness check needed."""
        self.last_heard = max(self.last_heard, now)

    def _dpd_at(self) -> float | None:
        delay = self.config.dpd_delay
        if not delay or self.tm.active is not None or self.tm.queue:
            return None
        return self.last_heard + delay

    def retry_rekey_later(self, child: ChildSa | None = None) -> None:
        """A rekey failed (TEMPORARY_FAILURE, collision, timeout): try again in 10-20 s
        (RFC 7296 §2.25), as long as the SA lives."""
        when = self.now + REKEY_RETRY + self._jitter(REKEY_RETRY)
        if child is None:
            self.rekeying = False
            self.rekey_at = when
        elif child.spi_in in self.children and not child.deleting:
            child.rekeying = False
            child.rekey_at = when
        self.timers_changed()

    def retry_reauth_later(self) -> None:
        self.reauth_at = self.now + REKEY_RETRY + self._jitter(REKEY_RETRY)
        self.timers_changed()  # (reauth.failed: the new IKE SA's input, not ours)

    def _jitter(self, life_rand: float) -> float:
        return int.from_bytes(self.rng.random_bytes(4), "big") / 2**32 * life_rand

    def _child_config(self, name: str) -> ChildConfig:
        for c in self.config.children:
            if c.name == name:
                return c
        return ChildConfig(name, (), ())

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    # -- what the I/O shell may ask for ------------------------------------------------
    # After a rekey the old IKE SA starts no exchange (RFC 7296 §2.18): what the shell
    # asks of it goes to the IKE SA that replaced it.

    def create_child(self, child: ChildConfig, now: float) -> None:
        """CREATE_CHILD_SA for an additional Child SA (RFC 7296 §1.3.1)."""
        sa = self.current
        sa.tm.queue_task(CreateChild(sa, True, child), now)

    def rekey_child(self, spi_in: int, now: float) -> None:
        """CREATE_CHILD_SA with REKEY_SA for the Child SA whose inbound SPI is ``spi_in``."""
        sa = self.current
        child = sa.children.get(spi_in)
        if child is None or child.deleting:
            return  # gone or going: nothing to rekey
        child.rekeying = True
        sa.tm.queue_task(CreateChild(sa, True, sa._child_config(child.name), rekey=child), now)

    def delete_child(self, spi_in: int, now: float, *, first: bool = False) -> None:
        """INFORMATIONAL { D(ESP, spi_in) }; ChildSaDown when the peer confirms.
        ``first``: ahead of other queued exchanges."""
        if self.replaced_by is not None and spi_in not in self.children:
            self.current.delete_child(spi_in, now, first=first)
            return
        child = self.children.get(spi_in)
        if child is not None:
            if not child.deleting:
                self.emit(ChildSaClosing(self.ike_sa_id, child.name, spi_in))
            child.deleting = True
            child.rekey_at = None
        spi = spi_in.to_bytes(4, "big")
        task = Informational(self, True, (DeletePayload(ProtocolId.ESP, (spi,)),))
        if first:
            self.tm.queue.insert(0, task)
            self.tm.initiate(now)
        else:
            self.tm.queue_task(task, now)

    def delete(self, now: float) -> None:
        """INFORMATIONAL { D(IKE) }: closes the IKE SA and all its Child SAs."""
        self.current.down_cause = "local"
        self.current._delete_self(now)

    def abandon(self, reason: str) -> None:
        """IKE_AUTH went through but we cannot use this IKE SA: delete it (the peer holds
        it) without ever announcing it; IkeSaDown says ``reason``, cause "failed"."""
        self.log(f"{reason}: deleting the IKE SA", logging.WARNING)
        self.close_reason, self.down_cause = reason, "failed"
        self.state = State.ESTABLISHED  # (unannounced) the keys are in place to say so
        self._delete_self(self.now)

    def _delete_self(self, now: float) -> None:
        if self.is_destroyed or self.is_deleting:
            return
        if not self.is_established:
            self.destroy("deleted before it was established")
            return
        for child in self.children.values():
            if not child.deleting and not self.superseded:  # (superseded: replaced already)
                self.emit(ChildSaClosing(self.ike_sa_id, child.name, child.spi_in))
        self.tm.queue.clear()
        self.tm.queue.append(Informational(self, True, (DeletePayload(ProtocolId.IKE),)))
        self.tm.initiate(now)

    def rekey(self, now: float) -> None:
        """CREATE_CHILD_SA rekeying this IKE SA (RFC 7296 §1.3.2); IkeSaRekeyed carries
        the new IkeSa, then this one is deleted."""
        sa = self.current
        if sa.reauth_by is not None or sa.reauth_of is not None:
            return  # a reauthentication under way (it renews the keys anyway)
        sa.rekeying = True
        sa.tm.queue_task(IkeRekey(sa, True), now)

    def reauthenticate(self, now: float) -> IkeSa | None:
        """Reauthenticate now (as at reauth_time; control/reauth.py): returns the new IKE
        SA, also announced by IkeSaReauthenticating; None if one is under way already."""
        return reauth.start(self.current, now)

    def check_liveness(self, now: float) -> None:
        """An empty INFORMATIONAL (dead peer detection, RFC 7296 §2.4)."""
        sa = self.current
        if sa.mobike and sa.original_initiator and sa.nat_local:
            # RFC 4555 §3.8: with NAT detection, to notice the NAT mapping us anew.
            sa.tm.queue_task(MobikeInformational(sa, False), now)
            return
        sa.tm.queue_task(Informational(sa, True), now)

    def update_addresses(self, now: float, local: Addr | None = None) -> bool:
        """MOBIKE initiator (RFC 4555 §3.5): our address changed (to ``local``) or the path
        did: UPDATE_SA_ADDRESSES from the current addresses, which moves the IKE SA and
        all its Child SAs at the peer. False if MOBIKE was not negotiated or we are not
        the original initiator (only it may update, §3.4)."""
        sa = self.current
        if not (sa.mobike and sa.original_initiator and sa.is_established):
            return False
        if local is not None and local != sa.local:
            sa.log(f"local address now {local[0]}:{local[1]}")
            sa.local = local
        if any(isinstance(t, MobikeInformational) and t.update for t in sa.tm.queue):
            return True  # one is waiting already: it will carry the newest addresses
        sa.tm.queue_task(MobikeInformational(sa, True), now)
        return True

    def path_found(self, addr: Addr, local: Addr | None, now: float) -> None:
        """MOBIKE initiator (RFC 4555 §3.5): the current path stopped answering and the
        peer answered our request sent to ``addr``, one of its addresses (tasks/mobike.
        probe_destinations): the IKE SA and our outbound SAs go there at once, and
        UPDATE_SA_ADDRESSES from there moves the peer's."""
        if not self.is_established or self.is_deleting or self.replaced_by is not None:
            return
        old = self.remote
        self.remote = addr
        if local is not None:
            self.local = local
        self.log(f"path probe answered from {addr[0]}:{addr[1]} (over "
                 f"{self.local[0]}): moving from {old[0]}:{old[1]}")  # fmt: skip
        self.emit(PeerAddressChanged(self.ike_sa_id, addr))
        if not any(isinstance(t, MobikeInformational) and t.update for t in self.tm.queue):
            self.tm.queue_task(MobikeInformational(self, True), now)

    def follow_esp(self, addr: Addr) -> bool:
        """The dataplane saw ESP of one of our Child SAs that passed its ICV and the
        replay window come from ``addr``, a new source (``follow_esp``, off by default,
        as WireGuard does): the IKE SA and its Child SAs follow it there
        (PeerAddressChanged). True if they moved."""
        sa = self.current
        if not (sa.config.follow_esp and sa.is_established) or sa.is_deleting \
                or addr == sa.remote:  # fmt: skip
            return False
        old = sa.remote
        sa.remote = addr
        sa.followed(addr, old)
        return True

    def announce_addresses(self, now: float) -> bool:
        """Our usable addresses changed (the shell's ``local_addresses``): tell the peer
        in an INFORMATIONAL (RFC 4555 §3.6), unless what it knows is still true or an
        update (which carries them) is waiting. True if one was queued."""
        sa = self.current
        if not (sa.mobike and sa.is_established) or sa.is_deleting:
            return False
        addrs = sa.local_addresses(sa)
        if addrs is None or sa.announced is None:
            return False
        if tuple(a for a in dict.fromkeys(addrs) if a != sa.local[0]) == sa.announced:
            return False
        if any(isinstance(t, (AddressUpdate, MobikeInformational)) for t in sa.tm.queue):
            return False
        sa.tm.queue_task(AddressUpdate(sa), now)
        return True

    def status(self) -> dict[str, object]:
        """What ``espfast status`` shows: no keys, only names, numbers and addresses."""
        return {
            "name": self.config.name,
            "id": self.ike_sa_id,
            "state": self.state.value,
            "initiator": self.initiator,
            "spi_i": f"{self.spi_i:016x}",
            "spi_r": f"{self.spi_r:016x}",
            "local": f"{self.local[0]}:{self.local[1]}",
            "remote": f"{self.remote[0]}:{self.remote[1]}",
            "local_id": self.id_str(IdPayload(*self.config.local_id)),
            "remote_id": self.id_str(self.peer_id) if self.peer_id else "",
            "algorithms": str(self.chosen) if self.chosen else "",
            "nat": {"local": self.nat_local, "remote": self.nat_remote},
            "mobike": self.mobike,
            "moves": self.moves,
            "peer_addresses": list(self.peer_addresses),
            "children": [
                {
                    "name": c.name,
                    "spi_in": f"{c.spi_in:08x}",
                    "spi_out": f"{c.spi_out:08x}",
                    "algorithms": str(c.chosen),
                    "local_ts": [str(t) for t in c.local_ts],
                    "remote_ts": [str(t) for t in c.remote_ts],
                }
                for c in self.children.values()
            ],
            "counters": dict(self.tm.counters.__dict__),
        }

    # -- state -------------------------------------------------------------------------
    @property
    def is_established(self) -> bool:
        return self.state in (State.ESTABLISHED, State.DELETING)

    @property
    def is_destroyed(self) -> bool:
        return self.state is State.DESTROYED

    @property
    def is_deleting(self) -> bool:
        return self.state is State.DELETING

    def deleting(self) -> None:
        self.state = State.DELETING

    def _schedule(self, now: float) -> None:
        life = self.config.lifetime
        if life.rekey_time:
            self.rekey_at = now + life.rekey_time - self._jitter(life.rand_time)
        if life.reauth_time and self.original_initiator:
            self.reauth_at = now + life.reauth_time - self._jitter(life.rand_time)
        if life.life_time:
            self.expire_at = now + life.life_time

    def established(self) -> None:
        self.established_seq = next(_ESTABLISHED)
        self.established_at = self.now
        self.state = State.ESTABLISHED
        self.half_open_deadline = None
        self._schedule(self.now)
        assert self.chosen is not None
        peer = self.id_str(self.peer_id) if self.peer_id else ""
        local = self.id_str(IdPayload(*self.config.local_id))
        self.log(f"IKE SA established with {peer} at {self.remote[0]}:{self.remote[1]} "
                 f"({self.chosen})", logging.DEBUG)  # fmt: skip
        self.emit(IkeSaUp(self.ike_sa_id, self.config.name, local, peer, self.remote,
                          str(self.chosen), tuple(map(str, self.local_vips)),
                          tuple(map(str, self.dns)),
                          tuple(map(str, self.remote_vips))))  # fmt: skip

    def destroy(self, reason: str) -> None:
        if self.is_destroyed:
            return
        was_up = self.is_established
        self.state = State.DESTROYED
        self._fragments.clear()
        self.touched(self)
        if self.replaced_by is not None and self.replaced_by.rekeyed_from is self:
            self.replaced_by.rekeyed_from = None  # no chain of old SAs kept alive
        self.delete_reason = reason
        cause = self.down_cause or ("local" if was_up else "failed")
        actions = self._actions(cause)
        for spi in list(self.children):
            self.remove_child(spi, reason)
        self.keys.wipe()
        self._crypt_in = self._crypt_out = None
        self.tm.queue.clear()
        self.tm.active = None
        if self.reauth_of is not None:
            if not was_up:
                # A reauthentication that failed: the old IKE SA carries on.
                self.log(f"IKE SA failed: {reason}")
                reauth.failed(self, reason)
                return
            old, self.reauth_of = self.reauth_of, None
            old.reauth_by = None
            old.replaced_by = self  # the IKE SA is down with this one; the old goes quietly
            old._delete_self(self.now)
        if self.replaced_by is not None:
            # Rekeyed away (or the loser of a §2.8.2 collision): the IKE SA lives on in
            # its replacement, so the shell hears nothing.
            self.log(f"old IKE SA {self.spi_i:016x}_i {self.spi_r:016x}_r closed: {reason}")
            return
        self.log(f"IKE SA {'deleted' if was_up else 'failed'}: {reason}", logging.DEBUG)
        self.emit(IkeSaDown(self.ike_sa_id, self.config.name, reason, cause, actions))

    def _actions(self, cause: str) -> tuple[ChildAction, ...]:
        """strongSwan's dpd_action (peer found dead) or close_action (peer deleted us)
        of each child this IKE SA carries, leaving out clear / none."""
        if cause not in ("dpd", "peer"):
            return ()
        names = {c.name for c in self.children.values()}
        out = []
        for c in self.config.children:
            action = c.dpd_action if cause == "dpd" else c.close_action
            if c.name in names and action not in ("clear", "none"):
                out.append(ChildAction(c.name, action))
        return tuple(out)

    # -- used by the tasks ---------------------------------------------------------------
    def set_ike_keys(self, chosen: Chosen, ni: bytes, nr: bytes, shared: bytes,
                     seed: bytes | None = None) -> None:  # fmt: skip
        """SKEYSEED (§2.14, or the rekeyed one of §2.18 in ``seed``), SK_*, SK ciphers."""
        self.chosen = chosen
        self.prf = PRFS[chosen.prf]
        enc_len, integ_len = key_lengths(chosen)
        if seed is None:
            seed = skeyseed(self.prf, ni, nr, shared)
        self.keys = derive_ike_keys(self.prf, seed, ni, nr, self.spi_i, self.spi_r,
                                    enc_len, integ_len)  # fmt: skip
        encr = ENCR_ALGS[chosen.encr]
        integ = INTEG_ALGS[chosen.integ] if chosen.integ else None
        k = self.keys
        ei, ai, er, ar = bytes(k.sk_ei), bytes(k.sk_ai), bytes(k.sk_er), bytes(k.sk_ar)
        out_i = make_crypter(encr, ei, integ, ai, self.rng)
        out_r = make_crypter(encr, er, integ, ar, self.rng)
        self._crypt_out, self._crypt_in = (out_i, out_r) if self.initiator else (out_r, out_i)

    @property
    def esp_in_udp(self) -> bool:
        """Whether our Child SAs' ESP goes in UDP (RFC 3948): a NAT was detected either
        way, or either end forces it (encap = yes: the peer's faked NAT-D shows up here as
        nat_remote). Else plain ESP, IP protocol 50 (RFC 7296 §2.23)."""
        return self.config.force_encap or self.nat_local or self.nat_remote

    def ike_init_done(self) -> None:
        """After IKE_SA_INIT: the initiator moves to port 4500 when a NAT was detected or
        encapsulation is forced (RFC 7296 §2.23, RFC 3948), and, as strongSwan does, with
        MOBIKE (§2.23 allows 4500 from the start): a move may meet a NAT later, and then
        IKE and ESP in UDP must already be on 4500 (RFC 4555 §3.3: no exchange would be
        left to float in). ESP goes in UDP only as esp_in_udp says."""
        if self.initiator and (self.nat_local or self.nat_remote or self.config.force_encap
                               or self.config.mobike):  # fmt: skip
            self.remote = self.esp_remote = (self.remote[0], NATT_PORT)
            self.local = (self.local[0], NATT_PORT)
            self.natd_dest = b""  # the NAT maps port 4500 on its own: not known yet

    def alloc_spi(self) -> int:
        """A fresh inbound ESP SPI (values below 256 are reserved, RFC 4303 §2.1)."""
        while True:
            spi = int.from_bytes(self.rng.random_bytes(4), "big")
            if spi >= 256 and spi not in self.children:
                return spi

    @property
    def current(self) -> IkeSa:
        """This IKE SA, or the one that replaced it after a rekey (RFC 7296 §2.18):
        exchanges finishing on a replaced SA put their Child SAs there."""
        sa = self
        while sa.replaced_by is not None:
            sa = sa.replaced_by
        return sa

    def add_child(self, child: ChildSa, replaces: ChildSa | None = None) -> None:
        """Keep the new Child SA and announce it (ChildSaUp, or ChildSaRekeyed when it
        ``replaces`` another); its keys leave with the event and are dropped here."""
        if self.replaced_by is not None and not self.superseded:
            self.current.add_child(child, replaces)
            return
        if replaces is None and self.reauth_of is not None:
            replaces = reauth.predecessor(self, child)  # re-created by reauthentication
        self.children[child.spi_in] = child
        life = self._child_config(child.name).lifetime
        if life.rekey_time:
            child.rekey_at = self.now + life.rekey_time - self._jitter(life.rand_time)
        if life.life_time:
            child.expire_at = self.now + life.life_time
        if replaces is not None:
            replaces.rekey_at = None  # the old one waits for its DELETE
        self.log(f"Child SA {child.name} up: {child.spi_in:08x}_i {child.spi_out:08x}_o "
                 f"{child.chosen} {', '.join(map(str, child.local_ts))} === "
                 f"{', '.join(map(str, child.remote_ts))}", logging.DEBUG)  # fmt: skip
        up = child.up_event(self.ike_sa_id, self.esp_remote, self.esp_in_udp)
        if replaces is None:
            self.emit(up)
        else:
            self.emit(ChildSaRekeyed(self.ike_sa_id, replaces.name, replaces.spi_in,
                                     replaces.spi_out, up))  # fmt: skip
        child.forget_keys()

    def remove_child(self, spi_in: int, reason: str, action: str = "") -> None:
        if spi_in not in self.children and self.replaced_by is not None:
            self.current.remove_child(spi_in, reason, action)
            return
        child = self.children.pop(spi_in, None)
        if child is None:
            return
        self.emit(ChildSaDown(self.ike_sa_id, child.name, spi_in, child.spi_out, reason,
                              action))  # fmt: skip

    def child_deleted_by_peer(self, spi_out: int) -> int | None:
        """The peer deleted its inbound SA ``spi_out``: remove ours; return our SPI."""
        child = self.child_by_spi_out(spi_out)
        if child is None:
            return None
        action = self._child_config(child.name).close_action
        if child.rekeying or child.deleting or child.peer_rekey is not None:
            action = "none"  # the old SA of a rekey, or one we close anyway: nothing to redo
        self.remove_child(child.spi_in, "deleted by peer", "" if action == "none" else action)
        return child.spi_in

    def child_by_spi_out(self, spi_out: int) -> ChildSa | None:
        """The Child SA whose outbound SPI is ``spi_out`` (here or in our replacement)."""
        for child in self.children.values():
            if child.spi_out == spi_out:
                return child
        return self.replaced_by.child_by_spi_out(spi_out) if self.replaced_by else None

    def rekeyed(self, *, initiator: bool, spi_i: int, spi_r: int, chosen: Chosen, ni: bytes,
                nr: bytes, shared: bytes, now: float, on_hold: bool = False) -> IkeSa:  # fmt: skip
        """The IKE SA that replaces this one (RFC 7296 §2.18): new SPIs and keys from
        SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr), Message IDs from 0, the rekey
        initiator as its initiator, and all Child SAs moved over. ``on_hold``: a §2.8.2
        collision is not settled yet; our queued exchanges stay here until it is."""
        new = IkeSa(self.config, initiator=initiator, local=self.local, remote=self.remote,
                    rng=self.rng, now=now, spi_i=spi_i)  # fmt: skip
        new.spi_i, new.spi_r = spi_i, spi_r
        new.first_local, new.first_remote = self.first_local, self.first_remote
        new.original_initiator = self.original_initiator
        new.ike_sa_id = self.ike_sa_id  # the same IKE SA to the shell, under new SPIs
        new.candidates = self.candidates
        new.half_open_deadline = None
        # The old PRF keys SKEYSEED, the new one derives the SK_* (as strongSwan does).
        seed = skeyseed_rekey(self.prf, bytes(self.keys.sk_d), shared, ni, nr)
        new.set_ike_keys(chosen, ni, nr, shared, seed)
        new.nonce_i, new.nonce_r = ni, nr
        new.peer_fragmentation = self.peer_fragmentation
        new.peer_hash_algorithms = self.peer_hash_algorithms
        new.nat_local, new.nat_remote = self.nat_local, self.nat_remote
        new.mobike = self.mobike
        new.peer_addresses, new.announced = self.peer_addresses, self.announced
        new.esp_remote = self.esp_remote
        new.moves = self.moves  # natd_dest stays empty: the hashes cover the new SPIs
        new.peer_id, new.peer_key = self.peer_id, self.peer_key
        new.local_vips, new.dns, new.remote_vips = self.local_vips, self.dns, self.remote_vips
        new.framed_pool = self.framed_pool  # (its addresses are released to that pool)
        new.state = State.ESTABLISHED
        new.established_seq = self.established_seq
        new.created, new.established_at = self.created, self.established_at  # the lineage's
        new._schedule(now)
        new.children, self.children = self.children, {}
        # The rekey initiator deletes the old SA right away (§1.3.2); should that DELETE
        # never come, we close it ourselves after a grace period.
        self.rekey_at = None
        self.expire_at = now + REPLACED_GRACE
        self.replaced_by = new
        new.rekeyed_from = self
        new.on_hold = on_hold
        if self.reauth_by is not None:  # a reauthentication under way replaces the new SA
            new.reauth_by, self.reauth_by = self.reauth_by, None
            new.reauth_by.reauth_of = new
        if self.reauth_of is not None:  # (the peer rekeyed an SA still replacing another)
            new.reauth_of, self.reauth_of = self.reauth_of, None
            new.reauth_done = self.reauth_done
            new.reauth_of.reauth_by = new
        if not on_hold:
            self.move_queue(new)  # the caller starts them
        self.log(f"IKE SA rekeyed: now {new.spi_i:016x}_i {new.spi_r:016x}_r ({chosen})")
        self.emit(IkeSaRekeyed(self.ike_sa_id, self.config.name, new))
        return new

    def move_queue(self, to: IkeSa) -> None:
        """Exchanges we had queued but not started go to ``to`` (after a rekey)."""
        for task in self.tm.queue:
            task.rebind(to)
        to.tm.queue += self.tm.queue
        self.tm.queue = []
        self.timers_changed()  # (a queue holds back the liveness check: _dpd_at)
        to.timers_changed()

    def timers_changed(self) -> None:
        """Tell IkeManager to read this SA's timer again: needed wherever the input of
        another IKE SA (a rekey collision settled, a reauthentication that failed) moves
        a deadline of this one, which the manager would otherwise never see."""
        if not self.is_destroyed:
            self.touched(self)

    def release(self, now: float, queue_from: IkeSa | None = None) -> None:
        """A §2.8.2 collision is settled and this SA stays: its exchanges, and those
        waiting on ``queue_from``, start (on its replacement, if it was rekeyed since)."""
        self.on_hold = False
        target = self.current
        if queue_from is not None:
            queue_from.move_queue(target)
        if target is not self and not self.superseded:
            self.move_queue(target)
        target.tm.initiate(now)

    def responder_task(self, msg: Message) -> Task:
        exchange = msg.exchange
        if exchange == ExchangeType.IKE_SA_INIT and not self.initiator and self.tm.peer_mid == 0:
            return IkeInit(self, False)
        if exchange == ExchangeType.IKE_AUTH and not self.initiator and self.chosen is not None \
                and not self.is_established:  # fmt: skip
            if self.pending_auth is not None:
                return self.pending_auth
            if msg.get(AuthPayload) is None and msg.get(IdiPayload) is not None:
                return IkeAuthEap(self, False)  # no AUTH: the peer asks for EAP (§2.16)
            return IkeAuth(self, False)
        if not self.is_established:
            raise RemoteProtocolError(f"exchange {exchange} before the IKE SA is up")
        if exchange == ExchangeType.CREATE_CHILD_SA:
            sa_p = msg.get(SaPayload)
            if sa_p is not None and any(p.protocol == ProtocolId.IKE for p in sa_p.proposals):
                return IkeRekey(self, False)
            return CreateChild(self, False)
        if exchange == ExchangeType.INFORMATIONAL:
            return Informational(self, False)
        raise RemoteProtocolError(f"unexpected exchange {exchange}")

    def encode(self, msg: Message) -> list[bytes]:
        if msg.exchange == ExchangeType.IKE_SA_INIT or self._crypt_out is None:
            return [encode(msg)]
        data = encode(msg, self._crypt_out)
        limit = self.config.fragment_size - FRAGMENT_OVERHEAD
        if len(data) > limit and self.peer_fragmentation and self.config.fragmentation:
            return encode_fragments(msg, self._crypt_out, limit)
        return [data]

    def send(self, datagrams: list[bytes], to: Addr | None = None) -> None:
        dest = to or self.remote
        self._out.extend((d, dest) for d in datagrams)
        self.touched(self)

    def emit(self, event: Event) -> None:
        self._events.append(event)
        self.touched(self)

    # -- helpers -------------------------------------------------------------------------
    def _ours(self, h: Header) -> bool:
        if h.spi_i != self.spi_i or h.from_initiator == self.initiator:
            return False
        if h.exchange == ExchangeType.IKE_SA_INIT and h.message_id != 0:
            return False
        if h.spi_r == self.spi_r:
            return True
        if h.exchange != ExchangeType.IKE_SA_INIT:
            return False
        # The IKE_SA_INIT request has no responder SPI yet; its response carries the one
        # the initiator does not know yet.
        if self.initiator:
            return self.spi_r == 0 and h.is_response
        return h.spi_r == 0 and not h.is_response

    def _decode(self, h: Header, data: bytes) -> Message | None:
        if h.exchange == ExchangeType.IKE_SA_INIT:
            return decode(data)
        if self._crypt_in is None:
            raise IntegrityError("encrypted message before keys exist")
        if h.next_payload != PayloadType.SKF:
            return decode(data, self._crypt_in)
        # RFC 7383: only the Message ID the exchange expects (the peer's next request,
        # or the answer to ours; a retransmitted request is answered on its first
        # fragment), each fragment verified on its own (§2.6), then reassembled within
        # the bounds of control/fragments.py.
        retransmit = self.tm.cached is not None and self.tm.cached[0] == h.message_id
        if h.is_response:
            expected = self.tm.active is not None and h.message_id == self.tm.my_mid
        else:
            expected = retransmit or h.message_id == self.tm.peer_mid
        if not expected:  # dropped unread, counted (not logged: it may be a flood)
            self._fragments.budget.dropped += 1
            return None
        _, skf, first, piece = decrypt_fragment(data, self._crypt_in)
        if not h.is_response and retransmit:
            if skf.number == 1:
                assert self.tm.cached is not None
                self.tm.counters.retransmitted_requests_answered += 1
                self.send(self.tm.cached[1])
            return None
        done = self._fragments.add((h.message_id, h.is_response), skf.number, skf.total,
                                   first, piece, self.now)  # fmt: skip
        if done is None:
            return None
        first_type, pieces = done
        return reassemble(h, first_type, pieces)

    def peer_moved(self, addr: Addr) -> None:
        old = self.remote
        self.remote = self.esp_remote = addr
        if self.is_established:
            self.followed(addr, old)

    def followed(self, addr: Addr, old: Addr | None = None) -> None:
        """The IKE SA and its Child SAs are the peer's at ``addr`` now."""
        self.esp_remote = addr
        self.moves += 1
        was = f" from {old[0]}:{old[1]}" if old else ""
        self.log(f"peer moved{was} to {addr[0]}:{addr[1]}")
        self.emit(PeerAddressChanged(self.ike_sa_id, addr, self.esp_in_udp))

    def id_str(self, p: IdPayload) -> str:
        try:
            if p.id_type in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
                return str(ipaddress.ip_address(p.data))
            if p.id_type in (IdType.FQDN, IdType.RFC822_ADDR):
                return printable(p.data)  # the peer's choice: \n, ESC... escaped
        except ValueError:
            pass
        return f"{p.id_type}:{p.data.hex()}"

    def log(self, text: str, level: int = logging.INFO) -> None:
        """INFO for what only the control plane sees; DEBUG for what it also hands the
        shell as an event (IkeSaUp, ChildSaUp, IkeSaDown), which logs that at INFO."""
        log.log(level, "%s[%d]: %s", self.config.name, self.ike_sa_id & 0xFFFF, text)

    def log_message(self, what: str, msg: Message) -> None:
        if log.isEnabledFor(logging.DEBUG):
            names = " ".join(_payload_name(p) for p in msg.payloads)
            kind = "response" if msg.is_response else "request"
            log.debug("%s[%d]: %s %s %d %s { %s }", self.config.name, self.ike_sa_id & 0xFFFF,
                      what, _xname(msg.exchange), msg.message_id, kind, names)  # fmt: skip


def _xname(exchange: int) -> str:
    try:
        return ExchangeType(exchange).name
    except ValueError:
        return str(exchange)


def _payload_name(p: Payload) -> str:
    from .payloads import NotifyPayload, payload_type

    if isinstance(p, NotifyPayload):
        try:
            return f"N({NotifyType(p.notify_type).name})"
        except ValueError:
            return f"N({p.notify_type})"
    t = payload_type(p)
    try:
        return PayloadType(t).name
    except ValueError:
        return str(t)
