"""``espfast static -c FILE.toml``: an ESP tunnel with manually configured SAs.

Like ``ip xfrm`` manual keying or ``wg setconf``: the keys come from the config file (or
from key files an external key manager writes), no IKE runs. The command creates and
configures the TUN device, binds the UDP socket (4500), opens the dataplane, installs both
directions of every SA pair, says ``ready`` on stderr, and runs until SIGINT or SIGTERM;
then it prints the counters (``--json`` for a machine-readable form) and exits 0.

IKE datagrams that reach the socket (non-ESP marker) are counted and dropped: nothing
negotiates here. The config format is described in :mod:`espfast.config`.

Manual keys never change, so a restart must not number packets from 1 again (the AEAD
nonce is the sequence number): :mod:`espfast.seqstate` keeps a state file next to the
config (``--state`` to put it elsewhere), reserves sequence numbers ahead on disk, and
refuses to start without it unless ``--fresh-keys`` says the keys were never used.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Collection, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from espfast import netns

if TYPE_CHECKING:
    from espfast.config import SaPairConfig, StaticConfig
    from espfast.dataplane import Dataplane, SaParams
    from espfast.seqstate import SeqState

log = logging.getLogger(__name__)

READY = "ready"  # the word on stderr that tests and benchmarks wait for


class SetupError(RuntimeError):
    """The tunnel could not be set up (the message says which step); exit status 1."""


def add_config_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    """``-c FILE.toml`` and ``--check``, for every command that runs from a config file."""
    parser.add_argument(
        "-c", "--config", required=True, type=Path, metavar="FILE.toml", help=f"the {what} config"
    )
    parser.add_argument(
        "--check", action="store_true", help="only validate the config, then exit (0 if valid)"
    )


def print_error(command: str, error: Exception, status: int) -> int:
    """One line on stderr (a line per mistake when a config has several), no traceback;
    returns the exit status (2: config, 1: setup)."""
    for line in str(error).splitlines() or [""]:
        print(f"espfast {command}: {line}", file=sys.stderr)
    return status


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from espfast.privs import add_user_argument

    add_config_arguments(parser, "tunnel")
    parser.add_argument(
        "--state",
        type=Path,
        metavar="FILE",
        help="the sequence-number state file (default: the config's path + .state)",
    )
    parser.add_argument(
        "--fresh-keys",
        action="store_true",
        help="SAs the state file does not know have never been used: start them at 0 "
        "(without it a missing state file is an error: reused keys would repeat nonces)",
    )
    parser.add_argument(
        "--json", action="store_true", help="print the counters on exit as JSON (on stdout)"
    )
    add_user_argument(parser)


def run(args: argparse.Namespace) -> int:
    from espfast.config import ConfigError, load_static
    from espfast.privs import harden
    from espfast.seqstate import default_path

    if not args.check:
        harden()  # before any key is read: no core dumps
    try:
        config = load_static(args.config)
    except ConfigError as e:
        return print_error("static", e, 2)
    if args.check:
        print(f"{config.source}: OK ({len(config.sas)} SA pair(s))")
        return 0
    state = args.state or default_path(args.config)
    with _StopSignals() as stop:
        try:
            report = _run_tunnel(
                config, stop, state, args.user or config.interface.user, fresh_keys=args.fresh_keys
            )
        except (OSError, ValueError, RuntimeError) as e:
            # TunError, bind errors, the dataplane refusing an SA: one line, no traceback.
            return print_error("static", e, 1)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


def sa_params(pair: SaPairConfig) -> tuple[SaParams, SaParams]:
    """The dataplane's (outbound, inbound) SAs for one configured pair."""
    from espfast.dataplane import Direction, SaParams

    out, inbound = (
        SaParams(
            spi=keys.spi,
            direction=direction,
            transform=pair.transform,
            enc_key=keys.enc_key,
            integ_key=keys.integ_key,
            local_ts=pair.local_ts,
            remote_ts=pair.remote_ts,
            peer=pair.peer if direction is Direction.OUT or not pair.encap else None,
            raw_esp=not pair.encap,
            esn=pair.esn,
            replay_window=pair.replay_window,
        )
        for direction, keys in ((Direction.OUT, pair.outbound), (Direction.IN, pair.inbound))
    )
    return out, inbound


