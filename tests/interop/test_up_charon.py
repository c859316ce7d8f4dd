"""``espfast up`` (the daemon, with its C dataplane) against strongSwan's charon with
kernel-libipsec, the product against the reference: both directions (espfast initiates,
charon initiates) x (PSK, ECDSA certificates, RSA certificates, made by ``espfast pki``),
each tunnel carrying ping both ways, both ends agreeing on the IKE and Child SA SPIs
(``espfast status --json`` against charon's list-sas); a proposal mismatch that fails
with one clear line on each side; a Child SA rekey under traffic. libipsec has no
extended sequence numbers: 32-bit ones throughout."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from espfast.netns import TwoHosts, wait_for
from espfast.static import control_socket_in, start_in, write_private
from tests.interop.conftest import INNER_A, INNER_B, CharonFactory
from tests.interop.strongswan import Charon, CharonError, Connection, Psk, swanctl_conf

SECRET = b"up interop test: a long enough pre-shared key"
IDS = ("a.up.test", "b.up.test")
PSK = Psk(ids=IDS, secret=SECRET)
TS_A, TS_B = "198.19.1.0/24", "198.19.2.0/24"


def espfast_conf(hosts: TwoHosts, *, initiate: bool, esp: str, ike: str, auth: str) -> str:
    """``auth`` is the connection's credential lines (psk = ..., or auth = "pubkey" ...)."""
    return f"""
[interface]
name = "efup0"
addresses = ["{INNER_A}/24"]
listen = "{hosts.addr_a}:4500"

[[connection]]
name = "charon"
remote = "{hosts.addr_b if initiate else "%any"}"
local_id = "{IDS[0]}"
remote_id = "{IDS[1]}"
{auth}
proposals = "{ike}"

[[connection.child]]
name = "net"
local_ts = ["{TS_A}"]
remote_ts = ["{TS_B}"]
esp_proposals = "{esp}"
"""


