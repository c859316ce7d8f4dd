"""espfast with ``encap = no`` against strongSwan's charon with kernel-libipsec.

charon's ``encap`` means what ours does (swanctl.conf: yes forces UDP encapsulation by
faking NAT_DETECTION_SOURCE_IP; no, its default, encapsulates only when NAT-D finds a
NAT). But charon with kernel-libipsec (strongSwan 5.9, this machine's) cannot carry plain
ESP at all: the plugin tells charon it requires UDP encapsulation, so charon fakes a NAT
even with ``encap = no`` ("faking NAT situation to enforce UDP encapsulation"), and
libipsec itself refuses an SA without it ("IPsec SA: only UDP encapsulation is
supported"). So against charon espfast's ``encap = no`` always meets a NAT (charon's fake)
and falls back to ESP in UDP 4500, in both roles: the tunnel works, nothing goes as IP
protocol 50. Plain ESP is proven between two espfasts (tests/netns/test_rawesp_netns.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from espfast.netns import TwoHosts
from espfast.static import start_in, write_private
from tests.interop.conftest import INNER_B, CharonFactory
from tests.interop.strongswan import Charon, Connection, swanctl_conf
from tests.interop.test_up_charon import (
    IDS,
    PSK,
    PSK_AUTH,
    TS_A,
    TS_B,
    espfast_conf,
    espfast_status,
    tunnel_works,
)  # fmt: skip
from tests.netns.rawcap import capture, encap_no, esp_and_natt

IKE, ESP = "aes128gcm16-prfsha256-x25519", "aes128gcm16"


def _charon(hosts: TwoHosts, charons: CharonFactory, encap: str) -> Charon:
    conn = Connection(
        local_addrs=hosts.addr_b, remote_addrs=hosts.addr_a,
        local_id=IDS[1], remote_id=IDS[0], local_ts=TS_B, remote_ts=TS_A,
        proposals=IKE, esp_proposals=ESP, extra={"encap": encap},
    )  # fmt: skip
    return charons.start(hosts.b, swanctl_conf([conn], [PSK]))


@pytest.mark.parametrize(
    ("charon_encap", "initiator"), [("yes", "espfast"), ("no", "espfast"), ("no", "charon")]
)
def test_encap_no_falls_back_to_udp_against_libipsec(
    charons: CharonFactory, tmp_path: Path, charon_encap: str, initiator: str
) -> None:
    with TwoHosts.create("rawi") as hosts:
        hosts.b.run("ip", "addr", "add", f"{INNER_B}/32", "dev", "lo")
        charon = _charon(hosts, charons, charon_encap)
        conf = espfast_conf(hosts, initiate=initiator == "espfast", esp=ESP, ike=IKE,
                            auth=PSK_AUTH)  # fmt: skip
        text = encap_no(conf, "connection")
        with capture(hosts.a, "veth-a", tmp_path / "fallback.pcap") as cap:
            up = start_in(hosts.a, write_private(tmp_path / "a.toml", text), "-v", command="up")
            try:
                if initiator == "charon":
                    charon.initiate("net")
                charon.wait_child("net")
                works = tunnel_works(hosts)
                faked = charon.wait_log("faking NAT situation to enforce UDP encapsulation")
                status = espfast_status(hosts)
                packets = cap.stop()
            finally:
                code, _, err = up.stop()
    assert works, err
    assert code == 0, err
    assert faked  # also with charon's encap = no: kernel-libipsec requires UDP
    (ours,) = status["ike_sas"]
    assert ours["nat_remote"] and not ours["nat_local"]  # charon's faked NAT-D
    assert ours["local_addr"].endswith(":4500")
    dp = status["daemon"]["dataplane"]
    assert dp["tx_packets"] > 0 and dp["rx_packets"] > 0
    assert dp["tx_raw"] == dp["rx_raw"] == 0
    esp, natt = esp_and_natt(packets)
    assert not esp and natt
