"""What ``python -m bench`` measured, summarised: medians with their spread, ratios against
each peer, the project's performance goals, a markdown table, JSON and a PNG chart.

Everything here is pure data in, text/files out (no root, no namespaces), so that the
arithmetic is unit-tested (tests/unit/test_bench.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

REFERENCE = "espfast-aes128gcm16"  # the tunnel every ratio is about
CEILING = "veth"
WIREGUARD = "wireguard-go"  # $WIREGUARD_GO (the newest build, with offloads) or PATH's
CHACHA = "espfast-chacha20poly1305"
UP = "espfast-up-aes128gcm16"  # espfast up: the same dataplane and transform as REFERENCE
SMALL = 64  # UDP payload bytes: the per-packet cost
LARGE = 1372  # UDP payload of a 1400-byte inner IPv4 packet (the tunnels' inner MTU)


@dataclass
class Run:
    """One iperf3 TCP run."""

    gbps: float  # receiver-side throughput, Gbit/s
    cpu_s: float  # CPU seconds of the tunnel processes during the run
    gbytes: float  # data received, GB (10^9 bytes)
    retransmits: int

    @property
    def gbit_per_cpu_s(self) -> float:
        """Gbit moved per CPU-second of the tunnel processes (0 without a CPU figure)."""
        return self.gbytes * 8 / self.cpu_s if self.cpu_s > 0 else 0.0


@dataclass
class UdpRun:
    """One iperf3 UDP run at an unlimited target rate."""

    pps: float  # datagrams the tunnel delivered into b's IP input per second
    sent_pps: float  # datagrams iperf3 sent per second
    loss_pct: float  # of the sent ones, not delivered
    cpu_s: float
    app_pps: float = 0.0  # of those, what the iperf3 receiver managed to read per second


@dataclass
class Spread:
    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        if not values:
            return None
        a = np.asarray(values, dtype=float)
        return cls(float(np.median(a)), float(a.min()), float(a.max()))

    def text(self, fmt: str = ".2f") -> str:
        return f"{self.median:{fmt}} ({self.min:{fmt}}..{self.max:{fmt}})"


@dataclass
class Figure:
    """The TCP runs of one (tunnel, streams) measurement."""

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
            "cpu_s_per_gb": None,
        }
        if cpu.sum() > 0:
            out["gbit_per_cpu_s"] = float(np.median(gbytes * 8 / np.maximum(cpu, 1e-9)))
            out["cpu_s_per_gb"] = float(np.median(cpu / np.maximum(gbytes, 1e-12)))
        return out


@dataclass
class UdpFigure:
    """The UDP runs at one payload size."""

    payload: int  # UDP payload bytes
    runs: list[UdpRun] = field(default_factory=list)

    def summary(self) -> dict[str, float | None]:
        pps = Spread.of([r.pps for r in self.runs])
        loss = Spread.of([r.loss_pct for r in self.runs])
        assert pps is not None and loss is not None
        return {
            "pps_median": pps.median,
            "pps_min": pps.min,
            "pps_max": pps.max,
            "loss_pct_median": loss.median,
            "sent_pps_median": float(np.median([r.sent_pps for r in self.runs])),
        }


@dataclass
class TunnelResult:
    tunnel: str
    figures: list[Figure] = field(default_factory=list)
    udp: list[UdpFigure] = field(default_factory=list)
    ping_ms: list[float] = field(default_factory=list)  # idle RTT samples
    peak_rss_kib: int | None = None
    processes: int = 0  # how many tunnel processes (0: nothing to measure CPU of)
    error: str | None = None
    info: dict[str, str] = field(default_factory=dict)  # version, offloads (Endpoints.info)

    @property
    def ping_rtt_ms(self) -> float | None:
        s = Spread.of(self.ping_ms)
        return s.median if s else None

    def tcp(self, streams: int) -> dict[str, float | None] | None:
        for f in self.figures:
            if f.streams == streams and f.runs:
                return f.summary()
        return None

    def tcp_runs(self, streams: int) -> list[Run]:
        """The TCP runs at `streams`, in the order of the rounds."""
        return [r for f in self.figures if f.streams == streams for r in f.runs]

    def pps(self, payload: int) -> float | None:
        for u in self.udp:
            if u.payload == payload and u.runs:
                return u.summary()["pps_median"]
        return None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TunnelResult:
        """What :meth:`to_json` wrote (the runs; the summaries are computed again)."""
        return cls(
            d["tunnel"],
            [Figure(d["tunnel"], f["streams"], [Run(**r) for r in f["runs"]]) for f in d["tcp"]],
            [UdpFigure(u["payload"], [UdpRun(**r) for r in u["runs"]]) for u in d["udp"]],
            list(d.get("ping_samples_ms") or []),
            d.get("peak_rss_kib"),
            d.get("processes", 0),
            d.get("error"),
            dict(d.get("info") or {}),
        )

    def to_json(self) -> dict[str, Any]:
        ping = Spread.of(self.ping_ms)
        return {
            "tunnel": self.tunnel,
            "error": self.error,
            "info": self.info,
            "processes": self.processes,
            "peak_rss_kib": self.peak_rss_kib,
            "ping_ms": asdict(ping) if ping else None,
            "ping_samples_ms": self.ping_ms,
            "tcp": [
                {"streams": f.streams, **f.summary(), "runs": [asdict(r) for r in f.runs]}
                for f in self.figures
                if f.runs
            ],
            "udp": [
                {"payload": u.payload, **u.summary(), "runs": [asdict(r) for r in u.runs]}
                for u in self.udp
                if u.runs
            ],
        }


# ---- ratios and targets ----

# (label, how to read the figure from a result, True when more is better)
Metric = tuple[str, Callable[[TunnelResult], float | None], bool]


def _tcp(streams: int, key: str) -> Callable[[TunnelResult], float | None]:
    def get(r: TunnelResult) -> float | None:
        s = r.tcp(streams)
        return s[key] if s else None

    return get


METRICS: list[Metric] = [
    ("TCP 1-stream", _tcp(1, "gbps_median"), True),
    ("TCP 4-stream", _tcp(4, "gbps_median"), True),
    ("Gbit/CPU-s", _tcp(1, "gbit_per_cpu_s"), True),
    ("UDP pps 64 B", lambda r: r.pps(SMALL), True),
    ("UDP pps 1400 B packets", lambda r: r.pps(LARGE), True),
    ("ping RTT", lambda r: r.ping_rtt_ms, False),
]


def ratio(ref: float | None, other: float | None, more_is_better: bool) -> float | None:
    """How many times better the reference is (>1: the reference wins)."""
    if not ref or not other:
        return None
    return ref / other if more_is_better else other / ref


def by_name(results: Sequence[TunnelResult]) -> dict[str, TunnelResult]:
    return {r.tunnel: r for r in results if not r.error}


def ratios(results: Sequence[TunnelResult], reference: str = REFERENCE) -> list[str]:
    """Lines: the reference against every other tunnel, metric by metric."""
    ok = by_name(results)
    ref = ok.get(reference)
    if ref is None:
        return [f"(no ratios: {reference} did not run)"]
    lines = []
    for other in ok.values():
        if other is ref or other.tunnel.startswith("espfast-"):
            continue  # peers and the ceiling; espfast's own variants are in the table
        parts = []
        for label, get, more in METRICS:
            if other.tunnel == CEILING and more:
                mine, theirs = get(ref), get(other)
                if mine and theirs:
                    parts.append(f"{label} {100 * mine / theirs:.0f}%")
                continue
            x = ratio(get(ref), get(other), more)
            if x is not None:
                parts.append(f"{label} {x:.2f}x")
        verb = "is at" if other.tunnel == CEILING else "vs"
        lines.append(f"{reference} {verb} {other.tunnel}: " + (", ".join(parts) or "-"))
    return lines


def round_ratios(
    mine: TunnelResult | None,
    mine_streams: int,
    other: TunnelResult | None,
    other_streams: int,
    per_cpu: bool = False,
) -> list[float]:
    """The per-round ratios of two TCP figures (mine / other): Gbit/s, or with ``per_cpu``
    Gbit per tunnel CPU-second. Run i of every figure belongs to round i (``python -m
    bench`` interleaves them); a failed (0) run and an unpaired one are left out."""
    if mine is None or other is None:
        return []

    def values(r: TunnelResult, streams: int) -> list[float]:
        return [x.gbit_per_cpu_s if per_cpu else x.gbps for x in r.tcp_runs(streams)]

    a, b = values(mine, mine_streams), values(other, other_streams)
    return [x / y for x, y in zip(a, b, strict=False) if x > 0 and y > 0]


def paired(
    mine: TunnelResult | None, mine_streams: int, other: TunnelResult | None, other_streams: int
) -> float | None:
    """The geometric mean of the per-round ratios of two TCP figures (mine / other).

    The two runs of a pair are seconds apart, so a change in the shared machine's load
    falls on both, where a ratio of medians compares runs minutes apart. Measured: on a
    machine whose runs spread by +-30 %, ratios of medians of 3 to 6 runs of two identical
    dataplanes (espfast up and static) came out anywhere from 0.87 to 1.07."""
    pairs = round_ratios(mine, mine_streams, other, other_streams)
    if not pairs:
        return None
    return float(np.exp(np.mean(np.log(pairs))))


INTERVAL_ROUNDS = 3  # fewer paired rounds: no interval
RESAMPLES = 4000


def interval(pairs: Sequence[float], seed: int = 0) -> tuple[float, float] | None:
    """A 95 % interval for the geometric mean of per-round ratios: numpy's bootstrap by
    resampling the rounds (percentiles of the resampled means of the logs). With the few
    rounds of a bench run it is approximate, and if anything too narrow."""
    if len(pairs) < INTERVAL_ROUNDS:
        return None
    logs = np.log(np.asarray(pairs, dtype=float))
    rng = np.random.default_rng(seed)
    means = rng.choice(logs, size=(RESAMPLES, len(logs)), replace=True).mean(axis=1)
    low, high = np.exp(np.percentile(means, [2.5, 97.5]))
    return float(low), float(high)


@dataclass
class Target:
    text: str
    value: float | None
    goal: float
    rounds: list[float] = field(default_factory=list)  # per-round ratios, where paired

    @property
    def met(self) -> bool | None:
        return None if self.value is None else self.value >= self.goal

    @property
    def interval(self) -> tuple[float, float] | None:
        return interval(self.rounds)

    @property
    def settled(self) -> bool | None:
        """Whether this run's rounds put the goal outside their 95 % interval (None: too
        few rounds to say)."""
        iv = self.interval
        return None if iv is None else not iv[0] < self.goal <= iv[1]

    def text_line(self) -> str:
        if self.value is None:
            return f"{self.text}: not measured (goal {self.goal:g}x)"
        line = f"{self.text}: {self.value:.2f}x (goal {self.goal:g}x): "
        line += "met" if self.met else "MISSED"
        iv = self.interval
        if iv is not None:
            line += (
                f"; {len(self.rounds)} rounds {min(self.rounds):.2f}..{max(self.rounds):.2f}x, "
                f"95 % interval {iv[0]:.2f}..{iv[1]:.2f}x: "
                + ("settled" if self.settled else "not settled by this run")
            )
        return line


def targets(results: Sequence[TunnelResult], reference: str = REFERENCE) -> list[Target]:
    """The project's performance goals, measured in this run: against the newest
    wireguard-go (the ``wireguard-go`` tunnel; see bench/tunnels/wireguard.py for which
    build that is, and the report's peer list for its version), plain veth, and espfast
    itself (4 streams against 1, ``espfast up`` against ``espfast static``: both as the
    geometric mean of the ratios within each round, see :func:`paired`). The TCP goals
    also carry their per-round ratios, whose interval says whether one run can tell."""
    ok = by_name(results)
    ref = ok.get(reference)

    def rel(mine: TunnelResult | None, other: str, metric: int) -> float | None:
        if mine is None or other not in ok:
            return None
        _, get, more = METRICS[metric]
        return ratio(get(mine), get(ok[other]), more)

    def own(mine: str, other: str, metric: int) -> float | None:
        return rel(ok.get(mine), other, metric)

    def rounds(
        mine: TunnelResult | None,
        other: str,
        streams: tuple[int, int] = (1, 1),
        per_cpu: bool = False,
    ) -> list[float]:
        return round_ratios(mine, streams[0], ok.get(other), streams[1], per_cpu)

    wg, up = WIREGUARD, ok.get(UP)
    return [
        Target(f"single-stream TCP, AES-GCM-128 vs {wg}", rel(ref, wg, 0), 2.5, rounds(ref, wg)),
        Target(
            f"single-stream TCP, ChaCha20-Poly1305 vs {wg}",
            own(CHACHA, wg, 0),
            1.6,
            rounds(ok.get(CHACHA), wg),
        ),
        Target(
            "single-stream TCP as a share of veth", rel(ref, CEILING, 0), 0.40, rounds(ref, CEILING)
        ),
        Target(
            f"Gbit per tunnel CPU-second vs {wg}",
            rel(ref, wg, 2),
            2.5,
            rounds(ref, wg, per_cpu=True),
        ),
        Target(
            "4-stream TCP vs our single stream",
            paired(ref, 4, ref, 1),
            1.5,
            rounds(ref, reference, (4, 1)),
        ),
        Target(
            "espfast up vs espfast static, single-stream TCP",
            paired(up, 1, ref, 1),
            0.95,
            rounds(up, reference),
        ),
        Target(f"64-byte UDP pps vs {wg}", rel(ref, wg, 3), 2.0),
        Target(f"idle ping RTT, {wg}'s over ours", rel(ref, wg, 5), 1.0),
    ]


# ---- markdown ----


def _cell(s: Spread | None, fmt: str = ".2f") -> str:
    return s.text(fmt) if s else "-"


def markdown(results: Sequence[TunnelResult], meta: dict[str, Any]) -> str:
    streams = sorted({f.streams for r in results for f in r.figures})
    payloads = sorted({u.payload for r in results for u in r.udp})
    lines = [
        f"# Tunnel benchmark, {meta['date']}",
        "",
        f"`{meta.get('command', 'python -m bench')}` on {meta.get('cpus', '?')} CPUs"
        + (
            f" (load average {meta['load_before']:.1f} before, {meta['load']:.1f} after)"
            if "load_before" in meta and "load" in meta
            else ""
        )
        + ("; every tunnel up at once, the runs interleaved. " if meta.get("interleaved") else ". ")
        + f"Median of {meta['runs']} runs (min..max). TCP: iperf3, {meta['seconds']} s per run, "
        "Gbit/s at the receiver. UDP: iperf3 -u at an unlimited rate, "
        f"{meta.get('udp_seconds', '?')} s per run: datagrams delivered through the "
        "tunnel into b's IP input per second (kpps; an nftables counter) and the loss. "
        "CPU: the tunnel processes' CPU seconds per GB moved and Gbit per CPU-second "
        "(1-stream TCP). Ping: RTT through the idle tunnel. RSS: the tunnel "
        "processes' peak resident memory.",
        "",
    ]
    head = ["tunnel"]
    head += [f"TCP {n}-stream Gbit/s" for n in streams]
    head += [f"UDP {p} B payload kpps (loss %)" for p in payloads]
    head += ["CPU s/GB", "Gbit/CPU-s", "ping ms", "peak RSS MiB"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for r in results:
        if r.error:
            lines.append(f"| {r.tunnel} | failed: {r.error} |")
            continue
        row = [r.tunnel]
        for n in streams:
            f = next((f for f in r.figures if f.streams == n and f.runs), None)
            row.append(_cell(Spread.of([x.gbps for x in f.runs]) if f else None))
        for p in payloads:
            u = next((u for u in r.udp if u.payload == p and u.runs), None)
            if u is None:
                row.append("-")
                continue
            kpps = Spread.of([x.pps / 1000 for x in u.runs])
            loss = u.summary()["loss_pct_median"]
            row.append(f"{_cell(kpps, '.0f')} ({loss:.0f})")
        first = r.tcp(min(streams)) if streams else None
        per_gb = first["cpu_s_per_gb"] if first and r.processes else None
        gpc = first["gbit_per_cpu_s"] if first and r.processes else None
        row.append(f"{per_gb:.2f}" if per_gb else "-")
        row.append(f"{gpc:.2f}" if gpc else "-")
        row.append(_cell(Spread.of(r.ping_ms), ".3f"))
        row.append(f"{r.peak_rss_kib / 1024:.1f}" if r.peak_rss_kib else "-")
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Ratios", ""]
    lines += [f"- {x}" for x in ratios(results, meta.get("reference", REFERENCE))]
    peers = [r for r in results if r.info]
    if peers:
        lines += ["", "## Versions and offloads", ""]
        lines += [
            f"- {r.tunnel}: " + "; ".join(f"{k} {v}" for k, v in r.info.items()) for r in peers
        ]
    lines += ["", "## Targets (the project's goals)", ""]
    lines += [f"- {t.text_line()}" for t in targets(results, meta.get("reference", REFERENCE))]
    lines += [
        "",
        "(The value: the ratio of the medians, or for espfast against itself of the rounds. "
        "Rounds: the same ratio within each round of interleaved runs, seconds apart; the "
        "interval is a 95 % bootstrap interval of their geometric mean. A goal inside it is "
        "not settled by this run: the machine's noise is larger than the margin.)",
    ]
    controls = control_ratios(results)
    if controls:
        lines += ["", "## Same tunnel twice (the noise floor of this run)", "", *controls]
    return "\n".join(lines) + "\n"


def control_ratios(results: Sequence[TunnelResult]) -> list[str]:
    """A tunnel measured twice (``-t X,X``: the second is ``X#2``): the ratios between
    two identical tunnels, which only the machine's noise can move away from 1."""
    ok = by_name(results)
    lines = []
    for name, copy in ok.items():
        base = name.split("#")[0]
        if base == name or base not in ok:
            continue
        parts = [f"{n}-stream TCP {x:.2f}x" for n in sorted({f.streams for f in copy.figures})
                 if (x := paired(copy, n, ok[base], n)) is not None]  # fmt: skip
        lines.append(f"- {name} vs {base} (paired): " + (", ".join(parts) or "-"))
    return lines


# ---- chart ----


def chart(results: Sequence[TunnelResult], path: Path) -> None:
    """Six panels (TCP 1/4 streams, UDP pps 64/1400 B, Gbit/CPU-s, ping), one bar per
    tunnel with its min..max as an error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results if not r.error]

    def tcp(streams: int) -> Callable[[TunnelResult], list[float]]:
        return lambda r: [x.gbps for x in r.tcp_runs(streams)]

    def kpps(payload: int) -> Callable[[TunnelResult], list[float]]:
        return lambda r: [x.pps / 1e3 for u in r.udp if u.payload == payload for x in u.runs]

    def per_cpu(r: TunnelResult) -> list[float]:
        return [x.gbit_per_cpu_s for x in r.tcp_runs(1) if x.cpu_s > 0 and r.processes]

    panels: list[tuple[str, Callable[[TunnelResult], list[float]]]] = [
        ("TCP 1-stream, Gbit/s", tcp(1)),
        ("TCP 4-stream, Gbit/s", tcp(4)),
        (f"UDP {SMALL} B payload, kpps delivered", kpps(SMALL)),
        ("UDP 1400 B packets, kpps delivered", kpps(LARGE)),
        ("Gbit per tunnel CPU-second", per_cpu),
        ("idle ping RTT, ms (lower is better)", lambda r: r.ping_ms),
    ]
    fig, axes = plt.subplots(3, 2, figsize=(13, 3 + 0.45 * len(ok) * 3), squeeze=False)
    names = [r.tunnel for r in ok]
    for ax, (title, values) in zip(axes.flat, panels, strict=True):
        med, lo, hi = [], [], []
        for r in ok:
            s = Spread.of(values(r))
            med.append(s.median if s else 0.0)
            lo.append(s.median - s.min if s else 0.0)
            hi.append(s.max - s.median if s else 0.0)
        y = np.arange(len(names))
        colors = ["tab:orange" if n.startswith("espfast") else "tab:gray" for n in names]
        ax.barh(y, med, xerr=[lo, hi], color=colors, capsize=3)
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        if med and max(med) > 0:
            # A single slow ping (a busy machine) must not squash every bar.
            ax.set_xlim(0, max(m + h for m, h in zip(med, hi, strict=True)) * 1.05)
            ax.set_xlim(0, min(ax.get_xlim()[1], 3 * max(med)))
    fig.suptitle("espfast vs peers (median, min..max)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
