"""Road warriors: an ``espfast up`` gateway hands out virtual IPs from its pool (RFC 7296
§2.19, CP payloads in IKE_AUTH); an ``espfast up`` client asks for one, puts it on its
TUN device and sends from it. The client restarts (INITIAL_CONTACT) and gets the same
address back; the gateway's status names it."""

from __future__ import annotations

import time
from pathlib import Path

from updaemon import client_conf, gateway_conf, one_tunnel, ping, status

from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in, write_private

PSK = "a pre-shared key long enough for the road warrior test"
GW_NET, DNS = "198.19.2.1", "198.19.2.53"

AUTH = f'psk = "{PSK}"'
GATEWAY = gateway_conf(listen="198.18.0.2", local_id="gw.vip.test", auth=AUTH,
                       pool="198.19.100.0/24", dns=DNS, inner=f"{GW_NET}/24",
                       local_ts="198.19.2.0/24")  # fmt: skip
CLIENT = client_conf(listen="198.18.0.1", gateway="198.18.0.2", local_id="alice@vip.test",
                     remote_id="gw.vip.test", auth=AUTH, remote_ts="198.19.2.0/24")  # fmt: skip


def test_client_gets_a_virtual_ip_and_keeps_it(tmp_path: Path) -> None:
    gw_conf = write_private(tmp_path / "gw.toml", GATEWAY)
    client_conf = write_private(tmp_path / "client.toml", CLIENT)
    with TwoHosts.create("vip") as hosts:
        gw = start_in(hosts.b, gw_conf, command="up")
        client = start_in(hosts.a, client_conf, "-v", command="up")
        try:
            assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=15)
            addrs = hosts.a.run("ip", "-4", "-o", "addr", "show", "dev", "efrw0").stdout
            assert "198.19.100.1/32" in addrs, addrs
            # The gateway sees the client's traffic come from its virtual IP, and answers.
            assert ping(hosts.b, "198.19.100.1")
            (ike_c,) = status(hosts.a)
            (ike_g,) = status(hosts.b)
            assert ike_c["virtual_ips"] == ike_g["peer_virtual_ips"] == ["198.19.100.1"]
            (child_g,) = ike_g["child_sas"]
            assert child_g["remote_ts"] == ["198.19.100.1/32"]
            # The client restarts (SIGKILL: no DELETE) and comes back: INITIAL_CONTACT
            # clears its old IKE SA, and its identity's lease gives it the same address.
            client.proc.kill()
            client.proc.wait(5)
            restarted = time.monotonic()
            client = start_in(hosts.a, client_conf, "-v", command="up")
            assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=15)
            print(f"back {time.monotonic() - restarted:.1f} s after the client restarted")
            assert wait_for(lambda: one_tunnel(hosts.b), timeout=5), status(hosts.b)
            (ike_g,) = status(hosts.b)
            assert ike_g["peer_virtual_ips"] == ["198.19.100.1"]
        finally:
            _, _, err = client.stop()
            gw.stop()
    assert "virtual IP 198.19.100.1" in err, err


def test_client_gets_an_ipv4_and_an_ipv6_address(tmp_path: Path) -> None:
    """vips = 0.0.0.0 and ::, a pool of each family: one address of each, both on the
    client's TUN device, both carrying traffic (ping and ping -6 from the client)."""
    gw_conf = gateway_conf(
        listen="198.18.0.2", local_id="gw.vip.test", auth=AUTH,
        pool=["198.19.100.0/24", "2001:2:0:100::/64"], dns=[DNS, "2001:2:0:2::53"],
        inner=[f"{GW_NET}/24", "2001:2:0:2::1/64"], local_ts=["198.19.2.0/24", "2001:2:0:2::/64"],
    )  # fmt: skip
    cl_conf = client_conf(
        listen="198.18.0.1", gateway="198.18.0.2", local_id="bob@vip.test",
        remote_id="gw.vip.test", auth=AUTH, remote_ts=["198.19.2.0/24", "2001:2:0:2::/64"],
        vips=["0.0.0.0", "::"],
    )  # fmt: skip
    with TwoHosts.create("vip") as hosts:
        gw = start_in(hosts.b, write_private(tmp_path / "gw.toml", gw_conf), command="up")
        client = start_in(hosts.a, write_private(tmp_path / "rw.toml", cl_conf), command="up")
        try:
            assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=15)
            six = hosts.a.run("ping", "-6", "-c", "1", "-W", "2", "2001:2:0:2::1", check=False)
            addrs = hosts.a.run("ip", "-o", "addr", "show", "dev", "efrw0").stdout
            (ike_g,) = status(hosts.b)
        finally:
            client.stop()
            gw.stop()
    assert six.returncode == 0, six.stdout + six.stderr
    assert "198.19.100.1/32" in addrs and "2001:2:0:100::1/128" in addrs, addrs
    assert ike_g["peer_virtual_ips"] == ["198.19.100.1", "2001:2:0:100::1"]
    (child,) = ike_g["child_sas"]
    assert child["remote_ts"] == ["198.19.100.1/32", "2001:2:0:100::1/128"]
