"""``espfast demo``: the main job on an embedded default, start to finish.

Two throw-away network namespaces joined by a veth pair (198.18.0.1 and 198.18.0.2); a CA
and a certificate for each gateway made on the spot with ``espfast pki``; ``espfast up`` in
each namespace negotiating an IKEv2 tunnel (certificate authentication, ECDSA); real
traffic through it (ping over IPv4 and IPv6 inner addresses, an iperf3 TCP run, the same
run over the bare veth for scale); ``espfast status``; a look at the wire (the handshake's
round trips and time, and nothing but IKE and ESP-in-UDP crossing the veth); a short
report. ``--static`` runs the same with manually keyed SAs (``espfast static``) instead of
IKE. Everything it creates is removed on exit, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from espfast import netns

if TYPE_CHECKING:
    from espfast.static import Running

INNER_A4, INNER_B4 = "198.19.1.1", "198.19.2.1"
INNER_A6, INNER_B6 = "2001:2:0:1::1", "2001:2:0:2::1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--transform", default="aes128gcm16", help="ESP transform (default aes128gcm16)"
    )
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="length of each iperf3 run (default 3)"
    )
    parser.add_argument(
        "--static", action="store_true", help="manual keying (espfast static) instead of IKEv2"
    )


@dataclass
class Report:
    lines: list[str] = field(default_factory=list)

    def step(self, text: str) -> None:
        print(f"==> {text}", flush=True)

    def add(self, label: str, value: str) -> None:
        self.lines.append(f"  {label:<30} {value}")


def run(args: argparse.Namespace) -> int:
    if not netns.have_root():
        print("espfast demo: needs root (it creates network namespaces and TUN devices)")
        return 1
    for tool in ("ip", "iperf3", "tcpdump", "ping"):
        if netns.which(tool) is None:
            print(f"espfast demo: {tool} is not installed (make demo installs it)")
            return 1
    report = Report()
    try:
        _demo(args, report)
    except (RuntimeError, subprocess.SubprocessError, OSError) as exc:
        print(f"espfast demo: FAILED: {exc}")
        return 1
    print("\nespfast demo report")
    print("\n".join(report.lines))
    return 0


def _demo(args: argparse.Namespace, report: Report) -> None:
    report.step("creating two network namespaces joined by a veth pair (198.18.0.1 <-> .2)")
    with netns.TwoHosts.create("demo") as hosts:
        report.add("namespaces", f"{hosts.a.name}, {hosts.b.name}")
        tunnel = _static_tunnel if args.static else _ike_tunnel
        with _capture(hosts.a) as capture, tunnel(hosts, args.transform, report) as stop:
            _traffic(hosts, args.seconds, report)
            if not args.static:
                _status(hosts, report)
            counters = stop()
            report.step("checking what crossed the wire")
            lines = capture()
        kinds = _classify(lines)
        report.add("on the veth", ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
        if PLAINTEXT in kinds or ESP not in kinds:
            raise RuntimeError(f"the veth did not carry only IKE and ESP-in-UDP: {kinds}")
        if not args.static:
            report.add("IKEv2 handshake (on the wire)", _handshake(lines))
        report.add("espfast counters (host a)", counters)
        report.step("the same TCP run over the bare veth, for scale")
        bare = _iperf(hosts, hosts.addr_b, args.seconds)
        report.add("TCP over the bare veth", f"{bare:.2f} Gbit/s")
        report.step("removing the namespaces")


@contextlib.contextmanager
def _static_tunnel(
    hosts: netns.TwoHosts, transform: str, report: Report
) -> Iterator[Callable[[], str]]:
    """``espfast static`` in each namespace with fresh random keys (manual keying)."""
    from espfast.static import pair_configs, start_in, write_private

    report.step(f"starting espfast static in both namespaces ({transform}, fresh random keys)")
    text_a, text_b = pair_configs(transform, outer=(hosts.addr_a, hosts.addr_b))
    with tempfile.TemporaryDirectory(prefix="espfast-demo-") as tmp:
        t0 = time.monotonic()
        a = start_in(hosts.a, write_private(Path(tmp) / "a.toml", text_a), "--json")
        b = start_in(hosts.b, write_private(Path(tmp) / "b.toml", text_b))
        report.add("tunnel up in", f"{(time.monotonic() - t0) * 1000:.0f} ms (static keys)")
        with _stopping(a, b) as stop:
            yield stop


@contextlib.contextmanager
def _ike_tunnel(
    hosts: netns.TwoHosts, transform: str, report: Report
) -> Iterator[Callable[[], str]]:
    """Certificates from ``espfast pki``, then ``espfast up``: b answers, a initiates."""
    from espfast.static import start_in, write_private

    with tempfile.TemporaryDirectory(prefix="espfast-demo-") as tmp:
        top = Path(tmp)
        report.step("making a CA and a certificate for each gateway (espfast pki, ECDSA P-256)")
        _espfast("pki", "ca", "--out", str(top / "ca"), "--dn", "O=espfast demo, CN=Demo CA")
        for host in ("a", "b"):
            _espfast(
                "pki", "issue", "--ca", str(top / "ca"), "--id", f"{host}.demo.test",
                "--out", str(top / host), "--name", host,
            )  # fmt: skip
        report.add("certificates", "CA + a.demo.test + b.demo.test (ECDSA P-256)")
        confs = {
            host: write_private(top / f"{host}.toml", _up_config(hosts, host, top, transform))
            for host in ("a", "b")
        }
        report.step(f"starting espfast up: b answers, a initiates (ESP {transform})")
        b = start_in(hosts.b, confs["b"], command="up")
        t0 = time.monotonic()
        a = start_in(hosts.a, confs["a"], command="up")
        with _stopping(a, b) as stop:
            if not netns.wait_for(lambda: _ping_once(hosts.a, INNER_B4), timeout=20):
                raise RuntimeError("the IKEv2 tunnel did not come up within 20 s")
            took = (time.monotonic() - t0) * 1000
            report.add("tunnel up in", f"{took:.0f} ms from starting the initiator")
            yield stop


def _up_config(hosts: netns.TwoHosts, me: str, top: Path, transform: str) -> str:
    peer = "b" if me == "a" else "a"
    addr = {"a": hosts.addr_a, "b": hosts.addr_b}
    inner = {"a": (INNER_A4, INNER_A6), "b": (INNER_B4, INNER_B6)}
    nets = {"a": ("198.19.1.0/24", "2001:2:0:1::/64"), "b": ("198.19.2.0/24", "2001:2:0:2::/64")}
    return (
        "\n".join(
            [
                "[interface]",
                'name = "espfast0"',
                f'addresses = ["{inner[me][0]}/24", "{inner[me][1]}/64"]',
                "mtu = 1400",
                f'listen = "{addr[me]}:4500"',
                "",
                "[[connection]]",
                f'name = "to-{peer}"',
                f'remote = "{addr[peer]}"' if me == "a" else 'remote = "%any"',
                f'local_id = "{me}.demo.test"',
                f'remote_id = "{peer}.demo.test"',
                'auth = "pubkey"',
                f'cert = "{top / me / me}.crt"',
                f'key = "{top / me / me}.key"',
                f'cacerts = ["{top / "ca" / "ca.crt"}"]',
                'proposals = "aes128gcm16-prfsha256-x25519"',
                "",
                "[[connection.child]]",
                'name = "net"',
                f'local_ts = ["{nets[me][0]}", "{nets[me][1]}"]',
                f'remote_ts = ["{nets[peer][0]}", "{nets[peer][1]}"]',
                f'esp_proposals = "{transform}"',
            ]
        )
        + "\n"
    )


def _espfast(*args: str) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "espfast", *args], capture_output=True, text=True, timeout=60
    )
    if proc.returncode != 0:
        raise RuntimeError(f"espfast {' '.join(args[:2])}: {proc.stderr.strip()}")
    return proc.stdout


def _ping_once(ns: netns.Namespace, dst: str) -> bool:
    return ns.run("ping", "-c", "1", "-W", "1", dst, check=False, timeout=5).returncode == 0


@contextlib.contextmanager
def _stopping(a: Running, b: Running) -> Iterator[Callable[[], str]]:
    """Yields stop(): ends both (SIGTERM by PID) and returns a's counters for the report."""
    stopped = False

    def stop() -> str:
        nonlocal stopped
        stopped = True
        b.stop()
        status, out, err = a.stop()
        if status != 0:
            raise RuntimeError(f"espfast exited {status}: {err.strip()}")
        return out.strip().splitlines()[-1] if out.strip() else "(none printed)"

    try:
        yield stop
    finally:
        if not stopped:
            b.stop()
            a.stop()


