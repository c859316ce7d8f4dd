"""A CA, a gateway and clients made with ``espfast pki``, and a road-warrior gateway config
using them: shared by the profile tests (unit, netns, interop)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from espfast.cli import main
from espfast.static import write_private

GATEWAY_ID = "vpn.example.test"
GATEWAY_ADDR = "198.18.0.2"
CLIENT_ID = "alice@example.test"
POOL = "198.19.100.0/24"
GW_NET = "198.19.2.0/24"
GW_INNER = "198.19.2.1"


@dataclass(frozen=True)
class Pki:
    root: Path

    @property
    def ca(self) -> Path:
        return self.root / "ca" / "ca.crt"

    def cert(self, name: str) -> Path:
        return self.root / "certs" / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.root / "certs" / f"{name}.key"


def make_pki(root: Path, key_type: str = "ecdsa") -> Pki:
    """ca/ca.crt; certs/gw (vpn.example.test, SAN 198.18.0.2), certs/alice (client,
    alice@example.test); other/ a second CA with certs/mallory (alice's name) from it."""
    ca, certs, other = root / "ca", root / "certs", root / "other"
    assert main(["pki", "ca", "--out", str(ca), "--type", key_type]) == 0
    assert main(["pki", "issue", "--ca", str(ca), "--id", GATEWAY_ID, "--san", GATEWAY_ADDR,
                 "--name", "gw", "--out", str(certs), "--type", key_type]) == 0  # fmt: skip
    assert main(["pki", "issue", "--ca", str(ca), "--id", CLIENT_ID, "--client",
                 "--name", "alice", "--out", str(certs), "--type", key_type]) == 0  # fmt: skip
    assert main(["pki", "ca", "--out", str(other), "--dn", "O=other, CN=Other CA"]) == 0
    assert main(["pki", "issue", "--ca", str(other), "--id", CLIENT_ID, "--client",
                 "--name", "mallory", "--out", str(certs)]) == 0  # fmt: skip
    return Pki(root)


def gateway_toml(pki: Pki, path: Path, *, ike: str | None = None, esp: str | None = None,
                 local_ts: str = GW_NET, pool: str = POOL, remote_id: str | None = None,
                 listen: str = GATEWAY_ADDR, name: str = "efgw0") -> Path:  # fmt: skip
    """A road-warrior gateway (connection "rw", child "net") with certificates."""
    extra = ""
    if ike is not None:
        extra += f'proposals = "{ike}"\n'
    if remote_id is not None:
        extra += f'remote_id = "{remote_id}"\n'
    child_extra = f'esp_proposals = "{esp}"\n' if esp is not None else ""
    text = f"""
[interface]
name = "{name}"
addresses = ["{GW_INNER}/24"]
listen = "{listen}:4500"

[[connection]]
name = "rw"
remote = "%any"
local_id = "{GATEWAY_ID}"
auth = "pubkey"
cert = "{pki.cert("gw")}"
key = "{pki.key("gw")}"
cacerts = ["{pki.ca}"]
pool = ["{pool}"]
{extra}
[[connection.child]]
name = "net"
local_ts = ["{local_ts}"]
{child_extra}"""
    return write_private(path, text)


EAP_USER, EAP_PASSWORD = "carol", "correct horse battery staple"


def add_user(users: Path, name: str = EAP_USER, password: str = EAP_PASSWORD) -> Path:
    """``espfast user -f USERS add NAME``, the password on its stdin."""
    add = subprocess.run([sys.executable, "-m", "espfast", "user", "-f", str(users), "add",
                          name], input=password + "\n", text=True, capture_output=True,
                         check=False)  # fmt: skip
    assert add.returncode == 0, add.stderr
    return users


def eap_text(pki: Pki, users: Path) -> str:
    """The lines that make a connection of :func:`gateway_toml` take EAP users."""
    return f'cacerts = ["{pki.ca}"]\nremote_auth = "eap-mschapv2"\nusers = "{users}"'


def eap_gateway_toml(pki: Pki, path: Path, users: Path | None = None, **options: str) -> Path:
    """:func:`gateway_toml` whose connection "rw" takes EAP-MSCHAPv2 users from ``users``
    (default: a "users" file next to ``path`` with carol, EAP_PASSWORD)."""
    if users is None:
        from espfast.control.eap import nt_password_hash
        from espfast.users import save

        users = path.parent / "users"
        save(users, {EAP_USER: nt_password_hash(EAP_PASSWORD)})
    gw = gateway_toml(pki, path, **options)  # type: ignore[arg-type]
    text = gw.read_text().replace(f'cacerts = ["{pki.ca}"]', eap_text(pki, users))
    return write_private(path, text)
