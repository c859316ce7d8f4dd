"""Known answers for IKEv2 key derivation, key exchange and the SK payload ciphers."""

import hashlib
import hmac

import pytest

from espfast.control.constants import DhGroup, EncrId, IntegId, PrfId
from espfast.control.crypto import (
    ENCR_ALGS,
    INTEG_ALGS,
    PRFS,
    SUPPORTED_GROUPS,
    AeadCrypter,
    CbcHmacCrypter,
    KeyExchange,
    Prf,
    child_keymat,
    derive_ike_keys,
    make_crypter,
    modp_prime,
    skeyseed,
    skeyseed_rekey,
)
from espfast.control.errors import LocalProtocolError, RemoteProtocolError
from espfast.control.rng import DeterministicRng

H = bytes.fromhex


class FixedRng:
    """Hands out the given byte strings in order (for known-answer private keys)."""

    def __init__(self, *chunks: bytes) -> None:
        self._chunks = list(chunks)

    def random_bytes(self, n: int) -> bytes:
        chunk = self._chunks.pop(0)
        assert len(chunk) == n
        return chunk


# NIST CAVP, SP 800-135 "IKEv2" KDF component test vectors (ikev2.zip, SHA-1 section):
# https://csrc.nist.gov/CSRC/media/Projects/Cryptographic-Algorithm-Validation-Program/
#   documents/components/800-135testvectors/ikev2.zip
# The KDF is the same construction for every HMAC; CAVP's SHA-1 cases check our prf,
# prf+, SK_d split, Child SA KEYMAT (with and without g^ir (new)) and rekey SKEYSEED.
CAVP = [
    dict(
        ni="32b50d5f4a3763f3", nr="9206a04b26564cb1",
        gir="4b2c1f971981a8ad8d0abeafabf38cf75fc8349c148142465ed9c8b516b8be52",
        gir_new="863f3c9d06efd39d2b907b97f8699e5dd5251ef64a2a176f36ee40c87d4f9330",
        spi_i="34c9e7c188868785", spi_r="3ff77d760d2b2199",
        skeyseed="a9a7b222b59f8f48645f28a1db5b5f5d7479cba7",
        dkm="a14293677cc80ff8f9cc0eee30d895da9d8f405666e30ef0dfcb63c634a46002a2a63080e514a0"
        "62768b76606f9fa5e992204fc5a670bde3f10d6b027113936a5c55b648a194ae587b0088d52204b7"
        "02c979fa280870d2ed41efa9c549fd11198af1670b143d384bd275c5f594cf266b05ebadca855e42"
        "49520a441a81157435a7a56cc4",
        dkm_child="8059e3ee8810e6c3a91bc8bcd2a7a41151b8d0e6ae239c7b38093ad85ef4c5811a8e7b5d1c"
        "dabd9560b2d5e092d1f24e2d4b85eccdf0ad0dc9abd94b51ee71814ca6dbc8bb51b6309f5b9545c7"
        "eb35cf5580b1e521a8fe20754a2d883ba0c2cf285f524aea6545b33106bc03e614296d319d41d4b5"
        "0b3f510b1c0a22f3e664994d234cb4",
        dkm_child_dh="bb43244c1860ad65ee1e211ffe8bb3661750c8f89cb9f547df7f4fa61d37301628190e"
        "38c66232eab4b3ab14c400a5197dd3730ed4820a8a10394d51e1c0400052f63ebd36b0e7ef53aaed"
        "31eba4a5080d7d4b5666023a8bbb5ffb7857240f9a05884d1b7d2f933708450b7b3288f1fc863ab4"
        "9fa901227cffc06e27899c7054d56fd74c",
        skeyseed_rekey="63e81194946ebd05df7df5ebf5d8750056bf1f1d",
    ),
    dict(
        ni="3651fef5c9c35e93", nr="c09a8b90a3f04d59",
        gir="d084a30166a50fb7325c3960874a839449ef9741c2f4f947d0201dd8c1269273d79509f37e3ca3"
        "eb4fa2fe2a28254e289cd3f34dad4eb4df1a07685a4b8a94fa61e2491f7598b3ce65547ff133b3f6"
        "3d1ac4175eaa695033f3cedb026a6873a36455172a8540b8a5d23a0143bed0390ee49b168269d75f"
        "ffee9fb62be965993c",
        gir_new="52f00ab174c25d5b7139ae5ff4e8e9eddee5992d2e36adf8a559ffd90dab1442e4fbe429d3"
        "20c0f33552a17d1557fa41ea70e8fb916c4fa27ed52b5f8ebd8461afa78f1159159a64055ac5f631"
        "9e29c28eae58cbc6847770f32c3fed1d04750484f854790f95e9ec01bc5bc461f24966462e359511"
        "329305038e94deb6dd42c2",
        spi_i="8e5c3ae507221684", spi_r="b1f201bb155c3acd",
        skeyseed="cd2e8050137832245f1dbacc6e4f0a92f94d45d6",
        dkm="6f1b12cad3cbe097b35430356d869d54cddb0198ec859174d53ceb92dddedbe2436db69f60977c"
        "58fa63bbb667f8d36920b109baae8f6c61a9ac49feda01843225d080ec5539d5881a25521ffb2a0a"
        "91874a9c0a27fcc2d717eb8963a9e3a89c7ab264757284c28cf8c3ca40576f4220b052b1fb8e9ad6"
        "0ba3c80557323331a8cbb89f20",
        dkm_child="4727dc0ef94eb326ce131cf282fb652faa638ad0ddae3786a11bcc0309876009f8c485de01"
        "1ad962c5b1ca8a41ff8145445749079c5686e26ffebbc342f06981f3da745e11ca0976424d1f8cae"
        "c623d59dc7186deb20a27b411d1dcb70a365440bf7de905088b0692e8addc094e18d1939bdb67e89"
        "798ca6b239e2ccb81c2409dac0106c",
        dkm_child_dh="b109c21ad4c0797768c1cec9e63554681e48f224bca7f23c20c4ea7041983451e9aa1d"
        "5408656c8a975ff1b9d9a12c75ffeb64bdecb30174664cccb4e14f1c377b7f6d1525af77c7092aac"
        "3e47f917ebae8297fb5539d2008ce830823a09cc197361d4a289c72745f6ce9fefe812be5bf55b32"
        "00fbb82e41a4a40877d3fe106db909707b",
        skeyseed_rekey="3b03bce748c96d5e8306918d2ff89b68f0648da3",
    ),
]  # fmt: skip


