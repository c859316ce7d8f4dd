"""Algorithm proposals in strongSwan's keyword syntax, and proposal selection.

``"aes256gcm16-prfsha384-ecp384"`` is one proposal: a dash-separated list of keywords,
several algorithms of one kind allowed (``aes128-aes256-sha256-modp2048``). A
comma-separated string is a list of proposals. ``select`` implements RFC 7296 §2.7 /
§3.3.6 for the responder: the first of *our* proposals that the peer's offer can
satisfy wins, and within it our first algorithm of each type that the peer offered.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .constants import DhGroup, EncrId, EsnId, IntegId, NotifyType, PrfId, ProtocolId
from .constants import TransformType as TT
from .crypto import ENCR_ALGS, INTEG_ALGS
from .errors import RemoteProtocolError
from .payloads import Proposal, Transform

Encr = tuple[int, int | None]  # (EncrId, key length in bits)

ENCR_KEYWORDS: dict[str, Encr] = {
    "aes128": (EncrId.AES_CBC, 128),
    "aes192": (EncrId.AES_CBC, 192),
    "aes256": (EncrId.AES_CBC, 256),
    "aes128gcm16": (EncrId.AES_GCM_16, 128),
    "aes192gcm16": (EncrId.AES_GCM_16, 192),
    "aes256gcm16": (EncrId.AES_GCM_16, 256),
    "aes128gcm128": (EncrId.AES_GCM_16, 128),
    "aes192gcm128": (EncrId.AES_GCM_16, 192),
    "aes256gcm128": (EncrId.AES_GCM_16, 256),
    "chacha20poly1305": (EncrId.CHACHA20_POLY1305, None),
}
INTEG_KEYWORDS: dict[str, int] = {
    "sha256": IntegId.HMAC_SHA2_256_128,
    "sha2_256": IntegId.HMAC_SHA2_256_128,
    "sha384": IntegId.HMAC_SHA2_384_192,
    "sha2_384": IntegId.HMAC_SHA2_384_192,
    "sha512": IntegId.HMAC_SHA2_512_256,
    "sha2_512": IntegId.HMAC_SHA2_512_256,
}
PRF_KEYWORDS: dict[str, int] = {
    "prfsha256": PrfId.HMAC_SHA2_256,
    "prfsha384": PrfId.HMAC_SHA2_384,
    "prfsha512": PrfId.HMAC_SHA2_512,
}
DH_KEYWORDS: dict[str, int] = {
    "modp2048": DhGroup.MODP_2048,
    "modp3072": DhGroup.MODP_3072,
    "modp4096": DhGroup.MODP_4096,
    "ecp256": DhGroup.ECP_256,
    "ecp384": DhGroup.ECP_384,
    "ecp521": DhGroup.ECP_521,
    "x25519": DhGroup.CURVE25519,
    "curve25519": DhGroup.CURVE25519,
    "x448": DhGroup.CURVE448,
    "curve448": DhGroup.CURVE448,
}
ESN_KEYWORDS: dict[str, int] = {"esn": EsnId.ESN, "noesn": EsnId.NO_ESN}

# The PRF strongSwan pairs with an integrity algorithm when none is named.
_PRF_FOR_INTEG = {
    IntegId.HMAC_SHA2_256_128: PrfId.HMAC_SHA2_256,
    IntegId.HMAC_SHA2_384_192: PrfId.HMAC_SHA2_384,
    IntegId.HMAC_SHA2_512_256: PrfId.HMAC_SHA2_512,
}

# ESP algorithm pairs the dataplane implements, by its Transform keyword.
DATAPLANE_TRANSFORMS: dict[tuple[int, int | None, int], str] = {
    (EncrId.AES_GCM_16, 128, IntegId.NONE): "aes128gcm16",
    (EncrId.AES_GCM_16, 256, IntegId.NONE): "aes256gcm16",
    (EncrId.CHACHA20_POLY1305, None, IntegId.NONE): "chacha20poly1305",
    (EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_256_128): "aes128-sha256",
    (EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_256_128): "aes256-sha256",
    (EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_384_192): "aes128-sha384",
    (EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_384_192): "aes256-sha384",
    (EncrId.AES_CBC, 128, IntegId.HMAC_SHA2_512_256): "aes128-sha512",
    (EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_512_256): "aes256-sha512",
}

DEFAULT_IKE = (
    "aes256gcm16-aes128gcm16-chacha20poly1305-prfsha384-prfsha256-x25519-ecp256-ecp384-modp3072,"
    "aes256-aes128-sha384-sha256-x25519-ecp256-ecp384-modp3072"
)
DEFAULT_ESP = "aes256gcm16-aes128gcm16-chacha20poly1305,aes256-aes128-sha256-sha384-sha512"


def _keyword_of(table: dict[str, int] | dict[str, Encr], value: object) -> str:
    return next(k for k, v in table.items() if v == value)


@dataclass(frozen=True)
class ProposalSpec:
    """One proposal: the algorithms of each transform type, in preference order."""

    protocol: int
    encr: tuple[Encr, ...]
    integ: tuple[int, ...] = ()
    prf: tuple[int, ...] = ()
    dh: tuple[int, ...] = ()
    esn: tuple[int, ...] = ()

    @property
    def aead(self) -> bool:
        return all(ENCR_ALGS[e].aead for e, _ in self.encr)

    def transforms(self, with_dh: bool = True) -> tuple[Transform, ...]:
        out = [Transform(TT.ENCR, e, k) for e, k in self.encr]
        out += [Transform(TT.PRF, p) for p in self.prf]
        out += [Transform(TT.INTEG, i) for i in self.integ]
        if with_dh:
            out += [Transform(TT.DH, d) for d in self.dh]
        out += [Transform(TT.ESN, e) for e in self.esn]
        return tuple(out)

    def to_proposal(self, num: int, spi: bytes = b"", with_dh: bool = True) -> Proposal:
        return Proposal(num, self.protocol, spi, self.transforms(with_dh))

    def __str__(self) -> str:
        words = [_keyword_of(ENCR_KEYWORDS, e) for e in self.encr]
        words += [_keyword_of(INTEG_KEYWORDS, i) for i in self.integ]
        words += [_keyword_of(PRF_KEYWORDS, p) for p in self.prf]
        words += [_keyword_of(DH_KEYWORDS, d) for d in self.dh]
        if self.protocol == ProtocolId.ESP and self.esn != (EsnId.NO_ESN,):
            words += [_keyword_of(ESN_KEYWORDS, e) for e in self.esn]
        return "-".join(words)


def _parse_one(text: str, protocol: int) -> ProposalSpec:
    encr: list[Encr] = []
    integ: list[int] = []
    prf: list[int] = []
    dh: list[int] = []
    esn: list[int] = []
    words = [w.strip().lower() for w in text.split("-")]
    if not any(words):
        raise ValueError(f"empty proposal in {text!r}")
    for w in words:
        if w in ENCR_KEYWORDS:
            encr.append(ENCR_KEYWORDS[w])
        elif w in INTEG_KEYWORDS:
            integ.append(INTEG_KEYWORDS[w])
        elif w in PRF_KEYWORDS and protocol == ProtocolId.IKE:
            prf.append(PRF_KEYWORDS[w])
        elif w in DH_KEYWORDS:
            dh.append(DH_KEYWORDS[w])
        elif w in ESN_KEYWORDS and protocol == ProtocolId.ESP:
            esn.append(ESN_KEYWORDS[w])
        else:
            kind = "IKE" if protocol == ProtocolId.IKE else "ESP"
            raise ValueError(f"unknown {kind} proposal keyword {w!r} in {text!r}")
    if not encr:
        raise ValueError(f"proposal {text!r} names no encryption algorithm")
    aead = [ENCR_ALGS[e].aead for e, _ in encr]
    if any(aead) and not all(aead):
        raise ValueError(f"proposal {text!r} mixes AEAD and non-AEAD ciphers; split it in two")
    if all(aead) and integ:
        raise ValueError(f"proposal {text!r}: AEAD ciphers take no integrity algorithm")
    if not all(aead) and not integ:
        raise ValueError(f"proposal {text!r}: AES-CBC needs an integrity algorithm")
    if protocol == ProtocolId.IKE:
        if not prf:
            # strongSwan pairs each integrity algorithm with its PRF; for AEAD-only
            # proposals we choose HMAC-SHA2-256.
            prf = [_PRF_FOR_INTEG[IntegId(i)] for i in integ] or [PrfId.HMAC_SHA2_256]
        if not dh:
            raise ValueError(f"IKE proposal {text!r} names no key exchange group")
    else:
        for e, k in encr:
            for i in integ or [IntegId.NONE]:
                if (e, k, i) not in DATAPLANE_TRANSFORMS:
                    words_ = _keyword_of(ENCR_KEYWORDS, (e, k))
                    raise ValueError(f"ESP keyword {words_!r} in {text!r}: the dataplane "
                                     "does not implement it")  # fmt: skip
        esn = esn or [EsnId.NO_ESN]
    return ProposalSpec(protocol, tuple(encr), tuple(integ), tuple(prf), tuple(dh), tuple(esn))


def parse_ike(text: str) -> tuple[ProposalSpec, ...]:
    """IKE proposals, e.g. ``"aes256gcm16-prfsha384-ecp384,aes256-sha256-modp2048"``."""
    return tuple(_parse_one(p, ProtocolId.IKE) for p in text.split(",") if p.strip())


def parse_esp(text: str) -> tuple[ProposalSpec, ...]:
    """ESP proposals, e.g. ``"aes128gcm16,aes256-sha256"``; ``-esn`` asks for ESN."""
    return tuple(_parse_one(p, ProtocolId.ESP) for p in text.split(",") if p.strip())


# --------------------------------------------------------------------------------------
# Selection (responder) and verification of the choice (initiator)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chosen:
    """The negotiated algorithms: exactly one of each transform type (0/None = absent)."""

    protocol: int
    encr: int
    key_len: int | None
    integ: int = IntegId.NONE
    prf: int = 0
    dh: int = DhGroup.NONE
    esn: bool = False
    spi: bytes = b""  # the peer's SPI from its proposal
    num: int = 1

    def to_proposal(self, spi: bytes) -> Proposal:
        ts = [Transform(TT.ENCR, self.encr, self.key_len)]
        if self.prf:
            ts.append(Transform(TT.PRF, self.prf))
        if self.integ:
            ts.append(Transform(TT.INTEG, self.integ))
        if self.dh:
            ts.append(Transform(TT.DH, self.dh))
        if self.protocol != ProtocolId.IKE:
            ts.append(Transform(TT.ESN, EsnId.ESN if self.esn else EsnId.NO_ESN))
        return Proposal(self.num, self.protocol, spi, tuple(ts))

    @property
    def dataplane_transform(self) -> str:
        """The dataplane Transform keyword for a Child SA ("aes128gcm16", ...)."""
        return DATAPLANE_TRANSFORMS[(self.encr, self.key_len, self.integ)]

    def __str__(self) -> str:
        words = [_keyword_of(ENCR_KEYWORDS, (self.encr, self.key_len))]
        if self.integ:
            words.append(_keyword_of(INTEG_KEYWORDS, self.integ))
        if self.prf:
            words.append(_keyword_of(PRF_KEYWORDS, self.prf))
        if self.dh:
            words.append(_keyword_of(DH_KEYWORDS, self.dh))
        if self.esn:
            words.append("esn")
        return "-".join(words)


def _offered(p: Proposal, ttype: int) -> list[Transform]:
    # RFC 7296 §3.3.6: a transform with attributes we do not understand is skipped.
    return [t for t in p.transforms if t.type == ttype and not t.unknown_attrs]


def _match(ours: ProposalSpec, theirs: Proposal, ignore_dh: bool) -> Chosen | None:
    if theirs.protocol != ours.protocol:
        return None
    their_encr = {(t.id, t.key_length) for t in _offered(theirs, TT.ENCR)}
    encr = next((e for e in ours.encr if e in their_encr), None)
    if encr is None:
        return None

    def pick(mine: Sequence[int], ttype: int) -> int | None:
        offered = [t.id for t in _offered(theirs, ttype)]
        if not mine:
            # We want none: the peer must offer none, or NONE (RFC 7296 §3.3.3).
            return 0 if not offered or 0 in offered else None
        return next((m for m in mine if m in offered), None)

    integ = pick(ours.integ, TT.INTEG)
    prf = pick(ours.prf, TT.PRF)
    dh = 0 if ignore_dh else pick(ours.dh, TT.DH)
    esn = pick(ours.esn, TT.ESN) if ours.protocol == ProtocolId.ESP else 0
    if integ is None or prf is None or dh is None or esn is None:
        return None
    return Chosen(
        theirs.protocol, encr[0], encr[1], integ, prf, dh, esn == EsnId.ESN, theirs.spi,
        theirs.num,
    )  # fmt: skip


def select(
    ours: Iterable[ProposalSpec], theirs: Sequence[Proposal], *, ignore_dh: bool = False
) -> Chosen:
    """The responder's choice, or RemoteProtocolError(NO_PROPOSAL_CHOSEN)."""
    for spec in ours:
        for p in theirs:
            chosen = _match(spec, p, ignore_dh)
            if chosen is not None:
                return chosen
    offered = "; ".join(describe(p) for p in theirs)
    raise RemoteProtocolError(
        f"no acceptable proposal (peer offered {offered})", notify=NotifyType.NO_PROPOSAL_CHOSEN
    )


