"""TOML configuration: loading and validation.

Every mistake in a config file gets exactly one :class:`ConfigError` that names the file,
the place in it (``sa[1].in.spi``) and what is wrong; key material never appears in a
message. The parsing helpers (:class:`Table`, addresses, prefixes, endpoints) are shared by
every config kind; today there is the static-keying config of ``espfast static``
(:func:`load_static`), later the connections of ``espfast up``.

A static config, annotated (``examples/static-a.toml`` is a complete one)::

    [interface]
    name = "espfast0"                          # TUN device to create
    addresses = ["198.19.1.1/24", "2001:2:0:1::1/64"]
    mtu = 1400                                 # inner MTU (default 1400, 1280..16288)
    listen = "198.18.0.1:4500"                 # outer UDP address:port (default 0.0.0.0:4500)
    workers = 2                                # dataplane workers (default: CPUs / 2)
    offload = true                             # TCP segmentation/coalescing on the TUN
    user = "espfast"                           # run as this user once set up (default:
                                               # stay, with CAP_NET_ADMIN only)

    [[sa]]                                     # one SA pair; repeat for more
    name = "to-b"                              # for counters and messages
    transform = "aes128gcm16"                  # strongSwan ESP keyword
    esn = false
    peer = "198.18.0.2:4500"                   # outer address[:port] of the peer
    encap = "yes"                              # no: plain ESP (IP protocol 50, raw socket)
    local_ts = ["198.19.1.0/24"]               # our inner prefixes
    remote_ts = ["198.19.2.0/24"]              # the peer's inner prefixes (routed to the TUN)
    replay_window = 1024

    [sa.out]                                   # what we send
    spi = "0xc0000001"
    enc_key = "hex..."                         # or enc_key_file = "path" (hex inside)

    [sa.in]                                    # what we receive
    spi = "0xc0000002"
    enc_key_file = "keys/b-to-a.hex"

For the AEADs ``enc_key`` is the cipher key followed by the 4-byte salt (RFC 4106 §8.1,
RFC 7634 §4), exactly as IKEv2 takes it from KEYMAT; the CBC transforms also need
``integ_key`` (or ``integ_key_file``). Every key may appear once in a config (a key shared
by two SA directions repeats nonces). Sequence numbers survive restarts in a state file
beside the config (:mod:`espfast.seqstate`).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import stat
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from espfast import upkeys, users
from espfast.clientdns import MODES as RESOLVER_MODES
from espfast.control.config import (
    CLOSE_ACTIONS,
    DPD_ACTIONS,
    UNIQUE_POLICIES,
    AuthConfig,
    ChildConfig,
    IkeConfig,
    Lifetime,
)
from espfast.control.events import TrafficSelector
from espfast.control.identity import Identity
from espfast.control.proposals import DEFAULT_ESP, DEFAULT_IKE, ProposalSpec, parse_esp, parse_ike
from espfast.dataplane import (
    INNER_MAX,
    MAX_WORKERS,
    REPLAY_WINDOW_MAX,
    SPI_MAX,
    SPI_MIN,
    Transform,
)

if TYPE_CHECKING:
    from espfast.control.certs import TrustStore
    from espfast.radius import RadiusConfig

log = logging.getLogger(__name__)

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

NATT_PORT = 4500  # RFC 3948
DEFAULT_MTU = 1400
DEFAULT_KEEPALIVE = 20  # seconds (RFC 3948 §2.3; strongSwan's keep_alive)
MIN_MTU = 1280  # IPv6 minimum link MTU (RFC 8200 §5), so IPv6 inner always works
MAX_MTU = INNER_MAX  # the largest inner packet the dataplane carries without TUN TSO
DEFAULT_REPLAY_WINDOW = 1024


class ConfigError(ValueError):
    """A config file is wrong; the message says where and why (never the key material).
    One per mistake; a file with several (one per section) raises them together, one
    line each (:func:`collected`)."""


def collected(errors: list[ConfigError]) -> ConfigError:
    """The errors found in one file as one ConfigError, a line each."""
    return errors[0] if len(errors) == 1 else ConfigError("\n".join(map(str, errors)))


# ---------------------------------------------------------------------------------------
# Generic helpers: a TOML table that knows where it is and which keys were read.


class Table:
    """A TOML table with its place in the file, for precise errors and unknown-key checks.

    Read values with the typed getters; call :meth:`done` afterwards to reject every key
    that nobody asked for (a typo must not silently fall back to a default).
    """

    def __init__(self, data: dict[str, Any], where: str, source: str) -> None:
        self.data = data
        self.where = where
        self.source = source
        self._seen: set[str] = set()

    def error(self, key: str | None, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {self.path(key)}: {message}")

    def path(self, key: str | None) -> str:
        if key is None:
            return self.where or "(top level)"
        return f"{self.where}.{key}" if self.where else key

    def has(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str) -> Any:
        """A required value of any type (the caller checks it)."""
        return self._get(key, True)

    def _get(self, key: str, required: bool) -> Any:
        self._seen.add(key)
        if key not in self.data:
            if required:
                raise self.error(None, f"missing required key {key!r}")
            return None
        return self.data[key]

    def get_str(self, key: str, default: str | None = None, *, required: bool = False) -> str:
        value = self._get(key, required)
        if value is None:
            if default is None:
                raise self.error(None, f"missing required key {key!r}")
            return default
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, not {_toml_type(value)}")
        return value

    def opt_str(self, key: str) -> str | None:
        value = self._get(key, False)
        if value is not None and not isinstance(value, str):
            raise self.error(key, f"must be a string, not {_toml_type(value)}")
        return value

    def get_int(self, key: str, default: int, lo: int, hi: int) -> int:
        value = self._get(key, False)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, not {_toml_type(value)}")
        if not lo <= value <= hi:
            raise self.error(key, f"{value} is out of range ({lo}..{hi})")
        return value

    def get_bool(self, key: str, default: bool) -> bool:
        value = self._get(key, False)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, not {_toml_type(value)}")
        return value

    def get_str_list(self, key: str, *, required: bool = False) -> list[str]:
        value = self._get(key, required)
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(key, "must be a string or a list of strings")
        return value

    def table(self, key: str) -> Table:
        value = self._get(key, True)
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table ([{self.path(key)}]), not {_toml_type(value)}")
        return Table(value, self.path(key), self.source)

    def tables(self, key: str) -> Iterator[Table]:
        """An array of tables (``[[key]]``); at least one."""
        value = self._get(key, True)
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.error(key, f"must be one or more tables ([[{self.path(key)}]])")
        if not value:
            raise self.error(key, "needs at least one entry")
        for i, item in enumerate(value):
            yield Table(item, f"{self.path(key)}[{i}]", self.source)

    def done(self) -> None:
        unknown = sorted(set(self.data) - self._seen)
        if unknown:
            hint = ", ".join(repr(k) for k in sorted(self._seen))
            raise self.error(
                None, f"unknown key {unknown[0]!r}" + (f" (known keys: {hint})" if hint else "")
            )


def _toml_type(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML: not UTF-8 text") from None


def parse_interface_address(t: Table, key: str, text: str) -> IPInterface:
    """``198.19.1.1/24`` -> an interface address with its prefix (host bits allowed)."""
    if "/" not in text:
        raise t.error(key, f"{text!r} needs a prefix length (e.g. {text}/24)")
    try:
        return ipaddress.ip_interface(text)
    except ValueError:
        raise t.error(key, f"{text!r} is not an address/prefix") from None


def parse_prefix(t: Table, key: str, text: str) -> IPNetwork:
    """``198.19.2.0/24`` -> a network; host bits set is an error (it is usually a typo)."""
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise t.error(key, f"{text!r} is not a prefix (address/length)") from None
    if net.network_address != ipaddress.ip_interface(text).ip:
        raise t.error(key, f"{text!r} has host bits set (did you mean {net}?)")
    return net


def parse_prefixes(t: Table, key: str) -> tuple[IPNetwork, ...]:
    """A required, non-empty list of prefixes."""
    nets = tuple(parse_prefix(t, key, p) for p in t.get_str_list(key, required=True))
    if not nets:
        raise t.error(key, "needs at least one prefix")
    return nets


def parse_endpoint(t: Table, key: str, text: str, default_port: int) -> tuple[str, int]:
    """``198.18.0.2``, ``198.18.0.2:4500``, ``2001:2::1`` or ``[2001:2::1]:4500``."""
    host, port = text, default_port
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise t.error(key, f"{text!r}: missing ']'")
        host, rest = text[1:close], text[close + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise t.error(key, f"{text!r}: expected ':port' after ']'")
            port = _port(t, key, rest[1:])
    elif text.count(":") == 1:
        host, port_text = text.split(":")
        port = _port(t, key, port_text)
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        raise t.error(key, f"{text!r}: {host!r} is not an IP address") from None
    return str(addr), port


def _port(t: Table, key: str, text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise t.error(key, f"port {text!r} is not a number in 1..65535")
    return int(text)


def _world_readable(path: Path) -> bool:
    try:
        return bool(path.stat().st_mode & stat.S_IROTH)
    except OSError:
        return False


# ---------------------------------------------------------------------------------------
# espfast static


@dataclass(frozen=True)
class InterfaceConfig:
    name: str
    addresses: tuple[IPInterface, ...]
    mtu: int
    listen: tuple[str, int]
    workers: int
    offload: bool  # TUN with IFF_VNET_HDR: TSO/GRO super-packets (off: one packet per read)
    # espfast up's responder (strongSwan's charon.cookie_threshold / init_limit_half_open,
    # cookie_threshold_ip, block_threshold; control/responder.py says what each counts)
    cookie_threshold: int = 10
    half_open_limit: int = 1000
    cookie_threshold_ip: int = 3
    block_threshold: int = 5
    # What one authenticated peer may hold (control/manager.py).
    ike_sas_per_identity: int = 10
    child_sas_per_ike_sa: int = 64
    # espfast up: where to serve Prometheus metrics (espfast/metrics.py); None: nowhere
    metrics: tuple[str, int] | None = None
    # The user to run as once set up (espfast/privs.py); None: stay who we are.
    user: str | None = None
    # Seconds between NAT keepalives (RFC 3948 §2.3) from behind a NAT; 0: none
    # (strongSwan's charon.keep_alive).
    keepalive: int = DEFAULT_KEEPALIVE
    # A road-warrior client: how the gateway's DNS servers are applied (espfast/clientdns.py)
    resolver: str = "auto"
    # One dataplane thread for both directions (only with workers = 1, the default there);
    # False: a TX and an RX thread (csrc/worker.c duplex_main says when each is better).
    duplex: bool = True


@dataclass(frozen=True)
class DirectionConfig:
    """One direction of an SA pair: the SPI on the wire and its keys."""

    spi: int
    enc_key: bytes = field(repr=False)
    integ_key: bytes = field(repr=False)


@dataclass(frozen=True)
class SaPairConfig:
    name: str
    transform: Transform
    esn: bool
    peer: tuple[str, int]
    local_ts: tuple[IPNetwork, ...]
    remote_ts: tuple[IPNetwork, ...]
    replay_window: int
    inbound: DirectionConfig
    outbound: DirectionConfig
    # no: plain ESP (IP protocol 50) to and from the peer's address through a raw socket,
    # as a kernel's manual SA without encapsulation; yes (default): ESP in UDP (RFC 3948)
    encap: bool = True


@dataclass(frozen=True)
class StaticConfig:
    source: Path
    interface: InterfaceConfig
    sas: tuple[SaPairConfig, ...]


class _Named(Protocol):
    @property
    def name(self) -> str: ...


_T = TypeVar("_T", bound=_Named)
_R = TypeVar("_R")


def _load(
    path: str | os.PathLike[str],
    section: str,
    parse: Callable[[Table, _KeySources], _T],
    extra: Callable[[Table, _KeySources], None] | None = None,
) -> tuple[Path, InterfaceConfig, tuple[_T, ...]]:
    """The parts every config has: [interface], and one or more [[section]] tables with
    unique names; warns when keys sit in files other users can read."""
    source = Path(path)
    top = Table(read_toml(source), "", str(source))
    keys = _KeySources(source.parent)
    interface_t, tables = top.table("interface"), list(top.tables(section))
    errors: list[ConfigError] = []  # (--check shows all their mistakes at once)

    def attempt(read: Callable[[], _R]) -> _R | None:
        try:
            return read()
        except ConfigError as e:
            errors.append(e)
            return None

    if extra is not None:  # other top-level tables of this kind of config
        attempt(lambda: extra(top, keys))
    top.done()  # the file's shape first; then every section, even after one failed
    interface = attempt(lambda: _interface(interface_t))
    parsed = [attempt(lambda t=t: parse(t, keys)) for t in tables]  # type: ignore[misc]
    names: dict[str, int] = {}
    for i, item in enumerate(parsed):
        name = item.name if item is not None else None
        if name in names:
            errors.append(ConfigError(
                f"{source}: {section}[{i}].name: {name!r} is already {section}[{names[name]}]"
            ))  # fmt: skip
        elif name is not None:
            names[name] = i
    if errors:
        raise collected(errors)
    assert interface is not None
    keys.warn_if_readable(source)
    return source, interface, tuple(item for item in parsed if item is not None)


def load_static(path: str | os.PathLike[str]) -> StaticConfig:
    """Read and validate an ``espfast static`` config; :class:`ConfigError` if it is wrong."""
    source, interface, sas = _load(path, "sa", _sa_pair)
    if interface.metrics is not None:
        raise ConfigError(f"{source}: interface.metrics: only espfast up serves metrics")
    _check_sas(str(source), interface, sas)
    return StaticConfig(source, interface, sas)


DEFAULT_WORKERS_MAX = 4  # beyond 4 senders the peer's default 1024 replay window may not
# cover the worst-case reordering between workers (see csrc/worker.c); more is explicit.


def default_workers() -> int:
    """One dataplane worker per two CPUs this process may run on (with several, a worker
    is two busy threads, TX and RX; one worker is one thread unless ``duplex = false``),
    at least 1 and at most DEFAULT_WORKERS_MAX. More workers than
    that only cost CPU per byte: with several, each reads fewer datagrams a call and
    hands its turn to the next (csrc/worker.c); measured on 2 CPUs, 2 workers took ~18 %
    more CPU per byte than 1, with the same throughput or less once the CPUs are busy."""
    return max(1, min(len(os.sched_getaffinity(0)) // 2, DEFAULT_WORKERS_MAX))


def _interface(t: Table) -> InterfaceConfig:
    name = t.get_str("name", "espfast0")
    if not 1 <= len(name) <= 15 or "/" in name or any(c.isspace() for c in name):
        raise t.error("name", f"{name!r} is not a valid interface name (1-15 chars, no / or space)")
    addresses = tuple(
        parse_interface_address(t, "addresses", a) for a in t.get_str_list("addresses")
    )
    mtu = t.get_int("mtu", DEFAULT_MTU, MIN_MTU, MAX_MTU)
    listen = parse_endpoint(t, "listen", t.get_str("listen", f"0.0.0.0:{NATT_PORT}"), NATT_PORT)
    workers = t.get_int("workers", default_workers(), 1, MAX_WORKERS)
    offload = t.get_bool("offload", True)
    cookies = t.get_int("cookie_threshold", 10, 0, 10**6)
    half_open = t.get_int("half_open_limit", 1000, 1, 10**6)
    cookies_ip = t.get_int("cookie_threshold_ip", 3, 0, 10**6)
    block = t.get_int("block_threshold", 5, 1, 10**6)
    ike_per_id = t.get_int("ike_sas_per_identity", 10, 1, 10**6)
    child_per_ike = t.get_int("child_sas_per_ike_sa", 64, 1, 10**6)
    metrics_text = t.opt_str("metrics")
    metrics = None
    if metrics_text is not None:
        metrics = parse_endpoint(t, "metrics", metrics_text, 0)
        if metrics[1] == 0:
            raise t.error("metrics", f"{metrics_text!r}: needs a port (ADDR:PORT)")
    user = t.opt_str("user")
    if user is not None and not user.strip():
        raise t.error("user", "is empty")
    keepalive = t.get_int("keepalive", DEFAULT_KEEPALIVE, 0, 3600)
    resolver = t.get_str("resolver", "auto")
    if resolver not in RESOLVER_MODES:
        raise t.error("resolver", f"{resolver!r}: one of {', '.join(RESOLVER_MODES)}")
    duplex = t.get_bool("duplex", workers == 1)
    if duplex and workers != 1:
        raise t.error("duplex", f"needs workers = 1 (workers = {workers})")
    t.done()
    return InterfaceConfig(name, addresses, mtu, listen, workers, offload, cookies, half_open,
                           cookies_ip, block, ike_per_id, child_per_ike, metrics, user,
                           keepalive, resolver, duplex)  # fmt: skip


@dataclass
class _KeySources:
    """Where keys came from, for the file-permission warnings."""

    base: Path  # relative key files are relative to the config file's directory
    inline: bool = False
    files: list[Path] = field(default_factory=list)

    def warn_if_readable(self, source: Path) -> None:
        if self.inline and _world_readable(source):
            log.warning(
                "%s holds keys and is readable by every user; chmod 600 it (or use *_file)",
                source,
            )
        for kf in self.files:
            if _world_readable(kf):
                log.warning("key file %s is readable by every user; chmod 600 it", kf)


def _sa_pair(t: Table, keys: _KeySources) -> SaPairConfig:
    name = t.get_str("name", t.where)
    keyword = t.get_str("transform", required=True).lower()
    try:
        transform = Transform(keyword)
    except ValueError:
        known = ", ".join(Transform)
        raise t.error("transform", f"unknown transform {keyword!r} (known: {known})") from None
    esn = t.get_bool("esn", False)
    peer = parse_endpoint(t, "peer", t.get_str("peer", required=True), NATT_PORT)
    local_ts = tuple(
        parse_prefix(t, "local_ts", p) for p in t.get_str_list("local_ts", required=True)
    )
    remote_ts = tuple(
        parse_prefix(t, "remote_ts", p) for p in t.get_str_list("remote_ts", required=True)
    )
    for key, nets in (("local_ts", local_ts), ("remote_ts", remote_ts)):
        if not nets:
            raise t.error(key, "needs at least one prefix")
    replay_window = t.get_int("replay_window", DEFAULT_REPLAY_WINDOW, 0, REPLAY_WINDOW_MAX)
    encap = upkeys.yes_no(t, "encap", "yes", ("yes", "no")) == "yes"
    outbound = _direction(t.table("out"), transform, keys)
    inbound = _direction(t.table("in"), transform, keys)
    t.done()
    return SaPairConfig(
        name, transform, esn, peer, local_ts, remote_ts, replay_window, inbound, outbound, encap
    )


def _direction(t: Table, transform: Transform, keys: _KeySources) -> DirectionConfig:
    spi = _spi(t)
    enc_len, integ_len = transform.key_lengths
    enc_key = _key(t, "enc_key", enc_len, transform, keys)
    if integ_len:
        integ_key = _key(t, "integ_key", integ_len, transform, keys)
    else:
        for k in ("integ_key", "integ_key_file"):
            if t.has(k):
                raise t.error(k, f"{transform} is an AEAD and takes no integrity key")
        integ_key = b""
    t.done()
    return DirectionConfig(spi, enc_key, integ_key)


def _spi(t: Table) -> int:
    raw = t.get("spi")
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise t.error("spi", f"must be an integer or a hex string, not {_toml_type(raw)}")
    if isinstance(raw, str):
        try:
            spi = int(raw, 16) if raw.lower().startswith("0x") else int(raw, 10)
        except ValueError:
            raise t.error("spi", f'{raw!r} is not a number (write hex as "0x...")') from None
    else:
        spi = raw
    # RFC 4303 §2.1: 0 is reserved for local use, 1..255 reserved by IANA.
    if not SPI_MIN <= spi <= SPI_MAX:
        raise t.error("spi", f"{raw} is out of range ({SPI_MIN}..{SPI_MAX:#x}; 0-255 are reserved)")
    return spi


def _secret(t: Table, key: str, keys: _KeySources) -> tuple[str, str]:
    """(text, where) of a secret given inline as ``key`` or in the file ``key_file``."""
    file_key = f"{key}_file"
    inline, path_text = t.opt_str(key), t.opt_str(file_key)
    if inline is not None and path_text is not None:
        raise t.error(key, f"give {key} or {file_key}, not both")
    if path_text is None:
        if inline is None:
            raise t.error(None, f"missing required key {key!r} (or {file_key!r})")
        keys.inline = True
        return inline, key
    kf = Path(path_text)
    if not kf.is_absolute():
        kf = keys.base / kf
    try:
        text = kf.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) else "not ASCII text"
        raise t.error(file_key, f"cannot read key file {str(kf)!r}: {reason}") from None
    keys.files.append(kf)
    return text, file_key


def _key(t: Table, key: str, length: int, transform: Transform, keys: _KeySources) -> bytes:
    """A key from ``key`` (hex) or ``key_file`` (a file holding hex); never echoed back."""
    inline, where = _secret(t, key, keys)
    text = "".join(inline.split()).removeprefix("0x").replace(":", "")
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise t.error(where, "is not valid hex") from None
    if len(value) != length:
        detail = " (key || 4-byte salt)" if transform.is_aead else ""
        raise t.error(
            where, f"{transform} needs a {length}-byte key{detail}, this one has {len(value)} bytes"
        )
    return value


def _check_sas(src: str, interface: InterfaceConfig, sas: tuple[SaPairConfig, ...]) -> None:
    """Checks across SA pairs: unique SPIs per direction, unique keys, outer families,
    distinct selectors; a warning for interface addresses no SA carries."""
    _check_unique_keys(src, sas)
    for direction in ("in", "out"):
        seen: dict[int, int] = {}
        for i, sa in enumerate(sas):
            spi = (sa.inbound if direction == "in" else sa.outbound).spi
            if spi in seen:
                raise ConfigError(
                    f"{src}: sa[{i}].{direction}.spi: {spi:#x} is already used by "
                    f"sa[{seen[spi]}].{direction}.spi (SPIs must be unique per direction)"
                )
            seen[spi] = i
    listen_family = ipaddress.ip_address(interface.listen[0]).version
    for i, sa in enumerate(sas):
        peer_family = ipaddress.ip_address(sa.peer[0]).version
        if peer_family != listen_family:
            raise ConfigError(
                f"{src}: sa[{i}].peer: {sa.peer[0]} is IPv{peer_family} but interface.listen "
                f"{interface.listen[0]} is IPv{listen_family}"
            )
    selectors: dict[tuple[frozenset[IPNetwork], frozenset[IPNetwork]], int] = {}
    for i, sa in enumerate(sas):
        key = (frozenset(sa.local_ts), frozenset(sa.remote_ts))
        if key in selectors:
            raise ConfigError(
                f"{src}: sa[{i}]: same local_ts and remote_ts as sa[{selectors[key]}] "
                "(outbound packets could not tell the two apart)"
            )
        selectors[key] = i
    for address in interface.addresses:
        if not any(address.ip in net for sa in sas for net in sa.local_ts):
            log.warning(
                "%s: interface address %s is in no SA's local_ts: packets sent from it "
                "match no SA and are dropped",
                src,
                address,
            )


def _check_unique_keys(src: str, sas: tuple[SaPairConfig, ...]) -> None:
    """No key twice, anywhere in the config: the AEADs take their nonce from the sequence
    number, so two SA directions under one key (and salt) encrypt packets 1, 2, 3, ...
    under the same nonces (RFC 4106 §8.1: fatal for GCM), and a packet sent on one
    would be accepted on the other. Compared without the AEAD salt, in constant time."""
    seen: list[tuple[bytes, str]] = []
    for i, sa in enumerate(sas):
        salt = 4 if sa.transform.is_aead else 0
        for direction, keys in (("out", sa.outbound), ("in", sa.inbound)):
            for name, key in (("enc_key", keys.enc_key), ("integ_key", keys.integ_key)):
                if not key:
                    continue
                material = key[: len(key) - salt] if name == "enc_key" else key
                where = f"sa[{i}].{direction}.{name}"
                for other, other_where in seen:
                    if hmac.compare_digest(material, other):
                        raise ConfigError(
                            f"{src}: {where}: the same key as {other_where} (every SA "
                            "direction needs its own key: a shared one repeats nonces)"
                        )
                seen.append((material, where))


# ---------------------------------------------------------------------------------------
# espfast up: IKEv2 connections (PSK authentication for now)
#
#     [interface]                     # as for espfast static; IKE also uses UDP 500 of
#     ...                             # the listen address
#     cookie_threshold = 10           # half-open IKE SAs before answering with COOKIE
#     keepalive = 20                  # seconds between NAT keepalives from behind a NAT (0: off)
#     resolver = "auto"               # a client's DNS from the gateway: auto (resolvconf,
#                                     # else resolvectl), resolvconf, resolvectl, file
#                                     # (/etc/resolv.conf, restored on exit), off
#     half_open_limit = 1000          # half-open IKE SAs before dropping new requests
#     cookie_threshold_ip = 3         # half-open IKE SAs from one address before COOKIEs
#     block_threshold = 5             # half-open IKE SAs from one address before its
#                                     # requests are dropped (strongSwan's names)
#     ike_sas_per_identity = 10       # IKE SAs one authenticated identity may hold
#     child_sas_per_ike_sa = 64       # Child SAs one IKE SA may carry (NO_ADDITIONAL_SAS)
#
#     [[connection]]
#     name = "site-b"
#     remote = "198.18.0.2"           # the peer; "%any" to only answer anyone; or a list
#                                     # with prefixes and first-last ranges: only peers
#                                     # from these may use the connection (remote_addrs)
#     local_id = "198.18.0.1"         # strongSwan id syntax: address, @fqdn, user@, DN
#     remote_id = "198.18.0.2"        # optional: any identity the peer proves
#     psk_file = "site-b.psk"         # or psk = "..." (text; 0x... for hex)
#     # or auth = "pubkey", cert = "a.crt", key = "a.key", cacerts = ["ca.crt"]
#     #   (auth = "rsa" | "ecdsa": classic signature methods only), intermediates =
#     #   ["im.crt"], send_cert = "always" | "ifasked" | "never", send_certreq = true
#     fragmentation = "yes"           # RFC 7383: yes | accept | no; fragment_size = 1280
#     mobike = "yes"                  # RFC 4555: yes | no (yes: follow our moves and the
#                                     # NAT's as initiator, answer UPDATE_SA_ADDRESSES)
#     mobike_no_nats = "no"           # RFC 4555 §3.9: yes: our UPDATE_SA_ADDRESSES carry
#                                     # NO_NATS_ALLOWED (the peer refuses a NATed move)
#     follow_esp = "no"               # yes: follow the peer to the source of its first
#                                     # authenticated ESP from a new address (WireGuard-like)
#     encap = "yes"                   # yes: always ESP in UDP 4500 (a NAT is faked to the
#                                     # peer); no: plain ESP (IP protocol 50) unless NAT-D
#                                     # finds a NAT (strongSwan's encap)
#     crls = ["ca.crl"]               # pubkey: CRLs (PEM or DER), read again when they change
#     revocation = "relaxed"          # pubkey: strict (a current CRL of the peer's CA must
#                                     # not list it) | ifuri (that, where the certificate
#                                     # names a CRL URI) | relaxed (refuse only the revoked);
#                                     # strongSwan's; nothing is ever fetched
#     # a gateway for road warriors with passwords: auth = "pubkey" (cert, key; cacerts
#     #   optional), remote_auth = "eap-mschapv2", users = "/etc/espfast/users" (the
#     #   default; espfast user add|del|list)
#     # the same with the users of RADIUS servers (FreeRADIUS...; any EAP method they
#     #   speak): remote_auth = "eap-radius" and a top-level table (espfast/radius.py)
#     #     [radius]
#     #     servers = [{address = "198.18.0.9:1812", secret_file = "r.secret",
#     #                 acct_port = 1813}, ...]      # tried in turn when one is silent
#     #     accounting = true; interim_interval = "10m"; timeout = 2; retransmit_tries = 2
#     # a road warrior with a password: local_auth = "eap-mschapv2", eap_id = "carol",
#     #   password_file = "carol.pw" (or password = "..."), cacerts = ["ca.crt"]
#     # a gateway for road warriors with certificates inside EAP-TLS: auth = "pubkey"
#     #   (cert, key, cacerts: the clients' CAs, crls), remote_auth = "eap-tls"; such a
#     #   road warrior: local_auth = "eap-tls", cert, key, cacerts, eap_id (default local_id)
#     dpd_delay = 30                  # seconds between liveness checks (0: off)
#     dpd_timeout = 150               # give up on a silent peer after about this long
#                                     # (scales the retransmission schedule of every request)
#     retransmit_tries = 5            # retransmissions before giving up (strongSwan's charon.
#                                     # retransmit_tries, here per connection)
#     proposals = "aes128gcm16-prfsha256-x25519"  # IKE, optional (strongSwan keywords)
#     rekey_time = "4h"               # IKE SA rekey (strongSwan's names and defaults:
#     over_time = "24m"               #   hard end rekey_time + over_time, jitter rand_time)
#     rand_time = "24m"
#     reauth_time = 0                 # reauthenticate (make-before-break) after this (0: never)
#     unique = "no"                   # IKE SAs with the same peer identity: no | never | keep
#                                     # | replace (strongSwan's; replace when both ends
#                                     # reauthenticate, or for clients that reconnect)
#     pool = ["198.19.100.0/24"]      # virtual IPs for peers that ask (road warriors; also
#                                     # "first-last" ranges): each
#                                     # identity keeps its address; child remote_ts
#                                     # defaults to the pool
#     framed_pools = { staff = ["198.19.110.0/24"] }  # eap-radius: pools a server's
#                                     # Framed-Pool may name (RFC 2869 §5.18)
#     dns = ["198.19.2.53"]           # DNS servers to tell them
#     vips = ["0.0.0.0"]              # as a client, ask for an address (0.0.0.0 / :: any);
#                                     # child local_ts defaults to 0.0.0.0/0 (::/0)
#
#     [[connection.child]]
#     name = "net"
#     local_ts = ["198.19.1.0/24"]
#     remote_ts = ["198.19.2.0/24"]
#     esp_proposals = "aes128gcm16"   # optional
#     rekey_time = 3600               # seconds, or "30s" / "5m" / "1h" / "1d" (0: never)
#     life_time = 3960                # hard end (default rekey_time + 10 %)
#     rand_time = 360                 # rekey up to this much early (default life - rekey)
#     rekey_bytes = "1G"              # rekey after this much traffic (0: off; K/M/G)
#     rekey_packets = 0               # rekey after this many packets (0: off)
#     start_action = "start"          # start | trap (negotiate on traffic) | none
#     dpd_action = "clear"            # peer found dead: clear | trap | restart
#     close_action = "none"           # peer closed it: none | trap | start

IKE_PORT = 500
DEFAULT_DPD_DELAY = 30  # seconds
DEFAULT_REKEY_TIME = 3600  # seconds, a Child SA's life before it is rekeyed (strongSwan: 1 h)
DEFAULT_IKE_REKEY_TIME = 14400  # seconds (strongSwan: 4 h)
MAX_SECONDS = 10**7  # about 116 days
START_ACTIONS = ("start", "trap", "none")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_SIZES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# IkeConfig's retransmission defaults (strongSwan's: 4 s, x1.8 each, 5 tries).
DEFAULT_RETRANSMIT_TIMEOUT, RETRANSMIT_BASE, RETRANSMIT_TRIES = 4.0, 1.8, 5
EAP_METHODS = ("eap-mschapv2", "eap-tls")  # local_auth / remote_auth (strongSwan's names)
EAP_RELAYED = ("eap-radius",)  # remote_auth: EAP relayed to the [radius] servers
MIN_PSK_LEN = 16  # bytes; a short PSK falls to an offline dictionary attack (RFC 7296 §2.15)


@dataclass(frozen=True)
class ConnectionConfig:
    name: str
    remote: tuple[str, int] | None  # None: %any, we only answer
    ike: IkeConfig = field(repr=False)  # its AuthConfig holds the PSK; lifetimes, DPD
    start_actions: tuple[tuple[str, str], ...] = ()  # (child name, start | trap | none)

    def children_to(self, action: str) -> list[str]:
        """The children whose start_action is ``action``, in config order."""
        return [name for name, a in self.start_actions if a == action]


@dataclass(frozen=True)
class UpConfig:
    source: Path
    interface: InterfaceConfig
    connections: tuple[ConnectionConfig, ...]
    radius: RadiusConfig | None = None  # [radius]: servers for remote_auth = "eap-radius"


def load_up(path: str | os.PathLike[str]) -> UpConfig:
    """Read and validate an ``espfast up`` config; :class:`ConfigError` if it is wrong."""
    from espfast.radius import parse_radius

    radius: list[RadiusConfig] = []

    def extra(top: Table, keys: _KeySources) -> None:
        if top.has("radius"):
            radius.append(parse_radius(top.table("radius"), keys))

    source, interface, conns = _load(path, "connection", _connection, extra)
    for c in conns:
        if c.ike.auth.eap_radius and not radius:
            raise ConfigError(f"{source}: connection {c.name!r}: remote_auth = \"eap-radius\" "
                              "needs a [radius] table with servers")  # fmt: skip
    return UpConfig(source, interface, conns, radius[0] if radius else None)


def _identity(t: Table, key: str, *, required: bool) -> tuple[int, bytes] | None:
    text = t.get_str(key, required=True) if required else t.opt_str(key)
    if text is None:
        return None
    try:
        return Identity.parse(text).encode()
    except ValueError as e:
        raise t.error(key, str(e)) from None


def _proposals(
    t: Table, key: str, default: str, parse: Callable[[str], tuple[ProposalSpec, ...]]
) -> tuple[ProposalSpec, ...]:
    if not t.has(key):
        text = default
    else:
        # strongSwan's comma-separated string, or a TOML array of proposals
        text = ",".join(t.get_str_list(key))
        if not text:
            raise t.error(key, "needs at least one proposal")
    try:
        return parse(text)
    except ValueError as e:
        raise t.error(key, str(e)) from None


def _connection(t: Table, keys: _KeySources) -> ConnectionConfig:
    name = t.get_str("name", t.where)
    remote, remote_addrs = upkeys.remote(t, IKE_PORT)
    remote_auth = _choice(t, "remote_auth", "", ("", *EAP_METHODS, *EAP_RELAYED))
    local_auth = _choice(t, "local_auth", "", ("", *EAP_METHODS))
    if local_auth == "eap-tls":
        auth, default_id = _eap_tls_client_auth(t, keys)
    elif local_auth:
        auth, default_id = _eap_client_auth(t, keys)
    else:
        auth_kind = t.get_str("auth", "psk")
        if auth_kind == "psk":
            auth, default_id = _psk_auth(t, keys), None
        elif auth_kind in upkeys.SIGNATURE_AUTH:
            tls = "server" if remote_auth == "eap-tls" else ""
            auth, default_id = _pubkey_auth(t, keys, need_cas=remote_auth in ("", "eap-tls"),
                                            kind=auth_kind, eap_tls=tls)  # fmt: skip
        else:
            raise t.error("auth", f"{auth_kind!r} is not psk, pubkey, rsa or ecdsa")
    if remote_auth in EAP_RELAYED:
        if auth.signer is None:
            raise t.error("remote_auth", 'EAP needs auth = "pubkey" (the gateway\'s certificate)')
        auth = replace(auth, eap_radius=True)
    elif remote_auth == "eap-tls":
        if auth.eap_tls is None:
            raise t.error("remote_auth", 'EAP-TLS needs auth = "pubkey" (the gateway\'s '
                          "certificate) and cacerts (the clients' CAs)")  # fmt: skip
    elif remote_auth:
        auth = _eap_users(t, auth, keys)
    auth = upkeys.cert_exchange(t, auth)
    local_id = _identity(t, "local_id", required=default_id is None) or default_id
    assert local_id is not None
    if auth.certs:
        _check_own_cert(t, auth.certs[0], local_id)
    remote_id = _identity(t, "remote_id", required=False)
    ike_proposals = _proposals(t, "proposals", DEFAULT_IKE, parse_ike)
    pool, pool_exact = upkeys.pool(t)
    framed_pools = upkeys.framed_pools(t, auth.eap_radius, bool(pool))
    dns = tuple(_address(t, "dns", a) for a in t.get_str_list("dns"))
    vips = tuple(_address(t, "vips", a) for a in t.get_str_list("vips"))
    if len({v.version for v in vips}) != len(vips):
        raise t.error("vips", "one address of each IP version at most")
    dpd_delay = t.get_int("dpd_delay", DEFAULT_DPD_DELAY, 0, 86400)
    tries = t.get_int("retransmit_tries", RETRANSMIT_TRIES, 0, 30)
    retransmit = _dpd_timeout(t, tries)
    children: list[ChildConfig] = []
    start_actions: list[tuple[str, str]] = []
    for ct in t.tables("child"):
        name_c = ct.get_str("name", ct.where)
        if any(c.name == name_c for c in children):
            raise ct.error("name", f"{name_c!r} is already a child of this connection")
        start = _choice(ct, "start_action", "start" if remote else "none", START_ACTIONS)
        if start != "none" and remote is None:
            raise ct.error("start_action", f"{start!r} needs the connection's remote address")
        dpd_action = _choice(ct, "dpd_action", "clear", DPD_ACTIONS)
        close_action = _choice(ct, "close_action", "none", CLOSE_ACTIONS)
        for key, action in (("dpd_action", dpd_action), ("close_action", close_action)):
            if action in ("trap", "restart", "start") and remote is None:
                raise ct.error(key, f"{action!r} needs the connection's remote address")
        children.append(
            ChildConfig(
                name=name_c,
                local_ts=_selectors(ct, "local_ts", _anywhere(vips)),
                remote_ts=_selectors(ct, "remote_ts", pool),
                esp_proposals=_proposals(ct, "esp_proposals", DEFAULT_ESP, parse_esp),
                lifetime=_child_lifetime(ct),
                dpd_action=dpd_action,
                close_action=close_action,
            )
        )
        start_actions.append((name_c, start))
        ct.done()
    ike_life = _ike_lifetime(t)
    unique = _choice(t, "unique", "no", UNIQUE_POLICIES)
    extensions = upkeys.extensions(t)
    t.done()
    ike = IkeConfig(
        name=name,
        local_id=local_id,
        remote_id=remote_id,
        auth=auth,
        children=tuple(children),
        ike_proposals=ike_proposals,
        dpd_delay=dpd_delay,
        lifetime=ike_life,
        retransmit_timeout=retransmit,
        retransmit_tries=tries,
        unique=unique,
        pool=pool,
        dns=dns,
        vips=vips,
        remote_addrs=remote_addrs,
        pool_exact=pool_exact,
        framed_pools=framed_pools,
        **extensions,
    )
    return ConnectionConfig(name, remote, ike, tuple(start_actions))


def _seconds(t: Table, key: str, default: float) -> float:
    """A duration: seconds as a number, or strongSwan's "30s" / "5m" / "1h" / "1d"."""
    value = t.get(key) if t.has(key) else None
    if value is None:
        return default
    if isinstance(value, str):
        text = value.strip().lower()
        unit = _UNITS.get(text[-1:], 0)
        try:
            value = float(text[:-1] if unit else text) * (unit or 1)
        except ValueError:
            raise t.error(
                key, f'{value!r} is not a duration (like 30, "30s", "5m", "1h")'
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise t.error(key, f"must be a number of seconds or a duration, not {_toml_type(value)}")
    if not 0 <= value <= MAX_SECONDS or value != value:
        raise t.error(key, f"{value} is out of range (0..{MAX_SECONDS} seconds)")
    return float(value)


def _size(t: Table, key: str) -> int:
    """A byte or packet count: an integer, or a string with K/M/G/T (powers of 1024)."""
    value = t.get(key) if t.has(key) else 0
    if isinstance(value, str):
        text = value.strip().lower()
        mult = _SIZES.get(text[-1:], 0) if text[-1:].isalpha() else 1
        try:
            value = int(text[:-1] if text[-1:].isalpha() else text) * mult
        except ValueError:
            value = -1
        if mult == 0 or value < 0:
            raise t.error(key, f'{t.get(key)!r} is not a count (like 1000, "500M", "1G")')
    if isinstance(value, bool) or not isinstance(value, int):
        raise t.error(key, f'must be an integer or a count like "1G", not {_toml_type(value)}')
    if not 0 <= value < 1 << 63:
        raise t.error(key, f"{value} is out of range (0..2^63-1)")
    return value


def _address(t: Table, key: str, text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise t.error(key, f"{text!r} is not an IP address") from None


def _anywhere(vips: tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]
              ) -> tuple[IPNetwork, ...]:  # fmt: skip
    """A client's own side before its virtual IPs are known: anywhere, per family."""
    return tuple(ipaddress.ip_network("0.0.0.0/0" if v.version == 4 else "::/0") for v in vips)


def _selectors(t: Table, key: str, default: tuple[IPNetwork, ...]) -> tuple[TrafficSelector, ...]:
    """A child's ``local_ts`` / ``remote_ts``, required unless there is a ``default``."""
    nets = parse_prefixes(t, key) if t.has(key) or not default else default
    return tuple(TrafficSelector.from_network(n) for n in nets)


def _choice(t: Table, key: str, default: str, choices: tuple[str, ...]) -> str:
    value = t.get_str(key, default)
    if value not in choices:
        raise t.error(key, f"{value!r} is not one of {', '.join(choices)}")
    return value


def _child_lifetime(t: Table) -> Lifetime:
    """strongSwan's child lifetimes: life_time defaults to rekey_time + 10 %, rand_time to
    the difference; the hard end must come after the rekey, the jitter before it."""
    rekey = _seconds(t, "rekey_time", DEFAULT_REKEY_TIME)
    life = _seconds(t, "life_time", rekey * 1.1)
    rand = _seconds(t, "rand_time", max(life - rekey, 0.0))
    _check_lifetime(t, rekey, life, rand)
    return Lifetime(rekey, life, rand, rekey_bytes=_size(t, "rekey_bytes"),
                    rekey_packets=_size(t, "rekey_packets"))  # fmt: skip


def _ike_lifetime(t: Table) -> Lifetime:
    """strongSwan's IKE lifetimes: the hard end is over_time (default 10 % of the longer
    of rekey_time and reauth_time) after the rekey or reauthentication; rand_time
    defaults to over_time (at most half the time to the first rekey/reauthentication)."""
    rekey = _seconds(t, "rekey_time", DEFAULT_IKE_REKEY_TIME)
    reauth = _seconds(t, "reauth_time", 0.0)
    over = _seconds(t, "over_time", 0.1 * max(rekey, reauth))
    first = min(x for x in (rekey, reauth, float("inf")) if x)
    rand = _seconds(t, "rand_time", min(over, first / 2))
    life = 0.0 if first == float("inf") else first + over
    _check_lifetime(t, first if life else 0.0, life, rand)
    return Lifetime(rekey, life, rand, reauth_time=reauth)


def _check_lifetime(t: Table, rekey: float, life: float, rand: float) -> None:
    if rekey and life and life <= rekey:
        key = "life_time" if t.has("life_time") else "over_time"
        raise t.error(key, f"the hard end ({life:g} s) must come after rekey_time ({rekey:g} s)")
    if rekey and rand >= rekey:
        raise t.error("rand_time", f"{rand:g} s must be less than the rekey time ({rekey:g} s)")


def _dpd_timeout(t: Table, tries: int) -> float:
    """dpd_timeout: the whole retransmission schedule (``tries``, x1.8 each)
    scaled so that a request goes unanswered for about this long before the peer is
    declared dead. Applies to every request, IKE_SA_INIT included."""
    if not t.has("dpd_timeout"):
        return DEFAULT_RETRANSMIT_TIMEOUT
    timeout = _seconds(t, "dpd_timeout", 0.0)
    if timeout < 0.5:
        raise t.error("dpd_timeout", f"{timeout:g} s is too short (at least 0.5 s)")
    spread = sum(RETRANSMIT_BASE**i for i in range(tries + 1))
    return timeout / spread


def _psk_auth(t: Table, keys: _KeySources) -> AuthConfig:
    text, where = _secret(t, "psk", keys)
    try:
        psk = bytes.fromhex(text.strip()[2:]) if text.startswith("0x") else text.strip().encode()
    except ValueError:
        raise t.error(where, "is not valid hex after 0x") from None
    if len(psk) < MIN_PSK_LEN:
        raise t.error(where, f"is {len(psk)} bytes; use at least {MIN_PSK_LEN} random bytes")
    return AuthConfig(psk=psk)


def _pubkey_auth(t: Table, keys: _KeySources, *, need_cas: bool = True, kind: str = "pubkey",
                 eap_tls: str = "") -> tuple[AuthConfig, tuple[int, bytes]]:  # fmt: skip
    """Certificates: ours (``cert``, its ``key``, the ``intermediates`` to send after it),
    the CAs we trust (``cacerts``; none needed when the peers authenticate with EAP),
    their CRLs (``crls``, espfast/crls.py) and the ``revocation`` policy. Our identity
    defaults to the certificate's subject DN. ``kind`` "rsa" / "ecdsa" (strongSwan's
    auth = rsa|ecdsa): that key type, signing with the classic AUTH methods only.
    ``eap_tls`` "server" / "client": the same certificate, CAs and CRLs also serve
    EAP-TLS in that role (control/eap/tls.py)."""
    from espfast.control.auth import certificate_auth, certificate_check
    from espfast.control.certs import LocalCredential, TrustStore
    from espfast.control.eap.tls import EapTlsSetup
    from espfast.control.revocation import POLICIES
    from espfast.crls import CrlFiles

    def path(text: str) -> Path:
        p = Path(text)
        return p if p.is_absolute() else keys.base / p

    cert = path(t.get_str("cert", required=True))
    key = path(t.get_str("key", required=True))
    cas = [path(c) for c in t.get_str_list("cacerts", required=need_cas)]
    if not cas and need_cas:
        raise t.error("cacerts", "needs at least one CA certificate")
    keys.files.append(key)
    intermediates = [path(c) for c in t.get_str_list("intermediates")]
    try:
        cred = LocalCredential.load(cert, key, intermediates)
    except (OSError, ValueError) as e:
        raise t.error("cert", f"cannot load {cert} with key {key}: {_reason(e)}") from None
    upkeys.check_intermediates(t, cred)
    upkeys.check_signature_kind(t, kind, cred)
    crl_paths = [path(c) for c in t.get_str_list("crls")]
    revocation = _choice(t, "revocation", "relaxed", POLICIES)
    if revocation == "strict" and not crl_paths:
        raise t.error("revocation", '"strict" refuses every peer without crls (nothing is '
                      "fetched): give the CAs' CRLs in crls")  # fmt: skip
    try:
        trust = TrustStore.load(cas, revocation=revocation)
    except (OSError, ValueError) as e:
        raise t.error("cacerts", _reason(e)) from None
    crls = CrlFiles(crl_paths, trust)
    try:
        crls.load()
    except (OSError, ValueError) as e:
        raise t.error("crls", _reason(e)) from None
    refresh = crls.poll if crl_paths else None
    auth = certificate_auth(cred, trust, time.time, refresh, classic=kind != "pubkey")
    check = certificate_check(trust, time.time, refresh)
    if eap_tls == "server":
        auth = replace(auth, eap_tls=EapTlsSetup.server(cred, trust.cas, check))
    elif eap_tls == "client":
        auth = replace(auth, eap_tls_peer=EapTlsSetup.client(cred, check))
    return auth, cred.identity.encode()


def _trust(t: Table, keys: _KeySources) -> TrustStore:
    from espfast.control.certs import TrustStore

    paths = [Path(c) if Path(c).is_absolute() else keys.base / c
             for c in t.get_str_list("cacerts", required=True)]  # fmt: skip
    if not paths:
        raise t.error("cacerts", "needs at least one CA certificate")
    try:
        return TrustStore.load(paths)
    except (OSError, ValueError) as e:
        raise t.error("cacerts", _reason(e)) from None


def _eap_client_auth(t: Table, keys: _KeySources) -> tuple[AuthConfig, tuple[int, bytes]]:
    """local_auth = "eap-mschapv2": we are a road warrior with a user name (``eap_id``)
    and ``password`` / ``password_file``, and check the gateway's certificate against
    ``cacerts``. Only the NT hash of the password is kept. Our identity (IDi) defaults
    to the user name."""
    from espfast.control.auth import certificate_auth
    from espfast.control.eap import nt_password_hash
    from espfast.control.tasks.ike_auth_eap import eap_peer_id

    eap_id = t.get_str("eap_id", required=True)
    try:
        users.check_name(eap_id)
    except users.UserFileError as e:
        raise t.error("eap_id", str(e)) from None
    text, where = _secret(t, "password", keys)
    password = text.rstrip("\r\n") if where.endswith("_file") else text
    if not password:
        raise t.error(where, "is empty")
    auth = certificate_auth(None, _trust(t, keys), time.time)
    auth = replace(auth, eap_identity=eap_id, eap_nt_hash=nt_password_hash(password))
    p = eap_peer_id(eap_id)
    return auth, (p.id_type, p.data)


def _eap_tls_client_auth(t: Table, keys: _KeySources) -> tuple[AuthConfig, tuple[int, bytes]]:
    """local_auth = "eap-tls": we are a road warrior proving our certificate (``cert``,
    ``key``) inside EAP-TLS as ``eap_id`` (default: our identity, the certificate's
    subject DN unless local_id says otherwise), and check the gateway's certificate,
    in IKE and in TLS, against ``cacerts``."""
    auth, default_id = _pubkey_auth(t, keys, eap_tls="client")
    eap_id = t.opt_str("eap_id") or t.opt_str("local_id") or str(Identity.decode(*default_id))
    if not 0 < len(eap_id.encode()) <= 255:
        raise t.error("eap_id", "must be 1 to 255 bytes")
    auth = replace(auth, signer=None, certs=(), eap_identity=eap_id)
    return auth, default_id


def _eap_users(t: Table, auth: AuthConfig, keys: _KeySources) -> AuthConfig:
    """remote_auth = "eap-mschapv2": peers prove a user of the ``users`` file (the
    gateway proves itself with its certificate: auth = "pubkey")."""
    if auth.signer is None:
        raise t.error("remote_auth", 'EAP needs auth = "pubkey" (the gateway\'s certificate)')
    text = t.get_str("users", str(users.DEFAULT_PATH))
    path = Path(text) if Path(text).is_absolute() else keys.base / text
    try:
        user_file = users.UserFile(path)
    except users.UserFileError as e:
        raise t.error("users", str(e)) from None
    return replace(auth, eap_users=user_file.lookup)


def _check_own_cert(t: Table, der: bytes, local_id: tuple[int, bytes]) -> None:
    """Our certificate must be valid now and name our identity: every peer checks both."""
    import datetime

    from cryptography import x509

    from espfast.control.certs import AuthenticationError, check_identity

    cert = x509.load_der_x509_certificate(der)
    now = datetime.datetime.now(datetime.UTC)
    if now > cert.not_valid_after_utc:
        raise t.error("cert", f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC")
    if now < cert.not_valid_before_utc:
        raise t.error("cert", f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC")
    try:
        check_identity(cert, Identity.decode(*local_id))
    except AuthenticationError as e:
        raise t.error("local_id", f"not in the certificate: {e}") from None


def _reason(e: Exception) -> str:
    return f"{e.strerror}: {e.filename}" if isinstance(e, OSError) and e.strerror else str(e)
