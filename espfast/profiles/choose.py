"""The strongest proposal a client platform can make that the gateway accepts.

Each platform has a :class:`Caps`: the algorithms its settings can name. Native clients
(Apple, Windows) have one setting for "integrity" that also picks the IKE PRF
(``prf_follows_integ``): HMAC-SHA2-384 integrity goes with PRF-HMAC-SHA2-384, and with an
AEAD cipher the setting names the PRF alone. :func:`choose` walks the gateway's proposals,
keeps the combinations the platform can express, ranks them by strength (cipher, then key
exchange, then PRF and integrity) and checks the winner with the gateway's own
:func:`espfast.control.proposals.select`, exactly as the gateway will when the client
connects. Nothing in common is one :class:`~espfast.profiles.gateway.ProfileError` line.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from espfast.control.constants import DhGroup, EncrId, EsnId, IntegId, PrfId, ProtocolId
from espfast.control.errors import RemoteProtocolError
from espfast.control.proposals import Encr, ProposalSpec, select
from espfast.profiles.gateway import GatewayProfile, ProfileError

AES128: Encr = (EncrId.AES_CBC, 128)
AES256: Encr = (EncrId.AES_CBC, 256)
AES128GCM: Encr = (EncrId.AES_GCM_16, 128)
AES256GCM: Encr = (EncrId.AES_GCM_16, 256)
CHACHA: Encr = (EncrId.CHACHA20_POLY1305, None)
SHA256: int = IntegId.HMAC_SHA2_256_128
SHA384: int = IntegId.HMAC_SHA2_384_192
SHA512: int = IntegId.HMAC_SHA2_512_256
PRF_OF_INTEG: dict[int, int] = {
    SHA256: PrfId.HMAC_SHA2_256, SHA384: PrfId.HMAC_SHA2_384, SHA512: PrfId.HMAC_SHA2_512,
}  # fmt: skip
INTEG_OF_PRF: dict[int, int] = {v: k for k, v in PRF_OF_INTEG.items()}

# Strength, higher is stronger (a ranking, not bits: equal-strength ties broken by speed).
ENCR_RANK: dict[Encr, int] = {
    AES256GCM: 9, CHACHA: 8, AES128GCM: 7, AES256: 5, (EncrId.AES_CBC, 192): 4, AES128: 3,
    (EncrId.AES_GCM_16, 192): 6,
}  # fmt: skip
INTEG_RANK: dict[int, int] = {SHA512: 3, SHA384: 2, SHA256: 1, IntegId.NONE: 0}
PRF_RANK: dict[int, int] = {prf: INTEG_RANK[integ] for integ, prf in PRF_OF_INTEG.items()}
DH_RANK: dict[int, int] = {
    DhGroup.ECP_521: 9, DhGroup.CURVE448: 8, DhGroup.ECP_384: 7, DhGroup.MODP_4096: 6,
    DhGroup.CURVE25519: 5, DhGroup.ECP_256: 4, DhGroup.MODP_3072: 3, DhGroup.MODP_2048: 2,
    DhGroup.NONE: 0,
}  # fmt: skip

ALL_ENCR = frozenset(ENCR_RANK)
ALL_HASH = frozenset({SHA256, SHA384, SHA512})
ALL_DH = frozenset(DH_RANK) - {DhGroup.NONE}


@dataclass(frozen=True)
class Caps:
    """What a platform's settings can express."""

    platform: str
    summary: str  # for the refusal message
    ike_encr: frozenset[Encr] = ALL_ENCR
    ike_integ: frozenset[int] = ALL_HASH  # also the PRFs, by PRF_OF_INTEG
    ike_dh: frozenset[int] = ALL_DH
    esp_encr: frozenset[Encr] = ALL_ENCR
    esp_integ: frozenset[int] = ALL_HASH
    pfs: frozenset[int] = ALL_DH  # key exchange groups for Child SA rekeys
    prf_follows_integ: bool = False
    esn: bool = False  # may the client ask for extended sequence numbers


@dataclass(frozen=True)
class Choice:
    """One proposal of each kind, one algorithm of each type, in keyword syntax too."""

    ike: ProposalSpec
    esp: ProposalSpec

    @property
    def ike_encr(self) -> Encr:
        return self.ike.encr[0]

    @property
    def ike_prf(self) -> int:
        return self.ike.prf[0]

    @property
    def ike_integ(self) -> int:
        """The platform's "integrity" setting: the integrity algorithm, or for AEAD
        ciphers the one that goes with the PRF."""
        return self.ike.integ[0] if self.ike.integ else INTEG_OF_PRF[self.ike_prf]

    @property
    def ike_dh(self) -> int:
        return self.ike.dh[0]

    @property
    def esp_encr(self) -> Encr:
        return self.esp.encr[0]

    @property
    def esp_integ(self) -> int:
        return self.esp.integ[0] if self.esp.integ else IntegId.NONE

    @property
    def pfs(self) -> int:
        return self.esp.dh[0] if self.esp.dh else DhGroup.NONE