def _status(hosts: netns.TwoHosts, report: Report) -> None:
    report.step("espfast status on a")
    from espfast.static import control_socket_in

    sock = str(control_socket_in(hosts.a))
    out = hosts.a.run(
        sys.executable, "-m", "espfast", "status", "--socket", sock, check=False, timeout=20
    )
    text = (out.stdout if out.returncode == 0 else out.stderr).rstrip()
    print("\n".join("    " + line for line in text.splitlines()), flush=True)
    report.add("espfast status", "shown above" if out.returncode == 0 else f"failed: {text}")


def _traffic(hosts: netns.TwoHosts, seconds: float, report: Report) -> None:
    report.step("ping through the tunnel (IPv4 and IPv6 inner addresses)")
    for label, dst in (("IPv4", INNER_B4), ("IPv6", INNER_B6)):
        out = hosts.a.run("ping", "-c", "5", "-i", "0.2", "-W", "2", dst, timeout=20).stdout
        rtt = re.search(r"= [\d.]+/([\d.]+)/", out)
        report.add(f"ping {label} {dst}", f"5/5 replies, avg {rtt.group(1) if rtt else '?'} ms")
    report.step(f"iperf3 TCP through the tunnel for {seconds:g} s")
    gbit = _iperf(hosts, INNER_B4, seconds)
    report.add("TCP through the tunnel", f"{gbit:.2f} Gbit/s (1 stream)")