def accept_choice(
    ours: Iterable[ProposalSpec], reply: Sequence[Proposal], *, ignore_dh: bool = False
) -> Chosen:
    """The initiator's check of the responder's answer: exactly one proposal, one
    transform per type, and every transform one we offered (RFC 7296 §2.7)."""
    if len(reply) != 1:
        raise RemoteProtocolError(f"responder returned {len(reply)} proposals")
    p = reply[0]
    types = [t.type for t in p.transforms]
    if len(types) != len(set(types)):
        raise RemoteProtocolError("responder chose more than one transform of a type")
    for spec in ours:
        chosen = _match(spec, p, ignore_dh)
        if chosen is not None:
            return chosen
    raise RemoteProtocolError(
        f"responder chose a proposal we did not offer: {describe(p)}",
        notify=NotifyType.NO_PROPOSAL_CHOSEN,
    )


def allows(ours: Iterable[ProposalSpec], chosen: Chosen) -> bool:
    """Whether one of ``ours`` offers every algorithm of ``chosen`` (a connection's
    check of what was negotiated before the peer said which connection it is for)."""
    offer = chosen.to_proposal(chosen.spi)
    return any(_match(spec, offer, ignore_dh=not chosen.dh) is not None for spec in ours)


def describe(p: Proposal) -> str:
    """A proposal in keyword syntax where we know the keywords, numbers elsewhere."""
    words = []
    tables: dict[int, dict[str, int]] = {
        TT.INTEG: INTEG_KEYWORDS, TT.PRF: PRF_KEYWORDS, TT.DH: DH_KEYWORDS,
        TT.ESN: ESN_KEYWORDS,
    }  # fmt: skip
    for t in p.transforms:
        try:
            if t.type == TT.ENCR:
                words.append(_keyword_of(ENCR_KEYWORDS, (t.id, t.key_length)))
            elif t.type in tables and (t.type != TT.INTEG or t.id):
                words.append(_keyword_of(tables[t.type], t.id))
            elif t.type == TT.INTEG:
                continue
            else:
                words.append(f"{t.type}:{t.id}")
        except StopIteration:
            words.append(f"{TT(t.type).name if t.type in set(TT) else t.type}:{t.id}")
    return "-".join(words) or "(empty)"


def key_lengths(chosen: Chosen) -> tuple[int, int]:
    """(encryption key length incl. salt, integrity key length) in bytes."""
    alg = ENCR_ALGS[chosen.encr]
    enc = (chosen.key_len or 256) // 8 + alg.salt_len
    integ = INTEG_ALGS[chosen.integ].key_len if chosen.integ else 0
    return enc, integ
