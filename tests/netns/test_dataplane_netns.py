"""Two namespaces joined by veth, each with a real TUN device, a UDP socket on 4500 and
a Dataplane with static SAs: ping passes both ways (IPv4 and IPv6 inner), counters move.

The dataplane of each side runs in a small child process started inside its namespace
(``python -c`` with the script below), because a namespace belongs to a process: the
test process itself stays in the root namespace.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from espfast.netns import Namespace, TwoHosts, wait_for

SIDE_SCRIPT = textwrap.dedent(
    """
    import ipaddress, json, os, signal, socket, sys, time
    from espfast.dataplane import Dataplane, Direction, SaParams, Transform, open_tun

    cfg = json.loads(sys.argv[1])
    fd, name = open_tun("ef-tun", vnet_hdr=cfg.get("vnet", False))
    os.system(f"ip link set {name} mtu {cfg.get('tun_mtu', 1400)} up")
    os.system(f"ip addr add {cfg['addr4']}/32 dev ef-tun")
    os.system(f"ip -6 addr add {cfg['addr6']}/128 dev ef-tun nodad")
    os.system(f"ip route add {cfg['remote'][0]} dev ef-tun")
    os.system(f"ip -6 route add {cfg['remote'][1]} dev ef-tun")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind((cfg["outer"], 4500))
    nets = lambda xs: tuple(ipaddress.ip_network(x) for x in xs)
    dp = Dataplane(fd, udp)
    t = Transform(cfg["transform"])
    for d in ("out", "in"):
        direction = Direction(d)
        dp.add_sa(SaParams(
            spi=cfg["spi_" + d], direction=direction, transform=t,
            enc_key=bytes.fromhex(cfg["key_" + d]), integ_key=bytes.fromhex(cfg["integ_" + d]),
            local_ts=nets(cfg["local"]), remote_ts=nets(cfg["remote"]),
            peer=(cfg["peer"], 4500) if direction is Direction.OUT else None))
    dp.start()
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    dp.stop()
    out = {"stats": dp.stats().__dict__,
           "in": dp.sa_stats(cfg["spi_in"], Direction.IN).__dict__,
           "out": dp.sa_stats(cfg["spi_out"], Direction.OUT).__dict__}
    dp.close()
    print(json.dumps(out), flush=True)
    """
)

REPO = Path(__file__).resolve().parents[2]


def start_side(ns: Namespace, cfg: dict[str, object]) -> subprocess.Popen[bytes]:
    proc = ns.popen(
        sys.executable,
        "-c",
        "import signal; signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM}); "
        + "exec(compile(open(0).read(), 'side', 'exec'))",
        json.dumps(cfg),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=str(REPO),
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(SIDE_SCRIPT.encode())
    proc.stdin.close()
    line = proc.stdout.readline()
    assert line.strip() == b"ready", line
    return proc


def finish_side(ns: Namespace, proc: subprocess.Popen[bytes]) -> dict[str, dict[str, int]]:
    assert proc.stdout is not None
    ns.stop(proc)
    result: dict[str, dict[str, int]] = json.loads(proc.stdout.read())
    return result


def side_configs(hosts: TwoHosts, transform: str) -> tuple[dict[str, object], dict[str, object]]:
    enc_len = {"aes128gcm16": 20, "aes256gcm16": 36, "chacha20poly1305": 36, "aes256-sha512": 32}[
        transform
    ]
    integ_len = {"aes256-sha512": 64}.get(transform, 0)
    k_ab, k_ba = os.urandom(enc_len).hex(), os.urandom(enc_len).hex()
    i_ab, i_ba = os.urandom(integ_len).hex(), os.urandom(integ_len).hex()
    net_a, net_b = ["198.19.1.0/24", "2001:2:0:1::/64"], ["198.19.2.0/24", "2001:2:0:2::/64"]
    a = {
        "transform": transform,
        "outer": hosts.addr_a,
        "peer": hosts.addr_b,
        "addr4": "198.19.1.1",
        "addr6": "2001:2:0:1::1",
        "local": net_a,
        "remote": net_b,
        "spi_out": 0x1001,
        "spi_in": 0x2002,
        "key_out": k_ab,
        "key_in": k_ba,
        "integ_out": i_ab,
        "integ_in": i_ba,
    }
    b = {
        **a,
        "outer": hosts.addr_b,
        "peer": hosts.addr_a,
        "addr4": "198.19.2.1",
        "addr6": "2001:2:0:2::1",
        "local": net_b,
        "remote": net_a,
        "spi_out": 0x2002,
        "spi_in": 0x1001,
        "key_out": k_ba,
        "key_in": k_ab,
        "integ_out": i_ba,
        "integ_in": i_ab,
    }
    return a, b


@pytest.mark.parametrize(
    ("transform", "vnet"),
    [
        ("aes128gcm16", False),
        ("aes128gcm16", True),  # TUN with IFF_VNET_HDR: non-TCP packets pass as they are
        ("chacha20poly1305", False),
        ("aes256-sha512", False),
    ],
)
def test_ping_through_espfast(transform: str, vnet: bool) -> None:
    with TwoHosts.create("dp") as hosts:
        a_cfg, b_cfg = side_configs(hosts, transform)
        a_cfg["vnet"] = b_cfg["vnet"] = vnet
        pa = start_side(hosts.a, a_cfg)
        pb = start_side(hosts.b, b_cfg)
        hosts.a.run("ping", "-c", "3", "-i", "0.2", "-W", "2", "198.19.2.1", timeout=20)
        hosts.b.run("ping", "-c", "3", "-i", "0.2", "-W", "2", "198.19.1.1", timeout=20)
        hosts.a.run("ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "2001:2:0:2::1", timeout=20)
        hosts.b.run("ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", "2001:2:0:1::1", timeout=20)
        # A large ping: its ESP packet is longer than the TUN MTU, still below the veth's.
        hosts.a.run("ping", "-c", "2", "-s", "1300", "-W", "2", "198.19.2.1", timeout=20)
        ra = finish_side(hosts.a, pa)
        rb = finish_side(hosts.b, pb)
    # 3 + 3 + 3 + 3 + 2 echo requests, each answered: 14 packets each way per side.
    assert ra["out"]["packets"] == 14 and ra["in"]["packets"] == 14
    assert rb["out"]["packets"] == 14 and rb["in"]["packets"] == 14
    assert ra["stats"]["rx_packets"] == 14 and rb["stats"]["tx_packets"] == 14
    for r in (ra, rb):
        assert r["stats"]["auth_failures"] == 0 and r["stats"]["replay_drops"] == 0
        assert r["out"]["seq"] == 14


def test_bursts_of_packets_larger_than_the_outer_mtu() -> None:
    """TUN MTU 1500 on a 1500 veth: ESP packets of ~1530 bytes cannot leave as one UDP GSO
    message (the kernel refuses segments above the MTU); they go one by one (and are
    fragmented by the kernel), and the dataplane keeps GSO for smaller packets."""
    with TwoHosts.create("dp") as hosts:
        a_cfg, b_cfg = side_configs(hosts, "aes128gcm16")
        a_cfg["tun_mtu"] = b_cfg["tun_mtu"] = 1500
        pa = start_side(hosts.a, a_cfg)
        pb = start_side(hosts.b, b_cfg)
        # -l 8: eight echo requests back to back, so that they share TUN reads.
        hosts.a.run(
            "ping",
            "-c",
            "16",
            "-l",
            "8",
            "-i",
            "0.05",
            "-s",
            "1460",
            "-W",
            "2",
            "198.19.2.1",
            timeout=30,
        )
        hosts.a.run(
            "ping",
            "-c",
            "16",
            "-l",
            "8",
            "-i",
            "0.05",
            "-s",
            "1000",
            "-W",
            "2",
            "198.19.2.1",
            timeout=30,
        )
        ra = finish_side(hosts.a, pa)
        rb = finish_side(hosts.b, pb)
    assert ra["out"]["packets"] == 32 and rb["in"]["packets"] == 32
    assert ra["stats"]["tx_errors"] == 0 and rb["stats"]["malformed"] == 0


SINK = """
import hashlib, socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
s.bind((sys.argv[1], 5001))
s.listen(1)
print("listening", flush=True)
c, _ = s.accept()
h, n = hashlib.sha256(), 0
while d := c.recv(1 << 20):
    h.update(d)
    n += len(d)