PSK_AUTH = f'psk = "0x{SECRET.hex()}"'


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One CA per key type (``espfast pki``), a.up.test and b.up.test issued by it."""
    from espfast.cli import main

    dirs = {}
    for kind in ("ecdsa", "rsa"):
        out = tmp_path_factory.mktemp(f"pki-{kind}")
        size = ["--bits", "2048"] if kind == "rsa" else []
        assert main(["pki", "ca", "--out", str(out), "--type", kind, *size]) == 0
        for name, ident in zip("ab", IDS, strict=True):
            assert main(["pki", "issue", "--ca", str(out), "--id", ident, "--name", name,
                         "--out", str(out), "--type", kind, *size]) == 0  # fmt: skip
        dirs[kind] = out
    return dirs


def credentials(auth: str, pki: dict[str, Path]) -> tuple[str, dict[str, bytes]]:
    """espfast's credential lines and charon's swanctl files for ``auth``."""
    if auth == "psk":
        return PSK_AUTH, {}
    d = pki[auth]
    lines = (f'auth = "pubkey"\ncert = "{d}/a.crt"\nkey = "{d}/a.key"\n'
             f'cacerts = ["{d}/ca.crt"]')  # fmt: skip
    files = {
        "x509ca/ca.pem": (d / "ca.crt").read_bytes(),
        "x509/b.pem": (d / "b.crt").read_bytes(),
        "private/b.key": (d / "b.key").read_bytes(),
    }
    return lines, files


def start_charon(
    hosts: TwoHosts, charons: CharonFactory, auth: str, ike: str, esp: str,
    files: dict[str, bytes],
) -> Charon:  # fmt: skip
    conn = Connection(
        local_addrs=hosts.addr_b, remote_addrs=hosts.addr_a,
        local_id=IDS[1], remote_id=IDS[0], local_ts=TS_B, remote_ts=TS_A,
        auth="psk" if auth == "psk" else "pubkey",
        local_cert=None if auth == "psk" else "b.pem",
        proposals=ike, esp_proposals=esp,
    )  # fmt: skip
    secrets = [PSK] if auth == "psk" else []
    return charons.start(hosts.b, swanctl_conf([conn], secrets), files=files)


def tunnel_works(hosts: TwoHosts) -> bool:
    """One ping through, retried briefly: the two ends install their SAs at different
    moments (the responder before it answers IKE_AUTH, the initiator after)."""
    return wait_for(
        lambda: hosts.a.run("ping", "-c", "1", "-W", "1", "-I", INNER_A, INNER_B, check=False)
        .returncode == 0,
        timeout=5,
    )  # fmt: skip


def espfast_status(hosts: TwoHosts) -> dict[str, Any]:
    """``espfast status --json`` run in namespace a against the daemon there."""
    out = hosts.a.run(
        sys.executable, "-m", "espfast", "status", "--json",
        "--socket", str(control_socket_in(hosts.a)),
    )  # fmt: skip
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


# (initiator, auth, ESP transform, IKE proposal): every ESP transform family appears once.
MATRIX = [
    ("espfast", "psk", "aes128gcm16", "aes128gcm16-prfsha256-x25519"),
    ("charon", "psk", "chacha20poly1305", "chacha20poly1305-prfsha256-x25519"),
    ("espfast", "ecdsa", "aes256-sha256", "aes256-sha384-ecp384"),
    ("charon", "ecdsa", "aes256gcm16", "aes256gcm16-prfsha384-ecp256"),
    ("espfast", "rsa", "aes256gcm16", "aes256gcm16-prfsha256-modp2048"),
    ("charon", "rsa", "aes128gcm16", "aes128gcm16-prfsha256-x25519"),
]
# What charon reports for the ESP transform: (encr-alg, encr-keysize or None).
CHARON_NAMES = {
    "aes128gcm16": ("AES_GCM_16", "128"),
    "aes256gcm16": ("AES_GCM_16", "256"),
    "chacha20poly1305": ("CHACHA20_POLY1305", None),
    "aes256-sha256": ("AES_CBC", "256"),
}


@pytest.mark.parametrize(
    ("initiator", "auth", "esp", "ike"), MATRIX, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in MATRIX]
)
def test_up_with_charon(
    charons: CharonFactory, pki: dict[str, Path], tmp_path: Path,
    initiator: str, auth: str, esp: str, ike: str,
) -> None:  # fmt: skip
    lines, files = credentials(auth, pki)
    with TwoHosts.create("i3") as hosts:
        hosts.b.run("ip", "addr", "add", f"{INNER_B}/32", "dev", "lo")
        charon = start_charon(hosts, charons, auth, ike, esp, files)
        text = espfast_conf(hosts, initiate=initiator == "espfast", esp=esp, ike=ike, auth=lines)
        up = start_in(hosts.a, write_private(tmp_path / "a.toml", text), "-v", command="up")
        try:
            if initiator == "charon":
                charon.initiate("net")
            child = charon.wait_child("net")
            alg, keysize = CHARON_NAMES[esp]
            assert child["encr-alg"] == alg and child.get("encr-keysize") == keysize, child
            assert tunnel_works(hosts)
            ping_a = hosts.a.run(
                "ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", INNER_A, INNER_B, check=False
            )
            ping_b = hosts.b.run(
                "ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", INNER_B, INNER_A, check=False
            )
            (ike_sa,) = charon.list_sas()
            status = espfast_status(hosts)
        finally:
            code, out, err = up.stop()
        assert ping_a.returncode == 0, ping_a.stdout + err
        assert ping_b.returncode == 0, ping_b.stdout + err
        assert code == 0, err
        # Both ends agree on the IKE SA and its Child SA: in on one end is out on the other.
        (ours,) = status["ike_sas"]
        assert ours["state"] == "ESTABLISHED" and ike_sa["state"] == "ESTABLISHED"
        assert ours["initiator"] == (initiator == "espfast")
        assert (ours["spi_i"], ours["spi_r"]) == (
            int(ike_sa["initiator-spi"], 16), int(ike_sa["responder-spi"], 16)
        )  # fmt: skip
        (theirs,) = ike_sa["child-sas"].values()
        (mine,) = ours["child_sas"]
        assert (mine["spi_in"], mine["spi_out"]) == (
            int(theirs["spi-out"], 16), int(theirs["spi-in"], 16)
        )  # fmt: skip
        assert mine["transform"] == esp and mine["packets_in"] >= 6 and mine["packets_out"] >= 6
        assert int(theirs["packets-in"]) >= 6 and int(theirs["packets-out"]) >= 6
        assert f"child SA up, {esp}" in err and "ike sas up 1" in out
        if auth != "psk":  # charon checked our signature (RFC 7427 or classic) ...
            line = charon.wait_log(f"authentication of '{IDS[0]}' with")
            assert auth.upper() in line and "successful" in line, line
        assert SECRET.hex() not in out + err
        # Our shutdown sent DELETE: charon has no IKE SA left.
        assert not charon.list_sas()


@pytest.mark.parametrize("initiator", ["espfast", "charon"])
def test_proposal_mismatch_fails_clearly_on_both_sides(
    charons: CharonFactory, tmp_path: Path, initiator: str
) -> None:
    """espfast speaks only AES-GCM/x25519, charon only AES-CBC/ECP-384: no tunnel, and
    each side's log says why in one line."""
    mine, theirs = "aes128gcm16-prfsha256-x25519", "aes256-sha384-ecp384"
    with TwoHosts.create("i3") as hosts:
        hosts.b.run("ip", "addr", "add", f"{INNER_B}/32", "dev", "lo")
        charon = start_charon(hosts, charons, "psk", theirs, "aes128gcm16", {})
        text = espfast_conf(
            hosts, initiate=initiator == "espfast", esp="aes128gcm16", ike=mine, auth=PSK_AUTH
        )
        up = start_in(hosts.a, write_private(tmp_path / "a.toml", text), "-v", command="up")
        try:
            if initiator == "espfast":
                charon.wait_log("received proposals unacceptable")
                # espfast took the answer: its IKE SA is gone (it retries later).
                assert wait_for(lambda: espfast_status(hosts)["ike_sas"] == [], timeout=5)
            else:
                with pytest.raises(CharonError, match="NO_PROPOSAL_CHOSEN"):
                    charon.initiate("net", timeout=5)
                charon.wait_log("received NO_PROPOSAL_CHOSEN notify error")
        finally:
            code, out, err = up.stop()
        assert code == 0, err
        assert charon.installed_children("net") == []
        assert "ike sas up 0" in out
        if initiator == "espfast":
            assert "charon: IKE SA down: peer answered NO_PROPOSAL_CHOSEN" in err, err
        else:
            assert (
                "refused: no acceptable proposal (peer offered aes256-sha384-prfsha384-ecp384)"
                in err
            ), err


