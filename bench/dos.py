"""What an unauthenticated (or one authenticated) peer can make ``espfast up`` spend:
the figures of the security review's denial-of-service items, before and after.

    .venv/bin/python -m bench.dos spoof        # handshake latency under spoofed MODP floods
    .venv/bin/python -m bench.dos hold         # one address holding half-open IKE SAs
    .venv/bin/python -m bench.dos fragments    # the responder's RSS under fragment sets
    .venv/bin/python -m bench.dos scale        # IKE answers/s with 1 and 10,000 IKE SAs

``spoof``, ``hold`` and ``fragments`` (as root) run ``espfast up`` (b, 198.18.0.2) in two
throw-away namespaces and attack it from a with espfast/tools/ikeload.py over UDP;
``scale`` drives the daemon's I/O shell (espfast.daemon.Daemon, with a dataplane that
only records SAs) in this process: it answers dead-peer-detection INFORMATIONALs of
established IKE SAs, one after the other, with 1 and with ``--sas`` of them up (each with
its own identity and a Child SA). Each prints one JSON line; ``--json FILE`` appends it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

from espfast.config import load_up
from espfast.control.ike_sa import IkeSa
from espfast.control.responder import Responder
from espfast.control.rng import SystemRng
from espfast.daemon import Daemon
from espfast.dataplane import Direction, SaParams, SaStats
from espfast.netns import Namespace, TwoHosts
from espfast.static import Running, start_in, write_private
from espfast.up import pair_configs

PSK = "a pre-shared key for the denial-of-service benchmarks"
SPOOF_NET = "198.18.128.0/17"  # where spoofed requests claim to come from
MODP_PROPOSALS = "aes128gcm16-prfsha256-x25519-modp3072"  # b also takes MODP-3072


def tool(ns: Namespace, *args: str, timeout: float = 120.0) -> dict[str, object]:
    out = ns.run(sys.executable, "-m", "espfast.tools.ikeload", *args, timeout=timeout)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        line = next(x for x in f if x.startswith("VmRSS:"))
    return int(line.split()[1])


@contextlib.contextmanager
def responder(purpose: str, ike: str = "aes128gcm16-prfsha256-x25519",
              extra: str = "") -> Iterator[tuple[TwoHosts, Running, Path]]:  # fmt: skip
    """b answering ``espfast up`` (with ``extra`` [interface] lines); yields the hosts, b's
    process and a's config (the legitimate initiator's)."""
    a_conf, b_conf = pair_configs(PSK, ike=ike)
    b_conf = b_conf.replace("[interface]\n", f"[interface]\n{extra}")
    with tempfile.TemporaryDirectory() as tmp, TwoHosts.create(purpose) as hosts:
        a_path = write_private(Path(tmp) / "a.toml", a_conf)
        b = start_in(hosts.b, write_private(Path(tmp) / "b.toml", b_conf), command="up")
        try:
            yield hosts, b, a_path
        finally:
            if b.proc.poll() is None:
                b.stop()


def spoof(args: argparse.Namespace) -> dict[str, object]:
    """Legitimate handshakes (x25519) alone, then while spoofed MODP requests arrive."""
    with responder("dos-s", MODP_PROPOSALS) as (hosts, b, a_path):
        hosts.b.run("ip", "route", "add", SPOOF_NET, "via", hosts.addr_a)
        hs = ["handshakes", str(a_path), hosts.addr_b, "--source", hosts.addr_a,
              "--count", str(args.count), "--timeout", str(args.timeout)]  # fmt: skip
        quiet = tool(hosts.a, *hs)
        cpu0 = cpu_seconds(b.pid)
        flood = hosts.a.popen(
            sys.executable, "-m", "espfast.tools.ikeload", "spoof", hosts.addr_b,
            "--rate", str(args.rate), "--seconds", str(args.seconds), "--group", "15",
            "--ke", args.ke, "--spoof-net", SPOOF_NET,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        t0 = time.monotonic()
        time.sleep(1.0)  # the flood is under way
        loaded = tool(hosts.a, *hs)
        flood_out, _ = flood.communicate(timeout=args.seconds + 30)
        elapsed = time.monotonic() - t0
        cpu = cpu_seconds(b.pid) - cpu0
    return {
        "bench": "spoof",
        "rate": args.rate,
        "ke": args.ke,
        "quiet": quiet,
        "under_flood": loaded,
        "flood": json.loads(flood_out),
        "responder_cpu_share": round(cpu / elapsed, 3),
    }


def hold(args: argparse.Namespace) -> dict[str, object]:
    """One address opens ``--count`` half-open IKE SAs (answering COOKIEs); then a client
    at another address tries to connect."""
    extra = f"half_open_limit = {args.half_open_limit}\n"
    with responder("dos-h", extra=extra) as (hosts, _, a_path):
        legit = "198.18.0.3"
        hosts.a.run("ip", "addr", "add", f"{legit}/24", "dev", "veth-a")
        t0 = time.monotonic()
        held = tool(hosts.a, "hold", str(a_path), hosts.addr_b, "--source", hosts.addr_a,
                    "--count", str(args.count), "--seconds", str(args.seconds))  # fmt: skip
        took = time.monotonic() - t0
        other = tool(hosts.a, "handshakes", str(a_path), hosts.addr_b, "--source", legit,
                     "--count", "3", "--timeout", str(args.timeout))  # fmt: skip
    return {"bench": "hold", "half_open_limit": args.half_open_limit, "attacker": held,
            "seconds": round(took, 1), "other_client": other}  # fmt: skip


def fragments(args: argparse.Namespace) -> dict[str, object]:
    """b's RSS before and after incomplete fragment sets on half-open IKE SAs."""
    with responder("dos-f") as (hosts, b, a_path):
        before = rss_kib(b.pid)
        sent = tool(hosts.a, "fragments", str(a_path), hosts.addr_b, "--source", hosts.addr_a,
                    "--sas", str(args.sas), "--messages", str(args.messages),
                    "--size", str(args.size))  # fmt: skip
        time.sleep(1.0)
        after = rss_kib(b.pid)
    return {"bench": "fragments", "sent": sent, "rss_kib_before": before,
            "rss_kib_after": after, "rss_growth_kib": after - before}  # fmt: skip