def _one(xs: Iterable[int]) -> list[tuple[int, ...]]:
    return [(x,) for x in xs]


def _ike_candidates(spec: ProposalSpec, caps: Caps) -> Iterable[ProposalSpec]:
    for encr in (e for e in spec.encr if e in caps.ike_encr):
        aead = encr[0] in (EncrId.AES_GCM_16, EncrId.CHACHA20_POLY1305)
        integs = [()] if aead else _one(i for i in spec.integ if i in caps.ike_integ)
        for integ, prf, dh in itertools.product(integs, spec.prf, spec.dh):
            if dh not in caps.ike_dh:
                continue
            if caps.prf_follows_integ:
                expressible = INTEG_OF_PRF.get(prf) in caps.ike_integ
                if not expressible or (integ and PRF_OF_INTEG[integ[0]] != prf):
                    continue
            elif prf not in PRF_OF_INTEG.values():
                continue
            yield ProposalSpec(ProtocolId.IKE, (encr,), integ, (prf,), (dh,))


def _esp_candidates(spec: ProposalSpec, caps: Caps) -> Iterable[ProposalSpec]:
    esns = [e for e in spec.esn if e == EsnId.NO_ESN or caps.esn]
    pfs: list[tuple[int, ...]] = _one(d for d in spec.dh if d in caps.pfs) if spec.dh else [()]
    for encr in (e for e in spec.encr if e in caps.esp_encr):
        aead = encr[0] in (EncrId.AES_GCM_16, EncrId.CHACHA20_POLY1305)
        integs = [()] if aead else _one(i for i in spec.integ if i in caps.esp_integ)
        for integ, dh, esn in itertools.product(integs, pfs, esns):
            yield ProposalSpec(ProtocolId.ESP, (encr,), integ, (), dh, (esn,))


def _ike_rank(p: ProposalSpec) -> tuple[int, ...]:
    integ = p.integ[0] if p.integ else IntegId.NONE
    return ENCR_RANK[p.encr[0]], DH_RANK[p.dh[0]], PRF_RANK[p.prf[0]], INTEG_RANK[integ]


def _esp_rank(p: ProposalSpec) -> tuple[int, ...]:
    integ = p.integ[0] if p.integ else IntegId.NONE
    dh = p.dh[0] if p.dh else DhGroup.NONE
    return ENCR_RANK[p.encr[0]], INTEG_RANK[integ], DH_RANK[dh], -p.esn[0]


def _describe(specs: Iterable[ProposalSpec]) -> str:
    return ",".join(str(s) for s in specs)


def choose(gw: GatewayProfile, caps: Caps) -> Choice:
    """The strongest IKE and ESP proposals ``caps`` can make that the gateway accepts."""
    ike = [c for s in gw.ike_proposals for c in _ike_candidates(s, caps)]
    if not ike:
        raise ProfileError(f"{caps.platform} cannot make any IKE proposal the gateway's "
                           f"connection {gw.name!r} accepts ({_describe(gw.ike_proposals)}); "
                           f"{caps.platform} offers {caps.summary}")  # fmt: skip
    esp = [c for s in gw.esp_proposals for c in _esp_candidates(s, caps)]
    if not esp:
        raise ProfileError(f"{caps.platform} cannot make any ESP proposal the gateway's "
                           f"child {gw.child!r} accepts ({_describe(gw.esp_proposals)}); "
                           f"{caps.platform} offers {caps.summary}")  # fmt: skip
    choice = Choice(max(ike, key=_ike_rank), max(esp, key=_esp_rank))
    check_accepted(gw, choice.ike, choice.esp)
    return choice


def check_accepted(gw: GatewayProfile, ike: ProposalSpec, esp: ProposalSpec) -> None:
    """The gateway's own selection, as when the client connects (IKE_SA_INIT) and rekeys
    its Child SA (CREATE_CHILD_SA, with the PFS group if any)."""
    try:
        select(gw.ike_proposals, [ike.to_proposal(1)])
        select(gw.esp_proposals, [esp.to_proposal(1, b"\0\0\0\1")])
    except RemoteProtocolError as e:
        raise ProfileError(f"internal error: the gateway would refuse {ike} / {esp}: {e}") from None
