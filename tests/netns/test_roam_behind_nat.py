"""Roaming behind a NAT (RFC 4555 §3.5 with §3.8): an ``espfast up`` road warrior with two
uplinks ('wifi' and 'cell', espfast/tools/mobilitynet.py) whose router masquerades both
towards the gateway, as a phone's wifi and cellular networks each do. Every path the
client takes reaches the gateway as the router's address, so a move changes only the
public port (each uplink has its own mapping, kept while the client is away): the client
moves with UPDATE_SA_ADDRESSES from its new local address, the gateway sees the new
mapping, checks it (COOKIE2) and follows. A sequence-numbered UDP flow from the gateway
to the client carries on across wifi -> cell -> wifi -> cell, on one IKE SA; the client
keeps seeing the NAT."""

from __future__ import annotations

from pathlib import Path

from updaemon import packets_in, ping, road_warrior_pair, start_pair, status

from espfast.netns import wait_for
from espfast.tools.mobilitynet import CELL, GW, masquerade, uplinks
from espfast.tools.udpflow import check_loss, flow_in_background

PSK = "a pre-shared key long enough for the roaming-behind-NAT test"
AUTH = f'psk = "{PSK}"'
GW_NET, VIP = "198.19.2.1", "198.19.100.1"
ROUTER = "198.18.1.254"  # the router's address towards the gateway: every mapping's
COUNT, INTERVAL = 2000, 0.01  # a 20 s flow, whatever the steps take
MAX_LOST = 600  # three moves, each one route change and an update round trip


def test_client_roams_behind_a_nat(tmp_path: Path) -> None:
    gw_text, cl_text = road_warrior_pair("roamnat", gateway=GW, client_listen="0.0.0.0",
                                         auth=AUTH, keepalive=1)  # fmt: skip
    with uplinks() as hosts:
        masquerade(hosts.r, "veth-rg", "20000-29999")
        gw, client = start_pair(tmp_path, (hosts.g, gw_text), (hosts.c, cl_text))
        try:
            assert wait_for(lambda: ping(hosts.c, GW_NET), timeout=20)
            (first,) = status(hosts.g)
            (first_c,) = status(hosts.c)
            assert first["remote_addr"].startswith(f"{ROUTER}:"), first
            assert first_c["nat_local"] and first_c["mobike"], first_c
            ports = [first["remote_addr"]]

            def moved_on() -> bool:
                (sa,) = status(hosts.g)
                if sa["remote_addr"] == ports[-1]:
                    return False
                ports.append(sa["remote_addr"])
                return True

            with flow_in_background(hosts.g, hosts.c, VIP, count=COUNT, interval=INTERVAL) as got:
                assert wait_for(lambda: packets_in(hosts.c) >= 50, timeout=10)
                for step in (hosts.wifi_down, hosts.prefer_wifi, hosts.wifi_down):
                    step()
                    assert wait_for(moved_on, timeout=10), (status(hosts.g), status(hosts.c))
                    base = packets_in(hosts.c)  # then let the flow run a little there
                    assert wait_for(lambda b=base: packets_in(hosts.c) >= b + 50, timeout=10), \
                        (status(hosts.g), status(hosts.c))  # fmt: skip
            check_loss(got, COUNT, INTERVAL, "roaming behind a NAT wifi -> cell -> wifi -> cell",
                       max_lost=MAX_LOST)  # fmt: skip
            (after,) = status(hosts.g)
            (after_c,) = status(hosts.c)
            assert (after["spi_i"], after["spi_r"]) == (first["spi_i"], first["spi_r"])
            assert all(p.startswith(f"{ROUTER}:") for p in ports), ports
            # Each uplink has its own mapping, which the router keeps while the client is
            # on the other: back on wifi, the wifi mapping again.
            assert ports[0] == ports[2] != ports[1] == ports[3], ports
            assert after["moves"] == 3 and after_c["moves"] == 3, (after, after_c)
            assert after_c["local_addr"] == f"{CELL}:4500" and after_c["nat_local"], after_c
            assert ping(hosts.c, GW_NET)
        finally:
            _, _, cerr = client.stop()
            _, _, gerr = gw.stop()
            print(cerr[-3000:], gerr[-3000:])
