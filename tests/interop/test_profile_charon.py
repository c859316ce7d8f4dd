"""strongSwan's charon driven by the swanctl.conf that ``espfast profile --for strongswan``
wrote, against a real ``espfast up`` gateway: ``swanctl --load-all`` takes the directory
as it is (the harness refuses any error line), charon authenticates with the client
certificate, checks the gateway's against the CA the profile carries, gets a virtual IP
from the gateway's pool and reaches the network behind it with the profile's proposals."""

from __future__ import annotations

from pathlib import Path

import pytest

from espfast.cli import main
from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in
from tests.interop.conftest import CharonFactory
from tests.unit.profile_pki import (
    CLIENT_ID,
    GATEWAY_ADDR,
    GATEWAY_ID,
    GW_INNER,
    gateway_toml,
    make_pki,
)


def ping(hosts: TwoHosts, dst: str) -> bool:
    return hosts.a.run("ping", "-c", "1", "-W", "1", dst, check=False).returncode == 0


# gateway (IKE, ESP proposals; None: its defaults) -> what charon must negotiate:
# IKE (encr, key size, PRF, group), ESP (encr, key size, integrity), rekey with PFS?
CASES = {
    "defaults": ((None, None), ("AES_GCM_16", "256", "PRF_HMAC_SHA2_384", "ECP_384"),
                 ("AES_GCM_16", "256", None), False),
    "cbc with pfs": (("aes128-aes256-sha256-sha384-modp3072-ecp384", "aes256-sha256-ecp384"),
                     ("AES_CBC", "256", "PRF_HMAC_SHA2_384", "ECP_384"),
                     ("AES_CBC", "256", "HMAC_SHA2_256_128"), True),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_charon_connects_with_the_generated_swanctl_conf(
    charons: CharonFactory, tmp_path: Path, case: str
) -> None:
    (ike, esp), want_ike, want_esp, pfs = CASES[case]
    pki = make_pki(tmp_path / "pki")
    gw = gateway_toml(pki, tmp_path / "gw.toml", ike=ike, esp=esp)
    out = tmp_path / "profile"
    assert main(["profile", "-c", str(gw), "--conn", "rw", "--for", "strongswan",
                 "--server", GATEWAY_ADDR, "--client-cert", str(pki.cert("alice")),
                 "--client-key", str(pki.key("alice")), "-o", str(out)]) == 0  # fmt: skip
    files = {
        str(p.relative_to(out)): p.read_bytes()
        for p in out.rglob("*")
        if p.is_file() and p.name != "swanctl.conf"
    }
    conf = (out / "swanctl.conf").read_text()
    with TwoHosts.create("prof") as hosts:
        assert hosts.addr_b == GATEWAY_ADDR
        up = start_in(hosts.b, gw, "-v", command="up")
        try:
            charon = charons.start(hosts.a, conf, files=files)
            charon.initiate("net", "rw")
            (sa,) = charon.list_sas()
            (child,) = sa["child-sas"].values()
            assert wait_for(lambda: ping(hosts, GW_INNER), timeout=10)
            if pfs:
                # A Child SA rekey with the profile's PFS group, accepted by the gateway.
                charon.rekey("net")
                charon.wait_log("CHILD_SA net{2} established", timeout=15)
                assert wait_for(lambda: ping(hosts, GW_INNER), timeout=10)
            log = charon.log(None)
        finally:
            rc, _, err = up.stop()
    assert rc == 0, err
    assert sa["name"] == "rw" and sa["state"] == "ESTABLISHED"
    assert sa["local-id"] == CLIENT_ID and sa["remote-id"] == GATEWAY_ID
    # The profile's choice: the strongest of the gateway's proposals.
    assert (sa["encr-alg"], sa["encr-keysize"], sa["prf-alg"], sa["dh-group"]) == want_ike
    assert (child["encr-alg"], child["encr-keysize"], child.get("integ-alg")) == want_esp
    assert child["local-ts"] == ["198.19.100.1/32"], child
    assert "installing new virtual IP 198.19.100.1" in log
    assert f"authentication of '{GATEWAY_ID}' with" in log  # the gateway's cert checked
    assert "virtual IP 198.19.100.1" in err