print(n, h.hexdigest(), flush=True)
"""

SOURCE = """
import hashlib, random, socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
data = random.Random(7).randbytes(24 << 20)
c = socket.create_connection((sys.argv[1], 5001), timeout=20)
c.sendall(data)
c.close()
print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
"""


@pytest.mark.parametrize("dst", ["198.19.2.1", "2001:2:0:2::1"])
def test_tcp_stream_intact_through_coalesced_tun_writes(dst: str) -> None:
    """TUN devices with IFF_VNET_HDR: A reads TCP super-packets (TSO) and cuts them, B
    writes runs of decrypted TCP segments as single GSO packets. 24 MiB cross byte for
    byte (sha256 on both ends), and both offloads ran."""
    with TwoHosts.create("dp") as hosts:
        a_cfg, b_cfg = side_configs(hosts, "aes256gcm16")
        a_cfg["vnet"] = b_cfg["vnet"] = True
        pa = start_side(hosts.a, a_cfg)
        pb = start_side(hosts.b, b_cfg)
        sink = hosts.b.popen(sys.executable, "-c", SINK, dst, stdout=subprocess.PIPE)
        assert sink.stdout is not None
        assert sink.stdout.readline().strip() == b"listening"
        sent = hosts.a.run(sys.executable, "-c", SOURCE, dst, timeout=60).stdout.split()
        assert sink.wait(timeout=30) == 0
        received = sink.stdout.read().split()
        ra = finish_side(hosts.a, pa)
        rb = finish_side(hosts.b, pb)
    assert [x.decode() for x in received] == sent
    assert int(sent[0]) == 24 << 20
    assert ra["stats"]["tun_tso"] > 100  # A read TCP super-packets and cut them
    assert rb["stats"]["tun_gro"] > 1000  # most segments went in coalesced writes
    assert ra["stats"]["tun_errors"] == rb["stats"]["tun_errors"] == 0


def test_capture_shows_only_esp_in_udp(tmp_path: Path) -> None:
    """On the wire between the namespaces there is only ESP in UDP/4500 (and link-local
    chatter): the ping payload pattern never appears in clear."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import rdpcap

    pcap = tmp_path / "veth.pcap"
    with TwoHosts.create("dp") as hosts:
        a_cfg, b_cfg = side_configs(hosts, "aes256gcm16")
        a_cfg["vnet"] = b_cfg["vnet"] = True
        pa = start_side(hosts.a, a_cfg)
        pb = start_side(hosts.b, b_cfg)
        dump = hosts.b.popen(
            "tcpdump",
            "-i",
            "veth-b",
            "-nn",
            "--immediate-mode",
            "-U",
            "-Z",
            "root",
            "-w",
            str(pcap),
            stderr=subprocess.PIPE,
        )
        assert dump.stderr is not None
        dump.stderr.readline()  # "listening on veth-b ..."
        for dst in ("198.19.2.1", "2001:2:0:2::1"):
            hosts.a.run("ping", "-c", "5", "-i", "0.05", "-p", "c0ffee11", "-W", "2", dst)
        # 20 ESP-in-UDP frames of 160..200 bytes went by; most are on disk by now
        assert wait_for(lambda: pcap.stat().st_size > 3000, timeout=5)
        hosts.b.stop(dump)
        finish_side(hosts.a, pa)
        finish_side(hosts.b, pb)
    packets = rdpcap(str(pcap))
    outer = [p for p in packets if IP in p]
    assert len(outer) >= 10  # > 3000 bytes of packets of < 200 bytes (20 were sent)
    assert all(UDP in p and 4500 in (p[UDP].sport, p[UDP].dport) for p in outer)
    # only neighbour discovery (from link-local addresses or, during DAD, from ::)
    assert all(p[IPv6].src == "::" or p[IPv6].src.startswith("fe80") for p in packets if IPv6 in p)
    assert b"\xc0\xff\xee\x11" * 2 not in pcap.read_bytes()
