"""Many road warriors on one ``espfast up`` gateway: 100 clients of espfast/tools/rwload.py
(the sans-I/O control plane, ESP sealed and opened in the tool, nothing in any kernel),
each from its own address, all up at once. Every one gets its own address of the pool and
its own Child SA narrowed to it, reaches the gateway through it, and nothing more: a
packet a client seals with another client's address as source, or to another client's
address, is dropped by the gateway after decryption (traffic selectors) and counted.
The same with 20 clients that authenticate with EAP-MSCHAPv2, each with its own user
name. Correctness only; bench/rwload.py measures 1,000 of them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from updaemon import client_conf, gateway_conf, status

from espfast.netns import Namespace, TwoHosts
from espfast.static import control_socket_in, start_in, write_private
from espfast.tools.rwload import command, eap_credentials

PSK = "a pre-shared key long enough for a hundred road warriors"
AUTH = f'psk = "{PSK}"'
CLIENTS = 100
SOURCES = "198.18.16.0/22"  # the clients' outer addresses (a local route in their namespace)
GW_INNER = "198.19.2.1"


def daemon_doc(ns: Namespace) -> dict[str, Any]:
    out = ns.run(sys.executable, "-m", "espfast", "status", "--socket",
                 str(control_socket_in(ns)), "--json")  # fmt: skip
    doc: dict[str, Any] = json.loads(out.stdout)["daemon"]
    return doc


@pytest.mark.parametrize("auth", ["psk", "eap"])
def test_road_warriors_each_with_its_own_address(tmp_path: Path, auth: str) -> None:
    """100 clients with a PSK; 20 with EAP-MSCHAPv2 (each its own user name, the gateway
    a certificate and a user file), as Windows clients would come."""
    clients = CLIENTS if auth == "psk" else 20
    gw_auth = rw_auth = AUTH
    if auth == "eap":
        names = [f"rw{i}@rwload.test" for i in range(clients)]
        gw_auth, rw_auth = eap_credentials(tmp_path, "gw.rwload.test", names, PSK)
    gw = gateway_conf(listen="198.18.0.2", local_id="gw.rwload.test", auth=gw_auth,
                      pool="198.19.100.0/24", dns="198.19.2.53", inner=f"{GW_INNER}/24",
                      local_ts="198.19.2.0/24")  # fmt: skip
    rw = client_conf(listen="198.18.0.1", gateway="198.18.0.2", local_id="rw@rwload.test",
                     remote_id="gw.rwload.test", auth=rw_auth,
                     remote_ts="198.19.2.0/24")  # fmt: skip
    rw += 'esp_proposals = "aes128gcm16"\n'
    with TwoHosts.create("rw") as hosts:
        hosts.a.run("ip", "route", "add", "local", SOURCES, "dev", "lo")
        hosts.b.run("ip", "route", "add", SOURCES, "via", hosts.addr_a)
        gateway = start_in(hosts.b, write_private(tmp_path / "gw.toml", gw), command="up")
        rw_conf = write_private(tmp_path / "rw.toml", rw)
        load = hosts.a.popen(
            sys.executable, "-m", "espfast.tools.rwload", str(rw_conf), hosts.addr_b,
            "--sources", SOURCES, "--inner", GW_INNER, "--max-clients", str(clients),
            "--timeout", "120",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        try:
            up = command(load, f"up {clients} 32")
            sas = status(hosts.b)
            ping = command(load, f"ping {clients} {3 * clients} 32")
            flood = command(load, f"flood {clients} {2 * clients}")
            before = daemon_doc(hosts.b)["dataplane"]
            spoof = command(load, f"spoof {clients}")
            after = daemon_doc(hosts.b)["dataplane"]
            quit_ = command(load, "quit")
            load.wait(30)
        finally:
            hosts.a.stop(load)
            gateway.stop()
    assert (up["up"], up["failed"], up["failures"]) == (clients, 0, []), up
    assert up["distinct_leases"] == clients, up
    # The gateway's view: one IKE SA per client, each with its own address, and its Child
    # SA narrowed to exactly that address.
    assert len(sas) == clients
    # Each known by its own identity (with EAP: its user name, not its IDi).
    assert {sa["remote_id"] for sa in sas} == {f"rw{i}@rwload.test" for i in range(clients)}
    vips = [ip for sa in sas for ip in sa["peer_virtual_ips"]]
    assert len(vips) == len(set(vips)) == clients, vips
    for sa in sas:
        (child,) = sa["child_sas"]
        assert child["remote_ts"] == [f"{sa['peer_virtual_ips'][0]}/32"], sa
    # Traffic: every client's echo requests come back to it alone, opened with its keys.
    assert ping["clients_answered"] == clients and ping["wrong"] == 0, ping
    assert ping["esp_bad"] == 0, ping
    # All at once (losses allowed): what comes back opens, and is each sender's own.
    assert flood["sent"] == 2 * clients and flood["answered"] > 0 and flood["esp_bad"] == 0
    # Isolation: 2 packets per client outside its selectors, all dropped and counted.
    assert spoof["sent"] == 2 * clients and spoof["answered"] == 0, spoof
    assert after["policy_drops"] - before["policy_drops"] == 2 * clients, (before, after)
    assert quit_["deleted"] == clients, quit_
