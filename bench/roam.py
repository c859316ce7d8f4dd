"""``python -m bench roam`` (``make bench-roam``): the mobile reconnect, measured.

For espfast (MOBIKE, RFC 4555), wireguard-go (its roaming: a peer's endpoint follows the
source of its last authenticated packet) and OpenVPN over UDP (``--float`` at the fixed
end, the roaming end unbound; no ping/ping-restart: point-to-point mode's default), each
in the network of espfast/tools/mobilitynet.py (a client with two uplinks, 'wifi' and
'cell', to a router in front of the gateway), with the bench's own tunnel definitions
(bench/tunnels/): sequence-numbered UDP datagrams both ways through the tunnel at a fixed
rate (client -> gateway: "up", gateway -> client: "down"), and ``--switches`` times the
active uplink changes (wifi down: to cell; wifi back and preferred: to wifi), ``--dwell``
seconds apart. Per switch and direction: the gap (from the switch to the first datagram
delivered on the new path) and the datagrams lost; reported as medians and min..max over
the switches, as JSON, a markdown table and a PNG chart in bench/results/.
"""

from __future__ import annotations

import argparse
import json
import math
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.report import Spread
from bench.tunnels import Endpoints, Tunnel
from bench.tunnels.espfast_static import EspfastUp
from bench.tunnels.openvpn import OpenVpn
from bench.tunnels.peerutil import TunnelError
from bench.tunnels.wireguard import WireguardGo, user_binary
from espfast.netns import TwoHosts, have_root
from espfast.tools.mobilitynet import GW, WIFI, Uplinks, uplinks
from espfast.tools.udpflow import timed_flow

RESULTS = Path(__file__).resolve().parent / "results"
UP_PORT, DOWN_PORT = 5011, 5012
LEAD = 2.0  # seconds of flow before the first switch
TAIL = 2.0  # and after the last one
WIREGUARD = "wireguard-go"
TARGET_RATIO, TARGET_GAP = 1.2, 1.0  # espfast's gap: <= 1.2x WireGuard's and < 1 s


# ---- the pure parts (tests/unit/test_bench.py) ----


@dataclass
class Switch:
    """One uplink switch seen by one direction of the flow."""

    gap_s: float | None  # None: nothing arrived before the next switch
    lost: int


def switch_gap(
    arrivals: Sequence[tuple[int, float]], at: float, until: float, interval: float
) -> float | None:
    """Seconds from the switch at ``at`` to the first datagram delivered on the new path,
    from ``arrivals`` ((sequence number, arrival time), in arrival order) before
    ``until``; None: the flow did not come back before then. Datagrams still queued on
    the old path may arrive just after the switch: when datagrams were lost, the new path
    begins with the first arrival after the switch that follows lost ones; when none
    were, with the first arrival after the switch, unless the flow then stopped (silent
    for more than 3 datagram ``interval``s until ``until``)."""
    prev = max((seq for seq, t in arrivals if t < at), default=-1)
    window = [(seq, t) for seq, t in arrivals if at <= t < until]
    if not window:
        return None
    for seq, t in window:
        if seq > prev + 1:
            return t - at
        prev = max(prev, seq)
    if until - window[-1][1] > 3 * interval:
        return None
    return window[0][1] - at


def first_after(arrivals: Sequence[tuple[int, float]], t: float) -> int | None:
    """The sequence number of the first datagram that arrived at or after ``t``."""
    return next((seq for seq, when in arrivals if when >= t), None)


def per_switch(
    arrivals: Sequence[tuple[int, float]], switches: Sequence[float], end: float, interval: float
) -> list[Switch]:
    """Each switch's gap and loss, the window of each ending at the next switch. The
    datagrams lost are those missing between the last delivered before the switch and
    the first delivered on the new path (or, if the flow did not come back in the
    window, the first delivered after it): each is counted at one switch only."""
    seen = {seq for seq, _ in arrivals}
    last = max(seen, default=-1)
    floor = -1
    found = []
    for at, until in zip(switches, [*switches[1:], end], strict=True):
        gap = switch_gap(arrivals, at, until, interval)
        lo = max([floor, *(seq for seq, t in arrivals if t < at)])
        hi = first_after(arrivals, at + gap if gap is not None else until)
        hi = last + 1 if hi is None else max(hi, lo + 1)
        found.append(Switch(gap, sum(1 for seq in range(lo + 1, hi) if seq not in seen)))
        floor = hi
    return found


