"""Configs for the operations tests (test_ops_*.py): gateway a initiates several
connections to gateway b, each with identities and inner prefixes of its own, so that
they can be added, removed and changed one by one."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from espfast.netns import Namespace
from espfast.static import control_socket_in

PSK = "the operations test's pre-shared key"
A, B = "198.18.0.1", "198.18.0.2"


@dataclass(frozen=True)
class Conn:
    """Connection ``name``: a (``name``.a.test) sends 198.19.``n``.0/24 to b's
    198.19.``n + 1``.0/24."""

    name: str
    n: int
    esp: str = "aes128gcm16"
    start: str = "start"
    psk: str = PSK

    def a_side(self) -> str:
        return f"""
[[connection]]
name = "{self.name}"
remote = "{B}"
local_id = "{self.name}.a.test"
remote_id = "b.test"
psk = "{self.psk}"

[[connection.child]]
name = "{self.name}"
local_ts = ["198.19.{self.n}.0/24"]
remote_ts = ["198.19.{self.n + 1}.0/24"]
esp_proposals = "{self.esp}"
start_action = "{self.start}"
"""

    def b_side(self) -> str:
        return f"""
[[connection]]
name = "{self.name}"
remote = "%any"
local_id = "b.test"
remote_id = "{self.name}.a.test"
psk = "{PSK}"

[[connection.child]]
name = "{self.name}"
local_ts = ["198.19.{self.n + 1}.0/24"]
remote_ts = ["198.19.{self.n}.0/24"]
esp_proposals = "aes128gcm16,aes256gcm16"
"""


def interface(addr: str, inner: list[str], metrics: str = "") -> str:
    return (
        "[interface]\n"
        'name = "efops0"\n'
        f"addresses = {json.dumps(inner)}\n"
        f'listen = "{addr}:4500"\n' + (f'metrics = "{metrics}"\n' if metrics else "")
    )


def a_conf(conns: list[Conn], metrics: str = "") -> str:
    inner = [f"198.19.{c.n}.1/24" for c in conns]
    return interface(A, inner, metrics) + "".join(c.a_side() for c in conns)


def b_conf(conns: list[Conn], metrics: str = "") -> str:
    inner = [f"198.19.{c.n + 1}.1/24" for c in conns]
    return interface(B, inner, metrics) + "".join(c.b_side() for c in conns)


def espfast(ns: Namespace, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """``espfast ARGS --socket <the daemon's in ns>``: (exit status, stdout, stderr)."""
    out = ns.run(
        sys.executable, "-m", "espfast", *args, "--socket", str(control_socket_in(ns)),
        check=False, timeout=timeout,
    )  # fmt: skip
    return out.returncode, out.stdout, out.stderr


def by_name(sas: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``espfast status --json``'s IKE SAs by connection, leaving out those on their way
    out (DELETING)."""
    return {sa["name"]: sa for sa in sas if sa["state"] != "DELETING"}


FETCH = """
import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as r:
        sys.stdout.write(r.read().decode())
except OSError as e:
    print(f"unreachable: {e}", file=sys.stderr)
    sys.exit(3)
"""
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(ns: Namespace, address: str) -> Samples:
    """The samples at http://address/metrics (fetched inside ``ns``), by (name, sorted
    labels)."""
    out = ns.run(sys.executable, "-c", FETCH, f"http://{address}/metrics", check=False)
    assert out.returncode == 0, out.stderr
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(out.stdout)
        for s in family.samples
    }
