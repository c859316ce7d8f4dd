"""Networks for the mobility tests. A NAT router: nftables masquerade in the middle
namespace of :class:`espfast.netns.ThreeHosts` (a, the client's LAN, behind r; b, the
gateway, outside), and a way to make the NAT map the client anew mid-flow (its conntrack
state flushed and another port range for new mappings), as a home router that restarts
or times out does. A client with two uplinks ('wifi' and 'cell') to a router in front of
the gateway (:func:`uplinks`)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass

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


GW, WIFI, CELL = "198.18.1.1", "198.18.10.1", "198.18.20.1"


@dataclass
class Uplinks:
    """c (the client) -- wifi 198.18.10.0/24 / cell 198.18.20.0/24 -- r -- g (gateway)."""

    c: Namespace
    r: Namespace
    g: Namespace

    def prefer_wifi(self) -> None:
        self.c.run("ip", "link", "set", "wifi", "up")
        self.c.run("ip", "route", "replace", "198.18.1.0/24", "via", "198.18.10.254",
                   "metric", "100")  # fmt: skip

    def wifi_down(self) -> None:
        self.c.run("ip", "link", "set", "wifi", "down")

    def wifi_gone(self) -> None:
        """The wifi link down and its address removed, as a phone's network manager does
        when it leaves a wifi network."""
        self.wifi_down()
        self.c.run("ip", "addr", "flush", "dev", "wifi")

    def wifi_back(self) -> None:
        """The wifi address back (if gone) and the wifi route preferred again."""
        if WIFI not in self.c.run("ip", "-4", "-o", "addr", "show", "dev", "wifi").stdout:
            self.c.run("ip", "addr", "add", f"{WIFI}/24", "dev", "wifi")
        self.prefer_wifi()


@contextlib.contextmanager
def uplinks() -> Iterator[Uplinks]:
    with (
        Namespace.create("roam") as c,
        Namespace.create("roam") as r,
        Namespace.create("roam") as g,
    ):
        for sysctl in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
                       "net.ipv4.conf.default.rp_filter=0"):  # fmt: skip
            r.run("sysctl", "-q", "-w", sysctl)
        for ns, dev, rdev, addr, raddr in (
            (c, "wifi", "wifi-r", WIFI, "198.18.10.254"),
            (c, "cell", "cell-r", CELL, "198.18.20.254"),
            (g, "veth-g", "veth-rg", GW, "198.18.1.254"),
        ):
            ns.run("ip", "link", "add", dev, "type", "veth", "peer", "name", rdev, "netns", r.name)
            ns.run("ip", "addr", "add", f"{addr}/24", "dev", dev)
            r.run("ip", "addr", "add", f"{raddr}/24", "dev", rdev)
            ns.run("ip", "link", "set", dev, "up")
            r.run("ip", "link", "set", rdev, "up")
        g.run("ip", "route", "add", "198.18.0.0/15", "via", "198.18.1.254")
        c.run("ip", "route", "add", "198.18.1.0/24", "via", "198.18.20.254", "metric", "200")
        for dev in ("all", "default", "wifi", "cell"):  # replies may come in on either
            c.run("sysctl", "-q", "-w", f"net.ipv4.conf.{dev}.rp_filter=0")
        hosts = Uplinks(c, r, g)
        hosts.prefer_wifi()
        yield hosts


GW2 = "198.18.3.1"  # the gateway's second address (two_paths)
BLACKHOLE = "efblack"


@dataclass
class TwoPaths:
    """c -- wifi / cell -- r -- veth-g (GW) / veth-g2 (GW2) -- g: a client with two uplinks
    and a gateway with two addresses, each reached over one of them (c routes GW's subnet
    over wifi, GW2's over cell; g answers the wifi subnet from GW, the cell one from GW2)."""

    c: Namespace
    r: Namespace
    g: Namespace

    def blackhole_wifi(self) -> None:
        """Everything through the router's wifi side dropped (an nftables rule in r): the
        path dies with every link still up, so no netlink event tells the client."""
        rules = f"""
table inet {BLACKHOLE} {{
    chain blackhole {{
        type filter hook forward priority filter; policy accept;
        iifname "wifi-r" drop
        oifname "wifi-r" drop
    }}
}}
"""
        run(self.r.argv("nft", "-f", "-"), input=rules.encode())


@contextlib.contextmanager
def two_paths() -> Iterator[TwoPaths]:
    with (
        Namespace.create("ma") as c,
        Namespace.create("ma") as r,
        Namespace.create("ma") as g,
    ):
        for sysctl in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
                       "net.ipv4.conf.default.rp_filter=0"):  # fmt: skip
            r.run("sysctl", "-q", "-w", sysctl)
        for ns in (c, g):
            for sysctl in ("all", "default"):
                ns.run("sysctl", "-q", "-w", f"net.ipv4.conf.{sysctl}.rp_filter=0")
        for ns, dev, rdev, addr, raddr in (
            (c, "wifi", "wifi-r", WIFI, "198.18.10.254"),
            (c, "cell", "cell-r", CELL, "198.18.20.254"),
            (g, "veth-g", "veth-rg", GW, "198.18.1.254"),
            (g, "veth-g2", "veth-rg2", GW2, "198.18.3.254"),
        ):
            ns.run("ip", "link", "add", dev, "type", "veth", "peer", "name", rdev, "netns", r.name)
            ns.run("ip", "addr", "add", f"{addr}/24", "dev", dev)
            r.run("ip", "addr", "add", f"{raddr}/24", "dev", rdev)
            ns.run("ip", "link", "set", dev, "up")
            r.run("ip", "link", "set", rdev, "up")
        c.run("ip", "route", "add", "198.18.1.0/24", "via", "198.18.10.254")
        c.run("ip", "route", "add", "198.18.3.0/24", "via", "198.18.20.254")
        g.run("ip", "route", "add", "198.18.10.0/24", "via", "198.18.1.254")
        g.run("ip", "route", "add", "198.18.20.0/24", "via", "198.18.3.254")
        yield TwoPaths(c, r, g)
