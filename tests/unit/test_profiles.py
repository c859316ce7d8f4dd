"""``espfast profile``: every client format parses with its own reader, says what the gateway
says (identity, CA, client credential), and every proposal in it is one the gateway's
config accepts, checked with the gateway's own selection (control/proposals.py) against
the config as ``espfast up`` loads it. Untrusted text (names, identities) is escaped for
each format; impossible requests are refused with one line."""

from __future__ import annotations

import base64
import json
import plistlib
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12

from espfast.cli import main
from espfast.config import load_up
from espfast.control.constants import ProtocolId
from espfast.control.errors import RemoteProtocolError
from espfast.control.proposals import ProposalSpec, parse_esp, parse_ike, select
from espfast.profiles import apple, windows
from espfast.profiles.choose import PRF_OF_INTEG
from tests.unit.profile_pki import CLIENT_ID, GATEWAY_ID, GW_NET, Pki, gateway_toml, make_pki

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def profile(pki: Pki, gw: Path, kind: str, out: Path, *extra: str, client: str = "alice") -> int:
    pw = out.parent / "p12pw"
    pw.write_text(PASSWORD + "\n")
    return main(["profile", "-c", str(gw), "--conn", "rw", "--for", kind,
                 "--server", "198.18.0.2", "--client-cert", str(pki.cert(client)),
                 "--client-key", str(pki.key(client)), "--p12-password-file", str(pw),
                 "-o", str(out), *extra])  # fmt: skip


def accepted(gw: Path, ike: ProposalSpec, esp: ProposalSpec) -> None:
    """The gateway's selection accepts both (ESP with its PFS group, as in a rekey)."""
    conn = load_up(gw).connections[0]
    select(conn.ike.ike_proposals, [ike.to_proposal(1)])
    select(conn.ike.children[0].esp_proposals, [esp.to_proposal(1, b"\0\0\0\1")])


def ca_der(pki: Pki) -> bytes:
    return x509.load_pem_x509_certificate(pki.ca.read_bytes()).public_bytes(Encoding.DER)


def check_p12(data: bytes) -> None:
    key, cert, _ = pkcs12.load_key_and_certificates(data, PASSWORD.encode())
    assert key is not None and cert is not None
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value[0].value \
        == CLIENT_ID  # fmt: skip


# --- iOS / macOS ---------------------------------------------------------------------------


def _inverse(table: dict[Any, Any], value: Any) -> Any:
    (key,) = [k for k, v in table.items() if v == value]
    return key


def apple_proposals(ikev2: dict[str, Any]) -> tuple[ProposalSpec, ProposalSpec]:
    """Apple's vocabulary back to proposals: the IKE PRF goes with IntegrityAlgorithm, AEAD
    ciphers take no integrity transform, the Child SA's group only with EnablePFS."""
    sa, child = (
        ikev2["IKESecurityAssociationParameters"],
        ikev2["ChildSecurityAssociationParameters"],
    )
    encr = _inverse(apple.ENCRYPTION, sa["EncryptionAlgorithm"])
    integ = _inverse(apple.INTEGRITY, sa["IntegrityAlgorithm"])
    aead = "GCM" in sa["EncryptionAlgorithm"] or "ChaCha" in sa["EncryptionAlgorithm"]
    ike = ProposalSpec(ProtocolId.IKE, (encr,), () if aead else (integ,), (PRF_OF_INTEG[integ],),
                       (_inverse(apple.DH_GROUPS, sa["DiffieHellmanGroup"]),))  # fmt: skip
    c_encr = _inverse(apple.ENCRYPTION, child["EncryptionAlgorithm"])
    c_aead = "GCM" in child["EncryptionAlgorithm"] or "ChaCha" in child["EncryptionAlgorithm"]
    c_integ = () if c_aead else (_inverse(apple.INTEGRITY, child["IntegrityAlgorithm"]),)
    pfs = (_inverse(apple.DH_GROUPS, child["DiffieHellmanGroup"]),) if ikev2["EnablePFS"] else ()
    return ike, ProposalSpec(ProtocolId.ESP, (c_encr,), c_integ, (), pfs, (0,))


