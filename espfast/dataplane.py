"""The Python face of the C dataplane (espfast._dataplane, built from csrc/ by cffi).

A :class:`Dataplane` moves packets between a TUN device and a UDP socket (port 4500,
RFC 3948) in C worker threads; Python only installs and removes SAs, reads counters, and
exchanges IKE messages (the non-ESP-marker datagrams on the same socket) through an fd
that asyncio can poll. Everything is validated here before it reaches C, so bad input
raises ValueError with a message that says what is wrong (and never shows key bytes).

:class:`EspSa` is one SA on its own, running the same C code as the workers: for
known-answer tests, interop tests against an independent ESP implementation, and
micro-benchmarks.

Speed: open the TUN device with IFF_VNET_HDR (:func:`open_tun` does by default). The
dataplane then takes TCP super-packets from the kernel (TSO) and writes runs of one TCP
flow back as one packet (GRO), instead of one system call and one pass through the
kernel's TCP stack per packet; on the outer side it uses UDP GSO and GRO. In two
namespaces on a 2-core machine that is several Gbit/s for one TCP stream instead of
about one. Each offload is detected when the dataplane opens and falls back cleanly
where the kernel lacks it (logged at DEBUG); ``disable_offloads`` (or the environment
variable ESPFAST_DISABLE_OFFLOADS, e.g. ``udp_gso,udp_gro`` or ``all``) turns them off,
for tests and for comparing: the traffic is byte-for-byte the same either way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import ipaddress
import logging
import os
import socket
import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from enum import StrEnum
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from types import TracebackType
from typing import Any, ClassVar, Self

from espfast._dataplane import ffi, lib

Network = IPv4Network | IPv6Network


class Transform(StrEnum):
    """ESP transforms, by strongSwan's proposal keywords (order = the C table's order)."""

    AES128GCM16 = "aes128gcm16"
    AES256GCM16 = "aes256gcm16"
    CHACHA20POLY1305 = "chacha20poly1305"
    AES128_SHA256 = "aes128-sha256"
    AES256_SHA256 = "aes256-sha256"
    AES128_SHA384 = "aes128-sha384"
    AES256_SHA384 = "aes256-sha384"
    AES128_SHA512 = "aes128-sha512"
    AES256_SHA512 = "aes256-sha512"

    @property
    def is_aead(self) -> bool:
        return self in _AEADS

    @property
    def key_lengths(self) -> tuple[int, int]:
        """(enc_key, integ_key) lengths in bytes; AEAD enc keys include the 4-byte salt."""
        return _KEY_LENGTHS[self]


_AEADS = frozenset({Transform.AES128GCM16, Transform.AES256GCM16, Transform.CHACHA20POLY1305})
# RFC 4106 §8.1 and RFC 7634 §4: AEAD key material is key || 4-byte salt.
# RFC 4868 §2.1.1: the HMAC-SHA2 key is as long as the hash output.
_KEY_LENGTHS: dict[Transform, tuple[int, int]] = {
    Transform.AES128GCM16: (16 + 4, 0),
    Transform.AES256GCM16: (32 + 4, 0),
    Transform.CHACHA20POLY1305: (32 + 4, 0),
    Transform.AES128_SHA256: (16, 32),
    Transform.AES256_SHA256: (32, 32),
    Transform.AES128_SHA384: (16, 48),
    Transform.AES256_SHA384: (32, 48),
    Transform.AES128_SHA512: (16, 64),
    Transform.AES256_SHA512: (32, 64),
}
_TRANSFORM_INDEX = {t: i for i, t in enumerate(Transform)}


class Direction(StrEnum):
    IN = "in"
    OUT = "out"


_DIR_INDEX = {Direction.IN: lib.EF_DIR_IN, Direction.OUT: lib.EF_DIR_OUT}

SPI_MIN = 256  # RFC 4303 §2.1: 1..255 are reserved, 0 is local use
SPI_MAX = 0xFFFFFFFF
REPLAY_WINDOW_MAX = 65536
MAX_WORKERS = 16
# The largest inner packet carried whatever the offloads: the interface MTU's upper bound.
INNER_MAX = int(lib.EF_INNER_MAX)

log = logging.getLogger(__name__)

# Offload name -> its EF_OFFLOAD_* bit; "vnet" is decided by how the TUN was opened.
OFFLOADS: dict[str, int] = {
    "vnet": int(lib.EF_OFFLOAD_VNET),
    "tun_tso": int(lib.EF_OFFLOAD_TUN_TSO),
    "tun_gro": int(lib.EF_OFFLOAD_TUN_GRO),
    "udp_gso": int(lib.EF_OFFLOAD_UDP_GSO),
    "udp_gro": int(lib.EF_OFFLOAD_UDP_GRO),
}
DISABLE_ENV = "ESPFAST_DISABLE_OFFLOADS"


def _disable_mask(names: Iterable[str] | None) -> tuple[int, frozenset[str]]:
    """The EF_OFFLOAD_* bits to turn off: from ``names``, else from $ESPFAST_DISABLE_OFFLOADS."""
    if names is None:
        names = [n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()]
    wanted = set(names)
    if "all" in wanted:
        wanted = set(OFFLOADS) - {"vnet"}
    unknown = wanted - (set(OFFLOADS) - {"vnet"})
    if unknown:
        known = ", ".join(sorted(set(OFFLOADS) - {"vnet"}))
        raise ValueError(f"unknown offload(s) {', '.join(sorted(unknown))} (known: {known}, all)")
    mask = 0
    for n in wanted:
        mask |= OFFLOADS[n]
    return mask, frozenset(wanted)


MAX_SELECTORS = 256


@dataclass(frozen=True, kw_only=True)
class SaParams:
    """One direction of a Child SA. Keyword-only (the field order is not an API)."""

    spi: int  # the SPI on the wire for this direction
    direction: Direction
    transform: Transform
    # AEADs: key || salt (4 bytes for GCM and ChaCha), as taken from KEYMAT
    # (RFC 4106 §8.1, RFC 7634 §4).
    enc_key: bytes = field(repr=False)
    integ_key: bytes = field(default=b"", repr=False)  # CBC+HMAC only
    local_ts: tuple[Network, ...]  # our side's inner prefixes
    remote_ts: tuple[Network, ...]  # the peer's inner prefixes
    peer: tuple[str, int] | None = None  # outbound: outer peer address and UDP port
    # False: ESP in UDP (RFC 3948) through the UDP socket. True: plain ESP, IP protocol 50,
    # through the raw socket of the peer's family (Dataplane.add_raw_socket); then an
    # inbound SA needs ``peer`` too: plain ESP from any other address is dropped
    # (Stats.wrong_source).
    raw_esp: bool = False
    esn: bool = False
    replay_window: int = 1024  # inbound only
    # Who the SA is for (the daemon: connection and canonical peer identity, hashed to 64
    # bits) and its owner's group (the daemon: the connection; 0: none). An outbound SA
    # is refused with SelectorConflict (counted in Stats.sa_conflicts) when, for
    # overlapping local selectors, another owner's SA routes the same remote prefix, or,
    # in the same group, one that holds or is held by its own (csrc/api.cdef); the same
    # owner's newer SA (rekey, reauthentication) takes the route over.
    owner: int = 0
    group: int = 0
    # Inbound: report authenticated ESP from a source other than ``peer`` (or the last
    # one reported) through :meth:`Dataplane.take_moved` (follow_esp).
    follow: bool = False


@dataclass(frozen=True)
class SaStats:
    packets: int
    bytes: int  # inner bytes
    auth_failures: int
    replay_drops: int
    policy_drops: int
    malformed: int
    bad_padding: int
    # outbound: packets dropped for want of a sequence number (the space is used up, or
    # the SA waits at its seq_limit for espfast static to persist a new reservation)
    seq_exhausted: int
    seq: int  # outbound: last sequence number sent; inbound: highest accepted
    exhausted: bool  # outbound: sequence numbers used up, the SA sends no more


@dataclass(frozen=True)
class Stats:
    rx_packets: int  # ESP packets decapsulated and written to the TUN device
    rx_bytes: int
    tx_packets: int  # inner packets encapsulated and sent
    tx_bytes: int
    auth_failures: int
    replay_drops: int
    policy_drops: int
    malformed: int
    bad_padding: int
    unknown_spi: int
    no_sa: int  # no outbound SA for an inner packet's destination (and source)
    keepalives: int
    ike_forwarded: int
    ike_dropped: int
    seq_exhausted: int
    tx_errors: int
    tun_errors: int
    tx_gso: int  # UDP GSO sends (several ESP packets in one message)
    rx_gro: int  # UDP GRO receives (several datagrams in one buffer)
    tun_gro: int  # inner TCP segments written to TUN coalesced (TUN with IFF_VNET_HDR)
    tun_tso: int  # TCP super-packets read from TUN and cut into segments (IFF_VNET_HDR)
    # ESP packets held a moment because their SPI was not known yet, then delivered: the
    # peer sent on a new SA before our IKE had installed it (csrc/worker.h, ef_park).
    spi_late: int
    spi_held: int  # ... and how many wait right now
    sa_conflicts: int  # outbound SAs refused: another owner's selectors (SelectorConflict)
    tx_raw: int  # of tx_packets: sent as plain ESP (IP protocol 50, SaParams.raw_esp)
    rx_raw: int  # of the ESP packets decapsulated: came as plain ESP
    raw_bad_header: int  # plain ESP dropped: outer IPv4 header malformed, a fragment, ...
    wrong_source: int  # ESP dropped: plain ESP not from its SA's peer, or in the wrong framing

    # Counters that count traffic or the use of an offload; every other one counts drops
    # (or, for keepalives/IKE, datagrams that were not ESP).
    NOT_DROPS: ClassVar[frozenset[str]] = frozenset(
        {"rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "keepalives", "ike_forwarded",
         "tx_gso", "rx_gro", "tun_gro", "tun_tso", "spi_late", "spi_held", "tx_raw", "rx_raw"}
    )  # fmt: skip

    def drops(self) -> dict[str, int]:
        """The drop and error counters that moved, by name."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v and k not in self.NOT_DROPS}


