"""NAT traversal with a real NAT (RFC 7296 §2.23, RFC 3948): an ``espfast up`` road
warrior behind an nftables-masquerade router namespace, its gateway outside. The tunnel
comes up through the NAT (both ends see it), the client keeps its mapping with NAT
keepalives, and when the router forgets every mapping mid-flow (conntrack flushed, new
mappings from another port range) the tunnel carries on: the client notices the new
mapping with MOBIKE's NAT detection in its liveness checks (RFC 4555 §3.8) and says so
with UPDATE_SA_ADDRESSES, and the gateway points the SA at the new mapping; without
MOBIKE the gateway follows the client's authenticated liveness check (§2.23). The same
IKE SA throughout."""

from __future__ import annotations

from pathlib import Path

import pytest
from updaemon import client_conf, document, gateway_conf, packets_in, ping, status

from espfast.netns import ThreeHosts, wait_for
from espfast.static import start_in, write_private
from espfast.tools.mobilitynet import masquerade, remap
from espfast.tools.udpflow import flow_in_background, longest_gap, tally

PSK = "a pre-shared key long enough for the NAT traversal test"
AUTH = f'psk = "{PSK}"'
GW_NET, VIP = "198.19.2.1", "198.19.100.1"
COUNT, INTERVAL = 1500, 0.01  # a 15 s flow from the gateway to the client's virtual IP


def configs(hosts: ThreeHosts, mobike: bool) -> tuple[str, str]:
    gw = gateway_conf(listen=hosts.addr_b, local_id="gw.nat.test", auth=AUTH,
                      pool="198.19.100.0/24", dns="198.19.2.53", inner=f"{GW_NET}/24",
                      local_ts="198.19.2.0/24")  # fmt: skip
    client = client_conf(listen=hosts.addr_a, gateway=hosts.addr_b, local_id="carol@nat.test",
                         remote_id="gw.nat.test", auth=AUTH, remote_ts="198.19.2.0/24")  # fmt: skip
    client = client.replace("listen = ", "keepalive = 1\nlisten = ", 1)
    client = client.replace(f"{AUTH}\n", f"{AUTH}\ndpd_delay = 2\nmobike = {str(mobike).lower()}\n")
    return gw, client


@pytest.mark.parametrize("mobike", [True, False], ids=["mobike", "rfc7296"])
def test_tunnel_through_nat_survives_a_new_mapping(tmp_path: Path, mobike: bool) -> None:
    with ThreeHosts.create("nat") as hosts:
        masquerade(hosts.r, hosts.veth_rb, "20000-20999")
        gw_text, client_text = configs(hosts, mobike)
        gw = start_in(hosts.b, write_private(tmp_path / "gw.toml", gw_text), "-v", command="up")
        client = start_in(hosts.a, write_private(tmp_path / "c.toml", client_text), "-v",
                          command="up")  # fmt: skip
        try:
            assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=20)
            (ike_c,) = status(hosts.a)
            (ike_g,) = status(hosts.b)
            # Both ends saw the NAT in front of the client (the NAT-D hashes; each end
            # also fakes its own SOURCE hash to force UDP encapsulation, so "a NAT in
            # front of the peer" is always seen); the gateway sees the router's address
            # and a port from the range; both moved to 4500.
            assert ike_c["nat_local"] and ike_g["nat_remote"], (ike_c, ike_g)
            assert not ike_g["nat_local"], ike_g
            assert ike_c["mobike"] is ike_g["mobike"] is mobike
            addr, port = ike_g["remote_addr"].rsplit(":", 1)
            assert addr == hosts.addr_rb and 20000 <= int(port) <= 20999, ike_g
            assert ike_c["remote_addr"] == f"{hosts.addr_b}:4500"
            # NAT keepalives from the client, every second here, reach the gateway.
            assert wait_for(lambda: document(hosts.b)["daemon"]["dataplane"]["keepalives"] >= 2,
                            timeout=10), document(hosts.b)  # fmt: skip
            assert document(hosts.a)["daemon"]["counters"]["keepalives_sent"] >= 2

            # A flow from the gateway to the client; a second in, the NAT forgets us.
            with flow_in_background(hosts.b, hosts.a, VIP, count=COUNT, interval=INTERVAL) as got:
                assert wait_for(lambda: packets_in(hosts.a) >= 50, timeout=10)
                remap(hosts.r, hosts.veth_rb, "30000-30999")
            lost, dup, _ = tally(got, COUNT)
            gap = longest_gap(lost)
            print(f"{'MOBIKE' if mobike else 'RFC 7296'}: {COUNT} datagrams every "
                  f"{INTERVAL * 1000:.0f} ms: lost {len(lost)}, longest gap {gap} "
                  f"({gap * INTERVAL:.2f} s)")  # fmt: skip
            # The tunnel carried on: the last part of the flow all arrived.
            assert lost and max(lost) < COUNT - 200, lost[-20:]
            assert dup == 0
            (after_g,) = status(hosts.b)
            assert len(status(hosts.a)) == 1  # the client still has its one IKE SA
            addr, port = after_g["remote_addr"].rsplit(":", 1)
            assert addr == hosts.addr_rb and 30000 <= int(port) <= 30999, after_g
            # The same IKE SA (no new IKE_SA_INIT): same SPIs, one move.
            assert (after_g["spi_i"], after_g["spi_r"]) == (ike_g["spi_i"], ike_g["spi_r"])
            # The gateway followed. (The client's own count moves only if it knew its old
            # mapping, which a NAT may forget before its first liveness check learned it.)
            assert after_g["moves"] >= 1
            assert ping(hosts.a, GW_NET)
        finally:
            _, _, cerr = client.stop()
            _, _, gerr = gw.stop()
        print(cerr[-2000:], gerr[-2000:])
