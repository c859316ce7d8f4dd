"""``espfast reload``: have the running daemon re-read its config file (as SIGHUP does).

The daemon reads the file it was started with and checks all of it first: a broken file
is refused with the one-line error ``espfast up`` gives at start, and the running config
carries on. Then, by connection name (espfast/operations.py applies it):

- added connections start as at start (traps, initiation); the responder answers for them;
- removed ones: their IKE SAs are deleted (the peers are told), their traps go;
- changed ones: deleted, then started again with the new settings;
- unchanged ones are not touched: their IKE and Child SAs carry every packet on.

A connection is changed when anything that makes its SAs changed: its remote address,
identities, credentials (the PSK, or the contents of its certificate, key and CA files),
IKE or ESP proposals, selectors, lifetimes, DPD, actions, pool, virtual IPs, children.
In ``[interface]``, ``addresses`` (added to and removed from the TUN device),
``cookie_threshold``, ``half_open_limit`` and ``metrics`` can change while the daemon
runs; any other change there (the TUN device's name or MTU, the listen address, workers,
duplex, offloads) needs a restart and is refused.

This module holds the command and the comparison (:func:`diff`); it imports nothing
heavy at the top, as every command module (espfast/cli.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from espfast.config import ConnectionConfig, InterfaceConfig, UpConfig

# [interface] keys a reload may change (the others are the TUN device and the sockets).
LIVE_INTERFACE_KEYS = frozenset({"addresses", "cookie_threshold", "half_open_limit", "metrics"})


@dataclass(frozen=True)
class Diff:
    """Connection names by what a reload does with them."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]
    unchanged: tuple[str, ...]

    def summary(self) -> str:
        parts = [f"{len(v)} {k}" for k, v in dataclasses.asdict(self).items()]
        return ", ".join(parts)


def diff(old: Mapping[str, bytes], new: Mapping[str, bytes]) -> Diff:
    """What differs between two configs, given as their :func:`fingerprints`."""
    return Diff(
        added=tuple(n for n in new if n not in old),
        removed=tuple(n for n in old if n not in new),
        changed=tuple(n for n in new if n in old and old[n] != new[n]),
        unchanged=tuple(n for n in new if n in old and old[n] == new[n]),
    )


def fingerprints(config: UpConfig) -> dict[str, bytes]:
    """Each connection's :func:`fingerprint`, by name. Taken when the config is loaded
    (files change on disk afterwards: that is what a reload is for)."""
    tables = _connection_tables(config.source)
    base = config.source.parent
    return {c.name: fingerprint(c, tables.get(c.name, {}), base) for c in config.connections}


def interface_changes(old: InterfaceConfig, new: InterfaceConfig) -> list[str]:
    """The ``[interface]`` keys whose change needs a restart."""
    return [
        f.name
        for f in dataclasses.fields(old)
        if f.name not in LIVE_INTERFACE_KEYS and getattr(old, f.name) != getattr(new, f.name)
    ]


def fingerprint(conn: ConnectionConfig, table: Mapping[str, Any], base: Path) -> bytes:
    """A digest of everything in ``conn`` that makes its SAs: every value of its
    configuration, and, for the callables that hold credentials (the signer holding our
    private key, the verifier holding the trusted CAs) and cannot be compared, the
    contents of the files its ``table`` in the config file names (:func:`sources`)."""
    h = hashlib.sha256()
    for part in _walk(conn):
        h.update(repr(part).encode())
        h.update(b"\0")
    for path in sources(table, base):
        h.update(str(path).encode() + b"\0")
        try:
            h.update(hashlib.sha256(path.read_bytes()).digest())
        except OSError as e:  # read a moment ago by load_up: only a race gets here
            h.update(f"unreadable: {e.errno}".encode())
    return h.digest()


def _walk(value: object, where: str = "") -> Iterator[tuple[str, Any]]:
    """(place, value) for every leaf of a config dataclass tree; a callable is a leaf
    that says only that it is there (see :func:`fingerprint` for what stands for it)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield from _walk(getattr(value, f.name), f"{where}.{f.name}")
    elif isinstance(value, tuple | list):
        yield (where, len(value))
        for i, item in enumerate(value):
            yield from _walk(item, f"{where}[{i}]")
    elif callable(value):
        yield (where, "callable")
    else:
        yield (where, value)


def sources(table: Mapping[str, Any], base: Path) -> list[Path]:
    """The files a connection's table names (``cert``, ``key``, ``cacerts``, ``psk_file``,
    and any other key naming a file that exists, e.g. a CRL), relative to ``base``."""
    found: list[Path] = []
    for key, value in sorted(table.items()):
        # The EAP user file is read live (espfast/users.py): a user added or removed is
        # no reason to renew the connection's SAs.
        if key in ("child", "users"):
            continue
        for text in value if isinstance(value, list) else [value]:
            if not isinstance(text, str) or not text or "\0" in text or len(text) > 4096:
                continue
            path = Path(text) if Path(text).is_absolute() else base / text
            try:
                if path.is_file():
                    found.append(path)
            except OSError:
                continue
    return found


def _connection_tables(source: Path) -> dict[str, Mapping[str, Any]]:
    """The ``[[connection]]`` tables of ``source`` by connection name (as load_up names
    them); empty when the file cannot be read again."""
    from espfast.config import ConfigError, read_toml

    try:
        data = read_toml(source)
    except (ConfigError, OSError):
        return {}
    tables = data.get("connection", [])
    if not isinstance(tables, list):
        return {}
    out: dict[str, Mapping[str, Any]] = {}
    for i, t in enumerate(tables):
        if isinstance(t, dict):
            name = t.get("name", f"connection[{i}]")
            out[str(name)] = t
    return out


# ---------------------------------------------------------------------------------------
# The command


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from espfast.operations import add_client_arguments

    add_client_arguments(parser, timeout=30.0)


def run(args: argparse.Namespace) -> int:
    from espfast.operations import call

    return call("reload", args, render=lambda r: f"reloaded {r['config']}: {r['summary']}")