class SelectorConflict(ValueError):
    """An outbound SA would take over the route of another owner's SA (SaParams.owner)."""


class EspError(ValueError):
    """A packet that :meth:`EspSa.decap` / :meth:`EspSa.encap` refused; ``reason`` is one
    of malformed, replay, auth, padding, policy, seq_exhausted, ..."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


_REASONS = {
    lib.EF_E_MALFORMED: "malformed",
    lib.EF_E_REPLAY: "replay",
    lib.EF_E_AUTH: "auth",
    lib.EF_E_PADDING: "padding",
    lib.EF_E_POLICY: "policy",
    lib.EF_E_SEQ_EXHAUSTED: "seq_exhausted",
    lib.EF_E_NOSPACE: "too_big",
}


def _strerror(err: int) -> str:
    return str(ffi.string(lib.ef_strerror(err)).decode())


# ---- validation and conversion -------------------------------------------------------


def _check_spi(spi: object) -> int:
    if isinstance(spi, bool) or not isinstance(spi, int):
        raise ValueError(f"SPI must be an int, not {type(spi).__name__}")
    if not SPI_MIN <= spi <= SPI_MAX:
        raise ValueError(f"SPI 0x{spi:x} out of range (256..0xffffffff, RFC 4303 §2.1)")
    return spi


def _check_direction(direction: object) -> Direction:
    if isinstance(direction, str) and direction in Direction._value2member_map_:
        return Direction(direction)
    raise ValueError(f"unknown direction {direction!r} (in, out)")


def _check_transform(transform: object) -> Transform:
    if isinstance(transform, str) and transform in Transform._value2member_map_:
        return Transform(transform)
    known = ", ".join(t.value for t in Transform)
    raise ValueError(f"unknown transform {transform!r} (known: {known})")


def _check_network(ts: object, what: str) -> Network:
    if isinstance(ts, IPv4Network | IPv6Network):
        return ts
    if isinstance(ts, str):
        try:
            return ipaddress.ip_network(ts, strict=True)
        except ValueError as e:
            raise ValueError(f"{what}: bad prefix {ts!r}: {e}") from None
    raise ValueError(f"{what}: expected an IPv4Network or IPv6Network, not {type(ts).__name__}")


def _check_selectors(ts: object, what: str) -> tuple[Network, ...]:
    if isinstance(ts, IPv4Network | IPv6Network | str):
        ts = (ts,)
    if not isinstance(ts, Iterable):
        raise ValueError(f"{what}: expected a tuple of prefixes")
    nets = tuple(_check_network(t, what) for t in ts)
    if not nets:
        raise ValueError(f"{what}: at least one prefix is needed")
    if len(nets) > MAX_SELECTORS:
        raise ValueError(f"{what}: at most {MAX_SELECTORS} prefixes")
    return nets


def _check_peer(peer: object) -> tuple[IPv4Address | IPv6Address, int]:
    if not (isinstance(peer, tuple) and len(peer) == 2):
        raise ValueError(f"peer must be a (address, port) tuple, not {peer!r}")
    host, port = peer
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"peer address {host!r} is not an IP address") from None
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"peer port {port!r} out of range (1..65535)")
    return addr, port


def _check_key(key: object, want: int, what: str, transform: Transform) -> bytes:
    if not isinstance(key, bytes | bytearray | memoryview):
        raise ValueError(f"{what} must be bytes, not {type(key).__name__}")
    key = bytes(key)
    if len(key) != want:
        raise ValueError(
            f"{what} for {transform.value} must be {want} bytes, got {len(key)}"
            + (" (key || 4-byte salt)" if transform.is_aead and what == "enc_key" else "")
        )
    return key


def _sockaddr(peer: tuple[str, int], family: int) -> bytes:
    """struct sockaddr_in / sockaddr_in6 for a validated peer on a socket of ``family``."""
    addr, port = _check_peer(peer)
    if family == socket.AF_INET:
        if addr.version != 4:
            raise ValueError(f"peer {addr} is IPv6 but the UDP socket is IPv4")
        return struct.pack("=H", socket.AF_INET) + struct.pack("!H4s8x", port, addr.packed)
    if addr.version == 4:
        addr = IPv6Address(f"::ffff:{addr}")  # v4-mapped on a dual-stack socket
    return (
        struct.pack("=H", socket.AF_INET6)
        + struct.pack("!HI16s", port, 0, addr.packed)
        + struct.pack("=I", 0)
    )


def _sockaddr_tuple(peer: tuple[str, int], family: int) -> tuple[str, int]:
    addr, port = _check_peer(peer)
    if family == socket.AF_INET6 and addr.version == 4:
        return f"::ffff:{addr}", port
    if family == socket.AF_INET and addr.version != 4:
        raise ValueError(f"peer {addr} is IPv6 but the UDP socket is IPv4")
    return str(addr), port


@dataclass
class _CParams:
    """An ef_sa_params and the cffi buffers it points into (kept alive together)."""

    params: Any
    secrets: list[Any]
    keep: list[Any]

    def wipe(self) -> None:
        # Our copies of the keys: zeroed as soon as C has its own (scheduled) copy.
        for buf in self.secrets:
            ffi.release(buf)  # ef_keymem_free: cleansed


def _key_buffer(key: bytes) -> Any:
    """A copy of ``key`` in C key memory (csrc/keymem.h: never in a core dump)."""
    size = max(len(key), 1)
    raw = lib.ef_keymem_alloc(size)
    if raw == ffi.NULL:
        raise MemoryError("no key memory")
    buf = ffi.gc(ffi.cast("uint8_t *", raw), lib.ef_keymem_free, size=size)
    ffi.memmove(buf, key, len(key))
    return buf


def _prefixes(nets: tuple[Network, ...]) -> Any:
    arr = ffi.new("struct ef_prefix[]", len(nets))
    for i, net in enumerate(nets):
        arr[i].family = net.version
        arr[i].plen = net.prefixlen
        packed = net.network_address.packed
        for j, b in enumerate(packed):
            arr[i].addr[j] = b
    return arr


def _check_seq(value: object, what: str, esn: bool) -> int:
    seq_max = 2**64 - 1 if esn else 2**32 - 1
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= seq_max:
        raise ValueError(f"{what} out of range (0..{seq_max})")
    return value


def _build_params(
    sa: object, udp_family: int | None, initial_seq: int = 0, seq_limit: int = 0
) -> _CParams:
    if not isinstance(sa, SaParams):
        raise ValueError(f"expected SaParams, not {type(sa).__name__}")
    spi = _check_spi(sa.spi)
    direction = _check_direction(sa.direction)
    transform = _check_transform(sa.transform)
    enc_len, integ_len = transform.key_lengths
    enc_key = _check_key(sa.enc_key, enc_len, "enc_key", transform)
    integ_key = _check_key(sa.integ_key, integ_len, "integ_key", transform)
    local = _check_selectors(sa.local_ts, "local_ts")
    remote = _check_selectors(sa.remote_ts, "remote_ts")
    if not isinstance(sa.esn, bool):
        raise ValueError(f"esn must be a bool, not {type(sa.esn).__name__}")
    window = sa.replay_window
    if isinstance(window, bool) or not isinstance(window, int):
        raise ValueError("replay_window must be an int")
    if direction is Direction.IN and not 1 <= window <= REPLAY_WINDOW_MAX:
        raise ValueError(f"replay_window {window} out of range (1..{REPLAY_WINDOW_MAX})")
    initial_seq = _check_seq(initial_seq, "initial_seq", sa.esn)
    seq_limit = _check_seq(seq_limit, "seq_limit", sa.esn)
    peer_buf: Any = ffi.NULL
    peer_len = 0
    if sa.peer is not None and udp_family is not None:
        raw = _sockaddr(sa.peer, udp_family)
        peer_buf = ffi.new("uint8_t[]", raw)
        peer_len = len(raw)
    elif sa.peer is not None:
        _check_peer(sa.peer)
    if direction is Direction.OUT and udp_family is not None and sa.peer is None:
        raise ValueError(f"outbound SA 0x{spi:08x} needs a peer (address, port)")
    if not isinstance(sa.raw_esp, bool):
        raise ValueError(f"raw_esp must be a bool, not {type(sa.raw_esp).__name__}")
    if sa.raw_esp and sa.peer is None:
        raise ValueError(f"plain-ESP SA 0x{spi:08x} needs a peer (address, port)")

    p = ffi.new("struct ef_sa_params *")
    ekey, ikey = _key_buffer(enc_key), _key_buffer(integ_key)
    lts, rts = _prefixes(local), _prefixes(remote)
    p.spi = spi
    p.dir = _DIR_INDEX[direction]
    p.transform = _TRANSFORM_INDEX[transform]
    p.enc_key, p.enc_key_len = ekey, len(enc_key)
    p.integ_key, p.integ_key_len = ikey, len(integ_key)
    p.local_ts, p.n_local = lts, len(local)
    p.remote_ts, p.n_remote = rts, len(remote)
    p.esn = int(sa.esn)
    p.replay_window = window if direction is Direction.IN else 0
    p.initial_seq = initial_seq
    p.seq_limit = seq_limit if direction is Direction.OUT else 0
    p.peer, p.peer_len = peer_buf, peer_len
    # a standalone SA (EspSa, no socket) frames nothing: the flag is the dataplane's
    p.raw_esp = int(sa.raw_esp) if udp_family is not None else 0
    for what, value in (("owner", sa.owner), ("group", sa.group)):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**64:
            raise ValueError(f"{what} must be an int in 0..2**64-1, not {value!r}")
    p.owner, p.group = sa.owner, sa.group
    p.follow = int(bool(sa.follow) and direction is Direction.IN)
    return _CParams(p, [ekey, ikey], [lts, rts, peer_buf])


def _sa_stats(st: Any) -> SaStats:
    return SaStats(
        packets=st.packets,
        bytes=st.bytes,
        auth_failures=st.auth_failures,
        replay_drops=st.replay_drops,
        policy_drops=st.policy_drops,
        malformed=st.malformed,
        bad_padding=st.bad_padding,
        seq_exhausted=st.seq_exhausted,
        seq=st.seq,
        exhausted=bool(st.exhausted),
    )


_TUNGETIFF = 0x800454D2  # linux/if_tun.h
_TUNSETIFF = 0x400454CA
_IFF_TUN, _IFF_NO_PI, _IFF_VNET_HDR = 0x0001, 0x1000, 0x4000


def open_tun(name: str = "", *, vnet_hdr: bool = True) -> tuple[int, str]:
    """Creates (or attaches to) a TUN device the way the dataplane wants it; returns
    (fd, interface name). Bring it up and address it with ip/pyroute2 as usual.

    ``vnet_hdr`` (default): IFF_VNET_HDR, so the dataplane can take TCP super-packets from
    the kernel (TSO) and hand coalesced ones back (GRO) -- several times the throughput
    of one packet per system call. Needs CAP_NET_ADMIN.
    """
    if len(name.encode()) > 15 or "/" in name or "\0" in name:
        raise ValueError(f"bad interface name {name!r} (at most 15 bytes, no '/')")
    flags = _IFF_TUN | _IFF_NO_PI | (_IFF_VNET_HDR if vnet_hdr else 0)
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_CLOEXEC)
    try:
        ifr = fcntl.ioctl(fd, _TUNSETIFF, struct.pack("16sH22x", name.encode(), flags))
    except OSError:
        os.close(fd)
        raise
    return fd, ifr[:16].rstrip(b"\0").decode()


def _check_tun_fd(fd: object) -> int:
    if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
        raise ValueError(f"tun_fd must be a file descriptor (int >= 0), not {fd!r}")
    try:
        ifr = fcntl.ioctl(fd, _TUNGETIFF, b"\0" * 40)
    except OSError:
        return fd  # not a TUN device: any fd that keeps packet boundaries works
    (flags,) = struct.unpack_from("=H", ifr, 16)
    if not flags & _IFF_TUN or not flags & _IFF_NO_PI:
        raise ValueError("the TUN device must be opened with IFF_TUN | IFF_NO_PI")
    # IFF_VNET_HDR is welcome too: the dataplane then coalesces TCP segments on writes.
    return fd


class _Closable:
    """A context manager that calls close() on exit."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# ---- the dataplane ---------------------------------------------------------------------

