"""Following a client on its authenticated ESP (``follow_esp = "yes"``, as WireGuard does;
off by default): an ``espfast up`` road warrior behind an nftables-masquerade router,
without MOBIKE and without liveness checks, so that no IKE message would tell the
gateway that the NAT mapped it anew. During a flow from the gateway to the client's
virtual IP the router forgets every mapping; the client's next ESP (a ping) arrives
from a new port, passes its ICV and the replay window, the dataplane reports the new
source (csrc/worker.c) and the gateway re-points the Child SA and the IKE SA there: the
flow carries on. The datagrams lost are printed (espfast/tools/udpflow.py)."""

from __future__ import annotations

from pathlib import Path

from updaemon import client_conf, gateway_conf, ping, status

from espfast.netns import Namespace, ThreeHosts, wait_for
from espfast.static import start_in, write_private
from espfast.tools.mobilitynet import masquerade, remap
from espfast.tools.udpflow import flow_in_background, longest_gap, tally
from tests.netns.test_nat_mobility import document

PSK = "a pre-shared key long enough for the follow-ESP test"
AUTH = f'psk = "{PSK}"'
GW_NET, VIP = "198.19.2.1", "198.19.100.1"
COUNT, INTERVAL = 1500, 0.01


def test_gateway_follows_the_clients_esp_to_a_new_mapping(tmp_path: Path) -> None:
    with ThreeHosts.create("ma") as hosts:
        masquerade(hosts.r, hosts.veth_rb, "20000-20999")
        gw_text = gateway_conf(listen=hosts.addr_b, local_id="gw.follow.test", auth=AUTH,
                               pool="198.19.100.0/24", dns="198.19.2.53", inner=f"{GW_NET}/24",
                               local_ts="198.19.2.0/24")  # fmt: skip
        gw_text = gw_text.replace(f"{AUTH}\n", f'{AUTH}\nfollow_esp = "yes"\n')
        cl_text = client_conf(listen=hosts.addr_a, gateway=hosts.addr_b,
                              local_id="frank@follow.test", remote_id="gw.follow.test",
                              auth=AUTH, remote_ts="198.19.2.0/24")  # fmt: skip
        cl_text = cl_text.replace(f"{AUTH}\n", f"{AUTH}\ndpd_delay = 0\nmobike = false\n")
        gw = start_in(hosts.b, write_private(tmp_path / "gw.toml", gw_text), "-v", command="up")
        client = start_in(hosts.a, write_private(tmp_path / "c.toml", cl_text), "-v",
                          command="up")  # fmt: skip
        try:
            assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=20)
            (first,) = status(hosts.b)
            _, port = first["remote_addr"].rsplit(":", 1)
            assert 20000 <= int(port) <= 20999, first
            with flow_in_background(hosts.b, hosts.a, VIP, count=COUNT, interval=INTERVAL) as got:
                assert wait_for(lambda: _packets_in(hosts.a) >= 50, timeout=10)
                remap(hosts.r, hosts.veth_rb, "30000-30999")
                # The client's next ESP (the ping) comes from the new mapping.
                assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=10)
                base = _packets_in(hosts.a)
                assert wait_for(lambda: _packets_in(hosts.a) >= base + 50, timeout=10)
            lost, dup, _ = tally(got, COUNT)
            gap = longest_gap(lost)
            print(f"follow_esp: {COUNT} datagrams every {INTERVAL * 1000:.0f} ms: lost "
                  f"{len(lost)}, longest gap {gap} ({gap * INTERVAL:.2f} s)")  # fmt: skip
            assert dup == 0
            assert not lost or max(lost) < COUNT - 100, lost[-20:]
            (after,) = status(hosts.b)
            addr, port = after["remote_addr"].rsplit(":", 1)
            assert addr == hosts.addr_rb and 30000 <= int(port) <= 30999, after
            assert (after["spi_i"], after["spi_r"]) == (first["spi_i"], first["spi_r"])
            assert after["moves"] == 1, after
            assert document(hosts.b)["daemon"]["counters"]["esp_follows"] == 1
        finally:
            _, _, cerr = client.stop()
            _, _, gerr = gw.stop()
            print(cerr[-2000:], gerr[-3000:])


def _packets_in(ns: Namespace) -> int:
    return sum(c["packets_in"] for sa in status(ns) for c in sa["child_sas"])
