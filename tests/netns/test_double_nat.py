"""Both ends behind a NAT (RFC 7296 §2.23, RFC 3948, RFC 4555 §3.8): an ``espfast up`` road
warrior behind a masquerading home router (r1), its ``espfast up`` gateway behind a router
(r2) that forwards UDP 500 and 4500 to it and masquerades what it sends
(espfast/tools/mobilitynet.py ``double_nat``). The tunnel comes up; each end sees the NAT
in front of itself (the NAT-D hashes the other end made for the address it reached us at)
and says so in ``espfast status``; both send NAT keepalives and the other counts them.
During a sequence-numbered UDP flow from the gateway to the client's virtual IP each
router forgets every mapping (its conntrack table flushed; r1 maps the client from
another port range afterwards): the tunnel carries on, on the same IKE SA, with the
datagrams lost and the longest gap printed and bounded."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from updaemon import document, packets_in, ping, road_warrior_pair, start_pair, status

from espfast.netns import Namespace, wait_for
from espfast.static import control_socket_in
from espfast.tools.mobilitynet import double_nat, forget, mappings, remap
from espfast.tools.udpflow import check_loss, flow_in_background

PSK = "a pre-shared key long enough for the double NAT test"
AUTH = f'psk = "{PSK}"'
GW_NET, VIP = "198.19.2.1", "198.19.100.1"
COUNT, INTERVAL = 1500, 0.01  # a 15 s flow at most, from the gateway to the client
MAX_LOST = 600  # 6 s of the flow: a liveness check (2 s) and its update, twice, with room


def test_both_ends_behind_nat(tmp_path: Path) -> None:
    with double_nat("20000-20999") as net:
        gw_text, cl_text = road_warrior_pair("dnat", gateway=net.gw_public, gw_listen=net.gw,
                                             client_listen=net.client, auth=AUTH,
                                             keepalive=1)  # fmt: skip
        cl_text = cl_text.replace(f"{AUTH}\n", f"{AUTH}\ndpd_delay = 2\n")
        gw, client = start_pair(tmp_path, (net.g, gw_text), (net.c, cl_text))
        try:
            assert wait_for(lambda: ping(net.c, GW_NET), timeout=20)
            (ike_c,) = status(net.c)
            (ike_g,) = status(net.g)
            # Each end is behind a NAT and knows it: the hash the other end made of the
            # address it sent to (the client: r2's; the gateway: r1's mapping) is not of
            # our own address. (Each end also fakes its SOURCE hash, so nat_remote is
            # always set; nat_local is the one that proves detection.)
            assert ike_c["nat_local"] and ike_g["nat_local"], (ike_c, ike_g)
            assert ike_c["nat_remote"] and ike_g["nat_remote"], (ike_c, ike_g)
            assert ike_c["mobike"] and ike_g["mobike"]
            # Each sees the other's public side; its own private address.
            assert ike_c["local_addr"] == f"{net.client}:4500", ike_c
            assert ike_c["remote_addr"] == f"{net.gw_public}:4500", ike_c
            assert ike_g["local_addr"] == f"{net.gw}:4500", ike_g
            addr, port = ike_g["remote_addr"].rsplit(":", 1)
            assert addr == net.client_public and 20000 <= int(port) <= 20999, ike_g
            text = net.g.run(sys.executable, "-m", "espfast", "status", "--socket",
                             str(control_socket_in(net.g))).stdout  # fmt: skip
            assert "nat-local,nat-remote,mobike" in text, text
            # NAT keepalives both ways (every second here), each counted by the other.
            docs: list[dict[str, Any]] = []

            def keepalives_both_ways() -> bool:
                # (Sent and received are read at slightly different moments: each end's
                # own count may lag what the other already counted, so wait for both.)
                docs[:] = [document(net.c), document(net.g)]
                return all(d["daemon"]["dataplane"]["keepalives"] >= 2
                           and d["daemon"]["counters"]["keepalives_sent"] >= 2
                           for d in docs)  # fmt: skip

            assert wait_for(keepalives_both_ways, timeout=20), [
                (d["daemon"]["dataplane"]["keepalives"], d["daemon"]["counters"]["keepalives_sent"],
                 d["ike_sas"]) for d in docs
            ]  # fmt: skip

            with flow_in_background(net.g, net.c, VIP, count=COUNT, interval=INTERVAL) as got:
                assert wait_for(lambda: packets_in(net.c) >= 50, timeout=10)
                # The home router forgets us and maps us anew, from another port range.
                remap(net.r1, net.outside, "30000-30999")
                assert wait_for(lambda: _mapped_from(net.g, net.client_public, 30000),
                                timeout=15), status(net.g)  # fmt: skip
                base = packets_in(net.c)
                assert wait_for(lambda: packets_in(net.c) >= base + 100, timeout=10)
                # The gateway's router forgets every mapping (its forwards stay).
                forget(net.r2)
                base = packets_in(net.c)
                assert wait_for(lambda: packets_in(net.c) >= base + 100, timeout=10), \
                    (status(net.c), status(net.g), mappings(net.r1), mappings(net.r2))  # fmt: skip
            check_loss(got, COUNT, INTERVAL, "both ends behind NAT, both routers flushed",
                       max_lost=MAX_LOST)  # fmt: skip
            (after_c,) = status(net.c)
            (after_g,) = status(net.g)
            # The same IKE SA throughout: same SPIs; the client moved once (its new
            # mapping), the gateway followed it once.
            assert (after_g["spi_i"], after_g["spi_r"]) == (ike_g["spi_i"], ike_g["spi_r"])
            assert (after_c["spi_i"], after_c["spi_r"]) == (ike_c["spi_i"], ike_c["spi_r"])
            # (The client's own count moves only if it knew its old mapping: a NAT that
            # forgets it before its first liveness check learned it leaves it at 0.)
            assert after_g["moves"] >= 1, (after_c, after_g)
            assert after_c["nat_local"] and after_g["nat_local"]
            assert ping(net.c, GW_NET)
        finally:
            _, _, cerr = client.stop()
            _, _, gerr = gw.stop()
            print(cerr[-2000:], gerr[-2000:])


def _mapped_from(g: Namespace, public: str, low: int) -> bool:
    sas = status(g)
    if len(sas) != 1:
        return False
    addr, port = sas[0]["remote_addr"].rsplit(":", 1)
    return addr == public and int(port) >= low
