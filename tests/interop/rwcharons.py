"""strongSwan charons as road warriors of a gateway in namespace b, each in a namespace of
its own wired to b (198.18.(8+k).0/30 for the k-th), asking for a virtual IP with a PSK:
the real clients beside espfast/tools/rwload.py's (tests/interop/test_rwload_charon.py,
bench/rwload.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from espfast.netns import Namespace, TwoHosts
from tests.interop.strongswan import Charon, Connection, Psk, swanctl_conf

Clients = list[tuple[Namespace, Charon]]


@contextlib.contextmanager
def charon_clients(hosts: TwoHosts, count: int, tmp: Path, *, gw_id: str, psk: bytes,
                   remote_ts: str, purpose: str = "rwc") -> Iterator[Clients]:  # fmt: skip
    """``count`` charons (identities ``charon<k>@rwload.test``) that start their
    connection to b at once; stopped, and their namespaces removed, on exit."""
    with contextlib.ExitStack() as stack:
        out = []
        for k in range(count):
            ns = stack.enter_context(Namespace.create(purpose))
            mine, gw_side = f"198.18.{8 + k}.1", f"198.18.{8 + k}.2"
            ns.run("ip", "link", "add", "veth-c", "type", "veth", "peer", "name", f"veth-c{k}",
                   "netns", hosts.b.name)  # fmt: skip
            ns.run("ip", "addr", "add", f"{mine}/30", "dev", "veth-c")
            ns.run("ip", "link", "set", "veth-c", "up")
            ns.run("ip", "route", "add", "default", "via", gw_side)
            hosts.b.run("ip", "addr", "add", f"{gw_side}/30", "dev", f"veth-c{k}")
            hosts.b.run("ip", "link", "set", f"veth-c{k}", "up")
            me = f"charon{k}@rwload.test"
            conn = Connection(local_addrs=mine, remote_addrs=hosts.addr_b, local_id=me,
                              remote_id=gw_id, local_ts="dynamic", remote_ts=remote_ts,
                              start_action="start", extra={"vips": "0.0.0.0"})  # fmt: skip
            secret = Psk(ids=(gw_id, me), secret=psk)
            charon = stack.enter_context(
                Charon.start(ns, tmp / f"charon{k}", swanctl_conf([conn], [secret]))
            )
            out.append((ns, charon))
        yield out


def charon_vip(charon: Charon) -> str | None:
    """The virtual IP charon got (its installed Child SA's local selector), if any."""
    for ike in charon.list_sas():
        for child in ike.get("child-sas", {}).values():
            if child.get("state") == "INSTALLED" and child.get("local-ts"):
                return str(child["local-ts"][0]).split("/")[0]
    return None