@dataclass
class RoamResult:
    tunnel: str
    version: str = ""
    how: str = ""  # how the tunnel follows the move
    up: list[Switch] = field(default_factory=list)
    down: list[Switch] = field(default_factory=list)
    error: str = ""

    def gaps(self, way: str) -> list[float]:
        """The gaps in seconds of the switches after which something arrived (the others
        are counted by :meth:`missed` and printed beside the median)."""
        return [s.gap_s for s in getattr(self, way) if s.gap_s is not None]

    def gap(self, way: str) -> Spread | None:
        return Spread.of(self.gaps(way))

    def lost(self, way: str) -> Spread | None:
        return Spread.of([float(s.lost) for s in getattr(self, way)])

    def median_gap(self, way: str) -> float:
        """The median over every switch, one without recovery counting as endless."""
        gaps = [math.inf if s.gap_s is None else s.gap_s for s in getattr(self, way)]
        return statistics.median(gaps) if gaps else math.inf

    def missed(self, way: str) -> int:
        return sum(1 for s in getattr(self, way) if s.gap_s is None)


def _ms(s: Spread | None) -> str:
    if s is None:
        return "-"
    return f"{s.median * 1e3:.0f} ({s.min * 1e3:.0f}..{s.max * 1e3:.0f})"


def _n(s: Spread | None) -> str:
    return "-" if s is None else f"{s.median:.0f} ({s.min:.0f}..{s.max:.0f})"


def verdict(results: Sequence[RoamResult]) -> str:
    """espfast's median gap against WireGuard's (1.2x at most) and 1 s, in the worse
    direction of each; a switch after which the flow did not come back counts as an
    endless gap in these medians."""
    named = {r.tunnel: r for r in results if not r.error}
    mine, wg = named.get("espfast"), named.get(WIREGUARD)
    if mine is None or wg is None:
        return "target: not measured (espfast or wireguard-go missing)"
    worst = [max(r.median_gap("up"), r.median_gap("down")) for r in (mine, wg)]
    ratio = worst[0] / worst[1] if worst[1] > 0 else math.inf
    met = ratio <= TARGET_RATIO and worst[0] < TARGET_GAP
    never = ", ".join(
        f"{r.tunnel} did not come back within the dwell after {r.missed('up')} (up) and "
        f"{r.missed('down')} (down) of {len(r.up)} switches"
        for r in (mine, wg)
        if r.missed("up") or r.missed("down")
    )
    return (
        f"target (espfast's gap <= {TARGET_RATIO}x WireGuard's and < {TARGET_GAP:.0f} s, "
        f"worse direction's median): espfast {worst[0] * 1e3:.0f} ms, wireguard-go "
        f"{worst[1] * 1e3:.0f} ms, ratio {ratio:.2f}: {'met' if met else 'NOT met'}"
        + (f" ({never})" if never else "")
    )


