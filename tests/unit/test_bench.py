"""bench/: the summary statistics, the report table and the tunnel registry (no root needed)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import threads
from bench.__main__ import cpu_seconds, make_tunnel, select_tunnels
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
    paired,
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


def test_a_tunnel_named_twice_is_a_control_with_its_noise_floor() -> None:
    names = select_tunnels("veth,espfast-aes128gcm16,espfast-aes128gcm16,veth,espfast-aes128gcm16")
    assert names == [
        "veth",
        "espfast-aes128gcm16",
        "espfast-aes128gcm16#2",
        "veth#2",
        "espfast-aes128gcm16#3",
    ]
    assert select_tunnels("espfast-aes*gcm16,espfast-aes128gcm16") == [
        "espfast-aes128gcm16",
        "espfast-aes256gcm16",
        "espfast-aes128gcm16#2",
    ]
    assert make_tunnel("espfast-aes128gcm16#2").name == "espfast-aes128gcm16#2"
    one = TunnelResult(
        "espfast-aes128gcm16", [Figure("a", 1, [Run(2.0, 1, 1, 0), Run(1.0, 1, 1, 0)])]
    )
    two = TunnelResult(
        "espfast-aes128gcm16#2", [Figure("b", 1, [Run(2.0, 1, 1, 0), Run(1.1, 1, 1, 0)])]
    )
    table = markdown([one, two], {"date": "d", "seconds": 1, "runs": 2})
    assert "- espfast-aes128gcm16#2 vs espfast-aes128gcm16 (paired): 1-stream TCP 1.05x" in table
    assert "## Same tunnel twice" not in markdown([one], {"date": "d", "seconds": 1, "runs": 2})


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
    assert got["single-stream TCP, AES-GCM-128 vs wireguard-go"] == (8.0, True)
    assert got["64-byte UDP pps vs wireguard-go"] == (4.0, True)
    assert got["single-stream TCP as a share of veth"] == (0.4, True)
    assert got["idle ping RTT, wireguard-go's over ours"] == (4.0, True)
    assert got["4-stream TCP vs our single stream"] == (None, None)
    assert got["espfast up vs espfast static, single-stream TCP"] == (None, None)
    assert "## Targets (the project's goals)" in table and "issue" not in table
    assert "- single-stream TCP, AES-GCM-128 vs wireguard-go: 8.00x (goal 2.5x): met" in table


def test_targets_scaling_up_vs_static_and_chacha() -> None:
    esp = result("espfast-aes128gcm16", 4.0, 1.5, 200e3, 0.1)
    esp.figures.append(Figure("espfast-aes128gcm16", 4, [Run(5.0, 1.0, 2.0, 0)]))
    up = result("espfast-up-aes128gcm16", 3.6, 1.4, 200e3, 0.1)
    chacha = result("espfast-chacha20poly1305", 3.0, 1.0, 100e3, 0.1)
    peer = result("wireguard-go", 2.0, 0.2, 50e3, 0.05)
    got = {t.text: (t.value, t.met) for t in targets([esp, up, chacha, peer])}
    assert got["4-stream TCP vs our single stream"] == (pytest.approx(1.25), False)
    assert got["espfast up vs espfast static, single-stream TCP"] == (pytest.approx(0.9), False)
    assert got["single-stream TCP, ChaCha20-Poly1305 vs wireguard-go"] == (1.5, False)
    assert got["idle ping RTT, wireguard-go's over ours"] == (0.5, False)


def test_up_vs_static_and_scaling_pair_the_runs_of_one_round() -> None:
    static = TunnelResult(
        "espfast-aes128gcm16", [Figure("s", 1, [Run(2.0, 1, 1, 0), Run(4.0, 1, 1, 0)])]
    )
    up = TunnelResult(
        "espfast-up-aes128gcm16", [Figure("u", 1, [Run(1.0, 1, 1, 0), Run(4.0, 1, 1, 0)])]
    )
    # Round 1: 0.5, round 2: 1.0 -> sqrt(0.5); the ratio of the medians would be 2.5 / 3.
    assert paired(up, 1, static, 1) == pytest.approx(0.5**0.5)
    static.figures.append(Figure("s", 4, [Run(3.0, 1, 1, 0), Run(0.0, 1, 1, 0), Run(9.0, 1, 1, 0)]))
    # 4 streams against 1 in the same round; a failed (0) run and an unpaired one left out.
    assert paired(static, 4, static, 1) == pytest.approx(1.5)
    got = {t.text: t.value for t in targets([static, up])}
    assert got["espfast up vs espfast static, single-stream TCP"] == pytest.approx(0.5**0.5)
    assert got["4-stream TCP vs our single stream"] == pytest.approx(1.5)
    assert paired(None, 1, static, 1) is None and paired(up, 4, static, 1) is None


def test_goal_intervals_from_the_rounds() -> None:
    from bench.report import Target, interval, round_ratios

    def tcp(name: str, gbps: list[float], cpu: float = 1.0) -> TunnelResult:
        runs = [Run(g, cpu, 1.0 if g else 0.0, 0) for g in gbps]  # 1 GB a run, none if failed
        return TunnelResult(name, [Figure(name, 1, runs)])

    esp = tcp("espfast-aes128gcm16", [4.0, 6.0, 5.0, 3.0, 0.0], cpu=0.5)
    peer = tcp("wireguard-go", [2.0, 2.0, 2.5, 1.0, 1.0])
    # Round by round, the failed (0) run left out; per CPU-second: 1 GB in 0.5 s against 1 s.
    assert round_ratios(esp, 1, peer, 1) == [2.0, 3.0, 2.0, 3.0]
    assert round_ratios(esp, 1, peer, 1, per_cpu=True) == [2.0, 2.0, 2.0, 2.0]
    assert round_ratios(None, 1, peer, 1) == [] and interval([2.0, 3.0]) is None
    low, high = interval([2.0, 3.0, 2.0, 3.0])
    assert 2.0 <= low < high <= 3.0 + 1e-9  # inside the rounds' range
    assert interval([2.0, 2.0, 2.0]) == pytest.approx((2.0, 2.0))
    assert interval([2.0, 3.0, 2.5, 2.2]) == interval([2.0, 3.0, 2.5, 2.2])  # reproducible
    # The goal inside the interval: not settled, whichever side the value falls on.
    wide = Target("x vs y", 2.6, 2.5, [2.0, 3.0, 2.0, 3.0])
    assert wide.met is True and wide.settled is False
    assert "2.60x (goal 2.5x): met; 4 rounds 2.00..3.00x, 95 % interval" in wide.text_line()
    assert wide.text_line().endswith("not settled by this run")
    below = Target("x vs y", 1.0, 2.5, [1.0, 1.1, 0.9])
    assert below.met is False and below.settled is True
    assert below.text_line().endswith(": settled")
    assert Target("x", 1.0, 2.5, [1.0]).settled is None  # too few rounds: no interval
    assert Target("x", 1.0, 2.5).text_line() == "x: 1.00x (goal 2.5x): MISSED"
    assert Target("x", None, 2.5).text_line() == "x: not measured (goal 2.5x)"
    got = {t.text: t for t in targets([esp, peer])}
    assert got["single-stream TCP, AES-GCM-128 vs wireguard-go"].rounds == [2.0, 3.0, 2.0, 3.0]
    assert got["Gbit per tunnel CPU-second vs wireguard-go"].rounds == [2.0] * 4
    assert got["64-byte UDP pps vs wireguard-go"].rounds == []
    table = markdown([esp, peer], {"date": "d", "seconds": 1, "runs": 5})
    assert "95 % interval" in table and "not settled by this run" in table


def test_a_saved_run_reports_the_same_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.__main__ import main

    esp = result("espfast-aes128gcm16", 4.0, 1.5, 200e3, 0.1)
    esp.info = {"version": "espfast 0.1.0"}
    esp.peak_rss_kib = 2048
    peer = result("wireguard-go", 0.5, 0.2, 50e3, 0.4)
    broken = TunnelResult("openvpn", error="no route")
    meta = {"date": "d", "seconds": 1, "runs": 1}
    again = [TunnelResult.from_json(r.to_json()) for r in (esp, peer, broken)]
    assert again == [esp, peer, broken]
    saved = tmp_path / "bench-x.json"
    saved.write_text(json.dumps({"meta": meta, "results": [r.to_json() for r in (esp, peer)]}))
    assert main(["--report", str(saved)]) == 0
    assert capsys.readouterr().out == markdown([esp, peer], meta) + "\n"


def test_markdown_names_each_peers_version_and_offloads() -> None:
    peer = result("wireguard-go", 2.0, 0.2, 50e3, 0.05)
    peer.info = {"version": "wireguard-go v0.0.20250522", "offloads": "TUN TSO/GRO on: x"}
    table = markdown([peer], {"date": "d", "seconds": 1, "runs": 1})
    assert "- wireguard-go: version wireguard-go v0.0.20250522; offloads TUN TSO/GRO on" in table
    assert peer.to_json()["info"]["version"] == "wireguard-go v0.0.20250522"


def test_wireguard_binary_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench.tunnels import wireguard

    monkeypatch.setenv("WIREGUARD_GO", "/opt/wg/wireguard-go")
    assert wireguard.user_binary() == "/opt/wg/wireguard-go"
    monkeypatch.delenv("WIREGUARD_GO")
    assert wireguard.debian_binary() is None  # nothing else named: no second build


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


def test_profile_sorts_symbols_into_categories() -> None:
    from bench.profile import category

    assert category("aesni_gcm_encrypt", "libcrypto.so.3") == "crypto"
    assert category("0x0000000000241d95", "libcrypto.so.3") == "crypto"
    assert category("golang.org/x/crypto/chacha20poly1305.chacha20Poly1305Open", "wg") == "crypto"
    assert category("_copy_to_iter", "[kernel.kallsyms]") == "copies"
    assert category("sum32_avx2", "_dataplane.abi3.so") == "checksums"
    assert category("futex_wait", "[kernel.kallsyms]") == "locks and wake-ups"
    assert category("tcp_v4_rcv", "[kernel.kallsyms]") == "kernel network stack"
    assert category("ef_worker_main", "_dataplane.abi3.so") == "tunnel code"
    assert category("clear_page_erms", "[kernel.kallsyms]") == "kernel, other"


def test_profile_counts_and_table() -> None:
    from bench.profile import Profile, markdown, parse_stat

    counts = parse_stat("1000,,raw_syscalls:sys_enter,5,100.00,,\n50,,context-switches,5,100,,\n")
    assert counts == {"raw_syscalls:sys_enter": 1000, "context-switches": 50}
    p = Profile("espfast-aes128gcm16", 5.0, gbps=1.0, cpu_s=1.0, packets=1e5, counts=counts)
    p.shares = {"crypto": 0.4, "copies": 0.6}
    p.ceiling_ns = 2000.0
    table = markdown(p)
    assert "| crypto | 40.0 % | 4000 |" in table and "| **total** | 100 % | **10000** |" in table
    assert "0.010 system calls" in table and "| | 2000 |" in table


# ---- python -m bench roam (bench/roam.py) ----


def _arrivals(seqs: range, start: float, interval: float) -> list[tuple[int, float]]:
    return [(s, start + i * interval) for i, s in enumerate(seqs)]


def test_roam_gap_after_an_outage_and_the_datagrams_lost() -> None:
    from bench.roam import per_switch, switch_gap

    # 0..99 every 10 ms from t=0, the switch at 1.0 (just before 100 would be sent),
    # nothing until 130 arrives at 1.35, then every 10 ms.
    before = _arrivals(range(100), 0.0, 0.01)
    after = _arrivals(range(130, 400), 1.35, 0.01)
    arrivals = before + after
    assert switch_gap(arrivals, 0.995, 4.0, 0.01) == pytest.approx(0.355)
    (only,) = per_switch(arrivals, [0.995], 4.0, 0.01)
    assert only.lost == 30 and only.gap_s == pytest.approx(0.355)


def test_roam_gap_skips_what_was_queued_on_the_old_path() -> None:
    from bench.roam import switch_gap

    # Two datagrams still arrive right after the switch, then the silence.
    arrivals = [*_arrivals(range(50), 0.0, 0.01), (50, 0.502), (51, 0.503),
                *_arrivals(range(80, 90), 1.2, 0.01)]  # fmt: skip
    assert switch_gap(arrivals, 0.5, 1.3, 0.01) == pytest.approx(0.7)


def test_roam_no_outage_and_no_arrival() -> None:
    from bench.roam import per_switch, switch_gap

    arrivals = _arrivals(range(100), 0.0, 0.01)
    assert switch_gap(arrivals, 0.505, 1.0, 0.01) == pytest.approx(0.005)
    assert per_switch(arrivals, [0.505], 1.0, 0.01)[0].lost == 0
    assert switch_gap(arrivals, 1.5, 2.0, 0.01) is None  # the flow never came back


def test_roam_no_recovery_until_the_next_switch_counts_its_loss_once() -> None:
    from bench.roam import per_switch

    # Switch 1 at 1.0: silence (one queued datagram at 1.001) until switch 2 at 4.0 brings
    # the flow back at 4.02 from seq 400: 1..399 lost at switch 1, none at switch 2.
    arrivals = [*_arrivals(range(100), 0.0, 0.01), (100, 1.001),
                *_arrivals(range(400, 500), 4.02, 0.01)]  # fmt: skip
    first, second = per_switch(arrivals, [1.0, 4.0], 6.0, 0.01)
    assert first.gap_s is None and first.lost == 299
    assert second.gap_s == pytest.approx(0.02) and second.lost == 0


def test_roam_table_verdict_and_chart(tmp_path: Path) -> None:
    from bench.roam import RoamResult, Switch, chart, markdown, verdict

    def result(name: str, gaps: list[float | None], lost: int) -> RoamResult:
        switches = [Switch(g, lost) for g in gaps]
        return RoamResult(name, f"{name} 1.0", "how", switches, switches)

    meta = {"date": "today", "command": "python -m bench roam", "switches": 3,
            "dwell": 4.0, "interval": 0.005}  # fmt: skip
    good = [
        result("espfast", [0.1, 0.2, 0.3], 20),
        result("wireguard-go", [0.2, 0.2, 0.25], 40),
        result("openvpn", [0.5, None, 0.7], 100),
        RoamResult("broken", error="no binary"),
    ]
    table = markdown(good, meta)
    assert "| espfast | 200 (100..300) | 200 (100..300) | 20 (20..20) |" in table
    assert "600 (500..700), 1 never" in table
    assert "| broken | failed: no binary" in table
    assert "espfast 1.0" in table and "python -m bench roam" in table
    assert verdict(good).endswith("ratio 1.00: met")
    slow = [result("espfast", [1.5, 1.5, 1.5], 0), good[1]]
    assert verdict(slow).endswith("NOT met")
    # A switch without recovery counts as endless: wireguard-go's median is 250 ms here.
    lossy = result("wireguard-go", [None, 0.25, None, 0.01, 0.02], 0)
    assert verdict([good[0], lossy]).startswith(
        "target (espfast's gap <= 1.2x WireGuard's and < 1 s, worse direction's median): "
        "espfast 200 ms, wireguard-go 250 ms, ratio 0.80: met (wireguard-go did not come back"
    )
    assert "NOT met" in verdict([result("espfast", [None, None, 0.1], 0), good[1]])
    assert "not measured" in verdict(good[2:])
    chart(good, tmp_path / "roam.png")
    assert (tmp_path / "roam.png").stat().st_size > 1000
    from dataclasses import asdict

    from bench.roam import load

    (tmp_path / "r.json").write_text(json.dumps({"results": [asdict(r) for r in good]}))
    assert load(tmp_path / "r.json") == good


def _task(root: Path, pid: int, tid: int, name: str, run: int, wait: int, slices: int) -> None:
    d = root / str(pid) / "task" / str(tid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "schedstat").write_text(f"{run} {wait} {slices}\n")
    (d / "comm").write_text(name + "\n")


def test_threads_cpu_and_run_queue_wait_per_second(tmp_path: Path) -> None:
    _task(tmp_path, 7, 7, "python", 10**9, 0, 5)
    _task(tmp_path, 7, 8, "ef-tx0", 2 * 10**9, 10**9, 100)
    before = threads.snapshot([7, 99], tmp_path)  # 99: gone, left out
    _task(tmp_path, 7, 8, "ef-tx0", 3 * 10**9, 2 * 10**9, 300)
    _task(tmp_path, 7, 9, "ef-rx0", 10**9, 0, 1)  # new since: no figure
    uses = threads.usage(before, threads.snapshot([7], tmp_path), 2.0)
    assert uses == [
        threads.ThreadUse(7, "ef-tx0", 0.5, 0.5, 100.0),
        threads.ThreadUse(7, "python", 0.0, 0.0, 0.0),
    ]
    table = "\n".join(threads.markdown(uses, 1.96, 2))
    assert "1.96 of 2 CPUs busy" in table and "| 7 | ef-tx0 | 0.50 | 0.50 | 100 |" in table
    assert "python" not in table


def test_threads_machine_busy_cores(tmp_path: Path) -> None:
    hz = os.sysconf("SC_CLK_TCK")
    (tmp_path / "stat").write_text(f"cpu  {hz} 0 {hz} {hz} 0 0 0 0 0 0\ncpu0 1 1 1 1\n")
    before = threads.machine(tmp_path)
    (tmp_path / "stat").write_text(f"cpu  {4 * hz} 0 {2 * hz} {2 * hz} 0 0 0 0 0 0\n")
    # 2 s: 4 CPU-seconds of work (3 user + 1 system), 1 idle -> 2 CPUs busy
    assert threads.busy_cores(before, threads.machine(tmp_path), 2.0) == pytest.approx(2.0)
