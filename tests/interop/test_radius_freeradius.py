"""EAP-RADIUS against FreeRADIUS: an ``espfast up`` gateway relays its road warriors'
EAP (RFC 3579) to FreeRADIUS, started by the test in a namespace of its own with a
private configuration (a users file with a Framed-IP-Address, the gateway as client).
The client (``espfast up`` with EAP-MSCHAPv2) gets in with the address the RADIUS user
entry names; the first RADIUS server configured is dead, so the gateway fails over to the
second. A wrong password gets AUTHENTICATION_FAILED and one gateway log line naming the
user, never the password.

  client a 198.18.0.1 -- 198.18.0.2 b gateway 198.18.5.1 -- 198.18.5.2 FreeRADIUS
                                     (198.18.5.3: a RADIUS server that never answers)
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from espfast.netns import Namespace, TwoHosts, wait_for
from espfast.static import start_in, write_private
from tests.interop.conftest import CharonFactory
from tests.interop.freeradius import (
    DEAD,
    FRAMED,
    GW_RADIUS,
    RADIUS,
    SECRET,
    FreeRadius,
    behind,
    confs,
    start,
    write_config,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "netns"))
from eapconf import GW_NET, PASSWORD
from updaemon import peek, ping, status

from tests.interop.test_eap_charon import client_swanctl
from tests.netns.opsconf import scrape

METRICS = "198.18.0.2:9469"


@dataclass
class Site:
    hosts: TwoHosts
    radius_ns: Namespace
    radius: FreeRadius


CAROL = f'carol\tCleartext-Password := "{PASSWORD}"\n\tFramed-IP-Address = {FRAMED},\n'


@contextlib.contextmanager
def site(tmp_path: Path, users: str = CAROL + '\tClass = "gold"\n') -> Iterator[Site]:
    """Client and gateway (TwoHosts a, b) and FreeRADIUS in a third namespace behind b."""
    conf = write_config(tmp_path, clients={GW_RADIUS: SECRET}, users=users)
    with TwoHosts.create("radius") as hosts, behind(hosts.b) as rns:
        radius = start(rns, conf)
        try:
            yield Site(hosts, rns, radius)
        finally:
            radius.stop()


def test_freeradius_authenticates_with_failover_and_framed_ip(tmp_path: Path) -> None:
    gw_conf, rw_conf = confs(tmp_path, PASSWORD)
    with site(tmp_path) as s:
        hosts = s.hosts
        gw = start_in(hosts.b, gw_conf, "-v", command="up")
        client = start_in(hosts.a, rw_conf, "-v", command="up")
        try:
            assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=40), peek(gw)
            assert ping(hosts.b, FRAMED)
            (ike_g,) = status(hosts.b)
            assert wait_for(lambda: "Acct-Status-Type = Start" in s.radius.detail(), timeout=20)
        finally:
            client.stop()  # its DELETE ends the session: Accounting-Request Stop
            stopped = wait_for(lambda: "Acct-Status-Type = Stop" in s.radius.detail(), timeout=20)
            _, _, err_g = gw.stop()
        radius_log = s.radius.text()
        detail = s.radius.detail()
    assert ike_g["remote_id"] == "carol", ike_g
    assert ike_g["peer_virtual_ips"] == [FRAMED], ike_g
    assert f"RADIUS server {DEAD}:1812 did not answer" in err_g, err_g
    assert "EAP-RADIUS authenticated 'carol'" in err_g, err_g
    assert "Sent Access-Accept" in radius_log
    # Accounting: Start and Stop for carol's session, the Stop with the pings' bytes.
    assert stopped, detail
    stop = detail[detail.index("Acct-Status-Type = Stop") :]
    assert 'User-Name = "carol"' in stop and f"Framed-IP-Address = {FRAMED}" in stop, stop
    assert "Class = 0x676f6c64" in stop, stop  # "gold", as the Access-Accept gave it
    octets_in = int(stop.split("Acct-Input-Octets = ")[1].split()[0])
    packets_out = int(stop.split("Acct-Output-Packets = ")[1].split()[0])
    assert octets_in >= 2 * 84 and packets_out >= 2, stop  # two pings each way at least
    assert PASSWORD not in err_g and SECRET not in err_g


def test_wrong_password_one_line_naming_the_user(tmp_path: Path) -> None:
    wrong = "Tr0ub4dor&3 is wrong"
    gw_conf, rw_conf = confs(tmp_path, wrong)
    with site(tmp_path) as s:
        hosts = s.hosts
        gw = start_in(hosts.b, gw_conf, "-v", command="up")
        client = start_in(hosts.a, rw_conf, "-v", command="up")
        try:
            assert wait_for(lambda: "EAP-RADIUS authentication of" in peek(gw), timeout=40)
            assert not ping(hosts.a, GW_NET)
        finally:
            _, _, err_c = client.stop()
            _, _, err_g = gw.stop()
        radius_log = s.radius.text()
    named = [x for x in err_g.splitlines() if "'carol'" in x]
    assert len(named) == 1, err_g
    assert "EAP-RADIUS authentication of 'carol' failed" in named[0], err_g
    assert "AUTHENTICATION_FAILED" in err_c, err_c
    assert "Sent Access-Reject" in radius_log
    assert wrong not in err_g + err_c and SECRET not in err_g + err_c


def test_charon_client_through_freeradius(charons: CharonFactory, tmp_path: Path) -> None:
    """charon (the native Windows client's setup: EAP-MSCHAPv2, a certificate check of
    the gateway) against the gateway relaying to FreeRADIUS: the MSK from FreeRADIUS's
    MS-MPPE keys keys both AUTH payloads, and charon gets carol's Framed-IP-Address."""
    gw_conf, _ = confs(tmp_path, PASSWORD, servers=(RADIUS,))
    ca = (tmp_path / "pki" / "ca.crt").read_bytes()
    with site(tmp_path) as s:
        hosts = s.hosts
        gw = start_in(hosts.b, gw_conf, "-v", command="up")
        swanctl = client_swanctl(hosts.addr_b, hosts.addr_a, PASSWORD)
        swanctl = swanctl.replace("remote_ts = 198.19.1.0/24", "remote_ts = 198.19.2.0/24")
        charon = charons.start(hosts.a, swanctl, files={"x509ca/ca.crt": ca})
        try:
            charon.initiate("net", "gw")
            charon.wait_child("net")
            (ike,) = charon.list_sas()
            (child,) = ike["child-sas"].values()
            assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=10)
            log = charon.log(None)
        finally:
            _, _, err = gw.stop()
    assert child["local-ts"] == [f"{FRAMED}/32"], child
    assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log, log[-3000:]
    assert "authentication of 'gw.eap.test' with EAP successful" in log, log[-3000:]
    assert "EAP-RADIUS authenticated 'carol'" in err, err
    assert PASSWORD not in err and SECRET not in err