def markdown(results: Sequence[RoamResult], meta: dict[str, Any]) -> str:
    lines = [
        f"### Mobile reconnect ({meta['date']})",
        "",
        f"`{meta['command']}`: {meta['switches']} uplink switches (wifi <-> cell; wifi "
        f"{'down and its address removed' if meta.get('forget_address') else 'link down'}), "
        f"{meta['dwell']:.0f} s apart, UDP both ways every {meta['interval'] * 1e3:.0f} ms; "
        "gap = from the switch to the first datagram delivered on the new path, ms; "
        "median (min..max) over the switches.",
        "",
        "| tunnel | gap up, ms | gap down, ms | lost up | lost down | how it follows | version |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in results:
        if r.error:
            lines.append(f"| {r.tunnel} | failed: {r.error.splitlines()[0][:100]} |||||")
            continue
        cells = []
        for way in ("up", "down"):
            missed = r.missed(way)
            cells.append(_ms(r.gap(way)) + (f", {missed} never" if missed else ""))
        cells += [_n(r.lost("up")), _n(r.lost("down"))]
        lines.append(f"| {r.tunnel} | {' | '.join(cells)} | {r.how} | {r.version} |")
    lines += ["", verdict(results), ""]
    return "\n".join(lines)


def chart(results: Sequence[RoamResult], path: Path) -> None:
    """The gaps per tunnel and direction: median bars, min..max error bars; the switches
    after which the flow never came back beside the tunnel's name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ok = [r for r in results if not r.error]
    fig, ax = plt.subplots(figsize=(8, 1.5 + 0.9 * len(ok)))
    y = np.arange(len(ok))
    for k, (way, color) in enumerate((("up", "tab:orange"), ("down", "tab:blue"))):
        spreads = [r.gap(way) for r in ok]
        med = [s.median * 1e3 if s else 0.0 for s in spreads]
        err = [
            [(s.median - s.min) * 1e3 if s else 0.0 for s in spreads],
            [(s.max - s.median) * 1e3 if s else 0.0 for s in spreads],
        ]
        ax.barh(y + 0.2 * (2 * k - 1), med, 0.4, xerr=err, color=color, capsize=3,
                label=f"{way} (client {'->' if way == 'up' else '<-'} gateway)")  # fmt: skip
    labels = [
        r.tunnel + (f"\n{r.missed('up')}+{r.missed('down')} of {2 * len(r.up)} never" if
                    r.missed("up") or r.missed("down") else "")
        for r in ok
    ]  # fmt: skip
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("gap after an uplink switch, ms (median, min..max of the recovered ones)")
    ax.legend(fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ---- the tunnels, from bench/tunnels, made to roam ----


class EspfastRoam(EspfastUp):
    """``espfast up`` (the bench's configs), the client listening on the wildcard address
    so that it follows its addresses and routes (MOBIKE is on by default)."""

    how = "MOBIKE (UPDATE_SA_ADDRESSES)"

    def __init__(self) -> None:
        super().__init__("aes128gcm16")
        self.name = "espfast"

    def configs(self, hosts: TwoHosts) -> tuple[str, str]:
        text_a, text_b = super().configs(hosts)
        listen = f'listen = "{hosts.addr_a}:4500"'
        assert listen in text_a, text_a
        return text_a.replace(listen, 'listen = "0.0.0.0:4500"'), text_b


class WireguardRoam(WireguardGo):
    how = "endpoint follows the last authenticated source"

    def __init__(self) -> None:
        super().__init__(WIREGUARD, user_binary())


class OpenVpnRoam(OpenVpn):
    """The bench's OpenVPN, a (the client) not bound to an address, b with ``--float``."""

    how = "--float, client unbound, no ping-restart"

    def _argv(self, pki: Path, side: str, local: str, remote: str) -> list[str]:
        argv = super()._argv(pki, side, local, remote)
        if side == "a":
            i = argv.index("--local")
            return argv[:i] + argv[i + 2 :]
        return [*argv, "--float"]


ROAMERS: dict[str, Callable[[], Tunnel]] = {
    "espfast": EspfastRoam,
    WIREGUARD: WireguardRoam,
    "openvpn": OpenVpnRoam,
}


def version_of(name: str, ep: Endpoints) -> str:
    if ep.info.get("version"):
        return ep.info["version"]
    if name == "openvpn":
        from espfast.netns import run

        out = run(["openvpn", "--version"], check=False).stdout
        return out.splitlines()[0].split(" [")[0] if out else "openvpn ?"
    return "?"


@dataclass
class Plan:
    switches: int
    dwell: float
    interval: float
    forget: bool = False

    @property
    def count(self) -> int:
        return int((LEAD + self.switches * self.dwell + TAIL) / self.interval)


def steps(hosts: Uplinks, n: int, forget: bool) -> Iterator[Callable[[], None]]:
    """wifi down (``forget``: and its address removed), wifi back, ... ``n`` switches."""
    for i in range(n):
        if i % 2:
            yield hosts.wifi_back
        else:
            yield hosts.wifi_gone if forget else hosts.wifi_down


def measure_one(name: str, plan: Plan) -> RoamResult:
    tunnel = ROAMERS[name]()
    result = RoamResult(name, how=getattr(tunnel, "how", ""))
    with uplinks() as hosts, tunnel.up(TwoHosts(hosts.c, hosts.g, WIFI, GW)) as ep:
        result.version = version_of(name, ep)
        got: dict[str, list[tuple[int, float]]] = {}

        def run(way: str, sender: Any, receiver: Any, dst: str, port: int) -> None:
            got[way] = timed_flow(sender, receiver, dst, count=plan.count, port=port,
                                  interval=plan.interval)  # fmt: skip

        threads = [
            threading.Thread(target=run, args=("up", hosts.c, hosts.g, ep.inner_b, UP_PORT)),
            threading.Thread(target=run, args=("down", hosts.g, hosts.c, ep.inner_a, DOWN_PORT)),
        ]
        for t in threads:
            t.start()
        switched: list[float] = []
        try:
            time.sleep(LEAD)
            for step in steps(hosts, plan.switches, plan.forget):
                switched.append(time.monotonic())
                step()
                time.sleep(plan.dwell)
        finally:
            for t in threads:
                t.join(plan.count * plan.interval * 3 + 120)
        if any(t.is_alive() for t in threads) or len(got) != 2:
            raise TunnelError("a datagram flow did not end")
        for way in ("up", "down"):  # the last window ends where the flow did
            end = max((t for _, t in got[way]), default=switched[-1]) + plan.interval
            setattr(result, way, per_switch(got[way], switched, end, plan.interval))
    return result


def load(path: Path) -> list[RoamResult]:
    """The results of a run from its JSON (to redraw its chart: ``--redraw``)."""
    data = json.loads(path.read_text())
    return [
        RoamResult(**{**r, "up": [Switch(**x) for x in r["up"]],
                      "down": [Switch(**x) for x in r["down"]]})
        for r in data["results"]
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench roam", description=__doc__)
    names = ", ".join(ROAMERS)
    parser.add_argument(
        "-t", "--tunnels", default=",".join(ROAMERS), help=f"comma-separated, of {names}"
    )
    parser.add_argument("--switches", type=int, default=5, help="uplink switches (default 5)")
    parser.add_argument("--dwell", type=float, default=4.0,
                        help="seconds between switches (default 4)")  # fmt: skip
    parser.add_argument("--interval", type=float, default=0.005,
                        help="seconds between datagrams, each way (default 0.005)")  # fmt: skip
    parser.add_argument(
        "--forget-address", action="store_true", help="wifi down also removes its address"
    )
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    parser.add_argument("--redraw", type=Path, help="redraw the chart of a run's JSON and exit")
    args = parser.parse_args(argv)
    if args.redraw:
        chart(load(args.redraw), args.redraw.with_suffix(".png"))
        return 0
    names = [n for n in args.tunnels.split(",") if n]
    unknown = [n for n in names if n not in ROAMERS]
    if unknown or args.switches < 1 or args.dwell <= 0 or args.interval <= 0:
        parser.error(
            f"unknown tunnels {unknown}" if unknown else "bad --switches/--dwell/--interval"
        )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not have_root():
        print("bench roam: needs root (network namespaces, TUN)", file=sys.stderr)
        return 2
    plan = Plan(args.switches, args.dwell, args.interval, args.forget_address)
    results = []
    for name in names:
        print(f"bench roam: {name} ...", file=sys.stderr, flush=True)
        try:
            results.append(measure_one(name, plan))
        except (TunnelError, OSError, AssertionError) as e:  # reported, the others go on
            results.append(RoamResult(name, error=str(e) or type(e).__name__))
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "switches": plan.switches,
        "dwell": plan.dwell,
        "interval": plan.interval,
        "forget_address": plan.forget,
        "command": " ".join(["python -m bench roam", *(argv if argv is not None else [])]),
    }
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    args.out.mkdir(parents=True, exist_ok=True)
    base = args.out / f"roam-{stamp}"
    table = markdown(results, meta)
    data = {"meta": meta, "results": [asdict(r) for r in results]}
    base.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    base.with_suffix(".md").write_text(table)
    if not args.no_chart:
        chart(results, base.with_suffix(".png"))
    print(table)
    print(f"results: {base}.*")
    return 1 if any(r.error for r in results) else 0
