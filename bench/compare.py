"""``python -m bench compare``: espfast (``espfast up``, IKEv2), wireguard-go and OpenVPN
(UDP) side by side, the figures of the usual IKEv2 / WireGuard / OpenVPN comparison
table measured here, in one run of a few minutes.

For each tunnel, in fresh namespaces ef-cmp-<random> (one tunnel after the other):
- handshake, counted on the wire: tcpdump on b's veth while the tunnel comes up, with
  a ping loop (every 10 ms) from a started together with it. Round trips: flights of
  handshake packets (IKE_SA_INIT/IKE_AUTH; WireGuard initiation/response/cookie;
  OpenVPN's control and ACK packets) from the side that sent the first one, each
  answered by the other side. Time to the first packet: from starting the tunnel's
  programs (both ends, configuration included) to the first data packet (ESP;
  WireGuard transport data; OpenVPN P_DATA) on the wire; and from the first handshake
  packet to that data packet (the protocol's part, without the programs' start-up);
- single-stream iperf3 TCP throughput (``--runs`` x ``--time`` s, bench/__main__.py);
- idle cost, a battery proxy: no traffic for ``--idle-seconds`` (60) with the liveness
  checks each tunnel is normally run with: espfast dpd_delay 30 (its default; NAT
  keepalives are sent only from behind a NAT, and there is none here), WireGuard
  persistent-keepalive 25 on a, OpenVPN ``--ping 10`` at both ends. CPU seconds
  (utime + stime, /proc/<pid>/stat) and wake-ups (voluntary + nonvoluntary context
  switches of every thread, /proc/<pid>/task/*/status) of both ends' processes, per
  minute;
- mobile reconnect: from the newest bench/results/roam-*.json (``python -m bench roam``)
  when there is one; until then the row says so.
Results: JSON, a markdown table (with each tunnel's version) and a PNG chart in
bench/results/compare-<time>.*.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.__main__ import RESULTS, cpu_seconds, iperf3_run, iperf3_server
from bench.charon_handshake import capture
from bench.tunnels import INNER_A, Endpoints, Tunnel
from espfast.netns import Namespace, TwoHosts, have_root, which

PURPOSE = "cmp"
IKE_SA_INIT, IKE_AUTH = 34, 35
WG_HANDSHAKE, WG_DATA = (1, 2, 3), 4
OVPN_DATA = (6, 9)  # P_DATA_V1, P_DATA_V2 (the opcode is the first byte's top 5 bits)
PING_INTERVAL = 0.01
UP_TIMEOUT = 30.0

IDLE_NOTE = {
    "ikev2": "DPD every 30 s (dpd_delay default; NAT keepalive only behind a NAT)",
    "wireguard": "persistent-keepalive 25 on a",
    "openvpn": "--ping 10 at both ends",
}


@dataclass(frozen=True)
class Packet:
    """One captured UDP datagram: when, who sent it, its ports and payload."""

    time: float
    src: str
    sport: int
    dport: int
    payload: bytes


def classify(protocol: str, pkt: Packet) -> str | None:
    """\"handshake\", \"data\" or None (anything else) for a datagram of ``protocol``."""
    data = pkt.payload
    if protocol == "ikev2":
        if 4500 in (pkt.sport, pkt.dport):
            if len(data) >= 4 and data[:4] != bytes(4):
                return "data"  # ESP (a non-zero SPI), RFC 3948
            data = data[4:]
        elif 500 not in (pkt.sport, pkt.dport):
            return None
        if len(data) >= 28 and data[18] in (IKE_SA_INIT, IKE_AUTH):
            return "handshake"
        return None
    if not data:
        return None
    if protocol == "wireguard":
        if data[0] in WG_HANDSHAKE:
            return "handshake"
        return "data" if data[0] == WG_DATA else None
    if protocol == "openvpn":
        return "data" if data[0] >> 3 in OVPN_DATA else "handshake"
    raise ValueError(f"unknown protocol {protocol!r}")


def round_trips(handshake: Sequence[Packet]) -> int:
    """Request/response round trips in the handshake packets (in capture order): the
    flights from the side that sent the first packet that the other side answered."""
    if not handshake:
        return 0
    initiator = handshake[0].src
    trips, asked = 0, False
    for pkt in handshake:
        if pkt.src == initiator:
            asked = True
        elif asked:
            trips, asked = trips + 1, False
    return trips


