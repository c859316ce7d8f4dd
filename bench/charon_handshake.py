"""Handshake figures with strongSwan's charon as the initiator: time to establish an IKE
SA with its first Child SA (median of ``--count`` in a row) and the responder's rate
(``--parallel`` IKE+Child SAs started at once), charon <-> charon.

    .venv/bin/python -m bench.charon_handshake --count 20 --parallel 50

PSK, IKE aes128gcm16-prfsha256-x25519, ESP aes128gcm16, both charons on
kernel-libipsec in two namespaces. The initiator side (Charon.handshake_times /
handshake_rate in tests/interop/strongswan.py) works against any IKEv2 responder at
198.18.0.2 that accepts a<i>.bench.test with the same PSK, e.g. espfast.
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
from pathlib import Path

from bench.tunnels import INNER_A, INNER_B
from bench.tunnels.peerutil import INNER_NET_A, INNER_NET_B
from espfast.netns import TwoHosts
from tests.interop.strongswan import Charon, Connection, Psk, swanctl_conf

# Every handshake comes from one address: lift charon's per-peer half-open limit
# (block_threshold, 5) and the cookie thresholds (10; 3 per IP), or the rate measures
# cookie round trips and back-off.
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
        extra={"unique": "never"},
    )
    return swanctl_conf([conn], [psk])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20, help="handshakes in a row (latency)")
    parser.add_argument("--parallel", type=int, default=50, help="handshakes at once (rate)")
    args = parser.parse_args()
    psk = Psk(ids=(), secret=secrets.token_bytes(32))  # one secret for every identity
    with TwoHosts.create("peer") as hosts, tempfile.TemporaryDirectory(prefix="ef-peer-hs-") as tmp:
        # kernel-libipsec refuses a Child SA (TS_UNACCEPTABLE) unless the host has an
        # address inside its local traffic selector, for the route's source.
        hosts.a.run("ip", "addr", "add", f"{INNER_A}/32", "dev", "lo")
        hosts.b.run("ip", "addr", "add", f"{INNER_B}/32", "dev", "lo")
        with (
            Charon.start(hosts.b, Path(tmp, "b"), responder_conf(hosts, psk), settings=RESPONDER),
            Charon.start(
                hosts.a,
                Path(tmp, "a"),
                initiator_conf(hosts, psk, args.parallel),
                settings={"threads": str(args.parallel + 16)},  # one per waiting initiate
            ) as a,
        ):
            times = a.handshake_times("peer0", "net", args.count)
            rate = a.handshake_rate([(f"peer{i}", "net") for i in range(args.parallel)])
    ms = [t * 1000 for t in times]
    print(
        f"charon -> charon: IKE+Child SA in {statistics.median(ms):.2f} ms median "
        f"({min(ms):.2f}..{max(ms):.2f}, {args.count} in a row); "
        f"{rate:.0f} IKE+Child SAs/s with {args.parallel} at once"
    )


if __name__ == "__main__":
    main()
