"""``espfast up`` (the daemon, with its C dataplane) against strongSwan's charon with
kernel-libipsec: IKEv2 with a PSK, then ping through the negotiated Child SA, whichever
side initiates. libipsec has no extended sequence numbers: 32-bit ones throughout."""

from __future__ import annotations

from pathlib import Path

import pytest

from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in, write_private
from tests.interop.conftest import INNER_A, INNER_B, CharonFactory
from tests.interop.strongswan import Connection, Psk, swanctl_conf

SECRET = b"up interop test: a long enough pre-shared key"
PSK = Psk(ids=("a.up.test", "b.up.test"), secret=SECRET)


def espfast_conf(hosts: TwoHosts, *, initiate: bool, esp: str, ike: str) -> str:
    return f"""
[interface]
name = "efup0"
addresses = ["{INNER_A}/24"]
listen = "{hosts.addr_a}:4500"

[[connection]]
name = "charon"
remote = "{hosts.addr_b if initiate else "%any"}"
local_id = "{PSK.ids[0]}"
remote_id = "{PSK.ids[1]}"
psk = "0x{SECRET.hex()}"
proposals = "{ike}"

[[connection.child]]
name = "net"
local_ts = ["198.19.1.0/24"]
remote_ts = ["198.19.2.0/24"]
esp_proposals = "{esp}"
"""


def tunnel_works(hosts: TwoHosts) -> bool:
    """One ping through, retried briefly: the two ends install their SAs at different
    moments (the responder before it answers IKE_AUTH, the initiator after)."""
    return wait_for(
        lambda: hosts.a.run("ping", "-c", "1", "-W", "1", "-I", INNER_A, INNER_B, check=False)
        .returncode == 0,
        timeout=5,
    )  # fmt: skip


CASES = [
    ("espfast", "aes128gcm16", "aes128gcm16-prfsha256-x25519"),
    ("espfast", "aes256-sha256", "aes256-sha384-ecp384"),
    ("charon", "chacha20poly1305", "chacha20poly1305-prfsha256-x25519"),
    ("charon", "aes256gcm16", "aes256gcm16-prfsha384-ecp256"),
]
# What charon reports for the ESP transform: (encr-alg, encr-keysize or None).
CHARON_NAMES = {
    "aes128gcm16": ("AES_GCM_16", "128"),
    "aes256gcm16": ("AES_GCM_16", "256"),
    "chacha20poly1305": ("CHACHA20_POLY1305", None),
    "aes256-sha256": ("AES_CBC", "256"),
}


@pytest.mark.parametrize(("initiator", "esp", "ike"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_up_with_charon(
    charons: CharonFactory, tmp_path: Path, initiator: str, esp: str, ike: str
) -> None:
    with TwoHosts.create("st") as hosts:
        hosts.b.run("ip", "addr", "add", f"{INNER_B}/32", "dev", "lo")
        conn = Connection(
            local_addrs=hosts.addr_b,
            remote_addrs=hosts.addr_a,
            local_id=PSK.ids[1],
            remote_id=PSK.ids[0],
            local_ts="198.19.2.0/24",
            remote_ts="198.19.1.0/24",
            proposals=ike,
            esp_proposals=esp,
        )
        charon = charons.start(hosts.b, swanctl_conf([conn], [PSK]))
        text = espfast_conf(hosts, initiate=initiator == "espfast", esp=esp, ike=ike)
        up = start_in(hosts.a, write_private(tmp_path / "a.toml", text), command="up")
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
            after = charon.installed_children("net")[0]
        finally:
            status, out, err = up.stop()
        assert ping_a.returncode == 0, ping_a.stdout + err
        assert ping_b.returncode == 0, ping_b.stdout + err
        assert status == 0, err
        assert int(after["packets-in"]) >= 6 and int(after["packets-out"]) >= 6
        assert "child SA up" in err and "ike sas up 1" in out
        assert SECRET.hex() not in out + err
        # Our shutdown sent DELETE: charon has no IKE SA left.
        assert not charon.list_sas()


def test_rekey_with_charon_keeps_ping_flowing(charons: CharonFactory, tmp_path: Path) -> None:
    """espfast rekeys the Child SA after rekey_time (CREATE_CHILD_SA with REKEY_SA); a ping
    running across the rekey loses nothing (the new SAs go in before the old ones go)."""
    ike, esp = "aes128gcm16-prfsha256-x25519", "aes128gcm16"
    with TwoHosts.create("st") as hosts:
        hosts.b.run("ip", "addr", "add", f"{INNER_B}/32", "dev", "lo")
        conn = Connection(
            local_addrs=hosts.addr_b, remote_addrs=hosts.addr_a,
            local_id=PSK.ids[1], remote_id=PSK.ids[0],
            local_ts="198.19.2.0/24", remote_ts="198.19.1.0/24",
            proposals=ike, esp_proposals=esp,
        )  # fmt: skip
        charon = charons.start(hosts.b, swanctl_conf([conn], [PSK]))
        text = espfast_conf(hosts, initiate=True, esp=esp, ike=ike) + "rekey_time = 2\n"
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


def test_up_with_charon_certificates(charons: CharonFactory, tmp_path: Path) -> None:
    """Certificates from ``espfast pki`` on both ends (ECDSA); espfast up initiates."""
    from espfast.cli import main

    pki = tmp_path / "pki"
    assert main(["pki", "ca", "--out", str(pki)]) == 0
    for name in ("a", "b"):
        assert main(["pki", "issue", "--ca", str(pki), "--id", f"{name}.up.test",
                     "--name", name, "--out", str(pki)]) == 0  # fmt: skip
    files = {
        "x509ca/ca.pem": (pki / "ca.crt").read_bytes(),
        "x509/b.pem": (pki / "b.crt").read_bytes(),
        "private/b.key": (pki / "b.key").read_bytes(),
    }
    ike, esp = "aes128gcm16-prfsha256-ecp256", "aes128gcm16"
    with TwoHosts.create("st") as hosts:
        hosts.b.run("ip", "addr", "add", f"{INNER_B}/32", "dev", "lo")
        conn = Connection(
            local_addrs=hosts.addr_b, remote_addrs=hosts.addr_a,
            local_id="b.up.test", remote_id="a.up.test",
            local_ts="198.19.2.0/24", remote_ts="198.19.1.0/24",
            auth="pubkey", local_cert="b.pem", proposals=ike, esp_proposals=esp,
        )  # fmt: skip
        charon = charons.start(hosts.b, swanctl_conf([conn]), files=files)
        text = espfast_conf(hosts, initiate=True, esp=esp, ike=ike)
        text = text.replace(f'local_id = "{PSK.ids[0]}"', 'local_id = "a.up.test"')
        text = text.replace(f'remote_id = "{PSK.ids[1]}"', 'remote_id = "b.up.test"')
        text = text.replace(
            f'psk = "0x{SECRET.hex()}"',
            f'auth = "pubkey"\ncert = "{pki}/a.crt"\nkey = "{pki}/a.key"\n'
            f'cacerts = ["{pki}/ca.crt"]',
        )
        up = start_in(hosts.a, write_private(tmp_path / "a.toml", text), command="up")
        try:
            charon.wait_child("net")
            assert tunnel_works(hosts)
            charon.wait_log("authentication of 'a.up.test' with ECDSA")
        finally:
            status, _, err = up.stop()
        assert status == 0, err
        assert "child SA up, aes128gcm16" in err
