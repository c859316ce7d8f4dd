"""Micro-benchmarks: ESP encap and decap of a batch of 64 packets of 1400 bytes, per
transform, through the same C code the dataplane workers run (one C call per batch).

    .venv/bin/pytest bench/test_micro_esp.py --benchmark-enable

``make test`` runs them once each with --benchmark-disable, as tests. Per-packet cost is
the reported time / 64.
"""

from __future__ import annotations

import ipaddress
import os
import struct
from typing import Any

import pytest

from espfast.dataplane import Direction, EspSa, PacketBatch, SaParams, Transform

BATCH = 64
SIZE = 1400
NET = (ipaddress.ip_network("198.19.0.0/16"),)


def inner_packet() -> bytes:
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        SIZE,
        1,
        0,
        64,
        17,
        0,
        bytes([198, 19, 1, 1]),
        bytes([198, 19, 2, 1]),
    )
    return hdr + os.urandom(SIZE - len(hdr))


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


@pytest.mark.parametrize("transform", list(Transform))
def test_encap_batch(benchmark: Any, transform: Transform) -> None:
    out, _ = make_sas(transform)
    batch = PacketBatch(BATCH, SIZE)
    batch.fill(inner_packet())
    benchmark(out.encap_batch, batch)
    st = out.stats()
    assert st.packets >= BATCH and st.packets % BATCH == 0
    assert batch.lens[0] > SIZE


@pytest.mark.parametrize("transform", list(Transform))
def test_decap_batch(benchmark: Any, transform: Transform) -> None:
    out, inb = make_sas(transform)
    batch = PacketBatch(BATCH, SIZE)
    pkt = inner_packet()

    def fresh() -> tuple[tuple[PacketBatch], dict[str, Any]]:
        # New sequence numbers every round, or the replay window would refuse them.
        batch.fill(pkt)
        out.encap_batch(batch)
        return (batch,), {}

    benchmark.pedantic(inb.decap_batch, setup=fresh, rounds=50 if benchmark.enabled else 1)
    st = inb.stats()
    assert st.packets > 0 and st.packets % BATCH == 0
    assert st.auth_failures == st.replay_drops == 0
