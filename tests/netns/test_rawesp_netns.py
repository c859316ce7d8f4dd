"""Plain ESP (``encap = no``, RFC 7296 §2.23 with no NAT in the way): ``espfast up`` and
``espfast static`` between two namespaces send ESP as IP protocol 50 through raw
sockets, and nothing goes as ESP in UDP 4500. A capture on the veth proves the framing;
scapy decodes it as ESP, and with the static mode's keys scapy's SecurityAssociation opens
it (standard RFC 4303/4106, not just something that works between two espfasts)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from espfast.netns import TwoHosts, wait_for
from espfast.static import pair_configs as static_pair_configs
from espfast.static import start_in, write_private
from espfast.up import pair_configs
from tests.netns.rawcap import capture, encap_no, esp_and_natt
from tests.netns.test_up import status_json
from tests.netns.updaemon import drops, ping

PSK = "a pre-shared key long enough for the plain ESP test"


def _iperf(hosts: TwoHosts, *udp: str) -> dict[str, object]:
    server = hosts.b.popen(
        "iperf3", "-s", "-1", "-B", "198.19.2.1",
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert wait_for(lambda: ":5201" in hosts.b.run("ss", "-Htln").stdout, timeout=10)
        client = hosts.a.run(
            "iperf3", "-c", "198.19.2.1", "-B", "198.19.1.1", "-t", "2", "-J", *udp,
            check=False, timeout=60,
        )  # fmt: skip
    finally:
        hosts.b.stop(server)
    doc: dict[str, object] = json.loads(client.stdout)
    return doc


# The default worker count, and 2 workers per direction: their ordered hand-offs read the
# UDP and the raw socket in one batch.
@pytest.mark.parametrize("workers", [None, 2])
def test_up_encap_no_sends_plain_esp(tmp_path: Path, workers: int | None) -> None:
    a_conf, b_conf = (encap_no(c, "connection") for c in pair_configs(PSK, workers=workers))
    with TwoHosts.create("raw") as hosts:
        with capture(hosts.a, "veth-a", tmp_path / "up.pcap") as cap:
            b = start_in(hosts.b, write_private(tmp_path / "b.toml", b_conf), "-v", command="up")
            a = start_in(hosts.a, write_private(tmp_path / "a.toml", a_conf), "-v", command="up")
            up = wait_for(lambda: ping(hosts.a, "198.19.2.1"), timeout=15)
            pings = hosts.b.run("ping", "-c", "3", "-i", "0.2", "198.19.1.1", check=False)
            tcp = _iperf(hosts)
            udp = _iperf(hosts, "-u", "-b", "20M")
            doc_a, doc_b = status_json(hosts.a), status_json(hosts.b)
            packets = cap.stop()
        status_a, out_a, err_a = a.stop()
        status_b, out_b, err_b = b.stop()
    assert up, err_a + err_b
    assert pings.returncode == 0, pings.stdout
    assert "error" not in tcp and "error" not in udp, (tcp.get("error"), udp.get("error"))
    assert tcp["end"]["sum_received"]["bytes"] > 1_000_000  # type: ignore[index]
    assert udp["end"]["sum"]["packets"] > 1000  # type: ignore[index]
    assert (status_a, status_b) == (0, 0), err_a + err_b
    (ike_a,) = doc_a["ike_sas"]
    (child_a,) = ike_a["child_sas"]
    assert not ike_a["nat_local"] and not ike_a["nat_remote"]
    # No NAT, encap = no: IKE on 4500 (MOBIKE floats, as strongSwan's does), ESP goes as
    # IP protocol 50 both ways.
    assert ike_a["local_addr"].endswith(":4500"), ike_a["local_addr"]
    dp_a, dp_b = doc_a["daemon"]["dataplane"], doc_b["daemon"]["dataplane"]
    assert dp_a["tx_raw"] == dp_a["tx_packets"] > 1000
    assert dp_b["rx_raw"] > 1000 and dp_b["tx_raw"] > 0 and dp_a["rx_raw"] > 0
    bad = ("wrong_source", "raw_bad_header", "auth_failures", "malformed")
    for out in (out_a, out_b):
        d = drops(out)
        assert not {k: v for k, v in d.items() if k in bad}, d
    esp, natt = esp_and_natt(packets)
    assert not natt, natt[0].summary()
    from scapy.layers.inet import IP
    from scapy.layers.ipsec import ESP

    spis = {int(child_a["spi_in"]), int(child_a["spi_out"])}
    assert len(esp) > 1000
    decoded = [IP(bytes(p[IP])) for p in esp[:200]]
    assert all(ESP in p for p in decoded)
    assert {p[ESP].spi for p in decoded} <= spis
    assert {p[ESP].spi for p in decoded} == spis  # both directions seen
    sent = [p for p in decoded if p[IP].src == hosts.addr_a]
    seqs = [p[ESP].seq for p in sent]
    assert seqs == sorted(seqs) and seqs[0] >= 1


def _keys(conf: str) -> dict[str, tuple[int, bytes]]:
    """The static config's SAs: section ("out"/"in") -> (SPI, enc_key with salt)."""
    found = re.findall(r'\[sa\.(out|in)\]\nspi = "(0x[0-9a-f]+)"\nenc_key = "([0-9a-f]+)"', conf)
    return {sec: (int(spi, 16), bytes.fromhex(key)) for sec, spi, key in found}