def _iperf(hosts: netns.TwoHosts, dst: str, seconds: float) -> float:
    """One iperf3 TCP run a -> b; Gbit/s received."""
    server = hosts.b.popen(
        "iperf3", "-s", "-1", "-B", dst, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        listening = netns.wait_for(
            lambda: ":5201" in hosts.b.run("ss", "-Hltn", check=False).stdout, timeout=10
        )
        if not listening:
            raise RuntimeError("iperf3 server did not start")
        out = hosts.a.run(
            "iperf3", "-c", dst, "-t", f"{seconds:g}", "-J", timeout=seconds + 30
        ).stdout
        bits = json.loads(out)["end"]["sum_received"]["bits_per_second"]
        return float(bits) / 1e9
    finally:
        hosts.b.stop(server)


@contextlib.contextmanager
def _capture(ns: netns.Namespace) -> Iterator[Callable[[], list[str]]]:
    """tcpdump on a's veth; the yielded function stops it and returns what it saw."""
    with tempfile.TemporaryDirectory(prefix="espfast-demo-pcap-") as tmp:
        pcap = Path(tmp) / "veth.pcap"
        proc = ns.popen(
            "tcpdump", "-Z", "root", "-i", "veth-a", "-n", "-s", "96", "-c", "2000",
            "-w", str(pcap), "ip or ip6", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        time.sleep(0.5)  # tcpdump needs a moment to attach

        def finish() -> list[str]:
            ns.stop(proc)
            return subprocess.run(
                ["tcpdump", "-tt", "-n", "-r", str(pcap)],
                capture_output=True, text=True, timeout=30, check=False,
            ).stdout.splitlines()  # fmt: skip

        try:
            yield finish
        finally:
            ns.stop(proc)


def _classify(lines: list[str]) -> dict[str, int]:
    """Count captured packets: IKE, ESP-in-UDP/4500, inner (tunnel) addresses in the clear,
    and the rest (IPv6 neighbour discovery and multicast-listener chatter of the veth)."""
    kinds: dict[str, int] = {}
    for line in lines:
        if "198.19." in line or "2001:2:0:" in line:  # the inner networks
            kind = PLAINTEXT
        elif "isakmp" in line:
            kind = IKE
        elif re.search(r"\.4500 > \S+\.4500: UDP-encap", line):
            kind = ESP
        else:
            kind = "link-local housekeeping"
        kinds[kind] = kinds.get(kind, 0) + 1
    return kinds


def _handshake(lines: list[str]) -> str:
    """Round trips and time of the IKEv2 exchanges before the first ESP packet, as seen on
    the wire (tcpdump marks the initiator's requests [I] and the answers [R])."""
    requests, first, last = 0, None, None
    for line in lines:
        if re.search(r"\.4500 > \S+\.4500: UDP-encap", line) and "isakmp" not in line:
            break
        if "isakmp" not in line:
            continue
        stamp = float(line.split()[0])
        first = stamp if first is None else first
        last = stamp
        if "[I]" in line:
            requests += 1
    if first is None or last is None:
        return "not captured"
    exchanges = [m for line in lines for m in re.findall(r"ikev2_(\w+)\[", line)]
    names = ", ".join(dict.fromkeys(exchanges))  # in order of appearance
    return f"{requests} round trips ({names}), {(last - first) * 1000:.1f} ms"


PLAINTEXT = "inner packets in the clear"
IKE = "IKE"
ESP = "ESP-in-UDP/4500"
