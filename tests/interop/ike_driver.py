"""A minimal I/O shell for espfast's sans-I/O IKEv2 library, for interop tests.

It runs espfast.control (IkeSa, Responder) in the test process over real UDP sockets
bound inside a test namespace — made by a short-lived helper process in the namespace
and handed over with SCM_RIGHTS, since a socket keeps the namespace it was created in.
There is no dataplane: the shell adds and strips the non-ESP marker on port 4500
itself (RFC 3948) and ignores ESP. ``espfast up`` (the daemon, tests/interop/
test_up_charon.py) is the end-to-end peer; this shell reaches what its config cannot
express yet (certificates) and what only the control plane shows (keys, rekeys
started from either end).
"""

from __future__ import annotations

import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from espfast.control.events import Event
from espfast.control.ike_sa import IkeSa
from espfast.control.responder import Responder
from espfast.netns import Namespace

NON_ESP_MARKER = b"\x00\x00\x00\x00"
E = TypeVar("E")
POLL = 0.02

_SOCKET_HELPER = """
import socket, sys
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind((sys.argv[2], int(sys.argv[3])))
with socket.socket(fileno=int(sys.argv[1])) as back:
    socket.send_fds(back, [b"s"], [udp.fileno()])
"""


def udp_socket_in(ns: Namespace, addr: tuple[str, int]) -> socket.socket:
    """A UDP socket bound to ``addr`` inside ``ns``, owned by this process."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        argv = ns.argv(sys.executable, "-c", _SOCKET_HELPER, str(theirs.fileno()), *map(str, addr))
        subprocess.run(argv, pass_fds=[theirs.fileno()], check=True, timeout=30)
        _, fds, _, _ = socket.recv_fds(ours, 1, 1)
    if len(fds) != 1:
        raise RuntimeError(f"no socket came back from {ns.name}")
    return socket.socket(fileno=fds[0])


class IkeDriver:
    """UDP 500 and 4500 on ``addr`` in ``ns``; moves datagrams between them and IKE SAs."""

    def __init__(self, ns: Namespace, addr: str) -> None:
        self.addr = addr
        self.socks = {port: udp_socket_in(ns, (addr, port)) for port in (500, 4500)}
        self.sas: list[IkeSa] = []
        self.responder: Responder | None = None
        self.events: list[Event] = []

    def close(self) -> None:
        for sock in self.socks.values():
            sock.close()

    def __enter__(self) -> IkeDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _send(self, items: Iterable[tuple[bytes, tuple[str, int]]], port: int) -> None:
        for data, dest in items:
            payload = NON_ESP_MARKER + data if port == 4500 else data
            self.socks[port].sendto(payload, dest)

    def _flush(self, now: float) -> None:
        for sa in self.sas:
            self._send(sa.datagrams_to_send(now), sa.local[1])
            while (event := sa.next_event()) is not None:
                self.events.append(event)
        if self.responder is not None:
            self._send(self.responder.datagrams_to_send(now), 500)

    def _deliver(self, data: bytes, src: tuple[str, int], port: int, now: float) -> None:
        if port == 4500:
            if not data.startswith(NON_ESP_MARKER):
                return  # ESP or a NAT keepalive: no dataplane here
            data = data[len(NON_ESP_MARKER) :]
        if len(data) < 16:
            return
        spi_i, spi_r = data[:8], data[8:16]
        local = (self.addr, port)
        for sa in self.sas:
            if sa.spi_i.to_bytes(8, "big") == spi_i and (
                sa.initiator or sa.spi_r.to_bytes(8, "big") == spi_r
            ):
                sa.receive_datagram(data, src, now, local=local)
                return
        if self.responder is not None and spi_r == bytes(8):
            new = self.responder.receive_datagram(data, src, now, local=local)
            if new is not None:
                self.sas.append(new)

    def run(self, until: Callable[[], bool], timeout: float = 15.0) -> None:
        """Serve until ``until()`` holds (checked after every step); bounded by ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            for sa in self.sas:
                timer = sa.get_timer()
                if timer is not None and now >= timer:
                    sa.handle_timer(now)
            self._flush(now)
            if until():
                return
            if now >= deadline:
                raise TimeoutError(f"IKE did not reach the expected state in {timeout}s")
            timers = [t for sa in self.sas if (t := sa.get_timer()) is not None]
            # ``until`` may watch the world outside (charon): look again every POLL.
            wait = min([deadline, now + POLL, *timers]) - now
            readable, _, _ = select.select(list(self.socks.values()), [], [], max(0.0, wait))
            for port, sock in self.socks.items():
                if sock in readable:
                    data, src = sock.recvfrom(65535)
                    self._deliver(data, src, port, time.monotonic())

    def event(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]


def run_beside(driver: IkeDriver, action: Callable[[], object], timeout: float = 20.0) -> object:
    """Run ``action`` (e.g. charon initiating) in a thread while the driver serves."""
    result: list[object] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            result.append(action())
        except BaseException as exc:  # handed to the caller below
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    try:
        driver.run(lambda: not thread.is_alive(), timeout=timeout)
    finally:
        thread.join(timeout)
    if errors:
        raise errors[0]
    return result[0]
