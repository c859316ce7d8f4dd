"""The responder's front door: IKE_SA_INIT requests for SPIs no IKE SA owns yet.

It creates IKE SAs, keeps count of half-open ones (IKE_AUTH not yet done), and when
their number passes ``cookie_threshold`` answers statelessly with a COOKIE (RFC 7296
§2.6) until the initiator proves it can receive at its address. Past
``half_open_limit`` new requests are dropped (and counted).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from .config import IkeConfig, configs_for_peer
from .constants import ExchangeType, HeaderFlag, NotifyType
from .errors import RemoteProtocolError
from .ike_sa import Addr, IkeSa
from .message import HEADER_LEN, Message, decode, encode, parse_header
from .payloads import NoncePayload, NotifyPayload, SaPayload
from .proposals import select
from .rng import Rng

COOKIE_VERSION = 1
STATELESS_PER_SECOND = 10  # INVALID_IKE_SPI / INVALID_MAJOR_VERSION answers


@dataclass
class ResponderCounters:
    created: int = 0
    cookies_sent: int = 0
    bad_cookies: int = 0
    dropped_half_open_limit: int = 0
    dropped_not_init: int = 0
    dropped_malformed: int = 0
    refused: int = 0
    refused_address: int = 0  # from an address no connection's remote_addrs holds


class Responder:
    def __init__(self, configs: Sequence[IkeConfig], local: Addr, rng: Rng, *,
                 cookie_threshold: int = 10, half_open_limit: int = 1000) -> None:  # fmt: skip
        if not configs:
            raise ValueError("a responder needs at least one configuration")
        self.configs = tuple(configs)
        self.local = local
        self.rng = rng
        self.cookie_threshold = cookie_threshold
        self.half_open_limit = half_open_limit
        self._secret = rng.random_bytes(32)
        self.half_open: dict[tuple[int, Addr], IkeSa] = {}
        self._out: list[tuple[bytes, Addr]] = []
        self.counters = ResponderCounters()
        self._rate_second = 0
        self._rate_count = 0

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
        self._prune()
        existing = self.half_open.get((h.spi_i, addr))
        if existing is not None:
            existing.receive_datagram(data, addr, now)  # a retransmission: cached answer
            self._out += existing.datagrams_to_send(now)
            return None
        try:
            msg = decode(data)
        except RemoteProtocolError as exc:
            self.counters.dropped_malformed += 1
            if exc.notify == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD:
                self._reply(h.spi_i, addr, NotifyPayload(exc.notify, exc.notify_data))
            return None
        configs = configs_for_peer(self.configs, addr[0])
        if not configs:
            # strongSwan's remote_addrs: no connection is for a peer at this address.
            self.counters.refused_address += 1
            self._stateless(now, (h.spi_i, 0), ExchangeType.IKE_SA_INIT, 0, addr,
                            NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN))  # fmt: skip
            return None
        if len(self.half_open) >= self.half_open_limit:
            self.counters.dropped_half_open_limit += 1
            return None
        if len(self.half_open) >= self.cookie_threshold and not self._cookie_ok(msg, addr):
            nonce = msg.get(NoncePayload)
            if nonce is None:
                self.counters.dropped_malformed += 1
                return None
            self.counters.cookies_sent += 1
            cookie = self._cookie(nonce.data, addr, h.spi_i)
            self._reply(h.spi_i, addr, NotifyPayload(NotifyType.COOKIE, cookie))
            return None
        sa = IkeSa(self._config_for(msg, configs), initiator=False, local=local or self.local,
                   remote=addr, rng=self.rng, now=now, spi_i=h.spi_i,
                   candidates=configs)  # fmt: skip
        sa.receive_datagram(data, addr, now)
        if sa.is_destroyed:  # refused (NO_PROPOSAL_CHOSEN, INVALID_KE_PAYLOAD, ...)
            self.counters.refused += 1
            # Its IkeSaDown reaches no shell (nobody keeps this SA): say why here.
            sa.log(f"IKE_SA_INIT from {addr[0]} refused: {sa.delete_reason}")
            self._out += sa.datagrams_to_send(now)
            return None
        self.counters.created += 1
        self.half_open[(h.spi_i, addr)] = sa
        return sa

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

    def _prune(self) -> None:
        for key, sa in list(self.half_open.items()):
            if sa.is_established or sa.is_destroyed:
                del self.half_open[key]

    # RFC 7296 §2.6: Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>)
    def _cookie(self, ni: bytes, addr: Addr, spi_i: int) -> bytes:
        ip = ipaddress.ip_address(addr[0]).packed
        mac = hmac.new(self._secret, ni + ip + spi_i.to_bytes(8, "big"), hashlib.sha256)
        return bytes([COOKIE_VERSION]) + mac.digest()

    def _cookie_ok(self, msg: Message, addr: Addr) -> bool:
        first = msg.payloads[0] if msg.payloads else None
        nonce = msg.get(NoncePayload)
        if not isinstance(first, NotifyPayload) or first.notify_type != NotifyType.COOKIE:
            return False
        if nonce is None or not hmac.compare_digest(
            first.data, self._cookie(nonce.data, addr, msg.spi_i)
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
