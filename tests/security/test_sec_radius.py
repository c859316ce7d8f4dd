"""Attack: spoofed RADIUS answers. The gateway relays a road warrior's EAP to a RADIUS
server (tests/security/radiusfake.py) that sends, before each genuine answer, the answer
with a wrong Response Authenticator, the answer from another source address, and the
answer with a wrong Message-Authenticator. The gateway must believe none of them (each
is counted: dropped_forged, dropped_unknown), log none of them above DEBUG, and still
let the client in with the genuine answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from espfast.netns import TwoHosts, wait_for
from espfast.static import start_in
from tests.interop.freeradius import RADIUS, SECRET, behind, confs

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "netns"))
from eapconf import GW_NET, PASSWORD
from updaemon import peek, ping

SPOOF = "198.18.5.9"  # a second address of the RADIUS namespace: the wrong source
FAKE = Path(__file__).resolve().parent / "radiusfake.py"


def _radius_counters(stdout: str) -> dict[str, int]:
    line = next(x for x in stdout.splitlines() if x.startswith("espfast up: radius: "))
    items = line.removeprefix("espfast up: radius: ").split(", ")
    return {k: int(v) for k, v in (i.split("=") for i in items)}


def test_spoofed_radius_answers_are_ignored_and_counted(tmp_path: Path) -> None:
    gw_conf, rw_conf = confs(tmp_path, PASSWORD, servers=(RADIUS,))
    pw = tmp_path / "carol.pw"
    with TwoHosts.create("secrad") as hosts, behind(hosts.b) as rns:
        rns.run("ip", "addr", "add", f"{SPOOF}/24", "dev", "veth-g")
        secret = str(tmp_path / "radius.secret")
        args = (RADIUS, SPOOF, secret, "carol", str(pw), "--lifetime", "60")
        fake = rns.popen(sys.executable, str(FAKE), *args, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)  # fmt: skip
        try:
            gw = start_in(hosts.b, gw_conf, "-v", command="up")
            client = start_in(hosts.a, rw_conf, "-v", command="up")
            try:
                assert wait_for(lambda: ping(hosts.a, GW_NET), timeout=40), peek(gw)
            finally:
                client.stop()
                _, out_g, err_g = gw.stop()
        finally:
            rns.stop(fake)
            assert fake.stdout is not None
            said = fake.stdout.read().decode(errors="replace")
    counted = _radius_counters(out_g)
    rounds = said.count("with 3 forgeries")
    assert rounds >= 3, said  # identity, MSCHAPv2 response, success ack
    # per request: two forgeries from the server's address, one from elsewhere
    assert counted["dropped_forged"] >= 2 * rounds, counted
    assert counted["dropped_unknown"] >= rounds, counted
    assert "EAP-RADIUS authenticated 'carol'" in err_g, err_g
    assert "RADIUS answer" not in err_g  # forgeries cost a counter, not a log line
    assert SECRET not in err_g + out_g and PASSWORD not in err_g + out_g
