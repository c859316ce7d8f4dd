"""Sequence-numbered UDP datagrams between two namespaces, to count loss and reordering.

Run as a script inside a namespace (``python udpflow.py recv|send ...``), or drive both
ends from a test with :func:`flow`, which returns the sequence numbers in arrival order.
Bounded: the sender sends ``count`` datagrams; once it is done, the receiver stops after
``idle`` seconds without a datagram (or after ``count * max_factor`` of them).
"""

from __future__ import annotations

import itertools
import json
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from espfast.netns import Namespace

HEADER = b"efseq"


def family(addr: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def recv(bind: str, port: int, count: int, idle: float, max_factor: int = 3) -> list[int]:
    """Collect sequence numbers until stdin says ``stop`` (the sender is done) and then
    ``idle`` seconds pass without a datagram, or ``count * max_factor`` arrived."""
    sock = socket.socket(family(bind), socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((bind, port))
    print("listening", flush=True)
    got: list[int] = []
    stopping = False
    with selectors.DefaultSelector() as sel:
        sel.register(sock, selectors.EVENT_READ)
        sel.register(sys.stdin, selectors.EVENT_READ)
        while len(got) < count * max_factor:
            events = sel.select(idle if stopping else 60.0)
            if not events:
                break
            for key, _ in events:
                if key.fileobj is sys.stdin:
                    sys.stdin.readline()
                    sel.unregister(sys.stdin)
                    stopping = True
                    continue
                data = sock.recv(2048)
                if data.startswith(HEADER):
                    got.append(int(data[len(HEADER) : len(HEADER) + 8], 16))
    return got


def send(dst: str, port: int, count: int, interval: float, size: int, sport: int) -> None:
    sock = socket.socket(family(dst), socket.SOCK_DGRAM)
    if sport:
        sock.bind(("", sport))
    for i in range(count):
        sock.sendto((HEADER + b"%08x" % i).ljust(size, b"."), (dst, port))
        time.sleep(interval)


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
) -> list[int]:
    """Send ``count`` datagrams from ``sender`` to ``dst``:``port`` (in ``receiver``)."""
    script = str(Path(__file__).resolve())
    rx = receiver.popen(
        sys.executable, script, "recv", dst, str(port), str(count), str(idle),
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert rx.stdout is not None
    assert rx.stdout.readline().strip() == b"listening"
    sender.run(
        sys.executable, script, "send", dst, str(port), str(count), str(interval), str(size),
        str(sport), timeout=60,
    )  # fmt: skip
    out, err = rx.communicate(b"stop\n", timeout=idle + 30)
    assert rx.returncode == 0, err.decode()
    got: list[int] = json.loads(out)
    return got


def flow_with_tcp(
    sender: Namespace, receiver: Namespace, src: str, dst: str, *, count: int,
    interval: float, tcp_seconds: int, tcp_rate: str,
) -> tuple[list[int], float, dict[str, Any]]:  # fmt: skip
    """:func:`flow` while an iperf3 TCP run (``tcp_seconds`` long, at most ``tcp_rate``
    bits/s, e.g. "40M") goes the same way: (datagrams in arrival order, seconds the flow
    took, iperf3's JSON report)."""
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
    started = time.monotonic()
    got = flow(sender, receiver, dst, count=count, interval=interval, idle=2.0)
    elapsed = time.monotonic() - started
    out, _ = client.communicate(timeout=tcp_seconds + 60)
    receiver.stop(server)
    report: dict[str, Any] = json.loads(out)
    return got, elapsed, report


def tally(got: list[int], count: int) -> tuple[list[int], int, int]:
    """What :func:`flow` returned for ``count`` datagrams: (the sequence numbers lost,
    how many arrived more than once, how many arrived after a later one)."""
    lost = sorted(set(range(count)) - set(got))
    reordered = sum(1 for x, y in itertools.pairwise(got) if y < x)
    return lost, len(got) - len(set(got)), reordered


if __name__ == "__main__":
    mode, addr, port_s, count_s, *rest = sys.argv[1:]
    if mode == "recv":
        print(json.dumps(recv(addr, int(port_s), int(count_s), float(rest[0]))), flush=True)
    else:
        send(addr, int(port_s), int(count_s), float(rest[0]), int(rest[1]), int(rest[2]))
