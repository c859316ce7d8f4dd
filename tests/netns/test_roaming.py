"""Roaming with MOBIKE (RFC 4555), the client the initiator: an ``espfast up`` road warrior
with two uplinks ('wifi' and 'cell': two veth pairs on two subnets to a router, wifi the
preferred route) listens on the wildcard address and follows its addresses and routes
through rtnetlink events (espfast/mobility.py). During a sequence-numbered UDP flow from
the gateway to the client's virtual IP, the wifi link goes down (the path moves to cell),
comes back (back to wifi) and goes down again. Each time the client sends
UPDATE_SA_ADDRESSES from its new address and the gateway re-points the IKE SA and its
Child SA: the same IKE SA throughout (no new IKE_SA_INIT on the wire), the flow carries
on; the datagrams lost and the longest gap are printed."""

from __future__ import annotations

from pathlib import Path

from updaemon import capture, ike_sa_init_count, ping, road_warrior_pair, start_pair, status

from espfast.netns import Namespace, wait_for
from espfast.tools.mobilitynet import CELL, GW, WIFI, uplinks
from espfast.tools.udpflow import flow_in_background, longest_gap, tally

PSK = "a pre-shared key long enough for the roaming test"
AUTH = f'psk = "{PSK}"'
GW_NET, VIP = "198.19.2.1", "198.19.100.1"
COUNT, INTERVAL = 3000, 0.01  # 30 s at most, whatever the steps take


def test_client_roams_between_uplinks_on_one_ike_sa(tmp_path: Path) -> None:
    gw_text, cl_text = road_warrior_pair("roam", gateway=GW, client_listen="0.0.0.0", auth=AUTH)
    pcap = tmp_path / "gw.pcap"
    with uplinks() as hosts:
        dump = capture(hosts.g, "veth-g", pcap, "udp port 500")
        gw, client = start_pair(tmp_path, (hosts.g, gw_text), (hosts.c, cl_text))
        try:
            assert wait_for(lambda: ping(hosts.c, GW_NET), timeout=20)
            (first,) = status(hosts.g)
            assert first["remote_addr"].startswith(f"{WIFI}:"), first
            assert first["mobike"]
            init_packets = ike_sa_init_count(pcap)

            with flow_in_background(hosts.g, hosts.c, VIP, count=COUNT, interval=INTERVAL) as got:
                assert wait_for(lambda: _packets_in(hosts.c) >= 50, timeout=10)
                for step, expect in ((hosts.wifi_down, CELL), (hosts.prefer_wifi, WIFI),
                                     (hosts.wifi_down, CELL)):  # fmt: skip
                    step()
                    assert wait_for(lambda e=expect: _gateway_sees(hosts.g, e), timeout=10), \
                        status(hosts.g)  # fmt: skip
                    base = _packets_in(hosts.c)  # then let the flow run a little there
                    assert wait_for(lambda b=base: _packets_in(hosts.c) >= b + 50, timeout=10)
            lost, dup, _ = tally(got, COUNT)
            gap = longest_gap(lost)
            print(f"roaming wifi -> cell -> wifi -> cell: {COUNT} datagrams every "
                  f"{INTERVAL * 1000:.0f} ms: lost {len(lost)}, longest gap {gap} "
                  f"({gap * INTERVAL:.2f} s)")  # fmt: skip
            assert dup == 0
            assert not lost or max(lost) < COUNT - 100, lost[-20:]
            (after,) = status(hosts.g)
            (after_c,) = status(hosts.c)
            assert (after["spi_i"], after["spi_r"]) == (first["spi_i"], first["spi_r"])
            assert after["moves"] == 3 and after_c["moves"] == 3, (after, after_c)
            assert after_c["local_addr"] == f"{CELL}:4500", after_c
            assert ping(hosts.c, GW_NET)
        finally:
            _, _, cerr = client.stop()
            _, _, gerr = gw.stop()
            hosts.g.stop(dump)
            print(cerr[-3000:], gerr[-3000:])
        # No new IKE_SA_INIT on the wire after the first.
        assert ike_sa_init_count(pcap) == init_packets > 0


def _packets_in(ns: Namespace) -> int:
    return sum(c["packets_in"] for sa in status(ns) for c in sa["child_sas"])


def _gateway_sees(g: Namespace, addr: str) -> bool:
    sas = status(g)
    return len(sas) == 1 and sas[0]["remote_addr"].startswith(f"{addr}:")