def test_static_encap_no_scapy_opens_what_goes_on_the_wire(tmp_path: Path) -> None:
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.ipsec import ESP, SecurityAssociation

    a_conf, b_conf = (encap_no(c, "sa") for c in static_pair_configs("aes128gcm16"))
    spi_ab, key_ab = _keys(a_conf)["out"]
    spi_ba, key_ba = _keys(a_conf)["in"]
    with TwoHosts.create("raw") as hosts:
        with capture(hosts.a, "veth-a", tmp_path / "static.pcap") as cap:
            b = start_in(hosts.b, write_private(tmp_path / "b.toml", b_conf))
            a = start_in(hosts.a, write_private(tmp_path / "a.toml", a_conf))
            pings = hosts.a.run("ping", "-c", "5", "-i", "0.2", "-W", "2", "198.19.2.1",
                                check=False)  # fmt: skip
            packets = cap.stop()
        status_a, _, err_a = a.stop()
        status_b, _, err_b = b.stop()
    assert pings.returncode == 0, pings.stdout + err_a + err_b
    assert (status_a, status_b) == (0, 0), err_a + err_b
    esp, natt = esp_and_natt(packets)
    assert not natt
    # RFC 4106: the key is 16 bytes of AES and 4 of salt; scapy takes them the same way.
    opened = {}
    for spi, key in ((spi_ab, key_ab), (spi_ba, key_ba)):
        sa = SecurityAssociation(ESP, spi=spi, crypt_algo="AES-GCM", crypt_key=key,
                                 tunnel_header=None)  # fmt: skip
        mine = [IP(bytes(p[IP])) for p in esp if IP(bytes(p[IP]))[ESP].spi == spi]
        opened[spi] = [sa.decrypt(p) for p in mine]
    to_b = [p for p in opened[spi_ab] if ICMP in p and p[ICMP].type == 8]
    to_a = [p for p in opened[spi_ba] if ICMP in p and p[ICMP].type == 0]
    assert len(to_b) >= 5 and len(to_a) >= 5
    # tunnel mode: the outer header scapy keeps, then the inner packet whole
    inner = lambda p: (p[ICMP].underlayer.src, p[ICMP].underlayer.dst)  # noqa: E731
    assert {inner(p) for p in to_b} == {("198.19.1.1", "198.19.2.1")}
    assert {inner(p) for p in to_a} == {("198.19.2.1", "198.19.1.1")}
    assert {(p[IP].src, p[IP].dst) for p in to_b} == {(hosts.addr_a, hosts.addr_b)}


