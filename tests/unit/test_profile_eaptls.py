"""``espfast profile --client-cert`` for a gateway connection with ``remote_auth =
"eap-tls"``: each format asks for EAP-TLS with the client's certificate (iOS/macOS: a
certificate with ExtendedAuthEnabled; the strongSwan app: ikev2-eap-tls; swanctl.conf:
local.auth = eap-tls with the certificate's identity as eap_id; espfast: local_auth =
"eap-tls", which it loads); Windows is refused in one line (not yet)."""

from __future__ import annotations

import json
import plistlib
import re
import tomllib
from pathlib import Path

import pytest

from espfast.cli import main
from espfast.config import load_up
from tests.unit.profile_pki import CLIENT_ID, GATEWAY_ADDR, GATEWAY_ID, Pki, gateway_toml, make_pki
from tests.unit.test_profiles import accepted, apple_proposals


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def eaptls_gateway(pki: Pki, path: Path) -> Path:
    gw = gateway_toml(pki, path, ike="aes128gcm16-prfsha256-x25519")
    gw.write_text(gw.read_text().replace("pool = [", 'remote_auth = "eap-tls"\npool = ['))
    assert load_up(gw).connections[0].ike.auth.eap_tls is not None
    return gw


def profile(gw: Path, kind: str, out: Path) -> int:
    return main(["profile", "-c", str(gw), "--conn", "rw", "--for", kind, "--server",
                 GATEWAY_ADDR, "--client-cert", str(gw.parent / "alice.crt"),
                 "--client-key", str(gw.parent / "alice.key"), "-o", str(out)])  # fmt: skip


@pytest.fixture
def gw(pki: Pki, tmp_path: Path) -> Path:
    for suffix in ("crt", "key"):
        (tmp_path / f"alice.{suffix}").write_bytes(Path(pki.root / "certs" / f"alice.{suffix}")
                                                   .read_bytes())  # fmt: skip
    return eaptls_gateway(pki, tmp_path / "gw.toml")


@pytest.mark.parametrize("kind", ["ios", "macos"])
def test_apple_eap_tls_profile(gw: Path, tmp_path: Path, kind: str) -> None:
    out = tmp_path / "p.mobileconfig"
    assert profile(gw, kind, out) == 0
    doc = plistlib.loads(out.read_bytes())
    by_type = {p["PayloadType"]: p for p in doc["PayloadContent"]}
    ikev2 = by_type["com.apple.vpn.managed"]["IKEv2"]
    assert ikev2["AuthenticationMethod"] == "Certificate" and ikev2["ExtendedAuthEnabled"] == 1
    assert ikev2["LocalIdentifier"] == CLIENT_ID and ikev2["RemoteIdentifier"] == GATEWAY_ID
    assert ikev2["PayloadCertificateUUID"] == by_type["com.apple.security.pkcs12"]["PayloadUUID"]
    assert "AuthName" not in ikev2 and "AuthPassword" not in ikev2
    accepted(gw, *apple_proposals(ikev2))


def test_sswan_eap_tls_profile(gw: Path, tmp_path: Path) -> None:
    out = tmp_path / "p.sswan"
    assert profile(gw, "android", out) == 0
    doc = json.loads(out.read_text())
    assert doc["type"] == "ikev2-eap-tls"
    assert doc["local"]["id"] == CLIENT_ID and doc["local"]["p12"]
    assert doc["remote"]["id"] == GATEWAY_ID


def test_swanctl_eap_tls_profile(gw: Path, tmp_path: Path) -> None:
    out = tmp_path / "swanctl"
    assert profile(gw, "strongswan", out) == 0
    conf = (out / "swanctl.conf").read_text()
    assert re.search(r"^\s*auth = eap-tls$", conf, re.M)
    assert re.search(r"^\s*certs = client.crt$", conf, re.M)
    assert re.search(rf'^\s*eap_id = "{CLIENT_ID}"$', conf, re.M)
    assert re.search(r"^\s*auth = pubkey$", conf, re.M)  # the gateway's certificate
    assert (out / "private" / "client.key").exists()


def test_espfast_eap_tls_profile_loads(gw: Path, tmp_path: Path) -> None:
    out = tmp_path / "client"
    assert profile(gw, "espfast", out) == 0
    toml = tomllib.loads((out / "client.toml").read_text())["connection"][0]
    assert toml["local_auth"] == "eap-tls" and "auth" not in toml
    (conn,) = load_up(out / "client.toml").connections  # as espfast up reads it
    assert conn.ike.auth.eap_tls_peer is not None
    assert conn.ike.auth.eap_identity == CLIENT_ID  # local_id: named by the certificate
    accepted(gw, conn.ike.ike_proposals[0], conn.ike.children[0].esp_proposals[0])


def test_windows_eap_tls_is_refused(gw: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert profile(gw, "windows", tmp_path / "p.ps1") != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "eap-tls" in err[0], err
    assert not (tmp_path / "p.ps1").exists()
