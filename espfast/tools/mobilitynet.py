"""Networks for the mobility tests. A NAT router: nftables masquerade in the middle
namespace of :class:`espfast.netns.ThreeHosts` (a, the client's LAN, behind r; b, the
gateway, outside), and a way to make the NAT map the client anew mid-flow (its conntrack
state flushed and another port range for new mappings), as a home router that restarts
or times out does. A client with two uplinks ('wifi' and 'cell') to a router in front of
the gateway (:func:`uplinks`). Both ends behind a NAT (:func:`double_nat`): the client
behind a masquerading home router, the gateway behind a router that forwards UDP 500 and
4500 to it (DNAT) and masquerades what it sends."""

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


def forget(r: Namespace) -> None:
    """The router forgets every mapping (its conntrack table flushed, through netlink, as
    ``conntrack -F`` does); the rules stay."""
    r.run(sys.executable, "-c", FLUSH)


DUMP = """from pyroute2 import Conntrack
with Conntrack() as ct:
    for entry in ct.dump_entries():
        print(entry)
"""


def mappings(r: Namespace) -> str:
    """The router's conntrack entries, one a line (for a failing test's message)."""
    return r.run(sys.executable, "-c", DUMP, check=False).stdout


def remap(r: Namespace, outside: str, ports: str) -> None:
    """Forget every mapping and map anew from ``ports``: the client's next datagram
    leaves from another public port."""
    masquerade(r, outside, ports)
    forget(r)


def port_forward(r: Namespace, outside: str, to: str, ports: tuple[int, ...] = (500, 4500)) -> None:
    """A router in front of a server: UDP to its address on ``outside`` at ``ports`` goes
    on to ``to`` (DNAT, the ports kept); what the server sends from those ports leaves
    from the same ports (a static reverse mapping: should the router's state be lost and
    the server's datagram and the client's race to make the new one, the loser is dropped
    rather than given another public port, which the client's NAT would filter and
    nobody could learn); everything else leaving by ``outside`` is masqueraded."""
    listed = ", ".join(str(p) for p in ports)
    keep = "\n".join(
        f'        oifname "{outside}" ip saddr {to} udp sport {p} masquerade to :{p}' for p in ports
    )
    rules = f"""
table ip {TABLE} {{
    chain pre {{
        type nat hook prerouting priority dstnat; policy accept;
        iifname "{outside}" udp dport {{ {listed} }} dnat to {to}
    }}
    chain post {{
        type nat hook postrouting priority srcnat; policy accept;
{keep}
        oifname "{outside}" masquerade
    }}
}}
"""
    r.run("nft", "delete", "table", "ip", TABLE, check=False)
    run(r.argv("nft", "-f", "-"), input=rules.encode())


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


@dataclass
class DoubleNat:
    """c (the client, 198.18.0.1 on 'lan') -- r1 (masquerade; 198.18.5.1 on 'wan') ==
    (198.18.5.2 on 'wan') r2 (UDP 500/4500 forwarded) -- g (the gateway, 198.18.1.1 on
    'lan'). Neither router routes to the LAN behind the other: only translated packets
    arrive. The client reaches the gateway at :attr:`gw_public`."""

    c: Namespace
    r1: Namespace
    r2: Namespace
    g: Namespace
    client: str = "198.18.0.1"
    client_public: str = "198.18.5.1"  # r1's outside address: the client seen from outside
    gw_public: str = "198.18.5.2"  # r2's outside address: where the gateway is reached
    gw: str = "198.18.1.1"
    outside: str = "wan"  # each router's outside interface


@contextlib.contextmanager
def double_nat(client_ports: str = "20000-20999") -> Iterator[DoubleNat]:
    """Both ends behind a NAT (see :class:`DoubleNat`); r1 maps the client from
    ``client_ports``."""
    with (
        Namespace.create("dnat") as c,
        Namespace.create("dnat") as r1,
        Namespace.create("dnat") as r2,
        Namespace.create("dnat") as g,
    ):
        hosts = DoubleNat(c, r1, r2, g)
        for r in (r1, r2):
            for sysctl in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
                           "net.ipv4.conf.default.rp_filter=0"):  # fmt: skip
                r.run("sysctl", "-q", "-w", sysctl)
        r1.run("ip", "link", "add", "wan", "type", "veth", "peer", "name", "wan", "netns", r2.name)
        for r, addr in ((r1, hosts.client_public), (r2, hosts.gw_public)):
            r.run("ip", "addr", "add", f"{addr}/24", "dev", "wan")
            r.run("ip", "link", "set", "wan", "up")
        for host, r, addr, raddr in ((c, r1, hosts.client, "198.18.0.254"),
                                     (g, r2, hosts.gw, "198.18.1.254")):  # fmt: skip
            host.run("ip", "link", "add", "lan", "type", "veth", "peer", "name", "lan-r",
                     "netns", r.name)  # fmt: skip
            host.run("ip", "addr", "add", f"{addr}/24", "dev", "lan")
            r.run("ip", "addr", "add", f"{raddr}/24", "dev", "lan-r")
            host.run("ip", "link", "set", "lan", "up")
            r.run("ip", "link", "set", "lan-r", "up")
            host.run("ip", "route", "add", "198.18.0.0/15", "via", raddr)
        masquerade(r1, hosts.outside, client_ports)
        port_forward(r2, hosts.outside, hosts.gw)
        yield hosts
