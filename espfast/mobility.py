"""The MOBIKE initiator's eyes (RFC 4555 §3.5): notice when our addresses or routes change
and, for every IKE SA we initiated with MOBIKE, find the source address the kernel now
uses towards the peer; when it is not the IKE SA's, the IKE SA moves there with all its
Child SAs (``IkeSa.update_addresses``: UPDATE_SA_ADDRESSES, the peer re-points them).

Changes come as rtnetlink multicast events (links, IPv4/IPv6 addresses and routes) on a
netlink socket the event loop watches: no polling. The events themselves are not parsed;
any of them means "look again": at once for the path (``on_event``: every batch of
events read; the kernel changed its routes before it told us, so the lookup already sees
the new path, and while the traffic waits for the move every millisecond counts), and
once more after a short settling time for everything (``on_change``: a link going down
brings a burst: the link, its addresses, its routes; the settled look catches a state
the first one saw half-made, and re-reads our address list). Looking is the kernel's
own route lookup (a connected UDP socket's source address, policy routing included), so
what we pick is what the kernel will send from. Sending from the new address needs the
UDP sockets bound to the wildcard address (``listen = "0.0.0.0:4500"``).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Callable, Iterable
from typing import Any

from pyroute2.netlink.rtnl import (
    RTMGRP_IPV4_IFADDR,
    RTMGRP_IPV4_ROUTE,
    RTMGRP_IPV6_IFADDR,
    RTMGRP_IPV6_ROUTE,
    RTMGRP_LINK,
)

log = logging.getLogger(__name__)

GROUPS = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE
)
SETTLE = 0.05  # seconds after the last event of a burst before looking again


def source_for(peer: str) -> str | None:
    """The address the kernel would send from to ``peer`` now; None without a route."""
    family = socket.AF_INET6 if ":" in peer else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        try:
            s.connect((peer, 4500))  # a route lookup; nothing is sent
        except OSError:
            return None
        return str(s.getsockname()[0])


# ifa_flags that make an address unusable as a path (linux/if_addr.h).
_IFA_F_DADFAILED, _IFA_F_DEPRECATED, _IFA_F_TENTATIVE = 0x08, 0x20, 0x40


def local_addresses(dump: Iterable[Any], skip: int | None = None) -> tuple[str, ...]:
    """Our addresses a peer could reach us at (for N(ADDITIONAL_*), RFC 4555 §3.6), from
    a netlink address dump (pyroute2 ``get_addr``; espfast/tun.py runs it on its netlink
    thread): global scope, not on interface index ``skip`` (our TUN device: its
    addresses are inside the tunnel), not loopback, link-local, multicast, tentative,
    deprecated or failed duplicate address detection."""
    out: dict[str, None] = {}
    for a in dump:
        if a["index"] == skip or a["scope"] != 0:
            continue
        flags = a.get_attr("IFA_FLAGS") or a["flags"]
        if flags & (_IFA_F_DADFAILED | _IFA_F_DEPRECATED | _IFA_F_TENTATIVE):
            continue
        text = a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS")
        if not text:
            continue
        ip = ipaddress.ip_address(text)
        if ip.is_loopback or ip.is_link_local or ip.is_multicast or ip.is_unspecified:
            continue
        out[str(ip)] = None
    return tuple(out)


def is_wildcard(address: str) -> bool:
    """The unspecified address (0.0.0.0, ::): sockets bound to it send from any address."""
    return ipaddress.ip_address(address).is_unspecified


class PathWatcher:
    """Calls ``on_event`` (on the event loop) at once for every batch of rtnetlink events
    read, and ``on_change`` once a burst of them settled."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_change: Callable[[], None],
        settle: float = SETTLE,
        on_event: Callable[[], None] | None = None,
    ) -> None:
        self.loop = loop
        self.on_change = on_change
        self.on_event = on_event
        self.settle = settle
        self.events = 0
        self._sock: socket.socket | None = None
        self._pending: asyncio.TimerHandle | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK,
                             socket.NETLINK_ROUTE)  # fmt: skip
        try:
            sock.bind((0, GROUPS))
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        assert self._sock is not None
        first = self.events
        while True:
            try:
                if not self._sock.recv(65536):
                    break
            except BlockingIOError:
                break
            except OSError as e:  # ENOBUFS: events were lost; looking again covers them
                log.debug("rtnetlink: %s", e)
                break
            self.events += 1
        log.debug("rtnetlink: %d events", self.events - first)
        if self._pending is not None:
            self._pending.cancel()
        self._pending = self.loop.call_later(self.settle, self._settled)
        if self.on_event is not None:
            self.on_event()

    def _settled(self) -> None:
        self._pending = None
        self.on_change()

    def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            self._pending = None
        if self._sock is not None:
            self.loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
