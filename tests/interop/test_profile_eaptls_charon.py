"""strongSwan's charon driven by the swanctl.conf that ``espfast profile --for strongswan``
wrote for a gateway connection with ``remote_auth = "eap-tls"``: loaded as it is, it
connects with the client's certificate inside EAP-TLS, gets a virtual IP and traffic
passes."""

from __future__ import annotations

from pathlib import Path

from espfast.cli import main
from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in, write_private
from tests.interop.conftest import CharonFactory
from tests.interop.test_profile_eap_charon import ping, swanctl_profile
from tests.unit.profile_pki import (
    CLIENT_ID,
    GATEWAY_ADDR,
    GATEWAY_ID,
    GW_INNER,
    gateway_toml,
    make_pki,
)


def test_charon_connects_with_the_eap_tls_profile(charons: CharonFactory, tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    gw = gateway_toml(pki, tmp_path / "gw.toml")
    write_private(gw, gw.read_text().replace("pool = [", 'remote_auth = "eap-tls"\npool = ['))
    assert main(["profile", "-c", str(gw), "--for", "strongswan", "--server", GATEWAY_ADDR,
                 "--conn", "rw", "--client-cert", str(pki.cert("alice")),
                 "--client-key", str(pki.key("alice")),
                 "-o", str(tmp_path / "p")]) == 0  # fmt: skip
    conf, files = swanctl_profile(tmp_path / "p")
    with TwoHosts.create("et") as hosts:
        assert hosts.addr_b == GATEWAY_ADDR
        up = start_in(hosts.b, gw, "-v", command="up")
        try:
            charon = charons.start(hosts.a, conf, files=files)
            charon.initiate("net", "rw")
            assert wait_for(lambda: ping(hosts, GW_INNER), timeout=10)
            (sa,) = charon.list_sas()
            log = charon.log(None)
        finally:
            rc, _, err = up.stop()
    assert rc == 0, err
    assert sa["state"] == "ESTABLISHED" and sa["remote-id"] == GATEWAY_ID
    assert sa["local-id"] == CLIENT_ID
    ((child,),) = [list(sa["child-sas"].values())]
    assert child["local-ts"] == ["198.19.100.1/32"], child
    assert "EAP method EAP_TLS succeeded, MSK established" in log, log[-3000:]
    assert f"EAP-TLS authenticated '{CLIENT_ID}'" in err, err
