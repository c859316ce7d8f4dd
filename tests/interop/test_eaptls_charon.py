"""Road warriors with certificates inside EAP against strongSwan: charon as an EAP-TLS
client (``local.auth = eap-tls``, its certificate and key, ``eap_id``) of an ``espfast
up`` gateway that proves itself with its IKE certificate (in IKE AUTH and as the TLS
server) and judges the client's certificate with its CAs and CRL (RFC 5216, TLS 1.2).
charon gets a virtual IP and traffic flows; a revoked
certificate, one from a CA the gateway does not trust, and an EAP identity the
certificate does not name are each refused: charon hears AUTHENTICATION_FAILED and the
gateway logs one line naming the user and why.

TLS 1.3 (RFC 9190) is not tried with charon here: Debian 12's strongSwan 5.9.8 has TLS
1.3 in libtls, but its eap-tls learnt RFC 9190's protected success indication only in
5.9.10 (before, the server's one octet of application data crashes it). espfast's TLS
1.3 path is checked against an independent pyOpenSSL client in tests/unit/test_eap_tls.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in
from tests.interop.conftest import CharonFactory
from tests.interop.strongswan import CharonError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "netns"))
from eaptlsconf import (
    CAROL,
    DAVE,
    GW_ID,
    GW_NET,
    POOL,
    TlsPki,
    client_toml,
    gateway_toml,
    make_tls_pki,
)


def client_swanctl(addr_gw: str, addr_me: str, name: str, eap_id: str) -> str:
    return f"""connections {{
  gw {{
    version = 2
    local_addrs = {addr_me}
    remote_addrs = {addr_gw}
    encap = yes
    vips = 0.0.0.0
    proposals = aes128gcm16-prfsha256-x25519
    local {{
      auth = eap-tls
      certs = {name}.crt
      id = {eap_id}
      eap_id = {eap_id}
    }}
    remote {{
      auth = pubkey
      id = {GW_ID}
    }}
    children {{
      net {{
        local_ts = dynamic
        remote_ts = 198.19.2.0/24
        esp_proposals = aes128gcm16
        start_action = none
      }}
    }}
  }}
}}
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TlsPki:
    return make_tls_pki(tmp_path_factory.mktemp("eaptls-pki"))


def test_charon_eap_tls_client_of_espfast(charons: CharonFactory, tmp_path: Path,
                                          pki: TlsPki) -> None:  # fmt: skip
    with TwoHosts.create("et") as hosts:
        conf = gateway_toml(tmp_path, pki, listen=hosts.addr_a)
        up = start_in(hosts.a, conf, "-v", command="up")
        charon = charons.start(hosts.b, client_swanctl(hosts.addr_a, hosts.addr_b, "carol", CAROL),
                               files=pki.files("carol"))  # fmt: skip
        try:
            charon.initiate("net", "gw")
            charon.wait_child("net")
            (ike,) = charon.list_sas()
            (child,) = ike["child-sas"].values()
            assert child["local-ts"] == ["198.19.100.1/32"], child
            ping = ["ping", "-c", "1", "-W", "1", GW_NET]
            assert wait_for(lambda: hosts.b.run(*ping, check=False).returncode == 0, timeout=10)
            log = charon.log(None)
        finally:
            rc, _, err = up.stop()
    assert rc == 0, err
    # charon checked our certificate in TLS and in IKE, then our MSK-keyed AUTH.
    assert "EAP method EAP_TLS succeeded, MSK established" in log, log[-3000:]
    assert f"authentication of '{GW_ID}' with EAP successful" in log, log[-3000:]
    assert "negotiated TLS 1.2" in log, log[-3000:]
    assert f"EAP-TLS authenticated '{CAROL}'" in err, err


@pytest.mark.parametrize(
    "name, eap_id, reason",
    [
        ("dave", DAVE, "revoked"),  # in the CA's CRL
        ("mallory", CAROL, "issuer"),  # carol's name, from a CA the gateway does not trust
        # carol's certificate, dave's EAP identity: charon finds no certificate of its
        # own that names dave and sends none (tests/security/test_sec_eaptls.py sends
        # carol's under dave's name: "does not match")
        ("carol", DAVE, "did not return a certificate"),
    ],
)
def test_charon_with_a_bad_certificate_is_refused(
    charons: CharonFactory, tmp_path: Path, pki: TlsPki, name: str, eap_id: str, reason: str
) -> None:
    with TwoHosts.create("et") as hosts:
        conf = gateway_toml(tmp_path, pki, listen=hosts.addr_a)
        up = start_in(hosts.a, conf, "-v", command="up")
        charon = charons.start(hosts.b, client_swanctl(hosts.addr_a, hosts.addr_b, name, eap_id),
                               files=pki.files(name))  # fmt: skip
        try:
            with pytest.raises(CharonError):
                charon.initiate("net", "gw")
            log = charon.log(None)
        finally:
            rc, _, err = up.stop()
    assert rc == 0, err
    assert "received AUTHENTICATION_FAILED notify error" in log, log[-3000:]
    named = [x for x in err.splitlines() if f"'{eap_id}'" in x]
    assert len(named) == 1, err
    assert f"EAP-TLS authentication of '{eap_id}' failed: " in named[0], named
    assert reason in named[0].lower(), named


def gateway_swanctl(addr: str) -> str:
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
      id = {GW_ID}
    }}
    remote {{
      auth = eap-tls
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
"""


def test_espfast_eap_tls_client_of_charon(charons: CharonFactory, tmp_path: Path,
                                          pki: TlsPki) -> None:  # fmt: skip
    """charon is the gateway (``remote.auth = eap-tls``, ``eap_id = %any``): espfast
    answers EAP-Identity, runs TLS with its certificate (charon's fragments of 1024
    octets in, ours out), checks charon's certificate in IKE and in TLS, gets an address."""
    with TwoHosts.create("et") as hosts:
        hosts.b.run("ip", "addr", "add", f"{GW_NET}/32", "dev", "lo")
        files = {"x509/gw.crt": pki.cert("gw").read_bytes(),
                 "private/gw.key": pki.key("gw").read_bytes(),
                 "x509ca/ca.crt": pki.ca.read_bytes()}  # fmt: skip
        charon = charons.start(hosts.b, gateway_swanctl(hosts.addr_b), files=files)
        rw = client_toml(tmp_path, pki, gateway=hosts.addr_b, listen=hosts.addr_a)
        up = start_in(hosts.a, rw, "-v", command="up")
        try:
            charon.wait_child("net", timeout=20)
            ping = ["ping", "-c", "1", "-W", "1", GW_NET]
            assert wait_for(lambda: hosts.a.run(*ping, check=False).returncode == 0, timeout=10)
            (ike,) = charon.list_sas()
            log = charon.log(None)
        finally:
            rc, _, err = up.stop()
    assert rc == 0, err
    # (charon lists remote-eap-id only when it differs from the IKE identity, carol's too)
    assert ike.get("remote-eap-id", ike["remote-id"]) == CAROL, ike
    assert "EAP method EAP_TLS succeeded, MSK established" in log, log[-3000:]
    assert f"authentication of '{CAROL}' with EAP successful" in log, log[-3000:]
    assert "virtual IP 198.19.100.1" in err, err