# -- scale: the I/O shell in this process -------------------------------------------------


class _Dataplane:
    """Records SAs; counters stay zero."""

    def __init__(self) -> None:
        self.sas: set[tuple[int, Direction]] = set()

    def add_sa(self, sa: SaParams) -> None:
        self.sas.add((sa.spi, sa.direction))

    def remove_sa(self, spi: int, direction: Direction) -> None:
        self.sas.discard((spi, direction))

    def update_peer(
        self,
        spi: int,
        peer: tuple[str, int],
        *,
        direction: Direction = Direction.OUT,
        raw_esp: bool | None = None,
    ) -> None:
        pass

    def send_ike(self, data: bytes, peer: tuple[str, int]) -> None:
        raise AssertionError("no NAT here: nothing goes to 4500")

    def sa_stats(self, spi: int, direction: Direction) -> SaStats:
        return SaStats(0, 0, 0, 0, 0, 0, 0, 0, 0, exhausted=False)

    def watch_traffic(self) -> None:
        pass  # nothing ever moves


def sent_to(box: list[tuple[bytes, tuple[str, int]]]) -> Callable[[bytes, tuple[str, int]], None]:
    return lambda data, addr: box.append((data, addr))


@dataclasses.dataclass
class _Gateway:
    daemon: Daemon
    loop: asyncio.AbstractEventLoop
    sent: list[tuple[bytes, tuple[str, int]]]
    peers: list[IkeSa]  # initiators of some of its IKE SAs, to send from
    built_s: float
    answered: int = 0

    def answer_for(self, seconds: float) -> float:
        """DPD requests from the peers in turn, each answered before the next: a rate."""
        t0 = time.monotonic()
        n = 0
        while time.monotonic() - t0 < seconds:
            i = self.peers[self.answered % len(self.peers)]
            now = self.loop.time()
            i.check_liveness(now)
            for data, _ in i.datagrams_to_send(now):
                self.daemon.datagram_received(data, i.local, 500)
            for data, _ in self.sent:
                i.receive_datagram(data, ("198.18.0.2", 500), now)
            self.sent.clear()
            assert i.tm.active is None, "unanswered"
            self.answered += 1
            n += 1
        return n / (time.monotonic() - t0)