_IKE_HDR = struct.Struct("=BBH16s")  # struct ef_ike_hdr


def _plain(raw: bytes, family: int) -> IPv4Address | IPv6Address:
    """struct ef_ike_hdr's address (an IPv4-mapped IPv6 one as IPv4)."""
    if family == 4:
        return IPv4Address(raw[:4])
    addr = IPv6Address(raw)
    return addr.ipv4_mapped if addr.ipv4_mapped is not None else addr


class Dataplane(_Closable):
    """ESP between a TUN device and a UDP socket, in C threads. A context manager.

    ``tun_fd``: a TUN device opened with IFF_TUN | IFF_NO_PI, best also IFF_VNET_HDR (see
    :func:`open_tun`; it is set non-blocking, and with IFF_VNET_HDR its offloads are set).
    ``udp_sock``: a bound UDP socket (AF_INET or AF_INET6), normally on port 4500. Both
    are duplicated, so the caller may close its own after :meth:`close`. The socket gets
    8 MiB buffers and UDP_GRO (shared with the caller's descriptor).
    ``workers``: threads per direction (each SA gets a keyed context per worker).
    ``duplex``: with one worker, one thread for both directions instead of a TX and an
    RX thread (default: so whenever ``workers`` is 1; see csrc/worker.c duplex_main).
    ``disable_offloads``: offload names (see :data:`OFFLOADS`, or "all") not to use;
    default: those in $ESPFAST_DISABLE_OFFLOADS.
    """

    def __init__(
        self,
        tun_fd: int,
        udp_sock: socket.socket,
        *,
        workers: int = 1,
        duplex: bool | None = None,
        disable_offloads: Iterable[str] | None = None,
    ) -> None:
        _check_tun_fd(tun_fd)
        if not isinstance(udp_sock, socket.socket) or udp_sock.type != socket.SOCK_DGRAM:
            raise ValueError("udp_sock must be a UDP socket.socket")
        if udp_sock.family not in (socket.AF_INET, socket.AF_INET6):
            raise ValueError("udp_sock must be AF_INET or AF_INET6")
        if isinstance(workers, bool) or not isinstance(workers, int):
            raise ValueError("workers must be an int")
        if not 1 <= workers <= MAX_WORKERS:
            raise ValueError(f"workers must be 1..{MAX_WORKERS}, not {workers}")
        if duplex is None:
            duplex = workers == 1
        if duplex and workers != 1:
            raise ValueError("duplex needs workers = 1")
        disable, disabled = _disable_mask(disable_offloads)
        self._udp = udp_sock
        self._family = udp_sock.family
        self._raws: set[socket.AddressFamily] = set()  # families of the raw ESP sockets
        self._lock = threading.Lock()
        self._running = False
        ike_r, ike_w = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._ike = ike_r
        self._no_sa: list[IPv4Address | IPv6Address] = []
        self._moved: list[tuple[int, tuple[str, int]]] = []
        self._traffic = False  # an EF_IKE_TRAFFIC notice came (see take_traffic)
        with ike_w:
            for s in (ike_r, ike_w):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
            ike_r.setblocking(False)
            err = ffi.new("int *")
            dp = lib.ef_dp_new(tun_fd, udp_sock.fileno(), ike_w.fileno(), workers, disable, err)
        if dp == ffi.NULL:
            ike_r.close()
            raise OSError(f"cannot create the dataplane: {_strerror(err[0])}")
        self._dp: Any = dp
        self.duplex = bool(duplex)
        lib.ef_dp_set_duplex(dp, int(self.duplex))  # cannot fail: stopped, one worker
        self._log_offloads(disabled)

    def _log_offloads(self, disabled: frozenset[str]) -> None:
        active = self.offloads()
        for name in OFFLOADS:
            if name in active:
                continue
            if name in disabled:
                why = f"disabled ({DISABLE_ENV} or disable_offloads)"
            elif name == "vnet" or (name.startswith("tun_") and "vnet" not in active):
                why = "the TUN fd has no IFF_VNET_HDR: one packet per read and write"
            else:
                why = "the kernel does not offer it: one packet per system call"
            log.debug("dataplane offload %s not in use: %s", name, why)
        log.debug("dataplane offloads in use: %s", ", ".join(sorted(active)) or "none")

    def offloads(self) -> frozenset[str]:
        """The offloads in use (names of :data:`OFFLOADS`)."""
        bits = lib.ef_dp_offloads(self._handle())
        return frozenset(n for n, b in OFFLOADS.items() if bits & b)

    def _handle(self) -> Any:
        if self._dp is None:
            raise ValueError("the dataplane is closed")
        return self._dp

    def start(self) -> None:
        with self._lock:
            if self._running:
                return
            rc = lib.ef_dp_start(self._handle())
            if rc:
                raise OSError(f"cannot start the dataplane workers: {_strerror(rc)}")
            self._running = True

    def stop(self) -> None:
        """Stops and joins the worker threads (SAs and counters stay)."""
        with self._lock:
            if self._dp is not None and self._running:
                lib.ef_dp_stop(self._dp)
            self._running = False

    def close(self) -> None:
        """Stops the workers, removes every SA (keys zeroed), closes our descriptors."""
        self.stop()
        with self._lock:
            if self._dp is not None:
                lib.ef_dp_free(self._dp)
                self._dp = None
                self._ike.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    @property
    def running(self) -> bool:
        return self._running

    def add_sa(self, sa: SaParams, *, initial_seq: int = 0, seq_limit: int = 0) -> None:
        """Installs an SA (the keys cross into C here, once). ValueError on bad input.

        A resumed SA (``espfast static`` after a restart): outbound, ``initial_seq`` is the
        last sequence number that may have been sent and ``seq_limit`` the last one it may
        send until :meth:`set_seq_limit` raises it (0: none); inbound, ``initial_seq`` is a
        replay floor: every number up to it counts as already received."""
        cp = _build_params(sa, self._family, initial_seq, seq_limit)
        if sa.raw_esp and sa.peer is not None and self._raw_family(sa.peer) not in self._raws:
            cp.wipe()
            raise ValueError(f"plain-ESP SA 0x{sa.spi:08x} (encap = no): no raw ESP socket for "
                             f"{sa.peer[0]} (they are opened at start)")  # fmt: skip
        try:
            rc = lib.ef_dp_add_sa(self._handle(), cp.params)
        finally:
            cp.wipe()
        if rc == lib.EF_E_EXISTS:
            raise ValueError(f"an {sa.direction} SA with SPI 0x{sa.spi:08x} already exists")
        if rc == lib.EF_E_CONFLICT:
            raise SelectorConflict(f"outbound SA 0x{sa.spi:08x}: another peer's SA holds "
                                   f"(part of) {', '.join(map(str, sa.remote_ts))}")  # fmt: skip
        if rc:
            raise ValueError(f"cannot add SA 0x{sa.spi:08x}: {_strerror(rc)}")

    def remove_sa(self, spi: int, direction: Direction) -> None:
        """Removes an SA; its keys are zeroed. ValueError if there is no such SA."""
        spi, direction = _check_spi(spi), _check_direction(direction)
        rc = lib.ef_dp_remove_sa(self._handle(), spi, _DIR_INDEX[direction])
        if rc:
            raise ValueError(f"no {direction} SA with SPI 0x{spi:08x}")

    def update_peer(
        self,
        spi: int,
        peer: tuple[str, int],
        *,
        direction: Direction = Direction.OUT,
        raw_esp: bool | None = None,
    ) -> None:
        """Points an outbound SA at a new outer address and port (NAT rebinding, MOBIKE),
        or tells an inbound one whom its plain ESP comes from; ``raw_esp`` switches its
        framing (None: unchanged; True needs a raw socket of the address's family)."""
        spi, direction = _check_spi(spi), _check_direction(direction)
        if raw_esp is not None and not isinstance(raw_esp, bool):
            raise ValueError("raw_esp must be a bool or None")
        raw = _sockaddr(peer, self._family)
        framing = -1 if raw_esp is None else int(raw_esp)
        rc = lib.ef_dp_update_peer(self._handle(), spi, _DIR_INDEX[direction], raw, len(raw),
                                   framing)  # fmt: skip
        if rc == lib.EF_E_NOENT:
            raise ValueError(f"no {direction} SA with SPI 0x{spi:08x}")
        if rc:
            raise ValueError(f"cannot update the peer of SA 0x{spi:08x}: {_strerror(rc)}")

    @staticmethod
    def _raw_family(peer: tuple[str, int]) -> socket.AddressFamily:
        addr, _ = _check_peer(peer)
        v4 = addr.version == 4 or (isinstance(addr, IPv6Address) and addr.ipv4_mapped)
        return socket.AF_INET if v4 else socket.AF_INET6

    def add_raw_socket(self, sock: socket.socket) -> None:
        """Plain ESP (SaParams.raw_esp): a raw IPPROTO_ESP socket (AF_INET or AF_INET6, one
        of each at most), read by the RX workers along with the UDP socket and written by
        plain-ESP SAs of its family. Before :meth:`start`; the socket is duplicated."""
        if not isinstance(sock, socket.socket) or sock.type != socket.SOCK_RAW:
            raise ValueError("add_raw_socket needs a raw socket (espfast.rawesp)")
        rc = lib.ef_dp_add_raw(self._handle(), sock.fileno())
        if rc == 0:
            self._raws.add(sock.family)
        if rc == lib.EF_E_STATE:
            raise ValueError("add_raw_socket needs the workers stopped")
        if rc == lib.EF_E_EXISTS:
            raise ValueError("the dataplane has a raw ESP socket of that family already")
        if rc:
            raise ValueError(f"cannot add the raw ESP socket: {_strerror(rc)}")

    def set_seq_limit(self, spi: int, limit: int) -> None:
        """An outbound SA sends no sequence number above ``limit`` (0: no limit); packets
        beyond it are dropped and counted as ``seq_exhausted`` until it is raised."""
        spi = _check_spi(spi)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 0 <= limit < 2**64:
            raise ValueError("seq_limit out of range (0..2^64-1)")
        if lib.ef_dp_set_seq_limit(self._handle(), spi, limit):
            raise ValueError(f"no out SA with SPI 0x{spi:08x}")

    def sa_stats(self, spi: int, direction: Direction) -> SaStats:
        spi, direction = _check_spi(spi), _check_direction(direction)
        st = ffi.new("struct ef_sa_stats *")
        if lib.ef_dp_sa_stats(self._handle(), spi, _DIR_INDEX[direction], st):
            raise ValueError(f"no {direction} SA with SPI 0x{spi:08x}")
        return _sa_stats(st)

    def stats(self) -> Stats:
        st = ffi.new("struct ef_stats *")
        lib.ef_dp_stats(self._handle(), st)
        return Stats(**{f.name: getattr(st, f.name) for f in fields(Stats)})

    def encap_batch(self, batch: PacketBatch) -> int:
        """Routes and seals every slot's inner packet in place, as a TX worker does but
        without I/O (benchmarks; only while stopped). Returns how many had an SA."""
        if self._running:
            raise ValueError("encap_batch needs the workers stopped")
        n = lib.ef_dp_encap_batch(self._handle(), *batch.encap_args())
        if n < 0:
            raise ValueError(f"encap_batch: {_strerror(n)}")
        return int(n)

    def find_spis(self, spis: U32Array) -> int:
        """Looks every SPI up among the inbound SAs, as an RX worker does per packet
        (benchmarks; only while stopped). Returns how many were found."""
        if self._running:
            raise ValueError("find_spis needs the workers stopped")
        n = lib.ef_dp_find_batch(self._handle(), spis.array, spis.count)
        if n < 0:
            raise ValueError(f"find_spis: {_strerror(n)}")
        return int(n)

    def ike_fileno(self) -> int:
        """Readable when IKE messages arrived on the UDP socket (see :meth:`recv_ike`)."""
        self._handle()
        return self._ike.fileno()

    def recv_ike(self) -> list[tuple[bytes, tuple[str, int]]]:
        """Every IKE message waiting, non-ESP marker stripped, with its (address, port)."""
        self._handle()
        out: list[tuple[bytes, tuple[str, int]]] = []
        while True:
            try:
                msg = self._ike.recv(65536 + _IKE_HDR.size)
            except BlockingIOError:
                return out
            if len(msg) < _IKE_HDR.size:
                continue
            family, _, port, raw = _IKE_HDR.unpack_from(msg)
            if family == lib.EF_IKE_TRAFFIC:  # a notice: see watch_traffic
                self._traffic = True
                continue
            if family & lib.EF_IKE_NO_SA:  # a notice, not IKE: see take_no_sa
                dst = IPv4Address(raw[:4]) if family & 0x7F == 4 else IPv6Address(raw)
                if len(self._no_sa) < 64:
                    self._no_sa.append(dst)
                continue
            if family & lib.EF_IKE_MOVED:  # a notice: see take_moved
                body = msg[_IKE_HDR.size :]
                if len(body) == 4 and len(self._moved) < 64:
                    src = _plain(raw, family & ~lib.EF_IKE_MOVED)
                    self._moved.append((int.from_bytes(body, "big"), (str(src), port)))
                continue
            out.append((msg[_IKE_HDR.size :], (str(_plain(raw, family)), port)))

    def take_moved(self) -> list[tuple[int, tuple[str, int]]]:
        """(inbound SPI, (address, port)): authenticated ESP of an SA with ``follow`` came
        from a new source since the last call (once per change; ``recv_ike`` collects
        the workers' notices, at most 64 between two calls)."""
        out, self._moved = self._moved, []
        return out

    def take_no_sa(self) -> list[IPv4Address | IPv6Address]:
        """Destinations of inner packets that found no outbound SA since the last call (the
        workers say so on the IKE fd, at most ten times a second each, and ``recv_ike``
        collects them): for traps that negotiate on traffic."""
        out, self._no_sa = self._no_sa, []
        return out

    def watch_traffic(self) -> None:
        """Asks for one notice when the next packet moves through an SA (sealed or opened):
        ``recv_ike`` collects it, ``take_traffic`` says whether it came. The daemon stops
        reading the SA counters while the tunnel is idle and starts again on it."""
        lib.ef_dp_watch_traffic(self._handle())

    def take_traffic(self) -> bool:
        """Whether a packet moved since ``watch_traffic`` (once per notice)."""
        moved, self._traffic = self._traffic, False
        return moved

    def send_ike(self, data: bytes, peer: tuple[str, int]) -> None:
        """Sends an IKE message on the UDP socket, with the non-ESP marker (RFC 3948 §2.2)."""
        self._handle()
        self._udp.sendto(b"\0\0\0\0" + bytes(data), _sockaddr_tuple(peer, self._family))

    def send_keepalive(self, peer: tuple[str, int]) -> None:
        """A NAT keepalive (one 0xFF octet, RFC 3948 §2.3) to ``peer`` from the UDP socket."""
        self._handle()
        self._udp.sendto(b"\xff", _sockaddr_tuple(peer, self._family))