@pytest.mark.parametrize("v", CAVP, ids=["count0", "count1"])
def test_cavp_ikev2_kdf(v: dict[str, str]) -> None:
    prf = Prf("sha1")
    ni, nr = H(v["ni"]), H(v["nr"])
    seed = skeyseed(prf, ni, nr, H(v["gir"]))
    assert seed.hex() == v["skeyseed"]
    spi_i, spi_r = int(v["spi_i"], 16), int(v["spi_r"], 16)
    dkm = prf.plus(seed, ni + nr + H(v["spi_i"]) + H(v["spi_r"]), 132)
    assert dkm.hex() == v["dkm"]
    # The same keying material through the SK_* split: SK_d is the first prf-size bytes.
    keys = derive_ike_keys(prf, seed, ni, nr, spi_i, spi_r, enc_len=16, integ_len=20)
    assert bytes(keys.sk_d) == dkm[:20]
    assert bytes(keys.sk_ai) + bytes(keys.sk_ar) == dkm[20:60]
    assert bytes(keys.sk_ei) + bytes(keys.sk_er) == dkm[60:92]
    assert bytes(keys.sk_pi) + bytes(keys.sk_pr) == dkm[92:132]
    sk_d = bytes(keys.sk_d)
    assert prf.plus(sk_d, ni + nr, 132).hex() == v["dkm_child"]
    assert prf.plus(sk_d, H(v["gir_new"]) + ni + nr, 132).hex() == v["dkm_child_dh"]
    assert skeyseed_rekey(prf, sk_d, H(v["gir_new"]), ni, nr).hex() == v["skeyseed_rekey"]
    # Child SA KEYMAT split (§2.17): encr_i | integ_i | encr_r | integ_r.
    ck = child_keymat(prf, sk_d, ni, nr, enc_len=36, integ_len=30, shared=H(v["gir_new"]))
    km = H(v["dkm_child_dh"])
    assert (ck.enc_i, ck.integ_i, ck.enc_r, ck.integ_r) == (
        km[:36],
        km[36:66],
        km[66:102],
        km[102:132],
    )
    assert km[:36].hex() not in repr(ck) and repr(km[:36]) not in repr(ck)


