"""``espfast up`` between two namespaces: IKEv2 with a PSK negotiates the Child SA that the
dataplane then carries ping through (the daemon skeleton end to end)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from espfast.netns import TwoHosts, wait_for
from espfast.static import control_socket_in, start_in, write_private
from espfast.up import pair_configs

PSK = "a pre-shared key long enough for the test"


def test_ike_negotiates_and_ping_flows(tmp_path: Path) -> None:
    a_conf, b_conf = pair_configs(PSK)
    with TwoHosts.create("st") as hosts:
        b = start_in(hosts.b, write_private(tmp_path / "b.toml", b_conf), command="up")
        a = start_in(hosts.a, write_private(tmp_path / "a.toml", a_conf), command="up")
        up = wait_for(
            lambda: hosts.a.run("ping", "-c", "1", "-W", "1", "198.19.2.1", check=False)
            .returncode == 0,
            timeout=15,
        )  # fmt: skip
        ping = hosts.b.run("ping", "-c", "3", "-i", "0.2", "198.19.1.1", check=False)
        status = hosts.a.run(
            sys.executable, "-m", "espfast", "status", "--socket",
            str(control_socket_in(hosts.a)), "--json", check=False,
        )  # fmt: skip
        status_a, out_a, err_a = a.stop()
        status_b, out_b, err_b = b.stop()
    assert up, err_a + err_b
    assert ping.returncode == 0, ping.stdout
    assert (status_a, status_b) == (0, 0), err_a + err_b
    assert "child SA up, aes128gcm16" in err_a and "child SA up, aes128gcm16" in err_b
    assert "ike sas up 1" in out_a and "child sas installed 1" in out_b
    assert PSK not in err_a + err_b + out_a + out_b
    assert status.returncode == 0, status.stderr
    (ike,) = json.loads(status.stdout)["ike_sas"]
    assert ike["state"] == "ESTABLISHED" and ike["child_sas"][0]["packets_in"] >= 3
