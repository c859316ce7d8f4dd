"""``python -m bench`` (``make bench``): TCP throughput through each tunnel, side by side.

For each tunnel (bench/tunnels/): two fresh namespaces joined by a veth, the tunnel up
between them, an iperf3 server on b's inner address; then single-stream and 4-stream
iperf3 TCP runs from a, each ``--time`` seconds, ``--runs`` times. Per run it records the
receiver's throughput and the CPU seconds the tunnel's processes used (utime + stime from
/proc/<pid>/stat); per tunnel also the idle ping RTT through it and the processes' peak RSS.
Reported: median and spread (min..max) of the runs, ratios against the first espfast
tunnel and plain veth, as JSON and a markdown table in bench/results/ (also printed).

Absolute figures move from run to run and machine to machine; compare the ratios measured
in one run. The machine is shared: keep runs short (``--quick`` for a smoke run).
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import json
import os
import re
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.tunnels import TUNNELS, Endpoints, Tunnel
from espfast.netns import Namespace, TwoHosts, have_root, wait_for, which

RESULTS = Path(__file__).resolve().parent / "results"
PURPOSE = "st"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    gbps: float  # receiver-side throughput, Gbit/s
    cpu_s: float  # CPU seconds of the tunnel processes during the run
    gbytes: float  # data received, GB (10^9 bytes)
    retransmits: int


@dataclass
class Figure:
    """The runs of one (tunnel, streams) measurement, and their summary."""

    tunnel: str
    streams: int
    runs: list[Run] = field(default_factory=list)

    def summary(self) -> dict[str, float | None]:
        gbps = np.array([r.gbps for r in self.runs])
        cpu = np.array([r.cpu_s for r in self.runs])
        gbytes = np.array([r.gbytes for r in self.runs])
        out: dict[str, float | None] = {
            "gbps_median": float(np.median(gbps)),
            "gbps_min": float(gbps.min()),
            "gbps_max": float(gbps.max()),
            "cpu_s_median": float(np.median(cpu)),
            "gbit_per_cpu_s": None,
        }
        if cpu.sum() > 0:
            out["gbit_per_cpu_s"] = float(np.median(gbytes * 8 / np.maximum(cpu, 1e-9)))
        return out


@dataclass
class TunnelResult:
    tunnel: str
    figures: list[Figure] = field(default_factory=list)
    ping_rtt_ms: float | None = None
    peak_rss_kib: int | None = None
    processes: int = 0  # how many tunnel processes (0: nothing to measure CPU of)
    error: str | None = None


class Progress:
    """One status line on stderr, rewritten in place on a terminal."""

    def __init__(self, total: int) -> None:
        self.total, self.done = total, 0
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()

    def show(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        line = f"[{self.done}/{self.total} runs, {elapsed:4.0f} s] {text}"
        if self.tty:
            sys.stderr.write("\r\x1b[K" + line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def step(self) -> None:
        self.done += 1

    def finish(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of the processes so far (fields 14 and 15 of /proc/<pid>/stat)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2 :].split()  # the name may contain spaces
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def peak_rss_kib(pids: list[int]) -> int | None:
    if not pids:
        return None
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            m = re.search(r"^VmHWM:\s+(\d+) kB", f.read(), re.M)
        total += int(m.group(1)) if m else 0
    return total


def ping_rtt_ms(ns: Namespace, dst: str) -> float | None:
    proc = ns.run("ping", "-c", "5", "-i", "0.2", "-W", "2", dst, check=False, timeout=15)
    m = re.search(r"= [\d.]+/([\d.]+)/", proc.stdout)
    return float(m.group(1)) if m else None


@contextlib.contextmanager
def iperf3_server(ns: Namespace, addr: str) -> Iterator[None]:
    proc = ns.popen("iperf3", "-s", "-B", addr, stdout=-3, stderr=-3)  # DEVNULL
    try:
        listening = wait_for(
            lambda: ":5201" in ns.run("ss", "-Htln", check=False).stdout, timeout=10
        )
        if not listening:
            raise RuntimeError(f"iperf3 server did not start in {ns.name}")
        yield
    finally:
        ns.stop(proc)


def iperf3_run(hosts: TwoHosts, ep: Endpoints, streams: int, seconds: float) -> Run:
    before = cpu_seconds(ep.pids)
    proc = hosts.a.run(
        "iperf3", "-c", ep.inner_b, "-B", ep.inner_a, "-t", str(seconds),
        "-P", str(streams), "-J",
        check=False, timeout=seconds + 30,
    )  # fmt: skip
    cpu = cpu_seconds(ep.pids) - before
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"iperf3 gave no report: {proc.stderr.strip()[:200]}") from None
    if "error" in report:
        raise RuntimeError(f"iperf3: {report['error']}")
    end = report["end"]
    return Run(
        gbps=end["sum_received"]["bits_per_second"] / 1e9,
        cpu_s=cpu,
        gbytes=end["sum_received"]["bytes"] / 1e9,
        retransmits=int(end.get("sum_sent", {}).get("retransmits", 0)),
    )


def measure(
    tunnel: Tunnel, streams: list[int], runs: int, seconds: float, progress: Progress
) -> TunnelResult:
    result = TunnelResult(tunnel.name)
    try:
        with TwoHosts.create(PURPOSE) as hosts, tunnel.up(hosts) as ep:
            progress.show(f"{tunnel.name}: checking the tunnel")
            reachable = wait_for(
                lambda: hosts.a.run("ping", "-c", "1", "-W", "1", ep.inner_b, check=False)
                .returncode == 0,
                timeout=15,
            )  # fmt: skip
            if not reachable:
                raise RuntimeError(f"{ep.inner_b} unreachable from {ep.inner_a}")
            result.ping_rtt_ms = ping_rtt_ms(hosts.a, ep.inner_b)
            with iperf3_server(hosts.b, ep.inner_b):
                for n in streams:
                    figure = Figure(tunnel.name, n)
                    result.figures.append(figure)
                    for i in range(runs):
                        progress.show(f"{tunnel.name}: {n}-stream TCP, run {i + 1}/{runs}")
                        figure.runs.append(iperf3_run(hosts, ep, n, seconds))
                        progress.step()
            result.peak_rss_kib = peak_rss_kib(ep.pids)
            result.processes = len(ep.pids)
    except Exception as e:  # one broken tunnel must not lose the others' results
        result.error = f"{type(e).__name__}: {e}"
        progress.show(f"{tunnel.name}: FAILED: {result.error}")
        if progress.tty:
            sys.stderr.write("\n")
    return result


def fmt_figure(s: dict[str, float | None]) -> str:
    med, lo, hi = s["gbps_median"], s["gbps_min"], s["gbps_max"]
    assert med is not None and lo is not None and hi is not None
    return f"{med:.2f} ({lo:.2f}..{hi:.2f})"


def markdown(results: list[TunnelResult], meta: dict[str, Any]) -> str:
    streams = sorted({f.streams for r in results for f in r.figures})
    base: dict[int, float | None] = {}  # the first espfast tunnel is the reference
    for r in results:
        if r.tunnel.startswith("espfast-") and not r.error and not base:
            base = {f.streams: f.summary()["gbps_median"] for f in r.figures}
    lines = [
        f"# Tunnel throughput, {meta['date']}",
        "",
        f"iperf3 TCP, {meta['seconds']} s per run, median of {meta['runs']} runs "
        "(min..max); CPU = the tunnel processes' CPU seconds per run (median); "
        "Gbit/CPU-s = data moved per tunnel CPU-second (1-stream).",
        "",
    ]
    head = ["tunnel"]
    head += [f"{n}-stream Gbit/s" for n in streams]
    head += ["CPU s (1-stream)", "Gbit/CPU-s", "ping ms", "peak RSS MiB"]
    if base:
        head.append("espfast / this (1-stream)")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for r in results:
        if r.error:
            lines.append(f"| {r.tunnel} | failed: {r.error} |")
            continue
        by = {f.streams: f.summary() for f in r.figures}
        row = [r.tunnel] + [fmt_figure(by[n]) if n in by else "-" for n in streams]
        first = by.get(min(by)) if by else None
        row.append(f"{first['cpu_s_median']:.2f}" if first and r.processes else "-")
        gpc = first["gbit_per_cpu_s"] if first else None
        row.append(f"{gpc:.2f}" if gpc else "-")
        row.append(f"{r.ping_rtt_ms:.3f}" if r.ping_rtt_ms is not None else "-")
        row.append(f"{r.peak_rss_kib / 1024:.1f}" if r.peak_rss_kib else "-")
        if base:
            mine = first["gbps_median"] if first else None
            ref = base.get(min(by)) if by else None
            row.append(f"{ref / mine:.2f}x" if ref and mine else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def select_tunnels(patterns: str) -> list[str]:
    names = []
    for pattern in patterns.split(","):
        found = [n for n in TUNNELS if fnmatch.fnmatchcase(n, pattern.strip())]
        if not found:
            raise SystemExit(f"bench: no tunnel matches {pattern!r} (known: {', '.join(TUNNELS)})")
        names += [n for n in found if n not in names]
    return names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "-t", "--tunnels", default="*", help="comma-separated names or globs (default: all)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument("--time", type=float, default=3.0, help="seconds per run (default 3)")
    parser.add_argument(
        "--streams", default="1,4", help="iperf3 parallel streams to measure (default 1,4)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 run of 2 s, veth and espfast AES-GCM"
    )
    parser.add_argument("--list", action="store_true", help="list the tunnels and exit")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)

    if args.list:
        print("\n".join(TUNNELS))
        return 0
    if args.quick:
        args.runs, args.time = 1, 2.0
        if args.tunnels == "*":
            args.tunnels = "veth,espfast-aes128gcm16"
    # SIGTERM unwinds like Ctrl-C: every namespace and process the run started goes away.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not have_root():
        print("bench: needs root (network namespaces, TUN)", file=sys.stderr)
        return 2
    if which("iperf3") is None:
        print("bench: needs iperf3 (apt-get install iperf3, or `make bench`)", file=sys.stderr)
        return 2
    names = select_tunnels(args.tunnels)
    streams = [int(s) for s in args.streams.split(",")]
    progress = Progress(len(names) * len(streams) * args.runs)
    results = [measure(TUNNELS[n](), streams, args.runs, args.time, progress) for n in names]
    progress.finish()

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runs": args.runs,
        "seconds": args.time,
        "cpus": os.cpu_count(),
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
    }
    data = {
        "meta": meta,
        "results": [
            {
                **{k: v for k, v in asdict(r).items() if k != "figures"},
                "figures": [
                    {"streams": f.streams, **f.summary(), "runs": [asdict(x) for x in f.runs]}
                    for f in r.figures
                ],
            }
            for r in results
        ],
    }
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(results, meta)
    (args.out / f"bench-{stamp}.json").write_text(json.dumps(data, indent=2) + "\n")
    (args.out / f"bench-{stamp}.md").write_text(table)
    print(table)
    print(f"results: {args.out}/bench-{stamp}.json and .md")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
