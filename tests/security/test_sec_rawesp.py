"""Attacks on plain ESP (encap = no): spoofed IP protocol 50 packets reach the real
daemon's raw socket. Runts, unknown SPIs, packets with IPv4 options, a real SPI from an
address that is not the SA's peer or in the wrong framing (UDP 4500), forged contents
from the peer's own address, header lengths that lie, and fragments: each is dropped and
counted (the dataplane's counters; the kernel's for what it refuses before any socket),
the daemon stays up and the tunnel keeps carrying traffic."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from espfast.netns import Namespace, TwoHosts, wait_for
from espfast.static import start_in, write_private
from espfast.up import pair_configs
from tests.netns.rawcap import encap_no
from tests.netns.test_up import status_json
from tests.netns.updaemon import ping
from tests.security.secharness import end

PSK = "a pre-shared key long enough for the raw ESP attack test"
N = 40  # packets of each kind
SPOOF = "198.18.0.77"  # on the veth's subnet: passes b's reverse-path filter
ATTACKER = Path(__file__).with_name("rawespattack.py")


def kernel_ip_errors(ns: Namespace) -> int:
    """IPv4 datagrams the kernel refused for their header: InHdrErrors (/proc/net/snmp)
    and InTruncatedPkts (IpExt, /proc/net/netstat)."""
    total = 0
    for path, prefix, key in (("/proc/net/snmp", "Ip:", "InHdrErrors"),
                              ("/proc/net/netstat", "IpExt:", "InTruncatedPkts")):  # fmt: skip
        rows = [ln.split() for ln in ns.run("cat", path).stdout.splitlines()
                if ln.startswith(prefix)]  # fmt: skip
        total += dict(zip(rows[0][1:], map(int, rows[1][1:]), strict=True))[key]
    return total


def test_spoofed_plain_esp_is_dropped_and_counted(tmp_path: Path) -> None:
    a_conf, b_conf = (encap_no(c, "connection") for c in pair_configs(PSK))
    with TwoHosts.create("rawsec") as hosts:
        b = start_in(hosts.b, write_private(tmp_path / "b.toml", b_conf), command="up")
        a = start_in(hosts.a, write_private(tmp_path / "a.toml", a_conf), command="up")
        assert wait_for(lambda: ping(hosts.a, "198.19.2.1"), timeout=15)
        (ike_b,) = status_json(hosts.b)["ike_sas"]
        (child_b,) = ike_b["child_sas"]
        before = status_json(hosts.b)["daemon"]["dataplane"]
        hdr_errors = kernel_ip_errors(hosts.b)
        mac_b = json.loads(hosts.b.run("ip", "-j", "link", "show", "veth-b").stdout)[0]["address"]
        args = {"iface": "veth-a", "mac": mac_b, "src": hosts.addr_a, "dst": hosts.addr_b,
                "spoof": SPOOF, "spi": int(child_b["spi_in"]), "n": N}  # fmt: skip
        out = hosts.a.run(sys.executable, str(ATTACKER), json.dumps(args), timeout=120)
        sent = json.loads(out.stdout)

        def moved() -> dict[str, int]:
            now = status_json(hosts.b)["daemon"]["dataplane"]
            return {k: now[k] - before[k] for k in now}

        # Unknown SPIs are held half a second (a peer may be ahead of our IKE) first.
        want_unknown = sent["bad_spi"] + sent["options"] + 1  # + the reassembled pair
        assert wait_for(lambda: moved()["unknown_spi"] >= want_unknown, timeout=10), moved()
        d = moved()
        still_up = ping(hosts.a, "198.19.2.1") and ping(hosts.b, "198.19.1.1")
        kernel_refused = kernel_ip_errors(hosts.b) - hdr_errors
        after_b = status_json(hosts.b)["ike_sas"]
        end(a)
        counted_b, _ = end(b)
    assert sent["truncated"] == sent["wrong_source"] == N
    assert d["malformed"] == sent["truncated"], d
    assert d["unknown_spi"] == want_unknown, d
    assert d["wrong_source"] == sent["wrong_source"] + sent["wrong_framing"], d
    assert d["auth_failures"] == sent["forged"], d
    # header lengths the kernel refuses never reach us; nothing malformed got past it
    assert kernel_refused >= sent["bad_lengths"], kernel_refused
    assert d["raw_bad_header"] == 0, d
    # nothing of it was delivered, and the tunnel still is
    assert still_up
    assert [sa["spi_i"] for sa in after_b] == [ike_b["spi_i"]]
    assert counted_b["ike_sas_up"] == 1
