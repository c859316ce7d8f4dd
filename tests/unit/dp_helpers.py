"""Shared helpers for the dataplane tests: inner packets, SA pairs, keys."""

from __future__ import annotations

import ipaddress
import os
import struct

from espfast.dataplane import Direction, EspSa, SaParams, Transform

A4, B4 = "198.19.1.1", "198.19.2.1"
A6, B6 = "2001:2:0:1::1", "2001:2:0:2::1"
NET_A = (ipaddress.ip_network("198.19.1.0/24"), ipaddress.ip_network("2001:2:0:1::/64"))
NET_B = (ipaddress.ip_network("198.19.2.0/24"), ipaddress.ip_network("2001:2:0:2::/64"))


def _csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_udp(src: str, dst: str, payload: bytes, ident: int = 1) -> bytes:
    udp = struct.pack("!HHHH", 1234, 5678, 8 + len(payload), 0) + payload
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(udp),
        ident & 0xFFFF,
        0,
        64,
        17,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    hdr = hdr[:10] + struct.pack("!H", _csum(hdr)) + hdr[12:]
    return hdr + udp


def ipv6_udp(src: str, dst: str, payload: bytes) -> bytes:
    udp = struct.pack("!HHHH", 1234, 5678, 8 + len(payload), 0) + payload
    return (
        struct.pack("!IHBB", 6 << 28, len(udp), 17, 64)
        + ipaddress.IPv6Address(src).packed
        + ipaddress.IPv6Address(dst).packed
        + udp
    )


def keys(transform: Transform) -> tuple[bytes, bytes]:
    enc_len, integ_len = transform.key_lengths
    return os.urandom(enc_len), os.urandom(integ_len)


def params(
    transform: Transform,
    direction: Direction,
    enc: bytes,
    integ: bytes,
    *,
    spi: int = 0x1000,
    esn: bool = False,
    window: int = 1024,
    peer: tuple[str, int] | None = None,
    local: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = NET_A,
    remote: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = NET_B,
) -> SaParams:
    return SaParams(
        spi=spi,
        direction=direction,
        transform=transform,
        enc_key=enc,
        integ_key=integ,
        local_ts=local,
        remote_ts=remote,
        peer=peer,
        esn=esn,
        replay_window=window,
    )


def sa_pair(
    transform: Transform, *, esn: bool = False, initial_seq: int = 0, window: int = 1024
) -> tuple[EspSa, EspSa]:
    """(out, in): A's outbound SA and B's matching inbound SA."""
    enc, integ = keys(transform)
    out = EspSa(params(transform, Direction.OUT, enc, integ, esn=esn), initial_seq=initial_seq)
    inb = EspSa(
        params(
            transform, Direction.IN, enc, integ, esn=esn, window=window, local=NET_B, remote=NET_A
        ),
        initial_seq=initial_seq,
    )
    return out, inb


def esp_gcm(
    enc: bytes,
    spi: int,
    seq: int,
    payload: bytes,
    *,
    esn: bool = False,
    nh: int = 4,
    trailer: bytes | None = None,
) -> bytes:
    """An AES-GCM ESP packet built with the cryptography package (independent of our C
    code): RFC 4106 nonce salt || IV, AAD SPI || seq (|| ESN: SPI || seq_hi || seq_lo).
    ``trailer`` replaces the correct padding + pad length + next header."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key, salt = enc[:-4], enc[-4:]
    if trailer is None:
        pad = -(len(payload) + 2) % 4
        trailer = bytes(range(1, pad + 1)) + bytes([pad, nh])
    iv = os.urandom(8)
    hdr = struct.pack("!II", spi, seq & 0xFFFFFFFF)
    aad = struct.pack("!III", spi, seq >> 32, seq & 0xFFFFFFFF) if esn else hdr
    return hdr + iv + AESGCM(key).encrypt(salt + iv, payload + trailer, aad)
