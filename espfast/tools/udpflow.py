"""Sequence-numbered UDP datagrams between two namespaces, to count loss and reordering.

Run as a script inside a namespace (``python udpflow.py recv|send ...``), or drive both
ends from a test with :func:`flow`, which returns the sequence numbers in arrival order.
Bounded: the sender sends ``count`` datagrams; once it is done, the receiver stops after
``idle`` seconds without a datagram (or after ``count * max_factor`` of them).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import itertools
import json
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from espfast.netns import Namespace

HEADER = b"efseq"


def family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def recv(bind: str, port: int, count: int, idle: float, max_factor: int = 3) -> list[int]:
    """Collect sequence numbers until stdin says ``stop`` (the sender is done) and then
    ``idle`` seconds pass without a datagram, or ``count * max_factor`` arrived."""
    return [seq for seq, _ in recv_timed(bind, port, count, idle, max_factor)]


def recv_timed(
    bind: str, port: int, count: int, idle: float, max_factor: int = 3
) -> list[tuple[int, float]]:
    """:func:`recv` with each datagram's arrival time (``time.monotonic()``: one clock
    for every namespace of the machine)."""
    sock = socket.socket(family(bind), socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((bind, port))
    print("listening", flush=True)
    got: list[tuple[int, float]] = []
    stopping = False
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        sel.register(sys.stdin, selectors.EVENT_READ)
        while len(got) < count * max_factor:
            events = sel.select(idle if stopping else 60.0)
            if not events:
                break
            for key, _ in events:
                if key.fileobj is not sock:  # stdin
                    sys.stdin.readline()
                    sel.unregister(sys.stdin)
                    stopping = True
                    continue
                data = sock.recv(2048)
                if data.startswith(HEADER):
                    got.append((int(data[len(HEADER) : len(HEADER) + 8], 16), time.monotonic()))
    return got


def send(
    dst: str, port: int, count: int, interval: float, size: int, sport: int, src: str = ""
) -> None:
    sock = socket.socket(family(dst), socket.SOCK_DGRAM)
    if sport or src:
        sock.bind((src, sport))
    unsent: collections.Counter[str] = collections.Counter()
    for i in range(count):
        try:
            sock.sendto((HEADER + b"%08x" % i).ljust(size, b"."), (dst, port))
        except OSError as e:  # e.g. no route for a moment: that datagram is lost, go on
            unsent[errno.errorcode.get(e.errno or 0, str(e))] += 1
        time.sleep(interval)
    if unsent:
        print(f"unsent: {dict(unsent)}", file=sys.stderr)


def flow(
    sender: Namespace,
    receiver: Namespace,
    dst: str,
    *,
    count: int = 200,
    port: int = 5001,
    sport: int = 0,
    interval: float = 0.001,
    size: int = 64,
    idle: float = 1.0,
    src: str = "",
) -> list[int]:
    """Send ``count`` datagrams from ``sender`` (from ``src`` if given) to ``dst``:``port``
    (in ``receiver``)."""
    got = _flow(sender, receiver, dst, "recv", count, port, sport, interval, size, idle, src)
    return [int(seq) for seq in got]


def timed_flow(
    sender: Namespace, receiver: Namespace, dst: str, *, count: int, port: int,
    interval: float, idle: float = 3.0,
) -> list[tuple[int, float]]:  # fmt: skip
    """:func:`flow` that returns (sequence number, arrival ``time.monotonic()``) pairs."""
    got = _flow(sender, receiver, dst, "recvt", count, port, 0, interval, 64, idle, "")
    return [(int(seq), float(t)) for seq, t in got]


def _flow(
    sender: Namespace, receiver: Namespace, dst: str, mode: str, count: int, port: int,
    sport: int, interval: float, size: int, idle: float, src: str,
) -> list[Any]:  # fmt: skip
    script = str(Path(__file__).resolve())
    rx = receiver.popen(
        sys.executable, script, mode, dst, str(port), str(count), str(idle),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert rx.stdout is not None
    assert rx.stdout.readline().strip() == b"listening"
    sent = sender.run(
        sys.executable, script, "send", dst, str(port), str(count), str(interval), str(size),
        str(sport), src, timeout=count * interval * 3 + 60,
    )  # fmt: skip
    if sent.stderr:  # datagrams the sender could not send (shown with a failing test)
        print(f"sender to {dst}:{port}: {sent.stderr.strip()}")
    out, err = rx.communicate(b"stop\n", timeout=idle + 30)
    assert rx.returncode == 0, err.decode()
    got: list[Any] = json.loads(out)
    return got


@contextlib.contextmanager
def flow_in_background(
    sender: Namespace, receiver: Namespace, dst: str, *, count: int, interval: float
) -> Iterator[list[int]]:
    """:func:`flow` in a thread while the body of the ``with`` acts (takes links down,
    flushes a NAT); the list it yields holds the sequence numbers once the block is left."""
    got: list[int] = []
    runner = threading.Thread(
        target=lambda: got.extend(
            flow(sender, receiver, dst, count=count, interval=interval, idle=3.0)
        )
    )
    runner.start()
    try:
        yield got
    finally:
        runner.join(120)
    assert not runner.is_alive(), "the flow did not end"


@dataclass
class Flows:
    """What :func:`flow_with_tcp` saw: the datagrams each way in arrival order."""

    forward: list[int]
    backward: list[int]
    elapsed: float  # seconds the datagram flows took
    iperf: dict[str, Any]  # iperf3's JSON report
    # UDP datagrams the kernel dropped for a full socket receive buffer meanwhile, in the
    # sender's and the receiver's namespace (a peer that cannot keep up, not the tunnel)
    overflows: tuple[int, int] = (0, 0)


def flow_with_tcp(
    sender: Namespace, receiver: Namespace, src: str, dst: str, *, count: int,
    interval: float, tcp_seconds: int, tcp_rate: str,
) -> Flows:  # fmt: skip
    """:func:`flow` both ways at once (``count`` datagrams each way, ``src`` to ``dst``
    and back) while an iperf3 TCP run (``tcp_seconds`` long, at most ``tcp_rate`` bits/s,
    e.g. "40M") goes from ``sender`` to ``receiver``."""
    server = receiver.popen(
        "iperf3", "-s", "-1", "-B", dst, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while ":5201" not in receiver.run("ss", "-Htln").stdout:
        assert time.monotonic() < deadline, "iperf3 -s did not start"
        time.sleep(0.05)
    client = sender.popen(
        "iperf3", "-c", dst, "-B", src, "-t", str(tcp_seconds), "-b", tcp_rate, "-J",
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    before = udp_overflows(sender), udp_overflows(receiver)
    started = time.monotonic()
    with ThreadPoolExecutor(1) as pool:
        back = pool.submit(
            flow, receiver, sender, src, count=count, port=5002, interval=interval, idle=2.0,
            src=dst,
        )  # fmt: skip
        got = flow(sender, receiver, dst, count=count, interval=interval, idle=2.0, src=src)
        backward = back.result(timeout=count * interval * 10 + 60)
    elapsed = time.monotonic() - started
    overflows = (udp_overflows(sender) - before[0], udp_overflows(receiver) - before[1])
    out, _ = client.communicate(timeout=tcp_seconds + 60)
    receiver.stop(server)
    report: dict[str, Any] = json.loads(out)
    return Flows(got, backward, elapsed, report, overflows)


def udp_overflows(ns: Namespace) -> int:
    """UDP datagrams (IPv4 and IPv6) the kernel has dropped in ``ns`` because a socket's
    receive buffer was full (RcvbufErrors in /proc/net/snmp and snmp6)."""
    out = ns.run("cat", "/proc/net/snmp", "/proc/net/snmp6").stdout
    total = 0
    header: list[str] = []
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] == "Udp6RcvbufErrors":
            total += int(fields[1])
        elif fields and fields[0] == "Udp:":
            if header:
                total += int(fields[header.index("RcvbufErrors")])
            else:
                header = fields
    return total


def check_flows(
    flows: Flows, count: int, logs: str = "", *, slow_receiver: bool = False,
    backward_reorders: int = 0,
) -> None:  # fmt: skip
    """Each way, every one of ``count`` datagrams arrived once and in order; the TCP run
    completed. ``logs`` go into the failure message. ``slow_receiver``: the receiver's
    namespace holds a peer that may not keep up (charon's kernel-libipsec reads ESP from a
    UDP socket with the default receive buffer and stalls while it rekeys): datagrams the
    receiver's kernel counted as dropped at a full receive buffer may be missing forward,
    no more than that many, and none backward. ``backward_reorders``: datagrams that may
    arrive after a newer one, backward only (a known issue where a caller says so)."""
    for way, got in (("forward", flows.forward), ("backward", flows.backward)):
        lost, duplicated, reordered = tally(got, count)
        print(f"{way}: {count} datagrams in {flows.elapsed:.1f} s: lost {len(lost)}, "
              f"duplicated {duplicated}, reordered {reordered}")  # fmt: skip
        overflows = "full UDP receive buffers dropped {} datagrams in the sender's and {} in " \
            "the receiver's namespace meanwhile".format(*flows.overflows)  # fmt: skip
        excused = flows.overflows[1] if slow_receiver and way == "forward" else 0
        tolerated = backward_reorders if way == "backward" else 0
        assert len(lost) <= excused and duplicated == 0 and reordered <= tolerated, (
            way, lost[:20], overflows, logs[-3000:]
        )  # fmt: skip
    assert "error" not in flows.iperf, flows.iperf.get("error")
    assert flows.iperf["end"]["sum_received"]["bytes"] > 1_000_000


def tally(got: list[int], count: int) -> tuple[list[int], int, int]:
    """What :func:`flow` returned for ``count`` datagrams: (the sequence numbers lost,
    how many arrived more than once, how many arrived after a later one)."""
    lost = sorted(set(range(count)) - set(got))
    reordered = sum(1 for x, y in itertools.pairwise(got) if y < x)
    return lost, len(got) - len(set(got)), reordered


def check_loss(got: list[int], count: int, interval: float, what: str, *,
               max_lost: int, tail: int = 100) -> list[int]:  # fmt: skip
    """Print what a flow of ``count`` datagrams every ``interval`` seconds (``got``, from
    :func:`flow`) lost during ``what`` (the longest gap too), and check that nothing came
    twice, at most ``max_lost`` were lost and the last ``tail`` all arrived (the tunnel
    carried on). Returns the sequence numbers lost."""
    lost, dup, _ = tally(got, count)
    gap = longest_gap(lost)
    print(f"{what}: {count} datagrams every {interval * 1000:.0f} ms: lost {len(lost)}, "
          f"longest gap {gap} ({gap * interval:.2f} s)")  # fmt: skip
    assert dup == 0, dup
    assert len(lost) <= max_lost, (len(lost), gap)
    assert not lost or max(lost) < count - tail, lost[-20:]
    return lost


def longest_gap(lost: list[int]) -> int:
    """The longest run of consecutive lost sequence numbers."""
    best = run = 0
    prev = -2
    for n in lost:
        run = run + 1 if n == prev + 1 else 1
        best, prev = max(best, run), n
    return best


if __name__ == "__main__":
    mode, addr, port_s, count_s, *rest = sys.argv[1:]
    if mode == "recv":
        print(json.dumps(recv(addr, int(port_s), int(count_s), float(rest[0]))), flush=True)
    elif mode == "recvt":
        got = recv_timed(addr, int(port_s), int(count_s), float(rest[0]))
        print(json.dumps(got), flush=True)
    else:
        send(addr, int(port_s), int(count_s), float(rest[0]), int(rest[1]), int(rest[2]),
             *rest[3:])  # fmt: skip
