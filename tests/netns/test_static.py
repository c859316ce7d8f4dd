"""``espfast static`` between two namespaces: real TUN devices, real ESP-in-UDP on a veth.

Each test starts the command in both namespaces (a = 198.18.0.1, b = 198.18.0.2 outside;
198.19.1.1 / 2001:2:0:1::1 and 198.19.2.1 / 2001:2:0:2::1 inside) from a freshly generated
pair of configs, and stops it by PID with SIGTERM.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from espfast.dataplane import Transform
from espfast.netns import Namespace, TwoHosts, wait_for
from espfast.static import Running, pair_configs, start_in, write_private

A4, B4 = "198.19.1.1", "198.19.2.1"
A6, B6 = "2001:2:0:1::1", "2001:2:0:2::1"
# 16 bytes that ping repeats through its payload; they must never appear on the wire.
MARKER = "e5f0a57e5f0a57c1e0ba11ad0fee1500"


@dataclass
class Tunnel:
    hosts: TwoHosts
    a: Running
    b: Running

    def stop_json(self, side: Running) -> dict[str, Any]:
        status, out, err = side.stop()
        assert status == 0, err
        report: dict[str, Any] = json.loads(out)
        return report


@contextlib.contextmanager
def tunnel(
    tmp_path: Path,
    transform: str = "aes128gcm16",
    *,
    esn: bool = False,
    offload: bool = True,
    duplex: bool | None = None,
) -> Iterator[Tunnel]:
    text_a, text_b = pair_configs(transform, esn=esn, offload=offload, duplex=duplex)
    conf_a = write_private(tmp_path / "a.toml", text_a)
    conf_b = write_private(tmp_path / "b.toml", text_b)
    with TwoHosts.create("st") as hosts:
        a = start_in(hosts.a, conf_a, "--json")
        b = start_in(hosts.b, conf_b, "--json")
        yield Tunnel(hosts, a, b)


def ping(ns: Namespace, dst: str, count: int = 3, *extra: str) -> subprocess.CompletedProcess[str]:
    return ns.run(
        "ping", "-c", str(count), "-i", "0.2", "-W", "2", *extra, dst, check=False, timeout=30
    )


def first_ping(ns: Namespace, dst: str) -> bool:
    """The first packets may race the peer's SA setup: retry a few times (bounded)."""
    return wait_for(lambda: ping(ns, dst, 1).returncode == 0, timeout=10, interval=0.2)


def total(report: dict[str, Any], direction: str, counter: str) -> int:
    return sum(int(sa[counter]) for sa in report["sas"] if sa["direction"] == direction)


# Every transform with 32-bit sequence numbers; ESN with one AEAD and one CBC transform.
CASES = [(t, False) for t in list(Transform)] + [("aes128gcm16", True), ("aes256-sha256", True)]


@pytest.mark.parametrize(
    ("transform", "esn"), CASES, ids=[f"{t}-{'esn' if e else 'seq32'}" for t, e in CASES]
)
def test_ping_ipv4_and_ipv6(tmp_path: Path, transform: str, esn: bool) -> None:
    with tunnel(tmp_path, transform, esn=esn) as t:
        assert first_ping(t.hosts.a, B4)
        assert ping(t.hosts.a, B4).returncode == 0
        assert ping(t.hosts.b, A6).returncode == 0
        report_a = t.stop_json(t.a)
        report_b = t.stop_json(t.b)
    # Every echo request a sent arrived at b; b's counters agree with a's.
    assert total(report_a, "out", "packets") >= 4 + 3  # 4+ IPv4 requests, 3 IPv6 replies
    assert total(report_b, "in", "packets") == total(report_a, "out", "packets")
    assert total(report_a, "in", "packets") == total(report_b, "out", "packets")
    for report in (report_a, report_b):
        for counter in ("auth_failures", "replay_drops", "policy_drops", "malformed"):
            assert report["global"][counter] == 0, (counter, report["global"])


def read_pcap(path: Path) -> list[Any]:
    from scapy.utils import rdpcap

    return list(rdpcap(str(path)))


