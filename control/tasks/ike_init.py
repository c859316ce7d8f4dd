"""IKE_SA_INIT (RFC 7296 §1.2): SA, KE, Nonce, NAT detection (§2.23), cookies (§2.6),
INVALID_KE_PAYLOAD retry (§1.2), fragmentation (RFC 7383) and RFC 7427 hash announcement.

  HDR, SAi1, KEi, Ni, N(NAT_DETECTION_*), N(FRAG), N(SHA)  -->
                       <--  HDR, SAr1, KEr, Nr, N(NAT_DETECTION_*), N(FRAG), N(SHA)
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import TYPE_CHECKING

from ..constants import CertEncoding, ExchangeType, NotifyType
from ..crypto import KeyExchange, check_public_value, sha1
from ..errors import PeerError, RemoteProtocolError
from ..message import Message, check_rules
from ..payloads import CertReqPayload, KePayload, NoncePayload, NotifyPayload, Payload, SaPayload
from ..proposals import Chosen, accept_choice, select
from .base import Task

if TYPE_CHECKING:
    from ..ike_sa import Addr, IkeSa

NONCE_LEN = 32
MAX_RETRIES = 3  # COOKIE / INVALID_KE_PAYLOAD rounds before giving up


def natd_hash(spi_i: int, spi_r: int, addr: tuple[str, int]) -> bytes:
    """RFC 7296 §2.23: SHA-1(SPIs | IP address | port), SPIs as in the IKE header."""
    ip = ipaddress.ip_address(addr[0]).packed
    return sha1(spi_i.to_bytes(8, "big") + spi_r.to_bytes(8, "big") + ip
                + addr[1].to_bytes(2, "big"))  # fmt: skip


def natd_notifies(sa: IkeSa, spi_r: int, remote: Addr | None = None) -> list[Payload]:
    """N(NAT_DETECTION_SOURCE_IP), N(NAT_DETECTION_DESTINATION_IP) for ``sa``'s current
    addresses, or to ``remote`` (RFC 7296 §2.23; RFC 4555 §3.5 in UPDATE_SA_ADDRESSES)."""
    src = natd_hash(sa.spi_i, spi_r, sa.local)
    if sa.config.force_encap:
        # Make the peer see us behind a NAT so that it encapsulates ESP in UDP.
        src = sha1(sa.rng.random_bytes(20))
    return [
        NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, src),
        NotifyPayload(NotifyType.NAT_DETECTION_DESTINATION_IP,
                      natd_hash(sa.spi_i, spi_r, remote or sa.remote)),
    ]  # fmt: skip


def detect_nat(sa: IkeSa, msg: Message) -> None:
    """NAT detection: the peer's DESTINATION hash names the address it sent to (us);
    its SOURCE hashes name the address it sent from (``sa.remote``)."""
    srcs = [p.data for p in msg.all(NotifyPayload)
            if p.notify_type == NotifyType.NAT_DETECTION_SOURCE_IP]  # fmt: skip
    dst = msg.notify(NotifyType.NAT_DETECTION_DESTINATION_IP)
    if srcs and dst is not None:
        sa.natd_dest = dst.data  # how the peer saw us (RFC 4555 §3.8: a NAT remapping)
        sa.nat_local = dst.data != natd_hash(msg.spi_i, msg.spi_r, sa.local)
        sa.nat_remote = natd_hash(msg.spi_i, msg.spi_r, sa.remote) not in srcs


class IkeInit(Task):
    exchange = ExchangeType.IKE_SA_INIT

    def __init__(self, sa: IkeSa, initiator: bool) -> None:
        super().__init__(sa, initiator)
        cfg = sa.config
        self.group: int = cfg.ike_proposals[0].dh[0]
        self.ke: KeyExchange | None = None
        self.nonce = b""
        self.cookie = b""
        self.retries = 0
        self.chosen: Chosen | None = None
        self.peer_ke = b""
        self.peer_nonce = b""

    # -- payloads common to both roles -------------------------------------------------
    def _extensions(self, spi_r: int) -> list[Payload]:
        sa = self.sa
        out = natd_notifies(sa, spi_r)
        if sa.config.fragmentation and (self.initiator or sa.peer_fragmentation):
            out.append(NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED))
        algs = sa.config.auth.hash_algorithms
        if algs and (self.initiator or sa.peer_hash_algorithms):
            data = b"".join(a.to_bytes(2, "big") for a in algs)
            out.append(NotifyPayload(NotifyType.SIGNATURE_HASH_ALGORITHMS, data))
        return out

    def _peer_extensions(self, msg: Message) -> None:
        sa = self.sa
        sa.peer_fragmentation = msg.notify(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED) is not None
        sa.peer_certreq = msg.get(CertReqPayload) is not None
        sha = msg.notify(NotifyType.SIGNATURE_HASH_ALGORITHMS)
        if sha is not None:
            if len(sha.data) % 2:
                raise RemoteProtocolError("odd-length SIGNATURE_HASH_ALGORITHMS")
            sa.peer_hash_algorithms = tuple(
                int.from_bytes(sha.data[i : i + 2], "big") for i in range(0, len(sha.data), 2)
            )
        detect_nat(sa, msg)

    def _derive(self) -> None:
        assert self.ke is not None and self.chosen is not None
        shared = self.ke.shared(self.peer_ke)
        if self.initiator:
            self.sa.set_ike_keys(self.chosen, self.nonce, self.peer_nonce, shared)
        else:
            self.sa.set_ike_keys(self.chosen, self.peer_nonce, self.nonce, shared)

    # -- initiator ---------------------------------------------------------------------
    def build(self) -> list[Payload]:
        sa = self.sa
        if self.initiator:
            if self.ke is None or self.ke.group != self.group:
                self.ke = KeyExchange(self.group, sa.rng)
            if not self.nonce:
                self.nonce = sa.rng.random_bytes(NONCE_LEN)
            out: list[Payload] = []
            if self.cookie:
                out.append(NotifyPayload(NotifyType.COOKIE, self.cookie))  # first (§2.6)
            proposals = tuple(
                spec.to_proposal(i + 1) for i, spec in enumerate(sa.config.ike_proposals)
            )
            out += [SaPayload(proposals), KePayload(self.group, self.ke.public),
                    NoncePayload(self.nonce)]  # fmt: skip
            return out + self._extensions(0)
        assert self.chosen is not None and self.ke is not None
        # CERTREQ here makes a strongSwan initiator (send_cert=ifasked) send its certificate.
        certreq = [CertReqPayload(CertEncoding.X509_SIGNATURE, h) for h in sa.config.auth.certreq]
        return [
            SaPayload((self.chosen.to_proposal(b""),)),
            KePayload(self.ke.group, self.ke.public),
            NoncePayload(self.nonce),
            *certreq,
            *self._extensions(sa.spi_r),
        ]

    def process(self, msg: Message, raw: bytes) -> bool:
        if self.initiator:
            return self._process_response(msg, raw)
        self._process_request(msg, raw)
        return True

    def _process_response(self, msg: Message, raw: bytes) -> bool:
        sa = self.sa
        cookie = msg.notify(NotifyType.COOKIE)
        if cookie is not None:
            if not 1 <= len(cookie.data) <= 64 or self.retries >= MAX_RETRIES:
                raise RemoteProtocolError("unusable COOKIE from the responder")
            self.cookie = cookie.data
            self.retries += 1
            return False
        invalid_ke = msg.notify(NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke is not None:
            if len(invalid_ke.data) != 2:
                raise RemoteProtocolError("INVALID_KE_PAYLOAD without a group")
            group = int.from_bytes(invalid_ke.data, "big")
            ours = {g for spec in sa.config.ike_proposals for g in spec.dh}
            if group not in ours or group == self.group or self.retries >= MAX_RETRIES:
                raise PeerError(f"peer wants key exchange group {group}",
                                NotifyType.INVALID_KE_PAYLOAD)  # fmt: skip
            self.group = group
            self.retries += 1
            return False
        err = msg.error_notify()
        if err is not None:
            raise PeerError(f"peer answered {_name(err.notify_type)}", err.notify_type)
        check_rules(msg)
        if msg.spi_r == 0:
            raise RemoteProtocolError("IKE_SA_INIT response without a responder SPI")
        sa_p, ke, nonce = msg.need(SaPayload), msg.need(KePayload), msg.need(NoncePayload)
        self.chosen = accept_choice(sa.config.ike_proposals, sa_p.proposals)
        if ke.group != self.group or self.chosen.dh != self.group:
            raise RemoteProtocolError(f"responder's KE group {ke.group}, we sent {self.group}")
        sa.spi_r = msg.spi_r
        self.peer_ke, self.peer_nonce = ke.data, nonce.data
        self._peer_extensions(msg)
        self._derive()
        sa.init_request, sa.init_response = sa.tm.last_request_raw, raw
        sa.nonce_i, sa.nonce_r = self.nonce, self.peer_nonce
        sa.ike_init_done()
        return True

    # -- responder ---------------------------------------------------------------------
    def _process_request(self, msg: Message, raw: bytes) -> None:
        sa = self.sa
        check_rules(msg)
        sa_p, ke, nonce = msg.need(SaPayload), msg.need(KePayload), msg.need(NoncePayload)
        specs = sa.config.ike_proposals
        # Prefer a proposal the initiator's KE group satisfies: saves a round trip.
        usable = [s for s in specs if ke.group in s.dh]
        try:
            self.chosen = select([replace(s, dh=(ke.group,)) for s in usable], sa_p.proposals)
        except RemoteProtocolError:
            self.chosen = select(specs, sa_p.proposals)
            raise RemoteProtocolError(
                f"initiator sent KE for group {ke.group}, we want {self.chosen.dh}",
                notify=NotifyType.INVALID_KE_PAYLOAD,
                notify_data=self.chosen.dh.to_bytes(2, "big"),
            ) from None
        check_public_value(ke.group, ke.data)  # before our own key costs anything
        self.ke = KeyExchange(self.chosen.dh, sa.rng)
        self.nonce = sa.rng.random_bytes(NONCE_LEN)
        self.peer_ke, self.peer_nonce = ke.data, nonce.data
        self._peer_extensions(msg)
        self._derive()
        sa.init_request = raw
        sa.nonce_i, sa.nonce_r = self.peer_nonce, self.nonce

    def responded(self, raw: bytes) -> None:
        """Called with the response as sent: it is RealMessage2 of the AUTH octets."""
        self.sa.init_response = raw
        self.sa.ike_init_done()


def _name(notify_type: int) -> str:
    try:
        return NotifyType(notify_type).name
    except ValueError:
        return str(notify_type)
