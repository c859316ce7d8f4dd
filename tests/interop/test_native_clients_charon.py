"""What the native IKEv2 clients (iOS/macOS, Windows) send, played by charon against an
``espfast up`` gateway with an RSA certificate: classic RSA signatures (AUTH method 1)
and no SIGNATURE_HASH_ALGORITHMS (``charon.signature_authentication = no``), no CERTREQ
(``send_certreq = no``: the gateway must send its certificate all the same),
AES-CBC-256 + HMAC-SHA2-256 + MODP-2048 for IKE and ESP, a Child SA rekey with a PFS
group, a virtual IP, ``remote_ts = 0.0.0.0/0`` narrowed to the gateway's network, and
INITIAL_CONTACT after the client lost its state (the gateway drops the stale IKE SA)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.tunnels.peerutil import cert_pem, issue, key_pem, new_key
from espfast.netns import Namespace, TwoHosts, wait_for
from espfast.static import start_in, write_private
from tests.interop.conftest import INNER_A, CharonFactory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "netns"))
from updaemon import status

GW_ID, CLIENT_ID = "gw.native.test", "alice.native.test"
POOL, NET = "198.19.100.0/24", "198.19.1.0/24"
NATIVE = "aes256-sha256-modp2048"
# What charon must do to look like the native clients (strongswan.conf, charon.*).
NATIVE_SETTINGS = {"signature_authentication": "no"}


def pki(tmp_path: Path) -> tuple[Path, Path, dict[str, bytes]]:
    """An RSA CA, the gateway's certificate and key (files), the client's (charon's
    swanctl files)."""
    ca_key = new_key("rsa", 2048)
    ca = issue("native test ca", ca_key)
    gw_key, rw_key = new_key("rsa", 2048), new_key("rsa", 2048)
    gw = issue(GW_ID, gw_key, (ca, ca_key), dns=[GW_ID])
    rw = issue(CLIENT_ID, rw_key, (ca, ca_key), dns=[CLIENT_ID])
    (tmp_path / "ca.crt").write_bytes(cert_pem(ca))
    (tmp_path / "gw.crt").write_bytes(cert_pem(gw))
    write_private(tmp_path / "gw.key", key_pem(gw_key).decode())
    files = {"x509ca/ca.pem": cert_pem(ca), "x509/rw.pem": cert_pem(rw),
             "private/rw.key": key_pem(rw_key)}  # fmt: skip
    return tmp_path / "gw.crt", tmp_path / "gw.key", files


def gateway(tmp_path: Path, addr: str, cert: Path, key: Path) -> Path:
    conf = f"""
[interface]
name = "efnat0"
addresses = ["{INNER_A}/24"]
listen = "{addr}:4500"

[[connection]]
name = "native"
remote = "%any"
local_id = "{GW_ID}"
auth = "pubkey"
cert = "{cert}"
key = "{key}"
cacerts = ["{tmp_path / "ca.crt"}"]
proposals = "aes256gcm16-prfsha256-x25519,{NATIVE},aes256-sha256-ecp256"
pool = ["{POOL}"]

