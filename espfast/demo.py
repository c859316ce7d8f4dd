"""``espfast demo``: the main job on an embedded default, start to finish.

Two throw-away network namespaces joined by a veth pair (198.18.0.1 and 198.18.0.2), an
espfast tunnel between them, real traffic through it (ping over IPv4 and IPv6 inner
addresses, an iperf3 TCP run, the same run over the bare veth for scale), a look at the
wire (only ESP-in-UDP/4500 may cross the veth), and a short report. Everything it creates
is removed on exit, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from espfast import netns

INNER_A4, INNER_B4 = "198.19.1.1", "198.19.2.1"
INNER_A6, INNER_B6 = "2001:2:0:1::1", "2001:2:0:2::1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--transform", default="aes128gcm16", help="ESP transform (default aes128gcm16)"
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="length of each iperf3 run (default 3)"
    )


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def step(self, text: str) -> None:
        print(f"==> {text}", flush=True)

    def add(self, label: str, value: str) -> None:
        self.lines.append(f"  {label:<28} {value}")


def run(args: argparse.Namespace) -> int:
    if not netns.have_root():
        print("espfast demo: needs root (it creates network namespaces and TUN devices)")
        return 1
    for tool in ("ip", "iperf3", "tcpdump", "ping"):
        if netns.which(tool) is None:
            print(f"espfast demo: {tool} is not installed (make demo installs it)")
            return 1
    report = Report()
    try:
        _demo(args, report)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        print(f"espfast demo: FAILED: {exc}")
        return 1
    print("\nespfast demo report")
    print("\n".join(report.lines))
    return 0


def _demo(args: argparse.Namespace, report: Report) -> None:
    report.step("creating two network namespaces joined by a veth pair (198.18.0.1 <-> .2)")
    with netns.TwoHosts.create("demo") as hosts:
        report.add("namespaces", f"{hosts.a.name}, {hosts.b.name}")
        with _capture(hosts.a) as capture, _static_tunnel(hosts, args.transform, report) as stop:
            _traffic(hosts, args.seconds, report)
            counters = stop()
            report.step("checking what crossed the wire")
            kinds = capture()
        report.add("on the veth", ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
        if PLAINTEXT in kinds or "ESP-in-UDP/4500" not in kinds:
            raise RuntimeError(f"the veth did not carry only ESP-in-UDP: {kinds}")
        report.add("espfast counters (host a)", counters)
        report.step("the same TCP run over the bare veth, for scale")
        bare = _iperf(hosts, hosts.addr_b, args.seconds)
        report.add("TCP over the bare veth", f"{bare:.2f} Gbit/s")
        report.step("removing the namespaces")


@contextlib.contextmanager
def _static_tunnel(
    hosts: netns.TwoHosts, transform: str, report: Report
) -> Iterator[Callable[[], str]]:
    """``espfast static`` in each namespace with fresh random keys (manual keying)."""
    from espfast.static import pair_configs, start_in, write_private

    report.step(f"starting espfast static in both namespaces ({transform}, fresh random keys)")
    text_a, text_b = pair_configs(transform, outer=(hosts.addr_a, hosts.addr_b))
    with tempfile.TemporaryDirectory(prefix="espfast-demo-") as tmp:
        t0 = time.monotonic()
        a = start_in(hosts.a, write_private(Path(tmp) / "a.toml", text_a), "--json")
        b = start_in(hosts.b, write_private(Path(tmp) / "b.toml", text_b))
        report.add("tunnel up in", f"{(time.monotonic() - t0) * 1000:.0f} ms (static keys)")
        stopped = False

        def stop() -> str:
            nonlocal stopped
            stopped = True
            b.stop()
            status, out, err = a.stop()
            if status != 0:
                raise RuntimeError(f"espfast static exited {status}: {err.strip()}")
            from espfast.dataplane import Stats

            g = json.loads(out)["global"]
            drops = {k: v for k, v in g.items() if v and k not in Stats.NOT_DROPS}
            return f"{g['tx_packets']} packets out, {g['rx_packets']} in, drops: {drops or 'none'}"

        try:
            yield stop
        finally:
            if not stopped:
                b.stop()
                a.stop()


def _traffic(hosts: netns.TwoHosts, seconds: float, report: Report) -> None:
    report.step("ping through the tunnel (IPv4 and IPv6 inner addresses)")
    for label, dst in (("IPv4", INNER_B4), ("IPv6", INNER_B6)):
        out = hosts.a.run("ping", "-c", "5", "-i", "0.2", "-W", "2", dst, timeout=20).stdout
        rtt = re.search(r"= [\d.]+/([\d.]+)/", out)
        report.add(f"ping {label} {dst}", f"5/5 replies, avg {rtt.group(1) if rtt else '?'} ms")
    report.step(f"iperf3 TCP through the tunnel for {seconds:g} s")
    gbit = _iperf(hosts, INNER_B4, seconds)
    report.add("TCP through the tunnel", f"{gbit:.2f} Gbit/s (1 stream)")


def _iperf(hosts: netns.TwoHosts, dst: str, seconds: float) -> float:
    """One iperf3 TCP run a -> b; Gbit/s received."""
    server = hosts.b.popen(
        "iperf3", "-s", "-1", "-B", dst, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        listening = netns.wait_for(
            lambda: ":5201" in hosts.b.run("ss", "-Hltn", check=False).stdout, timeout=10
        )
        if not listening:
            raise RuntimeError("iperf3 server did not start")
        out = hosts.a.run(
            "iperf3", "-c", dst, "-t", f"{seconds:g}", "-J", timeout=seconds + 30
        ).stdout
        bits = json.loads(out)["end"]["sum_received"]["bits_per_second"]
        return float(bits) / 1e9
    finally:
        hosts.b.stop(server)


@contextlib.contextmanager
def _capture(ns: netns.Namespace) -> Iterator[Callable[[], dict[str, int]]]:
    """tcpdump on a's veth; the yielded function stops it and counts what it saw."""
    with tempfile.TemporaryDirectory(prefix="espfast-demo-pcap-") as tmp:
        pcap = Path(tmp) / "veth.pcap"
        proc = ns.popen(
            "tcpdump", "-Z", "root", "-i", "veth-a", "-n", "-s", "96", "-c", "2000",
            "-w", str(pcap), "ip or ip6", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)  # tcpdump needs a moment to attach

        def finish() -> dict[str, int]:
            ns.stop(proc)
            print(
                subprocess.run(
                    ["tcpdump", "-n", "-r", str(pcap)], capture_output=True, text=True
                ).stdout[:3000]
            )
            return _classify(pcap)

        try:
            yield finish
        finally:
            ns.stop(proc)


def _classify(pcap: Path) -> dict[str, int]:
    """Count captured packets: ESP-in-UDP/4500, inner (tunnel) addresses in the clear, and
    the rest (IPv6 neighbour discovery and multicast-listener chatter of the veth itself)."""
    out = subprocess.run(
        ["tcpdump", "-n", "-r", str(pcap)], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    kinds: dict[str, int] = {}
    for line in out.splitlines():
        if "198.19." in line or "2001:2:0:" in line:  # the inner networks
            kind = PLAINTEXT
        elif re.search(r"\.4500 > \S+\.4500: UDP-encap", line):
            kind = "ESP-in-UDP/4500"
        else:
            kind = "link-local housekeeping"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


PLAINTEXT = "inner packets in the clear"
