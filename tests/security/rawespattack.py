"""The attacker of tests/security/test_sec_rawesp.py: spoofed plain ESP (IP protocol 50)
and its look-alikes, sent as whole Ethernet frames on a veth (so that even IPv4 headers the
kernel would fix on a raw socket leave as written). Run inside the attacking namespace:

    python rawespattack.py '{"iface": ..., "mac": ..., "src": ..., "dst": ..., "spoof": ...,
                             "spi": ..., "n": ...}'

Prints what it sent per kind as JSON. Every loop is bounded by ``n``."""

from __future__ import annotations

import json
import sys
from typing import Any


def frames(a: dict[str, Any]) -> dict[str, list[Any]]:
    from scapy.layers.inet import IP, UDP, IPOption_NOP, fragment
    from scapy.layers.ipsec import ESP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw

    n, spi, src, dst, spoof = a["n"], a["spi"], a["src"], a["dst"], a["spoof"]
    eth = Ether(dst=a["mac"])

    def ip(**kw: Any) -> Any:
        return IP(src=kw.pop("src", src), dst=dst, proto=50, **kw)

    junk = Raw(bytes(range(64)))
    big = ip(id=4242) / ESP(spi=0xDEAD0000, seq=1) / Raw(bytes(1800))
    first, second = fragment(big, fragsize=1000)
    kinds: dict[str, list[Any]] = {
        # the dataplane's: runts (no room for SPI and sequence number)
        "truncated": [eth / ip() / Raw(bytes(i % 8)) for i in range(n)],
        # no such SPI (held a moment, then counted as unknown)
        "bad_spi": [eth / ip() / ESP(spi=0xDEAD0001 + i, seq=1) / junk for i in range(n)],
        # IPv4 options (IHL 6..15): parsed past, then the SPI is unknown
        "options": [
            eth
            / ip(options=[IPOption_NOP()] * (4 * (1 + i % 10)))
            / ESP(spi=0xDEAD1000 + i, seq=1)
            / junk
            for i in range(n)
        ],
        # a real SPI from an address that is not the SA's peer
        "wrong_source": [eth / ip(src=spoof) / ESP(spi=spi, seq=10 + i) / junk for i in range(n)],
        # a real SPI in the wrong framing: ESP in UDP 4500 for a plain-ESP SA
        "wrong_framing": [
            eth
            / IP(src=src, dst=dst)
            / UDP(sport=4500, dport=4500)
            / ESP(spi=spi, seq=10 + i)
            / junk
            for i in range(n)
        ],
        # a real SPI from the peer's address, forged contents: the ICV says no
        "forged": [eth / ip() / ESP(spi=spi, seq=2**31 + i) / junk for i in range(n)],
        # the kernel's: header lengths that lie (it drops them before any socket sees them)
        "bad_lengths": [
            eth / ip(len=length) / ESP(spi=spi, seq=1) / junk for length in (10, 19, 4000)
        ]
        + [eth / ip(ihl=15) / Raw(b"\x01" * 20), eth / ip(ihl=3) / junk],
        # fragments: a lone first and a lone second one (never reassembled), and a whole
        # pair (reassembled by the kernel: an unknown SPI to us)
        "fragments": [eth / first.copy(), eth / second.copy(), eth / first, eth / second],
    }
    kinds["fragments"][0][IP].id = 4243  # a lone first and a lone second fragment
    kinds["fragments"][1][IP].id = 4244
    return kinds


def main() -> None:
    from scapy.sendrecv import sendp

    args = json.loads(sys.argv[1])
    sent = {}
    for kind, pkts in frames(args).items():
        sendp(pkts, iface=args["iface"], verbose=False)
        sent[kind] = len(pkts)
    print(json.dumps(sent))


if __name__ == "__main__":
    main()
