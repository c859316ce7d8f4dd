"""The TUN device: create it (python-pytun) and configure it (pyroute2, netlink).

A :class:`Tun` owns the device: addresses, MTU, link state and the routes that send the
peer's inner prefixes into it. Closing the file descriptor removes the device (it is never
made persistent), and with it every address and route, so a crash leaves nothing behind.
Used by ``espfast static`` and the ``espfast up`` daemon.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytun
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

IFA_F_NODAD = 0x02  # linux/if_addr.h: no duplicate address detection on a point-to-point TUN


class TunError(RuntimeError):
    """The device could not be created or configured; the message says which step."""


def create_device(name: str, vnet_hdr: bool = True) -> Any:
    """Create the TUN device (CAP_NET_ADMIN, and access to /dev/net/tun); its file object.

    Separate from :class:`Tun` so that a daemon started as root can create it before it
    becomes a user who cannot open /dev/net/tun (espfast/privs.py): no thread starts here.
    """
    # IFF_VNET_HDR: the dataplane takes TCP super-packets from the kernel (TSO) and
    # hands coalesced ones back (GRO) instead of one packet per system call.
    flags = pytun.IFF_TUN | pytun.IFF_NO_PI | (pytun.IFF_VNET_HDR if vnet_hdr else 0)
    try:
        return pytun.TunTapDevice(name=name, flags=flags)
    except pytun.Error as e:
        raise TunError(f"cannot create TUN device {name!r}: {e}") from None


class Tun:
    """A configured layer-3 TUN device (no packet-information header).

    Every netlink call runs on one private thread: pyroute2's synchronous API drives an
    asyncio loop of its own, which cannot run inside the daemon's (it adds routes from
    event-loop callbacks). The calls are short; the caller waits for each.
    """

    def __init__(self, name: str, *, mtu: int, vnet_hdr: bool = True, device: Any = None) -> None:
        """``device``: one :func:`create_device` made (before privileges were dropped)."""
        self._dev = device if device is not None else create_device(name, vnet_hdr)
        self.name: str = self._dev.name
        self._routed: set[IPNetwork] = set()  # prefixes add_routes already routed here
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(1, thread_name_prefix="netlink")
        self._ipr: IPRoute | None = None
        try:
            self._ipr = self._pool.submit(IPRoute).result()
            self.index: int = self._netlink("look up the link", "link_lookup", ifname=self.name)[0]
            self._netlink("set MTU", "link", "set", index=self.index, mtu=mtu)
        except BaseException:
            self.close()
            raise
        self.mtu = mtu

    def fileno(self) -> int:
        return int(self._dev.fileno())

    def _netlink(self, what: str, method: str, *args: object, **kwargs: object) -> Any:
        assert self._pool is not None, "the TUN device is closed"
        try:
            return self._pool.submit(getattr(self._ipr, method), *args, **kwargs).result()
        except NetlinkError as e:
            raise TunError(f"{self.name}: cannot {what}: {e.args[-1]}") from None

    def netlink(self, what: str, method: str, *args: object, **kwargs: object) -> Any:
        """Any pyroute2 ``IPRoute`` call on the netlink thread (``what`` names it in the
        :class:`TunError`): espfast/clientnet.py's routes beside the device's own."""
        return self._netlink(what, method, *args, **kwargs)

    def add_addresses(self, addresses: Iterable[IPInterface]) -> None:
        for a in addresses:
            flags = IFA_F_NODAD if a.version == 6 else 0
            self._netlink(
                f"add address {a}",
                "addr",
                "add",
                index=self.index,
                address=str(a.ip),
                prefixlen=a.network.prefixlen,
                flags=flags,
            )

    def remove_addresses(self, addresses: Iterable[IPInterface]) -> None:
        for a in addresses:
            self._netlink(f"remove address {a}", "addr", "del", index=self.index,
                          address=str(a.ip), prefixlen=a.network.prefixlen)  # fmt: skip

    def up(self) -> None:
        self._netlink("set the link up", "link", "set", index=self.index, state="up")

    def add_routes(self, prefixes: Iterable[IPNetwork]) -> None:
        """Route each prefix into the device (``replace``: a prefix may equal a connected one).
        A prefix already routed here is skipped: the daemon calls this for every Child SA
        (each rekey, each handshake with a peer of the same prefix), and a netlink round
        trip per call was a third of a responder's handshake time. :meth:`remove_routes`
        forgets what it withdraws."""
        for net in prefixes:
            if net in self._routed:
                continue
            family = socket.AF_INET6 if net.version == 6 else socket.AF_INET
            self._netlink(
                f"add route {net}",
                "route",
                "replace",
                dst=str(net),
                oif=self.index,
                family=family,
                proto="static",
            )
            self._routed.add(net)

    def remove_routes(self, prefixes: Iterable[IPNetwork]) -> None:
        """Withdraw routes that :meth:`add_routes` made."""
        for net in prefixes:
            family = socket.AF_INET6 if net.version == 6 else socket.AF_INET
            self._routed.discard(net)
            self._netlink(f"remove route {net}", "route", "del", dst=str(net), oif=self.index,
                          family=family)  # fmt: skip

    def close(self) -> None:
        """Close the device (which removes it with its addresses and routes)."""
        ipr, self._ipr = self._ipr, None
        pool, self._pool = self._pool, None
        if pool is not None:
            if ipr is not None:
                pool.submit(ipr.close).result()
            pool.shutdown()
        dev, self._dev = self._dev, None
        if dev is not None:
            dev.close()


def open_tun(
    name: str,
    *,
    mtu: int,
    addresses: Iterable[IPInterface],
    routes: Iterable[IPNetwork],
    vnet_hdr: bool = True,
    device: Any = None,
) -> Tun:
    """Create ``name`` (or take ``device``, see :func:`create_device`), set its MTU and
    addresses, bring it up and route ``routes`` into it."""
    tun = Tun(name, mtu=mtu, vnet_hdr=vnet_hdr, device=device)
    try:
        tun.add_addresses(addresses)
        tun.up()
        tun.add_routes(routes)
    except BaseException:
        tun.close()
        raise
    log.info("%s: up, mtu %d", tun.name, mtu)
    return tun
