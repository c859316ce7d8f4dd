"""Quick check of a peer tunnel by hand: bring it up between two fresh namespaces,
ping through it, and run one short single-stream iperf3 TCP test.

    .venv/bin/python -m bench.tunnels.peercheck strongswan-libipsec --seconds 5

This is a smoke test for the tunnel modules, not the benchmark (that is ``python -m
bench``); it prints one line per tunnel.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import time

from bench.tunnels import TUNNELS, Endpoints
from espfast.netns import TwoHosts, wait_for

PEERS = ("strongswan-libipsec", "wireguard-go", "openvpn")


def iperf3_tcp(hosts: TwoHosts, ends: Endpoints, seconds: int) -> float:
    """Single-stream TCP a -> b for ``seconds``; returns the receiver's Gbit/s."""
    server = hosts.b.popen(
        "iperf3",
        "-s",
        "-1",
        "-B",
        ends.inner_b,
        "-p",
        "5201",
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # iperf3 is ready once it listens; a refused connection just means "not yet".
        wait_for(lambda: "5201" in hosts.b.run("ss", "-ltnH", check=False).stdout, timeout=5.0)
        out = hosts.a.run(
            "iperf3",
            "-c",
            ends.inner_b,
            "-p",
            "5201",
            "-t",
            str(seconds),
            "-J",
            timeout=seconds + 30,
        ).stdout
    finally:
        hosts.b.stop(server)
    result = json.loads(out)
    return float(result["end"]["sum_received"]["bits_per_second"]) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tunnels", nargs="*", metavar="TUNNEL", help=", ".join(PEERS))
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    for name in args.tunnels or list(PEERS):
        if name not in PEERS:
            parser.error(f"unknown tunnel {name!r}; choose from {', '.join(PEERS)}")
        with TwoHosts.create("peer") as hosts, contextlib.ExitStack() as stack:
            start = time.monotonic()
            ends = stack.enter_context(TUNNELS[name]().up(hosts))
            setup = time.monotonic() - start
            ping = hosts.a.run("ping", "-n", "-q", "-c", "5", "-i", "0.2", ends.inner_b).stdout
            rtt = ping.strip().splitlines()[-1]
            gbps = iperf3_tcp(hosts, ends, args.seconds)
            print(f"{name}: up in {setup:.2f}s, {rtt}, iperf3 TCP 1 stream {gbps:.2f} Gbit/s")


if __name__ == "__main__":
    main()
