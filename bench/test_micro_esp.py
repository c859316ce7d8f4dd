"""Micro-benchmarks of the hot functions, per transform, through the same C code the
dataplane workers run (one C call per batch of 64):

- ESP encap and decap of 64 inner packets of 64 bytes (per-packet cost) and of 1400
  bytes (the tunnels' inner MTU: crypto cost);
- the inbound replay window alone (check before decryption + update after, under the
  SA's spinlock): 64 in-order sequence numbers, and 64 reordered within the window;
- SA lookup (SPI -> SA, route -> SA) with 1 and 10,000 SAs: bench/test_micro_sa.py.

    .venv/bin/pytest bench/test_micro_esp.py bench/test_micro_sa.py --benchmark-enable

``make test`` runs them once each with --benchmark-disable, as tests. Per-packet cost is
the reported time / 64.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from typing import Any

import pytest

from espfast.dataplane import Direction, EspSa, PacketBatch, SaParams, Transform, U32Array

BATCH = 64
SIZES = (64, 1400)
NET = (ipaddress.ip_network("198.19.0.0/16"),)


def inner_packet(size: int) -> bytes:
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        size,
        1,
        0,
        64,
        17,
        0,
        bytes([198, 19, 1, 1]),
        bytes([198, 19, 2, 1]),
    )
    return hdr + os.urandom(size - len(hdr))


def make_sas(transform: Transform) -> tuple[EspSa, EspSa]:
    enc_len, integ_len = transform.key_lengths
    enc, integ = os.urandom(enc_len), os.urandom(integ_len)
    common: dict[str, Any] = {
        "spi": 0x4242,
        "transform": transform,
        "enc_key": enc,
        "integ_key": integ,
        "local_ts": NET,
        "remote_ts": NET,
        "esn": True,
    }
    return (
        EspSa(SaParams(direction=Direction.OUT, **common)),
        EspSa(SaParams(direction=Direction.IN, replay_window=4096, **common)),
    )


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("transform", list(Transform))
def test_encap_batch(benchmark: Any, transform: Transform, size: int) -> None:
    out, _ = make_sas(transform)
    batch = PacketBatch(BATCH, size)
    batch.fill(inner_packet(size))
    benchmark(out.encap_batch, batch)
    st = out.stats()
    assert st.packets >= BATCH and st.packets % BATCH == 0
    assert batch.lens[0] > size


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("transform", list(Transform))
def test_decap_batch(benchmark: Any, transform: Transform, size: int) -> None:
    out, inb = make_sas(transform)
    batch = PacketBatch(BATCH, size)
    pkt = inner_packet(size)

    def fresh() -> tuple[tuple[PacketBatch], dict[str, Any]]:
        # New sequence numbers every round, or the replay window would refuse them.
        batch.fill(pkt)
        out.encap_batch(batch)
        return (batch,), {}

    benchmark.pedantic(inb.decap_batch, setup=fresh, rounds=50 if benchmark.enabled else 1)
    st = inb.stats()
    assert st.packets > 0 and st.packets % BATCH == 0
    assert st.auth_failures == st.replay_drops == 0


@pytest.mark.parametrize("order", ["in-order", "reordered"])
def test_replay_window(benchmark: Any, order: str) -> None:
    """The window is the same code for every transform: measured once per ordering."""
    _, inb = make_sas(Transform.AES128GCM16)
    state = {"next": 1}
    perm = list(range(BATCH)) if order == "in-order" else [i ^ 5 for i in range(BATCH)]

    def fresh() -> tuple[tuple[U32Array], dict[str, Any]]:
        base = state["next"]
        state["next"] += BATCH
        return (U32Array([base + i for i in perm]),), {}

    accepted: list[int] = []
    benchmark.pedantic(
        lambda seqs: accepted.append(inb.replay_batch(seqs)),
        setup=fresh,
        rounds=200 if benchmark.enabled else 1,
    )
    assert accepted and all(a == BATCH for a in accepted)
    # The same numbers again: every one refused.
    assert inb.replay_batch(U32Array([state["next"] - BATCH + i for i in perm])) == 0
    assert inb.stats().replay_drops == BATCH