def test_framed_pool_and_radius_metrics(tmp_path: Path) -> None:
    """carol's entry names a pool (Framed-Pool, RFC 2869 §5.18) instead of an address: she
    gets the first address of the gateway's framed_pools "staff"; the gateway's RADIUS
    counters (a dead server first, then FreeRADIUS) are Prometheus metrics."""
    gw_conf, rw_conf = confs(tmp_path, PASSWORD)
    text = gw_conf.read_text()
    text = text.replace("[interface]\n", f'[interface]\nmetrics = "{METRICS}"\n')
    text = text.replace("\npool = ", '\nframed_pools = { staff = ["198.19.110.0/24"] }\npool = ')
    write_private(gw_conf, text)
    users = f'carol\tCleartext-Password := "{PASSWORD}"\n\tFramed-Pool = "staff"\n'
    with site(tmp_path, users) as s:
        hosts = s.hosts
        gw = start_in(hosts.b, gw_conf, "-v", command="up")
        client = start_in(hosts.a, rw_conf, "-v", command="up")
        try:
            assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=40), peek(gw)
            assert ping(hosts.b, "198.19.110.1")
            (ike_g,) = status(hosts.b)
            assert wait_for(lambda: "Acct-Status-Type = Start" in s.radius.detail(), timeout=20)
            samples = scrape(hosts.b, METRICS)
        finally:
            client.stop()
            _, _, err_g = gw.stop()
    assert ike_g["peer_virtual_ips"] == ["198.19.110.1"], ike_g

    def counter(name: str) -> float:
        return samples[(f"espfast_radius_{name}_total", ())]

    # Each Access-Request went to the dead server first (no answer: a timeout, then the
    # next server), later ones straight to FreeRADIUS; the last answer an Accept.
    assert counter("accepts") == 1 and counter("rejects") == 0, samples
    assert counter("challenges") >= 1 and counter("timeouts") >= 1, samples
    assert counter("failovers") >= 1 and counter("requests") >= 3, samples
    assert counter("accounting_sent") >= 1, samples
    assert PASSWORD not in err_g
