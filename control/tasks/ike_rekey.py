"""IKE SA rekeying with CREATE_CHILD_SA (RFC 7296 §1.3.2, §2.18):

  CREATE_CHILD_SA { SA(IKE, SPIi'), Ni, KEi } -->
                                <-- { SA(IKE, SPIr'), Nr, KEr }
  then, on the old IKE SA:   INFORMATIONAL { D(IKE) } -->   <-- { }

Simultaneous rekeying from both ends (§2.8.2) is not resolved yet: each side's new SA
stands on its own until one old SA is deleted.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from ..constants import ExchangeType, NotifyType, ProtocolId
from ..crypto import KeyExchange
from ..errors import PeerError, RemoteProtocolError
from ..message import Message, check_rules
from ..payloads import DeletePayload, KePayload, NoncePayload, Payload, SaPayload
from ..proposals import Chosen, accept_choice, select
from .base import Task
from .ike_init import NONCE_LEN
from .informational import Informational

if TYPE_CHECKING:
    from ..ike_sa import IkeSa


class IkeRekey(Task):
    exchange = ExchangeType.CREATE_CHILD_SA

    def __init__(self, sa: IkeSa, initiator: bool) -> None:
        super().__init__(sa, initiator)
        self.group = sa.chosen.dh if sa.chosen else sa.config.ike_proposals[0].dh[0]
        self.ke: KeyExchange | None = None
        self.nonce = b""
        self.spi = 0  # our SPI in the new IKE SA
        self.chosen: Chosen | None = None
        self.peer_spi = 0
        self.peer_nonce = b""
        self.shared = b""

    def build(self) -> list[Payload]:
        sa = self.sa
        if not self.nonce:
            self.nonce = sa.rng.random_bytes(NONCE_LEN)
        if not self.spi:
            self.spi = int.from_bytes(sa.rng.random_bytes(8), "big") or 1
        spi = self.spi.to_bytes(8, "big")
        if self.initiator:
            if self.ke is None or self.ke.group != self.group:
                self.ke = KeyExchange(self.group, sa.rng)
            # Our group first in every proposal that has it: the KE matches what we ask.
            specs = [replace(s, dh=(self.group, *[g for g in s.dh if g != self.group]))
                     for s in sa.config.ike_proposals if self.group in s.dh]  # fmt: skip
            props = tuple(s.to_proposal(i + 1, spi) for i, s in enumerate(specs))
            return [SaPayload(props), NoncePayload(self.nonce),
                    KePayload(self.group, self.ke.public)]  # fmt: skip
        assert self.chosen is not None and self.ke is not None
        return [SaPayload((self.chosen.to_proposal(spi),)), NoncePayload(self.nonce),
                KePayload(self.ke.group, self.ke.public)]  # fmt: skip

    def process(self, msg: Message, raw: bytes) -> bool:
        sa = self.sa
        if self.initiator:
            invalid_ke = msg.notify(NotifyType.INVALID_KE_PAYLOAD)
            if invalid_ke is not None and len(invalid_ke.data) == 2:
                group = int.from_bytes(invalid_ke.data, "big")
                if group != self.group and any(group in s.dh for s in sa.config.ike_proposals):
                    self.group = group
                    return False
            err = msg.error_notify()
            if err is not None:
                raise PeerError(f"peer refused to rekey the IKE SA ({err.notify_type})",
                                err.notify_type)  # fmt: skip
            check_rules(msg)
            sa_p, nonce, ke = msg.need(SaPayload), msg.need(NoncePayload), msg.need(KePayload)
            chosen = accept_choice(sa.config.ike_proposals, sa_p.proposals)
            if len(chosen.spi) != 8 or ke.group != self.group or chosen.dh != self.group:
                raise RemoteProtocolError("bad IKE SA rekey response")
            assert self.ke is not None
            shared = self.ke.shared(ke.data)
            peer_spi = int.from_bytes(chosen.spi, "big")
            sa.rekeyed(initiator=True, spi_i=self.spi, spi_r=peer_spi, chosen=chosen,
                       ni=self.nonce, nr=nonce.data, shared=shared, now=sa.now)  # fmt: skip
            # The rekey initiator deletes the old IKE SA (§1.3.2).
            sa.tm.queue.insert(0, Informational(sa, True, (DeletePayload(ProtocolId.IKE),)))
            return True
        check_rules(msg)
        sa_p, nonce, ke = msg.need(SaPayload), msg.need(NoncePayload), msg.need(KePayload)
        usable = [replace(s, dh=(ke.group,)) for s in sa.config.ike_proposals if ke.group in s.dh]
        try:
            self.chosen = select(usable, sa_p.proposals)
        except RemoteProtocolError:
            chosen = select(sa.config.ike_proposals, sa_p.proposals)
            raise RemoteProtocolError(
                f"IKE rekey KE for group {ke.group}, we want {chosen.dh}",
                notify=NotifyType.INVALID_KE_PAYLOAD, notify_data=chosen.dh.to_bytes(2, "big"),
            ) from None  # fmt: skip
        if len(self.chosen.spi) != 8:
            raise RemoteProtocolError("IKE SA rekey proposal without an 8-byte SPI")
        self.peer_spi = int.from_bytes(self.chosen.spi, "big")
        self.peer_nonce = nonce.data
        self.ke = KeyExchange(self.chosen.dh, sa.rng)
        self.shared = self.ke.shared(ke.data)
        return True

    def responded(self, raw: bytes) -> None:
        assert self.chosen is not None
        self.sa.rekeyed(initiator=False, spi_i=self.peer_spi, spi_r=self.spi, chosen=self.chosen,
                        ni=self.peer_nonce, nr=self.nonce, shared=self.shared,
                        now=self.sa.now)  # fmt: skip

    def failed(self, reason: str) -> None:
        self.sa.log(f"IKE SA rekeying failed: {reason}")