def test_rekey_with_charon_keeps_ping_flowing(charons: CharonFactory, tmp_path: Path) -> None:
    """espfast rekeys the Child SA after rekey_time (CREATE_CHILD_SA with REKEY_SA); a ping
    running across the rekey loses nothing (the new SAs go in before the old ones go)."""
    ike, esp = "aes128gcm16-prfsha256-x25519", "aes128gcm16"
    with TwoHosts.create("i3") as hosts:
        hosts.b.run("ip", "addr", "add", f"{INNER_B}/32", "dev", "lo")
        charon = start_charon(hosts, charons, "psk", ike, esp, {})
        text = espfast_conf(hosts, initiate=True, esp=esp, ike=ike, auth=PSK_AUTH)
        text += "rekey_time = 2\n"
        up = start_in(hosts.a, write_private(tmp_path / "a.toml", text), command="up")
        try:
            first = charon.wait_child("net")["spi-in"]
            assert tunnel_works(hosts)
            # 40 echo requests over 4 s: the rekey happens 1.8-2 s after the Child SA came up.
            ping = hosts.a.run(
                "ping", "-c", "40", "-i", "0.1", "-W", "2", "-I", INNER_A, INNER_B, check=False
            )
            children = charon.installed_children("net")
        finally:
            status, out, err = up.stop()
        assert status == 0, err
        assert "child sas rekeyed 1" in out or "child sas rekeyed 2" in out, out
        assert [c["spi-in"] for c in children] != [first], children
        assert " 0% packet loss" in ping.stdout, ping.stdout