def _run_tunnel(
    config: StaticConfig,
    stop: _StopSignals,
    state_path: Path,
    user: str | None,
    *,
    fresh_keys: bool,
) -> dict[str, Any]:
    from espfast.dataplane import Dataplane, Direction
    from espfast.privs import drop_for_daemon
    from espfast.rawesp import raw_esp_sockets
    from espfast.seqstate import SeqState
    from espfast.tun import create_device, open_tun

    iface = config.interface
    routes = [net for sa in config.sas for net in sa.remote_ts]
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        # First: a missing state file is refused before anything is set up.
        state = SeqState.open(
            state_path,
            [(pair.name, sa) for pair in config.sas for sa in sa_params(pair)],
            fresh_keys=fresh_keys,
        )
        stack.callback(state.close, None)  # on an error: what is on disk stays
        device = create_device(iface.name, iface.offload)  # /dev/net/tun may be root's
        stack.callback(device.close)
        raws: list[socket.socket] = []  # plain ESP (encap = no): raw sockets need CAP_NET_RAW
        if any(not pair.encap for pair in config.sas):
            raws = stack.enter_context(raw_esp_sockets(iface.listen[0]))
        drop_for_daemon(user, iface.listen[1])  # espfast/privs.py: CAP_NET_ADMIN from here on
        tun = open_tun(
            iface.name,
            mtu=iface.mtu,
            addresses=iface.addresses,
            routes=routes,
            vnet_hdr=iface.offload,
            device=device,
        )
        stack.callback(tun.close)
        sock = stack.enter_context(udp_socket(iface.listen))
        dp = stack.enter_context(
            Dataplane(tun.fileno(), sock, workers=iface.workers, duplex=iface.duplex)
        )
        for raw in raws:
            dp.add_raw_socket(raw)
        # Numbers reserved and on disk before the dataplane may use them (seqstate).
        for sa, initial_seq, seq_limit in state.start():
            dp.add_sa(sa, initial_seq=initial_seq, seq_limit=seq_limit)
        dp.start()
        print(
            f"espfast static: {READY}: {tun.name} up, {len(config.sas)} SA pair(s), "
            f"ESP on {fmt_endpoint(iface.listen)}",
            file=sys.stderr,
            flush=True,
        )
        ike_dropped = _serve(dp, stop, state)
        dp.stop()
        state.close(dp)  # stopped: the exact numbers
        report: dict[str, Any] = {
            "interface": tun.name,
            "seconds": round(time.monotonic() - started, 3),
            "ike_datagrams_ignored": ike_dropped,
            "global": counters(dp.stats()),
            "sas": [],
        }
        for pair in config.sas:
            for direction, spi in (
                (Direction.OUT, pair.outbound.spi),
                (Direction.IN, pair.inbound.spi),
            ):
                entry: dict[str, Any] = {
                    "name": pair.name,
                    "direction": str(direction),
                    "spi": f"{spi:#010x}",
                }
                entry.update(counters(dp.sa_stats(spi, direction)))
                report["sas"].append(entry)
                dp.remove_sa(spi, direction)  # zeroes the keys now, not at process exit
    return report


def _serve(dp: Dataplane, stop: _StopSignals, state: SeqState) -> int:
    """Wait for a stop signal; drain (and count) IKE datagrams and keep the sequence
    state ahead of the dataplane meanwhile."""
    from espfast.seqstate import POLL_S

    ignored = 0
    with selectors.DefaultSelector() as sel:
        sel.register(stop.fileno(), selectors.EVENT_READ)
        sel.register(dp.ike_fileno(), selectors.EVENT_READ)
        while not stop.signalled:
            state.tick(dp)
            for key, _ in sel.select(POLL_S):
                if key.fd == stop.fileno():
                    stop.drain()
                else:
                    for _data, peer in dp.recv_ike():
                        ignored += 1
                        log.info("ignoring an IKE datagram from %s (static keying)", peer)
    log.info("stopping on %s", stop.signalled)
    return ignored


