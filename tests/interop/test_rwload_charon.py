"""Real and synthetic road warriors together on one ``espfast up`` gateway: 50 clients of
espfast/tools/rwload.py (a) and two strongSwan charons (kernel-libipsec), each in a
namespace of its own behind b. Everyone gets an address of its own; the charons ping
the gateway through their tunnels; a synthetic client that seals a packet with a
charon's address as source, or to a charon's address, inside its own SA is dropped by
the gateway (traffic selectors, after decryption) and counted, and nothing reaches the
charon. Correctness only (bench/rwload.py measures)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in, write_private
from espfast.tools.rwload import command
from tests.interop.rwcharons import charon_clients, charon_vip
from tests.netns.updaemon import client_conf, gateway_conf, status
from tests.security.sec_authz import daemon_status

PSK = "a pre-shared key for charons among synthetic road warriors"
AUTH = f'psk = "{PSK}"'
GW_ID, GW_INNER, NET = "gw.rwload.test", "198.19.2.1", "198.19.2.0/24"
SOURCES = "198.18.16.0/24"
CLIENTS = 50


def policy_drops(hosts: TwoHosts) -> int:
    drops: int = daemon_status(hosts.b)["daemon"]["dataplane"]["policy_drops"]
    return drops


def test_charons_among_synthetic_road_warriors(tmp_path: Path) -> None:
    gw = gateway_conf(listen="198.18.0.2", local_id=GW_ID, auth=AUTH, pool="198.19.100.0/24",
                      dns="198.19.2.53", inner=f"{GW_INNER}/24", local_ts=NET)  # fmt: skip
    rw = client_conf(listen="198.18.0.1", gateway="198.18.0.2", local_id="rw@rwload.test",
                     remote_id=GW_ID, auth=AUTH, remote_ts=NET)  # fmt: skip
    rw += 'esp_proposals = "aes128gcm16"\n'
    with TwoHosts.create("rwc") as hosts:
        hosts.a.run("ip", "route", "add", "local", SOURCES, "dev", "lo")
        hosts.b.run("ip", "route", "add", SOURCES, "via", hosts.addr_a)
        gateway = start_in(hosts.b, write_private(tmp_path / "gw.toml", gw), command="up")
        load = hosts.a.popen(
            sys.executable, "-m", "espfast.tools.rwload",
            str(write_private(tmp_path / "rw.toml", rw)), hosts.addr_b, "--sources", SOURCES,
            "--inner", GW_INNER, "--max-clients", str(CLIENTS), "--timeout", "120",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        try:
            with charon_clients(hosts, 2, tmp_path, gw_id=GW_ID, psk=PSK.encode(),
                                remote_ts=NET) as charons:  # fmt: skip
                up = command(load, f"up {CLIENTS} 16")
                assert all(wait_for(lambda c=c: charon_vip(c) is not None, timeout=30)
                           for _, c in charons), [c.log() for _, c in charons]  # fmt: skip
                vips = [charon_vip(c) for _, c in charons]
                pinged = [ns.run("ping", "-c", "2", "-W", "2", GW_INNER, check=False).returncode
                          for ns, _ in charons]  # fmt: skip
                sas = status(hosts.b)
                before = policy_drops(hosts)
                # Client 0 speaks as charon 0, then to charon 1, inside its own SA.
                as_charon = command(load, f"probe 1 {vips[0]} {GW_INNER}")
                to_charon = command(load, f"probe 1 vip {vips[1]}")
                after = policy_drops(hosts)
                ping = command(load, f"ping {CLIENTS} {2 * CLIENTS} 16")
                still = [ns.run("ping", "-c", "1", "-W", "2", GW_INNER, check=False).returncode
                         for ns, _ in charons]  # fmt: skip
        finally:
            hosts.a.stop(load)
            gateway.stop()
    assert up["up"] == CLIENTS and up["distinct_leases"] == CLIENTS, up
    # 52 IKE SAs, 52 distinct addresses: the charons' among them, each its own.
    assert len(sas) == CLIENTS + 2
    leased = [ip for sa in sas for ip in sa["peer_virtual_ips"]]
    assert len(set(leased)) == CLIENTS + 2 and set(vips) <= set(leased), (vips, leased)
    by_id = {sa["remote_id"]: sa["peer_virtual_ips"] for sa in sas}
    assert [by_id["charon0@rwload.test"], by_id["charon1@rwload.test"]] == [[v] for v in vips]
    assert pinged == still == [0, 0]
    assert as_charon["answered"] == to_charon["answered"] == 0, (as_charon, to_charon)
    assert after - before == 2
    assert ping["clients_answered"] == CLIENTS and ping["wrong"] == 0, ping
