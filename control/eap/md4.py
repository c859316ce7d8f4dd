"""MD4 (RFC 1320), for the NT password hash of MS-CHAPv2 only.

Why our own: MS-CHAPv2 is defined over MD4 and nothing else, but OpenSSL 3 keeps MD4 in
its legacy provider, which Python's hashlib does not load (``hashlib.new("md4")`` fails
on this platform) and ``cryptography`` does not offer MD4 at all. MD4 is used here only
as the protocol demands it (NtPasswordHash, HashNtPasswordHash), never for integrity.
"""

from __future__ import annotations

import struct

_MASK = 0xFFFFFFFF


def _rotl(x: int, n: int) -> int:
    x &= _MASK
    return ((x << n) | (x >> (32 - n))) & _MASK


def _f(x: int, y: int, z: int) -> int:
    return (x & y) | (~x & z)


def _g(x: int, y: int, z: int) -> int:
    return (x & y) | (x & z) | (y & z)


def _h(x: int, y: int, z: int) -> int:
    return x ^ y ^ z


# RFC 1320 §3.4: the word order and shift amounts of each round.
_R1 = [(k, (3, 7, 11, 19)[k % 4]) for k in range(16)]
_R2 = [(k, (3, 5, 9, 13)[i % 4]) for i, k in enumerate((0, 4, 8, 12, 1, 5, 9, 13,
                                                          2, 6, 10, 14, 3, 7, 11, 15))]  # fmt: skip
_R3 = [(k, (3, 9, 11, 15)[i % 4]) for i, k in enumerate((0, 8, 4, 12, 2, 10, 6, 14,
                                                          1, 9, 5, 13, 3, 11, 7, 15))]  # fmt: skip


def md4(data: bytes) -> bytes:
    """The 16-byte MD4 digest of ``data``."""
    bit_len = (8 * len(data)) & 0xFFFFFFFFFFFFFFFF
    msg = data + b"\x80" + bytes((55 - len(data)) % 64) + struct.pack("<Q", bit_len)
    state = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476]
    for off in range(0, len(msg), 64):
        x = struct.unpack("<16I", msg[off : off + 64])
        a, b, c, d = state
        for rnd, (fn, const) in enumerate(((_f, 0), (_g, 0x5A827999), (_h, 0x6ED9EBA1))):
            steps = (_R1, _R2, _R3)[rnd]
            for k, s in steps:
                t = _rotl(a + fn(b, c, d) + x[k] + const, s)
                a, b, c, d = d, t, b, c
        state = [(v + w) & _MASK for v, w in zip(state, (a, b, c, d), strict=True)]
    return struct.pack("<4I", *state)
