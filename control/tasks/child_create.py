"""Child SA negotiation, shared by IKE_AUTH (the first Child SA, RFC 7296 §1.2) and
CREATE_CHILD_SA (§1.3.1 new Child SA, §1.3.3 rekey):

  CREATE_CHILD_SA { SA, Ni, [KEi], TSi, TSr } -->
                                          <-- { SA, Nr, [KEr], TSi, TSr }
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from ..child_sa import ChildSa, check_subset, narrow
from ..config import ChildConfig
from ..constants import ExchangeType, NotifyType, ProtocolId
from ..crypto import KeyExchange, check_public_value, child_keymat
from ..errors import RemoteProtocolError
from ..events import ChildSaFailed, TrafficSelector
from ..message import Message, check_rules
from ..payloads import (
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    SaPayload,
    TsiPayload,
    TsrPayload,
)
from ..proposals import Chosen, accept_choice, key_lengths, select
from .base import Task
from .ike_init import NONCE_LEN

if TYPE_CHECKING:
    from ..ike_sa import IkeSa


class ChildNegotiation:
    """The SA/TSi/TSr half of an exchange that creates a Child SA."""

    def __init__(self, sa: IkeSa, initiator: bool, cfg: ChildConfig | None = None,
                 ignore_dh: bool = True) -> None:  # fmt: skip
        self.sa = sa
        self.initiator = initiator
        self.cfg = cfg
        self.ignore_dh = ignore_dh
        self.spi_in = 0
        self.child: ChildSa | None = None
        self.error: RemoteProtocolError | None = None

    # initiator
    def request(self, dh_group: int = 0) -> list[Payload]:
        assert self.cfg is not None
        if not self.spi_in:
            self.spi_in = self.sa.alloc_spi()
        spi = self.spi_in.to_bytes(4, "big")
        specs = self.cfg.esp_proposals
        if dh_group:  # PFS: our group first in every proposal
            props = tuple(s.to_proposal(i + 1, spi) for i, s in enumerate(specs))
        else:
            props = tuple(s.to_proposal(i + 1, spi, with_dh=False) for i, s in enumerate(specs))
        local, remote = self._selectors()
        return [SaPayload(props), TsiPayload(local), TsrPayload(remote)]

    def _selectors(self) -> tuple[tuple[TrafficSelector, ...], tuple[TrafficSelector, ...]]:
        """Our side's and the peer's selectors to propose: the child's, except that a
        virtual IP (control/vip.py) stands for its side, once known."""
        assert self.cfg is not None
        return (_vip_or(self.sa.local_vips, self.cfg.local_ts),
                _vip_or(self.sa.remote_vips, self.cfg.remote_ts))  # fmt: skip

    def response(self, msg: Message) -> Chosen | None:
        """Process the responder's SA/TS payloads; None (and ``error``) when the Child SA
        was refused while the exchange itself succeeded."""
        assert self.cfg is not None
        err = msg.error_notify()
        if err is not None:
            self.error = RemoteProtocolError(f"peer refused the Child SA: {_name(err)}",
                                             notify=err.notify_type)  # fmt: skip
            return None
        sa_p, tsi, tsr = msg.get(SaPayload), msg.get(TsiPayload), msg.get(TsrPayload)
        if sa_p is None or tsi is None or tsr is None:
            raise RemoteProtocolError("Child SA response without SA, TSi or TSr")
        chosen = accept_choice(self.cfg.esp_proposals, sa_p.proposals, ignore_dh=self.ignore_dh)
        if chosen.protocol != ProtocolId.ESP or len(chosen.spi) != 4:
            raise RemoteProtocolError("Child SA proposal without a 4-byte ESP SPI")
        local, remote = self._selectors()
        check_subset(tsi.selectors, local)
        check_subset(tsr.selectors, remote)
        self.child = ChildSa(self.cfg.name, self.spi_in, int.from_bytes(chosen.spi, "big"),
                             chosen, tsi.selectors, tsr.selectors, True)  # fmt: skip
        return chosen

    # responder
    def choose(self, msg: Message) -> Chosen | None:
        """Pick a child config, proposal and narrowed selectors for the request; on
        failure remember the error notify for the response."""
        sa_p, tsi, tsr = msg.get(SaPayload), msg.get(TsiPayload), msg.get(TsrPayload)
        if sa_p is None or tsi is None or tsr is None:
            raise RemoteProtocolError("Child SA request without SA, TSi or TSr")
        error: RemoteProtocolError | None = None
        for cfg in self.sa.config.children:
            try:
                ts_i = narrow(tsi.selectors, self._peer_side(cfg))
                ts_r = narrow(tsr.selectors, cfg.local_ts)
                chosen = select(cfg.esp_proposals, sa_p.proposals, ignore_dh=self.ignore_dh)
            except RemoteProtocolError as exc:
                # TS_UNACCEPTABLE wins over NO_PROPOSAL_CHOSEN only if no config matched TS.
                if error is None or exc.notify == NotifyType.NO_PROPOSAL_CHOSEN:
                    error = exc
                continue
            if chosen.protocol != ProtocolId.ESP or len(chosen.spi) != 4:
                raise RemoteProtocolError("Child SA proposal without a 4-byte ESP SPI")
            self.cfg = cfg
            self.spi_in = self.sa.alloc_spi()
            self.child = ChildSa(cfg.name, self.spi_in, int.from_bytes(chosen.spi, "big"),
                                 chosen, ts_r, ts_i, False)  # fmt: skip
            return chosen
        self.error = error or RemoteProtocolError("no child configuration",
                                                  notify=NotifyType.NO_PROPOSAL_CHOSEN)  # fmt: skip
        return None

    def _peer_side(self, cfg: ChildConfig) -> tuple[TrafficSelector, ...]:
        """What the initiator's side (TSi) may hold. On a connection with a pool it is
        exactly the virtual IPs leased to this IKE SA (control/vip.py), never the pool:
        a peer that asked for none, or none of the child's families, gets no Child SA
        (TS_UNACCEPTABLE), so that no client speaks for another's address."""
        if not self.sa.config.pool:
            return _vip_or(self.sa.remote_vips, cfg.remote_ts)
        families = {ts.ts_type for ts in cfg.remote_ts}
        hosts = tuple(TrafficSelector.from_network(ipaddress.ip_network(a))
                      for a in self.sa.remote_vips)  # fmt: skip
        ours = tuple(h for h in hosts if h.ts_type in families)
        if not ours:
            raise RemoteProtocolError("the peer holds no virtual IP for this child",
                                      notify=NotifyType.TS_UNACCEPTABLE)  # fmt: skip
        return ours

    def answer(self) -> list[Payload]:
        if self.child is None:
            assert self.error is not None
            return [NotifyPayload(self.error.notify, self.error.notify_data)]
        c = self.child
        prop = c.chosen.to_proposal(self.spi_in.to_bytes(4, "big"))
        return [SaPayload((prop,)), TsiPayload(c.remote_ts), TsrPayload(c.local_ts)]

    def install(self, ni: bytes, nr: bytes, shared: bytes | None = None,
                replaces: ChildSa | None = None) -> None:  # fmt: skip
        """Derive KEYMAT (§2.17) and announce the Child SA."""
        assert self.child is not None
        enc_len, integ_len = key_lengths(self.child.chosen)
        self.child.keys = child_keymat(self.sa.prf, bytes(self.sa.keys.sk_d), ni, nr, enc_len,
                                       integ_len, shared)  # fmt: skip
        self.sa.add_child(self.child, replaces)

    def report_failure(self) -> None:
        name = self.cfg.name if self.cfg else ""
        reason = str(self.error) if self.error else "failed"
        self.sa.emit(ChildSaFailed(self.sa.ike_sa_id, name, reason))


