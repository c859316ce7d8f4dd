"""Operating a running ``espfast up``: reload, initiate, terminate (as swanctl's
``--load-all``, ``--initiate``, ``--terminate``), over the control socket (espfast/ctl.py,
root or the daemon's own user only).

Daemon side, :class:`Operations` adds three commands to the control socket::

    -> {"command": "reload"}
    <- {"ok": true, "result": {"config": "a.toml", "added": [...], "removed": [...],
                               "changed": [...], "unchanged": [...], "summary": "..."}}
    -> {"command": "initiate", "conn": "site", "child": "net", "wait": 30}
    <- {"ok": true, "result": {"conn": "site", "ike_sa": 3, "children": ["net"], ...}}
    -> {"command": "terminate", "conn": "site", "wait": 30}
    <- {"ok": false, "error": "terminate: no IKE SA of connection 'site'"}

``initiate`` answers once every child asked for is up (or the IKE SA or one of them
failed, or ``wait`` seconds passed); ``terminate`` once the peer confirmed the deletes
(or the IKE SAs gave up retransmitting). SIGHUP reloads as ``reload`` does, the outcome
logged. Client side, :func:`call` sends one of them for the ``espfast reload``,
``initiate`` and ``terminate`` commands: one line on stdout and exit status 0 on success,
one line on stderr and 1 (2 for a config the daemon refused) on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from espfast.control.manager import drop_pools
from espfast.logfmt import event as logged

if TYPE_CHECKING:
    from espfast.config import ConnectionConfig, IPInterface, UpConfig
    from espfast.control.events import Event
    from espfast.daemon import Daemon

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 30.0  # seconds initiate / terminate wait for the outcome
MAX_TIMEOUT = 600.0
CONFIG_REFUSED = "config refused"  # how a reload's ConfigError answer starts


@dataclass
class _Waiter:
    """An initiate or terminate waiting for events about the IKE SAs ``ids``."""

    ids: set[int]
    children: set[str]  # initiate: the children still to come up
    done: asyncio.Future[str]  # the outcome: "" (success) or why it failed
    up: list[str] = field(default_factory=list)  # initiate: the children that came up


class Operations:
    """Reload, initiate and terminate on a running :class:`espfast.daemon.Daemon`.

    ``load`` reads a config file (espfast.config.load_up); ``on_interface`` is told the
    new ``[interface]`` after a reload (e.g. to move the metrics endpoint)."""

    def __init__(
        self,
        daemon: Daemon,
        load: Callable[[str], UpConfig] | None = None,
        on_interface: Callable[[UpConfig], None] | None = None,
    ) -> None:
        from espfast.reload import fingerprints

        self.daemon = daemon
        self._load = load
        self._on_interface = on_interface
        self._prints = fingerprints(daemon.config)
        self._waiters: list[_Waiter] = []
        self._reloading = asyncio.Lock()
        self.reloads = {"ok": 0, "refused": 0}  # for the metrics
        daemon.listeners.append(self._on_event)

    def handlers(self) -> dict[str, Callable[[Mapping[str, Any]], Any]]:
        """The control socket commands (ControlServer(handlers=...))."""
        return {
            "reload": lambda _req: self.reload(),
            "initiate": self.initiate,
            "terminate": self.terminate,
        }

    # -- reload ------------------------------------------------------------------------------

    async def reload(self) -> dict[str, Any]:
        """Re-read the config file (see espfast/reload.py). A broken file (or a change
        that needs a restart) raises ValueError with the one-line error, and nothing
        changes."""
        from espfast.config import ConfigError, load_up
        from espfast.reload import diff, fingerprints, interface_changes

        async with self._reloading:
            self._not_closing()
            old = self.daemon.config
            try:
                new = (self._load or load_up)(str(old.source))
            except ConfigError as e:
                self.reloads["refused"] += 1
                raise ValueError(f"{CONFIG_REFUSED}: {e}") from None
            restart = interface_changes(old.interface, new.interface)
            if restart:
                self.reloads["refused"] += 1
                raise ValueError(
                    f"{CONFIG_REFUSED}: {new.source}: interface."
                    f"{', interface.'.join(restart)}: changed; that takes a restart of the "
                    "daemon (the running config is kept)"
                )
            if new.radius != old.radius:  # the RADIUS client holds the servers and secrets
                self.reloads["refused"] += 1
                raise ValueError(
                    f"{CONFIG_REFUSED}: {new.source}: radius: changed; that takes a restart "
                    "of the daemon (the running config is kept)"
                )
            prints = fingerprints(new)
            d = diff(self._prints, prints)
            self._apply(new, d.removed + d.changed, d.added + d.changed, set(d.unchanged))
            self._prints = prints
            self.reloads["ok"] += 1
            log.warning("reloaded %s: %s", new.source, d.summary(),
                        extra=logged("config_reloaded", config=str(new.source), added=d.added,
                                     removed=d.removed, changed=d.changed))  # fmt: skip
            if self._on_interface is not None:
                self._on_interface(new)
            return {
                "config": str(new.source),
                "added": list(d.added),
                "removed": list(d.removed),
                "changed": list(d.changed),
                "unchanged": list(d.unchanged),
                "summary": d.summary(),
            }

    def _apply(
        self, new: UpConfig, stop: Iterable[str], start: Iterable[str], keep: set[str]
    ) -> None:
        import dataclasses

        dm = self.daemon
        old = {c.name: c for c in dm.config.connections}
        # Untouched connections keep the very objects their IKE SAs were made with.
        conns = tuple(old[c.name] if c.name in keep else c for c in new.connections)
        stop, start = list(stop), list(start)
        now = dm.loop.time()
        self._untrap([old[n] for n in stop if n in old], keep=new)
        for name in stop:
            self._cancel_retry(name)
            dm._retries.pop(name, None)
            dm.mgr.terminate(name, now)
            drop_pools(dm.mgr.pools, name)
            for key in [k for k in dm.mgr.traps if k[0] == name]:
                del dm.mgr.traps[key]
        self._readdress(dm.config.interface.addresses, new.interface.addresses)
        dm.config = dataclasses.replace(new, connections=conns)
        iface = new.interface
        dm.mgr.reconfigure([c.ike for c in conns], cookie_threshold=iface.cookie_threshold,
                           half_open_limit=iface.half_open_limit)  # fmt: skip
        dm._pump()  # the DELETEs go out (and the Child SAs of stopped connections go)
        by_name = {c.name: c for c in conns}
        for name in start:
            dm.start_connection(by_name[name])
        dm._pump()

    def _untrap(self, conns: Iterable[ConnectionConfig], keep: UpConfig) -> None:
        """Withdraw the routes the traps of ``conns`` put into the TUN device, unless an
        installed Child SA or a trap of a connection in ``keep`` needs them."""
        from espfast.daemon import _child_networks, _networks

        dm = self.daemon
        stopping = {c.name for c in conns}
        needed = {n for c in dm.children.values() for n in _networks(c.up.remote_ts)}
        for c in keep.connections:
            if c.name not in stopping and c.remote is not None:
                needed.update(n for k in c.children_to("trap") for n in _child_networks(c, k))
        gone = {n for c in conns for k in c.children_to("trap") for n in _child_networks(c, k)}
        gone -= needed
        if gone:
            try:
                dm.remove_routes(sorted(gone, key=str))
            except (OSError, RuntimeError) as e:  # TunError: netlink said no
                log.warning("cannot withdraw the routes to %s: %s", ", ".join(map(str, gone)), e)

    def _readdress(self, old: Iterable[IPInterface], new: Iterable[IPInterface]) -> None:
        """The TUN device's configured addresses: ``new`` instead of ``old``."""
        old, new = list(old), list(new)
        for add, addrs in ((False, [a for a in old if a not in new]),
                           (True, [a for a in new if a not in old])):  # fmt: skip
            if not addrs:
                continue
            try:
                self.daemon.set_addresses(addrs, add)
            except (OSError, RuntimeError) as e:  # TunError: netlink said no
                log.error("cannot %s %s: %s", "add" if add else "remove",
                          ", ".join(map(str, addrs)), e)  # fmt: skip

    def reload_on_signal(self) -> None:
        """SIGHUP: reload, logging the outcome (a refused config is an error line)."""
        task = asyncio.ensure_future(self._signalled())
        task.add_done_callback(lambda _t: None)

    async def _signalled(self) -> None:
        try:
            await self.reload()
        except ValueError as e:
            why = str(e).removeprefix(f"{CONFIG_REFUSED}: ").replace("\n", "; ")  # one line
            log.error("reload refused: %s", why, extra=logged("reload_refused", error=why))

    # -- initiate / terminate ----------------------------------------------------------------

    async def initiate(self, req: Mapping[str, Any]) -> dict[str, Any]:
        dm = self.daemon
        self._not_closing()
        conn = self._connection(req)
        if conn.remote is None:
            raise ValueError(
                f"connection {conn.name!r} has no remote address (%any): it only answers"
            )
        want = req.get("child")
        cfgs = list(conn.ike.children)
        if want is not None:
            cfgs = [c for c in cfgs if c.name == want]
            if not cfgs:
                known = ", ".join(c.name for c in conn.ike.children)
                raise ValueError(f"connection {conn.name!r} has no child {want!r} (known: {known})")
        if not cfgs:
            raise ValueError(f"connection {conn.name!r} has no child to initiate")
        from espfast.daemon import IKE_PORT

        timeout = _timeout(req)
        existing = dm.mgr.connection_sas(conn.name)
        up_now = {c.up.name for c in dm.children.values()
                  if existing and c.ike_sa_id == existing[0].ike_sa_id}  # fmt: skip
        if existing and existing[0].is_established and all(c.name in up_now for c in cfgs):
            return self._initiated(conn.name, existing[0].ike_sa_id, [c.name for c in cfgs], True)
        self._cancel_retry(conn.name)  # what a pending retry would do happens now
        log.info("%s: initiate requested", conn.name,
                 extra=logged("initiate_requested", connection=conn.name, child=want))  # fmt: skip
        sa = dm.mgr.start_children(conn.ike, cfgs, local=(dm.local, IKE_PORT),
                                   remote=conn.remote, now=dm.loop.time())  # fmt: skip
        waiter = self._wait({sa.ike_sa_id}, {c.name for c in cfgs} - up_now)
        if not waiter.children:
            waiter.done.set_result("")
        dm._pump()
        why = await self._outcome(waiter, timeout)
        if why:
            raise ValueError(f"{conn.name}: {why}")
        return self._initiated(conn.name, sa.ike_sa_id, [c.name for c in cfgs], False)

    def _initiated(
        self, name: str, ike_sa_id: int, children: list[str], already: bool
    ) -> dict[str, Any]:
        return {"conn": name, "ike_sa": ike_sa_id, "children": children, "already_up": already}

    async def terminate(self, req: Mapping[str, Any]) -> dict[str, Any]:
        dm = self.daemon
        conn = self._connection(req)
        timeout = _timeout(req)
        self._cancel_retry(conn.name)
        live = [sa for sa in dm.sas if sa.config.name == conn.name]
        if not live:
            raise ValueError(f"no IKE SA of connection {conn.name!r}")
        log.info("%s: terminate requested", conn.name,
                 extra=logged("terminate_requested", connection=conn.name))  # fmt: skip
        gone = dm.mgr.terminate(conn.name, dm.loop.time())
        waiter = self._wait({sa.ike_sa_id for sa in gone}, set())
        if not waiter.ids:  # only rekeyed-away ones: they went quietly
            waiter.done.set_result("")
        dm._pump()
        why = await self._outcome(waiter, timeout)
        if why:
            raise ValueError(f"{conn.name}: {why}")
        return {"conn": conn.name, "ike_sas": len(live)}

    def _cancel_retry(self, name: str) -> None:
        timer = self.daemon._retry_timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    def _not_closing(self) -> None:
        if self.daemon.mgr.closing:
            raise ValueError("the daemon is shutting down")

    def _connection(self, req: Mapping[str, Any]) -> ConnectionConfig:
        name = req.get("conn")
        if not isinstance(name, str) or not name:
            raise ValueError('the request names no connection ("conn")')
        for c in self.daemon.config.connections:
            if c.name == name:
                return c
        known = ", ".join(c.name for c in self.daemon.config.connections) or "none"
        raise ValueError(f"no connection named {name!r} (known: {known})")

    def _wait(self, ids: set[int], children: set[str]) -> _Waiter:
        waiter = _Waiter(set(ids), set(children), asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        return waiter

    async def _outcome(self, waiter: _Waiter, timeout: float) -> str:
        try:
            return await asyncio.wait_for(asyncio.shield(waiter.done), timeout)
        except TimeoutError:
            return f"no outcome within {timeout:g} s"
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _on_event(self, event: Event) -> None:
        """Daemon listener: settle the waiters these events decide."""
        from espfast.control.events import ChildSaFailed, ChildSaUp, IkeSaDown

        for w in list(self._waiters):
            if w.done.done() or event.__dict__.get("ike_sa_id") not in w.ids:
                continue
            if isinstance(event, IkeSaDown):
                if w.children:  # an initiate: its IKE SA went
                    w.done.set_result(f"IKE SA down: {event.reason}")
                    continue
                w.ids.discard(event.ike_sa_id)
                if not w.ids:
                    w.done.set_result("")
            elif isinstance(event, ChildSaUp) and event.name in w.children:
                w.children.discard(event.name)
                w.up.append(event.name)
                if not w.children:
                    w.done.set_result("")
            elif isinstance(event, ChildSaFailed) and event.name in w.children:
                w.done.set_result(f"child {event.name} failed: {event.reason}")


def _timeout(req: Mapping[str, Any]) -> float:
    value = req.get("wait", DEFAULT_TIMEOUT)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value <= MAX_TIMEOUT
    ):
        raise ValueError(f"wait must be a number of seconds in (0, {MAX_TIMEOUT:g}]")
    return float(value)


