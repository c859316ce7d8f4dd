"""``python -m bench`` (``make bench``): every tunnel side by side, in one run.

For each tunnel (bench/tunnels/): two fresh namespaces joined by a veth, the tunnel up
between them, an iperf3 server on b's inner address; all tunnels up at once and their
runs interleaved (run 1 of each, then run 2 of each in reverse order, ...: the shared
machine's changing load falls on all alike; ``--sequential``: one tunnel after the
other); then, from a:
- the idle ping RTT through the tunnel (``--pings`` samples);
- single-stream and 4-stream iperf3 TCP, ``--time`` seconds each, ``--runs`` times: the
  receiver's throughput and the CPU seconds the tunnel's processes used (utime + stime
  from /proc/<pid>/stat), hence CPU seconds per GB and Gbit per CPU-second;
- iperf3 UDP at an unlimited rate with 64-byte payloads and with 1400-byte inner packets
  (1372-byte payloads: the tunnels' inner MTU is 1400), ``--udp-time`` seconds,
  ``--runs`` times: datagrams the tunnel delivered into b's IP input per second (an
  nftables counter: iperf3's own single-threaded receiver cannot keep up on a busy
  machine, even on plain veth) and the loss;
- the tunnel processes' peak RSS.
Reported: median and spread (min..max) of the runs, ratios of espfast AES-GCM-128 against
each peer and its share of plain veth, each peer's version and offloads, the project's
performance goals, as JSON, a markdown table and
a PNG chart in bench/results/ (the table also printed).

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
from dataclasses import dataclass
from pathlib import Path

from bench.report import (
    LARGE,
    SMALL,
    Figure,
    Run,
    TunnelResult,
    UdpFigure,
    UdpRun,
    chart,
    markdown,
)
from bench.tunnels import TUNNELS, Endpoints, Tunnel
from espfast.netns import Namespace, TwoHosts, have_root, wait_for, which

RESULTS = Path(__file__).resolve().parent / "results"
PURPOSE = "perf"
CLK_TCK = os.sysconf("SC_CLK_TCK")


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


def ping_samples_ms(ns: Namespace, dst: str, count: int) -> list[float]:
    """RTTs of `count` pings 0.2 s apart: the tunnel is idle between them."""
    proc = ns.run(
        "ping", "-c", str(count), "-i", "0.2", "-W", "2", dst,
        check=False, timeout=count * 0.2 + 15,
    )  # fmt: skip
    return [float(x) for x in re.findall(r"time=([\d.]+) ms", proc.stdout)]


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


def iperf3(hosts: TwoHosts, ep: Endpoints, seconds: float, *args: str) -> tuple[dict, float]:
    """One iperf3 client run from a: its JSON report's "end" and the tunnel's CPU seconds."""
    before = cpu_seconds(ep.pids)
    proc = hosts.a.run(
        "iperf3", "-c", ep.inner_b, "-B", ep.inner_a, "-t", str(seconds), "-J", *args,
        check=False, timeout=seconds + 30,
    )  # fmt: skip
    cpu = cpu_seconds(ep.pids) - before
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"iperf3 gave no report: {proc.stderr.strip()[:200]}") from None
    if "error" in report:
        raise RuntimeError(f"iperf3: {report['error']}")
    return report["end"], cpu


# An nftables counter of the UDP datagrams to iperf3's port that reach b's IP input:
# what the tunnel delivered, whether or not the single-threaded iperf3 receiver (which
# shares the CPUs with everything else) manages to read them all.
NFT_TABLE = "efbench"


def count_delivered(ns: Namespace) -> None:
    t = ("inet", NFT_TABLE)
    ns.run("nft", "add", "table", *t)
    ns.run("nft", "add", "counter", *t, "udp5201")
    ns.run("nft", "add", "chain", *t, "input", "{ type filter hook input priority 0; }")
    ns.run("nft", "add", "rule", *t, "input", "udp", "dport", "5201", "counter", "name", "udp5201")


def delivered(ns: Namespace) -> int:
    """Datagrams counted since the last call (the counter is reset)."""
    out = ns.run("nft", "reset", "counter", "inet", NFT_TABLE, "udp5201").stdout
    m = re.search(r"packets (\d+)", out)
    if not m:
        raise RuntimeError(f"no nftables counter in {out!r}")
    return int(m.group(1))


def udp_run(hosts: TwoHosts, ep: Endpoints, payload: int, seconds: float) -> UdpRun:
    delivered(hosts.b)
    end, cpu = iperf3(hosts, ep, seconds, "-u", "-b", "0", "-l", str(payload))
    got = delivered(hosts.b)
    sent, received = end["sum_sent"], end["sum_received"]
    duration = max(sent["seconds"], 1e-9)
    return UdpRun(
        pps=got / duration,
        sent_pps=sent["packets"] / duration,
        loss_pct=100.0 * max(0.0, 1 - got / max(sent["packets"], 1)),
        cpu_s=cpu,
        app_pps=received["bytes"] / payload / max(received["seconds"], 1e-9),
    )


def iperf3_run(hosts: TwoHosts, ep: Endpoints, streams: int, seconds: float) -> Run:
    end, cpu = iperf3(hosts, ep, seconds, "-P", str(streams))
    return Run(
        gbps=end["sum_received"]["bits_per_second"] / 1e9,
        cpu_s=cpu,
        gbytes=end["sum_received"]["bytes"] / 1e9,
        retransmits=int(end.get("sum_sent", {}).get("retransmits", 0)),
    )


@dataclass
class Plan:
    streams: list[int]
    payloads: list[int]
    runs: int
    seconds: float
    udp_seconds: float
    pings: int

    def steps(self) -> int:
        return (len(self.streams) + len(self.payloads)) * self.runs


@dataclass
class Live:
    """A tunnel that is up, its namespaces and what has been measured of it so far."""

    tunnel: Tunnel
    hosts: TwoHosts
    ep: Endpoints
    result: TunnelResult


def _failed(result: TunnelResult, e: Exception, progress: Progress) -> None:
    result.error = f"{type(e).__name__}: {e}"
    progress.show(f"{result.tunnel}: FAILED: {result.error}")
    if progress.tty:
        sys.stderr.write("\n")


def bring_up(
    stack: contextlib.ExitStack,
    tunnel: Tunnel,
    plan: Plan,
    progress: Progress,
    result: TunnelResult,
) -> Live | None:
    """The tunnel up in two fresh namespaces (until ``stack`` closes), checked, its idle
    ping RTT taken and an iperf3 server started on b; None (``result`` says why) when
    that fails."""
    inner = contextlib.ExitStack()
    try:
        hosts = inner.enter_context(TwoHosts.create(PURPOSE))
        ep = inner.enter_context(tunnel.up(hosts))
        result.info = dict(ep.info)
        progress.show(f"{tunnel.name}: checking the tunnel")
        reachable = wait_for(
            lambda: hosts.a.run("ping", "-c", "1", "-W", "1", ep.inner_b, check=False)
            .returncode == 0,
            timeout=15,
        )  # fmt: skip
        if not reachable:
            raise RuntimeError(f"{ep.inner_b} unreachable from {ep.inner_a}")
        progress.show(f"{tunnel.name}: idle ping RTT")
        result.ping_ms = ping_samples_ms(hosts.a, ep.inner_b, plan.pings)
        if plan.payloads:
            count_delivered(hosts.b)
        inner.enter_context(iperf3_server(hosts.b, ep.inner_b))
        result.figures = [Figure(tunnel.name, n) for n in plan.streams]
        result.udp = [UdpFigure(size) for size in plan.payloads]
    except Exception as e:  # one broken tunnel must not lose the others' results
        inner.close()
        _failed(result, e, progress)
        return None
    stack.push(inner.__exit__)
    return Live(tunnel, hosts, ep, result)


def measure_round(live: Live, plan: Plan, progress: Progress, i: int) -> None:
    """Run ``i`` of every figure of one tunnel (TCP at each stream count, then UDP)."""
    name = live.tunnel.name
    for figure in live.result.figures:
        progress.show(f"{name}: {figure.streams}-stream TCP, run {i + 1}/{plan.runs}")
        figure.runs.append(iperf3_run(live.hosts, live.ep, figure.streams, plan.seconds))
        progress.step()
    for udp in live.result.udp:
        progress.show(f"{name}: UDP {udp.payload} B, run {i + 1}/{plan.runs}")
        udp.runs.append(udp_run(live.hosts, live.ep, udp.payload, plan.udp_seconds))
        progress.step()


def measure(
    tunnels: list[Tunnel], plan: Plan, progress: Progress, sequential: bool = False
) -> list[TunnelResult]:
    """Every tunnel's figures. By default all tunnels are up at once (each in its own two
    namespaces, idle while another is measured) and the runs interleave — run 1 of every
    tunnel, then run 2 of every tunnel in reverse order, ... — so that a change in the
    machine's load (it is shared) falls on all of them alike and the ratios within a run
    stay fair (report.paired compares the runs of one round).
    ``sequential``: one tunnel at a time, all its runs in a row (less memory)."""
    groups = [[t] for t in tunnels] if sequential else [tunnels]
    results: dict[str, TunnelResult] = {}
    for group in groups:
        with contextlib.ExitStack() as stack:
            live = []
            for tunnel in group:
                results[tunnel.name] = TunnelResult(tunnel.name)
                up = bring_up(stack, tunnel, plan, progress, results[tunnel.name])
                if up is not None:
                    live.append(up)
            for i in range(plan.runs):
                # Every other round in reverse (A B, B A, ...): no tunnel always goes
                # first, i.e. straight after the setup or another tunnel's idle spell.
                for one in list(live if i % 2 == 0 else reversed(live)):
                    try:
                        measure_round(one, plan, progress, i)
                    except Exception as e:
                        _failed(one.result, e, progress)
                        live.remove(one)
            for one in live:
                one.result.peak_rss_kib = peak_rss_kib(one.ep.pids)
                one.result.processes = len(one.ep.pids)
    return [results[t.name] for t in tunnels]


def select_tunnels(patterns: str) -> list[str]:
    """The tunnels the patterns name, once each; a name given again exactly adds another
    instance of it, ``NAME#2`` (then ``#3``...): a control, whose ratio to the first can
    differ from 1 only by the machine's noise (report.control_ratios)."""
    names: list[str] = []
    for pattern in (p.strip() for p in patterns.split(",")):
        found = [n for n in TUNNELS if fnmatch.fnmatchcase(n, pattern)]
        if not found:
            raise SystemExit(f"bench: no tunnel matches {pattern!r} (known: {', '.join(TUNNELS)})")
        if found == [pattern] and pattern in names:
            names.append(f"{pattern}#{sum(n.split('#')[0] == pattern for n in names) + 1}")
        names += [n for n in found if n not in names]
    return names


