"""MOBIKE path probing (RFC 4555 §3.5, §3.6): a road warrior with two uplinks (wifi and
cell) and a gateway with two addresses, GW reached over wifi, GW2 over cell
(espfast/tools/mobilitynet.two_paths). Both listen on the wildcard address, so each tells
the other its second address in IKE_AUTH (N(ADDITIONAL_IP4_ADDRESS)), and the client
announces a third when it gets one (an INFORMATIONAL). During a
sequence-numbered UDP flow from the gateway to the client's virtual IP, the router starts
dropping everything on the wifi side: no link goes down, no netlink event fires. The
client's liveness check goes unanswered; its retransmissions also go to GW2 (over cell),
the gateway answers there, and the client moves the same IKE SA with UPDATE_SA_ADDRESSES
(the gateway's return routability check passes): the tunnel carries on over cell. The
datagrams lost are printed (espfast/tools/udpflow.py)."""

from __future__ import annotations

from pathlib import Path

from updaemon import client_conf, gateway_conf, ping, status

from espfast.netns import Namespace, wait_for
from espfast.static import start_in, write_private
from espfast.tools.mobilitynet import CELL, GW, GW2, WIFI, two_paths
from espfast.tools.udpflow import flow_in_background, longest_gap, tally

PSK = "a pre-shared key long enough for the path probing test"
AUTH = f'psk = "{PSK}"'
GW_NET, VIP = "198.19.2.1", "198.19.100.1"
CELL2 = "198.18.20.2"  # a second address on the client's cell uplink, added later
COUNT, INTERVAL = 2000, 0.01  # 20 s at most, whatever the steps take


def test_blackholed_path_moves_to_the_other_uplink(tmp_path: Path) -> None:
    gw_text = gateway_conf(listen="0.0.0.0", local_id="gw.probe.test", auth=AUTH,
                           pool="198.19.100.0/24", dns="198.19.2.53", inner=f"{GW_NET}/24",
                           local_ts="198.19.2.0/24")  # fmt: skip
    cl_text = client_conf(listen="0.0.0.0", gateway=GW, local_id="erin@probe.test",
                          remote_id="gw.probe.test", auth=AUTH,
                          remote_ts="198.19.2.0/24")  # fmt: skip
    # A liveness check after a second of silence; about 10 s of retransmissions in all.
    cl_text = cl_text.replace(f"{AUTH}\n", f"{AUTH}\ndpd_delay = 1\ndpd_timeout = 10\n")
    with two_paths() as hosts:
        gw = start_in(hosts.g, write_private(tmp_path / "gw.toml", gw_text), "-v", command="up")
        client = start_in(hosts.c, write_private(tmp_path / "c.toml", cl_text), "-v",
                          command="up")  # fmt: skip
        try:
            assert wait_for(lambda: ping(hosts.c, GW_NET), timeout=20)
            (first,) = status(hosts.g)
            (first_c,) = status(hosts.c)
            assert first["remote_addr"] == f"{WIFI}:4500", first
            assert first_c["remote_addr"] == f"{GW}:4500", first_c
            assert first["mobike"] and first_c["mobike"]
            assert first["peer_addresses"] == [CELL] and first_c["peer_addresses"] == [GW2]
            # A new address on the client: it tells the gateway (INFORMATIONAL with its
            # ADDITIONAL_IP4_ADDRESS list), nothing moves.
            hosts.c.run("ip", "addr", "add", f"{CELL2}/24", "dev", "cell")
            assert wait_for(lambda: _peer_addresses(hosts.g) == [CELL, CELL2], timeout=10), \
                status(hosts.g)  # fmt: skip
            with flow_in_background(hosts.g, hosts.c, VIP, count=COUNT, interval=INTERVAL) as got:
                assert wait_for(lambda: _packets_in(hosts.c) >= 50, timeout=10)
                hosts.blackhole_wifi()
                assert wait_for(lambda: _at(hosts.g, CELL) and _at(hosts.c, GW2), timeout=20), \
                    (status(hosts.g), status(hosts.c))  # fmt: skip
                base = _packets_in(hosts.c)  # the flow runs on over cell
                assert wait_for(lambda: _packets_in(hosts.c) >= base + 100, timeout=10)
            lost, dup, _ = tally(got, COUNT)
            gap = longest_gap(lost)
            print(f"wifi blackholed: {COUNT} datagrams every {INTERVAL * 1000:.0f} ms: lost "
                  f"{len(lost)}, longest gap {gap} ({gap * INTERVAL:.2f} s)")  # fmt: skip
            assert dup == 0
            assert not lost or max(lost) < COUNT - 100, lost[-20:]
            (after,) = status(hosts.g)
            (after_c,) = status(hosts.c)
            # The same IKE SA, moved once; each side knows the other's second address.
            assert (after["spi_i"], after["spi_r"]) == (first["spi_i"], first["spi_r"])
            assert after["moves"] == 1 and after_c["moves"] == 1, (after, after_c)
            assert after_c["local_addr"] == f"{CELL}:4500", after_c
            assert after["peer_addresses"] == [WIFI, CELL2]  # told in the update
            assert ping(hosts.c, GW_NET)
        finally:
            _, _, cerr = client.stop()
            _, _, gerr = gw.stop()
            print(cerr[-4000:], gerr[-3000:])


def _packets_in(ns: Namespace) -> int:
    return sum(c["packets_in"] for sa in status(ns) for c in sa["child_sas"])


def _at(ns: Namespace, addr: str) -> bool:
    sas = status(ns)
    return len(sas) == 1 and sas[0]["remote_addr"] == f"{addr}:4500"


def _peer_addresses(ns: Namespace) -> list[str]:
    sas = status(ns)
    return list(sas[0].get("peer_addresses", [])) if len(sas) == 1 else []
