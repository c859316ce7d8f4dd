"""``python -m bench`` (``make bench``): throughput through each tunnel, side by side.

For each tunnel (bench/tunnels/): two fresh namespaces joined by a veth, the tunnel up
between them, an iperf3 server on b's inner address; then iperf3 runs from a, each
``--time`` seconds, ``--runs`` times, for each measurement kind: TCP with 1 and 4 streams
(Gbit/s), UDP with 64- and 1400-byte payloads sent as fast as iperf3 can (thousands of
packets per second received). Per run it records the receiver's figure and the CPU seconds
the tunnel's processes used (utime + stime from /proc/<pid>/stat); per tunnel also the idle
ping RTT through it and the processes' peak RSS. Reported: median and spread (min..max) of
the runs, ratios against the first espfast tunnel, as JSON, a markdown table (also printed)
and a PNG chart in bench/results/.

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


# kind -> (column title, unit); the order is the table's.
KINDS: dict[str, tuple[str, str]] = {
    "tcp1": ("TCP 1 stream", "Gbit/s"),
    "tcp4": ("TCP 4 streams", "Gbit/s"),
    "udp64": ("UDP 64 B", "kpps"),
    "udp1400": ("UDP 1400 B", "kpps"),
}


@dataclass
class Run:
    value: float  # the receiver's figure: Gbit/s (TCP) or thousands of packets/s (UDP)
    cpu_s: float  # CPU seconds of the tunnel processes during the run
    gbytes: float  # data received, GB (10^9 bytes)
    lost: int  # TCP: retransmitted segments; UDP: datagrams lost


@dataclass
class Figure:
    """The runs of one (tunnel, kind) measurement, and their summary."""

    tunnel: str
    kind: str
    runs: list[Run] = field(default_factory=list)

    def summary(self) -> dict[str, float | None]:
        value = np.array([r.value for r in self.runs])
        cpu = np.array([r.cpu_s for r in self.runs])
        gbytes = np.array([r.gbytes for r in self.runs])
        out: dict[str, float | None] = {
            "median": float(np.median(value)),
            "min": float(value.min()),
            "max": float(value.max()),
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


def iperf3_run(hosts: TwoHosts, ep: Endpoints, kind: str, seconds: float) -> Run:
    args = ["-c", ep.inner_b, "-B", ep.inner_a, "-t", str(seconds), "-J"]
    if kind.startswith("tcp"):
        args += ["-P", kind.removeprefix("tcp")]
    else:
        args += ["-u", "-b", "0", "-l", kind.removeprefix("udp")]
    before = cpu_seconds(ep.pids)
    proc = hosts.a.run("iperf3", *args, check=False, timeout=seconds + 30)
    cpu = cpu_seconds(ep.pids) - before
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"iperf3 gave no report: {proc.stderr.strip()[:200]}") from None
    if "error" in report:
        raise RuntimeError(f"iperf3: {report['error']}")
    received = report["end"]["sum_received"]
    if kind.startswith("tcp"):
        value = received["bits_per_second"] / 1e9
        lost = int(report["end"].get("sum_sent", {}).get("retransmits", 0))
    else:
        lost = int(received["lost_packets"])
        value = (int(received["packets"]) - lost) / received["seconds"] / 1e3
    return Run(value, cpu, received["bytes"] / 1e9, lost)


def measure(
    tunnel: Tunnel, kinds: list[str], runs: int, seconds: float, progress: Progress
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
                for kind in kinds:
                    figure = Figure(tunnel.name, kind)
                    result.figures.append(figure)
                    for i in range(runs):
                        progress.show(f"{tunnel.name}: {KINDS[kind][0]}, run {i + 1}/{runs}")
                        figure.runs.append(iperf3_run(hosts, ep, kind, seconds))
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
    med, lo, hi = s["median"], s["min"], s["max"]
    assert med is not None and lo is not None and hi is not None
    return f"{med:.2f} ({lo:.2f}..{hi:.2f})"


def markdown(results: list[TunnelResult], meta: dict[str, Any]) -> str:
    kinds = [k for k in KINDS if any(f.kind == k for r in results for f in r.figures)]
    first = kinds[0] if kinds else "tcp1"
    base: dict[str, float | None] = {}  # the first espfast tunnel is the reference
    for r in results:
        if r.tunnel.startswith("espfast-") and not r.error and not base:
            base = {f.kind: f.summary()["median"] for f in r.figures}
    lines = [
        f"# Tunnel throughput, {meta['date']}",
        "",
        f"iperf3, {meta['seconds']} s per run, median of {meta['runs']} runs (min..max). "
        f"CPU = the tunnel processes' CPU seconds per run and Gbit/CPU-s = data moved per "
        f"tunnel CPU-second, both for {KINDS[first][0]}; the last column is the first "
        "espfast tunnel's figure over this one's.",
        "",
    ]
    head = ["tunnel"] + [f"{KINDS[k][0]} {KINDS[k][1]}" for k in kinds]
    head += ["CPU s", "Gbit/CPU-s", "ping ms", "peak RSS MiB"]
    if base:
        head.append(f"espfast / this ({KINDS[first][0]})")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for r in results:
        if r.error:
            lines.append(f"| {r.tunnel} | failed: {r.error} |")
            continue
        by = {f.kind: f.summary() for f in r.figures}
        row = [r.tunnel] + [fmt_figure(by[k]) if k in by else "-" for k in kinds]
        ref = by.get(first)
        row.append(f"{ref['cpu_s_median']:.2f}" if ref and r.processes else "-")
        gpc = ref["gbit_per_cpu_s"] if ref else None
        row.append(f"{gpc:.2f}" if gpc else "-")
        row.append(f"{r.ping_rtt_ms:.3f}" if r.ping_rtt_ms is not None else "-")
        row.append(f"{r.peak_rss_kib / 1024:.1f}" if r.peak_rss_kib else "-")
        if base:
            mine, theirs = base.get(first), ref["median"] if ref else None
            row.append(f"{mine / theirs:.2f}x" if mine and theirs else "-")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def chart(results: list[TunnelResult], path: Path) -> None:
    """One bar chart per measurement kind: medians, with the min..max spread as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in KINDS if any(f.kind == k for r in results for f in r.figures)]
    fig, axes = plt.subplots(len(kinds), 1, figsize=(9, 2.6 * len(kinds)), squeeze=False)
    for ax, kind in zip(axes[:, 0], kinds, strict=True):
        names, med, low, high = [], [], [], []
        for r in results:
            f = next((f for f in r.figures if f.kind == kind), None)
            if f is None:
                continue
            s = f.summary()
            assert s["median"] is not None and s["min"] is not None and s["max"] is not None
            names.append(r.tunnel)
            med.append(s["median"])
            low.append(s["median"] - s["min"])
            high.append(s["max"] - s["median"])
        ax.barh(names, med, xerr=[low, high], color="tab:blue", ecolor="black", capsize=3)
        ax.invert_yaxis()
        ax.set_xlabel(f"{KINDS[kind][0]}, {KINDS[kind][1]} (median, min..max)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


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
        "--measure",
        default=",".join(KINDS),
        help=f"what to measure, comma-separated (default {','.join(KINDS)})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 run of 2 s, TCP only, veth and espfast AES-GCM",
    )
    parser.add_argument("--list", action="store_true", help="list the tunnels and exit")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)

    if args.list:
        print("\n".join(TUNNELS))
        return 0
    if args.quick:
        args.runs, args.time = 1, 2.0
        if args.measure == ",".join(KINDS):
            args.measure = "tcp1,tcp4"
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
    kinds = [k.strip() for k in args.measure.split(",")]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise SystemExit(f"bench: unknown measurement {unknown[0]!r} (known: {', '.join(KINDS)})")
    progress = Progress(len(names) * len(kinds) * args.runs)
    results = [measure(TUNNELS[n](), kinds, args.runs, args.time, progress) for n in names]
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
                    {"kind": f.kind, **f.summary(), "runs": [asdict(x) for x in f.runs]}
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
    chart(results, args.out / f"bench-{stamp}.png")
    print(table)
    print(f"results: {args.out}/bench-{stamp}.json, .md and .png")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