# ---- one SA on its own -------------------------------------------------------------------

ENCAP_OVERHEAD = int(lib.EF_ENCAP_OVERHEAD)


class PacketBatch:
    """``count`` packet slots of ``stride`` bytes in C memory, for the batch calls."""

    def __init__(self, count: int, inner_len: int) -> None:
        if not 1 <= count <= 4096 or not 20 <= inner_len <= 9000:
            raise ValueError("count must be 1..4096 and inner_len 20..9000")
        self.count = count
        self.inner_len = inner_len
        self.stride = (inner_len + ENCAP_OVERHEAD + 63) & ~63
        self.buf = ffi.new("uint8_t[]", count * self.stride)
        self.offs = ffi.new("uint32_t[]", count)
        self.lens = ffi.new("uint32_t[]", count)

    def fill(self, inner: bytes) -> None:
        """Puts ``inner`` (inner_len bytes) into every slot, where encap_batch reads it."""
        if len(inner) != self.inner_len:
            raise ValueError(f"inner packet must be {self.inner_len} bytes")
        for i in range(self.count):
            ffi.memmove(self.buf + i * self.stride + ENCAP_OVERHEAD // 2, inner, len(inner))

    def encap_args(self) -> tuple[Any, int, int, int, Any, Any]:
        """The arguments the C encap batch calls take after their SA or dataplane."""
        return self.buf, self.stride, self.count, self.inner_len, self.offs, self.lens

    def set(self, i: int, inner: bytes) -> None:
        """Puts ``inner`` (inner_len bytes) into slot i."""
        if len(inner) != self.inner_len or not 0 <= i < self.count:
            raise ValueError(f"slot 0..{self.count - 1} takes {self.inner_len} bytes")
        ffi.memmove(self.buf + i * self.stride + ENCAP_OVERHEAD // 2, inner, len(inner))

    def packet(self, i: int) -> bytes:
        start = i * self.stride + self.offs[i]
        return bytes(ffi.buffer(self.buf, self.count * self.stride)[start : start + self.lens[i]])


def heap_in_use() -> int:
    """Bytes the C heap holds now (glibc's allocator statistics; for memory benchmarks)."""
    return int(lib.ef_heap_in_use())


class U32Array:
    """32-bit numbers in C memory: SPIs for :meth:`Dataplane.find_spis`, wire sequence
    numbers for :meth:`EspSa.replay_batch`."""

    def __init__(self, values: list[int]) -> None:
        if not all(isinstance(v, int) and 0 <= v < 1 << 32 for v in values):
            raise ValueError("values must be ints in 0..2^32-1")
        self.count = len(values)
        self.array = ffi.new("uint32_t[]", values)


class EspSa(_Closable):
    """One SA direction on its own: :meth:`encap` (outbound) or :meth:`decap` (inbound).

    ``initial_seq``: the last sequence number already sent (outbound), or a replay floor
    (inbound: every number up to it counts as received) — for tests near 2^32 and
    exhaustion. Not for sharing
    between threads (calls are serialised by a lock).
    """

    def __init__(self, params: SaParams, *, initial_seq: int = 0) -> None:
        if isinstance(initial_seq, bool) or not isinstance(initial_seq, int):
            raise ValueError("initial_seq must be an int")
        cp = _build_params(params, None, initial_seq)
        err = ffi.new("int *")
        try:
            sa = lib.ef_esp_sa_new(cp.params, err)
        finally:
            cp.wipe()
        if sa == ffi.NULL:
            raise ValueError(f"cannot create SA 0x{params.spi:08x}: {_strerror(err[0])}")
        self._sa: Any = ffi.gc(sa, lib.ef_esp_sa_free)
        self.direction = Direction(params.direction)
        self._lock = threading.Lock()
        self._out = ffi.new("uint8_t[]", 16384 + ENCAP_OVERHEAD)

    def close(self) -> None:
        """Frees the SA now (its keys are zeroed), rather than when it is collected."""
        with self._lock:
            if self._sa is not None:
                ffi.release(self._sa)
                self._sa = None

    def _handle(self) -> Any:
        if self._sa is None:
            raise ValueError("the SA is closed")
        return self._sa

    def _fail(self, rc: int) -> EspError:
        reason = _REASONS.get(-rc, "error")
        return EspError(reason, _strerror(-rc))

    def encap(self, inner: bytes) -> bytes:
        """An inner IP packet -> the ESP packet (SPI .. ICV) to put in a UDP datagram."""
        if self.direction is not Direction.OUT:
            raise ValueError("encap needs an outbound SA")
        with self._lock:
            n = lib.ef_esp_sa_encap(self._handle(), inner, len(inner), self._out, len(self._out))
            if n < 0:
                raise self._fail(n)
            return bytes(ffi.buffer(self._out, n))

    def decap(self, esp: bytes) -> bytes:
        """An ESP packet -> the inner IP packet; EspError (with .reason) if refused.
        Returns b"" for a dummy packet (next header 59, RFC 4303 §2.6)."""
        if self.direction is not Direction.IN:
            raise ValueError("decap needs an inbound SA")
        with self._lock:
            n = lib.ef_esp_sa_decap(self._handle(), esp, len(esp), self._out, len(self._out))
            if n < 0:
                raise self._fail(n)
            return bytes(ffi.buffer(self._out, n))

    def encap_batch(self, batch: PacketBatch) -> None:
        """Encapsulates every slot's inner bytes in place (for micro-benchmarks)."""
        with self._lock:
            n = lib.ef_esp_sa_encap_batch(self._handle(), *batch.encap_args())
        if n < 0:
            raise self._fail(n)

    def decap_batch(self, batch: PacketBatch) -> None:
        """Decapsulates every slot's ESP packet in place (for micro-benchmarks)."""
        with self._lock:
            n = lib.ef_esp_sa_decap_batch(
                self._handle(), batch.buf, batch.stride, batch.count, batch.offs, batch.lens
            )
        if n < 0:
            raise self._fail(n)

    def replay_batch(self, seqs: U32Array) -> int:
        """Runs the wire sequence numbers through the inbound replay window alone (check,
        then update, as decap does; for micro-benchmarks). Returns how many it accepted."""
        if self.direction is not Direction.IN:
            raise ValueError("replay_batch needs an inbound SA")
        with self._lock:
            n = lib.ef_esp_sa_replay_batch(self._handle(), seqs.array, seqs.count)
        if n < 0:
            raise self._fail(n)
        return int(n)

    def stats(self) -> SaStats:
        st = ffi.new("struct ef_sa_stats *")
        with self._lock:
            lib.ef_esp_sa_stats(self._handle(), st)
        return _sa_stats(st)