def test_encap_no_behind_a_nat_falls_back_to_udp(tmp_path: Path) -> None:
    """A client behind an nftables masquerade: NAT-D finds the NAT, so even with
    ``encap = no`` on both ends ESP goes in UDP 4500 (RFC 3948), never as protocol 50."""
    from espfast.netns import ThreeHosts
    from espfast.tools.mobilitynet import masquerade
    from tests.netns.updaemon import client_conf, gateway_conf, status

    auth = f'psk = "{PSK}"'
    with ThreeHosts.create("rawnat") as hosts:
        masquerade(hosts.r, hosts.veth_rb, "20000-20999")
        gw = gateway_conf(listen=hosts.addr_b, local_id="gw.raw.test", auth=auth,
                          pool="198.19.100.0/24", dns="198.19.2.53", inner="198.19.2.1/24",
                          local_ts="198.19.2.0/24")  # fmt: skip
        client = client_conf(listen=hosts.addr_a, gateway=hosts.addr_b,
                             local_id="c@raw.test", remote_id="gw.raw.test", auth=auth,
                             remote_ts="198.19.2.0/24")  # fmt: skip
        gw, client = encap_no(gw, "connection"), encap_no(client, "connection")
        with capture(hosts.a, "veth-a", tmp_path / "nat.pcap") as cap:
            g = start_in(hosts.b, write_private(tmp_path / "gw.toml", gw), "-v", command="up")
            c = start_in(hosts.a, write_private(tmp_path / "c.toml", client), "-v", command="up")
            up = wait_for(lambda: ping(hosts.a, "198.19.2.1"), timeout=20)
            pings = hosts.a.run("ping", "-c", "5", "-i", "0.2", "198.19.2.1", check=False)
            (ike_c,) = status(hosts.a)
            dp_c = status_json(hosts.a)["daemon"]["dataplane"]
            packets = cap.stop()
        _, _, err_c = c.stop()
        _, _, err_g = g.stop()
    assert up and pings.returncode == 0, err_c + err_g
    assert ike_c["nat_local"] and ike_c["local_addr"].endswith(":4500")
    assert dp_c["tx_packets"] >= 5 and dp_c["tx_raw"] == dp_c["rx_raw"] == 0
    esp, natt = esp_and_natt(packets)
    assert not esp and len(natt) >= 10


def test_static_encap_no_over_ipv6(tmp_path: Path) -> None:
    """IPv6 outer addresses: the AF_INET6 raw socket (no header handed over, the source
    from the socket address); scapy opens the IPv6 ESP packets with the keys."""
    from scapy.layers.inet import ICMP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.ipsec import ESP, SecurityAssociation

    from espfast.netns import ThreeHosts

    with ThreeHosts.create("raw6") as hosts:
        outer = (hosts.addr6_a, hosts.addr6_b)
        a_conf, b_conf = (encap_no(c, "sa") for c in static_pair_configs(outer=outer))
        spi_ab, key_ab = _keys(a_conf)["out"]
        with capture(hosts.a, "veth-a", tmp_path / "v6.pcap") as cap:
            b = start_in(hosts.b, write_private(tmp_path / "b.toml", b_conf))
            a = start_in(hosts.a, write_private(tmp_path / "a.toml", a_conf))
            pings = hosts.a.run("ping", "-c", "5", "-i", "0.2", "-W", "2", "198.19.2.1",
                                check=False)  # fmt: skip
            packets = cap.stop()
        status_a, _, err_a = a.stop()
        status_b, _, err_b = b.stop()
    assert pings.returncode == 0, pings.stdout + err_a + err_b
    assert (status_a, status_b) == (0, 0), err_a + err_b
    esp6 = [IPv6(bytes(p[IPv6])) for p in packets if IPv6 in p and p[IPv6].nh == 50]
    assert {p[IPv6].src for p in esp6} == {hosts.addr6_a, hosts.addr6_b}
    mine = [p for p in esp6 if p[ESP].spi == spi_ab]
    sa = SecurityAssociation(ESP, spi=spi_ab, crypt_algo="AES-GCM", crypt_key=key_ab)
    echoes = [q for q in map(sa.decrypt, mine) if ICMP in q and q[ICMP].type == 8]
    assert len(echoes) >= 5
    assert {(q[ICMP].underlayer.src, q[ICMP].underlayer.dst) for q in echoes} == {
        ("198.19.1.1", "198.19.2.1")
    }
    _, natt = esp_and_natt(packets)
    assert not natt
