"""Split tunnel (INTERNAL_IP4_SUBNET, RFC 7296 §3.15.1): a road warrior that holds a valid
credential is entitled to its lease and to the networks the gateway protects, nothing
wider. Through the real daemon over UDP, with espfast/tools/rwload.py as the client (the
control plane's initiator with a crafted config; ESP sealed in the tool):

- it proposes TSr = 0.0.0.0/0 (wider than the gateway's local_ts): the Child SA comes up
  narrowed to 198.19.2.0/24 and TSi to its lease;
- it proposes a TSi around its lease (the pool): narrowed to the lease; a TSi that does
  not hold the lease: refused (TS_UNACCEPTABLE);
- inside its SA it sends to a network of the gateway's host outside the split
  (198.19.50.1, a real address there that would answer) and from an address that is not
  its lease: the gateway drops both after decryption (``policy_drops``) and nothing
  comes back, while the same echo inside the split is answered."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sec_authz import daemon_status
from updaemon import gateway_conf

from espfast.netns import TwoHosts
from espfast.static import start_in, write_private
from espfast.tools.rwload import command

PSK = "a group pre-shared key for the split-tunnel attack"
AUTH = f'psk = "{PSK}"'
SPLIT, GW_INNER, OUTSIDE = "198.19.2.0/24", "198.19.2.1", "198.19.50.1"
POOL, LEASE = "198.19.100.0/24", "198.19.100.1"
SOURCES = "198.18.16.0/24"
Tool = Callable[[str], dict[str, Any]]


def client(local_ts: str | None, remote_ts: str) -> str:
    """A road warrior asking for an address, with the selectors it proposes."""
    tsi = f'local_ts = ["{local_ts}"]\n' if local_ts else ""
    return f"""
[interface]
name = "efsplit0"

[[connection]]
name = "gw"
remote = "198.18.0.2"
local_id = "mallory@split.test"
remote_id = "gw.split.test"
{AUTH}
vips = ["0.0.0.0"]

[[connection.child]]
name = "net"
{tsi}remote_ts = ["{remote_ts}"]
esp_proposals = "aes128gcm16"
"""


@contextmanager
def gateway_and_client(tmp_path: Path, conf: str) -> Iterator[tuple[TwoHosts, Tool]]:
    """The gateway in b (with OUTSIDE on its host), the client in a: yields the hosts and
    a function that runs one rwload command."""
    gw = gateway_conf(listen="198.18.0.2", local_id="gw.split.test", auth=AUTH, pool=POOL,
                      dns="198.19.2.53", inner=f"{GW_INNER}/24", local_ts=SPLIT)  # fmt: skip
    with TwoHosts.create("split") as hosts:
        hosts.a.run("ip", "route", "add", "local", SOURCES, "dev", "lo")
        hosts.b.run("ip", "route", "add", SOURCES, "via", hosts.addr_a)
        # A network of the gateway's host outside the split: it would answer a ping.
        hosts.b.run("ip", "addr", "add", f"{OUTSIDE}/32", "dev", "lo")
        daemon = start_in(hosts.b, write_private(tmp_path / "gw.toml", gw), command="up")
        proc = hosts.a.popen(
            sys.executable, "-m", "espfast.tools.rwload",
            str(write_private(tmp_path / "rw.toml", conf)), hosts.addr_b, "--sources", SOURCES,
            "--inner", GW_INNER, "--max-clients", "1", "--timeout", "30",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip
        try:
            yield hosts, lambda line: command(proc, line)
        finally:
            hosts.a.stop(proc)
            daemon.stop()


def policy_drops(hosts: TwoHosts) -> int:
    drops: int = daemon_status(hosts.b)["daemon"]["dataplane"]["policy_drops"]
    return drops


def test_a_wider_tsr_is_narrowed_and_traffic_outside_the_split_is_dropped(
    tmp_path: Path,
) -> None:
    with gateway_and_client(tmp_path, client(None, "0.0.0.0/0")) as (hosts, tool):
        up = tool("up 1")
        assert up["up"] == 1, up
        # The gateway narrowed what it protects for us to the split, and TSi to the lease.
        assert up["remote_ts"] == [SPLIT] and up["narrowed_to_lease"] == 1, up
        (ike,) = daemon_status(hosts.b)["ike_sas"]
        (child,) = ike["child_sas"]
        assert (child["local_ts"], child["remote_ts"]) == ([SPLIT], [f"{LEASE}/32"]), child
        inside = tool(f"probe 1 vip {GW_INNER}")
        before = policy_drops(hosts)
        outside = tool(f"probe 1 vip {OUTSIDE}")  # a network the split does not hold
        foreign = tool(f"probe 1 198.19.100.200 {GW_INNER}")  # not our lease
        everywhere = tool("probe 1 vip 198.18.0.2")  # the gateway's outer address
        after = policy_drops(hosts)
    assert inside["answered"] == 1 and inside["from"] == [GW_INNER], inside
    for probe in (outside, foreign, everywhere):
        assert probe["sent"] == 1 and probe["answered"] == 0, probe
    assert after - before == 3


@pytest.mark.parametrize(
    ("tsi", "outcome"),
    [(POOL, "narrowed"), ("198.19.100.128/25", "refused"), ("198.19.50.0/24", "refused")],
)
def test_a_tsi_other_than_the_lease_is_narrowed_or_refused(
    tmp_path: Path, tsi: str, outcome: str
) -> None:
    with gateway_and_client(tmp_path, client(tsi, SPLIT)) as (hosts, tool):
        up = tool("up 1")
        sas = daemon_status(hosts.b)["ike_sas"]
    if outcome == "narrowed":
        assert up["up"] == 1 and up["narrowed_to_lease"] == 1, up
        (child,) = sas[0]["child_sas"]
        assert child["remote_ts"] == [f"{LEASE}/32"], child
    else:
        assert up["up"] == 0 and any("TS_UNACCEPTABLE" in f for f in up["failures"]), up
        # Its IKE SA may stand (its credential is good), but it holds no Child SA.
        assert all(sa["child_sas"] == [] for sa in sas), sas
