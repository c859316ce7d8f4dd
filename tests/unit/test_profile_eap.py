"""``espfast profile --user``: profiles for road warriors with passwords (EAP-MSCHAPv2) of a
gateway connection with ``remote_auth = "eap-mschapv2"``. Each format parses with its own
reader, asks for EAP and names the user, carries the CA of the gateway's certificate and
no client certificate, every proposal in it is one the gateway accepts, and the password
is in it only when ``--password-file`` gave it. Users the gateway would refuse are
refused with one line."""

from __future__ import annotations

import json
import plistlib
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from espfast.cli import main
from espfast.config import load_up
from espfast.control.proposals import parse_esp, parse_ike
from tests.unit.profile_pki import (
    EAP_PASSWORD,
    EAP_USER,
    GATEWAY_ADDR,
    GATEWAY_ID,
    Pki,
    eap_gateway_toml,
    gateway_toml,
    make_pki,
)
from tests.unit.test_profiles import (
    accepted,
    apple_proposals,
    ca_der,
    ps_params,
    ps_unquote,
    windows_proposals,
)

FILES = {"ios": "p.mobileconfig", "macos": "p.mobileconfig", "windows": "p.ps1",
         "android": "p.sswan", "strongswan": "swanctl", "espfast": "client"}  # fmt: skip


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def eap_profile(gw: Path, kind: str, out: Path, *extra: str, user: str = EAP_USER,
                password: str | None = None) -> int:  # fmt: skip
    args = ["profile", "-c", str(gw), "--conn", "rw", "--for", kind, "--server", GATEWAY_ADDR,
            "--user", user, "-o", str(out), *extra]  # fmt: skip
    if password is not None:
        pw = out.parent / f"{out.name}.pw"
        pw.write_text(password + "\n")
        args += ["--password-file", str(pw)]
    return main(args)


def everything(out: Path) -> bytes:
    """The profile's bytes (all files of a directory profile)."""
    if out.is_dir():
        return b"".join(p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file())
    return out.read_bytes()