@dataclass
class Handshake:
    round_trips: int
    packets: int  # handshake packets, both directions
    first_packet_ms: float | None  # tunnel started -> first data packet on the wire
    handshake_ms: float | None  # first handshake packet -> first data packet


def handshake_figures(protocol: str, packets: Sequence[Packet], started: float) -> Handshake:
    """The handshake of the capture (``started``: the wall-clock time the tunnel's
    programs were started, as the capture's timestamps)."""
    kinds = [(p, classify(protocol, p)) for p in packets]
    data = [p for p, k in kinds if k == "data"]
    first_data = data[0].time if data else None
    # What comes after the first data packet is rekeying or late retransmission.
    hs = [p for p, k in kinds if k == "handshake" and (first_data is None or p.time <= first_data)]
    return Handshake(
        round_trips=round_trips(hs),
        packets=len(hs),
        first_packet_ms=None if first_data is None else (first_data - started) * 1000,
        handshake_ms=(first_data - hs[0].time) * 1000 if hs and first_data else None,
    )


@dataclass
class Idle:
    seconds: float
    cpu_s: float
    wakeups: int

    def cpu_ms_per_min(self) -> float:
        return self.cpu_s * 1000 * 60 / self.seconds

    def wakeups_per_min(self) -> float:
        return self.wakeups * 60 / self.seconds


@dataclass
class Result:
    tunnel: str
    protocol: str
    version: str = ""
    gbps: list[float] = field(default_factory=list)
    handshake: Handshake | None = None
    idle: Idle | None = None
    roam: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _median(values: Sequence[float]) -> str:
    if not values:
        return "-"
    med = statistics.median(values)
    return f"{med:.2f} ({min(values):.2f}..{max(values):.2f})" if len(values) > 1 else f"{med:.2f}"


