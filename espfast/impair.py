"""A transparent userspace impairment relay: loss, duplication, reordering and delay.

This kernel has no netem, so lossy-network tests run their traffic through this relay in
the router namespace of :class:`espfast.netns.ThreeHosts` (a -- r -- b)::

    a --veth-ra--> [rule iif veth-ra: table 100: default dev imp-ab] --> imp-ab (TUN)
         relay process: read imp-ab, impair (direction "ab"), write back into imp-ab
    imp-ab --> main table --> veth-rb --> b            (and the mirror image for "ba")

IPv4 and IPv6 alike (``ip rule`` and ``ip -6 rule``). Link-scope packets (the kernel's
own MLD reports on the TUN devices) are never relayed: a router does not forward them.
Nothing rewrites addresses or ports: a and b see each other's real addresses, so IKE's NAT
detection sees no NAT. Each direction has its own :class:`Impairment` (probabilities and a
delay) and its own seeded RNG, so a run is reproducible for the same traffic. The relay is
bounded: at most ``queue_limit`` packets held per direction (more are dropped and counted
as ``overflow``), and it exits by itself after ``max_seconds``.

While the relay runs, the tables also hold a blackhole route behind the TUN route: if the
process dies without cleaning up, traffic between a and b stops (fails closed) rather than
silently bypassing the impairments. A clean exit (SIGTERM/SIGINT, the time limit) removes
the rules, and r routes plainly again.

Run as ``python -m espfast.impair`` inside r (see :func:`start_relay`, which tests use).
Signals: SIGTERM/SIGINT stop it (the counters are printed as JSON on stdout and written to
``--stats``); SIGHUP re-reads ``--config``; SIGUSR1 writes ``--stats`` now.

The config is JSON: ``{"ab": {...}, "ba": {...}}``, each an :class:`Impairment` as a dict,
for example ``{"drop": 0.3, "match": "ike"}``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import heapq
import json
import os
import random
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from espfast.netns import Namespace, ThreeHosts
from espfast.static import _StopSignals

READY = "ready"  # the word on stderr that start_relay waits for
DIRECTIONS = ("ab", "ba")
TABLES = {"ab": 100, "ba": 101}  # policy routing tables in the relay namespace
RULE_PRIORITY = 1000
ROUTE_METRIC, BLACKHOLE_METRIC = 10, 4000  # the TUN route first; the blackhole behind it
TUN_MTU = 65535
IKE_PORT, NATT_PORT = 500, 4500
PROTO_UDP, PROTO_ESP = 17, 50
MATCHES = ("all", "udp", "ike", "esp")  # and "port:N"


# ---------------------------------------------------------------------------------------
# What to do to packets (per direction)


@dataclass(frozen=True)
class Impairment:
    """What happens to the packets of one direction that ``match`` selects.

    Each selected packet is dropped with probability ``drop``; a survivor is duplicated with
    probability ``duplicate``; each copy is held back with probability ``reorder`` until
    ``reorder_gap`` later packets went past it (or ``reorder_timeout`` seconds passed), and
    is delayed by ``delay`` seconds plus a uniform jitter in [-jitter, +jitter] (a jitter
    can reorder too, as netem's does). Packets ``match`` does not select pass untouched.

    ``match``: a comma-separated union of ``all``, ``udp``, ``ike`` (UDP 500, and UDP 4500
    with the non-ESP marker), ``esp`` (IP protocol 50, and UDP 4500 without the marker,
    excluding NAT keepalives) and ``port:N`` (UDP with source or destination port N).
    """

    drop: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_gap: int = 3
    reorder_timeout: float = 0.2
    delay: float = 0.0
    jitter: float = 0.0
    match: str = "all"

    def __post_init__(self) -> None:
        for name in ("drop", "duplicate", "reorder"):
            p = getattr(self, name)
            if not isinstance(p, int | float) or isinstance(p, bool) or not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], not {p!r}")
        for name in ("reorder_timeout", "delay", "jitter"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or isinstance(v, bool) or not 0.0 <= v <= 60.0:
                raise ValueError(f"{name} must be a number of seconds in [0, 60], not {v!r}")
        gap = self.reorder_gap
        if not isinstance(gap, int) or isinstance(gap, bool) or not 1 <= gap <= 1000:
            raise ValueError(f"reorder_gap must be an integer in [1, 1000], not {gap!r}")
        parse_match(self.match)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Impairment:
        if not isinstance(d, Mapping):
            raise ValueError(f"an impairment must be a JSON object, not {d!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown impairment setting(s): {', '.join(unknown)}")
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def parse_match(spec: str) -> tuple[str | int, ...]:
    """``"ike,port:5000"`` -> ``("ike", 5000)``; ValueError for anything else."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"match must be a non-empty string, not {spec!r}")
    out: list[str | int] = []
    for part in (p.strip() for p in spec.split(",")):
        if part in MATCHES:
            out.append(part)
            continue
        kind, _, num = part.partition(":")
        if kind == "port" and num.isdigit() and 0 < int(num) < 65536:
            out.append(int(num))
            continue
        raise ValueError(f"unknown match {part!r} (one of {', '.join(MATCHES)}, port:N)")
    return tuple(out)


# ---------------------------------------------------------------------------------------
# Classifying packets (never raises: anything short or odd simply matches less)


@dataclass(frozen=True)
class L4:
    proto: int  # IP protocol (next header); -1 when the packet is not IPv4/IPv6
    sport: int = -1  # UDP ports, -1 without a complete UDP header
    dport: int = -1
    payload: bytes = b""  # the first bytes of the UDP payload (enough for the marker)


NOT_IP = L4(-1)


def classify(pkt: bytes) -> L4:
    """The transport facts the matchers need. Non-first IPv4 fragments and IPv6 extension
    headers yield no ports (they match ``all`` only, or ``esp`` for a bare ESP header)."""
    if len(pkt) < 20:
        return NOT_IP
    version = pkt[0] >> 4
    if version == 4:
        ihl = (pkt[0] & 0x0F) * 4
        if ihl < 20 or len(pkt) < ihl:
            return NOT_IP
        proto = pkt[9]
        first_fragment = (int.from_bytes(pkt[6:8], "big") & 0x1FFF) == 0
        off = ihl if first_fragment else -1
    elif version == 6:
        if len(pkt) < 40:
            return NOT_IP
        proto, off = pkt[6], 40
    else:
        return NOT_IP
    if proto != PROTO_UDP or off < 0 or len(pkt) < off + 8:
        return L4(proto)
    sport = int.from_bytes(pkt[off : off + 2], "big")
    dport = int.from_bytes(pkt[off + 2 : off + 4], "big")
    return L4(proto, sport, dport, bytes(pkt[off + 8 : off + 12]))


def link_scope(pkt: bytes) -> bool:
    """A packet no router forwards: IPv6 from ``::`` or fe80::/10, or to ff02::/16 (e.g. the
    MLD reports the kernel sends on the relay's own TUN), IPv4 to 224.0.0.0/24."""
    if len(pkt) >= 40 and pkt[0] >> 4 == 6:
        src, dst = pkt[8:24], pkt[24:40]
        return (
            src == bytes(16)
            or (src[0] == 0xFE and src[1] & 0xC0 == 0x80)
            or (dst[0] == 0xFF and dst[1] & 0x0F == 0x02)
        )
    return len(pkt) >= 20 and pkt[0] >> 4 == 4 and pkt[16:19] == b"\xe0\x00\x00"


def matches(selector: tuple[str | int, ...], info: L4) -> bool:
    return any(_matches_one(m, info) for m in selector)


def _matches_one(m: str | int, info: L4) -> bool:
    if m == "all":
        return True
    if info.proto == PROTO_ESP:
        return m == "esp"
    if info.proto != PROTO_UDP or info.sport < 0:
        return False
    ports = (info.sport, info.dport)
    if isinstance(m, int):
        return m in ports
    if m == "udp":
        return True
    natt = NATT_PORT in ports
    marker = len(info.payload) == 4 and info.payload == b"\0\0\0\0"
    if m == "ike":
        return IKE_PORT in ports or (natt and marker)
    # esp: UDP-encapsulated ESP (RFC 3948): a non-zero SPI; a 1-byte keepalive is not ESP.
    return natt and len(info.payload) == 4 and not marker


# ---------------------------------------------------------------------------------------
# One direction's pipeline, sans-I/O: push packets in, take due packets out.


@dataclass
class Counters:
    seen: int = 0  # packets read
    matched: int = 0  # packets the direction's match selected
    dropped: int = 0  # dropped on purpose (the drop probability)
    duplicated: int = 0  # extra copies made
    reordered: int = 0  # held back and overtaken by at least one later packet
    delayed: int = 0  # copies given a non-zero delay
    forwarded: int = 0  # packets written out (copies included)
    overflow: int = 0  # dropped because queue_limit packets were already held
    not_ip: int = 0  # too short, or neither IPv4 nor IPv6 (counted, still forwarded)
    write_errors: int = 0  # the kernel refused a write (e.g. garbage); the packet is lost
    link_scope: int = 0  # the relay TUN's own link-scope chatter (MLD): not transit, dropped


@dataclass(eq=False)  # identity: two held copies of one packet are different entries
class _Held:
    pkt: bytes
    countdown: int  # later packets still to go past
    deadline: float
    overtaken: bool = False


@dataclass
class Lane:
    """The impairments of one direction. ``push`` a packet read at ``now``; ``due(now)``
    returns the packets to write now, in order; ``next_deadline()`` says when to ask again."""

    impairment: Impairment
    rng: random.Random
    queue_limit: int = 10_000
    counters: Counters = field(default_factory=Counters)
    _selector: tuple[str | int, ...] = ()
    _held: list[_Held] = field(default_factory=list)
    _queue: list[tuple[float, int, bytes]] = field(default_factory=list)  # heap
    _seq: int = 0

    def __post_init__(self) -> None:
        self.set_impairment(self.impairment)

    def set_impairment(self, impairment: Impairment) -> None:
        self.impairment = impairment
        self._selector = parse_match(impairment.match)

    def held(self) -> int:
        return len(self._held) + len(self._queue)

    def push(self, pkt: bytes, now: float) -> None:
        c, imp = self.counters, self.impairment
        if link_scope(pkt):
            c.link_scope += 1
            return
        c.seen += 1
        info = classify(pkt)
        if info is NOT_IP:
            c.not_ip += 1
        if not matches(self._selector, info):
            self._emit(pkt, now, now)
            return
        c.matched += 1
        if imp.drop and self.rng.random() < imp.drop:
            c.dropped += 1
            return
        copies = 1
        if imp.duplicate and self.rng.random() < imp.duplicate:
            copies = 2
            c.duplicated += 1
        for _ in range(copies):
            if imp.reorder and self.rng.random() < imp.reorder:
                if self.held() >= self.queue_limit:
                    c.overflow += 1
                    continue
                self._held.append(_Held(pkt, imp.reorder_gap, now + imp.reorder_timeout))
            else:
                self._schedule(pkt, now)

    def _schedule(self, pkt: bytes, now: float) -> None:
        """Give one copy its delay (impaired path)."""
        imp = self.impairment
        delay = imp.delay
        if imp.jitter:
            delay = max(0.0, delay + self.rng.uniform(-imp.jitter, imp.jitter))
        if delay > 0:
            self.counters.delayed += 1
        self._emit(pkt, now + delay, now)

    def _emit(self, pkt: bytes, at: float, now: float) -> None:
        """Queue ``pkt`` for ``at``; every packet that goes past counts down the held ones."""
        if self.held() >= self.queue_limit:
            self.counters.overflow += 1
            return
        heapq.heappush(self._queue, (at, self._seq, pkt))
        self._seq += 1
        released = []
        for h in self._held:
            h.countdown -= 1
            h.overtaken = True
            if h.countdown <= 0:
                released.append(h)
        self._release(released, now)

    def _release(self, released: list[_Held], now: float) -> None:
        self._held = [h for h in self._held if h not in released]
        for h in released:
            if h.overtaken:
                self.counters.reordered += 1
            self._schedule(h.pkt, now)

    def due(self, now: float) -> list[bytes]:
        self._release([h for h in self._held if h.deadline <= now], now)
        out = []
        while self._queue and self._queue[0][0] <= now:
            out.append(heapq.heappop(self._queue)[2])
        return out

    def next_deadline(self) -> float | None:
        times = [h.deadline for h in self._held]
        if self._queue:
            times.append(self._queue[0][0])
        return min(times, default=None)


def lanes_from_config(config: Mapping[str, Any], seed: int, queue_limit: int) -> dict[str, Lane]:
    return {
        d: Lane(imp, random.Random(seed * 2 + i), queue_limit)
        for i, (d, imp) in enumerate(parse_config(config).items())
    }


def parse_config(config: Mapping[str, Any]) -> dict[str, Impairment]:
    """``{"ab": {...}, "ba": {...}}`` (either may be missing) -> an Impairment per direction."""
    if not isinstance(config, Mapping):
        raise ValueError("the relay config must be a JSON object")
    unknown = sorted(set(config) - set(DIRECTIONS))
    if unknown:
        raise ValueError(f"unknown direction(s) {', '.join(unknown)} (ab, ba)")
    return {d: Impairment.from_dict(config.get(d, {})) for d in DIRECTIONS}


# ---------------------------------------------------------------------------------------
# The process: TUN devices, policy routes, the loop.


_FAMILIES = ((socket.AF_INET, "0.0.0.0/0"), (socket.AF_INET6, "::/0"))


def _setup_routing(tuns: Mapping[str, int], veths: Mapping[str, str]) -> None:
    """Policy-route what arrives on each veth (IPv4 and IPv6) into its direction's TUN, with
    a blackhole behind it."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for d, ifindex in tuns.items():
            table = TABLES[d]
            ipr.link("set", index=ifindex, mtu=TUN_MTU, state="up")
            for family, default in _FAMILIES:
                route = {"dst": default, "table": table, "family": family}
                ipr.route("replace", **route, oif=ifindex, priority=ROUTE_METRIC)
                ipr.route("replace", **route, type="blackhole", priority=BLACKHOLE_METRIC)
                rule = {"iifname": veths[d], "table": table, "family": family}
                with contextlib.suppress(Exception):
                    ipr.rule("del", **rule, priority=RULE_PRIORITY + table)
                ipr.rule("add", **rule, priority=RULE_PRIORITY + table)


def _teardown_routing(veths: Mapping[str, str]) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        for d, veth in veths.items():
            table = TABLES[d]
            for family, default in _FAMILIES:
                rule = {"iifname": veth, "table": table, "family": family}
                with contextlib.suppress(Exception):
                    ipr.rule("del", **rule, priority=RULE_PRIORITY + table)
                route = {"dst": default, "table": table, "family": family}
                with contextlib.suppress(Exception):
                    ipr.route("del", **route, type="blackhole", priority=BLACKHOLE_METRIC)


class _Signals(_StopSignals):
    """SIGTERM/SIGINT stop (``signalled``), SIGHUP asks for a reload, SIGUSR1 for the stats."""

    def __init__(self) -> None:
        super().__init__()
        self.reload = False
        self.dump = False

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            self.reload = True
        elif signum == signal.SIGUSR1:
            self.dump = True
        else:
            super()._handler(signum, frame)

    def __enter__(self) -> _Signals:
        super().__enter__()
        for sig in (signal.SIGHUP, signal.SIGUSR1):
            self._old[sig] = signal.signal(sig, self._handler)
        return self


def _write_json(path: Path, doc: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, path)


def run_relay(
    lanes: dict[str, Lane],
    veths: Mapping[str, str],
    *,
    max_seconds: float,
    stats_path: Path | None = None,
    config_path: Path | None = None,
) -> dict[str, Any]:
    """Create the TUNs, route through them, relay until a stop signal or the time limit."""
    import pytun

    started = time.monotonic()
    deadline = started + max_seconds
    snapshot = 0
    generation = 0
    reason = "running"

    def report() -> dict[str, Any]:
        return {
            "seconds": round(time.monotonic() - started, 3),
            "snapshot": snapshot,
            "generation": generation,
            "reason": reason,
            "config": {d: lane.impairment.to_dict() for d, lane in lanes.items()},
            **{d: dataclasses.asdict(lane.counters) for d, lane in lanes.items()},
        }

    with contextlib.ExitStack() as stack, _Signals() as sig:
        tuns: dict[str, Any] = {}
        for d in lanes:
            dev = pytun.TunTapDevice(name=f"imp-{d}", flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
            stack.callback(dev.close)
            tuns[d] = dev
            os.set_blocking(dev.fileno(), False)
            with contextlib.suppress(OSError):  # no IPv6 link-local address, so no chatter
                Path(f"/proc/sys/net/ipv6/conf/{dev.name}/addr_gen_mode").write_text("1")
        stack.callback(_teardown_routing, veths)
        _setup_routing({d: socket.if_nametoindex(t.name) for d, t in tuns.items()}, veths)
        sel = stack.enter_context(selectors.DefaultSelector())
        sel.register(sig.fileno(), selectors.EVENT_READ, None)
        for d, dev in tuns.items():
            sel.register(dev.fileno(), selectors.EVENT_READ, d)
        print(f"espfast.impair: {READY}: {json.dumps(report()['config'])}", file=sys.stderr)
        sys.stderr.flush()
        while True:
            now = time.monotonic()
            if now >= deadline:
                reason = "time limit"
                break
            waits = [deadline - now]
            waits += [t - now for lane in lanes.values() if (t := lane.next_deadline()) is not None]
            for key, _ in sel.select(max(0.0, min(waits))):
                if key.data is None:
                    sig.drain()
                    continue
                lane, fd = lanes[key.data], key.fd
                for _ in range(256):
                    try:
                        pkt = os.read(fd, TUN_MTU)
                    except BlockingIOError:
                        break
                    lane.push(pkt, time.monotonic())
            now = time.monotonic()
            for d, lane in lanes.items():
                for pkt in lane.due(now):
                    try:
                        os.write(tuns[d].fileno(), pkt)
                        lane.counters.forwarded += 1
                    except OSError:
                        lane.counters.write_errors += 1
            if sig.reload and config_path is not None:
                sig.reload = False
                try:
                    for d, imp in parse_config(json.loads(config_path.read_text())).items():
                        lanes[d].set_impairment(imp)
                    generation += 1
                except (OSError, ValueError) as e:  # keep the old config, say why
                    print(f"espfast.impair: reload refused: {e}", file=sys.stderr, flush=True)
            if sig.dump and stats_path is not None:
                sig.dump = False
                snapshot += 1
                _write_json(stats_path, report())
            if sig.signalled:
                reason = sig.signalled
                break
        snapshot += 1
        final = report()
        if stats_path is not None:
            _write_json(stats_path, final)
    return final


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m espfast.impair", description="transparent impairment relay (in r)"
    )
    p.add_argument("--veths", nargs=2, default=["veth-ra", "veth-rb"], metavar=("A", "B"))
    p.add_argument("--config", type=Path, help='JSON {"ab": {...}, "ba": {...}}; SIGHUP reloads')
    p.add_argument("--ab", default="{}", help="JSON impairment a -> b (without --config)")
    p.add_argument("--ba", default="{}", help="JSON impairment b -> a (without --config)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--queue-limit", type=int, default=10_000)
    p.add_argument("--max-seconds", type=float, default=300.0)
    p.add_argument("--stats", type=Path, help="write the counters here (SIGUSR1, and on exit)")
    args = p.parse_args(argv)
    try:
        if args.config is not None:
            config = json.loads(args.config.read_text())
        else:
            config = {"ab": json.loads(args.ab), "ba": json.loads(args.ba)}
        if not 1 <= args.queue_limit <= 1_000_000 or not 0 < args.max_seconds <= 86400:
            raise ValueError("--queue-limit must be in [1, 1e6], --max-seconds in (0, 86400]")
        lanes = lanes_from_config(config, args.seed, args.queue_limit)
    except (OSError, ValueError) as e:
        print(f"espfast.impair: {e}", file=sys.stderr)
        return 2
    veths = dict(zip(DIRECTIONS, args.veths, strict=True))
    try:
        final = run_relay(
            lanes,
            veths,
            max_seconds=args.max_seconds,
            stats_path=args.stats,
            config_path=args.config,
        )
    except Exception as e:  # setup failures (TUN, netlink): one line
        print(f"espfast.impair: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(json.dumps(final), flush=True)
    return 0


# ---------------------------------------------------------------------------------------
# For tests and benchmarks: run the relay in a ThreeHosts' router namespace.


@dataclass
class Relay:
    """A running relay process in ``ns`` (started by :func:`start_relay`)."""

    ns: Namespace
    proc: subprocess.Popen[bytes]
    workdir: Path

    @property
    def config_path(self) -> Path:
        return self.workdir / "impair.json"

    @property
    def stats_path(self) -> Path:
        return self.workdir / "impair-stats.json"

    def _read_stats(self) -> dict[str, Any]:
        with contextlib.suppress(FileNotFoundError, ValueError):
            doc: dict[str, Any] = json.loads(self.stats_path.read_text())
            return doc
        return {"snapshot": 0, "generation": 0}

    def _wait(self, key: str, above: int, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            doc = self._read_stats()
            if doc.get(key, 0) > above:
                return doc
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"the relay did not answer (exit {self.proc.poll()})")
            time.sleep(0.02)

    def stats(self) -> dict[str, Any]:
        """The counters now: {"ab": {...}, "ba": {...}, ...}."""
        before = self._read_stats()["snapshot"]
        self.proc.send_signal(signal.SIGUSR1)
        return self._wait("snapshot", before)

    def update(self, ab: Impairment | None = None, ba: Impairment | None = None) -> None:
        """Change the impairments of a running relay (and wait until it has them)."""
        current = json.loads(self.config_path.read_text())
        for d, imp in (("ab", ab), ("ba", ba)):
            if imp is not None:
                current[d] = imp.to_dict()
        _write_json(self.config_path, current)
        before = self.stats()["generation"]
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 5.0
        while self.stats()["generation"] <= before:
            if time.monotonic() > deadline:
                raise RuntimeError("the relay did not take the new config")
            time.sleep(0.02)

    def stop(self) -> dict[str, Any]:
        """SIGTERM by PID; the final counters."""
        status = self.ns.stop(self.proc)
        assert self.proc.stdout is not None
        out = self.proc.stdout.read().decode()
        if status != 0:
            raise RuntimeError(f"the relay exited {status}: {out.strip()}")
        doc: dict[str, Any] = json.loads(out)
        return doc


def start_relay(
    hosts: ThreeHosts,
    workdir: Path,
    *,
    ab: Impairment | None = None,
    ba: Impairment | None = None,
    seed: int = 0,
    queue_limit: int = 10_000,
    max_seconds: float = 300.0,
    timeout: float = 10.0,
) -> Relay:
    """Start the relay in ``hosts.r`` and wait until it routes through itself."""
    relay_config = {"ab": (ab or Impairment()).to_dict(), "ba": (ba or Impairment()).to_dict()}
    workdir.mkdir(parents=True, exist_ok=True)
    _write_json(workdir / "impair.json", relay_config)
    (workdir / "impair-stats.json").unlink(missing_ok=True)  # a previous run's counters
    proc = hosts.r.popen(
        sys.executable, "-m", "espfast.impair",
        "--veths", hosts.veth_ra, hosts.veth_rb,
        "--config", str(workdir / "impair.json"), "--stats", str(workdir / "impair-stats.json"),
        "--seed", str(seed), "--queue-limit", str(queue_limit),
        "--max-seconds", str(max_seconds),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    hosts.r.wait_ready(proc, READY, "the relay", timeout)
    return Relay(hosts.r, proc, workdir)


@contextlib.contextmanager
def relay(hosts: ThreeHosts, workdir: Path, **kwargs: Any) -> Iterator[Relay]:
    """:func:`start_relay` as a context manager (stopped by PID on exit)."""
    r = start_relay(hosts, workdir, **kwargs)
    try:
        yield r
    finally:
        hosts.r.stop(r.proc)


if __name__ == "__main__":
    sys.exit(main())