class CreateChild(Task):
    """CREATE_CHILD_SA for an additional Child SA (or, with ``rekey``, its rekeying)."""

    exchange = ExchangeType.CREATE_CHILD_SA

    def __init__(self, sa: IkeSa, initiator: bool, cfg: ChildConfig | None = None,
                 rekey: ChildSa | None = None) -> None:  # fmt: skip
        super().__init__(sa, initiator)
        self.neg = ChildNegotiation(sa, initiator, cfg, ignore_dh=False)
        self.rekey = rekey
        self.nonce = b""
        self.ke: KeyExchange | None = None
        self.group = 0
        if cfg is not None:
            self.group = next((s.dh[0] for s in cfg.esp_proposals if s.dh), 0)
        self.shared: bytes | None = None
        self.peer_nonce = b""

    def build(self) -> list[Payload]:
        sa = self.sa
        if not self.nonce:
            self.nonce = sa.rng.random_bytes(NONCE_LEN)
        if self.initiator:
            out: list[Payload] = []
            if self.rekey is not None:
                spi = self.rekey.spi_in.to_bytes(4, "big")
                out.append(NotifyPayload(NotifyType.REKEY_SA, b"", ProtocolId.ESP, spi))
            req = self.neg.request(self.group)
            out += [req[0], NoncePayload(self.nonce)]
            if self.group:
                if self.ke is None:
                    self.ke = KeyExchange(self.group, sa.rng)
                out.append(KePayload(self.group, self.ke.public))
            return out + req[1:]
        ans = self.neg.answer()
        if self.neg.child is None:
            return ans
        out = [ans[0], NoncePayload(self.nonce)]
        if self.ke is not None:
            out.append(KePayload(self.ke.group, self.ke.public))
        return out + ans[1:]

    def process(self, msg: Message, raw: bytes) -> bool:
        if self.initiator:
            return self._response(msg)
        self._request(msg)
        return True

    def _response(self, msg: Message) -> bool:
        invalid_ke = msg.notify(NotifyType.INVALID_KE_PAYLOAD)
        if invalid_ke is not None and len(invalid_ke.data) == 2:
            group = int.from_bytes(invalid_ke.data, "big")
            assert self.neg.cfg is not None
            if (
                self.group
                and group != self.group
                and any(group in s.dh for s in self.neg.cfg.esp_proposals)
            ):
                self.group = group  # RFC 7296 §1.3: retry with the group it wants
                self.ke = None
                return False
        if msg.error_notify() is None:
            check_rules(msg)
        chosen = self.neg.response(msg)
        if chosen is not None and int.from_bytes(chosen.spi, "big") in self.sa.early_deletes:
            self.sa.early_deletes.clear()
            self.neg.child = None
            self.neg.error = RemoteProtocolError("the peer deleted it before its answer came")
            chosen = None
        if chosen is None:
            self.neg.report_failure()
            if self.rekey is not None:
                self.sa.retry_rekey_later(self.rekey)
            return True
        nonce = msg.need(NoncePayload)
        self.shared = self._key_exchange(chosen, msg.get(KePayload))
        self.neg.install(self.nonce, nonce.data, self.shared, replaces=self.rekey)
        old, new = self.rekey, self.neg.child
        if old is not None and new is not None:
            if old.peer_rekey is not None and min(self.nonce, nonce.data) < old.peer_rekey[0]:
                # §2.8.1: both ends rekeyed at once. The SA made with the lowest of the
                # four nonces is redundant and closed by its maker: here, ours. The
                # peer, whose rekey won, deletes the old SA.
                self.sa.delete_child(new.spi_in, self.sa.now, first=True)
            else:
                # §1.3.3 / §2.8: the rekey initiator deletes the old Child SA once the
                # new one is in place (make-before-break).
                self.sa.delete_child(old.spi_in, self.sa.now, first=True)
        return True

    def _request(self, msg: Message) -> None:
        check_rules(msg)
        sa_p = msg.get(SaPayload)
        if sa_p is not None and any(p.protocol == ProtocolId.IKE for p in sa_p.proposals):
            raise RemoteProtocolError("IKE SA rekeying is not supported yet",
                                      notify=NotifyType.NO_PROPOSAL_CHOSEN)  # fmt: skip
        rekey = msg.notify(NotifyType.REKEY_SA)
        if rekey is not None:
            spi = int.from_bytes(rekey.spi, "big")
            self.rekey = self.sa.child_by_spi_out(spi)
            if self.rekey is None:
                raise RemoteProtocolError(f"rekey of unknown Child SA {spi:08x}",
                                          notify=NotifyType.CHILD_SA_NOT_FOUND)  # fmt: skip
            if self.rekey.deleting:
                # §2.25.1: a request to rekey an SA we are closing.
                raise RemoteProtocolError(f"Child SA {spi:08x} is being deleted",
                                          notify=NotifyType.TEMPORARY_FAILURE)  # fmt: skip
        if self.rekey is None and len(self.sa.children) >= self.sa.max_children:
            raise RemoteProtocolError(
                f"the peer holds {len(self.sa.children)} Child SAs on this IKE SA already "
                "(child_sas_per_ike_sa)", notify=NotifyType.NO_ADDITIONAL_SAS)  # fmt: skip
        chosen = self.neg.choose(msg)
        nonce = msg.need(NoncePayload)
        self.peer_nonce = nonce.data
        if chosen is None:
            return
        ke = msg.get(KePayload)
        if chosen.dh and (ke is None or ke.group != chosen.dh):
            raise RemoteProtocolError(
                "KE payload for another group", notify=NotifyType.INVALID_KE_PAYLOAD,
                notify_data=chosen.dh.to_bytes(2, "big"),
            )  # fmt: skip
        if chosen.dh and ke is not None:
            check_public_value(chosen.dh, ke.data)  # before our own key costs anything
            self.ke = KeyExchange(chosen.dh, self.sa.rng)
            self.shared = self.ke.shared(ke.data)
        if not self.nonce:
            self.nonce = self.sa.rng.random_bytes(NONCE_LEN)
        self.neg.install(self.peer_nonce, self.nonce, self.shared, replaces=self.rekey)
        if self.rekey is not None and self.neg.child is not None:
            lowest = min(self.peer_nonce, self.nonce)
            self.rekey.peer_rekey = (lowest, self.neg.child.spi_in)

    def _key_exchange(self, chosen: Chosen, ke: KePayload | None) -> bytes | None:
        if not chosen.dh:
            return None
        if self.ke is None or ke is None or ke.group != self.ke.group:
            raise RemoteProtocolError("responder's KE does not match our group")
        return self.ke.shared(ke.data)

    def rebind(self, sa: IkeSa) -> None:
        self.sa = self.neg.sa = sa

    def failed(self, reason: str) -> None:
        self.neg.error = RemoteProtocolError(reason)
        self.neg.report_failure()
        if self.rekey is not None:
            self.sa.retry_rekey_later(self.rekey)


def _vip_or(vips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...],
            selectors: tuple[TrafficSelector, ...]) -> tuple[TrafficSelector, ...]:  # fmt: skip
    """``vips`` as host selectors, those of the families ``selectors`` cover; else
    ``selectors`` (no virtual IP on that side)."""
    families = {ts.ts_type for ts in selectors}
    hosts = tuple(TrafficSelector.from_network(ipaddress.ip_network(a)) for a in vips)
    return tuple(h for h in hosts if h.ts_type in families) or selectors


def _name(n: NotifyPayload) -> str:
    try:
        return NotifyType(n.notify_type).name
    except ValueError:
        return str(n.notify_type)
