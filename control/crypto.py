"""IKEv2 cryptography: PRFs and prf+, key derivation, key exchange, SK payload ciphers.

Everything is built on the ``cryptography`` library; this module only arranges bytes the
way RFC 7296 §2.13-§2.17 and §3.14 say.
"""

from __future__ import annotations

import hashlib
import hmac
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dh, ec, x448, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.utils import CryptographyDeprecationWarning

from .constants import DhGroup, EncrId, IntegId, PrfId
from .der import INTEGER, OCTET_STRING, OID, SEQUENCE, encode_oid, tlv
from .errors import IntegrityError, LocalProtocolError, RemoteProtocolError
from .rng import Rng

# --------------------------------------------------------------------------------------
# PRF and prf+ (RFC 7296 §2.13)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prf:
    """An HMAC PRF; its preferred key size equals its output size (RFC 4868 §2.1.2)."""

    hash_name: str

    @property
    def size(self) -> int:
        return hashlib.new(self.hash_name).digest_size

    def __call__(self, key: bytes, data: bytes) -> bytes:
        return hmac.new(key, data, self.hash_name).digest()

    def plus(self, key: bytes, seed: bytes, length: int) -> bytes:
        """prf+ (K,S) = T1 | T2 | ...; T1 = prf(K, S | 0x01), Tn = prf(K, Tn-1 | S | n)."""
        if length > 255 * self.size:
            raise LocalProtocolError(f"prf+ cannot produce {length} bytes")
        out = bytearray()
        t = b""
        n = 1
        while len(out) < length:
            t = self(key, t + seed + bytes([n]))
            out += t
            n += 1
        return bytes(out[:length])


PRFS: dict[int, Prf] = {
    PrfId.HMAC_SHA2_256: Prf("sha256"),
    PrfId.HMAC_SHA2_384: Prf("sha384"),
    PrfId.HMAC_SHA2_512: Prf("sha512"),
}


# --------------------------------------------------------------------------------------
# Algorithms of the SK payload (RFC 7296 §3.14, RFC 5282, RFC 7634, RFC 4868)
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EncrAlg:
    id: int
    key_sizes: tuple[int, ...]  # bytes, without the salt
    salt_len: int
    iv_len: int
    icv_len: int  # AEAD tag; 0 for CBC (the ICV comes from the integrity algorithm)
    aead: bool


ENCR_ALGS: dict[int, EncrAlg] = {
    EncrId.AES_CBC: EncrAlg(EncrId.AES_CBC, (16, 24, 32), 0, 16, 0, False),
    EncrId.AES_GCM_16: EncrAlg(EncrId.AES_GCM_16, (16, 24, 32), 4, 8, 16, True),
    EncrId.CHACHA20_POLY1305: EncrAlg(EncrId.CHACHA20_POLY1305, (32,), 4, 8, 16, True),
}


@dataclass(frozen=True)
class IntegAlg:
    id: int
    hash_name: str
    key_len: int
    icv_len: int


INTEG_ALGS: dict[int, IntegAlg] = {
    IntegId.HMAC_SHA2_256_128: IntegAlg(IntegId.HMAC_SHA2_256_128, "sha256", 32, 16),
    IntegId.HMAC_SHA2_384_192: IntegAlg(IntegId.HMAC_SHA2_384_192, "sha384", 48, 24),
    IntegId.HMAC_SHA2_512_256: IntegAlg(IntegId.HMAC_SHA2_512_256, "sha512", 64, 32),
}


class AeadCrypter:
    """SK with AES-GCM-16 (RFC 5282) or ChaCha20-Poly1305 (RFC 7634).

    Nonce = salt (last 4 bytes of SK_e) | 8-byte IV carried in the payload. The IV is a
    counter, so it never repeats under one key; the AAD is the IKE header and every
    payload up to and including the SK payload's generic header (RFC 5282 §5.1).
    """

    block_size = 1
    iv_len = 8
    icv_len = 16

    def __init__(self, alg: EncrAlg, key: bytes) -> None:
        self._salt = key[-alg.salt_len :]
        raw = key[: -alg.salt_len]
        self._aead: AESGCM | ChaCha20Poly1305 = (
            ChaCha20Poly1305(raw) if alg.id == EncrId.CHACHA20_POLY1305 else AESGCM(raw)
        )
        self._counter = 0

    def sealed_len(self, plain_len: int) -> int:
        return self.iv_len + plain_len + self.icv_len

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        self._counter += 1
        iv = self._counter.to_bytes(8, "big")
        return iv + self._aead.encrypt(self._salt + iv, plaintext, aad)

    def open(self, aad: bytes, body: bytes) -> bytes:
        if len(body) < self.iv_len + self.icv_len:
            raise IntegrityError("encrypted payload too short")
        iv = body[: self.iv_len]
        try:
            return self._aead.decrypt(self._salt + iv, body[self.iv_len :], aad)
        except InvalidTag:
            raise IntegrityError("encrypted payload failed authentication") from None