def _opt(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


ROAM_ROW = "mobile reconnect (`python -m bench roam`)"


def rows(results: Sequence[Result]) -> list[tuple[str, list[str]]]:
    """The table's rows: (figure, one cell per tunnel)."""

    def cells(fn: Any) -> list[str]:
        return [("failed" if r.error else fn(r)) for r in results]

    def idle(fn: Callable[[Idle], float], fmt: str) -> list[str]:
        return cells(lambda r: _opt(fn(r.idle) if r.idle else None, fmt))

    def hs(name: str, fmt: str) -> list[str]:
        return cells(lambda r: _opt(getattr(r.handshake, name) if r.handshake else None, fmt))

    return [
        ("protocol", [r.protocol for r in results]),
        ("TCP 1-stream, Gbit/s (median, min..max)", cells(lambda r: _median(r.gbps))),
        ("handshake round trips", hs("round_trips", "d")),
        ("handshake packets", hs("packets", "d")),
        ("first handshake packet to first data packet, ms", hs("handshake_ms", ".0f")),
        ("start to first packet through the tunnel, ms", hs("first_packet_ms", ".0f")),
        (ROAM_ROW, [r.roam or "pending: no roam result yet" for r in results]),
        ("idle CPU, ms per minute", idle(Idle.cpu_ms_per_min, ".1f")),
        ("idle wake-ups per minute", idle(Idle.wakeups_per_min, ".0f")),
        ("idle liveness checks", [IDLE_NOTE[r.protocol] for r in results]),
    ]  # fmt: skip


def markdown(results: Sequence[Result], meta: dict[str, Any]) -> str:
    head = "| | " + " | ".join(r.tunnel for r in results) + " |"
    lines = [
        f"IKEv2 / WireGuard / OpenVPN, {meta['date']}, {meta['cpus']} CPUs, load "
        f"{meta['load_before']:.1f} before, {meta['load']:.1f} after; "
        f"`{meta['command']}`",
        "",
        head,
        "|" + "---|" * (len(results) + 1),
    ]
    lines += [f"| {name} | " + " | ".join(cells) + " |" for name, cells in rows(results)]
    lines += ["", "Versions:"]
    lines += [f"- {r.tunnel}: {r.version or '?'}" for r in results]
    lines += [f"- {r.tunnel}: FAILED: {r.error}" for r in results if r.error]
    return "\n".join(lines) + "\n"


ROAM_NAMES = {"ikev2": "espfast", "wireguard": "wireguard-go", "openvpn": "openvpn"}


def roam_cells(directory: Path, results: Sequence[Result]) -> None:
    """Fill each result's mobile-reconnect cell from the newest roam-*.json of
    ``python -m bench roam`` (bench/roam.py): the median gap from an uplink switch to the
    first datagram on the new path, in the worse direction (a switch after which nothing
    came back counts as endless)."""
    from bench.roam import load

    found = sorted(directory.glob("roam-*.json"))
    if not found:
        return
    try:
        by_name = {r.tunnel: r for r in load(found[-1]) if not r.error}
    except (OSError, ValueError, KeyError, TypeError):
        by_name = {}
    for r in results:
        roam = by_name.get(ROAM_NAMES.get(r.protocol, r.tunnel))
        if roam is None or not (roam.up or roam.down):
            r.roam = f"not in {found[-1].name}"
            continue
        worst = max(roam.median_gap("up"), roam.median_gap("down"))
        gap = "never" if math.isinf(worst) else f"{worst * 1000:.0f} ms"
        r.roam = f"{gap} ({found[-1].name})"


def chart(results: Sequence[Result], path: Path) -> None:
    """Four panels, one bar per tunnel: throughput, time to the first packet, idle CPU
    and idle wake-ups."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if not r.error]
    panels = [
        ("TCP 1-stream, Gbit/s", lambda r: statistics.median(r.gbps) if r.gbps else 0.0),
        ("start to first packet, ms (lower is better)",
         lambda r: (r.handshake and r.handshake.first_packet_ms) or 0.0),
        ("idle CPU, ms/min (lower is better)",
         lambda r: r.idle.cpu_ms_per_min() if r.idle else 0.0),
        ("idle wake-ups/min (lower is better)",
         lambda r: r.idle.wakeups_per_min() if r.idle else 0.0),
    ]  # fmt: skip
    fig, axes = plt.subplots(2, 2, figsize=(11, 5), squeeze=False)
    names = [
        f"{r.tunnel}\n({r.handshake.round_trips} RTT)" if r.handshake else r.tunnel for r in ok
    ]
    for ax, (title, value) in zip(axes.flat, panels, strict=True):
        colors = ["tab:orange" if r.protocol == "ikev2" else "tab:gray" for r in ok]
        ax.barh(range(len(ok)), [float(value(r)) for r in ok], color=colors)
        ax.set_yticks(range(len(ok)), names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("IKEv2 (espfast) / WireGuard / OpenVPN, measured here")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- measuring (root, namespaces) -----------------------------------------------------


def read_pcap(pcap: Path) -> list[Packet]:
    from scapy.layers.inet import IP, UDP
    from scapy.utils import rdpcap

    return [
        Packet(float(p.time), p[IP].src, p[UDP].sport, p[UDP].dport, bytes(p[UDP].payload))
        for p in rdpcap(str(pcap))
        if IP in p and UDP in p
    ]


@contextlib.contextmanager
def ping_loop(ns: Namespace, dst: str) -> Iterator[threading.Event]:
    """Pings to ``dst`` every 10 ms (bounded by UP_TIMEOUT) from before the tunnel
    exists; the event is set once one is answered."""
    answered, stop = threading.Event(), threading.Event()

    def loop() -> None:
        deadline = time.monotonic() + UP_TIMEOUT
        while not stop.is_set() and not answered.is_set() and time.monotonic() < deadline:
            # Until the tunnel's route exists ping fails at once ("unreachable").
            proc = ns.run(
                "ping", "-n", "-q", "-c", "100", "-i", str(PING_INTERVAL), "-W", "1", "-w", "2",
                dst, check=False, timeout=10,
            )  # fmt: skip
            if re.search(r"[1-9]\d* received", proc.stdout):
                answered.set()
            else:
                stop.wait(PING_INTERVAL)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield answered
    finally:
        stop.set()
        thread.join(timeout=15)


def task_switches(pid: int) -> int:
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            text = (task / "status").read_text()
            total += sum(int(x) for x in re.findall(r"ctxt_switches:\s+(\d+)", text))
    return total


def idle_cost(pids: list[int], seconds: float) -> Idle:
    cpu0, sw0, t0 = cpu_seconds(pids), sum(task_switches(p) for p in pids), time.monotonic()
    time.sleep(seconds)  # the measurement itself: the tunnel left alone
    cpu1, sw1 = cpu_seconds(pids), sum(task_switches(p) for p in pids)
    return Idle(time.monotonic() - t0, cpu1 - cpu0, sw1 - sw0)


def wireguard_keepalive(hosts: TwoHosts, seconds: int) -> None:
    links = hosts.a.run("ip", "-o", "link", "show").stdout
    ifname = re.search(r"^\d+: (efwg-a-[0-9a-f]+)", links, re.M)
    if not ifname:
        raise RuntimeError("no wireguard interface in a")
    peer = hosts.a.run("wg", "show", ifname.group(1), "peers").stdout.split()[0]
    hosts.a.run("wg", "set", ifname.group(1), "peer", peer, "persistent-keepalive", str(seconds))


def tunnels() -> list[tuple[str, Tunnel]]:
    from bench.tunnels.espfast_static import EspfastUp
    from bench.tunnels.openvpn import OpenVpn
    from bench.tunnels.wireguard import WireguardGo

    return [
        ("ikev2", EspfastUp("aes128gcm16")),
        ("wireguard", WireguardGo()),
        ("openvpn", OpenVpn(extra=("--ping", "10"))),
    ]


def measure_one(protocol: str, tunnel: Tunnel, args: argparse.Namespace) -> Result:
    result = Result(tunnel.name, protocol)
    try:
        with (
            TwoHosts.create(PURPOSE) as hosts,
            tempfile.TemporaryDirectory(prefix="ef-cmp-") as tmp,
            contextlib.ExitStack() as stack,
        ):
            pcap = Path(tmp) / "up.pcap"
            # The pings go from b, the end set up last (wireguard: a request from a
            # before b has its keys would wait out a 5 s retransmission).
            with capture(hosts, pcap, "udp"), ping_loop(hosts.b, INNER_A) as answered:
                started = time.time()
                ep: Endpoints = stack.enter_context(tunnel.up(hosts))
                if not answered.wait(UP_TIMEOUT):
                    raise RuntimeError("no ping answered through the tunnel")
            result.handshake = handshake_figures(protocol, read_pcap(pcap), started)
            result.version = ep.info.get("version", "") or peer_version(protocol)
            with iperf3_server(hosts.b, ep.inner_b):
                for _ in range(args.runs):
                    result.gbps.append(iperf3_run(hosts, ep, 1, args.time).gbps)
            if protocol == "wireguard":
                wireguard_keepalive(hosts, 25)
            result.idle = idle_cost(ep.pids, args.idle_seconds)
    except Exception as e:  # one broken tunnel must not lose the others' results
        result.error = f"{type(e).__name__}: {e}"
    return result


def peer_version(protocol: str) -> str:
    if protocol == "openvpn":
        out = subprocess.run(
            ["openvpn", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
        return " ".join(out.split()[:2]) if out else "openvpn: no version"  # "OpenVPN 2.6.14"
    return ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench compare", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--runs", type=int, default=2, help="TCP runs per tunnel (default 2)")
    parser.add_argument("--time", type=float, default=3.0, help="seconds per TCP run (default 3)")
    parser.add_argument(
        "--idle-seconds", type=float, default=60.0, help="idle measurement (default 60)"
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated protocols (ikev2,wireguard,openvpn): default all",
    )
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    only = {p for p in args.only.split(",") if p}
    known = {p for p, _ in tunnels()}
    if only - known:
        parser.error(
            f"--only: unknown {', '.join(sorted(only - known))} (known: {', '.join(sorted(known))})"
        )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not have_root():
        print("bench compare: needs root (network namespaces, TUN)", file=sys.stderr)
        return 2
    for program in ("iperf3", "tcpdump"):
        if which(program) is None:
            print(f"bench compare: needs {program}", file=sys.stderr)
            return 2
    load_before = os.getloadavg()[0]
    results = []
    for protocol, tunnel in tunnels():
        if only and protocol not in only:
            continue
        print(f"bench compare: {tunnel.name} ...", file=sys.stderr, flush=True)
        results.append(measure_one(protocol, tunnel, args))
    roam_cells(args.out, results)
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load": os.getloadavg()[0],
        "command": " ".join(["python -m bench compare", *(argv or [])]),
    }
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"compare-{stamp}"
    table = markdown(results, meta)
    data = {"meta": meta, "results": [r.to_json() for r in results]}
    base.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    base.with_suffix(".md").write_text(table)
    if not args.no_chart:
        chart(results, base.with_suffix(".png"))
    print(table)
    print(f"results: {base}.*")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
