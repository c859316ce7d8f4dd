"""Handshake figures with strongSwan's charon as the initiator, against a charon
responder and against an ``espfast up`` responder, in one run: the time to establish
an IKE SA with its first Child SA (median of ``--count`` in a row) and the responder's
rate (``--parallel`` IKE+Child SAs started at once).

    .venv/bin/python -m bench.charon_handshake --count 20 --parallel 50

PSK, IKE aes128gcm16-prfsha256-x25519, ESP aes128gcm16, two namespaces; charon runs
on kernel-libipsec. The charon responder's per-IP half-open and cookie limits are
lifted (RESPONDER); espfast's responder keeps its built-in cookie threshold (10
half-open SAs), so beyond that its figure includes a COOKIE round trip.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench.tunnels import INNER_A, INNER_B
from bench.tunnels.peerutil import INNER_NET_A, INNER_NET_B
from espfast.netns import TwoHosts
from espfast.static import start_in, write_private
from tests.interop.strongswan import Charon, Connection, Psk, swanctl_conf

# Every handshake comes from one address: lift charon's per-peer half-open limit
# (block_threshold, 5) and the cookie thresholds (10; 3 per IP), or the rate measures
# cookie round trips and back-off.
PROPOSALS = "aes128gcm16-prfsha256-x25519"
ESP_PROPOSALS = "aes128gcm16"
RESPONDER = {
    "block_threshold": "10000",
    "cookie_threshold": "10000",
    "cookie_threshold_ip": "10000",
}


def initiator_conf(hosts: TwoHosts, psk: Psk, count: int) -> str:
    """``count`` connections peer0..peerN-1, identities a0.bench.test ... (charon would
    run equal connections through one IKE SA)."""
    conns = [
        Connection(
            local_addrs=hosts.addr_a,
            remote_addrs=hosts.addr_b,
            local_id=f"a{i}.bench.test",
            remote_id="b.bench.test",
            local_ts=INNER_NET_A,
            remote_ts=INNER_NET_B,
            name=f"peer{i}",
            proposals=PROPOSALS,
            esp_proposals=ESP_PROPOSALS,
        )
        for i in range(count)
    ]
    return swanctl_conf(conns, [psk])


def responder_conf(hosts: TwoHosts, psk: Psk) -> str:
    # unique = never: the INITIAL_CONTACT of one handshake must not delete the others.
    conn = Connection(
        local_addrs=hosts.addr_b,
        remote_addrs=hosts.addr_a,
        local_id="b.bench.test",
        remote_id="%any",
        local_ts=INNER_NET_B,
        remote_ts=INNER_NET_A,
        proposals=PROPOSALS,
        esp_proposals=ESP_PROPOSALS,
        extra={"unique": "never"},
    )
    return swanctl_conf([conn], [psk])


def espfast_responder_conf(hosts: TwoHosts, psk: Psk) -> str:
    """``espfast up`` in b, answering anyone with the PSK (as responder_conf does)."""
    return f"""
[interface]
name = "efhs0"
addresses = ["{INNER_B}/24"]
listen = "{hosts.addr_b}:4500"

[[connection]]
name = "bench"
remote = "%any"
local_id = "b.bench.test"
psk = "0x{psk.secret.hex()}"
proposals = "{PROPOSALS}"

[[connection.child]]
name = "net"
local_ts = ["{INNER_NET_B}"]
remote_ts = ["{INNER_NET_A}"]
esp_proposals = "{ESP_PROPOSALS}"
"""


@contextlib.contextmanager
def responder(kind: str, hosts: TwoHosts, psk: Psk, tmp: Path) -> Iterator[None]:
    """charon (limits lifted, see RESPONDER) or ``espfast up`` answering in b."""
    if kind == "charon":
        hosts.b.run("ip", "addr", "add", f"{INNER_B}/32", "dev", "lo")
        try:
            with Charon.start(hosts.b, tmp / "b", responder_conf(hosts, psk), settings=RESPONDER):
                yield
        finally:
            hosts.b.run("ip", "addr", "del", f"{INNER_B}/32", "dev", "lo", check=False)
        return
    conf = write_private(tmp / "b.toml", espfast_responder_conf(hosts, psk))
    up = start_in(hosts.b, conf, command="up")
    try:
        yield
    finally:
        up.stop()


def measure(kind: str, hosts: TwoHosts, psk: Psk, tmp: Path, count: int, parallel: int) -> str:
    with (
        responder(kind, hosts, psk, tmp),
        Charon.start(
            hosts.a,
            tmp / f"a-{kind}",
            initiator_conf(hosts, psk, parallel),
            settings={"threads": str(parallel + 16)},  # one per waiting initiate
        ) as a,
    ):
        times = a.handshake_times("peer0", "net", count)
        rate = a.handshake_rate([(f"peer{i}", "net") for i in range(parallel)])
    ms = [t * 1000 for t in times]
    return (
        f"charon -> {kind}: IKE+Child SA in {statistics.median(ms):.2f} ms median "
        f"({min(ms):.2f}..{max(ms):.2f}, {count} in a row); "
        f"{rate:.0f} IKE+Child SAs/s with {parallel} at once"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20, help="handshakes in a row (latency)")
    parser.add_argument("--parallel", type=int, default=50, help="handshakes at once (rate)")
    parser.add_argument(
        "--responder", choices=["charon", "espfast", "both"], default="both", help="who answers"
    )
    args = parser.parse_args()
    kinds = ["charon", "espfast"] if args.responder == "both" else [args.responder]
    psk = Psk(ids=(), secret=secrets.token_bytes(32))  # one secret for every identity
    with TwoHosts.create("peer") as hosts, tempfile.TemporaryDirectory(prefix="ef-peer-hs-") as tmp:
        # kernel-libipsec refuses a Child SA (TS_UNACCEPTABLE) unless the host has an
        # address inside its local traffic selector, for the route's source.
        hosts.a.run("ip", "addr", "add", f"{INNER_A}/32", "dev", "lo")
        for kind in kinds:
            print(measure(kind, hosts, psk, Path(tmp), args.count, args.parallel), flush=True)


if __name__ == "__main__":
    main()
