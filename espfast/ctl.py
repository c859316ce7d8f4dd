"""The daemon's control socket: line-delimited JSON over a root-only UNIX socket.

The daemon runs a :class:`ControlServer` (asyncio) on ``/run/espfast/espfast.sock`` (the
directory is created 0700, the socket is 0600, and a peer must be root or the daemon's own
user by SO_PEERCRED; with ``--socket-group G`` 0750 / 0660 and G's members too, by the
groups the kernel recorded for the peer, SO_PEERGROUPS); ``espfast status`` and other
clients use :func:`request`. The directory is refused when it
is a symlink, not a directory, another user's, or writable by others (as is any directory
above it that is not sticky): nobody else can plant or impersonate the socket.

Protocol: one JSON object per line each way, any number of requests per connection,
answered in order::

    -> {"command": "status"}
    <- {"ok": true, "result": <StatusDocument>}
    -> {"command": "initiate", "conn": "home"}          (commands the daemon registers)
    <- {"ok": false, "error": "unknown command 'initiate' (known: status)"}

Every request gets exactly one answer; a malformed one (not JSON, not an object, no
command, longer than MAX_LINE) gets ``{"ok": false, "error": ...}``; a line too long
also ends the connection. A failing handler is an error answer, never a crashed daemon.

In the daemon::

    async with ControlServer(build_status_document, args.socket, handlers={...}):
        ...  # serve until stopped; the socket is removed on exit

The ``status`` result is a :class:`StatusDocument` (below): plain JSON types only, so that
``espfast status --json`` is the document as the daemon sent it. Times are UNIX seconds,
SPIs are integers (shown in hex by ``espfast status``), traffic selectors are strings
(``198.19.1.0/24``, or ``198.19.0.0/16[6/80-80]`` for a protocol/port range as
:class:`espfast.control.events.TrafficSelector` prints them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import inspect
import json
import logging
import os
import socket
import struct
import types
import typing
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypedDict, Union, get_args, get_origin

from espfast.ctlsock import MAX_CLIENTS, ControlError, bind_private, resolve_group

if TYPE_CHECKING:
    from espfast.control.events import ChildSaUp
    from espfast.dataplane import SaStats

log = logging.getLogger(__name__)

DEFAULT_SOCKET = Path("/run/espfast/espfast.sock")
MAX_LINE = 64 * 1024  # a request longer than this is refused and the connection closed
IDLE_TIMEOUT = 30.0  # seconds a connection may sit without sending a full request
SCHEMA_VERSION = 1


# ---------------------------------------------------------------------------------------
# The status document


class ChildSaStatus(TypedDict):
    """One Child SA (a pair of ESP SAs in the dataplane)."""

    name: str  # the child's name in the config
    state: str  # "INSTALLED", "REKEYING", "DELETING", ...
    spi_in: int  # inbound SPI (ours), as on the wire
    spi_out: int  # outbound SPI (the peer's)
    transform: str  # dataplane Transform keyword, e.g. "aes128gcm16"
    esn: bool
    local_ts: list[str]  # our side's selectors
    remote_ts: list[str]  # the peer's selectors
    packets_in: int  # inbound: packets and inner bytes accepted
    bytes_in: int
    packets_out: int  # outbound: packets and inner bytes sent
    bytes_out: int
    drops: dict[str, int]  # non-zero drop counters, e.g. {"replay_drops": 2}
    established: float  # UNIX time the SA was installed
    rekey_at: float | None  # UNIX time of the next scheduled rekey (None: none scheduled)


class _IkeSaVips(TypedDict, total=False):
    virtual_ips: list[str]  # the virtual IPs the peer gave us (RFC 7296 §2.19) ...
    peer_virtual_ips: list[str]  # ... and those we gave the peer (from our pool)
    # Mobility: a NAT in front of us / of the peer (RFC 7296 §2.23), MOBIKE negotiated
    # (RFC 4555), how many times the IKE SA moved (NAT rebinding, UPDATE_SA_ADDRESSES).
    nat_local: bool
    nat_remote: bool
    mobike: bool
    moves: int
    peer_addresses: list[str]  # the peer's additional addresses (MOBIKE, RFC 4555 §3.6)


class IkeSaStatus(_IkeSaVips):
    """One IKE SA and the Child SAs it negotiated."""

    name: str  # the connection's name in the config
    state: str  # "CONNECTING", "ESTABLISHED", "REKEYING", "DELETING"
    initiator: bool  # True when we initiated this IKE SA
    local_addr: str  # "198.18.0.1:4500" (IPv6: "[2001:2::1]:4500")
    remote_addr: str
    local_id: str  # identities as strongSwan writes them ("gw.example.org", "CN=x, O=y")
    remote_id: str
    spi_i: int  # IKE SPIs, initiator's and responder's (0 while unknown)
    spi_r: int
    proposal: str  # strongSwan keywords, e.g. "aes256gcm16-prfsha384-ecp384" ("" if none)
    established: float | None  # UNIX time it was established (None while connecting)
    child_sas: list[ChildSaStatus]


class _DaemonCounters(TypedDict, total=False):
    # espfast up: its own counters since it started (IKE datagrams, SAs installed,
    # rekeyed, reauthenticated, IKE retransmissions, ...: espfast.daemon.Counters) ...
    counters: dict[str, int]
    # ... and the dataplane's (espfast.dataplane.Stats: traffic, drops by reason).
    dataplane: dict[str, int]


class DaemonStatus(_DaemonCounters):
    pid: int
    version: str
    started: float  # UNIX time the daemon started
    config: str  # the config file it runs


class StatusDocument(TypedDict):
    """The result of the ``status`` command."""

    schema: int  # SCHEMA_VERSION
    daemon: DaemonStatus
    ike_sas: list[IkeSaStatus]


class SchemaError(ValueError):
    """A document that does not have the declared shape; the message says where."""


def check_document(doc: object, kind: Any = StatusDocument, where: str = "status") -> None:
    """Check ``doc`` against a TypedDict (recursively): every required key present with
    the declared type, no unknown keys. Raises :class:`SchemaError`."""
    _check(doc, kind, where)


def _check(value: object, kind: Any, where: str) -> None:
    origin = get_origin(kind)
    if kind is Any:
        return
    if isinstance(kind, type) and hasattr(kind, "__required_keys__"):  # a TypedDict
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: expected an object, not {type(value).__name__}")
        hints = _typeddict_hints(kind)
        missing = sorted(kind.__required_keys__ - value.keys())
        if missing:
            raise SchemaError(f"{where}: missing {', '.join(missing)}")
        unknown = sorted(value.keys() - hints.keys())
        if unknown:
            raise SchemaError(f"{where}: unknown key(s) {', '.join(unknown)}")
        for key, item in value.items():
            _check(item, hints[key], f"{where}.{key}")
        return
    if origin in (Union, types.UnionType):
        errors = []
        for alternative in get_args(kind):
            try:
                _check(value, alternative, where)
                return
            except SchemaError as e:
                errors.append(str(e))
        raise SchemaError(errors[0])
    elif origin is list:
        if not isinstance(value, list):
            raise SchemaError(f"{where}: expected a list, not {type(value).__name__}")
        for i, item in enumerate(value):
            _check(item, get_args(kind)[0], f"{where}[{i}]")
    elif origin is dict:
        if not isinstance(value, dict):
            raise SchemaError(f"{where}: expected an object, not {type(value).__name__}")
        for key, item in value.items():
            _check(item, get_args(kind)[1], f"{where}.{key}")
    elif kind is type(None):
        if value is not None:
            raise SchemaError(f"{where}: expected null, not {type(value).__name__}")
    elif kind is float:
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise SchemaError(f"{where}: expected a number, not {type(value).__name__}")
    elif kind in (int, str, bool):
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise SchemaError(f"{where}: expected {kind.__name__}, not {type(value).__name__}")
    else:  # pragma: no cover - a type this checker was not taught: a programming error
        raise TypeError(f"check_document cannot check {kind!r}")


def _typeddict_hints(kind: type) -> dict[str, Any]:
    return typing.get_type_hints(kind, include_extras=True)


def child_sa_status(
    up: ChildSaUp,
    stats_in: SaStats,
    stats_out: SaStats,
    *,
    established: float,
    state: str = "INSTALLED",
    rekey_at: float | None = None,
) -> ChildSaStatus:
    """A :class:`ChildSaStatus` from the control plane's ChildSaUp and the dataplane's
    counters of its two SAs (``sa_stats(up.spi_in, IN)``, ``sa_stats(up.spi_out, OUT)``)."""
    drops = drops_of(stats_in)
    for k, v in drops_of(stats_out).items():
        drops[k] = drops.get(k, 0) + v
    return {
        "name": up.name,
        "state": state,
        "spi_in": up.spi_in,
        "spi_out": up.spi_out,
        "transform": up.transform,
        "esn": up.esn,
        "local_ts": [str(ts) for ts in up.local_ts],
        "remote_ts": [str(ts) for ts in up.remote_ts],
        "packets_in": stats_in.packets,
        "bytes_in": stats_in.bytes,
        "packets_out": stats_out.packets,
        "bytes_out": stats_out.bytes,
        "drops": drops,
        "established": established,
        "rekey_at": rekey_at,
    }


def drops_of(sa_stats: object) -> dict[str, int]:
    """The non-zero drop counters of a dataplane ``SaStats`` (for ``ChildSaStatus.drops``)."""
    from espfast.static import counters

    traffic = {"packets", "bytes", "seq", "exhausted"}
    return {k: v for k, v in counters(sa_stats).items() if k not in traffic and v}


# ---------------------------------------------------------------------------------------
# Errors both sides share


class DaemonError(ControlError):
    """The daemon answered ``{"ok": false}``; ``error`` is what it said."""

    def __init__(self, error: str) -> None:
        super().__init__(f"the daemon says: {error}")
        self.error = error


class RequestError(ValueError):
    """Raised by a command handler for a bad request: answered as ``{"ok": false}``."""


# ---------------------------------------------------------------------------------------
# Server

Handler = Callable[[Mapping[str, Any]], Any]  # may return an awaitable
StatusProvider = Callable[[], StatusDocument | Awaitable[StatusDocument]]


class ControlServer:
    """Serve the control protocol on a UNIX socket; ``status`` asks ``status_provider``.

    ``handlers`` adds commands (e.g. ``initiate``, ``terminate``): each gets the request
    object and returns a JSON-able result (or an awaitable of one); raising
    :class:`RequestError` (or ValueError/LookupError) answers with its message.
    """

    def __init__(
        self,
        status_provider: StatusProvider,
        path: Path = DEFAULT_SOCKET,
        *,
        handlers: Mapping[str, Handler] | None = None,
        allowed_uids: frozenset[int] | None = None,
        owner: int | None = None,
        group: int | None = None,
    ) -> None:
        """``owner``: the uid the daemon will run as (``--user``), given the directory and
        the socket; ``group``: a group whose members may use the socket too (directory
        0750, socket 0660, that group)."""
        self.path = Path(path)
        self._handlers: dict[str, Handler] = {"status": lambda _req: status_provider()}
        self._handlers.update(handlers or {})
        uids = {0, os.geteuid()} | ({owner} if owner is not None else set())
        self._allowed = allowed_uids if allowed_uids is not None else frozenset(uids)
        self._owner, self._group = owner, group
        self._server: asyncio.base_events.Server | None = None
        self._sock: socket.socket | None = None
        self._clients: set[asyncio.Task[None]] = set()
        self._inode: tuple[int, int] | None = None

    @property
    def commands(self) -> list[str]:
        return sorted(self._handlers)

    def add_handlers(self, handlers: Mapping[str, Handler]) -> None:
        """Commands registered once the daemon they act on exists (before :meth:`start`)."""
        self._handlers.update(handlers)

    def bind(self) -> None:
        """Create the directory and the socket (before the daemon drops its privileges);
        :meth:`start` serves on it."""
        if self._sock is None:
            self._sock = bind_private(self.path, self._owner, self._group)
            st = os.stat(self.path)
            self._inode = (st.st_dev, st.st_ino)

    async def start(self) -> None:
        self.bind()
        sock, self._sock = self._sock, None
        self._server = await asyncio.start_unix_server(self._serve, sock=sock, limit=MAX_LINE)
        log.info("control socket %s", self.path)

    async def close(self) -> None:
        server, self._server = self._server, None
        if self._sock is not None:  # bound, never started
            self._sock.close()
            self._sock = None
            self._unlink()
        if server is None:
            return
        server.close()
        for task in list(self._clients):
            task.cancel()
        await asyncio.gather(*self._clients, return_exceptions=True)
        await server.wait_closed()
        self._unlink()

    def _unlink(self) -> None:
        # Remove our socket, not one a later daemon may have put there. Not being allowed
        # to (a daemon that dropped to a user who does not own the directory) leaves a
        # stale socket, which the next daemon replaces.
        with contextlib.suppress(FileNotFoundError, PermissionError):
            st = os.stat(self.path)
            if (st.st_dev, st.st_ino) == self._inode:
                self.path.unlink()

    async def __aenter__(self) -> ControlServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._clients.add(task)
        try:
            if len(self._clients) > MAX_CLIENTS:
                await _refuse(reader, writer, "too many control connections, try again")
                return
            uid, groups = _peer_credentials(writer)
            if uid not in self._allowed and (self._group is None or self._group not in groups):
                log.warning("control socket: refused a client with uid %s", uid)
                await _refuse(reader, writer, "permission denied")
                return
            while True:
                try:
                    line = await asyncio.wait_for(reader.readline(), IDLE_TIMEOUT)
                except (ValueError, asyncio.LimitOverrunError):  # longer than MAX_LINE
                    await _refuse(reader, writer, f"request longer than {MAX_LINE} bytes")
                    return
                except TimeoutError:
                    return
                if not line:
                    return
                if not line.strip():
                    continue
                await _send(writer, await self._answer(line))
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            return _error("malformed request: not JSON")
        if not isinstance(request, dict):
            return _error("malformed request: not a JSON object")
        command = request.get("command")
        if not isinstance(command, str):
            return _error('malformed request: no "command" string')
        handler = self._handlers.get(command)
        if handler is None:
            return _error(f"unknown command {command!r} (known: {', '.join(self.commands)})")
        try:
            result = handler(request)
            if inspect.isawaitable(result):
                result = await result
            json.dumps(result)  # what we cannot encode is our bug: an error, not a hang
        except (RequestError, ValueError, LookupError) as e:
            return _error(f"{command}: {e}")
        except Exception:
            log.exception("control command %r failed", command)
            return _error(f"{command}: internal error (see the daemon's log)")
        return {"ok": True, "result": result}


def _error(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


async def _send(writer: asyncio.StreamWriter, answer: Mapping[str, Any]) -> None:
    writer.write(json.dumps(answer, separators=(",", ":")).encode() + b"\n")
    await writer.drain()


async def _refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, why: str) -> None:
    """Answer with an error, then discard what the client still sends (bounded) until it
    hangs up: closing with unread input would reset the connection before the client
    could read the answer."""
    await _send(writer, _error(why))
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            for _ in range(64):
                if not await reader.read(1 << 16):
                    break


SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux 4.13; not named in Python 3.11
MAX_GROUPS = 65536  # NGROUPS_MAX


def _peer_credentials(writer: asyncio.StreamWriter) -> tuple[int | None, frozenset[int]]:
    """The peer's uid and its groups (primary and supplementary), as the kernel recorded
    them when it connected; (None, {}) when the kernel cannot say."""
    sock = writer.get_extra_info("socket")
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return None, frozenset()
    _pid, uid, gid = struct.unpack("3i", creds)
    groups = {int(gid)}
    size = 64 * 4
    while size <= MAX_GROUPS * 4:
        try:
            raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, size)
        except OSError as e:
            if e.errno == errno.ERANGE:  # more groups than that: ask with room for them
                size *= 16
                continue
            break  # an older kernel: the primary group only
        groups.update(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))
        break
    return int(uid), frozenset(groups)


def add_socket_argument(parser: argparse.ArgumentParser) -> None:
    """``--socket PATH`` (for ``espfast up`` and ``espfast status`` alike)."""
    parser.add_argument(
        "--socket",
        type=Path,
        default=DEFAULT_SOCKET,
        metavar="PATH",
        help=f"the daemon's control socket (default {DEFAULT_SOCKET})",
    )


def request(
    command: str, path: Path = DEFAULT_SOCKET, *, timeout: float = 5.0, **params: Any
) -> Any:
    """Send one request and return its result; ControlError (one line) on any failure,
    including an ``{"ok": false}`` answer."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(str(path))
        except FileNotFoundError:
            raise ControlError(
                f"the espfast daemon is not running (no control socket {path})"
            ) from None
        except PermissionError:
            raise ControlError(
                f"cannot open the control socket {path}: permission denied (run as root)"
            ) from None
        except ConnectionRefusedError:
            raise ControlError(
                f"the espfast daemon is not running (nobody listens on {path})"
            ) from None
        except OSError as e:
            raise ControlError(f"cannot connect to {path}: {e.strerror or e}") from None
        line = _exchange(sock, {"command": command, **params}, timeout)
    finally:
        sock.close()
    try:
        answer = json.loads(line)
    except ValueError:
        raise ControlError("the daemon sent a malformed answer (not JSON)") from None
    if not isinstance(answer, dict) or not isinstance(answer.get("ok"), bool):
        raise ControlError("the daemon sent a malformed answer")
    if not answer["ok"]:
        raise DaemonError(str(answer.get("error", "error")))
    return answer.get("result")


def _exchange(sock: socket.socket, req: Mapping[str, Any], timeout: float) -> bytes:
    data = b""
    try:
        sock.sendall(json.dumps(req).encode() + b"\n")
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            data += chunk
            if len(data) > 64 * MAX_LINE:
                raise ControlError("the daemon's answer is too long")
    except TimeoutError:
        raise ControlError(f"the daemon did not answer within {timeout:g} s") from None
    except OSError as e:
        if e.errno in (errno.EPIPE, errno.ECONNRESET):
            raise ControlError("the daemon closed the connection") from None
        raise ControlError(f"control socket: {e.strerror or e}") from None
    if not data.endswith(b"\n"):
        raise ControlError("the daemon closed the connection without an answer")
    return data


__all__ = [
    "DEFAULT_SOCKET",
    "ChildSaStatus",
    "ControlError",
    "ControlServer",
    "DaemonError",
    "DaemonStatus",
    "IkeSaStatus",
    "RequestError",
    "SchemaError",
    "StatusDocument",
    "add_socket_argument",
    "check_document",
    "child_sa_status",
    "drops_of",
    "request",
    "resolve_group",
]
