"""EspSa (one SA, the workers' C code): bad input, each with its counter; sequence
number exhaustion; validation."""

from __future__ import annotations

import os

import pytest
from dp_helpers import (
    A4,
    A6,
    B4,
    B6,
    NET_A,
    NET_B,
    esp_gcm,
    ipv4_udp,
    ipv6_udp,
    keys,
    params,
    sa_pair,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from espfast.dataplane import Direction, EspError, EspSa, PacketBatch, SaParams, Transform

T = Transform.AES128GCM16
SPI = 0x1000


def inbound(enc: bytes, **kw: object) -> EspSa:
    return EspSa(params(T, Direction.IN, enc, b"", spi=SPI, local=NET_B, remote=NET_A, **kw))  # type: ignore[arg-type]


def reason(sa: EspSa, data: bytes) -> str:
    with pytest.raises(EspError) as e:
        sa.decap(data)
    return e.value.reason


@pytest.mark.parametrize("transform", list(Transform))
def test_truncated_at_every_length(transform: Transform) -> None:
    out, inb = sa_pair(transform)
    esp = out.encap(ipv4_udp(A4, B4, b"truncate me"))
    for n in range(len(esp)):
        assert reason(inb, esp[:n]) in ("malformed", "auth")
    s = inb.stats()
    assert s.malformed + s.auth_failures == len(esp)
    assert inb.decap(esp) == ipv4_udp(A4, B4, b"truncate me")


def test_oversized_and_wrong_spi() -> None:
    out, inb = sa_pair(T)
    assert reason(inb, b"\0\0\x10\0" + os.urandom(20000)) == "malformed"
    esp = out.encap(ipv4_udp(A4, B4, b"x"))
    assert reason(inb, b"\0\0\x20\0" + esp[4:]) == "malformed"  # not this SA's SPI
    assert inb.stats().malformed == 2


@pytest.mark.parametrize("transform", list(Transform))
def test_bad_icv_and_flipped_bits(transform: Transform) -> None:
    out, inb = sa_pair(transform)
    esp = out.encap(ipv4_udp(A4, B4, os.urandom(200)))
    for pos in (4, 9, 30, len(esp) // 2, len(esp) - 1):  # seq, IV, data, ICV
        bad = bytearray(esp)
        bad[pos] ^= 0x01
        assert reason(inb, bytes(bad)) == "auth"
    assert inb.stats().auth_failures == 5
    assert inb.decap(esp)  # the genuine packet still passes: failures never moved the window


def test_replayed_and_too_old() -> None:
    out, inb = sa_pair(T, window=64)
    packets = [out.encap(ipv4_udp(A4, B4, b"%d" % i)) for i in range(100)]
    assert inb.decap(packets[99])
    assert reason(inb, packets[99]) == "replay"
    assert inb.decap(packets[36])  # 100 - 37 = 63 < 64: inside the window
    assert reason(inb, packets[35]) == "replay"  # 64 behind: too old
    assert inb.stats().replay_drops == 2


def test_wrong_padding_bad_next_header_dummy_and_policy() -> None:
    enc, _ = keys(T)
    sa = inbound(enc)
    inner = ipv4_udp(A4, B4, b"abc")  # 31 bytes: 3 bytes of padding are due
    assert sa.decap(esp_gcm(enc, SPI, 1, inner)) == inner
    # RFC 4303 §2.4: padding bytes must be 1, 2, 3 ...
    assert reason(sa, esp_gcm(enc, SPI, 2, inner, trailer=b"\x01\x02\x09\x03\x04")) == "padding"
    # pad length longer than the payload
    assert reason(sa, esp_gcm(enc, SPI, 3, b"", trailer=b"\x00\x01\xff\x04")) == "padding"
    # next header says IPv6, payload is IPv4; next header TCP in tunnel mode
    assert reason(sa, esp_gcm(enc, SPI, 4, inner, nh=41)) == "malformed"
    assert reason(sa, esp_gcm(enc, SPI, 5, inner, nh=6)) == "malformed"
    # inner IPv4 total length larger than what arrived
    assert reason(sa, esp_gcm(enc, SPI, 6, inner[:-2])) == "malformed"
    # dummy packet (RFC 4303 §2.6): accepted, nothing delivered
    assert sa.decap(esp_gcm(enc, SPI, 7, b"\0" * 10, nh=59)) == b""
    # inner packets outside the selectors (B -> A direction, or elsewhere)
    assert reason(sa, esp_gcm(enc, SPI, 8, ipv4_udp(B4, A4, b"x"))) == "policy"
    assert reason(sa, esp_gcm(enc, SPI, 9, ipv6_udp(A6, "2001:2:0:9::1", b"x"), nh=41)) == "policy"
    assert sa.decap(esp_gcm(enc, SPI, 10, ipv6_udp(A6, B6, b"x"), nh=41)) == ipv6_udp(A6, B6, b"x")
    s = sa.stats()
    assert (s.bad_padding, s.malformed, s.policy_drops, s.packets) == (2, 3, 2, 3)


def test_unaligned_aead_ciphertext_is_accepted() -> None:
    """RFC 4303 §2.4 wants senders to end the ciphertext on a 4-byte boundary; a sender
    that pads to 1 byte (as old strongSwan libipsec did) is still authenticated fine."""
    enc, _ = keys(T)
    sa = inbound(enc)
    inner = ipv4_udp(A4, B4, b"abc")  # 31 bytes: aligned would need 3 bytes of padding
    assert sa.decap(esp_gcm(enc, SPI, 1, inner, trailer=b"\x01\x01\x04")) == inner


def test_trailing_tfc_padding_is_trimmed() -> None:
    """RFC 4303 §2.7: bytes after the inner packet (TFC padding) are not delivered."""
    enc, _ = keys(T)
    sa = inbound(enc)
    inner = ipv4_udp(A4, B4, b"tfc")
    assert sa.decap(esp_gcm(enc, SPI, 1, inner + b"\0" * 40)) == inner


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_crash(data: bytes) -> None:
    enc, _ = keys(T)
    sa = inbound(enc)
    spi_data = SPI.to_bytes(4, "big") + data
    for d in (data, spi_data):
        with pytest.raises(EspError) as e:
            sa.decap(d)
        assert e.value.reason in ("malformed", "auth", "replay")


def test_sequence_numbers_stop_at_2_32() -> None:
    out, inb = sa_pair(T, initial_seq=2**32 - 3)
    for _ in range(2):
        assert inb.decap(out.encap(ipv4_udp(A4, B4, b"last")))
    for _ in range(3):
        with pytest.raises(EspError, match="sequence numbers exhausted") as e:
            out.encap(ipv4_udp(A4, B4, b"one too many"))
        assert e.value.reason == "seq_exhausted"
    s = out.stats()
    assert s.exhausted and s.seq_exhausted == 3 and s.seq == 2**32 - 1 and s.packets == 2


def test_esn_sequence_numbers_stop_at_2_64() -> None:
    out, inb = sa_pair(Transform.CHACHA20POLY1305, esn=True, initial_seq=2**64 - 2)
    assert inb.decap(out.encap(ipv4_udp(A4, B4, b"last")))
    with pytest.raises(EspError, match="exhausted"):
        out.encap(ipv4_udp(A4, B4, b"no more"))
    assert out.stats().exhausted


def test_encap_refuses_non_ip_and_direction_misuse() -> None:
    out, inb = sa_pair(T)
    with pytest.raises(ValueError, match="needs an outbound SA"):
        inb.encap(b"x")
    with pytest.raises(ValueError, match="needs an inbound SA"):
        out.decap(b"x")
    with pytest.raises(EspError, match="malformed"):
        out.encap(b"")
    with pytest.raises(ValueError, match="initial_seq out of range"):
        EspSa(params(T, Direction.OUT, *keys(T)), initial_seq=2**32)


def test_params_repr_hides_keys() -> None:
    p = SaParams(
        spi=SPI,
        direction=Direction.IN,
        transform=T,
        enc_key=b"K" * 20,
        local_ts=NET_A,
        remote_ts=NET_B,
    )
    assert "KKKK" not in repr(p) and "enc_key" not in repr(p)


def test_batch_calls_round_trip() -> None:
    out, inb = sa_pair(Transform.AES256_SHA384)
    batch = PacketBatch(8, 100)
    inner = ipv4_udp(A4, B4, b"b" * 72)
    batch.fill(inner)
    out.encap_batch(batch)
    assert inb.decap(batch.packet(3)) == inner
    batch.fill(inner)
    out.encap_batch(batch)
    inb.decap_batch(batch)
    assert inb.stats().packets == 9


def test_close_frees_now() -> None:
    out, _ = sa_pair(T)
    with out:
        assert out.encap(ipv4_udp(A4, B4, b"x"))
    with pytest.raises(ValueError, match="closed"):
        out.encap(ipv4_udp(A4, B4, b"x"))
    out.close()