class CbcHmacCrypter:
    """SK with AES-CBC (RFC 3602) and HMAC-SHA2 (RFC 4868): IV | ciphertext | ICV, the
    ICV over the whole message from the IKE header to the end of the ciphertext."""

    block_size = 16

    def __init__(self, enc_key: bytes, integ: IntegAlg, integ_key: bytes, rng: Rng) -> None:
        self._key = enc_key
        self._integ = integ
        self._integ_key = integ_key
        self._rng = rng
        self.icv_len = integ.icv_len

    def sealed_len(self, plain_len: int) -> int:
        return 16 + plain_len + self.icv_len

    def _icv(self, data: bytes) -> bytes:
        return hmac.new(self._integ_key, data, self._integ.hash_name).digest()[: self.icv_len]

    def seal(self, aad: bytes, plaintext: bytes) -> bytes:
        iv = self._rng.random_bytes(16)
        enc = Cipher(algorithms.AES(self._key), modes.CBC(iv)).encryptor()
        body = iv + enc.update(plaintext) + enc.finalize()
        return body + self._icv(aad + body)

    def open(self, aad: bytes, body: bytes) -> bytes:
        n = len(body) - 16 - self.icv_len
        if n <= 0 or n % 16:
            raise IntegrityError("encrypted payload length is not a block multiple")
        icv = body[-self.icv_len :]
        if not hmac.compare_digest(icv, self._icv(aad + body[: -self.icv_len])):
            raise IntegrityError("encrypted payload failed its integrity check")
        dec = Cipher(algorithms.AES(self._key), modes.CBC(body[:16])).decryptor()
        return dec.update(body[16 : -self.icv_len]) + dec.finalize()


Crypter = AeadCrypter | CbcHmacCrypter


def make_crypter(
    encr: EncrAlg, enc_key: bytes, integ: IntegAlg | None, integ_key: bytes, rng: Rng
) -> Crypter:
    if encr.aead:
        return AeadCrypter(encr, enc_key)
    if integ is None:
        raise LocalProtocolError("AES-CBC needs an integrity algorithm")
    return CbcHmacCrypter(enc_key, integ, integ_key, rng)


# --------------------------------------------------------------------------------------
# IKE SA keys (RFC 7296 §2.14) and Child SA keys (§2.17)
# --------------------------------------------------------------------------------------


@dataclass
class IkeKeys:
    """SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr, in that order from prf+."""

    sk_d: bytearray = field(repr=False)
    sk_ai: bytearray = field(repr=False)
    sk_ar: bytearray = field(repr=False)
    sk_ei: bytearray = field(repr=False)
    sk_er: bytearray = field(repr=False)
    sk_pi: bytearray = field(repr=False)
    sk_pr: bytearray = field(repr=False)

    def wipe(self) -> None:
        """Overwrite every key with zeros (best effort: copies inside libraries remain
        until they are freed)."""
        for k in (self.sk_d, self.sk_ai, self.sk_ar, self.sk_ei, self.sk_er, self.sk_pi,
                  self.sk_pr):  # fmt: skip
            k[:] = bytes(len(k))


def skeyseed(prf: Prf, ni: bytes, nr: bytes, shared: bytes) -> bytes:
    """SKEYSEED = prf(Ni | Nr, g^ir)   (§2.14)"""
    return prf(ni + nr, shared)


def skeyseed_rekey(prf: Prf, sk_d_old: bytes, shared: bytes, ni: bytes, nr: bytes) -> bytes:
    """SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr)   (§2.18)"""
    return prf(sk_d_old, shared + ni + nr)


def derive_ike_keys(
    prf: Prf, seed: bytes, ni: bytes, nr: bytes, spi_i: int, spi_r: int,
    enc_len: int, integ_len: int,
) -> IkeKeys:  # fmt: skip
    """{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr |
    SPIi | SPIr). ``enc_len`` includes the AEAD salt; ``integ_len`` is 0 for AEADs."""
    p = prf.size
    lengths = (p, integ_len, integ_len, enc_len, enc_len, p, p)
    km = prf.plus(seed, ni + nr + spi_i.to_bytes(8, "big") + spi_r.to_bytes(8, "big"),
                  sum(lengths))  # fmt: skip
    parts = []
    pos = 0
    for n in lengths:
        parts.append(bytearray(km[pos : pos + n]))
        pos += n
    return IkeKeys(*parts)


