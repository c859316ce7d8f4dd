"""espfast/tun.py: add_routes asks netlink once per prefix, however many Child SAs (and
rekeys, and handshakes with peers behind the same prefix) route it again."""

from __future__ import annotations

import ipaddress
from typing import Any

from espfast.tun import Tun


class RecordingTun(Tun):
    """A Tun without a device: its netlink calls are recorded, not made."""

    def __init__(self) -> None:  # no super().__init__: no device, no netlink socket
        self.name, self.index, self._routed = "ef-test0", 7, set()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _netlink(self, what: str, method: str, *args: object, **kwargs: object) -> Any:
        self.calls.append((what, kwargs))


def test_each_prefix_is_routed_once() -> None:
    tun = RecordingTun()
    a, b = ipaddress.ip_network("198.19.2.0/24"), ipaddress.ip_network("2001:2:0:2::/64")
    tun.add_routes([a])
    tun.add_routes([a, b])
    tun.add_routes([b, a])
    assert [what for what, _ in tun.calls] == [f"add route {a}", f"add route {b}"]
    assert all(kw["oif"] == 7 for _, kw in tun.calls)


def test_a_withdrawn_prefix_is_routed_again() -> None:
    """After a dead peer's routes are withdrawn, the restarted tunnel must route again."""
    tun = RecordingTun()
    a = ipaddress.ip_network("198.19.2.0/24")
    tun.add_routes([a])
    tun.remove_routes([a])
    tun.add_routes([a])
    assert [what for what, _ in tun.calls] == [
        f"add route {a}", f"remove route {a}", f"add route {a}"
    ]  # fmt: skip
