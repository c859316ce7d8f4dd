"""The client side of a road-warrior tunnel: the routes of a full tunnel.

A client whose Child SA's remote_ts covers everything (0.0.0.0/0, ::/0) must neither send
its own IKE and ESP into the tunnel (a routing loop: the gateway's outer address is
inside 0.0.0.0/0) nor let traffic of the other family leave in the clear. :class:`Routes`
sits between the daemon and the TUN device (:class:`espfast.tun.Tun`) and

- routes a default prefix as its two halves (0.0.0.0/1 and 128.0.0.0/1, ::/1 and
  8000::/1): more specific than the underlay's default route, which stays as it was;
- before the first route that covers a gateway's outer address, pins that address with a
  host route through the underlay path it has now (``ip route get``: its gateway and
  interface), so that IKE and ESP to it keep leaving by the underlay; the pin goes with
  the last route that covered it, and when the daemon ends;
- with an IPv4 full tunnel and no IPv6 one, routes ::/1 and 8000::/1 into the TUN device
  too: no Child SA matches them, so the dataplane drops (and counts) every IPv6 packet
  instead of it leaving in the clear.

Routes the underlay has that are more specific than a half (a /24 next to the client)
still win: that is the local network, which a full tunnel leaves reachable.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from espfast.tun import IPNetwork

log = logging.getLogger(__name__)

ALL4 = ipaddress.IPv4Network("0.0.0.0/0")
ALL6 = ipaddress.IPv6Network("::/0")
HALVES: dict[IPNetwork, tuple[IPNetwork, IPNetwork]] = {
    ALL4: (ipaddress.IPv4Network("0.0.0.0/1"), ipaddress.IPv4Network("128.0.0.0/1")),
    ALL6: (ipaddress.IPv6Network("::/1"), ipaddress.IPv6Network("8000::/1")),
}


class Netlink(Protocol):
    """What :class:`Routes` needs of the TUN device (:class:`espfast.tun.Tun`)."""

    index: int

    def add_routes(self, prefixes: Iterable[IPNetwork]) -> None: ...
    def remove_routes(self, prefixes: Iterable[IPNetwork]) -> None: ...
    def netlink(self, what: str, method: str, *args: object, **kwargs: object) -> Any: ...


def device_prefixes(nets: Iterable[IPNetwork]) -> list[IPNetwork]:
    """What goes into the TUN device for the tunnel's ``nets``: each default prefix as its
    halves, and the IPv6 halves with an IPv4 default (no IPv6 leak)."""
    nets = list(nets)
    out: list[IPNetwork] = []
    for net in nets:
        out.extend(HALVES.get(net, (net,)))
    if ALL4 in nets and ALL6 not in nets:
        out.extend(HALVES[ALL6])
    return list(dict.fromkeys(out))


class Routes:
    """Routes into the TUN device for the daemon (its ``add_routes``/``remove_routes``),
    with the gateways' outer addresses ``peers`` pinned to the underlay while a route
    covers them. :meth:`close` withdraws the pins (the device takes its routes along)."""

    def __init__(self, tun: Netlink, peers: Callable[[], Iterable[str]]) -> None:
        """``peers``: the gateways' outer addresses now (asked at each change)."""
        self._tun = tun
        self._peers = peers
        self._nets: set[IPNetwork] = set()  # what the daemon routed (before halving)
        self._pinned: dict[str, dict[str, object]] = {}  # peer -> the route added for it

    def add_routes(self, prefixes: Iterable[IPNetwork]) -> None:
        new = [n for n in prefixes if n not in self._nets]
        if not new:
            return
        for peer in self._peer_addresses():
            if any(peer in n for n in new):
                self._pin(peer)
        self._nets.update(new)
        self._tun.add_routes(device_prefixes(new))

    def remove_routes(self, prefixes: Iterable[IPNetwork]) -> None:
        gone = [n for n in prefixes if n in self._nets]
        self._nets.difference_update(gone)
        keep = set(device_prefixes(self._nets))
        self._tun.remove_routes(p for p in device_prefixes(gone) if p not in keep)
        for key in list(self._pinned):
            if not any(ipaddress.ip_address(key) in n for n in self._nets):
                self._unpin(key)

    def _peer_addresses(self) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
        out = []
        for p in dict.fromkeys(self._peers()):
            try:
                out.append(ipaddress.ip_address(p))
            except ValueError:  # a name: resolved elsewhere, its address is not known here
                log.warning("gateway %r is not an address: not pinned to the underlay", p)
        return out

    def close(self) -> None:
        for peer in list(self._pinned):
            self._unpin(peer)

    def _pin(self, peer: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
        key = str(peer)
        if key in self._pinned:
            return
        family = socket.AF_INET6 if peer.version == 6 else socket.AF_INET
        found = self._tun.netlink(f"look up the route to {peer}", "route", "get", dst=key,
                                  family=family)  # fmt: skip
        msg = next(iter(found))
        oif, via = msg.get_attr("RTA_OIF"), msg.get_attr("RTA_GATEWAY")
        if oif is None or oif == self._tun.index:
            log.error("no underlay route to the gateway %s: not pinned", peer)
            return
        route: dict[str, object] = {"dst": f"{peer}/{peer.max_prefixlen}", "oif": oif,
                                    "family": family, "proto": "static"}  # fmt: skip
        if via is not None:
            route["gateway"] = via
        self._tun.netlink(f"pin the route to {peer}", "route", "replace", **route)
        self._pinned[key] = route
        log.info("gateway %s pinned to the underlay (%s)", peer,
                 f"via {via}" if via else f"interface {oif}")  # fmt: skip

    def _unpin(self, peer: str) -> None:
        route = self._pinned.pop(peer)
        try:
            self._tun.netlink(f"withdraw the route to {peer}", "route", "del", **route)
        except (OSError, RuntimeError) as e:  # TunError: gone with its interface already
            log.warning("%s", e)