def test_ios_profile_parses_and_matches_the_gateway(pki: Pki, tmp_path: Path) -> None:
    gw = gateway_toml(pki, tmp_path / "gw.toml")
    out = tmp_path / "alice.mobileconfig"
    assert profile(pki, gw, "ios", out) == 0
    doc = plistlib.loads(out.read_bytes())
    assert doc["PayloadType"] == "Configuration"
    by_type = {p["PayloadType"]: p for p in doc["PayloadContent"]}
    assert by_type["com.apple.security.root"]["PayloadContent"] == ca_der(pki)
    identity = by_type["com.apple.security.pkcs12"]
    check_p12(identity["PayloadContent"])
    assert "Password" not in identity  # the device asks; the profile does not carry it
    vpn = by_type["com.apple.vpn.managed"]
    assert vpn["VPNType"] == "IKEv2"
    ikev2 = vpn["IKEv2"]
    assert ikev2["RemoteAddress"] == "198.18.0.2"
    assert ikev2["RemoteIdentifier"] == GATEWAY_ID
    assert ikev2["LocalIdentifier"] == CLIENT_ID
    assert ikev2["AuthenticationMethod"] == "Certificate"
    assert ikev2["PayloadCertificateUUID"] == identity["PayloadUUID"]
    assert ikev2["CertificateType"] == "ECDSA256"
    ike, esp = apple_proposals(ikev2)
    accepted(gw, ike, esp)
    # The strongest of the gateway's defaults that Apple can name.
    assert str(ike) == "aes256gcm16-prfsha384-ecp384" and str(esp) == "aes256gcm16"

    # A second generation: same identifiers, fresh UUIDs.
    again = tmp_path / "again.mobileconfig"
    assert profile(pki, gw, "ios", again) == 0
    doc2 = plistlib.loads(again.read_bytes())
    ids = [(p["PayloadIdentifier"], p["PayloadUUID"]) for p in [doc, *doc["PayloadContent"]]]
    ids2 = [(p["PayloadIdentifier"], p["PayloadUUID"]) for p in [doc2, *doc2["PayloadContent"]]]
    assert [i for i, _ in ids] == [i for i, _ in ids2]
    assert not {u for _, u in ids} & {u for _, u in ids2}
    assert len({i for i, _ in ids}) == len(ids)


def test_ios_cbc_gateway_with_pfs(pki: Pki, tmp_path: Path) -> None:
    """AES-CBC with SHA-384 for IKE, CBC/SHA-256 with a PFS group for ESP."""
    gw = gateway_toml(pki, tmp_path / "gw.toml", ike="aes128-aes256-sha256-sha384-modp2048-ecp256",
                      esp="aes128-sha256-ecp256-modp2048")  # fmt: skip
    out = tmp_path / "p.mobileconfig"
    assert profile(pki, gw, "macos", out) == 0
    vpn = next(p for p in plistlib.loads(out.read_bytes())["PayloadContent"]
               if p["PayloadType"] == "com.apple.vpn.managed")  # fmt: skip
    ike, esp = apple_proposals(vpn["IKEv2"])
    accepted(gw, ike, esp)
    assert str(ike) == "aes256-sha384-prfsha384-ecp256"
    assert str(esp) == "aes128-sha256-ecp256" and vpn["IKEv2"]["EnablePFS"] == 1