# ---------------------------------------------------------------------------------------
# Client side: espfast reload / initiate / terminate


def add_client_arguments(parser: argparse.ArgumentParser, *, timeout: float) -> None:
    from espfast.ctl import add_socket_argument

    add_socket_argument(parser)
    parser.add_argument(
        "--timeout",
        type=float,
        default=timeout,
        metavar="S",
        help=f"seconds to wait for the outcome (default {timeout:g})",
    )


def call(
    command: str, args: argparse.Namespace, render: Callable[[Any], str], **params: Any
) -> int:
    """Send ``command`` to the daemon, print one line: the rendered result (exit 0), or
    ``espfast COMMAND: why`` on stderr (exit 1; 2 for a config the daemon refused)."""
    from espfast.ctl import ControlError, DaemonError, request

    if command != "reload":
        params["wait"] = args.timeout
    try:
        result = request(command, args.socket, timeout=args.timeout + 5.0, **params)
    except DaemonError as e:
        why = e.error.removeprefix(f"{command}: ")
        refused = why.startswith(f"{CONFIG_REFUSED}: ")
        for line in why.removeprefix(f"{CONFIG_REFUSED}: ").splitlines() or [""]:
            print(f"espfast {command}: {line}", file=sys.stderr)  # a line per mistake
        return 2 if refused else 1
    except ControlError as e:
        print(f"espfast {command}: {e}", file=sys.stderr)
        return 1
    print(f"espfast {command}: {render(result)}")
    return 0
