"""``espfast up -c FILE.toml``: the IKEv2 daemon (espfast/daemon.py) with its real I/O.

Creates the TUN device, binds UDP 500 and 4500 on the listen address, opens the dataplane
on the TUN device and the 4500 socket, says ``ready`` on stderr, initiates the connections
that have a ``remote`` and answers the others, until SIGINT/SIGTERM; then it deletes its
IKE SAs (waiting a few seconds for the peers) and prints its counters.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import signal
import socket
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from espfast.static import add_config_arguments, fmt_endpoint, print_error, udp_socket

if TYPE_CHECKING:
    from espfast.config import UpConfig
    from espfast.ctl import StatusDocument
    from espfast.daemon import Counters

READY = "ready"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from espfast.ctl import add_socket_argument
    from espfast.privs import add_user_argument

    add_config_arguments(parser, "daemon")
    add_socket_argument(parser)
    parser.add_argument(
        "--socket-group",
        metavar="GROUP",
        help="members of this group (name or number) may use the control socket too "
        "(espfast status, initiate, terminate, reload; directory 0750, socket 0660); "
        "default: root and the daemon's user only",
    )
    add_user_argument(parser)


def run(args: argparse.Namespace) -> int:
    from espfast.config import ConfigError, load_up
    from espfast.ctl import resolve_group
    from espfast.privs import harden

    if not args.check:
        harden()  # before any key is read: no core dumps
    try:
        config = load_up(args.config)
    except ConfigError as e:
        return print_error("up", e, 2)
    if args.check:
        print(f"{config.source}: OK ({len(config.connections)} connection(s))")
        return 0
    try:
        group = None if args.socket_group is None else resolve_group(args.socket_group)
        user = args.user or config.interface.user
        counters = asyncio.run(_serve(config, args.socket, user, group))
    except (OSError, ValueError, RuntimeError) as e:
        return print_error("up", e, 1)
    print(
        "espfast up: "
        + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counters.__dict__.items())
    )
    return 0


SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux: as root, past rmem_max
IKE_RECEIVE_BUFFER = 4 << 20  # bytes: a flood must not crowd out a peer while we run late


def _deep_receive_queue(sock: socket.socket) -> None:
    """A receive buffer that holds a second or more of a request flood, so that a busy
    machine scheduling us late does not drop the datagrams of legitimate peers in the
    kernel (beyond net.core.rmem_max when we may: SO_RCVBUFFORCE)."""
    for option in (SO_RCVBUFFORCE, socket.SO_RCVBUF):
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, option, IKE_RECEIVE_BUFFER)
            return


async def _serve(
    config: UpConfig, control_socket: Path, user: str | None = None, group: int | None = None
) -> Counters:
    from espfast.accounting import Accounting
    from espfast.clientdns import Resolver
    from espfast.clientnet import Routes
    from espfast.control.rng import SystemRng
    from espfast.ctl import ControlServer
    from espfast.daemon import IKE_PORT, Addr, Daemon
    from espfast.dataplane import Dataplane
    from espfast.metrics import Metrics, MetricsServer
    from espfast.mobility import PathWatcher, is_wildcard, local_addresses
    from espfast.operations import Operations
    from espfast.privs import drop_for_daemon, resolve_user
    from espfast.radius import RadiusClient
    from espfast.rawesp import raw_esp_sockets
    from espfast.static import SetupError
    from espfast.tun import IPInterface, create_device, open_tun

    loop = asyncio.get_running_loop()
    iface = config.interface
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    started = time.time()
    running: list[tuple[Daemon, Dataplane]] = []  # the socket is served once they run

    def status() -> StatusDocument:
        daemon, dp = running[0]
        return daemon.status_document(started, str(config.source), dataclasses.asdict(dp.stats()))

    owner = resolve_user(user).uid if user else None
    ctl = ControlServer(status, control_socket, owner=owner, group=group)
    async with contextlib.AsyncExitStack() as stack:
        # The control socket needs root's rights over its directory: bound first. From
        # here on the process keeps only what espfast/privs.py says it needs.
        ctl.bind()
        stack.push_async_callback(ctl.close)
        device = create_device(iface.name, iface.offload)  # /dev/net/tun may be root's
        stack.callback(device.close)
        # Plain ESP (encap = no): raw IP protocol 50 sockets need CAP_NET_RAW, so before
        # the drop; a connection that comes with a reload later finds them only when one
        # with encap = no was there at start (else its SAs fail to install, logged).
        raws: list[socket.socket] = []
        if any(not c.ike.force_encap for c in config.connections):
            try:
                raws = stack.enter_context(raw_esp_sockets(iface.listen[0]))
            except OSError as e:
                raise SetupError(f"encap = no needs a raw ESP socket: {e.strerror}") from None
        drop_for_daemon(user, IKE_PORT, iface.listen[1])
        tun = open_tun(
            iface.name,
            mtu=iface.mtu,
            addresses=iface.addresses,
            routes=[],
            vnet_hdr=iface.offload,
            device=device,
        )
        stack.callback(tun.close)
        # Full tunnels: the gateways' outer addresses (those of the config in force, after
        # a reload too) stay on the underlay (espfast/clientnet.py).
        routes = Routes(tun, lambda: [c.remote[0] for c in daemon.config.connections if c.remote])
        stack.callback(routes.close)
        sock500 = stack.enter_context(udp_socket((iface.listen[0], IKE_PORT)))
        sock4500 = stack.enter_context(udp_socket(iface.listen))
        sock500.setblocking(False)
        _deep_receive_queue(sock500)
        dp = stack.enter_context(
            Dataplane(tun.fileno(), sock4500, workers=iface.workers, duplex=iface.duplex)
        )
        for raw in raws:
            dp.add_raw_socket(raw)
        dp.start()
        stack.callback(dp.stop)

        def send_500(data: bytes, addr: Addr) -> None:
            sock500.sendto(data, addr)

        def set_addresses(addresses: Iterable[IPInterface], add: bool) -> None:
            (tun.add_addresses if add else tun.remove_addresses)(addresses)

        radius = None
        if config.radius is not None:
            radius = RadiusClient(config.radius)
            await radius.open()  # the source address the route to each server gives
            stack.callback(radius.close)
        daemon = Daemon(
            config, dp, routes.add_routes, send_500, SystemRng(), loop,
            remove_routes=routes.remove_routes, set_addresses=set_addresses, radius=radius,
        )  # fmt: skip
        if radius is not None and radius.cfg.accounting:
            daemon.accounting = Accounting(radius, loop, daemon.radius_counts)
            stack.callback(daemon.accounting.close)
        # A road-warrior client: the gateway's DNS servers (espfast/clientdns.py).
        resolver = Resolver(tun.name, iface.resolver)
        daemon.listeners.append(resolver.on_event)
        stack.callback(resolver.close)
        running.append((daemon, dp))
        counted = Metrics(daemon, dp.stats, iface.workers)
        metrics = MetricsServer(counted, loop)
        ops = Operations(daemon, on_interface=lambda new: metrics.move(new.interface.metrics))
        counted.ops = ops
        if iface.metrics is not None:
            metrics.start(iface.metrics)
        stack.callback(metrics.stop)
        ctl.add_handlers(ops.handlers())

        def read_500() -> None:
            while True:
                try:
                    data, addr = sock500.recvfrom(65535)
                except OSError:  # nothing more to read (or an ICMP error reported late)
                    return
                daemon.datagram_received(data, addr[:2], IKE_PORT)

        def read_4500() -> None:
            for data, addr in dp.recv_ike():
                daemon.datagram_received(data, addr, iface.listen[1])
            daemon.traffic_without_sa(dp.take_no_sa())
            daemon.esp_moved(dp.take_moved())
            if dp.take_traffic():
                daemon.traffic_moved()

        loop.add_reader(sock500.fileno(), read_500)
        stack.callback(loop.remove_reader, sock500.fileno())
        loop.add_reader(dp.ike_fileno(), read_4500)
        stack.callback(loop.remove_reader, dp.ike_fileno())
        if is_wildcard(iface.listen[0]):  # we may roam: follow our addresses and routes

            def addresses() -> tuple[str, ...]:  # for N(ADDITIONAL_*): on tun's netlink thread
                return local_addresses(tun.netlink("list addresses", "get_addr"), tun.index)

            daemon.addresses = addresses
            watcher = PathWatcher(loop, daemon.path_changed, on_event=daemon.path_moved)
            watcher.start()
            stack.callback(watcher.close)
        await ctl.start()
        loop.add_signal_handler(signal.SIGHUP, ops.reload_on_signal)
        stack.callback(loop.remove_signal_handler, signal.SIGHUP)
        try:
            daemon.start()
            print(
                f"espfast up: {READY}: {tun.name} up, IKE on {iface.listen[0]}, "
                f"control socket {control_socket}",
                file=sys.stderr,
                flush=True,
            )
            await stop.wait()
            await daemon.shutdown()
            if radius is not None:
                await radius.drain(radius.cfg.timeout * 2)
                rc = dataclasses.asdict(radius.counters)
                print("espfast up: radius: " + ", ".join(f"{k}={v}" for k, v in rc.items()))
            drops = dp.stats().drops()
            print("espfast up: dataplane drops: "
                  + (", ".join(f"{k}={v}" for k, v in drops.items()) or "none"))  # fmt: skip
        finally:
            await ctl.close()
    return daemon.count_ike()


def pair_configs(
    psk: str,
    *,
    esp: str = "aes128gcm16",
    ike: str = "aes128gcm16-prfsha256-x25519",
    outer: tuple[str, str] = ("198.18.0.1", "198.18.0.2"),
    workers: int | None = None,
) -> tuple[str, str]:
    """Two matching ``espfast up`` configs as TOML text: a initiates to b, b only answers.

    Inner addresses as for ``espfast static`` (198.19.1.1/24 on a, 198.19.2.1/24 on b);
    each side identifies itself by its outer address. ``workers``: dataplane threads per
    direction (None: the default, see espfast.config.default_workers).
    """
    sides = (
        (outer[0], "198.19.1.1/24", "198.19.1.0/24"),
        (outer[1], "198.19.2.1/24", "198.19.2.0/24"),
    )
    texts = []
    for me in (0, 1):
        (addr, inner, net), (peer, _, peer_net) = sides[me], sides[1 - me]
        texts.append(
            "[interface]\n"
            'name = "espfast0"\n'
            f'addresses = ["{inner}"]\n'
            f'listen = "{fmt_endpoint((addr, 4500))}"\n'
            + (f"workers = {workers}\n" if workers is not None else "")
            + "\n"
            "[[connection]]\n"
            'name = "site"\n'
            f'remote = "{peer if me == 0 else "%any"}"\n'
            f'local_id = "{addr}"\n'
            f'remote_id = "{peer}"\n'
            f'psk = "{psk}"\n'
            f'proposals = "{ike}"\n'
            "\n"
            "[[connection.child]]\n"
            'name = "net"\n'
            f'local_ts = ["{net}"]\n'
            f'remote_ts = ["{peer_net}"]\n'
            f'esp_proposals = "{esp}"\n'
        )
    return texts[0], texts[1]
