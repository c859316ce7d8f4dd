"""espfast's ESP against an independent implementation: scapy.layers.ipsec (which uses
the cryptography package, not our OpenSSL EVP code). For every transform, with and
without ESN (crossing 2^32): scapy decrypts what espfast encapsulates, and espfast
accepts what scapy encrypts. scapy has all nine transforms (AES-GCM, CHACHA20-POLY1305,
AES-CBC with SHA2-256-128 / SHA2-384-192 / SHA2-512-256), so no other reference is needed.
"""

from __future__ import annotations

import os

import pytest
from dp_helpers import A4, A6, B4, B6, NET_A, NET_B, ipv4_udp, ipv6_udp, keys, params
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.layers.ipsec import ESP, SecurityAssociation

from espfast.dataplane import Direction, EspSa, Transform

SPI = 0x0BADCAFE
OUTER = IP(src="198.18.0.1", dst="198.18.0.2")

SCAPY_NAMES: dict[Transform, tuple[str, str | None]] = {
    Transform.AES128GCM16: ("AES-GCM", None),
    Transform.AES256GCM16: ("AES-GCM", None),
    Transform.CHACHA20POLY1305: ("CHACHA20-POLY1305", None),
    Transform.AES128_SHA256: ("AES-CBC", "SHA2-256-128"),
    Transform.AES256_SHA256: ("AES-CBC", "SHA2-256-128"),
    Transform.AES128_SHA384: ("AES-CBC", "SHA2-384-192"),
    Transform.AES256_SHA384: ("AES-CBC", "SHA2-384-192"),
    Transform.AES128_SHA512: ("AES-CBC", "SHA2-512-256"),
    Transform.AES256_SHA512: ("AES-CBC", "SHA2-512-256"),
}


def scapy_sa(transform: Transform, enc: bytes, integ: bytes, esn: bool) -> SecurityAssociation:
    crypt, auth = SCAPY_NAMES[transform]
    kw = {"auth_algo": auth, "auth_key": integ} if auth else {}
    # scapy takes key || salt for the AEADs, as IKEv2 KEYMAT gives it (like espfast).
    return SecurityAssociation(
        ESP, spi=SPI, crypt_algo=crypt, crypt_key=enc, tunnel_header=OUTER, esn_en=esn, **kw
    )


def inner_packets() -> list[bytes]:
    out = []
    for size in (0, 1, 2, 3, 13, 14, 15, 16, 17, 100, 1372):
        out.append(ipv4_udp(A4, B4, os.urandom(size), ident=size))
        out.append(ipv6_udp(A6, B6, os.urandom(size)))
    return out


CASES = [(t, esn) for t in Transform for esn in (False, True)]


def ids(case: tuple[Transform, bool]) -> str:
    return f"{case[0].value}-{'esn' if case[1] else 'seq32'}"


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_scapy_decrypts_espfast(case: tuple[Transform, bool]) -> None:
    transform, esn = case
    enc, integ = keys(transform)
    start = 2**32 - 5 if esn else 0
    ours = EspSa(params(transform, Direction.OUT, enc, integ, spi=SPI, esn=esn), initial_seq=start)
    theirs = scapy_sa(transform, enc, integ, esn)
    for i, inner in enumerate(inner_packets()):
        seq = start + i + 1
        esp = ours.encap(inner)
        assert int.from_bytes(esp[4:8], "big") == seq & 0xFFFFFFFF
        pkt = IP(bytes(OUTER.copy() / ESP(esp)))
        plain = theirs.decrypt(pkt, esn=seq >> 32)
        assert bytes(plain) == inner
        if transform.is_aead:
            # RFC 4106 §3.1 / RFC 7634 §2: the IV is the 64-bit sequence number.
            assert esp[8:16] == seq.to_bytes(8, "big")


@pytest.mark.parametrize("case", CASES, ids=ids)
def test_espfast_accepts_scapy(case: tuple[Transform, bool]) -> None:
    transform, esn = case
    enc, integ = keys(transform)
    start = 2**32 - 5 if esn else 0
    ours = EspSa(
        params(transform, Direction.IN, enc, integ, spi=SPI, esn=esn, local=NET_B, remote=NET_A),
        initial_seq=start,
    )
    theirs = scapy_sa(transform, enc, integ, esn)
    for i, inner in enumerate(inner_packets()):
        seq = start + i + 1
        layer = IP if inner[0] >> 4 == 4 else IPv6
        # (scapy reads a seq_num argument of 0 as "not given": set its counter instead)
        theirs.seq_num = seq & 0xFFFFFFFF
        pkt = theirs.encrypt(layer(inner), esn=seq >> 32)
        assert pkt[ESP].seq == seq & 0xFFFFFFFF
        assert ours.decap(bytes(pkt[ESP])) == inner
        # and once is all: the same packet again is a replay
        with pytest.raises(ValueError, match="replayed"):
            ours.decap(bytes(pkt[ESP]))
    st = ours.stats()
    assert st.packets == len(inner_packets()) and st.seq == start + len(inner_packets())


@pytest.mark.parametrize("transform", list(Transform))
def test_wrong_esn_half_fails_authentication(transform: Transform) -> None:
    """With ESN the high half is authenticated although not sent: a sender that uses a
    different high half (here: scapy told seq_hi = 1 where we are at 0) fails the ICV."""
    enc, integ = keys(transform)
    ours = EspSa(
        params(transform, Direction.IN, enc, integ, spi=SPI, esn=True, local=NET_B, remote=NET_A)
    )
    theirs = scapy_sa(transform, enc, integ, True)
    pkt = theirs.encrypt(IP(ipv4_udp(A4, B4, b"x")), seq_num=7, esn=1)
    with pytest.raises(ValueError, match="integrity check failed") as e:
        ours.decap(bytes(pkt[ESP]))
    assert e.value.reason == "auth"  # type: ignore[attr-defined]
    assert ours.stats().auth_failures == 1
