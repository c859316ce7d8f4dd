"""Helpers for tests that run ``espfast up`` in namespaces: its status, the counters it
prints when it ends, and ending it without a word."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from espfast.netns import Namespace
from espfast.static import Running, control_socket_in, start_in, write_private


def status(ns: Namespace) -> list[dict[str, Any]]:
    """``espfast status --json``: the IKE SAs (an empty list if the daemon is gone)."""
    out = ns.run(
        sys.executable, "-m", "espfast", "status", "--socket", str(control_socket_in(ns)),
        "--json", check=False,
    )  # fmt: skip
    if out.returncode != 0:
        return []
    sas: list[dict[str, Any]] = json.loads(out.stdout)["ike_sas"]
    return sas


def packets_in(ns: Namespace) -> int:
    """ESP packets in over every Child SA ``espfast status`` shows."""
    return sum(c["packets_in"] for sa in status(ns) for c in sa["child_sas"])


def packets_out(ns: Namespace) -> int:
    return sum(c["packets_out"] for sa in status(ns) for c in sa["child_sas"])


def document(ns: Namespace) -> dict[str, Any]:
    """The whole ``espfast status --json`` document (daemon counters included)."""
    out = ns.run(sys.executable, "-m", "espfast", "status", "--socket",
                 str(control_socket_in(ns)), "--json")  # fmt: skip
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def ping(ns: Namespace, dst: str) -> bool:
    return ns.run("ping", "-c", "1", "-W", "1", dst, check=False).returncode == 0


def counters(stdout: str) -> dict[str, int]:
    """The counters ``espfast up`` prints when it ends."""
    line = next(x for x in stdout.splitlines() if x.startswith("espfast up: datagrams"))
    pairs = (item.rsplit(" ", 1) for item in line.removeprefix("espfast up: ").split(", "))
    return {k.replace(" ", "_"): int(v) for k, v in pairs}


def one_tunnel(ns: Namespace) -> bool:
    """Exactly one IKE SA with exactly one Child SA, established. An old IKE SA still
    retransmitting its DELETE after a rekey (its answer was lost, and the peer, which has
    forgotten that SA, will not answer again) carries no Child SA and goes when its
    retransmissions run out: that one is not counted."""
    sas = [sa for sa in status(ns) if not (sa["state"] == "DELETING" and not sa["child_sas"])]
    return len(sas) == 1 and sas[0]["state"] == "ESTABLISHED" and len(sas[0]["child_sas"]) == 1


def drops(stdout: str) -> dict[str, int]:
    """The dataplane drop counters ``espfast up`` prints when it ends."""
    line = next(x for x in stdout.splitlines() if x.startswith("espfast up: dataplane drops: "))
    items = line.removeprefix("espfast up: dataplane drops: ")
    return (
        {} if items == "none" else {k: int(v) for k, v in (i.split("=") for i in items.split(", "))}
    )


def kill(running: Running) -> None:
    """SIGKILL by PID: no DELETE goes out."""
    running.proc.kill()
    running.proc.wait(5)


def peek(running: Running) -> str:
    """What the daemon has said on stderr so far (non-blocking)."""
    assert running.proc.stderr is not None
    fd = running.proc.stderr.fileno()
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    chunk = running.proc.stderr.read() or b""
    running.stderr_head += chunk.decode(errors="replace")
    return running.stderr_head


def _toml_list(items: str | Sequence[str]) -> str:
    return json.dumps([items] if isinstance(items, str) else list(items))


def gateway_conf(*, listen: str, local_id: str, auth: str, pool: str | Sequence[str],
                 dns: str | Sequence[str], inner: str | Sequence[str],
                 local_ts: str | Sequence[str], name: str = "efgw0") -> str:  # fmt: skip
    """An ``espfast up`` gateway for road warriors: answers anyone, hands out ``pool``
    addresses (and ``dns``); ``auth`` is its credential lines (psk = ...)."""
    return f"""
[interface]
name = "{name}"
addresses = {_toml_list(inner)}
listen = "{listen}:4500"