@contextlib.contextmanager
def udp_socket(listen: tuple[str, int]) -> Iterator[socket.socket]:
    """A UDP socket bound to ``listen`` (closed on exit); SetupError if it cannot bind."""
    family = socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        try:
            sock.bind(listen)
        except OSError as e:
            raise SetupError(f"cannot bind UDP {fmt_endpoint(listen)}: {e.strerror}") from None
        yield sock
    finally:
        sock.close()


def fmt_endpoint(ep: tuple[str, int]) -> str:
    return f"[{ep[0]}]:{ep[1]}" if ":" in ep[0] else f"{ep[0]}:{ep[1]}"


class _StopSignals:
    """SIGINT/SIGTERM set a flag and wake a selector (through the signal wakeup fd)."""

    def __init__(self) -> None:
        self.signalled: str | None = None
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        self._w.setblocking(False)
        self._old: dict[int, Any] = {}
        self._old_wakeup = -1

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.signalled = signal.Signals(signum).name

    def fileno(self) -> int:
        return self._r.fileno()

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._r.recv(256):
                pass

    def __enter__(self) -> _StopSignals:
        self._old_wakeup = signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        signal.set_wakeup_fd(self._old_wakeup)
        self._r.close()
        self._w.close()


def counters(stats: object) -> dict[str, int]:
    """A dataplane counters object as ``{name: value}`` (integers and flags)."""
    if dataclasses.is_dataclass(stats) and not isinstance(stats, type):
        items = dataclasses.asdict(stats).items()
    else:
        items = vars(stats).items()
    return {k: v for k, v in items if isinstance(v, int)}


def format_report(report: dict[str, Any]) -> str:
    """The counters for a human: traffic, then only the drop counters that moved (``--json``
    has them all)."""
    from espfast.dataplane import Stats

    g = report["global"]
    lines = [
        f"espfast static: {report['interface']} ran {report['seconds']:.1f} s",
        f"  received {g['rx_packets']} packets ({g['rx_bytes']} bytes), "
        f"sent {g['tx_packets']} packets ({g['tx_bytes']} bytes)",
        "  dropped: " + _nonzero(g, Stats.NOT_DROPS),
    ]
    if report["ike_datagrams_ignored"]:
        lines.append(f"  IKE datagrams ignored (static keying): {report['ike_datagrams_ignored']}")
    for sa in report["sas"]:
        lines.append(
            f"  {sa['name']} {sa['direction']:<3} spi {sa['spi']}: {sa['packets']} packets, "
            f"{sa['bytes']} bytes, seq {sa['seq']}; dropped: "
            + _nonzero(sa, {"name", "direction", "spi", "packets", "bytes", "seq"})
        )
    return "\n".join(lines)


def _nonzero(values: dict[str, Any], skip: Collection[str]) -> str:
    moved = [f"{k} {v}" for k, v in values.items() if k not in skip and v]
    return ", ".join(moved) or "none"


# ---------------------------------------------------------------------------------------
# Helpers for tests, benchmarks and demos: a matching pair of configs, and running the
# command in a namespace until it is ready.


