"""``espfast up`` between two namespaces: IKEv2 with a PSK negotiates the Child SA that the
dataplane then carries ping and an iperf3 run through; ``espfast status --json`` on both
ends shows the IKE SA and Child SA with matching SPIs (in on one end = out on the other)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from espfast.netns import Namespace, TwoHosts, wait_for
from espfast.static import control_socket_in, start_in, write_private
from espfast.up import pair_configs

PSK = "a pre-shared key long enough for the test"


def status_json(ns: Namespace) -> dict[str, Any]:
    """``espfast status --json`` in ``ns`` against the daemon there."""
    out = ns.run(
        sys.executable, "-m", "espfast", "status", "--socket",
        str(control_socket_in(ns)), "--json",
    )  # fmt: skip
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


# The default worker count (one per two CPUs: 1 on a small machine), and 2 workers per
# direction, whose ordered hand-offs the Child SA's traffic must pass through too.
@pytest.mark.parametrize("workers", [None, 2])
def test_ike_negotiates_ping_and_iperf3_flow(tmp_path: Path, workers: int | None) -> None:
    a_conf, b_conf = pair_configs(PSK, workers=workers)
    assert ("workers = 2" in a_conf) == (workers == 2)
    with TwoHosts.create("i3") as hosts:
        b = start_in(hosts.b, write_private(tmp_path / "b.toml", b_conf), "-v", command="up")
        a = start_in(hosts.a, write_private(tmp_path / "a.toml", a_conf), "-v", command="up")
        up = wait_for(
            lambda: hosts.a.run("ping", "-c", "1", "-W", "1", "198.19.2.1", check=False)
            .returncode == 0,
            timeout=15,
        )  # fmt: skip
        ping = hosts.b.run("ping", "-c", "3", "-i", "0.2", "198.19.1.1", check=False)
        server = hosts.b.popen(
            "iperf3", "-s", "-1", "-B", "198.19.2.1",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        assert wait_for(lambda: ":5201" in hosts.b.run("ss", "-Htln").stdout, timeout=10)
        client = hosts.a.run(
            "iperf3", "-c", "198.19.2.1", "-B", "198.19.1.1", "-t", "2", "-J",
            check=False, timeout=60,
        )  # fmt: skip
        hosts.b.stop(server)
        doc_a, doc_b = status_json(hosts.a), status_json(hosts.b)
        status_a, out_a, err_a = a.stop()
        status_b, out_b, err_b = b.stop()
    assert up, err_a + err_b
    assert ping.returncode == 0, ping.stdout
    iperf = json.loads(client.stdout)
    assert "error" not in iperf, iperf.get("error")
    assert iperf["end"]["sum_received"]["bytes"] > 1_000_000  # megabytes in 2 s
    assert (status_a, status_b) == (0, 0), err_a + err_b
    assert "child SA up, aes128gcm16" in err_a and "child SA up, aes128gcm16" in err_b
    assert "ike sas up 1" in out_a and "child sas installed 1" in out_b
    assert PSK not in err_a + err_b + out_a + out_b
    (ike_a,) = doc_a["ike_sas"]
    (ike_b,) = doc_b["ike_sas"]
    assert ike_a["state"] == ike_b["state"] == "ESTABLISHED"
    assert (ike_a["initiator"], ike_b["initiator"]) == (True, False)
    assert (ike_a["spi_i"], ike_a["spi_r"]) == (ike_b["spi_i"], ike_b["spi_r"])
    assert ike_a["proposal"] == ike_b["proposal"]
    (child_a,) = ike_a["child_sas"]
    (child_b,) = ike_b["child_sas"]
    assert (child_a["spi_in"], child_a["spi_out"]) == (child_b["spi_out"], child_b["spi_in"])
    assert child_a["transform"] == child_b["transform"] == "aes128gcm16"
    assert child_a["packets_in"] >= 3 and child_b["packets_in"] >= 3
    assert child_b["bytes_in"] > 1_000_000  # the iperf3 run, decrypted by b
    # The daemon's counters and the dataplane's, while it runs.
    assert doc_a["daemon"]["counters"]["ike_sas_up"] == 1
    assert doc_b["daemon"]["counters"]["child_sas_installed"] == 1
    assert doc_b["daemon"]["dataplane"]["rx_bytes"] > 1_000_000