def _gateway(n: int) -> _Gateway:
    """A daemon (b, answering) with n IKE SAs up, each with its own identity and a Child SA:
    built against a front door of their own, the responder's halves then handed to the
    daemon (as if each had been set up through it), and its events pumped."""
    _, b_conf = pair_configs(PSK)
    b_conf = b_conf.replace('remote_id = "198.18.0.1"\n', "")
    a_conf, _ = pair_configs(PSK)
    with tempfile.TemporaryDirectory() as tmp:
        cfg_b = load_up(write_private(Path(tmp) / "b.toml", b_conf))
        ike_a = load_up(write_private(Path(tmp) / "a.toml", a_conf)).connections[0].ike
    loop = asyncio.new_event_loop()
    sent: list[tuple[bytes, tuple[str, int]]] = []
    daemon = Daemon(cfg_b, _Dataplane(), lambda nets: None, sent_to(sent), SystemRng(), loop)
    daemon.start()
    front = Responder([c.ike for c in cfg_b.connections], ("198.18.0.2", 500), SystemRng(),
                      cookie_threshold=10**9, half_open_limit=10**9)  # fmt: skip
    t0 = time.monotonic()
    peers: list[IkeSa] = []
    for k in range(n):
        addr = (f"198.18.{2 + k // 250}.{1 + k % 250}", 500)
        me = replace(ike_a, local_id=(2, f"c{k}.bench.test".encode()), dpd_delay=0)  # ID_FQDN
        i = IkeSa.initiate(me, local=addr, remote=("198.18.0.2", 500), rng=SystemRng(), now=0.0)
        r: IkeSa | None = None
        for _ in range(2):
            for data, _ in i.datagrams_to_send(0.0):
                if r is None:
                    r = front.receive_datagram(data, addr, 0.0)
                else:
                    r.receive_datagram(data, addr, 0.0)
            assert r is not None
            for data, _ in [*front.datagrams_to_send(0.0), *r.datagrams_to_send(0.0)]:
                i.receive_datagram(data, ("198.18.0.2", 500), 0.0)
        assert r is not None and r.is_established and i.is_established, k
        daemon.mgr._add(r)
        if k < 100:
            peers.append(i)
    daemon._pump()
    return _Gateway(daemon, loop, sent, peers, time.monotonic() - t0)


def scale(args: argparse.Namespace) -> dict[str, object]:
    """Two daemons, with 1 and with ``--sas`` IKE SAs, measured in alternating windows
    (``--rounds`` of ``--seconds`` each; the median rate of each), so that the load of a
    shared machine weighs on both alike."""
    small, big = _gateway(1), _gateway(args.sas)
    rates: dict[int, list[float]] = {1: [], args.sas: []}
    for _ in range(args.rounds):
        for n, gw in ((1, small), (args.sas, big)):
            rates[n].append(gw.answer_for(args.seconds))
    for gw in (small, big):
        gw.loop.close()
    return {
        "bench": "scale",
        "answers_per_s_1": round(statistics.median(rates[1]), 1),
        f"answers_per_s_{args.sas}": round(statistics.median(rates[args.sas]), 1),
        "rounds": {str(n): [round(r) for r in rs] for n, rs in rates.items()},
        f"build_s_{args.sas}": round(big.built_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.dos", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = p.add_subparsers(dest="bench", required=True)
    s = sub.add_parser("spoof", help="handshake latency under spoofed MODP IKE_SA_INITs")
    s.add_argument("--rate", type=float, default=2000.0, help="spoofed requests a second")
    s.add_argument("--seconds", type=float, default=20.0, help="length of the flood")
    s.add_argument("--ke", choices=["one", "random"], default="one", help="their KE value")
    s.add_argument("--count", type=int, default=5, help="legitimate handshakes, each phase")
    s.add_argument("--timeout", type=float, default=10.0, help="seconds per handshake")
    h = sub.add_parser("hold", help="one address holding half-open IKE SAs")
    h.add_argument("--count", type=int, default=300)
    h.add_argument("--half-open-limit", type=int, default=100, help="b's half_open_limit")
    h.add_argument("--seconds", type=float, default=15.0)
    h.add_argument("--timeout", type=float, default=10.0)
    f = sub.add_parser("fragments", help="RSS under incomplete fragment sets")
    f.add_argument("--sas", type=int, default=10)
    f.add_argument("--messages", type=int, default=4)
    f.add_argument("--size", type=int, default=60000)
    c = sub.add_parser("scale", help="IKE answers per second with 1 and --sas IKE SAs")
    c.add_argument("--sas", type=int, default=10000)
    c.add_argument("--seconds", type=float, default=1.0, help="per measuring window")
    c.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", help="append the result to this file")
    a = p.parse_args(argv)
    result = {"spoof": spoof, "hold": hold, "fragments": fragments, "scale": scale}[a.bench](a)
    result["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    line = json.dumps(result)
    print(line)
    if a.json:
        with open(a.json, "a") as out:
            out.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
