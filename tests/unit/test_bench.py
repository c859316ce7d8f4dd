"""bench/: the summary statistics, the report table and the tunnel registry (no root needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.__main__ import (
    Figure,
    Run,
    TunnelResult,
    chart,
    cpu_seconds,
    markdown,
    select_tunnels,
)
from bench.tunnels import TUNNELS


def test_registry_has_veth_and_each_aead() -> None:
    for name in ("veth", "espfast-aes128gcm16", "espfast-aes256gcm16", "espfast-chacha20poly1305"):
        assert TUNNELS[name]().name == name


def test_select_tunnels_globs_and_rejects_unknown() -> None:
    assert select_tunnels("veth,espfast-aes*gcm16") == [
        "veth",
        "espfast-aes128gcm16",
        "espfast-aes256gcm16",
    ]
    with pytest.raises(SystemExit, match="no tunnel matches 'nope'"):
        select_tunnels("nope")


def test_summary_is_median_with_spread() -> None:
    f = Figure("x", "tcp1", [Run(1.0, 2.0, 1.0, 0), Run(3.0, 1.0, 2.0, 0), Run(2.0, 1.0, 4.0, 0)])
    s = f.summary()
    assert (s["median"], s["min"], s["max"]) == (2.0, 1.0, 3.0)
    assert s["cpu_s_median"] == 1.0
    assert s["gbit_per_cpu_s"] == 16.0  # median of 4, 16 and 32 Gbit per CPU-second


def test_summary_without_processes_has_no_cpu_ratio() -> None:
    assert Figure("veth", "tcp1", [Run(20.0, 0.0, 5.0, 0)]).summary()["gbit_per_cpu_s"] is None


def results() -> list[TunnelResult]:
    esp = TunnelResult(
        "espfast-aes128gcm16",
        [Figure("e", "tcp1", [Run(4.0, 1.0, 1.5, 0)]), Figure("e", "udp64", [Run(300.0, 1, 0, 9)])],
    )
    esp.processes, esp.peak_rss_kib, esp.ping_rtt_ms = 2, 20480, 0.1
    peer = TunnelResult(
        "wireguard-go",
        [Figure("w", "tcp1", [Run(0.5, 1.0, 0.2, 0)]), Figure("w", "udp64", [Run(100.0, 1, 0, 0)])],
    )
    peer.processes = 2
    broken = TunnelResult("openvpn", error="RuntimeError: no route")
    return [esp, peer, broken]


def test_markdown_table_with_ratio_and_a_failure() -> None:
    table = markdown(results(), {"date": "d", "seconds": 1, "runs": 1})
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()}
    assert "| TCP 1 stream Gbit/s | UDP 64 B kpps | CPU s |" in rows["tunnel"]
    assert (
        "| 4.00 (4.00..4.00) | 300.00 (300.00..300.00) | 1.00 | 12.00 | 0.100 | 20.0 | 1.00x |"
        in rows["espfast-aes128gcm16"]
    )
    assert rows["wireguard-go"].endswith("| 8.00x |")
    assert "failed: RuntimeError: no route" in rows["openvpn"]


def test_chart_is_a_png(tmp_path: Path) -> None:
    chart(results(), tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cpu_seconds_of_this_process_grows() -> None:
    before = cpu_seconds([os.getpid()])
    deadline = before + 0.05
    while cpu_seconds([os.getpid()]) < deadline:
        sum(range(10000))
    assert cpu_seconds([os.getpid()]) >= deadline
