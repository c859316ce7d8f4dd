"""The client side of a road-warrior tunnel: a full tunnel, the gateway's DNS servers,
a split tunnel.

A road-warrior client with a full tunnel (remote_ts 0.0.0.0/0): a -- r -- b, the
gateway on r (its address on b's side: a reaches it by its default route via r), an
'internet' host b beyond it. The client reaches b through the tunnel;
its IKE and ESP to the gateway keep to the underlay (the gateway's address, inside
0.0.0.0/0, is pinned); nothing else leaves by the underlay, IPv6 included (the lease is
IPv4 only: the IPv6 halves go into the TUN device and are dropped there). After the
client ends, the pin is gone."""

from __future__ import annotations

import selectors
import subprocess
import sys
import time
from pathlib import Path

from updaemon import client_conf, drops, gateway_conf, one_tunnel, ping, status

from espfast.netns import Namespace, ThreeHosts, TwoHosts, wait_for
from espfast.static import READY, Running, control_socket_in, start_in, write_private

PSK = "a pre-shared key long enough for the full tunnel test"
AUTH = f'psk = "{PSK}"'


def _tcpdump(ns: Namespace, iface: str, out: Path) -> subprocess.Popen[bytes]:
    """tcpdump on ``iface``, one line per packet into ``out``, once it listens."""
    with out.open("wb") as f:
        proc = ns.popen("tcpdump", "-i", iface, "-n", "-t", "-l", "-U", stdout=f,
                        stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stderr is not None
    said, deadline = b"", time.monotonic() + 10
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while b"listening on" not in said and time.monotonic() < deadline:
            if sel.select(deadline - time.monotonic()):
                said += proc.stderr.read1(4096)  # type: ignore[attr-defined]
    assert b"listening on" in said, said
    return proc


def _leaks(lines: list[str], client: str, gateway: str) -> list[str]:
    """What is neither IKE/ESP between the client and the gateway, nor ARP or IPv6
    neighbour discovery / multicast listener chatter (no payload of anyone's)."""
    ours = {f"{client}.{p} > {gateway}.{p}:" for p in (500, 4500)}
    ours |= {f"{gateway}.{p} > {client}.{p}:" for p in (500, 4500)}
    return [
        x for x in lines
        if x.strip()
        and not any(o in x for o in ours)
        and not x.startswith("ARP")
        and not ("ICMP6" in x and "echo" not in x)
    ]  # fmt: skip


def test_full_tunnel_no_loop_no_leak(tmp_path: Path) -> None:
    with ThreeHosts.create("rwc") as h:
        a, r = h.a, h.r
        # The client's underlay as at home: a default route (each family) via r.
        a.run("ip", "route", "del", "198.18.0.0/15")
        a.run("ip", "route", "add", "default", "via", h.addr_ra)
        a.run("ip", "-6", "route", "del", "2001:2::/48")
        a.run("ip", "-6", "route", "add", "default", "via", h.addr6_ra)
        # Without the tunnel, both families reach b in the clear: a leak would be seen.
        assert ping(a, h.addr_b)
        assert a.run("ping", "-6", "-c", "1", "-W", "2", h.addr6_b, check=False).returncode == 0
        gw_conf = gateway_conf(listen=h.addr_rb, local_id="gw.full.test", auth=AUTH,
                               pool="198.19.100.0/24", dns="198.19.2.53",
                               inner="198.19.2.1/24", local_ts="0.0.0.0/0")  # fmt: skip
        cl_conf = client_conf(
            listen=h.addr_a, gateway=h.addr_rb, local_id="carol@full.test",
            remote_id="gw.full.test", auth=AUTH, remote_ts="0.0.0.0/0",
        )  # fmt: skip
        gw = start_in(r, write_private(tmp_path / "gw.toml", gw_conf), command="up")
        client = None
        try:
            dump = tmp_path / "underlay.txt"
            tcpdump = _tcpdump(a, "veth-a", dump)
            client = start_in(a, write_private(tmp_path / "rw.toml", cl_conf), "-v",
                              command="up")  # fmt: skip
            assert wait_for(lambda: one_tunnel(a), timeout=15), status(a)
            assert wait_for(lambda: ping(a, h.addr_b), timeout=5)
            to_b = a.run("ip", "route", "get", h.addr_b).stdout
            to_gw = a.run("ip", "route", "get", h.addr_rb).stdout
            six = a.run("ping", "-6", "-c", "2", "-W", "1", h.addr6_b, check=False)
            for _ in range(3):
                assert ping(a, h.addr_b)
            (ike_g,) = status(r)
            a.stop(tcpdump)
            lines = dump.read_text().splitlines()
        finally:
            if client is not None:
                _, out, err = client.stop()
            gw.stop()
        pin_after = a.run("ip", "route", "show", "exact", f"{h.addr_rb}/32").stdout
    assert "dev efrw0" in to_b, to_b
    # The gateway's address is not on the client's link: pinned via the underlay's router.
    assert f"via {h.addr_ra} dev veth-a" in to_gw, to_gw
    assert six.returncode != 0, six.stdout
    assert ike_g["peer_virtual_ips"] == ["198.19.100.1"]
    assert any(f"{h.addr_a}.4500 > {h.addr_rb}.4500: UDP-encap: ESP" in x for x in lines), lines
    assert _leaks(lines, h.addr_a, h.addr_rb) == []
    assert "pinned to the underlay" in err, err
    assert pin_after.strip() == "", pin_after  # the pin went with the client
    assert drops(out).get("no_sa", 0) >= 2, out  # the IPv6 pings, dropped in the TUN device


def test_client_applies_the_gateways_dns_and_restores_it(tmp_path: Path) -> None:
    """resolver = "file": the client, in a mount namespace of its own where a test file is
    bound over /etc/resolv.conf and a tmpfs over /run (the machine's stay untouched),
    writes the gateway's DNS servers there while the tunnel is up and puts the old
    content back on SIGTERM."""
    fake = tmp_path / "resolv.conf"
    before = "# the client's own resolver\nnameserver 198.18.0.53\n"
    fake.write_text(before)
    gw_conf = gateway_conf(listen="198.18.0.2", local_id="gw.dns.test", auth=AUTH,
                           pool="198.19.100.0/24", dns=["198.19.2.53", "198.19.2.54"],
                           inner="198.19.2.1/24", local_ts="198.19.2.0/24")  # fmt: skip
    cl_conf = client_conf(
        listen="198.18.0.1", gateway="198.18.0.2", local_id="dave@dns.test",
        remote_id="gw.dns.test", auth=AUTH, remote_ts="198.19.2.0/24",
    )  # fmt: skip
    cl_conf = cl_conf.replace("[interface]\n", '[interface]\nresolver = "file"\n', 1)
    cl_path = write_private(tmp_path / "rw.toml", cl_conf)
    with TwoHosts.create("rwc") as hosts:
        gw = start_in(hosts.b, write_private(tmp_path / "gw.toml", gw_conf), command="up")
        client = None
        try:
            proc = hosts.a.popen(
                "unshare", "-m", "--propagation", "private", "sh", "-c",
                'mount --bind "$1" /etc/resolv.conf && mount -t tmpfs ef-rwc /run && shift '
                '&& exec "$@"', "sh", str(fake),
                sys.executable, "-m", "espfast", "up", "-c", str(cl_path), "-v",
                "--socket", str(control_socket_in(hosts.a)),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            client = Running(hosts.a, proc, hosts.a.wait_ready(proc, READY, "the client"))
            assert wait_for(lambda: "198.19.2.53" in fake.read_text(), timeout=15), status(hosts.a)
            during = fake.read_text()
        finally:
            if client is not None:
                status_code, _, err = client.stop()
            gw.stop()
    assert during.endswith("nameserver 198.19.2.53\nnameserver 198.19.2.54\n"), during
    assert "198.18.0.53" not in during
    assert status_code == 0, err
    assert fake.read_text() == before, err
    assert "DNS servers withdrawn (file)" in err, err


def test_split_tunnel_routes_only_the_gateways_subnets(tmp_path: Path) -> None:
    """The client proposes 0.0.0.0/0; the gateway protects 198.19.2.0/24 only: it names
    that subnet (INTERNAL_IP4_SUBNET) and narrows the Child SA to it, and the client
    routes that alone (no halves, no pin): its underlay keeps everything else."""
    gw_conf = gateway_conf(listen="198.18.0.2", local_id="gw.split.test", auth=AUTH,
                           pool="198.19.100.0/24", dns="198.19.2.53",
                           inner="198.19.2.1/24", local_ts="198.19.2.0/24")  # fmt: skip
    cl_conf = client_conf(
        listen="198.18.0.1", gateway="198.18.0.2", local_id="frank@split.test",
        remote_id="gw.split.test", auth=AUTH, remote_ts="0.0.0.0/0",
    )  # fmt: skip
    with TwoHosts.create("rwc") as hosts:
        gw = start_in(hosts.b, write_private(tmp_path / "gw.toml", gw_conf), command="up")
        client = None
        try:
            client = start_in(hosts.a, write_private(tmp_path / "rw.toml", cl_conf), "-v",
                              command="up")  # fmt: skip
            assert wait_for(lambda: one_tunnel(hosts.a), timeout=15), status(hosts.a)
            assert wait_for(lambda: ping(hosts.a, "198.19.2.1"), timeout=5)
            routes = hosts.a.run("ip", "route", "show", "dev", "efrw0").stdout
            (ike_c,) = status(hosts.a)
        finally:
            if client is not None:
                _, _, err = client.stop()
            gw.stop()
    assert ike_c["child_sas"][0]["remote_ts"] == ["198.19.2.0/24"]
    assert "198.19.2.0/24" in routes and "/1 " not in routes, routes
    assert "the peer protects 198.19.2.0/24" in err, err
    assert "pinned" not in err
