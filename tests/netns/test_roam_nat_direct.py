"""Roaming into and out of a NAT (RFC 4555 §3.5 with §3.8, RFC 7296 §2.23): an ``espfast
up`` road warrior with two uplinks (espfast/tools/mobilitynet.py) whose wifi reaches the
gateway directly while the router masquerades what comes in on cell, as a phone at home
(wifi, a routed address) and on a carrier's NAT (cell) does. Both ends have ``encap =
no``, so the framing follows the path: plain ESP (IP protocol 50) on wifi, ESP in UDP
4500 on cell. During an iperf3 TCP run beside a sequence-numbered UDP flow each way, the
client moves wifi (direct) -> cell (NAT) -> wifi -> cell: each UPDATE_SA_ADDRESSES carries
NAT detection for the new path, and both ends' NAT state (``nat_remote`` on the gateway,
``nat_local`` on the client) and the Child SAs' framing follow it. The same IKE SA
throughout (no new IKE_SA_INIT on the wire); the datagrams lost and the longest gap are
printed."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from updaemon import (
    capture,
    ike_sa_init_count,
    packets_in,
    ping,
    road_warrior_pair,
    start_pair,
    status,
)

from espfast.netns import Namespace, run, wait_for
from espfast.tools.mobilitynet import CELL, GW, TABLE, WIFI, uplinks
from espfast.tools.udpflow import Flows, check_loss, flow_with_tcp

PSK = "a pre-shared key long enough for the NAT-or-direct roaming test"
AUTH = f'psk = "{PSK}"\nencap = "no"'
GW_NET, VIP = "198.19.2.1", "198.19.100.1"
ROUTER = "198.18.1.254"  # the router's address towards the gateway: the cell path's source
COUNT, INTERVAL = 2000, 0.01  # each way, a 20 s flow whatever the steps take
TCP_SECONDS, TCP_RATE = 20, "10M"
MAX_LOST = 600  # three moves, each one route change and an update round trip

# Only what comes in on cell and leaves towards the gateway is translated: wifi stays direct.
CELL_NAT = f"""
table ip {TABLE} {{
    chain post {{
        type nat hook postrouting priority srcnat; policy accept;
        iifname "cell-r" oifname "veth-rg" meta l4proto udp masquerade to :20000-29999
        iifname "cell-r" oifname "veth-rg" masquerade
    }}
}}
"""


def test_client_roams_between_a_nat_and_a_direct_path(tmp_path: Path) -> None:
    gw_text, cl_text = road_warrior_pair("roamnd", gateway=GW, client_listen="0.0.0.0",
                                         auth=AUTH, keepalive=1)  # fmt: skip
    pcap, esp_pcap = tmp_path / "gw.pcap", tmp_path / "esp.pcap"
    with uplinks() as hosts:
        run(hosts.r.argv("nft", "-f", "-"), input=CELL_NAT.encode())
        dump = capture(hosts.g, "veth-g", pcap, "udp port 500")
        # headers only: how ESP was framed on each path
        esp_dump = capture(hosts.g, "veth-g", esp_pcap, "esp or udp port 4500", snaplen=64)
        gw, client = start_pair(tmp_path, (hosts.g, gw_text), (hosts.c, cl_text))
        try:
            assert wait_for(lambda: ping(hosts.c, GW_NET), timeout=20)
            (first,) = status(hosts.g)
            (first_c,) = status(hosts.c)
            assert first["remote_addr"].startswith(f"{WIFI}:"), first
            assert not first["nat_remote"] and not first_c["nat_local"], (first, first_c)
            assert first["mobike"] and first_c["mobike"]
            init_packets = ike_sa_init_count(pcap)

            result: list[Flows] = []
            runner = threading.Thread(target=lambda: result.append(flow_with_tcp(
                hosts.g, hosts.c, GW_NET, VIP, count=COUNT, interval=INTERVAL,
                tcp_seconds=TCP_SECONDS, tcp_rate=TCP_RATE)))  # fmt: skip
            runner.start()
            try:
                assert wait_for(lambda: packets_in(hosts.c) >= 200, timeout=15)
                for step, where, nat in ((hosts.wifi_down, ROUTER, True),
                                         (hosts.prefer_wifi, WIFI, False),
                                         (hosts.wifi_down, ROUTER, True)):  # fmt: skip
                    step()
                    assert wait_for(lambda w=where, n=nat: _there(hosts.g, hosts.c, w, n),
                                    timeout=10), (status(hosts.g), status(hosts.c))  # fmt: skip
                    base = packets_in(hosts.c)  # then let the flows run a little there
                    assert wait_for(lambda b=base: packets_in(hosts.c) >= b + 100, timeout=10), \
                        (status(hosts.g), status(hosts.c))  # fmt: skip
            finally:
                runner.join(TCP_SECONDS + COUNT * INTERVAL * 3 + 120)
            assert not runner.is_alive(), "the flows did not end"
            (flows,) = result
            for way, got in (("gateway -> client", flows.forward),
                             ("client -> gateway", flows.backward)):  # fmt: skip
                check_loss(got, COUNT, INTERVAL,
                           f"roaming direct/NAT wifi -> cell -> wifi -> cell, {way}, "
                           f"beside iperf3 at {TCP_RATE}", max_lost=MAX_LOST)  # fmt: skip
            assert "error" not in flows.iperf, flows.iperf.get("error")
            sent = flows.iperf["end"]["sum_received"]["bytes"]
            print(f"iperf3 TCP beside them: {sent * 8 / TCP_SECONDS / 1e6:.1f} Mbit/s received")
            assert sent > 1_000_000, flows.iperf["end"]
            (after,) = status(hosts.g)
            (after_c,) = status(hosts.c)
            assert (after["spi_i"], after["spi_r"]) == (first["spi_i"], first["spi_r"])
            assert after["moves"] == 3 and after_c["moves"] == 3, (after, after_c)
            assert after_c["local_addr"] == f"{CELL}:4500" and after_c["nat_local"], after_c
            assert after["remote_addr"].startswith(f"{ROUTER}:") and after["nat_remote"], after
            assert ping(hosts.c, GW_NET)
        finally:
            _, _, cerr = client.stop()
            _, _, gerr = gw.stop()
            hosts.g.stop(dump)
            hosts.g.stop(esp_dump)
            print(cerr[-3000:], gerr[-3000:])
        # No new IKE_SA_INIT on the wire after the first.
        assert ike_sa_init_count(pcap) == init_packets > 0
        # Plain ESP both ways on the direct path, ESP in UDP both ways through the NAT.
        framed = {what: _count(hosts.g, esp_pcap, what) for what in (
            f"esp and src {WIFI}", f"esp and dst {WIFI}",
            f"udp and src {ROUTER} and udp[8:4] != 0", f"udp and dst {ROUTER} and udp[8:4] != 0",
        )}  # fmt: skip
        print(f"ESP packets on the gateway's side: {framed}")
        assert all(n > 100 for n in framed.values()), framed


def _there(g: Namespace, c: Namespace, where: str, nat: bool) -> bool:
    """The gateway sees the client at ``where`` (the router for cell), and each end's NAT
    state says whether a NAT is between them (the gateway's nat_remote, the client's
    nat_local)."""
    sas: list[dict[str, Any]] = status(g)
    sas_c: list[dict[str, Any]] = status(c)
    return (len(sas) == 1 and len(sas_c) == 1
            and sas[0]["remote_addr"].startswith(f"{where}:")
            and sas[0]["nat_remote"] is nat and sas_c[0]["nat_local"] is nat)  # fmt: skip


def _count(ns: Namespace, pcap: Path, expression: str) -> int:
    """Packets in ``pcap`` that match ``expression`` (a pcap filter)."""
    out = ns.run("tcpdump", "-r", str(pcap), "-n", "-q", expression, check=False).stdout
    return len(out.splitlines())
