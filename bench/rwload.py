"""Many road warriors on one ``espfast up`` gateway: ``python -m bench rwload`` (as root).

    .venv/bin/python -m bench rwload                      # 1,000 clients, 2 charons
    .venv/bin/python -m bench rwload --clients 200 --charons 0 --tracemalloc
    .venv/bin/python -m bench rwload --auth eap           # EAP-MSCHAPv2, as Windows does

The gateway (b, 198.18.0.2) answers anyone with the PSK and hands out addresses of a
/22 pool; espfast/tools/rwload.py (in a) brings ``--clients`` road warriors up through it,
each from its own address of 198.18.16.0/22 (a local route in a) with its own identity,
at most ``--concurrency`` handshakes at a time; ``--charons`` strongSwan charons
(kernel-libipsec), each in a namespace of its own, connect alongside. Measured:

- bring-up: the seconds until all are up, handshakes per second, latency;
- memory per client: the gateway's RSS and malloc heap (``espfast_heap_bytes``, glibc
  mallinfo2: the dataplane's SAs, OpenSSL, the larger Python objects) before and after,
  divided by the clients; with ``--tracemalloc`` the gateway runs under tracemalloc
  (``PYTHONTRACEMALLOC=1``, slower) and Python's own share is reported too;
- per-packet dataplane cost: ICMP echoes sealed by the tool, opened and answered through
  the gateway (one decapsulation and one encapsulation each), from 1 client and from all
  of them round robin, paced (``ping``: 64 in flight, a packet or two per wake-up of the
  gateway's workers) and as fast as the tool sends (``flood``: full batches), in
  interleaved ``--rounds``; the CPU time of the gateway's dataplane worker threads
  (their schedstat, in ns) over the ESP packets they moved (its dataplane counters);
- isolation: each client seals one packet from the next client's address and one to it:
  the gateway must drop every one (``policy_drops``) and answer none.

One JSON line on stdout (``--json FILE`` appends it), a summary on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from espfast.netns import Namespace, TwoHosts, wait_for
from espfast.static import Running, control_socket_in, start_in, write_private
from espfast.tools.rwload import command, eap_credentials
from tests.interop.rwcharons import charon_clients
from tests.netns import opsconf
from tests.netns.updaemon import client_conf, gateway_conf

PSK = "a pre-shared key for a thousand road warriors"
SOURCES = "198.18.16.0/22"  # the tool's clients' outer addresses
POOL = "198.19.100.0/22"
GW_INNER, GW_NET = "198.19.2.1", "198.19.2.0/24"
METRICS_PORT = 9469
GW_ID = "gw.rwload.test"
GW_DNS = "198.19.2.53"


def configs(gw: str, client: str, extra: str, eap: tuple[str, str] | None = None
            ) -> tuple[str, str]:  # fmt: skip
    """The gateway's config (``extra``: [interface] lines) and the tool's client config,
    with a PSK or (``eap``: the lines of eap_credentials) EAP-MSCHAPv2."""
    auth, esp = f'psk = "{PSK}"', 'esp_proposals = "aes128gcm16"\n'
    gw_auth, rw_auth = eap or (auth, auth)
    gateway = gateway_conf(listen=gw, local_id=GW_ID, auth=gw_auth, pool=POOL, dns=GW_DNS,
                           inner=f"{GW_INNER}/24", local_ts=GW_NET)  # fmt: skip
    metrics = f'metrics = "{gw}:{METRICS_PORT}"\n'
    gateway = gateway.replace("[interface]\n", f"[interface]\n{metrics}{extra}")
    rw = client_conf(listen=client, gateway=gw, local_id="rw@rwload.test", remote_id=GW_ID,
                     auth=rw_auth, remote_ts=GW_NET)  # fmt: skip
    return gateway + esp, rw + esp


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return 1024 * int(next(x for x in f if x.startswith("VmRSS:")).split()[1])


def thread_ns(pid: int, prefix: str = "") -> int:
    """CPU time (ns, schedstat) of ``pid``'s threads whose name starts with ``prefix``."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            if (task / "comm").read_text().startswith(prefix):
                total += int((task / "schedstat").read_text().split()[0])
    return total


def scrape(ns: Namespace, addr: str) -> dict[str, float]:
    """The gateway's unlabelled metrics (fetched in its namespace: the endpoint is there)."""
    return {name: v for (name, labels), v in opsconf.scrape(ns, f"{addr}:{METRICS_PORT}").items()
            if not labels}  # fmt: skip


def daemon(ns: Namespace) -> dict[str, Any]:
    """The gateway's own counters and its dataplane's (``espfast status --json``)."""
    out = ns.run(sys.executable, "-m", "espfast", "status", "--socket",
                 str(control_socket_in(ns)), "--json")  # fmt: skip
    doc: dict[str, Any] = json.loads(out.stdout)["daemon"]
    return doc


