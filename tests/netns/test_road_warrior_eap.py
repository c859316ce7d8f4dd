"""Road warriors with passwords: an ``espfast up`` gateway proves itself with its
certificate, its clients with EAP-MSCHAPv2 against the gateway's user file (RFC 7296
§2.16), as native Windows clients do; an ``espfast up`` client gets a virtual IP. A
wrong password gets AUTHENTICATION_FAILED and one gateway log line naming the user."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from updaemon import client_conf, gateway_conf, peek, ping, status

from espfast.cli import main
from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in, write_private

GW_NET, DNS = "198.19.2.1", "198.19.2.53"
PASSWORD = "correct horse battery staple"


def make_pki_and_users(tmp_path: Path) -> tuple[Path, Path]:
    pki = tmp_path / "pki"
    assert main(["pki", "ca", "--out", str(pki), "--dn", "O=espfast, CN=eap test ca"]) == 0
    assert main(["pki", "issue", "--ca", str(pki), "--id", "gw.eap.test", "--name", "gw",
                 "--out", str(pki)]) == 0  # fmt: skip
    users = tmp_path / "users"
    add = subprocess.run([sys.executable, "-m", "espfast", "user", "-f", str(users), "add",
                          "carol"], input=PASSWORD + "\n", text=True, check=False,
                         capture_output=True)  # fmt: skip
    assert add.returncode == 0, add.stderr
    return pki, users


def confs(tmp_path: Path, password: str) -> tuple[Path, Path]:
    pki, users = make_pki_and_users(tmp_path)
    gw_auth = (f'auth = "pubkey"\ncert = "{pki}/gw.crt"\nkey = "{pki}/gw.key"\n'
               f'remote_auth = "eap-mschapv2"\nusers = "{users}"')  # fmt: skip
    gateway = gateway_conf(listen="198.18.0.2", local_id="gw.eap.test", auth=gw_auth,
                           pool="198.19.100.0/24", dns=DNS, inner=f"{GW_NET}/24",
                           local_ts="198.19.2.0/24")  # fmt: skip
    write_private(tmp_path / "carol.pw", password + "\n")
    cl_auth = (f'local_auth = "eap-mschapv2"\neap_id = "carol"\n'
               f'password_file = "{tmp_path}/carol.pw"\ncacerts = ["{pki}/ca.crt"]')  # fmt: skip
    client = client_conf(listen="198.18.0.1", gateway="198.18.0.2", local_id="198.18.0.1",
                         remote_id="gw.eap.test", auth=cl_auth,
                         remote_ts="198.19.2.0/24")  # fmt: skip
    return (write_private(tmp_path / "gw.toml", gateway),
            write_private(tmp_path / "rw.toml", client))  # fmt: skip


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
            assert not ping(hosts.a, GW_NET)
        finally:
            _, _, err_c = client.stop()
            _, _, err_g = gw.stop()
    named = [x for x in err_g.splitlines() if "'carol'" in x]
    assert len(named) == 1 and "EAP-MSCHAPv2 authentication of 'carol' failed" in named[0], err_g
    assert "AUTHENTICATION_FAILED" in err_c, err_c
    assert wrong not in err_g + err_c and PASSWORD not in err_g + err_c