def pair_configs(
    transform: str = "aes128gcm16",
    *,
    esn: bool = False,
    workers: int = 1,
    mtu: int = 1400,
    ifname: str = "espfast0",
    outer: tuple[str, str] = ("198.18.0.1", "198.18.0.2"),
    offload: bool = True,
    duplex: bool | None = None,
) -> tuple[str, str]:
    """Two matching configs (host a, host b) with fresh random keys, as TOML text.
    ``duplex`` None: the default (one thread for both directions with one worker).

    One SA pair carries IPv4 and IPv6: a is 198.19.1.1 and 2001:2:0:1::1, b is 198.19.2.1
    and 2001:2:0:2::1 (the inner addresses in BRIEF.md and :mod:`espfast.netns`).
    """
    from espfast.dataplane import Transform

    enc_len, integ_len = Transform(transform).key_lengths
    hosts = (
        (outer[0], "198.19.1.1/24", "2001:2:0:1::1/64", netns.INNER_A, netns.INNER6_A),
        (outer[1], "198.19.2.1/24", "2001:2:0:2::1/64", netns.INNER_B, netns.INNER6_B),
    )
    # Per direction (a->b, b->a): SPI (the top bits keep the two apart), keys in hex.
    dirs = [
        ((0xE + i) << 28 | secrets.randbits(28), secrets.token_hex(enc_len),
         secrets.token_hex(integ_len))
        for i in range(2)
    ]  # fmt: skip
    texts = []
    for me in (0, 1):
        addr, in4, in6, net4, net6 = hosts[me]
        peer_addr, _, _, peer4, peer6 = hosts[1 - me]
        lines = [
            "[interface]",
            f'name = "{ifname}"',
            f'addresses = ["{in4}", "{in6}"]',
            f"mtu = {mtu}",
            f'listen = "{fmt_endpoint((addr, 4500))}"',
            f"workers = {workers}",
            f"offload = {str(offload).lower()}",
            *([] if duplex is None else [f"duplex = {str(duplex).lower()}"]),
            "",
            "[[sa]]",
            'name = "tunnel"',
            f'transform = "{transform}"',
            f"esn = {str(esn).lower()}",
            f'peer = "{fmt_endpoint((peer_addr, 4500))}"',
            f'local_ts = ["{net4}", "{net6}"]',
            f'remote_ts = ["{peer4}", "{peer6}"]',
        ]
        for section, (spi, enc, integ) in (("out", dirs[me]), ("in", dirs[1 - me])):
            lines += ["", f"[sa.{section}]", f'spi = "{spi:#x}"']
            lines.append(f'enc_key = "{enc}"')
            if integ:
                lines.append(f'integ_key = "{integ}"')
        texts.append("\n".join(lines) + "\n")
    return texts[0], texts[1]


def write_private(path: Path, text: str) -> Path:
    """Write a file only its owner can read (configs hold keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return path


@dataclasses.dataclass
class Running:
    """An ``espfast static`` / ``up`` process in a namespace; ``stderr_head`` is what has
    been read of its stderr so far (at least up to ``ready``; a read may go further)."""

    ns: netns.Namespace
    proc: subprocess.Popen[bytes]
    stderr_head: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, timeout: float = 10.0) -> tuple[int, str, str]:
        """SIGTERM by PID; returns (exit status, stdout, all of stderr)."""
        status = self.ns.stop(self.proc, timeout)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.stderr_head += self.proc.stderr.read().decode(errors="replace")
        with contextlib.suppress(OSError):  # the control socket's directory, once empty
            control_socket_in(self.ns).parent.rmdir()
        return status, self.proc.stdout.read().decode(), self.stderr_head


def control_socket_in(ns: netns.Namespace) -> Path:
    """The control socket :func:`start_in` gives ``espfast up`` in ``ns``: in a directory
    of its own (the daemon refuses a directory others may write to, like /tmp itself)."""
    return Path(tempfile.gettempdir()) / f"espfast-{ns.name}" / "espfast.sock"


def start_in(
    ns: netns.Namespace,
    config: Path,
    *extra: str,
    command: str = "static",
    timeout: float = 20.0,
    fresh_keys: bool = True,
) -> Running:
    """Start ``espfast static -c config`` (or another ``command`` that says ``ready`` the
    same way, like ``up``) in ``ns`` and wait until it says it is ready. ``up`` gets a
    control socket of its own (named after the namespace) unless ``extra`` names one:
    the file system is shared between namespaces. ``static`` gets ``--fresh-keys``
    unless ``fresh_keys`` is False: the configs of :func:`pair_configs` carry new random
    keys (a restart with the same config resumes from its state file either way)."""
    if command == "up" and "--socket" not in extra:
        extra = (*extra, "--socket", str(control_socket_in(ns)))
    if command == "static" and fresh_keys:
        extra = (*extra, "--fresh-keys")
    proc = ns.popen(
        sys.executable, "-m", "espfast", command, "-c", str(config), *extra,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    head = ns.wait_ready(proc, READY, f"espfast {command} in {ns.name}", timeout)
    return Running(ns, proc, head)
