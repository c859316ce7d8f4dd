"""espfast's dataplane against strongSwan's userspace ESP (libipsec), with keys from IKE.

Two charons negotiate a Child SA; charon a logs its Child SA keys (chd level 4, in this
test's temporary directory only). Charon b is then killed (SIGKILL: no DELETE reaches
a, so a keeps the SA) and ``espfast static`` takes its place on 198.18.0.2:4500 with
b's SPIs and keys. Pings from a cross charon's ESP encapsulation into espfast's
decapsulation, and back; espfast's counters show the packets and no failures.
libipsec has no extended sequence numbers, so every case runs with 32-bit ones.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from espfast.netns import TwoHosts
from espfast.static import start_in, write_private
from tests.interop.conftest import INNER_A, INNER_B, CharonFactory
from tests.interop.strongswan import Psk, psk_pair

PSK = Psk(ids=("a.peer.test", "b.peer.test"), secret=b"esp interop test secret")
TS = ("198.19.1.0/24", "198.19.2.0/24")


def espfast_b_conf(
    hosts: TwoHosts, transform: str, child: dict[str, str], keys: dict[str, bytes]
) -> str:
    """espfast static in b's place: what charon a sends is b's inbound SA, and so on."""
    sa = {
        "out": (child["spi-in"], "responder"),  # b -> a: the responder's keys (RFC 7296 §2.17)
        "in": (child["spi-out"], "initiator"),
    }
    text = f"""
[interface]
name = "efpeer0"
addresses = ["{INNER_B}/24"]
mtu = 1400
listen = "{hosts.addr_b}:4500"

[[sa]]
name = "charon"
transform = "{transform}"
esn = false
peer = "{hosts.addr_a}:4500"
local_ts = ["{TS[1]}"]
remote_ts = ["{TS[0]}"]
"""
    for direction, (spi, role) in sa.items():
        text += (
            f'\n[sa.{direction}]\nspi = "0x{spi}"\nenc_key = "{keys[f"encryption {role}"].hex()}"\n'
        )
        if f"integrity {role}" in keys:
            text += f'integ_key = "{keys[f"integrity {role}"].hex()}"\n'
    return text


@pytest.mark.parametrize(
    "transform",
    ["aes128gcm16", "aes256gcm16", "chacha20poly1305", "aes128-sha256", "aes256-sha512"],
)
def test_espfast_and_libipsec_exchange_esp(
    hosts: TwoHosts, charons: CharonFactory, tmp_path: Path, transform: str
) -> None:
    conf_a, conf_b = psk_pair((hosts.addr_a, hosts.addr_b), PSK, TS, esp_proposals=transform)
    a = charons.start(hosts.a, conf_a, log_levels={"chd": 4})
    b = charons.start(hosts.b, conf_b)
    a.initiate("net")
    child = a.wait_child("net")
    keys = a.child_keys()
    aead = "integrity initiator" not in keys
    assert aead == (transform in ("aes128gcm16", "aes256gcm16", "chacha20poly1305"))
    b.kill()
    hosts.b.run("ip", "addr", "del", f"{INNER_B}/32", "dev", "lo")
    conf = write_private(tmp_path / "b.toml", espfast_b_conf(hosts, transform, child, keys))
    espfast = start_in(hosts.b, conf, "--json")
    try:
        hosts.a.run("ping", "-c", "3", "-i", "0.2", "-W", "2", "-I", INNER_A, INNER_B)
    finally:
        status, out, err = espfast.stop()
    assert status == 0, err
    report = json.loads(out)
    sas = {sa["direction"]: sa for sa in report["sas"]}
    assert sas["in"]["packets"] >= 3 and sas["out"]["packets"] >= 3
    assert sas["in"]["auth_failures"] == 0 and sas["in"]["policy_drops"] == 0
    after = a.installed_children("net")[0]
    assert int(after["packets-in"]) >= 3  # charon decrypted what espfast sent
