"""Micro-benchmarks: the per-packet cost with 1 and with 10,000 SAs installed, and the
memory an idle SA takes.

    .venv/bin/pytest bench/test_micro_sa.py --benchmark-enable

- ``test_find_spi``: 64 inbound SPI lookups (the RX workers' SPI -> SA hash), SPIs spread
  over the whole table;
- ``test_encap_routed``: 64 inner packets, each to a different destination spread over the
  installed SAs, routed to their outbound SA by longest prefix (each SA's remote traffic
  selector is its own /32) and sealed with AES-GCM-128 — the TX workers' path without I/O.

Per-packet cost = reported time / 64; compare the 1-SA and 10,000-SA rows (they should be
the same within noise: both lookups are hashes). ``test_memory_per_idle_sa`` installs
10,000 SA pairs and reports the C heap they take per SA (in the benchmark's
extra_info and on stdout with -s). ``make test`` runs all of them once as tests.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from espfast.dataplane import (
    Dataplane,
    Direction,
    PacketBatch,
    SaParams,
    Transform,
    U32Array,
    heap_in_use,
)

BATCH = 64
SIZE = 1400
LOCAL = (ipaddress.ip_network("198.18.0.0/15"),)
KEY = bytes(range(20))  # AES-128 key || salt; a benchmark, not a secret


def dst_of(i: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address("198.19.0.0") + i


def inner_packet(dst: ipaddress.IPv4Address) -> bytes:
    hdr = bytes([0x45, 0, SIZE >> 8, SIZE & 0xFF, 0, 1, 0, 0, 64, 17, 0, 0])
    return hdr + bytes([198, 18, 0, 1]) + dst.packed + bytes(SIZE - 20)


def sa_pair(i: int, workers: int = 1) -> tuple[SaParams, SaParams]:
    common: dict[str, Any] = {
        "transform": Transform.AES128GCM16,
        "enc_key": KEY,
        "local_ts": LOCAL,
        "remote_ts": (ipaddress.ip_network(f"{dst_of(i)}/32"),),
    }
    return (
        SaParams(spi=0x10000 + i, direction=Direction.IN, **common),
        SaParams(spi=0x10000 + i, direction=Direction.OUT, peer=("127.0.0.1", 4500), **common),
    )


@pytest.fixture
def dataplane() -> Iterator[Dataplane]:
    tun, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    try:
        with Dataplane(tun.fileno(), udp) as dp:
            yield dp
    finally:
        for s in (tun, other, udp):
            s.close()


def install(dp: Dataplane, n: int) -> None:
    for i in range(n):
        for sa in sa_pair(i):
            dp.add_sa(sa)


def spread(n: int) -> list[int]:
    """BATCH indexes spread over 0..n-1."""
    return [(k * 7919) % n for k in range(BATCH)]


@pytest.mark.parametrize("installed", [1, 10_000])
def test_find_spi(benchmark: Any, dataplane: Dataplane, installed: int) -> None:
    install(dataplane, installed)
    spis = U32Array([0x10000 + i for i in spread(installed)])
    assert benchmark(dataplane.find_spis, spis) == BATCH
    missing = U32Array([0x10000 + installed + k for k in range(BATCH)])
    assert dataplane.find_spis(missing) == 0


@pytest.mark.parametrize("installed", [1, 10_000])
def test_encap_routed(benchmark: Any, dataplane: Dataplane, installed: int) -> None:
    install(dataplane, installed)
    batch = PacketBatch(BATCH, SIZE)
    packets = [inner_packet(dst_of(i)) for i in spread(installed)]

    def refill() -> tuple[tuple[PacketBatch], dict[str, Any]]:
        for k, p in enumerate(packets):  # sealing is in place: fresh plaintext each round
            batch.set(k, p)
        return (batch,), {}

    benchmark.pedantic(dataplane.encap_batch, setup=refill, rounds=200 if benchmark.enabled else 1)
    refill()
    assert dataplane.encap_batch(batch) == BATCH
    assert all(batch.lens[k] > SIZE for k in range(BATCH))
    # Each packet went through the SA of its own destination.
    for k, i in enumerate(spread(installed)):
        assert batch.packet(k)[:4] == (0x10000 + i).to_bytes(4, "big")
    # A destination no SA covers is not sealed.
    batch.set(0, inner_packet(dst_of(installed)))
    assert dataplane.encap_batch(batch) == 0 or batch.lens[0] == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_memory_per_idle_sa(benchmark: Any, workers: int, capsys: Any) -> None:
    """C heap per installed SA (one direction: the SA, its keyed contexts for each
    worker, its selectors and route, a 1024-packet replay window inbound), from glibc's
    allocator statistics. Reported in extra_info and printed, not held to a figure."""
    tun, other = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    n = 10_000
    pairs = [sa_pair(i) for i in range(n)]  # Python objects made before measuring
    with tun, other, udp, Dataplane(tun.fileno(), udp, workers=workers) as dp:
        before = heap_in_use()
        for inbound, outbound in pairs:
            dp.add_sa(inbound)
            dp.add_sa(outbound)
        per_sa = (heap_in_use() - before) / (2 * n)
        benchmark.extra_info["bytes_per_idle_sa"] = per_sa
        benchmark.extra_info["workers"] = workers
        with capsys.disabled():
            print(
                f"\n{workers} worker(s): {per_sa:.0f} bytes of C heap per idle SA (one direction)"
            )
        spis = U32Array([0x10000 + i for i in spread(n)])
        assert benchmark(dp.find_spis, spis) == BATCH
    assert per_sa > 0


def test_lookup_calls_refuse_a_running_dataplane(dataplane: Dataplane) -> None:
    install(dataplane, 1)
    dataplane.start()
    try:
        with pytest.raises(ValueError, match="workers stopped"):
            dataplane.encap_batch(PacketBatch(1, SIZE))
        with pytest.raises(ValueError, match="workers stopped"):
            dataplane.find_spis(U32Array([0x10000]))
    finally:
        dataplane.stop()
    assert dataplane.find_spis(U32Array([0x10000])) == 1