@pytest.mark.parametrize("offload", [True, False], ids=["offload", "no-offload"])
def test_tcp_and_capture_shows_only_esp(tmp_path: Path, offload: bool) -> None:
    pcap = tmp_path / "veth.pcap"
    with tunnel(tmp_path, offload=offload) as t:
        assert first_ping(t.hosts.a, B4)
        dump = t.hosts.b.popen(
            "tcpdump", "-i", "veth-b", "-n", "-U", "-s", "0", "-w", str(pcap),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert wait_for(lambda: pcap.exists() and pcap.stat().st_size > 0, timeout=10)
        assert ping(t.hosts.a, B4, 5, "-p", MARKER, "-s", "512").returncode == 0
        assert ping(t.hosts.a, B6, 5, "-p", MARKER, "-s", "512").returncode == 0
        server = t.hosts.b.popen(
            "iperf3", "-s", "-1", "-B", B4, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        assert wait_for(lambda: ":5201" in t.hosts.b.run("ss", "-Htln").stdout, timeout=10)
        client = t.hosts.a.run(
            "iperf3", "-c", B4, "-B", A4, "-t", "2", "-J", check=False, timeout=60
        )
        t.hosts.b.stop(server)
        time.sleep(0.3)  # let tcpdump write the last packets out
        t.hosts.b.stop(dump)
        report_b = t.stop_json(t.b)
        t.stop_json(t.a)

    iperf = json.loads(client.stdout)
    assert "error" not in iperf, iperf.get("error")
    received = iperf["end"]["sum_received"]["bytes"]
    assert received > 1_000_000  # megabytes moved in 2 s, through the tunnel
    assert total(report_b, "in", "bytes") > received

    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6

    raw = pcap.read_bytes()
    assert bytes.fromhex(MARKER) not in raw
    packets = read_pcap(pcap)
    esp = 0
    for pkt in packets:
        if IP in pkt:
            assert UDP in pkt, pkt.summary()
            assert (pkt[UDP].sport, pkt[UDP].dport) == (4500, 4500), pkt.summary()
            payload = bytes(pkt[UDP].payload)
            assert payload[:4] != b"\0\0\0\0" and len(payload) > 8, pkt.summary()
            esp += 1
        elif IPv6 in pkt:
            # Only the veth's own link-local chatter (ND, MLD); no inner IPv6 packets.
            assert not pkt[IPv6].src.startswith("2001:2:"), pkt.summary()
            assert not pkt[IPv6].dst.startswith("2001:2:"), pkt.summary()
    assert esp > 1000  # the iperf3 run and the pings, all as ESP


def thread_names(pid: int) -> list[str]:
    return sorted(p.read_text().strip() for p in Path(f"/proc/{pid}/task").glob("*/comm"))


@pytest.mark.parametrize("duplex", [True, False], ids=["one-thread", "thread-per-direction"])
def test_tcp_both_ways_at_once(tmp_path: Path, duplex: bool) -> None:
    """TCP in both directions at once (iperf3 --bidir) with the dataplane's one worker as
    one thread for both directions (the default) and as a TX and an RX thread."""
    with tunnel(tmp_path, duplex=duplex) as t:
        assert first_ping(t.hosts.a, B4)
        want = ["ef-io0"] if duplex else ["ef-rx0", "ef-tx0"]
        for daemon in (t.a, t.b):
            assert [n for n in thread_names(daemon.pid) if n.startswith("ef-")] == want
        server = t.hosts.b.popen(
            "iperf3", "-s", "-1", "-B", B4, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        assert wait_for(lambda: ":5201" in t.hosts.b.run("ss", "-Htln").stdout, timeout=10)
        client = t.hosts.a.run(
            "iperf3", "-c", B4, "-B", A4, "-t", "2", "--bidir", "-J", check=False, timeout=60
        )
        t.hosts.b.stop(server)
        reports = t.stop_json(t.a), t.stop_json(t.b)
    end = json.loads(client.stdout)["end"]
    assert end["sum_received"]["bytes"] > 1_000_000  # a -> b
    assert end["sum_received_bidir_reverse"]["bytes"] > 1_000_000  # b -> a
    for report in reports:
        for counter in ("auth_failures", "replay_drops", "policy_drops", "malformed"):
            assert report["global"][counter] == 0, (counter, report["global"])


def test_sigterm_exits_zero_and_prints_counters(tmp_path: Path) -> None:
    text_a, text_b = pair_configs("chacha20poly1305")
    with TwoHosts.create("st") as hosts:
        a = start_in(hosts.a, write_private(tmp_path / "a.toml", text_a))
        b = start_in(hosts.b, write_private(tmp_path / "b.toml", text_b))
        assert "ready" in a.stderr_head and "espfast0 up" in a.stderr_head
        assert first_ping(hosts.a, B4)
        status, out, err = a.stop()
        b.stop()
    assert status == 0, err
    assert "espfast static: espfast0 ran" in out
    assert "tunnel out spi 0x" in out and "tunnel in  spi 0x" in out
    assert "packets" in out
    # The keys stay secret: nothing from the config file's key lines is printed.
    for line in text_a.splitlines():
        if "key" in line:
            key = line.split('"')[1]
            assert key not in out and key not in err and key not in a.stderr_head


def test_random_bytes_on_4500_are_counted_and_traffic_flows(tmp_path: Path) -> None:
    sender = (
        "import os, random, socket, time\n"
        "random.seed(4500)\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "for i in range(300):\n"
        "    n = random.choice([1, 3, 7, 8, 9, 16, 40, 100, 1400, 2000])\n"
        "    data = os.urandom(n)\n"
        "    if n == 1 and data == b'\\xff' or data[:4] == bytes(4):\n"
        "        data = b'\\x01' + data[1:]  # neither a keepalive nor an IKE message\n"
        "    s.sendto(data, ('198.18.0.1', 4500))\n"
        "    time.sleep(0.001)  # paced: the socket buffer must not overflow on a busy machine\n"
    )
    with tunnel(tmp_path) as t:
        assert first_ping(t.hosts.a, B4)
        t.hosts.b.run(sys.executable, "-c", sender)
        # Traffic goes on, in both directions, during and after the garbage.
        assert ping(t.hosts.b, A4).returncode == 0
        assert ping(t.hosts.a, B6).returncode == 0
        report_a = t.stop_json(t.a)
        t.stop_json(t.b)
    g = report_a["global"]
    assert g["malformed"] + g["unknown_spi"] >= 300, g
    assert g["unknown_spi"] > 0 and g["malformed"] > 0, g  # short ones and long ones
    assert total(report_a, "in", "packets") >= 3


def test_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    text_a, _ = pair_configs()
    conf = write_private(tmp_path / "a.toml", text_a)
    with TwoHosts.create("st") as hosts:
        holder = hosts.a.popen(
            sys.executable, "-c",
            "import socket, time\n"
            "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            "s.bind(('198.18.0.1', 4500)); print('bound', flush=True); time.sleep(60)",
            stdout=subprocess.PIPE,
        )  # fmt: skip
        assert holder.stdout is not None and holder.stdout.readline() == b"bound\n"
        proc = hosts.a.run(
            sys.executable, "-m", "espfast", "static", "-c", str(conf), "--fresh-keys",
            check=False,
        )  # fmt: skip
        hosts.a.stop(holder)
        # The TUN device went away with the failed run.
        links = hosts.a.run("ip", "-o", "link").stdout
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        "espfast static: cannot bind UDP 198.18.0.1:4500: Address already in use"
    ]
    assert "espfast0" not in links


def test_ipv6_outer(tmp_path: Path) -> None:
    """ESP over an IPv6 path (UDP/4500 between 2001:2:0:ff::1 and ::2), both inner families."""
    outer = ("2001:2:0:ff::1", "2001:2:0:ff::2")
    text_a, text_b = pair_configs("aes256gcm16", outer=outer)
    assert 'listen = "[2001:2:0:ff::1]:4500"' in text_a
    with TwoHosts.create("st") as hosts:
        for ns, dev, addr in ((hosts.a, "veth-a", outer[0]), (hosts.b, "veth-b", outer[1])):
            ns.run("ip", "-6", "addr", "add", f"{addr}/64", "dev", dev, "nodad")
        a = start_in(hosts.a, write_private(tmp_path / "a.toml", text_a), "--json")
        b = start_in(hosts.b, write_private(tmp_path / "b.toml", text_b), "--json")
        t = Tunnel(hosts, a, b)
        assert first_ping(hosts.a, B4)
        assert ping(hosts.b, A6).returncode == 0
        report_a = t.stop_json(a)
        t.stop_json(b)
    assert total(report_a, "in", "packets") >= 4 and total(report_a, "out", "packets") >= 4
    assert report_a["global"]["auth_failures"] == 0
