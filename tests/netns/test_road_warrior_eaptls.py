"""Road warriors with certificates inside EAP-TLS, espfast at both ends: an ``espfast
up`` gateway (``remote_auth = "eap-tls"``) and an ``espfast up`` client (``local_auth =
"eap-tls"``) that gets a virtual IP; traffic passes both ways. The gateway knows the
client by its EAP identity."""

from __future__ import annotations

from pathlib import Path

from eaptlsconf import CAROL, GW_NET, client_toml, gateway_toml, make_tls_pki
from updaemon import ping, status

from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in


def test_eap_tls_client_gets_a_virtual_ip(tmp_path: Path) -> None:
    pki = make_tls_pki(tmp_path / "pki")
    with TwoHosts.create("et") as hosts:
        gw = start_in(hosts.b, gateway_toml(tmp_path, pki, listen=hosts.addr_b), "-v",
                      command="up")  # fmt: skip
        rw = client_toml(tmp_path, pki, gateway=hosts.addr_b, listen=hosts.addr_a)
        client = start_in(hosts.a, rw, "-v", command="up")
        try:
            assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=20)
            assert ping(hosts.b, "198.19.100.1")
            (ike_g,) = status(hosts.b)
        finally:
            client.stop()
            _, _, err_g = gw.stop()
    assert ike_g["remote_id"] == CAROL, ike_g
    assert ike_g["peer_virtual_ips"] == ["198.19.100.1"]
    assert f"EAP-TLS authenticated '{CAROL}'" in err_g, err_g
