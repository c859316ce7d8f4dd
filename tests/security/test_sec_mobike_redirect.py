"""An authenticated MOBIKE peer cannot point our ESP at someone else (RFC 4555 §5.2) by
rekeying its Child SA while our return routability check is pending. The hostile peer
(espfast.control in the test process, tests/security/secpeer.py) sends
UPDATE_SA_ADDRESSES from a victim's address (it can send from there, it cannot receive
there: nobody answers our COOKIE2 check at the victim), reads our answer as an on-path
attacker would, then rekeys its Child SA from its real address and deletes the old one.
The real ``espfast up`` gateway keeps sending the Child SA's ESP to the address it last
checked: the victim gets no ESP at all, the peer's real address does."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from espfast.control.events import ChildSaDown, ChildSaRekeyed, ChildSaUp, IkeSaUp
from espfast.control.ike_sa import IkeSa
from espfast.control.rng import SystemRng
from espfast.netns import TwoHosts, wait_for
from tests.interop.ike_driver import NON_ESP_MARKER, IkeDriver, udp_socket_in
from tests.security.secpeer import configs, peer_config, start_b

VICTIM = "198.18.0.77"  # an address the peer claims; it can send from it, nobody answers
ESP_TO = "udp dst port 4500 and udp[8:4] != 0 and dst host {}"  # ESP, not IKE (RFC 3948)


def captured(pcap: Path) -> int:
    from scapy.layers.inet import UDP  # noqa: F401  (decodes the capture)
    from scapy.utils import rdpcap

    if not pcap.exists() or pcap.stat().st_size == 0:
        return 0
    try:
        return len(rdpcap(str(pcap)))
    except Exception:  # a packet half written: look again
        return 0


def test_update_from_a_victim_then_rekey_sends_no_esp_there(tmp_path: Path) -> None:
    a_path, b_path = configs(tmp_path)
    config = peer_config(a_path)
    with TwoHosts.create("secmr") as hosts:
        hosts.a.run("ip", "addr", "add", f"{VICTIM}/32", "dev", "lo")
        dumps = {}
        for dst in (VICTIM, hosts.addr_a):
            pcap = tmp_path / f"esp-{dst}.pcap"
            hosts.a.popen("tcpdump", "-i", "veth-a", "-n", "-U", "--immediate-mode", "-w",
                          str(pcap), ESP_TO.format(dst),
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            dumps[dst] = pcap
        gw = start_b(hosts, b_path, "-v")
        try:
            with IkeDriver(hosts.a, hosts.addr_a) as driver:
                sa = IkeSa.initiate(config, local=(hosts.addr_a, 500),
                                    remote=(hosts.addr_b, 500), rng=SystemRng(),
                                    now=time.monotonic())  # fmt: skip
                driver.sas.append(sa)
                driver.run(lambda: bool(driver.event(IkeSaUp) and driver.event(ChildSaUp)))
                assert sa.mobike
                (first,) = driver.event(ChildSaUp)
                # INFORMATIONAL { N(UPDATE_SA_ADDRESSES), N(NAT_D*), N(COOKIE2) } -->
                # from the victim's address ...
                assert sa.update_addresses(time.monotonic())
                spoof = udp_socket_in(hosts.a, (VICTIM, 4500))
                with spoof:
                    for data, dst in sa.datagrams_to_send(time.monotonic()):
                        spoof.sendto(NON_ESP_MARKER + data, dst)
                    # ... our answer, seen on the path; our COOKIE2 check is not answered.
                    spoof.settimeout(10)
                    answered = False
                    while not answered:
                        data = spoof.recv(65535)[len(NON_ESP_MARKER) :]
                        if data[19] & 0x20:  # the response flag (RFC 7296 §3.1)
                            sa.receive_datagram(data, (hosts.addr_b, 4500), time.monotonic())
                            answered = True
                # CREATE_CHILD_SA { N(REKEY_SA), ... } --> from the real address, then the
                # old Child SA deleted: the gateway switches to the new outbound SA.
                sa.rekey_child(first.spi_in, time.monotonic())
                driver.run(lambda: bool(driver.event(ChildSaRekeyed)
                                        and driver.event(ChildSaDown)))  # fmt: skip
            # Traffic from the gateway's side into the Child SA.
            hosts.b.run("ping", "-c", "5", "-i", "0.2", "-W", "1", "-I", "198.19.2.1",
                        "198.19.1.1", check=False)  # fmt: skip
            assert wait_for(lambda: captured(dumps[hosts.addr_a]) >= 5, timeout=10), \
                "no ESP reached the peer's real address"  # fmt: skip
            assert captured(dumps[VICTIM]) == 0
        finally:
            _, _, err = gw.stop()
        assert "peer moved" not in err, err[-3000:]
