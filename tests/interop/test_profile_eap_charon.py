"""strongSwan's charon driven by the swanctl.conf files that ``espfast profile --for
strongswan`` wrote, against a real ``espfast up`` gateway with two road-warrior
connections: "rw" for certificates and "rweap" for users with passwords (EAP-MSCHAPv2,
a user file from ``espfast user add``). One charon loads both generated profiles as they
are and connects with EAP and with a certificate: each IKE SA gets a virtual IP from its
connection's pool, the EAP one proves the gateway's certificate and then carol."""

from __future__ import annotations

from pathlib import Path

from espfast.cli import main
from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in, write_private
from tests.interop.conftest import CharonFactory
from tests.unit.profile_pki import (
    CLIENT_ID,
    EAP_PASSWORD,
    EAP_USER,
    GATEWAY_ADDR,
    GATEWAY_ID,
    GW_INNER,
    add_user,
    eap_text,
    gateway_toml,
    make_pki,
)

EAP_POOL = "198.19.101.0/24"


def two_connections(tmp_path: Path) -> tuple[Path, Path]:
    """(the gateway's config, the pki root): "rw" as gateway_toml writes it, and "rweap",
    the same with EAP users and its own pool."""
    pki = make_pki(tmp_path / "pki")
    users = add_user(tmp_path / "users")
    gw = gateway_toml(pki, tmp_path / "gw.toml")
    text = gw.read_text()
    conn = text[text.index("[[connection]]") :]
    eap = (conn.replace('name = "rw"', 'name = "rweap"')
           .replace(f'cacerts = ["{pki.ca}"]', eap_text(pki, users))
           .replace('pool = ["198.19.100.0/24"]', f'pool = ["{EAP_POOL}"]'))  # fmt: skip
    assert eap != conn
    return write_private(gw, text + "\n" + eap), pki.root


def swanctl_profile(out: Path) -> tuple[str, dict[str, bytes]]:
    files = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*")
             if p.is_file() and p.name != "swanctl.conf"}  # fmt: skip
    return (out / "swanctl.conf").read_text(), files


def ping(hosts: TwoHosts, dst: str) -> bool:
    return hosts.a.run("ping", "-c", "1", "-W", "1", dst, check=False).returncode == 0


def test_charon_connects_with_eap_and_with_a_certificate(
    charons: CharonFactory, tmp_path: Path
) -> None:
    gw, root = two_connections(tmp_path)
    pw = write_private(tmp_path / "carol.pw", EAP_PASSWORD + "\n")
    base = ["profile", "-c", str(gw), "--for", "strongswan", "--server", GATEWAY_ADDR]
    assert main([*base, "--conn", "rweap", "--user", EAP_USER, "--password-file", str(pw),
                 "-o", str(tmp_path / "eap")]) == 0  # fmt: skip
    assert main([*base, "--conn", "rw", "--client-cert", str(root / "certs" / "alice.crt"),
                 "--client-key", str(root / "certs" / "alice.key"),
                 "-o", str(tmp_path / "cert")]) == 0  # fmt: skip
    eap_conf, eap_files = swanctl_profile(tmp_path / "eap")
    cert_conf, cert_files = swanctl_profile(tmp_path / "cert")
    # Both profiles in one swanctl.conf (its sections merge), their files side by side.
    assert eap_files["x509ca/gateway-ca0.crt"] == cert_files["x509ca/gateway-ca0.crt"]
    with TwoHosts.create("profeap") as hosts:
        assert hosts.addr_b == GATEWAY_ADDR
        up = start_in(hosts.b, gw, "-v", command="up")
        try:
            charon = charons.start(hosts.a, eap_conf + cert_conf,
                                   files={**eap_files, **cert_files})  # fmt: skip
            charon.initiate("net", "rweap")
            assert wait_for(lambda: ping(hosts, GW_INNER), timeout=10)
            charon.initiate("net", "rw")
            sas = {sa["name"]: sa for sa in charon.list_sas()}
            log = charon.log(None)
        finally:
            rc, _, err = up.stop()
    assert rc == 0, err
    eap, cert = sas["rweap"], sas["rw"]
    assert eap["state"] == cert["state"] == "ESTABLISHED"
    assert eap["remote-id"] == cert["remote-id"] == GATEWAY_ID
    assert eap["local-id"] == EAP_USER and cert["local-id"] == CLIENT_ID
    ((eap_child,),) = [list(eap["child-sas"].values())]
    ((cert_child,),) = [list(cert["child-sas"].values())]
    assert eap_child["local-ts"] == ["198.19.101.1/32"], eap_child
    assert cert_child["local-ts"] == ["198.19.100.1/32"], cert_child
    assert "installing new virtual IP 198.19.101.1" in log
    assert "installing new virtual IP 198.19.100.1" in log
    # charon checked the gateway's certificate, then the MSK-keyed AUTH after EAP.
    assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log, log[-3000:]
    assert f"authentication of '{GATEWAY_ID}' with EAP successful" in log, log[-3000:]
    assert f"EAP-MSCHAPv2 authenticated '{EAP_USER}'" in err, err
    assert EAP_PASSWORD not in err
