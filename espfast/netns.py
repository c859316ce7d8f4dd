"""Throw-away network namespaces for tests, benchmarks and ``espfast demo``.

Every namespace is named ``ef-<purpose>-<random>`` so that two runs never collide, uses
only addresses from the benchmarking ranges (198.18.0.0/15, and 2001:2::/48 for IPv6),
and is deleted on exit together with every process started in it (by PID; we never
signal a process we did not start).

This drives iproute2's ``ip netns``/``ip link`` through subprocess on purpose: running a
program inside a namespace needs ``ip netns exec`` (or setns in a fork) anyway, and the
commands are the ones an operator would type to reproduce a failing test by hand.
The daemon itself configures its TUN device through pyroute2.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import TracebackType

OUTER_NET = ipaddress.ip_network("198.18.0.0/24")
INNER_A = ipaddress.ip_network("198.19.1.0/24")
INNER_B = ipaddress.ip_network("198.19.2.0/24")
INNER6_A = ipaddress.ip_network("2001:2:0:1::/64")
INNER6_B = ipaddress.ip_network("2001:2:0:2::/64")


def unique_name(purpose: str) -> str:
    """``ef-<purpose>-<6 hex digits>``, at most 15 characters (an interface name's limit)."""
    return f"ef-{purpose[:5]}-{secrets.token_hex(3)}"


def have_root() -> bool:
    return os.geteuid() == 0


class CommandError(RuntimeError):
    pass


def run(
    args: Sequence[str], *, timeout: float = 30.0, check: bool = True, input: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input.decode() if input is not None else None,
    )
    if check and proc.returncode != 0:
        detail = proc.stderr.strip() or proc.stdout.strip()
        raise CommandError(f"{' '.join(args)} exited {proc.returncode}: {detail}")
    return proc


@dataclass
class Namespace:
    """One network namespace; a context manager that deletes it on exit."""

    name: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _closed: bool = False

    @classmethod
    def create(cls, purpose: str) -> Namespace:
        ns = cls(unique_name(purpose))
        run(["ip", "netns", "add", ns.name])
        try:
            ns.run("ip", "link", "set", "lo", "up")
        except BaseException:
            ns.close()
            raise
        return ns

    def argv(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def run(
        self, *args: str, timeout: float = 30.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run(self.argv(*args), timeout=timeout, check=check)

    def popen(self, *args: str, **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a process in the namespace; it is ended (by its PID) when the namespace closes."""
        proc: subprocess.Popen[bytes] = subprocess.Popen(self.argv(*args), **kwargs)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 5.0) -> int:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        return proc.returncode

    def wait_ready(
        self, proc: subprocess.Popen[bytes], word: str, what: str, timeout: float = 20.0
    ) -> str:
        """Read ``proc``'s stderr until it says ``: <word>: `` (bounded by ``timeout``) and
        return what it said until then; a process that ends or stays silent is stopped and
        RuntimeError says ``what`` did not become ready, with its output."""
        assert proc.stderr is not None
        fd = proc.stderr.fileno()
        head = b""
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while f": {word}: ".encode() not in head:
                left = deadline - time.monotonic()
                chunk = os.read(fd, 4096) if left > 0 and sel.select(left) else b""
                if not chunk:
                    status = self.stop(proc)
                    raise RuntimeError(
                        f"{what} did not become ready (exit {status}): "
                        + head.decode(errors="replace").strip()
                    )
                head += chunk
        return head.decode(errors="replace")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                self.stop(proc)
        run(["ip", "netns", "del", self.name], check=False)

    def __enter__(self) -> Namespace:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


@dataclass
class TwoHosts:
    """Two namespaces joined by a veth pair: a = 198.18.0.1, b = 198.18.0.2.

    ``mtu`` is the veth's MTU (the outer path); tunnels sit on top of it.
    """

    a: Namespace
    b: Namespace
    addr_a: str = "198.18.0.1"
    addr_b: str = "198.18.0.2"

    @classmethod
    @contextlib.contextmanager
    def create(cls, purpose: str, mtu: int = 1500) -> Iterator[TwoHosts]:
        with Namespace.create(purpose) as a, Namespace.create(purpose) as b:
            hosts = cls(a, b)
            veth_a, veth_b = "veth-a", "veth-b"
            a.run(
                "ip",
                "link",
                "add",
                veth_a,
                "mtu",
                str(mtu),
                "type",
                "veth",
                "peer",
                "name",
                veth_b,
                "netns",
                b.name,
                "mtu",
                str(mtu),
            )
            a.run("ip", "addr", "add", f"{hosts.addr_a}/24", "dev", veth_a)
            b.run("ip", "addr", "add", f"{hosts.addr_b}/24", "dev", veth_b)
            a.run("ip", "link", "set", veth_a, "up")
            b.run("ip", "link", "set", veth_b, "up")
            yield hosts


@dataclass
class ThreeHosts:
    """a -- r -- b: two hosts on two subnets joined by a router namespace ``r``.

    a = 198.18.0.1/24 (veth-a) <-> r = 198.18.0.254 (veth-ra) | r = 198.18.1.254 (veth-rb)
    <-> b = 198.18.1.1/24 (veth-b); IPv6 likewise, a = 2001:2:0:f0::1/64, r = 2001:2:0:f0::fe
    and 2001:2:0:f1::fe, b = 2001:2:0:f1::1/64. a and b route the other's subnet through r,
    which forwards (rp_filter off, no ICMP redirects). Nothing translates addresses: a and b
    see each other's real addresses. :mod:`espfast.impair` turns r into a lossy link.
    """

    a: Namespace
    r: Namespace
    b: Namespace
    addr_a: str = "198.18.0.1"
    addr_b: str = "198.18.1.1"
    addr_ra: str = "198.18.0.254"
    addr_rb: str = "198.18.1.254"
    addr6_a: str = "2001:2:0:f0::1"
    addr6_b: str = "2001:2:0:f1::1"
    addr6_ra: str = "2001:2:0:f0::fe"
    addr6_rb: str = "2001:2:0:f1::fe"
    veth_ra: str = "veth-ra"
    veth_rb: str = "veth-rb"

    @classmethod
    @contextlib.contextmanager
    def create(cls, purpose: str, mtu: int = 1500) -> Iterator[ThreeHosts]:
        with (
            Namespace.create(purpose) as a,
            Namespace.create(purpose) as r,
            Namespace.create(purpose) as b,
        ):
            hosts = cls(a, r, b)
            for ns in (a, r, b):  # IPv6 usable at once: no duplicate address detection
                ns.run("sysctl", "-q", "-w", "net.ipv6.conf.all.accept_dad=0")
                ns.run("sysctl", "-q", "-w", "net.ipv6.conf.default.accept_dad=0")
            for sysctl in (
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
                "net.ipv4.conf.all.send_redirects=0",
                "net.ipv4.conf.default.send_redirects=0",
                "net.ipv6.conf.all.forwarding=1",
            ):
                r.run("sysctl", "-q", "-w", sysctl)
            for host, veth, rveth, addr, raddr, addr6, raddr6 in (
                (a, "veth-a", hosts.veth_ra, hosts.addr_a, hosts.addr_ra, hosts.addr6_a,
                 hosts.addr6_ra),
                (b, "veth-b", hosts.veth_rb, hosts.addr_b, hosts.addr_rb, hosts.addr6_b,
                 hosts.addr6_rb),
            ):  # fmt: skip
                host.run(
                    "ip", "link", "add", veth, "mtu", str(mtu), "type", "veth",
                    "peer", "name", rveth, "netns", r.name, "mtu", str(mtu),
                )  # fmt: skip
                host.run("ip", "addr", "add", f"{addr}/24", "dev", veth)
                r.run("ip", "addr", "add", f"{raddr}/24", "dev", rveth)
                host.run("ip", "link", "set", veth, "up")
                r.run("ip", "link", "set", rveth, "up")
                host.run("ip", "-6", "addr", "add", f"{addr6}/64", "dev", veth, "nodad")
                r.run("ip", "-6", "addr", "add", f"{raddr6}/64", "dev", rveth, "nodad")
                host.run("ip", "route", "add", "198.18.0.0/15", "via", raddr)
                host.run("ip", "-6", "route", "add", "2001:2::/48", "via", raddr6)
            yield hosts


def wait_for(predicate: object, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """Poll ``predicate()`` until it is true or ``timeout`` passes (bounded; for tests)."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def which(program: str) -> str | None:
    return shutil.which(program)
