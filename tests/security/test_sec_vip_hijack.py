"""Review item 1, virtual-IP hijack: a road warrior that authenticates with its own
(valid) credential must not get a Child SA for another client's leased address or the
whole pool, and no peer's SA may take over another peer's route in the dataplane.

Gateway ``espfast up`` in b; the victim, an ``espfast up`` client, in a (198.18.0.1);
the attacker, espfast's control plane driven from the test (tests/security/sec_authz.py)
at 198.18.0.3, with the same group PSK as the victim but its own identity."""

from __future__ import annotations

from pathlib import Path

import pytest
from sec_authz import Attacker, daemon_status, drain, ike_config
from updaemon import client_conf, gateway_conf, ping

from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in, write_private

PSK = "a group pre-shared key every road warrior holds"
AUTH = f'psk = "{PSK}"'
GW_NET, VICTIM_VIP = "198.19.2.1", "198.19.100.1"


def attacker_conf(local_ts: str, remote_ts: str = "198.19.2.0/24") -> str:
    """The attacker's crafted client: no virtual IP asked for, TSi = ``local_ts``."""
    return f"""
[interface]
name = "efatk0"
listen = "198.18.0.3:4500"

[[connection]]
name = "gw"
remote = "198.18.0.2"
local_id = "mallory@vip.test"
remote_id = "gw.vip.test"
{AUTH}

[[connection.child]]
name = "net"
local_ts = ["{local_ts}"]
remote_ts = ["{remote_ts}"]
"""


@pytest.mark.parametrize("stolen", [f"{VICTIM_VIP}/32", "198.19.100.0/24"])
def test_a_client_cannot_take_another_clients_virtual_ip(tmp_path: Path, stolen: str) -> None:
    gw_conf = gateway_conf(listen="198.18.0.2", local_id="gw.vip.test", auth=AUTH,
                           pool="198.19.100.0/24", dns="198.19.2.53", inner=f"{GW_NET}/24",
                           local_ts="198.19.2.0/24")  # fmt: skip
    victim_conf = client_conf(listen="198.18.0.1", gateway="198.18.0.2",
                              local_id="alice@vip.test", remote_id="gw.vip.test", auth=AUTH,
                              remote_ts="198.19.2.0/24")  # fmt: skip
    with TwoHosts.create("hijk") as hosts:
        gw = start_in(hosts.b, write_private(tmp_path / "gw.toml", gw_conf), "-v", command="up")
        victim = start_in(hosts.a, write_private(tmp_path / "rw.toml", victim_conf), command="up")
        attacker = Attacker(hosts)
        try:
            assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=15)
            cfg = ike_config(tmp_path / "attacker.toml", attacker_conf(stolen))
            sa = attacker.connect(cfg)
            outcome = attacker.outcome(sa)
            # Its IKE SA is up (its credential is good), its Child SA is refused.
            assert outcome[0] == "IkeSaUp", outcome
            assert "ChildSaUp" not in outcome, outcome
            assert any("TS_UNACCEPTABLE" in o for o in outcome), outcome
            # The victim's traffic still goes to the victim, both ways; none to mallory.
            assert ping(hosts.a, GW_NET) and ping(hosts.b, VICTIM_VIP)
            drain(attacker)
            assert attacker.esp == 0
            doc = daemon_status(hosts.b)
            children = {s["remote_id"]: s["child_sas"] for s in doc["ike_sas"]}
            assert children["mallory@vip.test"] == [], children
            (alice,) = children["alice@vip.test"]
            assert alice["remote_ts"] == [f"{VICTIM_VIP}/32"]
        finally:
            attacker.close()
            victim.stop()
            _, _, err = gw.stop()
    assert "TS_UNACCEPTABLE" in err or "virtual IP" in err, err


SITE_TS, GW_TS = "198.19.1.0/24", "198.19.2.0/24"


@pytest.mark.parametrize("stolen", [SITE_TS, "198.19.1.0/25"])
def test_the_dataplane_refuses_a_second_peers_selectors(tmp_path: Path, stolen: str) -> None:
    """A connection without a pool lets any peer with the PSK propose remote_ts (a site
    behind it). Site 1 is up; mallory, with the same PSK and its own identity, proposes
    the same selectors, or a part of them (more specific: it would win the route): the
    control plane allows them, the dataplane refuses the outbound SA (sa_conflicts), the
    gateway deletes mallory's Child SA and site 1's traffic stays with site 1."""
    gw_conf = f"""
[interface]
name = "efgw0"
addresses = ["{GW_NET}/24"]
listen = "198.18.0.2:4500"

[[connection]]
name = "sites"
remote = "%any"
local_id = "gw.vip.test"
{AUTH}

[[connection.child]]
name = "net"
local_ts = ["{GW_TS}"]
remote_ts = ["{SITE_TS}"]
"""
    site_conf = f"""
[interface]
name = "efsite0"
addresses = ["198.19.1.1/24"]
listen = "198.18.0.1:4500"

[[connection]]
name = "gw"
remote = "198.18.0.2"
local_id = "site1@vip.test"
remote_id = "gw.vip.test"
{AUTH}

[[connection.child]]
name = "net"
local_ts = ["{SITE_TS}"]
remote_ts = ["{GW_TS}"]
"""
    with TwoHosts.create("shadw") as hosts:
        gw = start_in(hosts.b, write_private(tmp_path / "gw.toml", gw_conf), "-v", command="up")
        site = start_in(hosts.a, write_private(tmp_path / "site.toml", site_conf), command="up")
        attacker = Attacker(hosts)
        try:
            assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=15)
            cfg = ike_config(tmp_path / "attacker.toml", attacker_conf(stolen, GW_TS))
            attacker.connect(cfg)

            def refused() -> bool:
                doc = daemon_status(hosts.b)
                kids = {s["remote_id"]: s["child_sas"] for s in doc.get("ike_sas", [])}
                return kids.get("mallory@vip.test") == [] and len(kids) == 2

            assert wait_for(refused, timeout=10), daemon_status(hosts.b)
            assert daemon_status(hosts.b)["daemon"]["dataplane"]["sa_conflicts"] == 1
            assert ping(hosts.a, GW_NET) and ping(hosts.b, "198.19.1.1")
            drain(attacker)
            assert attacker.esp == 0
        finally:
            attacker.close()
            site.stop()
            _, _, err = gw.stop()
    assert f"another peer's SA holds (part of) {stolen}" in err, err