def make_tunnel(name: str) -> Tunnel:
    """The tunnel ``name`` of :func:`select_tunnels` (``NAME#k``: another NAME)."""
    tunnel = TUNNELS[name.split("#")[0]]()
    tunnel.name = name
    return tunnel


def main(argv: list[str] | None = None) -> int:
    rest = sys.argv[1:] if argv is None else argv
    if rest[:1] == ["compare"]:  # IKEv2 / WireGuard / OpenVPN: bench/compare.py
        from bench.compare import main as compare

        return compare(rest[1:])
    if rest[:1] == ["roam"]:  # python -m bench roam: the mobile reconnect (bench/roam.py)
        from bench import roam

        return roam.main(rest[1:])
    if rest[:1] == ["rwload"]:  # python -m bench rwload: many road warriors (bench/rwload.py)
        from bench import rwload

        return rwload.main(rest[1:])
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument(
        "-t", "--tunnels", default="*", help="comma-separated names or globs (default: all)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (default 3)")
    parser.add_argument("--time", type=float, default=3.0, help="seconds per TCP run (default 3)")
    parser.add_argument(
        "--udp-time", type=float, default=2.0, help="seconds per UDP run (default 2)"
    )
    parser.add_argument(
        "--streams", default="1,4", help="iperf3 parallel TCP streams to measure (default 1,4)"
    )
    parser.add_argument(
        "--udp",
        default=f"{SMALL},{LARGE}",
        help=f"UDP payload sizes, empty for none (default {SMALL},{LARGE})",
    )
    parser.add_argument("--pings", type=int, default=10, help="idle ping samples (default 10)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 run of 2 s, veth and espfast AES-GCM"
    )
    parser.add_argument(
        "--sequential",
        action="store_true",
        help="one tunnel at a time, all its runs in a row (default: all tunnels up at once, "
        "runs interleaved)",
    )
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    parser.add_argument("--list", action="store_true", help="list the tunnels and exit")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument(
        "--report", type=Path, help="print the report of a saved run's JSON again and exit"
    )
    args = parser.parse_args(argv)

    if args.report:
        data = json.loads(args.report.read_text())
        print(markdown([TunnelResult.from_json(r) for r in data["results"]], data["meta"]))
        return 0
    if args.list:
        print("\n".join(TUNNELS))
        return 0
    if args.quick:
        args.runs, args.time, args.udp_time, args.pings = 1, 2.0, 1.0, 5
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
    plan = Plan(
        streams=[int(s) for s in args.streams.split(",") if s],
        payloads=[int(s) for s in args.udp.split(",") if s],
        runs=args.runs,
        seconds=args.time,
        udp_seconds=args.udp_time,
        pings=args.pings,
    )
    progress = Progress(len(names) * plan.steps())
    load_before = os.getloadavg()[0]
    results = measure([make_tunnel(n) for n in names], plan, progress, args.sequential)
    progress.finish()

    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "runs": args.runs,
        "seconds": args.time,
        "udp_seconds": args.udp_time,
        "cpus": os.cpu_count(),
        "load": os.getloadavg()[0],
        "load_before": load_before,
        "interleaved": not args.sequential,
        "command": " ".join(["python -m bench", *(argv if argv is not None else sys.argv[1:])]),
    }
    data = {"meta": meta, "results": [r.to_json() for r in results]}
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"bench-{stamp}"
    table = markdown(results, meta)
    base.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    base.with_suffix(".md").write_text(table)
    outputs = ".json, .md"
    if not args.no_chart:
        chart(results, base.with_suffix(".png"))
        outputs += ", .png"
    print(table)
    print(f"results: {base}{{{outputs}}}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
