"""NAT rebinding is not a way to steal an SA (the mobility issue's security item): an
attacker that captured a road warrior's IKE and ESP datagrams sends them again from an
address of its own. The gateway follows a peer to a new address only on an
authenticated request it has not seen before (RFC 7296 §2.23; with MOBIKE only on
UPDATE_SA_ADDRESSES), so replays move nothing: the IKE SA keeps its address, the
answers to replayed requests go to the real peer, ESP replays are counted drops, and
the tunnel keeps working."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from espfast.netns import ThreeHosts, wait_for
from espfast.static import start_in, write_private
from tests.netns.updaemon import client_conf, gateway_conf, ping, status

PSK = "a pre-shared key long enough for the rebinding attack test"
AUTH = f'psk = "{PSK}"'
GW_NET = "198.19.2.1"
INFORMATIONAL = 37


def captured(pcap: Path, src: str) -> tuple[list[tuple[int, bytes]], list[bytes]]:
    """What ``src`` sent: its IKE requests ((port, datagram as sent)) and its ESP."""
    from scapy.layers.inet import IP, UDP
    from scapy.utils import rdpcap

    ike: list[tuple[int, bytes]] = []
    esp: list[bytes] = []
    for pkt in rdpcap(str(pcap)):
        if IP not in pkt or UDP not in pkt or pkt[IP].src != src:
            continue
        data, port = bytes(pkt[UDP].payload), int(pkt[UDP].dport)
        msg = data[4:] if port == 4500 and data[:4] == b"\0\0\0\0" else data
        if port == 4500 and msg is data:
            if len(data) > 16:
                esp.append(data)
        elif len(msg) >= 28 and msg[18] == INFORMATIONAL and not msg[19] & 0x20:
            ike.append((port, data))
    return ike, esp


def sent_to(pcap: Path, dst: str) -> int:
    from scapy.layers.inet import IP, UDP
    from scapy.utils import rdpcap

    return sum(1 for p in rdpcap(str(pcap)) if IP in p and UDP in p and p[IP].dst == dst)


def test_replayed_ike_and_esp_from_elsewhere_move_nothing(tmp_path: Path) -> None:
    pcap = tmp_path / "wire.pcap"
    with ThreeHosts.create("rebind") as hosts:
        gw_text = gateway_conf(listen=hosts.addr_b, local_id="gw.rebind.test", auth=AUTH,
                               pool="198.19.100.0/24", dns="198.19.2.53", inner=f"{GW_NET}/24",
                               local_ts="198.19.2.0/24")  # fmt: skip
        # Without MOBIKE: the gateway follows authenticated requests from a new address.
        cl_text = client_conf(
            listen=hosts.addr_a,
            gateway=hosts.addr_b,
            local_id="eve@x.test",
            remote_id="gw.rebind.test",
            auth=AUTH,
            remote_ts="198.19.2.0/24",
        )
        cl_text = cl_text.replace(f"{AUTH}\n", f"{AUTH}\ndpd_delay = 1\nmobike = false\n")
        dump = hosts.b.popen(
            "tcpdump", "-i", "veth-b", "-n", "-U", "--immediate-mode", "-s", "0", "-w", str(pcap),
            "udp port 500 or udp port 4500",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        gw = start_in(hosts.b, write_private(tmp_path / "gw.toml", gw_text), command="up")
        client = start_in(hosts.a, write_private(tmp_path / "c.toml", cl_text), command="up")
        try:
            assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=20)
            # Liveness checks (the client hears nothing for a second) and some ESP.
            assert wait_for(lambda: len(captured(pcap, hosts.addr_a)[0]) >= 2, timeout=20)
            (before,) = status(hosts.b)
            ike, esp = captured(pcap, hosts.addr_a)
            assert esp
            # The attacker, at the router's outside address, sends them all again.
            attack = hosts.r.popen(
                sys.executable, "-c",
                "import socket, sys\n"
                "socks = {}\n"
                "for arg in sys.argv[1:]:\n"
                "    port, data = arg.split(':')\n"
                "    s = socks.setdefault(port, socket.socket(socket.AF_INET, socket.SOCK_DGRAM))\n"
                f"    s.sendto(bytes.fromhex(data), ({hosts.addr_b!r}, int(port)))\n",
                *[f"{port}:{data.hex()}" for port, data in ike * 3],
                *[f"4500:{data.hex()}" for data in esp],
            )  # fmt: skip
            assert attack.wait(timeout=30) == 0
            assert ping(hosts.a, GW_NET)  # the tunnel still works, both ways
            (after,) = status(hosts.b)
            assert after["remote_addr"] == before["remote_addr"] == f"{hosts.addr_a}:4500"
            assert after["moves"] == 0
            assert (after["spi_i"], after["spi_r"]) == (before["spi_i"], before["spi_r"])
            # Nothing went to the attacker: answers to replayed requests go to the peer.
            assert wait_for(lambda: len(captured(pcap, hosts.addr_b)[1]) > 0, timeout=5)
            assert sent_to(pcap, hosts.addr_rb) == 0
        finally:
            hosts.b.stop(dump)
            client.stop()
            gw.stop()
