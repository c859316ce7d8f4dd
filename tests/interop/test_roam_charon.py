"""charon roams, espfast follows (RFC 4555): strongSwan's charon (kernel-libipsec, a road
warrior with a virtual IP, ``mobike = yes``, the MOBIKE initiator) has two uplinks
('wifi' preferred and 'cell', espfast/tools/mobilitynet.py) to an ``espfast up`` gateway.
During a sequence-numbered UDP flow from the gateway to charon's virtual IP, the wifi link
goes down (charon moves to cell), comes back (charon, with ``prefer_best_path``, moves
back) and goes away with its address (cell again). Each time charon sends
UPDATE_SA_ADDRESSES from its new address and espfast, the responder, checks the new path
(COOKIE2) and re-points the IKE SA and its Child SA there. The same IKE SA throughout (no
second IKE_SA_INIT in charon's log, the same SPIs at both ends); the datagrams lost and
the longest gap are printed. (espfast roaming against a charon gateway:
test_mobike_charon.py.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from espfast.netns import Namespace, wait_for
from espfast.static import start_in, write_private
from espfast.tools.mobilitynet import CELL, GW, WIFI, uplinks
from espfast.tools.udpflow import check_loss, flow_in_background
from tests.interop.conftest import CharonFactory
from tests.interop.strongswan import Connection, Psk, same_ike_sa, swanctl_conf

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "netns"))
from updaemon import gateway_conf, packets_out, status

SECRET = b"roaming charon interop test: a long enough pre-shared key"
IDS = ("gw.roamc.test", "dave@roamc.test")  # (gateway, client)
AUTH = f'psk = "0x{SECRET.hex()}"'
POOL, VIP, GW_NET = "198.19.100.0/24", "198.19.100.1", "198.19.2.1"
COUNT, INTERVAL = 2000, 0.01  # a 20 s flow, whatever the steps take
MAX_LOST = 600  # three moves, each a route change charon notices and one round trip


def gateway_sees(g: Namespace, addr: str) -> bool:
    sas = status(g)
    return len(sas) == 1 and sas[0]["remote_addr"].startswith(f"{addr}:")


def test_charon_roams_espfast_follows(charons: CharonFactory, tmp_path: Path) -> None:
    conf = gateway_conf(listen=GW, local_id=IDS[0], auth=AUTH, pool=POOL, dns="198.19.2.53",
                        inner=f"{GW_NET}/24", local_ts="198.19.2.0/24")  # fmt: skip
    with uplinks() as hosts:
        gw = start_in(hosts.g, write_private(tmp_path / "gw.toml", conf), "-v", command="up")
        client = Connection(
            local_addrs="%any", remote_addrs=GW, local_id=IDS[1], remote_id=IDS[0],
            local_ts="dynamic", remote_ts="198.19.2.0/24",
            extra={"vips": "0.0.0.0", "mobike": "yes"},
        )  # fmt: skip
        charon = charons.start(hosts.c, swanctl_conf([client], [Psk(ids=IDS, secret=SECRET)]),
                               settings={"prefer_best_path": "yes"})  # fmt: skip
        try:
            charon.initiate("net")
            first = charon.established_ike()
            assert first["local-host"] == WIFI and first["remote-host"] == GW, first
            assert wait_for(lambda: gateway_sees(hosts.g, WIFI), timeout=5), status(hosts.g)
            (ours,) = status(hosts.g)
            assert ours["mobike"] and not ours["initiator"], ours

            with flow_in_background(hosts.g, hosts.c, VIP, count=COUNT, interval=INTERVAL) as got:
                assert wait_for(lambda: packets_out(hosts.g) >= 50, timeout=10)
                for step, expect in ((hosts.wifi_down, CELL), (hosts.prefer_wifi, WIFI),
                                     (hosts.wifi_gone, CELL)):  # fmt: skip
                    step()
                    assert wait_for(lambda e=expect: gateway_sees(hosts.g, e), timeout=10), \
                        (status(hosts.g), charon.log(60))  # fmt: skip
                    assert charon.established_ike()["local-host"] == expect
                    base = _delivered(hosts.c)  # then let the flow run a little there
                    assert wait_for(lambda b=base: _delivered(hosts.c) >= b + 50, timeout=10), \
                        (status(hosts.g), charon.log(60))  # fmt: skip
            check_loss(got, COUNT, INTERVAL, "charon roaming wifi -> cell -> wifi -> cell "
                       "(espfast gateway)", max_lost=MAX_LOST)  # fmt: skip
            now = charon.established_ike()
            assert same_ike_sa(first, now), (first, now)
            (after,) = status(hosts.g)
            assert (after["spi_i"], after["spi_r"]) == (ours["spi_i"], ours["spi_r"])
            assert after["moves"] == 3, after
            assert after["remote_addr"] == f"{CELL}:4500", after
            log = charon.log(None)
            assert log.count("N(UPD_SA_ADDR)") >= 3, log[-3000:]
            # One IKE_SA_INIT: charon never started over.
            assert log.count("IKE_SA_INIT request") == 1, log[-3000:]
        finally:
            _, _, err = gw.stop()
            print(err[-3000:])


def _delivered(c: Namespace) -> int:
    """Packets charon's libipsec decrypted and wrote into its TUN device (ipsec0), over
    every Child SA (charon rekeys its Child SA after each move)."""
    out = c.run("ip", "-s", "-j", "link", "show", "dev", "ipsec0").stdout
    (link,) = json.loads(out)
    return int(link["stats64"]["rx"]["packets"])