def dataplane(ns: Namespace) -> dict[str, int]:
    counters: dict[str, int] = daemon(ns)["dataplane"]
    return counters


class Tool:
    """espfast/tools/rwload.py in a namespace, driven one command at a time."""

    def __init__(self, ns: Namespace, conf: Path, gw: str, clients: int) -> None:
        self.proc = ns.popen(
            sys.executable, "-m", "espfast.tools.rwload", str(conf), gw, "--sources", SOURCES,
            "--inner", GW_INNER, "--max-clients", str(clients), "--timeout", "600",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )  # fmt: skip

    def __call__(self, line: str) -> dict[str, Any]:
        return command(self.proc, line)


def pinged(ns: Namespace) -> bool:
    return ns.run("ping", "-c", "1", "-W", "1", GW_INNER, check=False).returncode == 0


def per_packet(tool: Tool, ns: Namespace, pid: int, mode: str, clients: int,
               count: int) -> dict[str, Any]:  # fmt: skip
    """One traffic phase (``ping``: paced, 64 echoes in flight; ``flood``: as fast as the
    tool sends): worker CPU ns per ESP packet the gateway moved."""
    before, cpu0, all0 = dataplane(ns), thread_ns(pid, "ef-"), thread_ns(pid)
    ping = tool(f"ping {clients} {count} 64" if mode == "ping" else f"flood {clients} {count}")
    cpu1, all1 = thread_ns(pid, "ef-"), thread_ns(pid)  # (before the status call's own work)
    after = dataplane(ns)
    packets = sum(after[k] - before[k] for k in ("rx_packets", "tx_packets"))
    seconds = ping.get("send_seconds", ping.get("seconds")) or 1e-9
    return {"clients": ping["clients"], "answered": ping["answered"],
            "offered_per_s": round(ping.get("sent", count) / seconds),
            "rx_gro": after["rx_gro"] - before["rx_gro"],
            "tx_gso": after["tx_gso"] - before["tx_gso"],
            "packets": packets, "worker_ns_per_packet": round((cpu1 - cpu0) / max(packets, 1)),
            "process_ns_per_packet": round((all1 - all0) / max(packets, 1))}  # fmt: skip


def run(a: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"bench": "rwload", "clients": a.clients, "auth": a.auth,
                              "concurrency": a.concurrency,
                              "load_before": os.getloadavg()[0]}  # fmt: skip
    extra = f"cookie_threshold = {a.cookie_threshold}\n" if a.cookie_threshold is not None else ""
    with tempfile.TemporaryDirectory(prefix="ef-rwload-") as tmpdir, \
            TwoHosts.create("rwl") as hosts:  # fmt: skip
        tmp = Path(tmpdir)
        hosts.a.run("ip", "route", "add", "local", SOURCES, "dev", "lo")
        hosts.b.run("ip", "route", "add", SOURCES, "via", hosts.addr_a)
        eap = None
        if a.auth == "eap":
            names = [f"rw{i}@rwload.test" for i in range(a.clients)]
            eap = eap_credentials(tmp, GW_ID, names, PSK)
        gw_toml, rw_toml = configs(hosts.addr_b, hosts.addr_a, extra, eap)
        gw_conf = write_private(tmp / "gw.toml", gw_toml)
        if a.tracemalloc:
            os.environ["PYTHONTRACEMALLOC"] = "1"
        try:
            gw: Running = start_in(hosts.b, gw_conf, command="up", timeout=60)
        finally:
            os.environ.pop("PYTHONTRACEMALLOC", None)
        tool = None
        try:
            time.sleep(1.0)  # the gateway settles (its first allocations)
            m0, rss0 = scrape(hosts.b, hosts.addr_b), rss_bytes(gw.pid)
            tool = Tool(hosts.a, write_private(tmp / "rw.toml", rw_toml), hosts.addr_b,
                        a.clients)  # fmt: skip
            cpu0 = thread_ns(gw.pid)
            up = tool(f"up {a.clients} {a.concurrency}")
            result["gateway_cpu_s_bring_up"] = round((thread_ns(gw.pid) - cpu0) / 1e9, 2)
            result["up"] = up
            c = daemon(hosts.b)["counters"]
            result["gateway_counters"] = {k: c[k] for k in (
                "ike_sas_up", "ike_retransmits", "ike_sa_init_cookies_sent",
                "ike_sa_init_dropped", "ike_sa_init_refused", "half_open_evicted")}  # fmt: skip
            m1, rss1 = scrape(hosts.b, hosts.addr_b), rss_bytes(gw.pid)
            n = max(up["up"], 1)
            result["memory_per_client"] = {
                "rss_bytes": round((rss1 - rss0) / n),
                "heap_bytes": round((m1["espfast_heap_bytes"] - m0["espfast_heap_bytes"]) / n),
            }
            if "espfast_python_traced_bytes" in m1:
                traced = m1["espfast_python_traced_bytes"] - m0["espfast_python_traced_bytes"]
                result["memory_per_client"]["python_traced_bytes"] = round(traced / n)
            with charon_clients(hosts, a.charons, tmp, gw_id=GW_ID, psk=PSK.encode(),
                                remote_ts=GW_NET, purpose="rwl") as charons:  # fmt: skip
                ok = [wait_for(lambda c=c: bool(c.installed_children("net")), timeout=30)
                      for _, c in charons]  # fmt: skip
                result["charons"] = {"started": len(charons), "up": sum(ok),
                                     "pinged": sum(pinged(ns) for ns, _ in charons)}  # fmt: skip
                phases = [(mode, n) for mode in ("ping", "flood") for n in (1, a.clients)]
                rounds: dict[str, list[dict[str, Any]]] = {f"{m} {n}": [] for m, n in phases}
                for _ in range(a.rounds):  # interleaved: the machine's load falls on all
                    for mode, n in phases:
                        phase = per_packet(tool, hosts.b, gw.pid, mode, n, a.packets)
                        rounds[f"{mode} {n}"].append(phase)
                result["traffic"] = {
                    k: {"worker_ns_per_packet": statistics.median(
                            r["worker_ns_per_packet"] for r in rs),
                        "process_ns_per_packet": statistics.median(
                            r["process_ns_per_packet"] for r in rs),
                        "rounds": rs}
                    for k, rs in rounds.items()}  # fmt: skip
                before = dataplane(hosts.b)
                spoof = tool(f"spoof {a.clients}")
                after = dataplane(hosts.b)
                result["isolation"] = {
                    "sent": spoof["sent"], "answered": spoof["answered"],
                    "policy_drops": after["policy_drops"] - before["policy_drops"],
                }  # fmt: skip
                result["charons"]["still_pinged"] = sum(pinged(ns) for ns, _ in charons)
            result["deleted"] = tool("quit")["deleted"]
        finally:
            if tool is not None:
                hosts.a.stop(tool.proc)
            gw.stop()
    return result


