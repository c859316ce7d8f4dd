"""MOBIKE against strongSwan (RFC 4555): ``espfast up`` the roaming initiator, charon
(kernel-libipsec) the responder. The client has two uplinks ('wifi' and 'cell',
espfast/tools/mobilitynet.py) and listens on the wildcard address; when the wifi link goes
down it sends UPDATE_SA_ADDRESSES (NAT-D, COOKIE2) from its cell address, charon moves
the IKE SA and the Child SA there; wifi back, back again. Ping through the tunnel after
each move, a sequence-numbered UDP flow from charon's side throughout (the datagrams lost
and the longest gap printed), and the same IKE SA (charon's SPIs and unique id, one
IKE_SA_INIT) throughout. (charon roaming against an espfast gateway:
test_roam_charon.py.)"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from espfast.netns import Namespace, wait_for
from espfast.static import control_socket_in, start_in, write_private
from espfast.tools.mobilitynet import CELL, GW, WIFI, uplinks
from espfast.tools.udpflow import check_loss, flow_in_background
from tests.interop.conftest import CharonFactory
from tests.interop.strongswan import Connection, Psk, same_ike_sa, swanctl_conf

SECRET = b"mobike interop test: a long enough pre-shared key"
IDS = ("roamer.mobike.test", "gw.mobike.test")
INNER_C, INNER_G = "198.19.1.1", "198.19.2.1"
TS_C, TS_G = "198.19.1.0/24", "198.19.2.0/24"
COUNT, INTERVAL = 2000, 0.01  # a 20 s flow, whatever the steps take
MAX_LOST = 600  # three moves, each one UPDATE_SA_ADDRESSES round trip

CLIENT = f"""
[interface]
name = "efmob0"
addresses = ["{INNER_C}/24"]
listen = "0.0.0.0:4500"

[[connection]]
name = "charon"
remote = "{GW}"
local_id = "{IDS[0]}"
remote_id = "{IDS[1]}"
psk = "0x{SECRET.hex()}"

[[connection.child]]
name = "net"
local_ts = ["{TS_C}"]
remote_ts = ["{TS_G}"]
"""


def tunnel_works(c: Namespace) -> bool:
    return wait_for(
        lambda: c.run("ping", "-c", "1", "-W", "1", "-I", INNER_C, INNER_G, check=False)
        .returncode == 0,
        timeout=10,
    )  # fmt: skip


def espfast_ike(c: Namespace) -> dict[str, Any]:
    import json

    out = c.run(sys.executable, "-m", "espfast", "status", "--json", "--socket",
                str(control_socket_in(c)))  # fmt: skip
    (ike,) = json.loads(out.stdout)["ike_sas"]
    result: dict[str, Any] = ike
    return result


def test_espfast_roams_charon_follows(tmp_path: Path, charons: CharonFactory) -> None:
    with uplinks() as hosts:
        hosts.g.run("ip", "addr", "add", f"{INNER_G}/32", "dev", "lo")
        conn = Connection(local_addrs=GW, remote_addrs="%any", local_id=IDS[1],
                          remote_id=IDS[0], local_ts=TS_G, remote_ts=TS_C,
                          extra={"mobike": "yes"})  # fmt: skip
        charon = charons.start(hosts.g, swanctl_conf([conn], [Psk(ids=IDS, secret=SECRET)]))
        client = start_in(hosts.c, write_private(tmp_path / "c.toml", CLIENT), "-v",
                          command="up")  # fmt: skip
        try:
            charon.wait_child("net")
            assert tunnel_works(hosts.c)
            first = charon.established_ike()
            assert first["remote-host"] == WIFI, first
            # A flow from charon's side to ours while we move (the ESP that must follow).
            with flow_in_background(hosts.g, hosts.c, INNER_C, count=COUNT,
                                    interval=INTERVAL) as got:  # fmt: skip
                for step, expect in ((hosts.wifi_down, CELL), (hosts.prefer_wifi, WIFI),
                                     (hosts.wifi_down, CELL)):  # fmt: skip
                    step()
                    assert wait_for(
                        lambda e=expect: charon.established_ike()["remote-host"] == e,
                        timeout=10,
                    ), (charon.established_ike(), charon.log(60))  # fmt: skip
                    assert tunnel_works(hosts.c), charon.log(60)
            check_loss(got, COUNT, INTERVAL, "espfast roaming wifi -> cell -> wifi -> cell "
                       "(charon gateway)", max_lost=MAX_LOST)  # fmt: skip
            now = charon.established_ike()
            assert same_ike_sa(first, now), (first, now)
            ours = espfast_ike(hosts.c)
            assert ours["moves"] == 3 and ours["mobike"], ours
            assert ours["local_addr"] == f"{CELL}:4500"
            log = charon.log(None)
            assert log.count("N(UPD_SA_ADDR)") >= 3 and "N(COOKIE2)" in log, log[-3000:]
            assert log.count("parsed IKE_SA_INIT request") == 1, log[-3000:]
            print(next(line for line in log.splitlines() if "N(UPD_SA_ADDR)" in line))
        finally:
            _, _, err = client.stop()
            print(err[-2000:])