@dataclass(frozen=True)
class ChildKeys:
    """KEYMAT split as §2.17 says: all initiator-to-responder keys first, and within a
    direction the encryption key before the integrity key."""

    enc_i: bytes = field(repr=False)
    integ_i: bytes = field(repr=False)
    enc_r: bytes = field(repr=False)
    integ_r: bytes = field(repr=False)


def child_keymat(
    prf: Prf, sk_d: bytes, ni: bytes, nr: bytes, enc_len: int, integ_len: int,
    shared: bytes | None = None,
) -> ChildKeys:  # fmt: skip
    """KEYMAT = prf+(SK_d, Ni | Nr), or prf+(SK_d, g^ir (new) | Ni | Nr) with PFS."""
    seed = (shared or b"") + ni + nr
    km = prf.plus(sk_d, seed, 2 * (enc_len + integ_len))
    a = enc_len
    b = a + integ_len
    c = b + enc_len
    return ChildKeys(km[:a], km[a:b], km[b:c], km[c : c + integ_len])


# --------------------------------------------------------------------------------------
# Key exchange (RFC 3526 MODP, RFC 5903 ECP, RFC 8031 Curve25519/Curve448)
# --------------------------------------------------------------------------------------


def _pi_bits(bits: int) -> int:
    """floor(pi * 2**bits), by Machin's formula in integer arithmetic."""
    guard = 64
    one = 1 << (bits + guard)

    def arctan_inv(x: int) -> int:
        total = term = one // x
        x2 = x * x
        n = 1
        sign = -1
        while term:
            term //= x2
            total += sign * (term // (2 * n + 1))
            sign = -sign
            n += 1
        return total

    return (16 * arctan_inv(5) - 4 * arctan_inv(239)) >> guard


@cache
def modp_prime(bits: int) -> int:
    """The RFC 3526 prime p = 2^n - 2^(n-64) - 1 + 2^64 * ( [2^(n-130) pi] + offset )."""
    offsets = {2048: 124476, 3072: 1690314, 4096: 240904}
    n = bits
    return (1 << n) - (1 << (n - 64)) - 1 + (1 << 64) * (_pi_bits(n - 130) + offsets[bits])


_MODP_BITS = {DhGroup.MODP_2048: 2048, DhGroup.MODP_3072: 3072, DhGroup.MODP_4096: 4096}
_ECP_CURVES: dict[int, ec.EllipticCurve] = {
    DhGroup.ECP_256: ec.SECP256R1(),
    DhGroup.ECP_384: ec.SECP384R1(),
    DhGroup.ECP_521: ec.SECP521R1(),
}
_ECP_LEN = {DhGroup.ECP_256: 32, DhGroup.ECP_384: 48, DhGroup.ECP_521: 66}
SUPPORTED_GROUPS = frozenset(
    {*_MODP_BITS, *_ECP_CURVES, DhGroup.CURVE25519, DhGroup.CURVE448}
)  # fmt: skip


DH_KEY_AGREEMENT = "1.2.840.113549.1.3.1"  # PKCS #3 dhKeyAgreement


@contextmanager
def _ffdh() -> Iterator[None]:
    """``cryptography`` warns that finite-field DH is deprecated; IKEv2 peers still offer
    the RFC 3526 groups, and OpenSSL does their arithmetic far faster than Python."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        yield


@cache
def _modp_numbers(group: int) -> dh.DHParameterNumbers:
    with _ffdh():
        return dh.DHParameterNumbers(modp_prime(_MODP_BITS[DhGroup(group)]), 2)


def _der_int(value: int) -> bytes:
    return tlv(INTEGER, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def _modp_private_key(group: int, x: int) -> dh.DHPrivateKey:
    """OpenSSL's key for exponent ``x``: a PKCS #8 DH key holding only x, from which
    OpenSSL computes g^x itself (cryptography takes no bare exponent)."""
    pn = _modp_numbers(group)
    algorithm = tlv(SEQUENCE, tlv(OID, encode_oid(DH_KEY_AGREEMENT))
                    + tlv(SEQUENCE, _der_int(pn.p) + _der_int(pn.g)))  # fmt: skip
    der = tlv(SEQUENCE, _der_int(0) + algorithm + tlv(OCTET_STRING, _der_int(x)))
    with _ffdh():
        key = serialization.load_der_private_key(der, None)
        if not isinstance(key, dh.DHPrivateKey):
            raise LocalProtocolError("OpenSSL did not load a DH key")
    return key


def check_public_value(group: int, peer: bytes) -> None:
    """The cheap checks of a peer's KE data, before any key exchange work is done for it
    (RFC 7296 §3.4; NIST SP 800-56A rev. 3 §5.6.2.3): the group's length; for MODP
    1 < y < p-1; for ECP a point on the curve. RemoteProtocolError if it fails (what
    only the exchange itself finds, e.g. a small-order X25519 point, ``shared`` does)."""
    if group not in SUPPORTED_GROUPS:
        return  # not ours: proposal selection answers INVALID_KE_PAYLOAD
    if len(peer) != KeyExchange.public_len(group):
        raise RemoteProtocolError(f"KE data of {len(peer)} bytes for group {group}")
    if group in _MODP_BITS:
        if not 1 < int.from_bytes(peer, "big") < _modp_numbers(group).p - 1:
            raise RemoteProtocolError("MODP public value out of range")
    elif group in _ECP_CURVES:
        try:
            ec.EllipticCurvePublicKey.from_encoded_point(_ECP_CURVES[group], b"\x04" + peer)
        except ValueError:
            raise RemoteProtocolError("ECP public value is not on the curve") from None


class KeyExchange:
    """One side's ephemeral key for ``group``. ``public`` is the KE payload data in the
    group's wire encoding; ``shared(peer)`` is g^ir, fixed-length as §2.14 requires.
    All group arithmetic is OpenSSL's (through ``cryptography``)."""

    def __init__(self, group: int, rng: Rng) -> None:
        if group not in SUPPORTED_GROUPS:
            raise LocalProtocolError(f"unsupported key exchange group {group}")
        self.group = group
        if group in _MODP_BITS:
            self._len = _MODP_BITS[DhGroup(group)] // 8
            # A 512-bit exponent: more than twice the strength of the largest group.
            x = int.from_bytes(rng.random_bytes(64), "big") | (1 << 511)
            self._dh = _modp_private_key(group, x)
            with _ffdh():
                y = self._dh.public_key().public_numbers().y
            self.public = y.to_bytes(self._len, "big")
        elif group in _ECP_CURVES:
            curve = _ECP_CURVES[group]
            self._len = _ECP_LEN[DhGroup(group)]
            # A uniform scalar in [1, n-1]: draw field-sized values until one fits.
            mask = (1 << curve.key_size) - 1
            while True:
                d = int.from_bytes(rng.random_bytes(self._len), "big") & mask
                try:
                    self._ec = ec.derive_private_key(d, curve)
                    break
                except ValueError:
                    continue
            nums = self._ec.public_key().public_numbers()
            # RFC 5903 §7: the KE data is x | y, each the size of the field.
            self.public = nums.x.to_bytes(self._len, "big") + nums.y.to_bytes(self._len, "big")
        elif group == DhGroup.CURVE25519:
            self._x = x25519.X25519PrivateKey.from_private_bytes(rng.random_bytes(32))
            self.public = self._x.public_key().public_bytes_raw()
        else:
            self._x4 = x448.X448PrivateKey.from_private_bytes(rng.random_bytes(56))
            self.public = self._x4.public_key().public_bytes_raw()

    def shared(self, peer: bytes) -> bytes:
        """g^ir; RemoteProtocolError(INVALID_SYNTAX) for a malformed or weak peer value."""
        g = self.group
        check_public_value(g, peer)
        try:
            if g in _MODP_BITS:
                # The range is checked above; with a safe prime a value outside the
                # prime-order subgroup reveals at most one bit of our exponent.
                with _ffdh():
                    y = dh.DHPublicNumbers(int.from_bytes(peer, "big"), _modp_numbers(g))
                    return self._dh.exchange(y.public_key()).rjust(self._len, b"\0")
            if g in _ECP_CURVES:
                point = ec.EllipticCurvePublicKey.from_encoded_point(_ECP_CURVES[g], b"\x04" + peer)
                return self._ec.exchange(ec.ECDH(), point)
            if g == DhGroup.CURVE25519:
                return self._x.exchange(x25519.X25519PublicKey.from_public_bytes(peer))
            return self._x4.exchange(x448.X448PublicKey.from_public_bytes(peer))
        except ValueError as exc:
            # Off-curve points, all-zero X25519/X448 results (RFC 8031 §2.1).
            raise RemoteProtocolError(f"bad key exchange value: {exc}") from None

    @staticmethod
    def public_len(group: int) -> int:
        if group in _MODP_BITS:
            return _MODP_BITS[DhGroup(group)] // 8
        if group in _ECP_LEN:
            return 2 * _ECP_LEN[DhGroup(group)]
        return {DhGroup.CURVE25519: 32, DhGroup.CURVE448: 56}[DhGroup(group)]


def sha1(data: bytes) -> bytes:
    """SHA-1, which RFC 7296 §2.23 (NAT detection) and §3.7 (CERTREQ) still use."""
    h = hashes.Hash(hashes.SHA1())  # noqa: S303 - mandated by RFC 7296 §2.23
    h.update(data)
    return h.finalize()