def apple_vpn(out: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = plistlib.loads(out.read_bytes())
    by_type = {p["PayloadType"]: p for p in doc["PayloadContent"]}
    assert "com.apple.security.pkcs12" not in by_type  # no client certificate
    return by_type, by_type["com.apple.vpn.managed"]["IKEv2"]


@pytest.mark.parametrize("kind", ["ios", "macos"])
def test_apple_eap_profile(pki: Pki, tmp_path: Path, kind: str) -> None:
    gw = eap_gateway_toml(pki, tmp_path / "gw.toml")
    out = tmp_path / FILES[kind]
    assert eap_profile(gw, kind, out) == 0
    by_type, ikev2 = apple_vpn(out)
    assert by_type["com.apple.security.root"]["PayloadContent"] == ca_der(pki)
    assert ikev2["AuthenticationMethod"] == "None" and ikev2["ExtendedAuthEnabled"] == 1
    assert ikev2["AuthName"] == ikev2["LocalIdentifier"] == EAP_USER
    assert ikev2["RemoteIdentifier"] == GATEWAY_ID and ikev2["RemoteAddress"] == GATEWAY_ADDR
    assert ikev2["CertificateType"] == "ECDSA256"  # the gateway's certificate
    assert "AuthPassword" not in ikev2 and "PayloadCertificateUUID" not in ikev2
    accepted(gw, *apple_proposals(ikev2))
    # Asked for, the password is in it (and the file is the owner's only).
    again = tmp_path / "with.mobileconfig"
    assert eap_profile(gw, kind, again, password=EAP_PASSWORD) == 0
    assert apple_vpn(again)[1]["AuthPassword"] == EAP_PASSWORD
    assert again.stat().st_mode & 0o077 == 0


def test_windows_eap_script(pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gw = eap_gateway_toml(pki, tmp_path / "gw.toml", esp="aes128gcm16,aes256-sha256")
    out = tmp_path / FILES["windows"]
    assert eap_profile(gw, "windows", out, password=EAP_PASSWORD) == 0
    assert "never carry the password" in capsys.readouterr().err
    script = out.read_bytes().decode("utf-8-sig").replace("\r\n", "\n")
    assert re.search(r"^\$eap = New-EapConfiguration$", script, re.M)
    add = ps_params(script, "Add-VpnConnection")
    assert add["AuthenticationMethod"] == "Eap" and add["TunnelType"] == "Ikev2"
    assert add["EapConfigXmlStream"] == "$eap.EapConfigXmlStream"
    assert "Import-PfxCertificate" not in script and "Import-Certificate" in script
    (user_line,) = [x for x in script.splitlines() if x.startswith("$User = ")]
    assert ps_unquote(user_line.removeprefix("$User = ")) == EAP_USER
    accepted(gw, *windows_proposals(ps_params(script, "Set-VpnConnectionIPsecConfiguration")))
    assert EAP_PASSWORD not in script


def test_windows_quotes_the_user_name(pki: Pki, tmp_path: Path) -> None:
    from espfast.control.eap import nt_password_hash
    from espfast.users import save

    name = "o'brien$(x)`"
    gw = eap_gateway_toml(pki, tmp_path / "gw.toml")
    save(tmp_path / "users", {name: nt_password_hash(EAP_PASSWORD)})
    out = tmp_path / FILES["windows"]
    assert eap_profile(gw, "windows", out, user=name) == 0
    script = out.read_bytes().decode("utf-8-sig")
    (user_line,) = [x for x in script.splitlines() if x.startswith("$User = ")]
    assert ps_unquote(user_line.removeprefix("$User = ")) == name


def test_sswan_eap_profile(pki: Pki, tmp_path: Path) -> None:
    gw = eap_gateway_toml(pki, tmp_path / "gw.toml")
    out = tmp_path / FILES["android"]
    assert eap_profile(gw, "android", out, password=EAP_PASSWORD) == 0
    doc = json.loads(out.read_text())
    assert doc["type"] == "ikev2-eap"
    assert doc["local"] == {"id": EAP_USER, "eap_id": EAP_USER}
    assert doc["remote"]["id"] == GATEWAY_ID
    accepted(gw, parse_ike(doc["ike-proposal"])[0], parse_esp(doc["esp-proposal"])[0])
    assert EAP_PASSWORD not in out.read_text()


def swanctl_secret(conf: str) -> str | None:
    found = re.findall(r'^\s*secret = "(.*)"$', conf, re.M)
    return found[0] if found else None


def test_swanctl_eap_profile(pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gw = eap_gateway_toml(pki, tmp_path / "gw.toml")
    out = tmp_path / FILES["strongswan"]
    assert eap_profile(gw, "strongswan", out) == 0
    assert "no --password-file" in capsys.readouterr().err
    conf = (out / "swanctl.conf").read_text()
    assert re.search(r"^\s*auth = eap-mschapv2$", conf, re.M)
    assert re.search(rf'^\s*eap_id = "{EAP_USER}"$', conf, re.M)
    assert re.search(r"^\s*auth = pubkey$", conf, re.M)  # the gateway's certificate
    assert not re.search(r"^\s*certs =", conf, re.M) and not (out / "private").exists()
    assert not re.search(r"^secrets", conf, re.M) and swanctl_secret(conf) is None
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "swanctl.conf", "x509ca/gateway-ca0.crt"]  # fmt: skip
    (ike_text,) = re.findall(r"^\s*proposals = (\S+)$", conf, re.M)
    (esp_text,) = re.findall(r"^\s*esp_proposals = (\S+)$", conf, re.M)
    accepted(gw, parse_ike(ike_text)[0], parse_esp(esp_text)[0])
    # With the password: a secrets section for the user, quoted.
    weird = 'pass "word" \\ x'
    from espfast.control.eap import nt_password_hash
    from espfast.users import save

    save(tmp_path / "users", {EAP_USER: nt_password_hash(weird)})
    assert eap_profile(gw, "strongswan", tmp_path / "s2", password=weird) == 0
    conf = (tmp_path / "s2" / "swanctl.conf").read_text()
    assert re.search(r"^secrets \{$", conf, re.M)
    assert swanctl_secret(conf) == weird.replace("\\", "\\\\").replace('"', '\\"')


def test_espfast_eap_profile_loads(pki: Pki, tmp_path: Path) -> None:
    gw = eap_gateway_toml(pki, tmp_path / "gw.toml", ike="aes128gcm16-prfsha256-x25519")
    out = tmp_path / FILES["espfast"]
    assert eap_profile(gw, "espfast", out, password=EAP_PASSWORD) == 0
    toml = tomllib.loads((out / "client.toml").read_text())["connection"][0]
    assert toml["local_auth"] == "eap-mschapv2" and toml["eap_id"] == EAP_USER
    assert toml["password_file"] == "password" and "cert" not in toml and "auth" not in toml
    assert (out / "password").read_text() == EAP_PASSWORD + "\n"
    assert (out / "password").stat().st_mode & 0o077 == 0
    (conn,) = load_up(out / "client.toml").connections  # as espfast up reads it
    assert conn.ike.auth.eap_identity == EAP_USER
    accepted(gw, conn.ike.ike_proposals[0], conn.ike.children[0].esp_proposals[0])
    # Without --password-file: the config names the file, the profile does not carry it.
    bare = tmp_path / "bare"
    assert eap_profile(gw, "espfast", bare) == 0
    assert not (bare / "password").exists()
    assert tomllib.loads((bare / "client.toml").read_text())["connection"][0][
        "password_file"] == "password"  # fmt: skip


@pytest.mark.parametrize("kind", sorted(FILES))
def test_no_password_unless_given(pki: Pki, tmp_path: Path, kind: str) -> None:
    gw = eap_gateway_toml(pki, tmp_path / "gw.toml")
    out = tmp_path / FILES[kind]
    assert eap_profile(gw, kind, out) == 0
    data = everything(out)
    assert EAP_PASSWORD.encode() not in data and EAP_USER.encode() in data
    if out.is_dir():
        assert all(p.stat().st_mode & 0o077 == 0 for p in out.rglob("*") if p.is_file())


EAP_REFUSALS = {
    "unknown user": ({"user": "mallory"}, "no user 'mallory'"),
    "wrong password": ({"password": "not it"}, "would refuse this password"),
    "control characters in the password": ({"password": "a\x1bb"}, "control characters"),
    "bad user name": ({"user": "two words"}, "--user"),
    "certificate for a password gateway": (
        {"extra": ("--client-cert", "C", "--client-key", "K")}, "no --client-cert"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(EAP_REFUSALS))
def test_eap_refusals_are_one_line(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    options, words = EAP_REFUSALS[case]
    gw = eap_gateway_toml(pki, tmp_path / "gw.toml")
    out = tmp_path / "out.sswan"
    rc = eap_profile(gw, "android", out, *options.get("extra", ()),  # type: ignore[arg-type]
                     user=options.get("user", EAP_USER),  # type: ignore[arg-type]
                     password=options.get("password"))  # type: ignore[arg-type]  # fmt: skip
    assert rc == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("espfast profile: ") and words in line, line
    assert str(options.get("password", EAP_PASSWORD)) not in line  # never echoed
    assert not out.exists()


def test_password_gateway_needs_user_and_cert_gateway_refuses_it(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    eap = eap_gateway_toml(pki, tmp_path / "eap.toml")
    base = ["profile", "--conn", "rw", "--for", "ios", "--server", GATEWAY_ADDR]
    assert main([*base, "-c", str(eap), "-o", str(tmp_path / "a")]) == 1
    assert "give --user" in capsys.readouterr().err
    assert main([*base, "-c", str(eap), "--client-cert", str(pki.cert("alice")), "--client-key",
                 str(pki.key("alice")), "-o", str(tmp_path / "b")]) == 1  # fmt: skip
    assert "passwords (remote_auth)" in capsys.readouterr().err
    cert_gw = gateway_toml(pki, tmp_path / "cert.toml")
    assert eap_profile(cert_gw, "ios", tmp_path / "c") == 1
    assert "not passwords" in capsys.readouterr().err


def test_eap_gateway_without_its_ca(pki: Pki, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """An EAP gateway needs no cacerts for its clients, but the profile needs its CA."""
    gw = eap_gateway_toml(pki, tmp_path / "gw.toml")
    gw.write_text(gw.read_text().replace(f'cacerts = ["{pki.ca}"]\n', ""))
    assert load_up(gw).connections[0].ike.auth.eap_users is not None  # still a gateway
    assert eap_profile(gw, "android", tmp_path / "x.sswan") == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert "not among its cacerts" in line and "list that CA in cacerts" in line


def test_eap_gateway_identity_pattern(pki: Pki, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A gateway that accepts only some identities: the user name must be one of them."""
    gw = eap_gateway_toml(pki, tmp_path / "gw.toml", remote_id="*@example.test")
    assert eap_profile(gw, "android", tmp_path / "x.sswan") == 1
    assert "accepts only clients named" in capsys.readouterr().err
