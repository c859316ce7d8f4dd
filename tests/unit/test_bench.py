"""bench/: the summary statistics, the report table and the tunnel registry (no root needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.__main__ import cpu_seconds, select_tunnels
from bench.report import (
    LARGE,
    SMALL,
    Figure,
    Run,
    Spread,
    TunnelResult,
    UdpFigure,
    UdpRun,
    chart,
    markdown,
    ratios,
    targets,
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
    f = Figure("x", 1, [Run(1.0, 2.0, 1.0, 0), Run(3.0, 1.0, 2.0, 0), Run(2.0, 1.0, 4.0, 0)])
    s = f.summary()
    assert (s["gbps_median"], s["gbps_min"], s["gbps_max"]) == (2.0, 1.0, 3.0)
    assert s["cpu_s_median"] == 1.0
    assert s["gbit_per_cpu_s"] == 16.0  # median of 4, 16 and 32 Gbit per CPU-second


def test_summary_without_processes_has_no_cpu_ratio() -> None:
    assert Figure("veth", 1, [Run(20.0, 0.0, 5.0, 0)]).summary()["gbit_per_cpu_s"] is None


def result(name: str, gbps: float, gbytes: float, pps: float, ping: float) -> TunnelResult:
    r = TunnelResult(name, [Figure(name, 1, [Run(gbps, 1.0, gbytes, 0)])])
    r.udp = [UdpFigure(SMALL, [UdpRun(pps, 2 * pps, 50.0, 1.0)])]
    r.ping_ms = [ping, ping / 2, ping * 2]
    r.processes = 2
    return r


def test_summary_cpu_seconds_per_gigabyte() -> None:
    f = Figure("x", 1, [Run(1.0, 2.0, 1.0, 0), Run(1.0, 1.0, 4.0, 0), Run(1.0, 3.0, 1.0, 0)])
    assert f.summary()["cpu_s_per_gb"] == 2.0  # median of 2, 0.25 and 3


def test_udp_summary_and_spread() -> None:
    u = UdpFigure(LARGE, [UdpRun(10.0, 20.0, 50.0, 1.0), UdpRun(30.0, 30.0, 0.0, 1.0)])
    s = u.summary()
    assert (s["pps_median"], s["pps_min"], s["pps_max"]) == (20.0, 10.0, 30.0)
    assert s["loss_pct_median"] == 25.0
    assert Spread.of([]) is None
    assert Spread.of([3.0, 1.0, 2.0]) == Spread(2.0, 1.0, 3.0)


def test_markdown_table_ratios_targets_and_a_failure() -> None:
    esp = result("espfast-aes128gcm16", 4.0, 1.5, 200e3, 0.1)
    esp.peak_rss_kib = 20480
    peer = result("wireguard-go", 0.5, 0.2, 50e3, 0.4)
    veth = TunnelResult("veth", [Figure("v", 1, [Run(10.0, 0.0, 5.0, 0)])])
    broken = TunnelResult("openvpn", error="RuntimeError: no route")
    table = markdown([veth, esp, peer, broken], {"date": "d", "seconds": 1, "runs": 1})
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()}
    assert (
        "| 4.00 (4.00..4.00) | 200 (200..200) (50) | 0.67 | 12.00 |" in rows["espfast-aes128gcm16"]
    )
    assert "| 0.100 (0.050..0.200) | 20.0 |" in rows["espfast-aes128gcm16"]
    assert "failed: RuntimeError: no route" in rows["openvpn"]
    lines = ratios([veth, esp, peer, broken])
    assert "espfast-aes128gcm16 is at veth: TCP 1-stream 40%" in lines[0]
    assert lines[1].startswith("espfast-aes128gcm16 vs wireguard-go: TCP 1-stream 8.00x")
    assert "UDP pps 64 B 4.00x" in lines[1] and "ping RTT 4.00x" in lines[1]
    got = {t.text: (t.value, t.met) for t in targets([veth, esp, peer])}
    assert got["single-stream TCP vs wireguard-go"] == (8.0, True)
    assert got["64-byte UDP pps vs wireguard-go"] == (4.0, True)
    assert got["single-stream TCP as a share of veth"] == (0.4, True)
    assert got["single-stream TCP vs strongswan-libipsec"] == (None, None)
    assert "- single-stream TCP vs wireguard-go: 8.00x (goal 7x): met" in table


def test_targets_missed_and_no_reference() -> None:
    esp = result("espfast-aes128gcm16", 1.0, 1.0, 10e3, 0.1)
    peer = result("wireguard-go", 0.5, 0.2, 50e3, 0.4)
    got = {t.text: t.met for t in targets([esp, peer])}
    assert got["64-byte UDP pps vs wireguard-go"] is False
    assert ratios([peer]) == ["(no ratios: espfast-aes128gcm16 did not run)"]


def test_chart_writes_a_png(tmp_path: Path) -> None:
    esp = result("espfast-aes128gcm16", 4.0, 1.5, 200e3, 0.1)
    broken = TunnelResult("openvpn", error="x")
    chart([esp, broken], tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cpu_seconds_of_this_process_grows() -> None:
    before = cpu_seconds([os.getpid()])
    deadline = before + 0.05
    while cpu_seconds([os.getpid()]) < deadline:
        sum(range(10000))
    assert cpu_seconds([os.getpid()]) >= deadline
