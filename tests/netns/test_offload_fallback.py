"""Offloads forced on and off: the same 16 MiB of TCP data arrive byte for byte.

Two `espfast static` ends in two namespaces. "on": the TUN opened with IFF_VNET_HDR and
every offload the kernel offers (TSO super-packets cut in C, TCP coalescing on write,
UDP GSO and GRO on 4500) — and the counters prove each one was used. "off":
interface.offload = false and ESPFAST_DISABLE_OFFLOADS=all — one packet per read,
write and datagram, and those counters stay at zero. Either way the SHA-256 of what the
receiver got equals that of what the sender sent.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from espfast.dataplane import DISABLE_ENV
from espfast.netns import TwoHosts, wait_for
from espfast.static import pair_configs, start_in, write_private

A4, B4 = "198.19.1.1", "198.19.2.1"
PORT = 5301
SIZE = 16 << 20
SEED = 4303

SINK = f"""
import hashlib, socket
s = socket.create_server(("{B4}", {PORT}))
c, _ = s.accept()
c.settimeout(60)
h, n = hashlib.sha256(), 0
while data := c.recv(1 << 20):
    h.update(data)
    n += len(data)
print(n, h.hexdigest(), flush=True)
"""

SOURCE = f"""
import hashlib, random, socket
data = random.Random({SEED}).randbytes({SIZE})
with socket.create_connection(("{B4}", {PORT}), timeout=60) as c:
    c.sendall(data)
print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
"""

# Counters that move only when an offload carries traffic (struct ef_stats).
SENDER_OFFLOAD = ("tun_tso", "tx_gso")
RECEIVER_OFFLOAD = ("rx_gro", "tun_gro")


def expected() -> str:
    return hashlib.sha256(random.Random(SEED).randbytes(SIZE)).hexdigest()


def stop(side: Any) -> dict[str, Any]:
    status, out, err = side.stop()
    assert status == 0, err
    report: dict[str, Any] = json.loads(out)
    return report


@pytest.mark.parametrize("offload", [True, False], ids=["offloads-on", "offloads-off"])
def test_16mib_tcp_identical_with_offloads_on_and_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, offload: bool
) -> None:
    if offload:
        monkeypatch.delenv(DISABLE_ENV, raising=False)
    else:
        monkeypatch.setenv(DISABLE_ENV, "all")  # inherited by `espfast static`
    text_a, text_b = pair_configs("aes128gcm16", offload=offload)
    conf_a = write_private(tmp_path / "a.toml", text_a)
    conf_b = write_private(tmp_path / "b.toml", text_b)
    with TwoHosts.create("perf") as hosts:
        a = start_in(hosts.a, conf_a, "--json")
        b = start_in(hosts.b, conf_b, "--json")
        assert wait_for(
            lambda: hosts.a.run("ping", "-c", "1", "-W", "1", B4, check=False).returncode == 0,
            timeout=10,
            interval=0.2,
        )
        sink = hosts.b.popen(
            sys.executable, "-c", SINK, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        assert wait_for(lambda: f":{PORT}" in hosts.b.run("ss", "-Htln").stdout, timeout=10)
        source = hosts.a.run(sys.executable, "-c", SOURCE, timeout=120)
        got, err = sink.communicate(timeout=60)
        assert sink.returncode == 0, err.decode()
        report_a, report_b = stop(a), stop(b)

    want = f"{SIZE} {expected()}"
    assert source.stdout.split() == want.split()  # what left a
    assert got.decode().split() == want.split()  # what reached b, checksummed there
    sender, receiver = report_a["global"], report_b["global"]
    for name in SENDER_OFFLOAD:
        assert (sender[name] > 0) is offload, (name, sender[name])
    for name in RECEIVER_OFFLOAD:
        assert (receiver[name] > 0) is offload, (name, receiver[name])
    assert receiver["auth_failures"] == receiver["replay_drops"] == 0