def test_prf_is_hmac_and_prf_plus_limits() -> None:
    prf = PRFS[PrfId.HMAC_SHA2_256]
    assert prf(b"k", b"d") == hmac.new(b"k", b"d", hashlib.sha256).digest()
    assert PRFS[PrfId.HMAC_SHA2_512].size == 64
    t1 = prf(b"k", b"seed\x01")
    t2 = prf(b"k", t1 + b"seed\x02")
    assert prf.plus(b"k", b"seed", 40) == (t1 + t2)[:40]
    with pytest.raises(LocalProtocolError):
        prf.plus(b"k", b"s", 255 * 32 + 1)


def test_ike_keys_for_aead_have_no_integrity_keys_and_wipe() -> None:
    prf = PRFS[PrfId.HMAC_SHA2_384]
    keys = derive_ike_keys(prf, b"s" * 48, b"n" * 32, b"m" * 32, 1, 2, enc_len=36, integ_len=0)
    assert (len(keys.sk_d), len(keys.sk_ai), len(keys.sk_ei), len(keys.sk_pr)) == (48, 0, 36, 48)
    assert bytes(keys.sk_ei).hex() not in repr(keys)
    keys.wipe()
    assert bytes(keys.sk_d) == bytes(48) and bytes(keys.sk_er) == bytes(36)


# RFC 5903 §8.1 (256-bit random ECP group): i, g^i, r, g^r, g^ir.
ECP256 = dict(
    i="C88F01F510D9AC3F70A292DAA2316DE544E9AAB8AFE84049C62A9C57862D1433",
    gi="DAD0B65394221CF9B051E1FECA5787D098DFE637FC90B9EF945D0C3772581180"
    "5271A0461CDB8252D61F1C456FA3E59AB1F45B33ACCF5F58389E0577B8990BB3",
    r="C6EF9C5D78AE012A011164ACB397CE2088685D8F06BF9BE0B283AB46476BEE53",
    gr="D12DFB5289C8D4F81208B70270398C342296970A0BCCB74C736FC7554494BF63"
    "56FBF3CA366CC23E8157854C13C58D6AAC23F046ADA30F8353E74F33039872AB",
    gir="D6840F6B42F6EDAFD13116E0E12565202FEF8E9ECE7DCE03812464D04B9442DE",
)


def test_rfc5903_ecp256() -> None:
    ki = KeyExchange(DhGroup.ECP_256, FixedRng(H(ECP256["i"])))
    kr = KeyExchange(DhGroup.ECP_256, FixedRng(H(ECP256["r"])))
    assert ki.public == H(ECP256["gi"])  # x | y, no 0x04 prefix (RFC 5903 §7)
    assert kr.public == H(ECP256["gr"])
    assert ki.shared(kr.public) == H(ECP256["gir"])  # the x coordinate only
    assert kr.shared(ki.public) == H(ECP256["gir"])


# RFC 7748 §6.1: Alice's and Bob's X25519 keys and their shared secret.
X25519_V = dict(
    a="77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
    a_pub="8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
    b="5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb",
    b_pub="de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f",
    k="4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742",
)


def test_rfc7748_x25519() -> None:
    a = KeyExchange(DhGroup.CURVE25519, FixedRng(H(X25519_V["a"])))
    b = KeyExchange(DhGroup.CURVE25519, FixedRng(H(X25519_V["b"])))
    assert a.public.hex() == X25519_V["a_pub"]
    assert b.public.hex() == X25519_V["b_pub"]
    assert a.shared(b.public).hex() == X25519_V["k"]
    assert b.shared(a.public).hex() == X25519_V["k"]


