"""MOBIKE's extras are no way in (RFC 4555 §3.6, §5): against a real ``espfast up``
over UDP, an authenticated peer (espfast.control in the test process) floods the
gateway with N(ADDITIONAL_*) addresses: it keeps MAX_PEER_ADDRESSES of them and serves
on. An attacker on another address then replays that peer's INFORMATIONALs (the flood
and an UPDATE_SA_ADDRESSES), forges one whose ICV fails, and sends UPDATE_SA_ADDRESSES
and ADDITIONAL_* in the clear: the IKE SA never moves (nor with an update whose
N(NO_NATS_ALLOWED) names addresses other than those it came from, §3.9), the peer's
address list never changes, the attacker gets no answer, and the peer's IKE SA still
works. With ``follow_esp``, ESP from another address that fails its ICV or the replay
window moves nothing either."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import select
import subprocess
import sys
import time
from pathlib import Path

from espfast.control.constants import ExchangeType, NotifyType
from espfast.control.events import IkeSaUp
from espfast.control.ike_sa import IkeSa
from espfast.control.message import Message, encode
from espfast.control.payloads import NotifyPayload
from espfast.control.rng import SystemRng
from espfast.control.tasks.informational import Informational
from espfast.control.tasks.mobike import MAX_PEER_ADDRESSES
from espfast.netns import Namespace, ThreeHosts, TwoHosts, wait_for
from espfast.static import control_socket_in, start_in, write_private
from tests.interop.ike_driver import NON_ESP_MARKER, IkeDriver, udp_socket_in
from tests.netns.updaemon import status
from tests.security.secpeer import configs, peer_config, start_b

OTHER = "198.18.0.3"  # the attacker: a second address on a


def _flood() -> tuple[NotifyPayload, ...]:
    v4 = [NotifyPayload(NotifyType.ADDITIONAL_IP4_ADDRESS,
                        ipaddress.IPv4Address(f"198.18.60.{n}").packed)
          for n in range(1, 251)]  # fmt: skip
    v6 = [NotifyPayload(NotifyType.ADDITIONAL_IP6_ADDRESS, bytes(15) + bytes([n]))
          for n in range(50)]  # fmt: skip
    junk = [NotifyPayload(NotifyType.ADDITIONAL_IP4_ADDRESS, b"\x01" * n) for n in (0, 3, 5, 64)]
    return (*junk, *v4, *v6)


def test_replayed_forged_and_flooded_mobike_notifies(tmp_path: Path) -> None:
    a_path, b_path = configs(tmp_path)
    with TwoHosts.create("ma-sec") as hosts:
        hosts.a.run("ip", "addr", "add", f"{OTHER}/24", "dev", "veth-a")
        b = start_b(hosts, b_path)
        try:
            with IkeDriver(hosts.a, hosts.addr_a) as driver, \
                    udp_socket_in(hosts.a, (OTHER, 4500)) as attacker:  # fmt: skip
                sa = IkeSa.initiate(peer_config(a_path), local=(hosts.addr_a, 500),
                                    remote=(hosts.addr_b, 500), rng=SystemRng(),
                                    now=time.monotonic())  # fmt: skip
                driver.sas.append(sa)
                driver.run(lambda: bool(driver.event(IkeSaUp)), 20)
                assert sa.mobike and sa.local[1] == 4500  # (NAT-T: on 4500)

                def exchange(payloads: tuple[NotifyPayload, ...] = (), update: bool = False,
                             claim: tuple[str, int] | None = None) -> list[bytes]:  # fmt: skip
                    """One INFORMATIONAL of the peer's, answered; its datagrams.
                    ``claim``: the update says it comes from there."""
                    now = time.monotonic()
                    if update:
                        assert sa.update_addresses(now, local=claim)
                    else:
                        sa.tm.queue_task(Informational(sa, True, payloads), now)
                    sent = sa.datagrams_to_send(now)
                    driver._send(sent, sa.local[1])
                    driver.run(lambda: sa.tm.active is None and not sa.tm.queue, 15)
                    return [d for d, _ in sent]

                # An authenticated flood of addresses: kept bounded.
                flood = exchange(_flood())
                (flooded,) = status(hosts.b)
                kept = flooded.get("peer_addresses", [])
                assert kept == [f"198.18.60.{n}" for n in range(1, MAX_PEER_ADDRESSES + 1)]
                # NO_NATS_ALLOWED naming a source other than the one the gateway sees (as
                # if a NAT had rewritten it): <-- { N(UNEXPECTED_NAT_DETECTED) }
                real = sa.local
                sa.config = dataclasses.replace(sa.config, mobike_no_nats=True)
                exchange(update=True, claim=(OTHER, 4500))
                assert sa.updates_refused == 1
                update = exchange(update=True, claim=real)  # the truth: accepted
                assert sa.updates_refused == 1 and sa.moves == 1
                (before,) = status(hosts.b)
                assert before["remote_addr"] == f"{hosts.addr_a}:4500" and before["moves"] == 0

                # The attacker replays them from its own address, three times over ...
                attacks = [NON_ESP_MARKER + d for d in flood + update] * 3
                # ... forges the next request (the update with a broken ICV) ...
                nxt = sa.tm.my_mid.to_bytes(4, "big")
                forged = bytearray(update[0])
                forged[20:24] = nxt
                forged[-1] ^= 0x01
                attacks.append(NON_ESP_MARKER + bytes(forged))
                # ... and says it in the clear (no SK payload).
                clear = Message(sa.spi_i, sa.spi_r, ExchangeType.INFORMATIONAL, sa.tm.my_mid,
                                False, True, (
                                    NotifyPayload(NotifyType.UPDATE_SA_ADDRESSES),
                                    NotifyPayload(NotifyType.ADDITIONAL_IP4_ADDRESS,
                                                  ipaddress.IPv4Address(OTHER).packed),
                                ))  # fmt: skip
                attacks.append(NON_ESP_MARKER + encode(clear))
                for data in attacks:
                    attacker.sendto(data, (hosts.addr_b, 4500))
                # The peer's IKE SA still works (a liveness check answered) ...
                sa.check_liveness(time.monotonic())
                driver.run(lambda: sa.tm.active is None and not sa.tm.queue, 15)
                assert sa.is_established
                # ... and the attacker heard nothing.
                readable, _, _ = select.select([attacker], [], [], 1.0)
                assert not readable
            (after,) = status(hosts.b)
            assert after["remote_addr"] == before["remote_addr"]
            assert after["moves"] == 0
            assert after.get("peer_addresses") == kept
            assert (after["spi_i"], after["spi_r"]) == (before["spi_i"], before["spi_r"])
        finally:
            rc, _out, err = b.stop()
    assert rc == 0, err
    assert "Traceback" not in err, err


def test_esp_failing_its_icv_or_replayed_from_elsewhere_moves_nothing(tmp_path: Path) -> None:
    # follow_esp: only ESP that passes its ICV and the replay window moves the peer. An
    # attacker at the router's outside address sends ESP with the client's SPI that fails
    # its ICV, the client's captured ESP with its ICV broken, and replays it as captured:
    # the gateway stays where it was.
    from tests.netns.updaemon import client_conf, gateway_conf, ping
    from tests.security.test_sec_rebinding import captured

    psk = "a pre-shared key long enough for the follow-ESP attack"
    auth = f'psk = "{psk}"'
    pcap = tmp_path / "wire.pcap"
    with ThreeHosts.create("ma-sec") as hosts:
        gw_text = gateway_conf(listen=hosts.addr_b, local_id="gw.fesp.test", auth=auth,
                               pool="198.19.100.0/24", dns="198.19.2.53",
                               inner="198.19.2.1/24", local_ts="198.19.2.0/24")  # fmt: skip
        gw_text = gw_text.replace(f"{auth}\n", f'{auth}\nfollow_esp = "yes"\n')
        cl_text = client_conf(listen=hosts.addr_a, gateway=hosts.addr_b,
                              local_id="mallory@fesp.test", remote_id="gw.fesp.test",
                              auth=auth, remote_ts="198.19.2.0/24")  # fmt: skip
        dump = hosts.b.popen(
            "tcpdump", "-i", "veth-b", "-n", "-U", "--immediate-mode", "-s", "0", "-w", str(pcap),
            "udp port 4500", stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        gw = start_in(hosts.b, write_private(tmp_path / "gw.toml", gw_text), command="up")
        client = start_in(hosts.a, write_private(tmp_path / "c.toml", cl_text), command="up")
        try:
            assert wait_for(lambda: ping(hosts.a, "198.19.2.1"), timeout=20)
            for _ in range(5):
                ping(hosts.a, "198.19.2.1")
            assert wait_for(lambda: len(captured(pcap, hosts.addr_a)[1]) >= 3, timeout=10)
            (before,) = status(hosts.b)
            _, esp = captured(pcap, hosts.addr_a)
            spi = esp[0][:4]
            forged = [spi + bytes([0, 0, 0x10, n]) + bytes(80) for n in range(32)]
            flipped = [e[:-1] + bytes([e[-1] ^ 1]) for e in esp]  # ICV broken
            attack = hosts.r.popen(
                sys.executable, "-c",
                "import socket, sys\n"
                "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                "s.bind(('0.0.0.0', 4500))\n"
                "for arg in sys.argv[1:]:\n"
                f"    s.sendto(bytes.fromhex(arg), ({hosts.addr_b!r}, 4500))\n",
                *[d.hex() for d in forged + flipped + esp * 2],
            )  # fmt: skip
            assert attack.wait(timeout=30) == 0
            # Fresh sequence numbers fail their ICV; the rest the replay window stops.
            want = {"auth_failures": len(forged), "replay_drops": len(flipped) + 2 * len(esp)}
            assert wait_for(lambda: _drops(hosts.b) == want, timeout=10), _drops(hosts.b)
            assert ping(hosts.a, "198.19.2.1")  # the tunnel works, both ways
            (after,) = status(hosts.b)
            assert after["remote_addr"] == before["remote_addr"] == f"{hosts.addr_a}:4500"
            assert after["moves"] == 0
            assert _counters(hosts.b)["esp_follows"] == 0
        finally:
            hosts.b.stop(dump)
            client.stop()
            gw.stop()


def _drops(ns: Namespace) -> dict[str, int]:
    (sa,) = status(ns)
    (child,) = sa["child_sas"]
    drops: dict[str, int] = child["drops"]
    return drops


def _counters(ns: Namespace) -> dict[str, int]:
    out = ns.run(sys.executable, "-m", "espfast", "status", "--socket",
                 str(control_socket_in(ns)), "--json")  # fmt: skip
    counters: dict[str, int] = json.loads(out.stdout)["daemon"]["counters"]
    return counters
