"""Review item 3: IKE_SA_INIT requests offering a MODP group with a bogus KE value, from
spoofed addresses at 2,000 a second. The value is refused before any key exchange work
(and nothing is kept), so the daemon keeps answering: a legitimate initiator still gets
its IKE SA during the flood, and the drops are counted."""

from __future__ import annotations

import subprocess
import sys

from tests.security.secharness import MODP_PROPOSALS, SPOOF_NET, end, responder, tool

RATE, SECONDS = 2000, 15


def test_spoofed_modp_flood_costs_no_key_exchange_and_handshakes_go_on() -> None:
    with responder("sec-dh", MODP_PROPOSALS) as (hosts, b, a_path):
        hosts.b.run("ip", "route", "add", SPOOF_NET, "via", hosts.addr_a)
        flood = hosts.a.popen(
            sys.executable, "-m", "espfast.tools.ikeload", "spoof", hosts.addr_b,
            "--rate", str(RATE), "--seconds", str(SECONDS), "--group", "15", "--ke", "one",
            "--spoof-net", SPOOF_NET, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        legit = tool(hosts.a, "handshakes", str(a_path), hosts.addr_b, "--source",
                     hosts.addr_a, "--count", "2", "--timeout", "10")  # fmt: skip
        still_flooding = flood.poll() is None
        _, err = flood.communicate(timeout=SECONDS + 30)
        assert flood.returncode == 0, err
        counts, _ = end(b)
    assert still_flooding, "the handshakes must run during the flood"
    assert legit["failed"] == 0, legit
    # Most of the flood reached the daemon and was dropped there, counted.
    assert counts["ike_sa_init_dropped"] > RATE, counts
    assert counts["ike_sas_up"] == 2, counts
