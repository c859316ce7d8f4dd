"""espfast/mobility.py without root: the kernel's source address towards a peer, the
wildcard test, the watcher (every batch of rtnetlink events looked at at once, a burst
of them one settled change), and the daemon moving an IKE SA on the first look, before
the burst settled. The real thing (links going down, routes moving) is
tests/netns/test_roaming.py."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from test_daemon import A, conf, make_pair, settle

from espfast import daemon as daemon_module
from espfast.control.tasks.mobike import MobikeInformational
from espfast.dataplane import Direction
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


def test_every_batch_of_events_is_looked_at_at_once() -> None:
    """``on_event`` runs for each batch read, without waiting for the burst to settle
    (here it never does while the test runs: ``on_change`` is an hour away)."""

    async def run() -> tuple[list[str], int]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        watcher = PathWatcher(loop, lambda: seen.append("settled"), settle=3600,
                              on_event=lambda: seen.append("event"))  # fmt: skip
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        watcher._sock = a
        a.setblocking(False)
        loop.add_reader(a.fileno(), watcher._readable)
        for batch in (1, 2):
            for _ in range(3):
                b.send(b"event")
            async with asyncio.timeout(5):
                while seen.count("event") < batch:
                    await asyncio.sleep(0.005)
        watcher.close()
        b.close()
        return seen, watcher.events

    seen, events = asyncio.run(run())
    assert seen == ["event", "event"] and events == 6


NEW = "198.18.0.9"  # the client's address on its new uplink


def test_the_first_look_moves_and_the_gateway_follows_after_its_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A roaming client (listening on the wildcard address) whose route to the gateway
    now leaves from NEW: ``path_moved`` (the first look at a batch of netlink events)
    sends UPDATE_SA_ADDRESSES from there at once; the gateway points its outbound SA at
    NEW only once NEW answered its return routability check (RFC 4555 §3.5, §5.2); the
    settled look (``path_changed``) finds nothing more to move."""
    route = {"src": A}
    monkeypatch.setattr(daemon_module, "source_for", lambda peer: route["src"])

    async def scenario() -> None:
        text_a, text_b = conf()
        text_a = text_a.replace(f'listen = "{A}:4500"', 'listen = "0.0.0.0:4500"')
        a, b, dp_a, dp_b, _ = make_pair(tmp_path, asyncio.get_running_loop(), text_a, text_b)
        b.start()
        a.start()
        await settle(lambda: len(dp_a.sas) == 2 and len(dp_b.sas) == 2)
        (sa_a,) = a.sas
        (sa_b,) = b.sas
        assert sa_a.mobike and sa_a.local[0] == A
        moved: list[tuple[int, tuple[str, int]]] = []  # outbound SAs re-pointed

        def update_peer(
            spi: int, peer: tuple[str, int], *, direction: Direction = Direction.OUT,
            raw_esp: bool = False,
        ) -> None:  # fmt: skip
            if direction is Direction.OUT:
                moved.append((spi, peer))

        dp_b.update_peer = update_peer  # type: ignore[method-assign]
        ((_, child_b),) = b.children.items()

        route["src"], dp_a.me = NEW, NEW  # the route moved; a's datagrams leave from NEW
        a.path_moved()
        assert sa_a.local == (NEW, 4500)
        update = sa_a.tm.active
        assert isinstance(update, MobikeInformational) and update.update  # sent already
        dp_a.drop = 1  # what a sends next, its answer to the gateway's check, is lost
        await settle(lambda: sa_b.remote == (NEW, 4500) and dp_a.drop == 0)
        assert not moved  # IKE follows at once, ESP only once the check is answered
        await settle(lambda: moved == [(child_b.spi_out, (NEW, 4500))], timeout=30)
        assert sa_b.remote == (NEW, 4500) and sa_b.moves == 1
        await settle(lambda: sa_a.tm.active is None and sa_a.moves == 1)
        a.path_changed()  # the burst settled: the same path, nothing more to do
        assert sa_a.tm.active is None and not sa_a.tm.queue and sa_a.moves == 1
        await a.shutdown()

    asyncio.run(scenario())
