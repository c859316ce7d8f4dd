"""A negotiated Child SA (ESP, tunnel mode, UDP-encapsulated) and its traffic selectors."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .constants import NotifyType
from .crypto import ChildKeys
from .errors import RemoteProtocolError
from .events import ChildSaUp, TrafficSelector
from .proposals import Chosen


def seq_rekey_threshold(esn: bool) -> int:
    """The outbound sequence number at which a Child SA rekeys: 15/16 of the space
    (2^32 - 1, or 2^64 - 1 with ESN). The counter must never cycle (RFC 4303 §3.3.3):
    the new SA must be in place before the old one runs dry."""
    last = 2**64 - 1 if esn else 2**32 - 1
    return last - (last >> 4)


@dataclass
class ChildSa:
    name: str
    spi_in: int
    spi_out: int
    chosen: Chosen
    local_ts: tuple[TrafficSelector, ...]
    remote_ts: tuple[TrafficSelector, ...]
    # Our role in the exchange that created it: the exchange initiator's outbound keys
    # are the i->r keys (RFC 7296 §2.17).
    exchange_initiator: bool
    keys: ChildKeys | None = field(default=None, repr=False)
    rekey_at: float | None = None  # when it rekeys / expires (the IkeSa's clock)
    expire_at: float | None = None
    rekeying: bool = False
    deleting: bool = False
    # Set when the peer rekeyed this SA: the lowest nonce of its exchange and the new
    # SA it made (RFC 7296 §2.8.1 collisions are settled with these).
    peer_rekey: tuple[bytes, int] | None = None

    def up_event(self, ike_sa_id: int, peer: tuple[str, int], encap: bool = True) -> ChildSaUp:
        assert self.keys is not None
        k = self.keys
        if self.exchange_initiator:
            enc_out, integ_out, enc_in, integ_in = k.enc_i, k.integ_i, k.enc_r, k.integ_r
        else:
            enc_out, integ_out, enc_in, integ_in = k.enc_r, k.integ_r, k.enc_i, k.integ_i
        return ChildSaUp(
            ike_sa_id=ike_sa_id, name=self.name, spi_in=self.spi_in, spi_out=self.spi_out,
            transform=self.chosen.dataplane_transform, esn=self.chosen.esn,
            enc_key_in=enc_in, integ_key_in=integ_in, enc_key_out=enc_out,
            integ_key_out=integ_out, local_ts=self.local_ts, remote_ts=self.remote_ts,
            peer=peer, encap=encap, exchange_initiator=self.exchange_initiator,
        )  # fmt: skip

    def forget_keys(self) -> None:
        self.keys = None


def narrow(offered: Sequence[TrafficSelector], allowed: Sequence[TrafficSelector]
           ) -> tuple[TrafficSelector, ...]:  # fmt: skip
    """RFC 7296 §2.9: the parts of the peer's selectors that our policy allows.
    TS_UNACCEPTABLE when nothing is left."""
    out: list[TrafficSelector] = []
    for a in allowed:
        for o in offered:
            common = o.intersect(a)
            if common is not None and common not in out:
                out.append(common)
    if not out:
        raise RemoteProtocolError(
            "traffic selectors unacceptable: "
            + ", ".join(str(t) for t in offered) + " vs ours " + ", ".join(str(t) for t in allowed),
            notify=NotifyType.TS_UNACCEPTABLE,
        )  # fmt: skip
    return tuple(out)


def check_subset(returned: Sequence[TrafficSelector], proposed: Sequence[TrafficSelector]
                 ) -> None:  # fmt: skip
    """The initiator's check that the responder only narrowed what we proposed."""
    for r in returned:
        if not any(p.intersect(r) == r for p in proposed):
            raise RemoteProtocolError(
                f"responder returned traffic selector {r} outside what we proposed",
                notify=NotifyType.TS_UNACCEPTABLE,
            )