def test_modp_primes_are_rfc3526() -> None:
    # Every RFC 3526 prime starts with the digits of pi after 64 one-bits and ends with
    # 64 one-bits; the 2048-bit one ends ...15728E5A 8AACAA68 FFFFFFFF FFFFFFFF.
    for bits in (2048, 3072, 4096):
        p = modp_prime(bits)
        assert p.bit_length() == bits
        assert hex(p).startswith("0xffffffffffffffffc90fdaa22168c234c4c6628b80dc1cd1")
        assert p & (2**64 - 1) == 2**64 - 1
        # p is a safe prime: 2 generates the order-q subgroup, 2^q = 1 (mod p).
        q = (p - 1) // 2
        assert pow(2, q, p) == 1
    assert hex(modp_prime(2048)).endswith("15728e5a8aacaa68ffffffffffffffff")


@pytest.mark.parametrize("group", sorted(SUPPORTED_GROUPS))
def test_every_group_agrees_and_rejects_garbage(group: int) -> None:
    rng = DeterministicRng(f"group{group}")
    a, b = KeyExchange(group, rng), KeyExchange(group, rng)
    assert len(a.public) == KeyExchange.public_len(group)
    assert a.shared(b.public) == b.shared(a.public)
    with pytest.raises(RemoteProtocolError):
        a.shared(b.public[:-1])
    if group not in (DhGroup.CURVE25519, DhGroup.CURVE448):
        with pytest.raises(RemoteProtocolError):
            a.shared(bytes(len(b.public)))  # zero is not a valid public value


def test_x25519_all_zero_result_is_refused() -> None:
    a = KeyExchange(DhGroup.CURVE25519, DeterministicRng())
    with pytest.raises(RemoteProtocolError):
        a.shared(bytes(32))  # a small-order point gives the all-zero secret


def test_unsupported_group_is_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        KeyExchange(2, DeterministicRng())


@pytest.mark.parametrize(
    ("encr", "key_len", "integ"),
    [
        (EncrId.AES_GCM_16, 16, None),
        (EncrId.AES_GCM_16, 32, None),
        (EncrId.CHACHA20_POLY1305, 32, None),
        (EncrId.AES_CBC, 16, IntegId.HMAC_SHA2_256_128),
        (EncrId.AES_CBC, 32, IntegId.HMAC_SHA2_512_256),
    ],
)
def test_sk_crypters_roundtrip_and_detect_tampering(encr: int, key_len: int,
                                                     integ: int | None) -> None:  # fmt: skip
    rng = DeterministicRng("sk")
    alg = ENCR_ALGS[encr]
    ia = INTEG_ALGS[integ] if integ else None
    ek = rng.random_bytes(key_len + alg.salt_len)
    ik = rng.random_bytes(ia.key_len) if ia else b""
    tx = make_crypter(alg, ek, ia, ik, rng)
    rx = make_crypter(alg, ek, ia, ik, rng)
    plain = bytes(range(32))
    body = tx.seal(b"header", plain)
    assert len(body) == tx.sealed_len(len(plain))
    assert rx.open(b"header", body) == plain
    with pytest.raises(RemoteProtocolError):
        rx.open(b"headeR", body)
    tampered = body[:-1] + bytes([body[-1] ^ 1])
    with pytest.raises(RemoteProtocolError):
        rx.open(b"header", tampered)
    with pytest.raises(RemoteProtocolError):
        rx.open(b"header", body[:10])


def test_aead_iv_never_repeats() -> None:
    c = AeadCrypter(ENCR_ALGS[EncrId.AES_GCM_16], bytes(20))
    ivs = {c.seal(b"", b"x")[:8] for _ in range(100)}
    assert len(ivs) == 100


def test_cbc_needs_integrity() -> None:
    with pytest.raises(LocalProtocolError):
        make_crypter(ENCR_ALGS[EncrId.AES_CBC], bytes(16), None, b"", DeterministicRng())
    c = CbcHmacCrypter(bytes(16), INTEG_ALGS[IntegId.HMAC_SHA2_384_192], bytes(48),
                       DeterministicRng())  # fmt: skip
    assert c.icv_len == 24
