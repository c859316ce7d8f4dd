"""Handshake figures with strongSwan's charon as the initiator, against a charon
responder and against an ``espfast up`` responder, in one run: the time to establish
an IKE SA with its first Child SA (median of ``--count`` in a row, in ms and in round
trips: IKE_SA_INIT and IKE_AUTH requests seen on the wire, counted from a capture), and
the responder's rate (``--parallel`` IKE+Child SAs started at once), then espfast's
rate as a share of charon's (target: at least half).

    .venv/bin/python -m bench.charon_handshake --count 20 --parallel 50

PSK, IKE aes128gcm16-prfsha256-x25519, ESP aes128gcm16, two namespaces; charon runs
on kernel-libipsec. Every handshake comes from one address, so both responders get
the same treatment: charon's per-IP half-open and cookie limits are lifted
(RESPONDER), and so are espfast's (``cookie_threshold``, ``half_open_limit``,
``cookie_threshold_ip`` and ``block_threshold`` in ``[interface]``, ESPFAST_RESPONDER);
``--keep-limits`` leaves both at their defaults (then the rates include COOKIE round
trips and back-off).
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import statistics
import subprocess
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
ESPFAST_RESPONDER = (
    "cookie_threshold = 10000\nhalf_open_limit = 10000\n"
    "cookie_threshold_ip = 10000\nblock_threshold = 10000\n"
)
IKE_SA_INIT, IKE_AUTH = 34, 35


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


def espfast_responder_conf(hosts: TwoHosts, psk: Psk, limits: str) -> str:
    """``espfast up`` in b, answering anyone with the PSK (as responder_conf does)."""
    return f"""
[interface]
name = "efhs0"
addresses = ["{INNER_B}/24"]
listen = "{hosts.addr_b}:4500"
{limits}

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
def responder(kind: str, hosts: TwoHosts, psk: Psk, tmp: Path, lift: bool) -> Iterator[None]:
    """charon or ``espfast up`` answering in b (limits lifted with ``lift``)."""
    if kind == "charon":
        hosts.b.run("ip", "addr", "add", f"{INNER_B}/32", "dev", "lo")
        settings = RESPONDER if lift else {}
        try:
            with Charon.start(hosts.b, tmp / "b", responder_conf(hosts, psk), settings=settings):
                yield
        finally:
            hosts.b.run("ip", "addr", "del", f"{INNER_B}/32", "dev", "lo", check=False)
        return
    limits = ESPFAST_RESPONDER if lift else ""
    conf = write_private(tmp / "b.toml", espfast_responder_conf(hosts, psk, limits))
    up = start_in(hosts.b, conf, command="up")
    try:
        yield
    finally:
        up.stop()


@contextlib.contextmanager
def capture(
    hosts: TwoHosts, pcap: Path, expr: str = "udp port 500 or udp port 4500"
) -> Iterator[None]:
    """tcpdump of ``expr`` (IKE: UDP 500 and 4500) on b's veth while the block runs."""
    dump = hosts.b.popen(
        "tcpdump", "-i", "veth-b", "-n", "-U", "--immediate-mode", "-s", "128", "-w", str(pcap),
        expr,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        # It says "listening on" once the capture and its filter are active (the file
        # exists earlier); -U writes each packet as it comes, SIGTERM flushes.
        assert dump.stderr is not None
        if b"listening on" not in dump.stderr.readline():
            raise RuntimeError("tcpdump did not start")
        yield
    finally:
        hosts.b.stop(dump)


def round_trips(pcap: Path, initiator: str) -> int:
    """IKE_SA_INIT and IKE_AUTH requests from ``initiator`` in the capture (port 4500:
    after the non-ESP marker; ESP is not IKE)."""
    from scapy.layers.inet import IP, UDP
    from scapy.utils import rdpcap

    requests = 0
    for pkt in rdpcap(str(pcap)):
        if IP not in pkt or UDP not in pkt or pkt[IP].src != initiator:
            continue
        data = bytes(pkt[UDP].payload)
        if pkt[UDP].dport == 4500:
            if data[:4] != bytes(4):
                continue
            data = data[4:]
        if len(data) >= 28 and data[18] in (IKE_SA_INIT, IKE_AUTH) and not data[19] & 0x20:
            requests += 1
    return requests


def measure(
    kind: str, hosts: TwoHosts, psk: Psk, tmp: Path, count: int, parallel: int, lift: bool
) -> tuple[str, float]:
    pcap = tmp / f"{kind}.pcap"
    with (
        responder(kind, hosts, psk, tmp, lift),
        Charon.start(
            hosts.a,
            tmp / f"a-{kind}",
            initiator_conf(hosts, psk, parallel),
            settings={"threads": str(parallel + 16)},  # one per waiting initiate
        ) as a,
    ):
        with capture(hosts, pcap):
            times = a.handshake_times("peer0", "net", count)
        rate = a.handshake_rate([(f"peer{i}", "net") for i in range(parallel)])
    ms = [t * 1000 for t in times]
    rtts = round_trips(pcap, hosts.addr_a) / count
    text = (
        f"charon -> {kind}: IKE+Child SA in {statistics.median(ms):.2f} ms median "
        f"({min(ms):.2f}..{max(ms):.2f}, {count} in a row), {rtts:g} round trips; "
        f"{rate:.0f} IKE+Child SAs/s with {parallel} at once"
    )
    return text, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=20, help="handshakes in a row (latency)")
    parser.add_argument("--parallel", type=int, default=50, help="handshakes at once (rate)")
    parser.add_argument(
        "--responder", choices=["charon", "espfast", "both"], default="both", help="who answers"
    )
    parser.add_argument(
        "--keep-limits", action="store_true", help="both responders' default cookie limits"
    )
    args = parser.parse_args()
    kinds = ["charon", "espfast"] if args.responder == "both" else [args.responder]
    psk = Psk(ids=(), secret=secrets.token_bytes(32))  # one secret for every identity
    with TwoHosts.create("peer") as hosts, tempfile.TemporaryDirectory(prefix="ef-peer-hs-") as tmp:
        # kernel-libipsec refuses a Child SA (TS_UNACCEPTABLE) unless the host has an
        # address inside its local traffic selector, for the route's source.
        hosts.a.run("ip", "addr", "add", f"{INNER_A}/32", "dev", "lo")
        rates = {}
        for kind in kinds:
            text, rates[kind] = measure(
                kind, hosts, psk, Path(tmp), args.count, args.parallel, not args.keep_limits
            )
            print(text, flush=True)
        if len(rates) == 2:
            share = rates["espfast"] / rates["charon"]
            print(f"espfast responder rate: {share:.2f} x charon's (target: at least 0.5)")


if __name__ == "__main__":
    main()
