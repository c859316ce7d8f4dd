"""Which connection an authenticated peer gets (the responder's choice in IKE_AUTH).

IKE_SA_INIT picks a connection by proposal alone (the first whose IKE proposals the
offer satisfies: control/responder.py), before the peer has said who it is. In IKE_AUTH
the peer's IDi decides, as strongSwan's peer_cfg lookup does: the connections whose
``remote_id`` the IDi matches, best match first (an exact identity before a wildcard
pattern before no ``remote_id`` at all; the order given breaks ties), and only those whose
IKE proposals allow what IKE_SA_INIT negotiated. The first of these whose authentication
the peer passes is the peer's connection (control/tasks/ike_auth.py); its children,
pool and uniqueness policy are all the peer is entitled to.
"""

from __future__ import annotations

from collections.abc import Iterable

from .auth import id_matches
from .config import IkeConfig
from .proposals import Chosen, allows

EXACT, WILDCARD, ANY = 3, 2, 1


def match_quality(peer: tuple[int, bytes], cfg: IkeConfig) -> int:
    """How well the peer's identity matches ``cfg.remote_id`` (0: not at all)."""
    if cfg.remote_id is None:
        return ANY
    if not id_matches(peer, cfg.remote_id):
        return 0
    return WILDCARD if b"*" in cfg.remote_id[1] else EXACT


def candidates(configs: Iterable[IkeConfig], peer: tuple[int, bytes], chosen: Chosen | None,
               *, eap: bool = False) -> list[IkeConfig]:  # fmt: skip
    """The connections the peer ``peer`` (IDi type, data) may get, best first: those
    that authenticate their peers with EAP if ``eap`` (the IKE_AUTH request had no AUTH),
    else those that do not."""
    ranked = []
    seen: set[int] = set()
    for order, cfg in enumerate(configs):
        if id(cfg) in seen:
            continue
        seen.add(id(cfg))
        if cfg.auth.eap_server != eap:
            continue
        quality = match_quality(peer, cfg)
        if quality and (chosen is None or allows(cfg.ike_proposals, chosen)):
            ranked.append((-quality, order, cfg))
    return [cfg for _, _, cfg in sorted(ranked, key=lambda r: r[:2])]