[[connection]]
name = "roadwarriors"
remote = "%any"
local_id = "{local_id}"
{auth}
pool = {_toml_list(pool)}
dns = {_toml_list(dns)}

[[connection.child]]
name = "net"
local_ts = {_toml_list(local_ts)}
"""


def start_pair(tmp_path: Path, gw: tuple[Namespace, str], client: tuple[Namespace, str]
               ) -> tuple[Running, Running]:  # fmt: skip
    """``espfast up -v`` for a gateway and then its client: (namespace, config text) each;
    the configs are written under ``tmp_path``. Returns (gateway, client)."""
    (g, gw_text), (c, cl_text) = gw, client
    started = start_in(g, write_private(tmp_path / "gw.toml", gw_text), "-v", command="up")
    try:
        rw = start_in(c, write_private(tmp_path / "c.toml", cl_text), "-v", command="up")
    except BaseException:
        started.stop()
        raise
    return started, rw


def road_warrior_pair(tag: str, *, gateway: str, client_listen: str, auth: str,
                      gw_listen: str | None = None, keepalive: int | None = None
                      ) -> tuple[str, str]:  # fmt: skip
    """An ``espfast up`` gateway (gw.<tag>.test on ``gw_listen``, default ``gateway``:
    pool 198.19.100.0/24, its network 198.19.2.0/24 with 198.19.2.1 on its TUN device)
    and a road warrior of it (client@<tag>.test on ``client_listen``, reaching it at
    ``gateway``); ``keepalive``: both ends' NAT keepalive interval."""
    gw = gateway_conf(listen=gw_listen or gateway, local_id=f"gw.{tag}.test", auth=auth,
                      pool="198.19.100.0/24", dns="198.19.2.53", inner="198.19.2.1/24",
                      local_ts="198.19.2.0/24")  # fmt: skip
    client = client_conf(listen=client_listen, gateway=gateway, local_id=f"client@{tag}.test",
                         remote_id=f"gw.{tag}.test", auth=auth,
                         remote_ts="198.19.2.0/24")  # fmt: skip
    if keepalive is not None:
        gw, client = (t.replace("listen = ", f"keepalive = {keepalive}\nlisten = ", 1)
                      for t in (gw, client))  # fmt: skip
    return gw, client


def client_conf(*, listen: str, gateway: str, local_id: str, remote_id: str, auth: str,
                remote_ts: str | Sequence[str], vips: str | Sequence[str] = "0.0.0.0",
                name: str = "efrw0") -> str:  # fmt: skip
    """An ``espfast up`` road-warrior client of ``gateway``, asking for ``vips``."""
    return f"""
[interface]
name = "{name}"
listen = "{listen}:4500"

[[connection]]
name = "gw"
remote = "{gateway}"
local_id = "{local_id}"
remote_id = "{remote_id}"
{auth}
vips = {_toml_list(vips)}

[[connection.child]]
name = "net"
remote_ts = {_toml_list(remote_ts)}
"""


def ike_sa_init_count(pcap: Path) -> int:
    """IKE_SA_INIT messages (exchange type 34) on port 500."""
    from scapy.layers.inet import UDP
    from scapy.utils import rdpcap

    if not pcap.exists() or pcap.stat().st_size == 0:
        return 0
    return sum(1 for p in rdpcap(str(pcap))
               if UDP in p and len(bytes(p[UDP].payload)) > 18
               and bytes(p[UDP].payload)[18] == 34)  # fmt: skip


def capture(ns: Namespace, dev: str, pcap: Path, expression: str, *, snaplen: int = 0
            ) -> subprocess.Popen[bytes]:  # fmt: skip
    """tcpdump on ``dev`` in ``ns`` into ``pcap``, each packet written at once (``snaplen``:
    the octets kept of each, 0 for all); stop it with ``ns.stop``."""
    return ns.popen(
        "tcpdump", "-i", dev, "-n", "-U", "--immediate-mode", "-s", str(snaplen),
        "-w", str(pcap), expression,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