def summary(r: dict[str, Any]) -> str:
    up, mem, t = r["up"], r["memory_per_client"], r.get("traffic", {})
    lines = [
        f"load average {r['load_before']:.1f} before, {r['load_after']:.1f} after",
        f"{up['up']} of {r['clients']} up in {up['seconds']} s ({up['handshakes_per_s']}/s, "
        f"median {up['latency_ms_median']} ms, {up['distinct_leases']} distinct leases, "
        f"gateway CPU {r['gateway_cpu_s_bring_up']} s)",
        f"per client: RSS {mem['rss_bytes']} B, malloc heap {mem['heap_bytes']} B"
        + (f", Python {mem['python_traced_bytes']} B" if "python_traced_bytes" in mem else ""),
    ]
    for k, v in t.items():
        mode, n = k.split()
        ns, whole = v["worker_ns_per_packet"], v["process_ns_per_packet"]
        lines.append(f"{mode} from {n} client(s): {ns} ns worker CPU per ESP packet "
                     f"({whole} ns the whole gateway)")  # fmt: skip
    if "isolation" in r:
        i = r["isolation"]
        lines.append(f"isolation: {i['sent']} foreign packets, {i['policy_drops']} dropped, "
                     f"{i['answered']} answered")  # fmt: skip
    if "charons" in r:
        lines.append(f"charons: {r['charons']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench rwload", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--clients", type=int, default=1000, help="road warriors (at most 1000)")
    p.add_argument("--concurrency", type=int, default=32, help="handshakes in flight at most")
    p.add_argument("--charons", type=int, default=2,
                   help="strongSwan clients alongside (PSK; with --auth psk only)")  # fmt: skip
    p.add_argument("--auth", choices=["psk", "eap"], default="psk",
                   help="the clients' authentication: a PSK, or EAP-MSCHAPv2")  # fmt: skip
    p.add_argument("--packets", type=int, default=20000, help="echo requests per phase")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cookie-threshold", type=int, help="the gateway's (default: its own)")
    p.add_argument("--tracemalloc", action="store_true", help="the gateway under tracemalloc")
    p.add_argument("--json", help="append the result to this file")
    a = p.parse_args(argv)
    if a.auth == "eap":
        a.charons = 0  # (the gateway's one connection then speaks EAP; they have a PSK)
    if not 2 <= a.clients <= 1000:
        p.error("--clients: 2 to 1000 (the /22 of source addresses and the pool)")
    result = run(a)
    result["load_after"] = os.getloadavg()[0]
    result["at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    line = json.dumps(result)
    print(line)
    print(summary(result), file=sys.stderr)
    if a.json:
        with open(a.json, "a") as out:
            out.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
