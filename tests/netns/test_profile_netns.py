"""The espfast client config that ``espfast profile --for espfast`` writes, run as it is
(``espfast up -c DIR/client.toml``) against the ``espfast up`` gateway whose config it was
made from: the client authenticates with its certificate (or as a user with a password,
EAP-MSCHAPv2), gets a virtual IP from the gateway's pool and reaches the network behind
the gateway; both ends agree on the proposals the profile chose."""

from __future__ import annotations

from pathlib import Path

from updaemon import ping, status

from espfast.cli import main
from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in, write_private
from tests.unit.profile_pki import (
    CLIENT_ID,
    EAP_PASSWORD,
    EAP_USER,
    GATEWAY_ADDR,
    GW_INNER,
    add_user,
    eap_gateway_toml,
    gateway_toml,
    make_pki,
)


def test_generated_espfast_client_connects(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    gw = gateway_toml(pki, tmp_path / "gw.toml", ike="aes128gcm16-prfsha256-x25519-ecp256,"
                      "aes256-sha256-modp3072", esp="chacha20poly1305,aes128gcm16")  # fmt: skip
    out = tmp_path / "client"
    assert main(["profile", "-c", str(gw), "--conn", "rw", "--for", "espfast",
                 "--server", GATEWAY_ADDR, "--client-cert", str(pki.cert("alice")),
                 "--client-key", str(pki.key("alice")), "-o", str(out)]) == 0  # fmt: skip
    with TwoHosts.create("prof") as hosts:
        assert hosts.addr_b == GATEWAY_ADDR
        gateway = start_in(hosts.b, gw, command="up")
        client = start_in(hosts.a, out / "client.toml", "-v", command="up")
        try:
            assert wait_for(lambda: ping(hosts.a, GW_INNER), timeout=15)
            (ike_c,) = status(hosts.a)
            (ike_g,) = status(hosts.b)
        finally:
            _, _, err = client.stop()
            gateway.stop()
    assert ike_c["virtual_ips"] == ike_g["peer_virtual_ips"] == ["198.19.100.1"]
    assert CLIENT_ID in str(ike_g), ike_g
    assert "virtual IP 198.19.100.1" in err, err
    # The profile's choice, the strongest the gateway takes: ChaCha20 over AES-128-GCM.
    assert "chacha20poly1305" in str(ike_g["child_sas"]), ike_g
    assert "aes128gcm16-prfsha256-x25519" in str(ike_g), ike_g


def test_generated_espfast_eap_client_connects(tmp_path: Path) -> None:
    """``--user`` for a gateway connection with ``remote_auth = "eap-mschapv2"`` (a user
    from ``espfast user add``): the client.toml logs in with EAP-MSCHAPv2 using the
    password file the profile wrote, and gets its virtual IP."""
    pki = make_pki(tmp_path / "pki")
    gw = eap_gateway_toml(pki, tmp_path / "gw.toml", add_user(tmp_path / "users"))
    pw = write_private(tmp_path / "carol.pw", EAP_PASSWORD + "\n")
    out = tmp_path / "client"
    assert main(["profile", "-c", str(gw), "--conn", "rw", "--for", "espfast",
                 "--server", GATEWAY_ADDR, "--user", EAP_USER, "--password-file", str(pw),
                 "-o", str(out)]) == 0  # fmt: skip
    with TwoHosts.create("profeap") as hosts:
        assert hosts.addr_b == GATEWAY_ADDR
        gateway = start_in(hosts.b, gw, "-v", command="up")
        client = start_in(hosts.a, out / "client.toml", "-v", command="up")
        try:
            assert wait_for(lambda: ping(hosts.a, GW_INNER), timeout=15)
            (ike_c,) = status(hosts.a)
            (ike_g,) = status(hosts.b)
        finally:
            _, _, err = client.stop()
            _, _, gw_err = gateway.stop()
    assert ike_c["virtual_ips"] == ike_g["peer_virtual_ips"] == ["198.19.100.1"]
    assert f"EAP-MSCHAPv2 authenticated '{EAP_USER}'" in gw_err, gw_err
    assert EAP_USER in str(ike_g), ike_g
    assert EAP_PASSWORD not in err and EAP_PASSWORD not in gw_err
