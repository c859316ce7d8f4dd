"""``python -m bench.profile``: where a tunnel's CPU time goes, per inner packet.

Brings one tunnel of bench/tunnels/ up between two fresh namespaces, runs iperf3 TCP
through it and meanwhile samples the tunnel's processes with ``perf record -e cpu-clock
-g`` (kernel and user space, every thread) and counts their system calls, context
switches and wake-ups with ``perf stat``. The samples are sorted into categories by
symbol (crypto, copies, checksums, locks and wake-ups, system call entry and polling,
the kernel's network stack, the tunnel's own code, the Go runtime), and each category's
share of the tunnel's CPU seconds is divided by the data segments moved (receiver bytes /
MSS of the 1400-byte inner MTU) into nanoseconds per packet. Beside it, the crypto-only
ceiling: ``openssl speed -evp`` for the same AEAD on 1400-byte buffers, in ns per packet,
sealed once and opened once.

The kernel's work in a write to TUN (the inner TCP receive path runs in the writer's
context) and in a send on the veth (the peer's UDP receive) is charged to the tunnel's
processes: it is part of what a packet costs, but not the tunnel's own doing. Needs root
and perf (apt linux-perf); perf's overhead slows the tunnel somewhat, so throughput
figures belong to ``python -m bench``, shares to this.

After the table, each thread's CPU and run-queue wait and how many of the machine's CPUs
were busy (bench/threads.py): where the tunnel saturates (``--streams 4`` with
``espfast-aes128gcm16-w2`` for the workers).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from bench import threads
from bench.__main__ import cpu_seconds, iperf3, iperf3_server
from bench.tunnels import TUNNELS, Endpoints
from espfast.netns import TwoHosts, have_root, wait_for, which

INNER_MTU = 1400
MSS = INNER_MTU - 40 - 12  # IPv4 + TCP headers with timestamps

# (category, regular expression on the symbol or the object it is in), first match wins.
CATEGORIES: list[tuple[str, str]] = [
    (
        "crypto",
        r"aes|gcm|ghash|gfmul|chacha|poly1305|ossl_|EVP_|CRYPTO_|OPENSSL_|libcrypto"
        r"|golang\.org/x/crypto|crypto/cipher|crypto/aes|blake2s|curve25519",
    ),
    (
        "copies",
        r"memcpy|memmove|copy_user|_copy_to_iter|_copy_from_iter|copy_page|rep_movs"
        r"|skb_copy|copy_to_user|copy_from_user|__memset|memset",
    ),
    ("checksums", r"csum|checksum|sum32_"),
    (
        "locks and wake-ups",
        r"futex|__lll_|pthread_mutex|pthread_cond|pthread_rwlock|pthread_spin|spin_lock"
        r"|try_to_wake_up|ttwu|schedule|finish_task_switch|__switch_to|switch_mm|sched_"
        r"|dequeue_task|enqueue_task|update_curr|pick_next|wake_up|runtime\.(lock|unlock"
        r"|futex|park|notewakeup|notesleep|semacquire|semrelease|chansend|chanrecv|ready"
        r"|findRunnable|stealWork|runqgrab|mcall|gopark|goready|wakep|startm|stopm)",
    ),
    (
        "syscall entry, poll",
        r"entry_SYSCALL|do_syscall|syscall_exit|syscall_return|__x64_sys|do_sys_poll"
        r"|do_poll|poll_|__GI___poll|__poll|ep_poll|epoll|recvmmsg|sendmmsg|__sys_|__libc_"
        r"|runtime\.(netpoll|syscall|entersyscall|exitsyscall)|syscall\.|internal/poll",
    ),
    (
        "kernel network stack",
        r"tcp|udp|ip_|ip6|ipv6|inet|sk_|skb|sock|net_|netif|napi|dev_|tun_|veth|gro|gso"
        r"|nf_|neigh|fib|__kfree|kmem_cache|kfree|kmalloc|alloc_skb|page_frag|dst_",
    ),
    ("tunnel code", r"^ef_|_dataplane|wireguard|device\.|conn\.|tun\.|espfast"),
    ("Go runtime", r"^runtime\.|\[unknown\]"),
]


def category(symbol: str, dso: str) -> str:
    for name, pattern in CATEGORIES:
        if re.search(pattern, symbol) or (name == "crypto" and "libcrypto" in dso):
            return name
    return "kernel, other" if dso.startswith("[kernel") else "other user space"


@dataclass
class Profile:
    tunnel: str
    seconds: float
    gbps: float = 0.0
    cpu_s: float = 0.0
    packets: float = 0.0  # MSS-sized data segments moved
    shares: dict[str, float] = field(default_factory=dict)  # category -> fraction
    top: list[tuple[float, str, str]] = field(default_factory=list)  # (%, symbol, dso)
    counts: dict[str, int] = field(default_factory=dict)  # perf stat events
    ceiling_ns: float | None = None  # seal + open of one 1400-byte packet, crypto only
    per_thread: list[threads.ThreadUse] = field(default_factory=list)  # the tunnel's threads
    busy_cores: float = 0.0  # the whole machine's CPUs busy during the run

    @property
    def ns_per_packet(self) -> float:
        return self.cpu_s * 1e9 / max(self.packets, 1.0)


OPENSSL_NAMES = {"gcm": "aes-128-gcm", "chacha": "chacha20-poly1305", "wireguard": None}


def crypto_ceiling_ns(tunnel: str) -> float | None:
    """ns to seal and open one 1400-byte packet with ``openssl speed -evp`` (one core)."""
    cipher = "chacha20-poly1305" if "chacha" in tunnel or "wireguard" in tunnel else None
    cipher = cipher or ("aes-256-gcm" if "aes256gcm" in tunnel else "aes-128-gcm")
    out = subprocess.run(
        ["openssl", "speed", "-evp", cipher, "-bytes", str(INNER_MTU), "-seconds", "1"],
        capture_output=True, text=True, timeout=60, check=False,
    ).stdout  # fmt: skip
    m = re.search(r"^\S+\s+([\d.]+)k\s*$", out, re.M)
    if not m:
        return None
    bytes_per_s = float(m.group(1)) * 1000
    return 2 * INNER_MTU / bytes_per_s * 1e9  # sealed once, opened once


@contextlib.contextmanager
def perf_during(pids: list[int], seconds: float, data: Path) -> Iterator[dict[str, str]]:
    """perf record (samples) and perf stat (counts) on ``pids`` for ``seconds``."""
    target = ",".join(str(p) for p in pids)
    rec = subprocess.Popen(
        ["perf", "record", "-q", "-e", "cpu-clock", "-F", "999", "-g", "-p", target,
         "-o", str(data), "--", "sleep", str(seconds)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    out: dict[str, str] = {}

    def stat() -> None:
        proc = subprocess.run(
            ["perf", "stat", "-x", ",", "-e",
             "raw_syscalls:sys_enter,context-switches,sched:sched_wakeup,cpu-migrations",
             "-p", target, "--", "sleep", str(seconds)],
            capture_output=True, text=True, timeout=seconds + 30, check=False,
        )  # fmt: skip
        out["stat"] = proc.stderr

    t = threading.Thread(target=stat)
    t.start()
    try:
        yield out
    finally:
        t.join()
        rec.wait(timeout=seconds + 60)


def parse_stat(text: str) -> dict[str, int]:
    counts = {}
    for line in text.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[0].strip().isdigit():
            counts[parts[2]] = int(parts[0])
    return counts


def parse_report(data: Path) -> tuple[dict[str, float], list[tuple[float, str, str]]]:
    report = subprocess.run(
        ["perf", "report", "-i", str(data), "--no-children", "--sort", "sym,dso",
         "-g", "none", "--stdio", "--percent-limit", "0"],
        capture_output=True, text=True, timeout=300, check=False,
    ).stdout  # fmt: skip
    shares: dict[str, float] = {}
    top = []
    for line in report.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+\[[.k]\]\s+(.+?)\s{2,}(\S.*?)\s*$", line)
        if not m:
            continue
        pct, sym, dso = float(m.group(1)), m.group(2).strip(), m.group(3).strip()
        cat = category(sym, dso)
        shares[cat] = shares.get(cat, 0.0) + pct / 100
        top.append((pct, sym, dso))
    return shares, top[:25]


def profile(name: str, seconds: float, streams: int) -> Profile:
    result = Profile(name, seconds)
    result.ceiling_ns = crypto_ceiling_ns(name)
    tunnel = TUNNELS[name]()
    with (
        TwoHosts.create("prof") as hosts,
        tunnel.up(hosts) as ep,
        tempfile.TemporaryDirectory(prefix="ef-prof-") as tmp,
    ):
        check(hosts, ep)
        with iperf3_server(hosts.b, ep.inner_b):
            data = Path(tmp) / "perf.data"
            before = cpu_seconds(ep.pids)
            with perf_during(ep.pids, seconds, data) as stat:
                tasks, cpus, started = (
                    threads.snapshot(ep.pids), threads.machine(), time.monotonic()
                )  # fmt: skip
                end, _ = iperf3(hosts, ep, seconds, "-P", str(streams))
                took = time.monotonic() - started
                result.per_thread = threads.usage(tasks, threads.snapshot(ep.pids), took)
                result.busy_cores = threads.busy_cores(cpus, threads.machine(), took)
            result.cpu_s = cpu_seconds(ep.pids) - before
            received = end["sum_received"]
            result.gbps = received["bits_per_second"] / 1e9
            result.packets = received["bytes"] / MSS
            result.counts = parse_stat(stat.get("stat", ""))
            result.shares, result.top = parse_report(data)
    return result


def check(hosts: TwoHosts, ep: Endpoints) -> None:
    ok = wait_for(
        lambda: hosts.a.run("ping", "-c", "1", "-W", "1", ep.inner_b, check=False).returncode == 0,
        timeout=15,
    )
    if not ok:
        raise RuntimeError(f"{ep.inner_b} unreachable through the tunnel")


def markdown(p: Profile) -> str:
    per = p.ns_per_packet
    lines = [
        f"### {p.tunnel}: {p.gbps:.2f} Gbit/s under perf, {p.cpu_s:.2f} tunnel CPU-s, "
        f"{p.packets / 1e6:.2f} M data segments of {MSS} B in {p.seconds:g} s",
        "",
        "| where | share of tunnel CPU | ns per data segment |",
        "|---|---|---|",
    ]
    for cat, share in sorted(p.shares.items(), key=lambda kv: -kv[1]):
        lines.append(f"| {cat} | {100 * share:.1f} % | {share * per:.0f} |")
    lines.append(f"| **total** | 100 % | **{per:.0f}** |")
    if p.ceiling_ns:
        lines.append(
            f"| crypto-only ceiling (openssl speed -evp, seal + open of {INNER_MTU} B) "
            f"| | {p.ceiling_ns:.0f} |"
        )
    pkts = max(p.packets, 1.0)
    c = p.counts
    lines += [
        "",
        "Per data segment: "
        + ", ".join(
            f"{c[k] / pkts:.3f} {label}"
            for k, label in (
                ("raw_syscalls:sys_enter", "system calls"),
                ("context-switches", "context switches"),
                ("sched:sched_wakeup", "wake-ups"),
            )
            if k in c
        ),
        "",
        "Top symbols: "
        + "; ".join(f"{pct:.1f}% {sym} ({Path(dso).name})" for pct, sym, dso in p.top[:12]),
        "",
    ]
    if p.per_thread:
        lines += [*threads.markdown(p.per_thread, p.busy_cores, os.cpu_count() or 1), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("-t", "--tunnels", default="espfast-aes128gcm16", help="comma-separated")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--streams", type=int, default=1)
    args = parser.parse_args(argv)
    if not have_root() or which("perf") is None or which("iperf3") is None:
        print("bench.profile: needs root, perf and iperf3", file=sys.stderr)
        return 2
    for name in args.tunnels.split(","):
        if name not in TUNNELS:
            print(f"bench.profile: no tunnel {name!r}", file=sys.stderr)
            return 2
        print(markdown(profile(name, args.seconds, args.streams)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
