"""The responder's front door: IKE_SA_INIT requests for SPIs no IKE SA owns yet.

It creates IKE SAs and keeps count of the work unauthenticated peers cost us, in total
and per source address (strongSwan's names and meanings):

- the load: half-open IKE SAs (IKE_AUTH not yet done), plus, for WORK_WINDOW seconds
  each, requests that cost a key exchange (or a failed IKE_AUTH) and left no half-open
  SA behind — so that a flood of requests refused after the Diffie-Hellman work still
  engages COOKIEs;
- past ``cookie_threshold`` in total, or ``cookie_threshold_ip`` from one address, new
  requests are answered statelessly with a COOKIE (RFC 7296 §2.6) until the initiator
  proves it can receive at its address;
- past ``block_threshold`` from one address, that address's new requests are dropped;
- at ``half_open_limit`` in total, a request from an address holding fewer half-open SAs
  than the greediest one takes the place of that one's oldest half-open SA (the pool is
  shared fairly); otherwise it is dropped.

Before any key exchange work, the peer's KE value gets the cheap checks (length, range,
point on the curve: crypto.check_public_value). Every drop is counted.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass

from .config import IkeConfig, configs_for_peer
from .constants import ExchangeType, HeaderFlag, NotifyType, PayloadType
from .crypto import check_public_value
from .errors import RemoteProtocolError
from .ike_sa import Addr, IkeSa
from .message import HEADER_LEN, Message, decode, encode, parse_header
from .payloads import NotifyPayload, SaPayload
from .proposals import select
from .rng import Rng

log = logging.getLogger("espfast.control")

COOKIE_VERSION = 1
STATELESS_PER_SECOND = 10  # INVALID_IKE_SPI / INVALID_MAJOR_VERSION answers
MAX_PAYLOADS = 64  # in an IKE_SA_INIT request, before we stop reading
LOG_PER_SECOND = 5  # lines about refused requests
WORK_WINDOW = 5.0  # seconds a refused (or failed) request weighs like a half-open SA
# strongSwan's defaults (charon.cookie_threshold_ip, charon.block_threshold).
COOKIE_THRESHOLD_IP = 3
BLOCK_THRESHOLD = 5


@dataclass
class ResponderCounters:
    created: int = 0
    cookies_sent: int = 0
    bad_cookies: int = 0
    dropped_half_open_limit: int = 0
    dropped_not_init: int = 0
    dropped_malformed: int = 0
    dropped_block_threshold: int = 0  # one address past block_threshold
    dropped_bad_ke: int = 0  # KE value refused before any key exchange work
    evicted: int = 0  # half-open SAs dropped for a request from a less greedy address
    refused: int = 0
    refused_address: int = 0  # from an address no connection's remote_addrs holds


class Responder:
    def __init__(self, configs: Sequence[IkeConfig], local: Addr, rng: Rng, *,
                 cookie_threshold: int = 10, half_open_limit: int = 1000,
                 cookie_threshold_ip: int = COOKIE_THRESHOLD_IP,
                 block_threshold: int = BLOCK_THRESHOLD) -> None:  # fmt: skip
        if not configs:
            raise ValueError("a responder needs at least one configuration")
        self.configs = tuple(configs)
        self.local = local
        self.rng = rng
        self.cookie_threshold = cookie_threshold
        self.half_open_limit = half_open_limit
        self.cookie_threshold_ip = cookie_threshold_ip
        self.block_threshold = block_threshold
        self._secret = rng.random_bytes(32)
        self.half_open: dict[tuple[int, Addr], IkeSa] = {}
        self._half_open_ip: Counter[str] = Counter()
        self._work: deque[tuple[float, str]] = deque()  # (when, address): see WORK_WINDOW
        self._work_ip: Counter[str] = Counter()
        self._groups = frozenset(g for c in self.configs for p in c.ike_proposals for g in p.dh)
        self._out: list[tuple[bytes, Addr]] = []
        self.counters = ResponderCounters()
        self._rate_second = 0
        self._rate_count = 0
        self._log_second = self._log_count = self._log_suppressed = 0

    def receive_datagram(self, data: bytes, addr: Addr, now: float,
                         local: Addr | None = None) -> IkeSa | None:  # fmt: skip
        """Handle a datagram whose responder SPI is zero. Returns a new IkeSa for the
        caller to keep (by its ``spi_r``), or None when the request was answered
        statelessly, handed to an existing half-open SA, or dropped."""
        try:
            h = parse_header(data)
        except RemoteProtocolError as exc:
            self.counters.dropped_malformed += 1
            if exc.notify == NotifyType.INVALID_MAJOR_VERSION and len(data) >= HEADER_LEN \
                    and not data[19] & HeaderFlag.RESPONSE:  # fmt: skip
                # RFC 7296 §2.5: tell a newer-version peer which version we speak.
                spis = (int.from_bytes(data[:8], "big"), int.from_bytes(data[8:16], "big"))
                self._stateless(now, spis, data[18], int.from_bytes(data[20:24], "big"), addr,
                                NotifyPayload(NotifyType.INVALID_MAJOR_VERSION))  # fmt: skip
            return None
        if (h.exchange != ExchangeType.IKE_SA_INIT or h.is_response or h.spi_r != 0
                or not h.from_initiator or h.message_id != 0):  # fmt: skip
            self.counters.dropped_not_init += 1
            if not h.is_response and h.exchange != ExchangeType.IKE_SA_INIT:
                # RFC 7296 §1.5 / §2.21.4: a request for an IKE SA we do not have.
                self._stateless(now, (h.spi_i, h.spi_r), h.exchange, h.message_id, addr,
                                NotifyPayload(NotifyType.INVALID_IKE_SPI))  # fmt: skip
            return None
        self._prune(now)
        existing = self.half_open.get((h.spi_i, addr))
        if existing is not None:
            existing.receive_datagram(data, addr, now)  # a retransmission: cached answer
            self._out += existing.datagrams_to_send(now)
            return None
        # The cheap checks come first, on the payload chain alone (a flood of spoofed
        # requests must cost little): the KE value, the limits, the COOKIE.
        chain = _chain(data)
        if chain is None:
            self.counters.dropped_malformed += 1
            return None
        ip = addr[0]
        configs = configs_for_peer(self.configs, ip)
        if not configs:
            # strongSwan's remote_addrs: no connection is for a peer at this address.
            self.counters.refused_address += 1
            self._stateless(now, (h.spi_i, 0), ExchangeType.IKE_SA_INIT, 0, addr,
                            NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN))  # fmt: skip
            return None
        ke = _first(chain, PayloadType.KE)
        if ke is not None and len(ke) >= 4 and (group := int.from_bytes(ke[:2])) in self._groups:
            try:
                check_public_value(group, ke[4:])
            except RemoteProtocolError as exc:
                self.counters.dropped_bad_ke += 1
                self._stateless(now, (h.spi_i, 0), h.exchange, 0, addr,
                                NotifyPayload(NotifyType.INVALID_SYNTAX))  # fmt: skip
                self._log(now, f"IKE_SA_INIT from {ip} dropped: {exc}")
                return None
        load_ip = self._half_open_ip[ip] + self._work_ip[ip]
        if load_ip >= self.block_threshold:
            self.counters.dropped_block_threshold += 1
            return None
        if len(self.half_open) >= self.half_open_limit and not self._evict_for(ip):
            self.counters.dropped_half_open_limit += 1
            return None
        load = len(self.half_open) + len(self._work)
        busy = load >= self.cookie_threshold or load_ip >= self.cookie_threshold_ip
        if busy and not self._cookie_ok(chain, addr, h.spi_i):
            nonce = _first(chain, PayloadType.NONCE)
            if nonce is None:
                self.counters.dropped_malformed += 1
                return None
            self.counters.cookies_sent += 1
            cookie = self._cookie(nonce, addr, h.spi_i)
            self._reply(h.spi_i, addr, NotifyPayload(NotifyType.COOKIE, cookie))
            return None
        try:
            msg = decode(data)
        except RemoteProtocolError as exc:
            self.counters.dropped_malformed += 1
            if exc.notify == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD:
                self._reply(h.spi_i, addr, NotifyPayload(exc.notify, exc.notify_data))
            return None
        sa = IkeSa(self._config_for(msg, configs), initiator=False, local=local or self.local,
                   remote=addr, rng=self.rng, now=now, spi_i=h.spi_i,
                   candidates=configs)  # fmt: skip
        sa.receive_datagram(data, addr, now)
        if sa.is_destroyed:  # refused (NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD, ...)
            self.counters.refused += 1
            self._spent(ip, now)
            # Its IkeSaDown reaches no shell (nobody keeps this SA): say why here.
            self._log(now, f"IKE_SA_INIT from {ip} refused: {sa.delete_reason}", sa)
            self._out += sa.datagrams_to_send(now)
            return None
        self.counters.created += 1
        self.half_open[(h.spi_i, addr)] = sa
        self._half_open_ip[ip] += 1
        return sa

    def _log(self, now: float, text: str, sa: IkeSa | None = None) -> None:
        """At most LOG_PER_SECOND lines a second about refused requests (then a count)."""
        if int(now) != self._log_second:
            if self._log_suppressed:
                log.info("%d more IKE_SA_INIT requests refused or dropped", self._log_suppressed)
            self._log_second, self._log_count, self._log_suppressed = int(now), 0, 0
        if self._log_count >= LOG_PER_SECOND:
            self._log_suppressed += 1
            return
        self._log_count += 1
        if sa is not None:
            sa.log(text)
        else:
            log.info("%s", text)

    def _spent(self, ip: str, now: float) -> None:
        """Work done for ``ip`` that left no half-open SA: it weighs for WORK_WINDOW."""
        self._work.append((now, ip))
        self._work_ip[ip] += 1

    def _evict_for(self, ip: str) -> bool:
        """The pool is full: make room for ``ip`` if another address holds more than one
        half-open SA more than it does (its oldest goes). Whether there is room now."""
        greedy, most = self._half_open_ip.most_common(1)[0]
        if most <= self._half_open_ip[ip] + 1:
            return False
        key = next(k for k in self.half_open if k[1][0] == greedy)
        sa = self.half_open.pop(key)
        self._half_open_ip[greedy] -= 1
        self.counters.evicted += 1
        sa.destroy("half-open IKE SA dropped to make room for another peer (half_open_limit)")
        return True

    @staticmethod
    def _config_for(msg: Message, configs: Sequence[IkeConfig]) -> IkeConfig:
        """The first of ``configs`` whose IKE proposals the initiator's offer satisfies
        (the identity picks among connections later, in IKE_AUTH)."""
        sa_p = msg.get(SaPayload)
        if sa_p is not None:
            for cfg in configs:
                try:
                    select(cfg.ike_proposals, sa_p.proposals)
                except RemoteProtocolError:
                    continue
                return cfg
        return configs[0]

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Addr]]:
        """Stateless answers (COOKIE, refusals) and retransmitted responses."""
        out, self._out = self._out, []
        return out

    def _prune(self, now: float) -> None:
        for key, sa in list(self.half_open.items()):
            if sa.is_established or sa.is_destroyed:
                del self.half_open[key]
                ip = key[1][0]
                self._half_open_ip[ip] -= 1
                if not self._half_open_ip[ip]:
                    del self._half_open_ip[ip]
                if not sa.is_established:  # failed (e.g. IKE_AUTH) or timed out
                    self._spent(ip, now)
        while self._work and self._work[0][0] <= now - WORK_WINDOW:
            _, ip = self._work.popleft()
            self._work_ip[ip] -= 1
            if not self._work_ip[ip]:
                del self._work_ip[ip]

    @property
    def load(self) -> int:
        """Half-open SAs plus the recent work that left none (see the module docstring)."""
        return len(self.half_open) + len(self._work)

    # RFC 7296 §2.6: Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)
    def _cookie(self, ni: bytes, addr: Addr, spi_i: int) -> bytes:
        ip = ipaddress.ip_address(addr[0]).packed
        mac = hmac.new(self._secret, ni + ip + spi_i.to_bytes(8, "big"), hashlib.sha256)
        return bytes([COOKIE_VERSION]) + mac.digest()

    def _cookie_ok(self, chain: list[tuple[int, bytes]], addr: Addr, spi_i: int) -> bool:
        """Whether the request starts with N(COOKIE) (§2.6: the first payload) holding
        the cookie we would give it."""
        if not chain or chain[0][0] != PayloadType.NOTIFY:
            return False
        body = chain[0][1]
        if len(body) < 4 or int.from_bytes(body[2:4]) != NotifyType.COOKIE:
            return False
        nonce = _first(chain, PayloadType.NONCE)
        if nonce is None or not hmac.compare_digest(
            body[4 + body[1] :], self._cookie(nonce, addr, spi_i)
        ):
            self.counters.bad_cookies += 1
            return False
        return True

    def _stateless(self, now: float, spis: tuple[int, int], exchange: int, mid: int,
                   addr: Addr, notify: NotifyPayload) -> None:  # fmt: skip
        """An unencrypted one-off response, at most ``STATELESS_PER_SECOND`` a second."""
        if int(now) != self._rate_second:
            self._rate_second, self._rate_count = int(now), 0
        if self._rate_count >= STATELESS_PER_SECOND:
            return
        self._rate_count += 1
        msg = Message(spis[0], spis[1], exchange, mid, True, False, (notify,))
        self._out.append((encode(msg), addr))

    def _reply(self, spi_i: int, addr: Addr, notify: NotifyPayload) -> None:
        msg = Message(spi_i, 0, ExchangeType.IKE_SA_INIT, 0, True, False, (notify,))
        self._out.append((encode(msg), addr))


def _chain(data: bytes) -> list[tuple[int, bytes]] | None:
    """The payloads of a message as (type, body), read from their generic headers only
    (RFC 7296 §3.2); None if the chain does not fit the datagram."""
    out: list[tuple[int, bytes]] = []
    kind, pos = data[16], HEADER_LEN
    while kind:
        if pos + 4 > len(data) or len(out) >= MAX_PAYLOADS:
            return None
        end = pos + int.from_bytes(data[pos + 2 : pos + 4])
        if end < pos + 4 or end > len(data):
            return None
        out.append((kind, data[pos + 4 : end]))
        kind, pos = data[pos], end
    return out


def _first(chain: list[tuple[int, bytes]], kind: int) -> bytes | None:
    return next((body for k, body in chain if k == kind), None)
