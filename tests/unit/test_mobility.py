"""espfast/mobility.py without root: the kernel's source address towards a peer, the
wildcard test, and the watcher's settling (a burst of rtnetlink events is one change).
The real thing (links going down, routes moving) is tests/netns/test_roaming.py."""

from __future__ import annotations

import asyncio
import socket

from espfast.mobility import PathWatcher, is_wildcard, source_for


def test_source_for_asks_the_kernel() -> None:
    assert source_for("127.0.0.1") == "127.0.0.1"
    assert is_wildcard("0.0.0.0") and is_wildcard("::")
    assert not is_wildcard("198.18.0.1") and not is_wildcard("::1")


def test_a_burst_of_events_is_one_change() -> None:
    async def run() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        changes: list[float] = []
        watcher = PathWatcher(loop, lambda: changes.append(loop.time()), settle=0.01)
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        watcher._sock = a  # stands in for the rtnetlink socket
        a.setblocking(False)
        loop.add_reader(a.fileno(), watcher._readable)
        for _ in range(5):
            b.send(b"event")
        async with asyncio.timeout(5):
            while not changes:
                await asyncio.sleep(0.01)
        watcher.close()
        b.close()
        return len(changes), watcher.events

    changes, events = asyncio.run(run())
    assert changes == 1 and events == 5