def test_signed_ios_profile_verifies(pki: Pki, tmp_path: Path) -> None:
    """--sign-cert: CMS SignedData that openssl verifies against the CA, carrying the plist."""
    gw = gateway_toml(pki, tmp_path / "gw.toml")
    out = tmp_path / "signed.mobileconfig"
    assert profile(pki, gw, "ios", out, "--sign-cert", str(pki.cert("gw")),
                   "--sign-key", str(pki.key("gw"))) == 0  # fmt: skip
    assert not out.read_bytes().startswith(b"<?xml")
    verified = subprocess.run(
        ["openssl", "cms", "-verify", "-inform", "DER", "-in", str(out), "-CAfile", str(pki.ca),
         "-purpose", "any"], capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert plistlib.loads(verified)["PayloadType"] == "Configuration"
    # Tampered content does not verify.
    data = bytearray(out.read_bytes())
    data[data.index(b"IKEv2</string>") + 1] ^= 1
    tampered = tmp_path / "tampered"
    tampered.write_bytes(data)
    bad = subprocess.run(
        ["openssl", "cms", "-verify", "-inform", "DER", "-in", str(tampered), "-CAfile",
         str(pki.ca), "-purpose", "any"], capture_output=True,
    )  # fmt: skip
    assert bad.returncode != 0


# --- Windows -------------------------------------------------------------------------------


def ps_unquote(literal: str) -> str:
    """Read back a PowerShell single-quoted string literal, strictly."""
    quotes = "'\u2018\u2019\u201a\u201b"
    assert literal[0] in quotes and literal[-1] in quotes
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        if body[i] in quotes:
            assert i + 1 < len(body) and body[i + 1] in quotes, f"unescaped quote in {literal!r}"
            i += 1
        out.append(body[i])
        i += 1
    return "".join(out)


def ps_params(script: str, cmdlet: str) -> dict[str, str]:
    (line,) = [x for x in script.splitlines() if x.startswith(cmdlet + " ")]
    words = line.split()
    return {w[1:]: (words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("-")
                    else "") for i, w in enumerate(words) if w.startswith("-")}  # fmt: skip


def windows_proposals(p: dict[str, str]) -> tuple[ProposalSpec, ProposalSpec]:
    encr = _inverse(windows.ENCRYPTION_METHOD, p["EncryptionMethod"])
    integ = _inverse(windows.INTEGRITY_CHECK, p["IntegrityCheckMethod"])
    aead = p["EncryptionMethod"].startswith("GCM")
    ike = ProposalSpec(ProtocolId.IKE, (encr,), () if aead else (integ,), (PRF_OF_INTEG[integ],),
                       (_inverse(windows.DH_GROUP, p["DHGroup"]),))  # fmt: skip
    c_encr = _inverse(windows.CIPHER_TRANSFORM, p["CipherTransformConstants"])
    c_aead = p["CipherTransformConstants"].startswith("GCM")
    if c_aead:
        assert p["AuthenticationTransformConstants"] == p["CipherTransformConstants"]
    c_integ = () if c_aead else (
        _inverse(windows.AUTH_TRANSFORM_CBC, p["AuthenticationTransformConstants"]),)  # fmt: skip
    pfs = _inverse(windows.PFS_GROUP, p["PfsGroup"])
    return ike, ProposalSpec(ProtocolId.ESP, (c_encr,), c_integ, (), (pfs,) if pfs else (), (0,))


def test_windows_script(pki: Pki, tmp_path: Path) -> None:
    gw = gateway_toml(pki, tmp_path / "gw.toml", esp="aes256gcm16-ecp384,aes128-sha256")
    out = tmp_path / "alice.ps1"
    name = "Bob's \u2019VPN\u2019 $(Remove-Item C:\\) `n"
    assert profile(pki, gw, "windows", out, "--name", name) == 0
    script = out.read_bytes().decode("utf-8-sig")
    assert "\r\n" in script
    script = script.replace("\r\n", "\n")
    (name_line,) = [x for x in script.splitlines() if x.startswith("$Name = ")]
    assert ps_unquote(name_line.removeprefix("$Name = ")) == name
    for cmdlet in ("Import-Certificate", "Import-PfxCertificate", "Add-VpnConnection",
                   "Set-VpnConnectionIPsecConfiguration", "Add-VpnConnectionRoute"):  # fmt: skip
        assert re.search(rf"^\s*{cmdlet} ", script, re.M), cmdlet
    add = ps_params(script, "Add-VpnConnection")
    assert add["TunnelType"] == "Ikev2" and add["AuthenticationMethod"] == "MachineCertificate"
    assert add["ServerAddress"] == "$Server" and "SplitTunneling" in add
    assert ps_params(script, "Add-VpnConnectionRoute")["DestinationPrefix"] == f"'{GW_NET}'"
    ike, esp = windows_proposals(ps_params(script, "Set-VpnConnectionIPsecConfiguration"))
    accepted(gw, ike, esp)
    assert str(ike) == "aes256gcm16-prfsha384-ecp384" and str(esp) == "aes256gcm16-ecp384"
    # The embedded CA and PKCS#12 are the real ones.
    blobs = re.findall(r"Import-Embedded \((.*?)\) '([^']+)'", script, re.S)
    decoded = {
        fname: base64.b64decode("".join(ps_unquote(x.strip()) for x in body.split(" +\n")))
        for body, fname in blobs
    }
    assert decoded["espfast-ca0.cer"] == ca_der(pki)
    check_p12(decoded["espfast-client.p12"])
    assert PASSWORD not in script


def test_windows_refuses_a_gateway_it_cannot_talk_to(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = gateway_toml(pki, tmp_path / "gw.toml", ike="aes256gcm16-prfsha256-x25519")
    out = tmp_path / "x.ps1"
    assert profile(pki, gw, "windows", out) == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert (
        line.startswith("espfast profile: Windows cannot make any IKE proposal")
        and "x25519" in line
    )
    assert not out.exists()


def test_windows_notes_a_certificate_without_the_server_name(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = gateway_toml(pki, tmp_path / "gw.toml")
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    base = ["profile", "-c", str(gw), "--conn", "rw", "--for", "windows", "--client-cert",
            str(pki.cert("alice")), "--client-key", str(pki.key("alice")),
            "--p12-password-file", str(pw)]  # fmt: skip
    assert main([*base, "--server", GATEWAY_ID, "-o", str(tmp_path / "a.ps1")]) == 0
    assert "note" not in capsys.readouterr().err
    assert main([*base, "--server", "gw2.example.test", "-o", str(tmp_path / "b.ps1")]) == 0
    (line,) = capsys.readouterr().err.splitlines()
    assert "does not name gw2.example.test" in line


def test_ios_notes_a_dn_gateway_identity(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = gateway_toml(pki, tmp_path / "gw.toml")
    gw.write_text(gw.read_text().replace(f'local_id = "{GATEWAY_ID}"', ""))
    assert profile(pki, gw, "ios", tmp_path / "a.mobileconfig") == 0
    (line,) = capsys.readouterr().err.splitlines()
    assert "identifies itself by its DN" in line
    doc = plistlib.loads((tmp_path / "a.mobileconfig").read_bytes())
    vpn = next(p for p in doc["PayloadContent"] if p["PayloadType"] == "com.apple.vpn.managed")
    assert vpn["IKEv2"]["RemoteIdentifier"] == f"CN={GATEWAY_ID}"


@pytest.mark.parametrize("value", ["it's", "\u2018a\u2019", "''", "a\u201ab\u201b", '$x`y"z'])
def test_ps_quote_round_trips(value: str) -> None:
    assert ps_unquote(windows.ps_quote(value)) == value


# --- Android (.sswan), strongSwan, espfast -------------------------------------------------


def test_sswan_profile(pki: Pki, tmp_path: Path) -> None:
    gw = gateway_toml(pki, tmp_path / "gw.toml", ike="chacha20poly1305-prfsha512-x448-x25519")
    out = tmp_path / "alice.sswan"
    assert profile(pki, gw, "android", out, "--name", 'a "quoted" \\ name') == 0
    doc = json.loads(out.read_text())
    assert doc["type"] == "ikev2-cert" and doc["name"] == 'a "quoted" \\ name'
    assert doc["remote"] == {"addr": "198.18.0.2", "id": GATEWAY_ID,
                             "cert": base64.b64encode(ca_der(pki)).decode()}  # fmt: skip
    assert doc["local"]["id"] == CLIENT_ID
    check_p12(base64.b64decode(doc["local"]["p12"]))
    assert doc["split-tunneling"] == {"subnets": GW_NET}
    (ike,), (esp,) = parse_ike(doc["ike-proposal"]), parse_esp(doc["esp-proposal"])
    accepted(gw, ike, esp)
    assert doc["ike-proposal"] == "chacha20poly1305-prfsha512-x448"


def test_swanctl_profile_files(pki: Pki, tmp_path: Path) -> None:
    """The files and the proposals (charon loads it in tests/interop/test_profile_charon.py)."""
    gw = gateway_toml(pki, tmp_path / "gw.toml")
    out = tmp_path / "swanctl"
    assert profile(pki, gw, "strongswan", out) == 0
    conf = (out / "swanctl.conf").read_text()
    assert (out / "x509ca" / "gateway-ca0.crt").read_bytes() == pki.ca.read_bytes()
    assert (out / "private" / "client.key").stat().st_mode & 0o077 == 0
    (ike_text,) = re.findall(r"^\s*proposals = (\S+)$", conf, re.M)
    (esp_text,) = re.findall(r"^\s*esp_proposals = (\S+)$", conf, re.M)
    accepted(gw, parse_ike(ike_text)[0], parse_esp(esp_text)[0])
    assert f'id = "{GATEWAY_ID}"' in conf and f'id = "{CLIENT_ID}"' in conf


def test_espfast_profile_loads_and_matches(pki: Pki, tmp_path: Path) -> None:
    gw = gateway_toml(pki, tmp_path / "gw.toml", ike="aes128gcm16-prfsha256-ecp256-x25519",
                      esp="aes128gcm16,aes256-sha512")  # fmt: skip
    out = tmp_path / "client"
    assert profile(pki, gw, "espfast", out) == 0
    client = load_up(out / "client.toml")
    (conn,) = client.connections
    assert conn.remote == ("198.18.0.2", 500)
    assert conn.ike.vips and str(conn.ike.vips[0]) == "0.0.0.0"
    accepted(gw, conn.ike.ike_proposals[0], conn.ike.children[0].esp_proposals[0])
    assert str(conn.ike.ike_proposals[0]) == "aes128gcm16-prfsha256-x25519"
    assert tomllib.loads((out / "client.toml").read_text())["connection"][0]["auth"] == "pubkey"


def test_swanctl_quoting() -> None:
    from espfast.profiles.swanctl import quote, section

    assert quote('CN=a "b", O=c\\d') == '"CN=a \\"b\\", O=c\\\\d"'
    assert section("road warriors.1") == "road_warriors_1"


def test_espfast_toml_escapes_names(pki: Pki, tmp_path: Path) -> None:
    from espfast.profiles.native import toml_str

    for value in ['a"b', "back\\slash", "tab\there", "del\x7f", "ünï"]:
        assert tomllib.loads(f"v = {toml_str(value)}")["v"] == value


# --- refusals ------------------------------------------------------------------------------


REFUSALS = {
    "client from another CA": ({}, "mallory", "198.18.0.2", "would refuse"),
    "gateway wants someone else": ({"remote_id": "*@other.test"}, "alice", "198.18.0.2",
                                   "accepts only clients named"),
    "not a server name": ({}, "alice", "vpn example", "neither an IP address nor a DNS name"),
    "espfast needs an address": ({}, "alice", "vpn.example.test", "dials an IP address"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_refusals_are_one_line(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    options, client, server, words = REFUSALS[case]
    gw = gateway_toml(pki, tmp_path / "gw.toml", **options)
    pw = tmp_path / "pw"
    pw.write_text(PASSWORD)
    rc = main(["profile", "-c", str(gw), "--conn", "rw", "--for", "espfast", "--server", server,
               "--client-cert", str(pki.cert(client)), "--client-key", str(pki.key(client)),
               "-o", str(tmp_path / "out")])  # fmt: skip
    assert rc == 1
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("espfast profile: ") and words in line, line


def test_psk_gateway_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from espfast.up import pair_configs

    gw = tmp_path / "gw.toml"
    gw.write_text(pair_configs("a pre-shared key long enough for the test")[0])
    gw.chmod(0o600)
    name = load_up(gw).connections[0].name
    assert main(["profile", "-c", str(gw), "--conn", name, "--for", "ios", "--server",
                 "198.18.0.1", "-o", str(tmp_path / "x")]) == 1  # fmt: skip
    (line,) = capsys.readouterr().err.splitlines()
    assert "pre-shared key" in line


def test_gateway_choice_is_checked_by_select(pki: Pki, tmp_path: Path) -> None:
    """The helper the tests rely on really refuses what the gateway does not take."""
    gw = gateway_toml(pki, tmp_path / "gw.toml", ike="aes128gcm16-prfsha256-ecp256")
    with pytest.raises(RemoteProtocolError):
        accepted(gw, parse_ike("aes256gcm16-prfsha256-ecp256")[0], parse_esp("aes128gcm16")[0])


def test_dual_stack_pool_asks_for_both_families(pki: Pki, tmp_path: Path) -> None:
    gw = gateway_toml(pki, tmp_path / "gw.toml")
    gw.write_text(
        gw.read_text()
        .replace('pool = ["198.19.100.0/24"]', 'pool = ["198.19.100.0/24", "2001:2:0:100::/64"]')
        .replace('local_ts = ["198.19.2.0/24"]', 'local_ts = ["198.19.2.0/24", "2001:2:0:2::/64"]')
    )
    assert profile(pki, gw, "espfast", tmp_path / "e") == 0
    (conn,) = load_up(tmp_path / "e" / "client.toml").connections
    assert [str(v) for v in conn.ike.vips] == ["0.0.0.0", "::"]
    assert [str(n) for ts in conn.ike.children[0].remote_ts for n in ts.networks()] == [
        GW_NET,
        "2001:2:0:2::/64",
    ]
    assert profile(pki, gw, "strongswan", tmp_path / "s") == 0
    conf = (tmp_path / "s" / "swanctl.conf").read_text()
    assert "vips = 0.0.0.0,::" in conf and "remote_ts = 198.19.2.0/24,2001:2:0:2::/64" in conf


def test_apple_profile_escapes_xml(pki: Pki, tmp_path: Path) -> None:
    gw = gateway_toml(pki, tmp_path / "gw.toml")
    name = "<key>x</key> & ]]> \"'"
    assert profile(pki, gw, "ios", tmp_path / "a.mobileconfig", "--name", name) == 0
    doc = plistlib.loads((tmp_path / "a.mobileconfig").read_bytes())
    assert doc["PayloadDisplayName"] == name
    vpn = next(p for p in doc["PayloadContent"] if p["PayloadType"] == "com.apple.vpn.managed")
    assert vpn["UserDefinedName"] == name