[[connection.child]]
name = "net"
local_ts = ["{NET}"]
esp_proposals = "aes256gcm16,{NATIVE}"
"""
    return write_private(tmp_path / "gw.toml", conf)


def client_swanctl(addr_gw: str, addr_me: str) -> str:
    return f"""connections {{
  gw {{
    version = 2
    local_addrs = {addr_me}
    remote_addrs = {addr_gw}
    encap = yes
    vips = 0.0.0.0
    send_certreq = no
    proposals = {NATIVE}
    local {{
      auth = pubkey
      certs = rw.pem
      id = {CLIENT_ID}
    }}
    remote {{
      auth = pubkey
      id = {GW_ID}
    }}
    children {{
      net {{
        local_ts = dynamic
        remote_ts = 0.0.0.0/0
        esp_proposals = {NATIVE}
        start_action = none
      }}
    }}
  }}
}}
"""


def ping(ns: Namespace, dst: str) -> bool:
    return ns.run("ping", "-c", "1", "-W", "1", dst, check=False).returncode == 0


def test_native_like_client_rsa_cbc_modp_pfs_rekey(charons: CharonFactory, tmp_path: Path) -> None:
    cert, key, files = pki(tmp_path)
    with TwoHosts.create("native") as hosts:
        up = start_in(hosts.a, gateway(tmp_path, hosts.addr_a, cert, key), "-v", command="up")
        charon = charons.start(hosts.b, client_swanctl(hosts.addr_a, hosts.addr_b),
                               files=files, settings=NATIVE_SETTINGS)  # fmt: skip
        try:
            charon.initiate("net", "gw")
            charon.wait_child("net")
            (ike,) = charon.list_sas()
            (child,) = ike["child-sas"].values()
            assert wait_for(lambda: ping(hosts.b, INNER_A), timeout=10)
            # CREATE_CHILD_SA rekey with a new MODP-2048 exchange (PFS), then traffic.
            charon.rekey("net")
            assert wait_for(lambda: _rekeyed(charon.list_sas(), child["spi-in"]), timeout=15)
            (ike2,) = charon.list_sas()
            (child2,) = [c for c in ike2["child-sas"].values() if c["state"] == "INSTALLED"]
            assert ping(hosts.b, INNER_A)
            log = charon.log(None)
        finally:
            rc, _, err = up.stop()
    assert rc == 0, err
    # IKE: what the native clients negotiate.
    assert ike["encr-alg"] == "AES_CBC" and ike["encr-keysize"] == "256", ike
    assert ike["integ-alg"] == "HMAC_SHA2_256_128" and ike["dh-group"] == "MODP_2048", ike
    assert child["encr-alg"] == "AES_CBC" and child["integ-alg"] == "HMAC_SHA2_256_128", child
    # 0.0.0.0/0 narrowed to the gateway's network; the client got an address.
    assert child["remote-ts"] == [NET] and child["local-ts"] == ["198.19.100.1/32"], child
    # The rekeyed Child SA ran a MODP-2048 exchange (PFS).
    assert child2["dh-group"] == "MODP_2048", child2
    # Classic RSA signatures both ways: the client signs with method 1 and so does the
    # gateway (the client announced no RFC 7427 hash algorithms).
    assert f"authentication of '{CLIENT_ID}' (myself) with RSA signature successful" in log
    assert f"authentication of '{GW_ID}' with RSA signature successful" in log, log[-3000:]
    # No CERTREQ from the client, and the gateway's certificate came all the same.
    requests = [x for x in log.splitlines() if "generating IKE_AUTH request" in x]
    assert requests and all("CERTREQ" not in x for x in requests), requests
    assert any("parsed IKE_AUTH response" in x and "CERT" in x for x in log.splitlines()), log
    assert f'received end entity cert "CN={GW_ID}"' in log, log[-3000:]
    # The client announced no RFC 7427 hash algorithms.
    inits = [x for x in log.splitlines() if "generating IKE_SA_INIT request" in x]
    assert inits and all("HASH_ALG" not in x for x in inits), inits


def _rekeyed(sas: list[dict[str, object]], old_spi: object) -> bool:
    children = [c for ike in sas for c in ike["child-sas"].values()]  # type: ignore[attr-defined]
    installed = [c for c in children if c.get("state") == "INSTALLED"]
    return len(installed) == 1 and installed[0]["spi-in"] != old_spi


def test_native_like_client_initial_contact_replaces_stale_sa(
    charons: CharonFactory, tmp_path: Path
) -> None:
    """The client loses its state (charon killed without a DELETE) and comes back with
    INITIAL_CONTACT: the gateway drops the stale IKE SA and keeps only the new one."""
    cert, key, files = pki(tmp_path)
    with TwoHosts.create("native") as hosts:
        up = start_in(hosts.a, gateway(tmp_path, hosts.addr_a, cert, key), "-v", command="up")
        conf = client_swanctl(hosts.addr_a, hosts.addr_b)
        try:
            first = charons.start(hosts.b, conf, files=files, settings=NATIVE_SETTINGS)
            first.initiate("net", "gw")
            first.wait_child("net")
            first.kill()
            second = charons.start(hosts.b, conf, files=files, settings=NATIVE_SETTINGS)
            second.initiate("net", "gw")
            second.wait_child("net")
            assert wait_for(lambda: len(status(hosts.a)) == 1, timeout=10)
            sas = status(hosts.a)
            assert wait_for(lambda: ping(hosts.b, INNER_A), timeout=10)
            log = second.log(None)
        finally:
            rc, _, err = up.stop()
    assert rc == 0, err
    assert any("generating IKE_AUTH request" in x and "N(INIT_CONTACT)" in x
               for x in log.splitlines()), log[-3000:]  # fmt: skip
    assert len(sas) == 1, json.dumps(sas)
