"""A NAT router for the mobility tests: nftables masquerade in the middle namespace of
:class:`espfast.netns.ThreeHosts` (a, the client's LAN, behind r; b, the gateway, outside),
and a way to make the NAT map the client anew mid-flow (its conntrack state flushed and
another port range for new mappings), as a home router that restarts or times out does."""

from __future__ import annotations

import sys

from espfast.netns import Namespace, run

TABLE = "efnat"


def ruleset(outside: str, ports: str) -> str:
    """UDP from the inside gets a source port in ``ports``; other traffic (ping) keeps its
    ids; every source address becomes the router's address on ``outside``."""
    return f"""
table ip {TABLE} {{
    chain post {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{outside}" meta l4proto udp masquerade to :{ports}
        oifname "{outside}" masquerade
    }}
}}
"""


def masquerade(r: Namespace, outside: str, ports: str) -> None:
    """(Re)install the NAT with new mappings from ``ports`` ("20000-20999")."""
    r.run("nft", "delete", "table", "ip", TABLE, check=False)
    run(r.argv("nft", "-f", "-"), input=ruleset(outside, ports).encode())


FLUSH = "from pyroute2 import Conntrack\nwith Conntrack() as ct:\n    ct.flush()\n"


def remap(r: Namespace, outside: str, ports: str) -> None:
    """Forget every mapping (conntrack flushed, through netlink) and map anew from
    ``ports``: the client's next datagram leaves from another public port."""
    masquerade(r, outside, ports)
    r.run(sys.executable, "-c", FLUSH)
