"""Road warriors with passwords against strongSwan: charon as an EAP-MSCHAPv2 client
(``local.auth = eap-mschapv2``, ``eap_id``, a password in ``secrets``; the native
Windows client's setup) of an ``espfast up`` gateway that proves itself with its
certificate and checks the password against its user file (RFC 7296 §2.16). charon
gets a virtual IP and traffic flows; with a wrong password charon hears
AUTHENTICATION_FAILED and the gateway logs one line naming the user."""

from __future__ import annotations

import sys
from pathlib import Path

from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in, write_private
from tests.interop.conftest import INNER_A, CharonFactory
from tests.interop.strongswan import CharonError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "netns"))
from eapconf import GW_ID, PASSWORD, POOL, client_lines, gateway_lines, pki_and_users
from updaemon import client_conf, gateway_conf

DNS = "198.19.1.53"


def client_swanctl(addr_gw: str, addr_me: str, password: str) -> str:
    return f"""connections {{
  gw {{
    version = 2
    local_addrs = {addr_me}
    remote_addrs = {addr_gw}
    encap = yes
    vips = 0.0.0.0
    proposals = aes128gcm16-prfsha256-x25519
    local {{
      auth = eap-mschapv2
      eap_id = carol
    }}
    remote {{
      auth = pubkey
      id = gw.eap.test
    }}
    children {{
      net {{
        local_ts = dynamic
        remote_ts = 198.19.1.0/24
        esp_proposals = aes128gcm16
        start_action = none
      }}
    }}
  }}
}}
secrets {{
  eap-carol {{
    id = carol
    secret = "{password}"
  }}
}}
"""


def gateway(tmp_path: Path, addr: str) -> tuple[Path, bytes]:
    pki, users = pki_and_users(tmp_path)
    conf = gateway_conf(listen=addr, local_id=GW_ID, auth=gateway_lines(pki, users), pool=POOL,
                        dns=DNS, inner=f"{INNER_A}/24", local_ts="198.19.1.0/24")  # fmt: skip
    return write_private(tmp_path / "gw.toml", conf), (pki / "ca.crt").read_bytes()


def test_charon_eap_mschapv2_client_of_espfast(charons: CharonFactory, tmp_path: Path) -> None:
    with TwoHosts.create("eap") as hosts:
        conf, ca = gateway(tmp_path, hosts.addr_a)
        up = start_in(hosts.a, conf, "-v", command="up")
        charon = charons.start(hosts.b, client_swanctl(hosts.addr_a, hosts.addr_b, PASSWORD),
                               files={"x509ca/ca.crt": ca})  # fmt: skip
        try:
            charon.initiate("net", "gw")
            charon.wait_child("net")
            (ike,) = charon.list_sas()
            (child,) = ike["child-sas"].values()
            assert child["local-ts"] == ["198.19.100.1/32"], child
            ping = ["ping", "-c", "1", "-W", "1", INNER_A]
            assert wait_for(lambda: hosts.b.run(*ping, check=False).returncode == 0, timeout=10)
            log = charon.log(None)
        finally:
            rc, _, err = up.stop()
    assert rc == 0, err
    # charon checked our certificate, then our MSK-keyed AUTH.
    assert "authentication of 'gw.eap.test' with" in log and "successful" in log, log[-3000:]
    assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log, log[-3000:]
    assert "authentication of 'gw.eap.test' with EAP successful" in log, log[-3000:]
    assert "EAP-MSCHAPv2 authenticated 'carol'" in err, err
    assert PASSWORD not in err


def test_charon_with_a_wrong_password_is_refused(charons: CharonFactory, tmp_path: Path) -> None:
    wrong = "not the password"
    with TwoHosts.create("eap") as hosts:
        conf, ca = gateway(tmp_path, hosts.addr_a)
        up = start_in(hosts.a, conf, "-v", command="up")
        charon = charons.start(hosts.b, client_swanctl(hosts.addr_a, hosts.addr_b, wrong),
                               files={"x509ca/ca.crt": ca})  # fmt: skip
        try:
            try:
                charon.initiate("net", "gw")
                raise AssertionError("charon's initiate succeeded with a wrong password")
            except CharonError:
                pass
            log = charon.log(None)
        finally:
            rc, _, err = up.stop()
    assert rc == 0, err
    # Our MS-CHAPv2 Failure request (E=691 R=0, draft-kamath §2) as charon read it: charon
    # ends there (it sends no Failure response, as Windows does not either).
    assert "EAP-MS-CHAPv2 failed with error ERROR_AUTHENTICATION_FAILURE" in log, log[-3000:]
    named = [x for x in err.splitlines() if "'carol'" in x]
    assert len(named) == 1 and "EAP-MSCHAPv2 authentication of 'carol' failed" in named[0], err
    assert wrong not in err and PASSWORD not in err


def gateway_swanctl(addr: str, password: str) -> str:
    return f"""connections {{
  rw {{
    version = 2
    local_addrs = {addr}
    remote_addrs = %any
    encap = yes
    pools = rw
    proposals = aes128gcm16-prfsha256-x25519
    local {{
      auth = pubkey
      certs = gw.crt
      id = gw.eap.test
    }}
    remote {{
      auth = eap-mschapv2
      eap_id = %any
    }}
    children {{
      net {{
        local_ts = 198.19.2.0/24
        remote_ts = dynamic
        esp_proposals = aes128gcm16
      }}
    }}
  }}
}}
pools {{
  rw {{
    addrs = {POOL}
  }}
}}
secrets {{
  eap-carol {{
    id = carol
    secret = "{password}"
  }}
}}
"""


def test_espfast_eap_mschapv2_client_of_charon(charons: CharonFactory, tmp_path: Path) -> None:
    """charon is the gateway (``remote.auth = eap-mschapv2``, ``eap_id = %any``): espfast
    checks its certificate, answers EAP-Identity and EAP-MSCHAPv2, gets an address."""
    pki, _ = pki_and_users(tmp_path)
    with TwoHosts.create("eap") as hosts:
        hosts.b.run("ip", "addr", "add", "198.19.2.1/32", "dev", "lo")
        files = {"x509/gw.crt": (pki / "gw.crt").read_bytes(),
                 "private/gw.key": (pki / "gw.key").read_bytes()}  # fmt: skip
        charon = charons.start(hosts.b, gateway_swanctl(hosts.addr_b, PASSWORD), files=files)
        pw = write_private(tmp_path / "carol.pw", PASSWORD + "\n")
        conf = client_conf(listen=hosts.addr_a, gateway=hosts.addr_b, local_id=hosts.addr_a,
                           remote_id=GW_ID, auth=client_lines(pki, pw),
                           remote_ts="198.19.2.0/24")  # fmt: skip
        up = start_in(hosts.a, write_private(tmp_path / "rw.toml", conf), "-v", command="up")
        try:
            charon.wait_child("net", timeout=20)
            ping = ["ping", "-c", "1", "-W", "1", "198.19.2.1"]
            assert wait_for(lambda: hosts.a.run(*ping, check=False).returncode == 0, timeout=10)
            (ike,) = charon.list_sas()
            log = charon.log(None)
        finally:
            rc, _, err = up.stop()
    assert rc == 0, err
    assert ike["remote-eap-id"] == "carol", ike
    assert "EAP method EAP_MSCHAPV2 succeeded, MSK established" in log, log[-3000:]
    assert "authentication of '198.18.0.1' with EAP successful" in log, log[-3000:]
    assert "virtual IP 198.19.100.1" in err, err
    assert PASSWORD not in err
