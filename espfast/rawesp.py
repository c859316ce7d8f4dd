"""Plain ESP: the raw sockets that carry ESP as IP protocol 50 (RFC 4303 without the
RFC 3948 UDP header) for connections with ``encap = no`` when no NAT is in the way.

On a kernel without ESP (XFRM) support a raw ``IPPROTO_ESP`` socket sees every ESP
packet to the host; the dataplane (csrc/raw.c) checks the outer header, the SPI and that
the source is the SA's peer. An AF_INET raw socket hands over the IPv4 header with the
packet, an AF_INET6 one only the payload. Opening one needs CAP_NET_RAW, so the daemon
opens them before it drops its privileges.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from contextlib import contextmanager

IPPROTO_ESP = 50


def families_for(listen: str) -> tuple[socket.AddressFamily, ...]:
    """The raw socket families a daemon listening on ``listen`` needs: its own family,
    and both for the IPv6 wildcard (a dual-stack UDP socket has IPv4 peers too)."""
    if ":" not in listen:
        return (socket.AF_INET,)
    if ipaddress.ip_address(listen).is_unspecified:
        return (socket.AF_INET, socket.AF_INET6)
    return (socket.AF_INET6,)


@contextmanager
def raw_esp_sockets(listen: str) -> Iterator[list[socket.socket]]:
    """Raw IPPROTO_ESP sockets for the address ``listen`` (bound to it unless it is a
    wildcard), closed on exit. OSError (EPERM without CAP_NET_RAW) is the caller's."""
    socks: list[socket.socket] = []
    own = socket.AF_INET6 if ":" in listen else socket.AF_INET
    try:
        for family in families_for(listen):
            sock = socket.socket(family, socket.SOCK_RAW, IPPROTO_ESP)
            socks.append(sock)
            if family == own and not ipaddress.ip_address(listen).is_unspecified:
                sock.bind((listen, 0))
            sock.setblocking(False)
        yield socks
    finally:
        for sock in socks:
            sock.close()
