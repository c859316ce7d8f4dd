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
    from espfast.daemon import Counters

READY = "ready"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from espfast.ctl import add_socket_argument

    add_config_arguments(parser, "daemon")
    add_socket_argument(parser)


def run(args: argparse.Namespace) -> int:
    from espfast.config import ConfigError, load_up

    try:
        config = load_up(args.config)
    except ConfigError as e:
        return print_error("up", e, 2)
    if args.check:
        print(f"{config.source}: OK ({len(config.connections)} connection(s))")
        return 0
    try:
        counters = asyncio.run(_serve(config, args.socket))
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


async def _serve(config: UpConfig, control_socket: Path) -> Counters:
    from espfast.control.rng import SystemRng
    from espfast.ctl import ControlServer
    from espfast.daemon import IKE_PORT, Addr, Daemon
    from espfast.dataplane import Dataplane
    from espfast.tun import IPInterface, open_tun

    loop = asyncio.get_running_loop()
    iface = config.interface
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with contextlib.ExitStack() as stack:
        tun = open_tun(
            iface.name,
            mtu=iface.mtu,
            addresses=iface.addresses,
            routes=[],
            vnet_hdr=iface.offload,
        )
        stack.callback(tun.close)
        sock500 = stack.enter_context(udp_socket((iface.listen[0], IKE_PORT)))
        sock4500 = stack.enter_context(udp_socket(iface.listen))
        sock500.setblocking(False)
        _deep_receive_queue(sock500)
        dp = stack.enter_context(Dataplane(tun.fileno(), sock4500, workers=iface.workers))
        dp.start()
        stack.callback(dp.stop)

        def send_500(data: bytes, addr: Addr) -> None:
            sock500.sendto(data, addr)

        def set_addresses(addresses: Iterable[IPInterface], add: bool) -> None:
            (tun.add_addresses if add else tun.remove_addresses)(addresses)

        daemon = Daemon(
            config, dp, tun.add_routes, send_500, SystemRng(), loop,
            remove_routes=tun.remove_routes, set_addresses=set_addresses,
        )  # fmt: skip

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

        loop.add_reader(sock500.fileno(), read_500)
        stack.callback(loop.remove_reader, sock500.fileno())
        loop.add_reader(dp.ike_fileno(), read_4500)
        stack.callback(loop.remove_reader, dp.ike_fileno())
        started = time.time()
        ctl = ControlServer(
            lambda: daemon.status_document(
                started, str(config.source), dataclasses.asdict(dp.stats())
            ),
            control_socket,
        )
        await ctl.start()
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
) -> tuple[str, str]:
    """Two matching ``espfast up`` configs as TOML text: a initiates to b, b only answers.

    Inner addresses as for ``espfast static`` (198.19.1.1/24 on a, 198.19.2.1/24 on b);
    each side identifies itself by its outer address.
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
            "\n"
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
