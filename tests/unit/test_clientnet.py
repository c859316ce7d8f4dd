"""espfast/clientnet.py: a full tunnel's routes as halves, the IPv6 halves with an IPv4
default, the gateway's outer address pinned to the underlay while a route covers it."""

from __future__ import annotations

from collections.abc import Iterable
from ipaddress import ip_network
from typing import Any

from espfast.clientnet import Routes, device_prefixes
from espfast.tun import IPNetwork

V4 = [ip_network("0.0.0.0/1"), ip_network("128.0.0.0/1")]
V6 = [ip_network("::/1"), ip_network("8000::/1")]


class _Msg:
    def __init__(self, attrs: dict[str, object]) -> None:
        self.attrs = attrs

    def get_attr(self, name: str) -> object:
        return self.attrs.get(name)


class FakeTun:
    index = 7

    def __init__(self, oif: int = 2, via: str | None = "198.18.0.254") -> None:
        self.routed: set[IPNetwork] = set()
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.oif, self.via = oif, via

    def add_routes(self, prefixes: Iterable[IPNetwork]) -> None:
        self.routed.update(prefixes)

    def remove_routes(self, prefixes: Iterable[IPNetwork]) -> None:
        self.routed.difference_update(prefixes)

    def netlink(self, what: str, method: str, *args: object, **kwargs: Any) -> object:
        assert method == "route"
        self.calls.append((str(args[0]), kwargs))
        if args[0] == "get":
            return [_Msg({"RTA_OIF": self.oif, "RTA_GATEWAY": self.via})]
        return None

    def pins(self) -> list[str]:
        live: list[str] = []
        for op, kw in self.calls:
            if op == "replace":
                live.append(kw["dst"])
            elif op == "del":
                live.remove(kw["dst"])
        return live


def test_device_prefixes() -> None:
    net = ip_network("198.19.2.0/24")
    assert device_prefixes([net]) == [net]
    assert device_prefixes([ip_network("0.0.0.0/0")]) == V4 + V6  # no IPv6 leak
    assert device_prefixes([ip_network("::/0")]) == V6
    assert device_prefixes([ip_network("::/0"), ip_network("0.0.0.0/0")]) == V6 + V4


def test_full_tunnel_pins_the_gateway_and_unpins_it() -> None:
    tun = FakeTun()
    routes = Routes(tun, lambda: ["198.18.0.2"])
    routes.add_routes([ip_network("198.19.2.0/24")])  # does not cover the gateway
    assert tun.pins() == []
    routes.add_routes([ip_network("0.0.0.0/0")])
    assert tun.pins() == ["198.18.0.2/32"]
    (_, pin), *_ = [c for c in tun.calls if c[0] == "replace"]
    assert pin["gateway"] == "198.18.0.254" and pin["oif"] == 2
    assert tun.routed == {ip_network("198.19.2.0/24"), *V4, *V6}
    routes.add_routes([ip_network("0.0.0.0/0")])  # again (a rekey): one pin still
    assert len([c for c in tun.calls if c[0] == "get"]) == 1
    routes.remove_routes([ip_network("0.0.0.0/0")])
    assert tun.pins() == []
    assert tun.routed == {ip_network("198.19.2.0/24")}


def test_ipv6_halves_stay_while_an_ipv6_default_is_routed() -> None:
    tun = FakeTun(via=None)
    routes = Routes(tun, lambda: ["198.18.0.2"])
    routes.add_routes([ip_network("0.0.0.0/0"), ip_network("::/0")])
    routes.remove_routes([ip_network("0.0.0.0/0")])
    assert tun.routed == set(V6)
    assert tun.pins() == []
    routes.close()


def test_close_withdraws_the_pins_and_a_name_is_not_pinned() -> None:
    tun = FakeTun(via=None)
    routes = Routes(tun, lambda: ["gw.example.test", "198.18.0.2"])
    routes.add_routes([ip_network("198.18.0.0/15")])
    assert tun.pins() == ["198.18.0.2/32"]
    assert "gateway" not in tun.calls[-1][1]  # on-link: no next hop
    routes.close()
    assert tun.pins() == []


def test_no_underlay_route_is_not_pinned_into_the_tunnel() -> None:
    tun = FakeTun(oif=FakeTun.index)
    routes = Routes(tun, lambda: ["198.18.0.2"])
    routes.add_routes([ip_network("0.0.0.0/0")])
    assert tun.pins() == []
