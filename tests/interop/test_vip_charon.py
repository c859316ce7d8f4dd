"""A road-warrior client that is strongSwan's charon (``vips = 0.0.0.0``, kernel-libipsec)
against an ``espfast up`` gateway with an address pool: charon asks for a virtual IP in
IKE_AUTH (CP(CFG_REQUEST)), gets the pool's first address and the DNS server, installs
the address and sends from it; the gateway routes the answers back to it. Then the
other way: espfast as the client of a charon gateway (``pools``)."""

from __future__ import annotations

import sys
from pathlib import Path

from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in, write_private
from tests.interop.conftest import INNER_A, INNER_B, CharonFactory
from tests.interop.strongswan import Connection, Psk, swanctl_conf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "netns"))
from updaemon import client_conf, gateway_conf

SECRET = b"vip interop test: a long enough pre-shared key"
PSK = Psk(ids=("gw.vip.test", "alice@vip.test"), secret=SECRET)
POOL, DNS = "198.19.100.0/24", "198.19.1.53"
AUTH = f'psk = "0x{SECRET.hex()}"'


def ping(hosts: TwoHosts, side: str, dst: str) -> bool:
    ns = hosts.a if side == "a" else hosts.b
    return ns.run("ping", "-c", "1", "-W", "1", dst, check=False).returncode == 0


def test_charon_road_warrior_gets_an_address_from_espfast(
    charons: CharonFactory, tmp_path: Path
) -> None:
    with TwoHosts.create("vip") as hosts:
        conf = gateway_conf(listen=hosts.addr_a, local_id=PSK.ids[0], auth=AUTH, pool=POOL,
                            dns=DNS, inner=f"{INNER_A}/24", local_ts="198.19.1.0/24")  # fmt: skip
        up = start_in(hosts.a, write_private(tmp_path / "gw.toml", conf), "-v", command="up")
        client = Connection(
            local_addrs=hosts.addr_b, remote_addrs=hosts.addr_a,
            local_id=PSK.ids[1], remote_id=PSK.ids[0],
            local_ts="dynamic", remote_ts="198.19.1.0/24", start_action="start",
            extra={"vips": "0.0.0.0"},
        )  # fmt: skip
        charon = charons.start(hosts.b, swanctl_conf([client], [PSK]))
        try:
            charon.wait_child("net")
            (ike,) = charon.list_sas()
            # charon's view: the address it was given, and the Child SA narrowed to it.
            (child,) = ike["child-sas"].values()
            assert child["local-ts"] == ["198.19.100.1/32"], child
            assert wait_for(lambda: ping(hosts, "b", INNER_A), timeout=10)
            assert ping(hosts, "a", "198.19.100.1")  # the gateway routes to the client
            log = charon.log(None)
        finally:
            rc, _, err = up.stop()
    assert rc == 0, err
    assert "installing new virtual IP 198.19.100.1" in log, log[-3000:]
    # Our CFG_REPLY as charon parsed it: the address and the DNS server (which this
    # charon, without its resolve plugin, does not install).
    assert "CPRP(ADDR DNS)" in log
    assert "virtual IP 198.19.100.1" in err


def test_espfast_road_warrior_gets_an_address_from_charon(
    charons: CharonFactory, tmp_path: Path
) -> None:
    """charon is the gateway (``pools``); espfast asks for any IPv4 address, puts the one
    it gets on its TUN device and sends from it."""
    with TwoHosts.create("vip") as hosts:
        hosts.b.run("ip", "addr", "add", f"{INNER_B}/32", "dev", "lo")
        gateway = Connection(
            local_addrs=hosts.addr_b, remote_addrs="%any",
            local_id=PSK.ids[0], remote_id=PSK.ids[1],
            local_ts="198.19.2.0/24", remote_ts="dynamic", extra={"pools": "rw"},
        )  # fmt: skip
        pools = f"pools {{\n  rw {{\n    addrs = {POOL}\n    dns = {DNS}\n  }}\n}}\n"
        charon = charons.start(hosts.b, swanctl_conf([gateway], [PSK]) + pools)
        conf = client_conf(listen=hosts.addr_a, gateway=hosts.addr_b, local_id=PSK.ids[1],
                           remote_id=PSK.ids[0], auth=AUTH, remote_ts="198.19.2.0/24")  # fmt: skip
        up = start_in(hosts.a, write_private(tmp_path / "rw.toml", conf), "-v", command="up")
        try:
            charon.wait_child("net")
            assert wait_for(lambda: ping(hosts, "a", INNER_B), timeout=10)
            addrs = hosts.a.run("ip", "-4", "-o", "addr", "show", "dev", "efrw0").stdout
            (ike,) = charon.list_sas()
            (child,) = ike["child-sas"].values()
            assert ping(hosts, "b", "198.19.100.1")
        finally:
            rc, _, err = up.stop()
    assert rc == 0, err
    assert "198.19.100.1/32" in addrs, addrs
    assert child["remote-ts"] == ["198.19.100.1/32"], child
    assert "virtual IP 198.19.100.1" in err
