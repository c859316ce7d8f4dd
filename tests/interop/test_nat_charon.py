"""NAT traversal against strongSwan through a real NAT (RFC 7296 §2.23, RFC 3948, RFC 4555
§3.8): one end behind an nftables-masquerade router (espfast/tools/mobilitynet.py), the
other outside, each way round.

- charon (kernel-libipsec, a road warrior asking for a virtual IP) behind the NAT, an
  ``espfast up`` gateway outside; with MOBIKE, and without (``mobike = no``: the gateway
  follows charon's next authenticated request from the new mapping, its DPD, §2.23);
- an ``espfast up`` road warrior behind the NAT, charon the gateway (``pools``).

Each time: the tunnel comes up through the NAT, the end behind it knows it is (charon's
``nat-local``, espfast's ``nat_local``) and the gateway sees the router's address and a
port from the router's range; the client's NAT keepalives reach the gateway; during a
sequence-numbered UDP flow from the gateway to the client the router forgets every
mapping (conntrack flushed) and maps anew from another port range, the client notices
with its MOBIKE liveness check (NAT-D) and sends UPDATE_SA_ADDRESSES, the gateway
follows: the same IKE SA, the flow carries on, loss bounded and printed.

charon (encap = yes, as libipsec needs) and espfast both fake their own NAT-D SOURCE hash
to force UDP encapsulation, so ``nat-remote`` / ``nat_remote`` are set on both ends
whatever the path; the proof of detection is the ``nat-local`` side and the addresses.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from espfast.netns import Namespace, ThreeHosts, wait_for
from espfast.static import start_in, write_private
from espfast.tools.mobilitynet import masquerade, remap
from espfast.tools.udpflow import check_loss, flow_in_background
from tests.interop.conftest import CharonFactory
from tests.interop.strongswan import Connection, Psk, same_ike_sa, swanctl_conf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "netns"))
from updaemon import client_conf, document, gateway_conf, packets_in, packets_out, status

SECRET = b"nat interop test: a long enough pre-shared key"
IDS = ("gw.natc.test", "carol@natc.test")  # (gateway, client)
PSK = Psk(ids=IDS, secret=SECRET)
AUTH = f'psk = "0x{SECRET.hex()}"'
POOL, VIP, GW_NET = "198.19.100.0/24", "198.19.100.1", "198.19.2.1"
COUNT, INTERVAL = 1500, 0.01  # a 15 s flow from the gateway to the client's virtual IP
MAX_LOST = 500  # the client's liveness check (every 2 s here) and its update, with room
KEEPALIVES = "udp dst port 4500 and udp[4:2] = 9"  # one octet: 0xFF (RFC 3948 §2.3)


def ping(ns: Namespace, dst: str) -> bool:
    return ns.run("ping", "-c", "1", "-W", "1", dst, check=False).returncode == 0


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


@pytest.mark.parametrize("mobike", [True, False], ids=["mobike", "rfc7296"])
def test_charon_behind_nat_espfast_gateway(
    charons: CharonFactory, tmp_path: Path, mobike: bool
) -> None:
    with ThreeHosts.create("ncnat") as hosts:
        masquerade(hosts.r, hosts.veth_rb, "20000-20999")
        conf = gateway_conf(listen=hosts.addr_b, local_id=IDS[0], auth=AUTH, pool=POOL,
                            dns="198.19.2.53", inner=f"{GW_NET}/24",
                            local_ts="198.19.2.0/24")  # fmt: skip
        gw = start_in(hosts.b, write_private(tmp_path / "gw.toml", conf), "-v", command="up")
        client = Connection(
            local_addrs=hosts.addr_a, remote_addrs=hosts.addr_b, local_id=IDS[1],
            remote_id=IDS[0], local_ts="dynamic", remote_ts="198.19.2.0/24",
            extra={"vips": "0.0.0.0", "mobike": "yes" if mobike else "no", "dpd_delay": "2s"},
        )  # fmt: skip
        charon = charons.start(hosts.a, swanctl_conf([client], [PSK]),
                               settings={"keep_alive": "1s"})  # fmt: skip
        try:
            charon.initiate("net")
            assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=10), charon.log(40)
            first = charon.established_ike()
            (ours,) = status(hosts.b)
            # charon knows it is behind a NAT (our DESTINATION hash named the router's
            # address), and floated to 4500; we see the router's mapping.
            assert first["nat-local"] == "yes", first
            assert first["local-port"] == "4500" and first["remote-port"] == "4500", first
            assert ours["nat_remote"] and not ours["nat_local"], ours
            assert ours["mobike"] is mobike, ours
            addr, port = ours["remote_addr"].rsplit(":", 1)
            assert addr == hosts.addr_rb and 20000 <= int(port) <= 20999, ours
            assert "local host is behind NAT, sending keep alives" in charon.log(None)
            # charon's keepalives (every second here) come through the NAT to us.
            assert wait_for(lambda: document(hosts.b)["daemon"]["dataplane"]["keepalives"] >= 2,
                            timeout=10), document(hosts.b)  # fmt: skip

            with flow_in_background(hosts.b, hosts.a, VIP, count=COUNT, interval=INTERVAL) as got:
                assert wait_for(lambda: packets_out(hosts.b) >= 50, timeout=10)
                remap(hosts.r, hosts.veth_rb, "30000-30999")
                assert wait_for(lambda: _gateway_port(hosts.b) >= 30000, timeout=15), \
                    (status(hosts.b), charon.log(40))  # fmt: skip
            how = "MOBIKE" if mobike else "RFC 7296"
            check_loss(got, COUNT, INTERVAL, f"charon behind NAT ({how}), mapping flushed",
                       max_lost=MAX_LOST)  # fmt: skip
            now = charon.established_ike()
            assert same_ike_sa(first, now), (first, now)
            (after,) = status(hosts.b)
            assert (after["spi_i"], after["spi_r"]) == (ours["spi_i"], ours["spi_r"])
            assert after["moves"] >= 1, after
            log = charon.log(None)
            # With MOBIKE charon's liveness check saw the new mapping (NAT-D) and it said
            # so; without, we followed its next authenticated request (its DPD, §2.23).
            assert ("N(UPD_SA_ADDR)" in log) is mobike, log[-3000:]
            assert log.count("IKE_SA_INIT request") == 1, log[-3000:]
            assert ping(hosts.a, GW_NET)
        finally:
            _, _, err = gw.stop()
            print(err[-2000:])


def test_espfast_behind_nat_charon_gateway(charons: CharonFactory, tmp_path: Path) -> None:
    pcap = tmp_path / "keepalives.pcap"
    with ThreeHosts.create("ncnat") as hosts:
        masquerade(hosts.r, hosts.veth_rb, "20000-20999")
        hosts.b.run("ip", "addr", "add", f"{GW_NET}/32", "dev", "lo")
        gateway = Connection(
            local_addrs=hosts.addr_b, remote_addrs="%any", local_id=IDS[0],
            remote_id=IDS[1], local_ts="198.19.2.0/24", remote_ts="dynamic",
            extra={"pools": "rw", "mobike": "yes"},
        )  # fmt: skip
        pools = f"pools {{\n  rw {{\n    addrs = {POOL}\n  }}\n}}\n"
        charon = charons.start(hosts.b, swanctl_conf([gateway], [PSK]) + pools)
        dump = hosts.b.popen(
            "tcpdump", "-i", "veth-b", "-n", "-U", "--immediate-mode", "-w", str(pcap),
            KEEPALIVES, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        conf = client_conf(listen=hosts.addr_a, gateway=hosts.addr_b, local_id=IDS[1],
                           remote_id=IDS[0], auth=AUTH, remote_ts="198.19.2.0/24")  # fmt: skip
        conf = conf.replace("listen = ", "keepalive = 1\nlisten = ", 1)
        conf = conf.replace(f"{AUTH}\n", f"{AUTH}\ndpd_delay = 2\n")
        client = start_in(hosts.a, write_private(tmp_path / "c.toml", conf), "-v", command="up")
        try:
            charon.wait_child("net")
            assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=10), charon.log(40)
            first = charon.established_ike()
            (ours,) = status(hosts.a)
            # We know we are behind the NAT (charon's DESTINATION hash named the
            # router's address); charon sees the router's mapping on 4500.
            assert ours["nat_local"] and ours["mobike"], ours
            assert ours["local_addr"] == f"{hosts.addr_a}:4500", ours
            assert ours["remote_addr"] == f"{hosts.addr_b}:4500", ours
            assert first["nat-remote"] == "yes" and "nat-local" not in first, first
            assert first["remote-host"] == hosts.addr_rb, first
            assert 20000 <= int(first["remote-port"]) <= 20999, first
            # Our keepalives, every second, reach charon's side through the NAT.
            assert wait_for(lambda: _captured(pcap) >= 2, timeout=10)
            assert document(hosts.a)["daemon"]["counters"]["keepalives_sent"] >= 2

            with flow_in_background(hosts.b, hosts.a, VIP, count=COUNT, interval=INTERVAL) as got:
                assert wait_for(lambda: packets_in(hosts.a) >= 50, timeout=10)
                remap(hosts.r, hosts.veth_rb, "30000-30999")
                assert wait_for(lambda: int(charon.established_ike()["remote-port"]) >= 30000,
                                timeout=15), (charon.established_ike(), charon.log(40))  # fmt: skip
            check_loss(got, COUNT, INTERVAL, "espfast behind NAT (charon gateway), mapping "
                       "flushed", max_lost=MAX_LOST)  # fmt: skip
            now = charon.established_ike()
            assert same_ike_sa(first, now), (first, now)
            assert now["remote-host"] == hosts.addr_rb, now
            (after,) = status(hosts.a)
            assert (after["spi_i"], after["spi_r"]) == (ours["spi_i"], ours["spi_r"])
            # (Our own moves count only when we knew the old mapping: if the NAT forgot us
            # before our first liveness check learned it, the update goes out uncounted.
            # charon's log below shows it went out.)
            assert after["nat_local"], after
            log = charon.log(None)
            assert "N(UPD_SA_ADDR)" in log, log[-3000:]
            assert log.count("parsed IKE_SA_INIT request") == 1, log[-3000:]
            assert ping(hosts.a, GW_NET)
        finally:
            _, _, err = client.stop()
            hosts.b.stop(dump)
            print(err[-2000:])


def _gateway_port(ns: Namespace) -> int:
    sas = status(ns)
    return port_of(sas[0]["remote_addr"]) if len(sas) == 1 else 0


def _captured(pcap: Path) -> int:
    """NAT keepalives (RFC 3948 §2.3: one 0xFF octet to port 4500) in ``pcap``."""
    from scapy.layers.inet import UDP
    from scapy.utils import rdpcap

    if not pcap.exists() or pcap.stat().st_size == 0:
        return 0
    try:
        packets = rdpcap(str(pcap))
    except Exception:  # a packet half written: look again
        return 0
    return sum(1 for p in packets if UDP in p and bytes(p[UDP].payload) == b"\xff")
