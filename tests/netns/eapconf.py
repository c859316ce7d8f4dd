"""``espfast up`` configs for road warriors with passwords (EAP-MSCHAPv2): a CA and a
gateway certificate from ``espfast pki``, a user file from ``espfast user add``, and the
gateway's and the client's connection lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from updaemon import client_conf, gateway_conf

from espfast.cli import main
from espfast.static import write_private

GW_ID = "gw.eap.test"
GW_NET, DNS, POOL = "198.19.2.1", "198.19.2.53", "198.19.100.0/24"
PASSWORD = "correct horse battery staple"


def pki_and_users(tmp_path: Path, password: str = PASSWORD) -> tuple[Path, Path]:
    """(the pki directory with ca.crt, gw.crt, gw.key; the user file with carol)."""
    pki = tmp_path / "pki"
    assert main(["pki", "ca", "--out", str(pki), "--dn", "O=espfast, CN=eap test ca"]) == 0
    assert main(["pki", "issue", "--ca", str(pki), "--id", GW_ID, "--name", "gw",
                 "--out", str(pki)]) == 0  # fmt: skip
    users = tmp_path / "users"
    add = subprocess.run([sys.executable, "-m", "espfast", "user", "-f", str(users), "add",
                          "carol"], input=password + "\n", text=True, check=False,
                         capture_output=True)  # fmt: skip
    assert add.returncode == 0, add.stderr
    return pki, users


def gateway_lines(pki: Path, users: Path) -> str:
    return (f'auth = "pubkey"\ncert = "{pki}/gw.crt"\nkey = "{pki}/gw.key"\n'
            f'remote_auth = "eap-mschapv2"\nusers = "{users}"')  # fmt: skip


def client_lines(pki: Path, password_file: Path, user: str = "carol") -> str:
    return (f'local_auth = "eap-mschapv2"\neap_id = "{user}"\n'
            f'password_file = "{password_file}"\ncacerts = ["{pki}/ca.crt"]')  # fmt: skip


def confs(
    tmp_path: Path,
    password: str,
    *,
    gw: str = "198.18.0.2",
    client: str = "198.18.0.1",
    inner: str = f"{GW_NET}/24",
    local_ts: str = "198.19.2.0/24",
) -> tuple[Path, Path]:
    """(gateway config, client config) in ``tmp_path``; the client uses ``password``."""
    pki, users = pki_and_users(tmp_path)
    gateway = gateway_conf(listen=gw, local_id=GW_ID, auth=gateway_lines(pki, users),
                           pool=POOL, dns=DNS, inner=inner, local_ts=local_ts)  # fmt: skip
    pw = write_private(tmp_path / "carol.pw", password + "\n")
    rw = client_conf(listen=client, gateway=gw, local_id=client, remote_id=GW_ID,
                     auth=client_lines(pki, pw), remote_ts=local_ts)  # fmt: skip
    return (write_private(tmp_path / "gw.toml", gateway),
            write_private(tmp_path / "rw.toml", rw))  # fmt: skip
