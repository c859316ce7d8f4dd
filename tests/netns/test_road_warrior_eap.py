"""Road warriors with passwords: an ``espfast up`` gateway proves itself with its
certificate, its clients with EAP-MSCHAPv2 against the gateway's user file (RFC 7296
§2.16), as native Windows clients do; an ``espfast up`` client gets a virtual IP. A
wrong password gets an MS-CHAPv2 Failure request (E=691), then AUTHENTICATION_FAILED
with EAP-Failure, and one gateway log line naming the user."""

from __future__ import annotations

from pathlib import Path

from eapconf import GW_NET, PASSWORD, confs
from updaemon import peek, ping, status

from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in


def test_eap_client_gets_a_virtual_ip(tmp_path: Path) -> None:
    gw_conf, rw_conf = confs(tmp_path, PASSWORD)
    with TwoHosts.create("eap") as hosts:
        gw = start_in(hosts.b, gw_conf, "-v", command="up")
        client = start_in(hosts.a, rw_conf, "-v", command="up")
        try:
            assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=20)
            assert ping(hosts.b, "198.19.100.1")
            (ike_g,) = status(hosts.b)
        finally:
            client.stop()
            _, _, err_g = gw.stop()
    # The gateway knows the client by its EAP identity (not its IDi, an address).
    assert ike_g["remote_id"] == "carol", ike_g
    assert ike_g["peer_virtual_ips"] == ["198.19.100.1"]
    assert "EAP-MSCHAPv2 authenticated 'carol'" in err_g, err_g
    assert PASSWORD not in err_g


def test_wrong_password_is_refused_with_one_line_naming_the_user(tmp_path: Path) -> None:
    wrong = "Tr0ub4dor&3 is wrong"
    gw_conf, rw_conf = confs(tmp_path, wrong)
    with TwoHosts.create("eap") as hosts:
        gw = start_in(hosts.b, gw_conf, "-v", command="up")
        client = start_in(hosts.a, rw_conf, "-v", command="up")
        try:
            assert wait_for(lambda: "EAP-MSCHAPv2 authentication of" in peek(gw),
                            timeout=20)  # fmt: skip
            # (the client learns it a round trip later: Failure response, EAP-Failure)
            assert wait_for(lambda: "AUTHENTICATION_FAILED" in peek(client), timeout=20)
            assert not ping(hosts.a, GW_NET)
        finally:
            _, _, err_c = client.stop()
            _, _, err_g = gw.stop()
    named = [x for x in err_g.splitlines() if "'carol'" in x]
    assert len(named) == 1 and "EAP-MSCHAPv2 authentication of 'carol' failed" in named[0], err_g
    assert "AUTHENTICATION_FAILED" in err_c, err_c
    assert wrong not in err_g + err_c and PASSWORD not in err_g + err_c
