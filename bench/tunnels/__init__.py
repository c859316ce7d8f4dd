"""The tunnels a benchmark can measure, one module each, all behind one small protocol.

A tunnel module builds a :class:`Tunnel` whose ``up(hosts)`` brings the tunnel up between
the two namespaces of a :class:`espfast.netns.TwoHosts` (a = 198.18.0.1, b = 198.18.0.2 on
the veth) and yields the :class:`Endpoints` to measure between; leaving the context takes
the tunnel down again (stopping, by PID, only the processes it started). Inner addresses:
198.19.1.1 on a and 198.19.2.1 on b (a /24 each, or a /30 point-to-point in 198.19.0.0/16).

To add a tunnel: write ``bench/tunnels/<kind>.py`` with a class satisfying :class:`Tunnel`
and add its constructor(s) to :data:`TUNNELS` below.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from espfast.netns import TwoHosts

INNER_A = "198.19.1.1"
INNER_B = "198.19.2.1"


@dataclass
class Endpoints:
    inner_a: str  # addresses to run iperf3/ping between (a -> b)
    inner_b: str
    pids: list[int]  # tunnel processes (for CPU seconds and peak RSS)
    # What the report says about the peer: "version", "offloads" (engaged or not), ...
    info: dict[str, str] = field(default_factory=dict)


class Tunnel(Protocol):
    name: str  # "espfast-aes128gcm16", "strongswan-libipsec", ...

    def up(self, hosts: TwoHosts) -> contextlib.AbstractContextManager[Endpoints]: ...


def _registry() -> dict[str, Callable[[], Tunnel]]:
    from bench.tunnels import espfast_static, openvpn, strongswan, veth, wireguard

    tunnels: dict[str, Callable[[], Tunnel]] = {"veth": veth.Veth}
    tunnels.update(espfast_static.tunnels())
    tunnels["strongswan-libipsec"] = strongswan.StrongswanLibipsec
    tunnels["wireguard-go"] = wireguard.WireguardGo
    debian = wireguard.debian_binary()
    if debian:
        tunnels["wireguard-go-debian"] = functools.partial(
            wireguard.WireguardGo, "wireguard-go-debian", debian
        )
    tunnels["openvpn"] = openvpn.OpenVpn
    return tunnels


# name -> constructor; the order is the order of the report.
TUNNELS: dict[str, Callable[[], Tunnel]] = _registry()
