"""``espfast status``: the running daemon's IKE and Child SAs, through its control socket.

Prints two tables (IKE SAs, then Child SAs with their traffic counters), or with
``--json`` the status document exactly as the daemon sent it (its schema is
:class:`espfast.ctl.StatusDocument`). Exit status 1 with one line on stderr when the
daemon is not running, the socket is not accessible, or the answer is malformed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence

from espfast.control.text import printable
from espfast.ctl import (
    ControlError,
    DaemonStatus,
    IkeSaStatus,
    SchemaError,
    StatusDocument,
    add_socket_argument,
    check_document,
    request,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_socket_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the raw status document")
    parser.add_argument(
        "--timeout", type=float, default=5.0, metavar="S", help="seconds to wait for an answer"
    )


def run(args: argparse.Namespace) -> int:
    try:
        doc = request("status", args.socket, timeout=args.timeout)
        check_document(doc)
    except ControlError as e:
        print(f"espfast status: {e}", file=sys.stderr)
        return 1
    except SchemaError as e:
        print(f"espfast status: the daemon sent a malformed status: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(render(doc))
    return 0


# ---------------------------------------------------------------------------------------
# The human form


def mobility(ike: IkeSaStatus) -> str:
    """ "nat-local,mobike,moved 2": who is behind a NAT, MOBIKE, how often it moved."""
    words = [w for w, on in (("nat-local", ike.get("nat_local")),
                             ("nat-remote", ike.get("nat_remote")),
                             ("mobike", ike.get("mobike"))) if on]  # fmt: skip
    if ike.get("moves"):
        words.append(f"moved {ike.get('moves')}")
    return ",".join(words) or "-"


def render(doc: StatusDocument, now: float | None = None) -> str:
    now = time.time() if now is None else now
    d = doc["daemon"]
    ike_sas = doc["ike_sas"]
    children = [(ike, child) for ike in ike_sas for child in ike["child_sas"]]
    lines = [
        f"espfast daemon pid {d['pid']} (version {d['version']}), up {age(now - d['started'])},"
        f" config {d['config']}",
        "",
    ]
    if not ike_sas:
        lines.append("IKE SAs: none")
    else:
        lines.append(f"IKE SAs ({len(ike_sas)}):")
        rows = [
            [
                ike["name"],
                ike["state"],
                "initiator" if ike["initiator"] else "responder",
                f"{ike['local_addr']} [{ike['local_id']}]"
                + "".join(f" vip {a}" for a in ike.get("virtual_ips", [])),
                f"{ike['remote_addr']} [{ike['remote_id']}]"
                + "".join(f" vip {a}" for a in ike.get("peer_virtual_ips", [])),
                ike["proposal"] or "-",
                f"{ike['spi_i']:016x}_i {ike['spi_r']:016x}_r",
                since(ike["established"], now),
                mobility(ike),
            ]
            for ike in ike_sas
        ]
        headers = ["NAME", "STATE", "ROLE", "LOCAL", "REMOTE", "PROPOSAL", "SPIS", "ESTABLISHED",
                   "MOBILITY"]  # fmt: skip
        lines += table(headers, rows)
    lines.append("")
    if not children:
        lines.append("Child SAs: none")
    else:
        lines.append(f"Child SAs ({len(children)}):")
        rows = [
            [
                f"{ike['name']}/{c['name']}",
                c["state"],
                f"{c['spi_in']:08x}",
                f"{c['spi_out']:08x}",
                c["transform"] + ("-esn" if c["esn"] else ""),
                ",".join(c["local_ts"]) or "-",
                ",".join(c["remote_ts"]) or "-",
                f"{c['packets_in']} / {size(c['bytes_in'])}",
                f"{c['packets_out']} / {size(c['bytes_out'])}",
                ", ".join(f"{k} {v}" for k, v in sorted(c["drops"].items()) if v) or "-",
                since(c["established"], now),
                "-" if c["rekey_at"] is None else f"in {age(c['rekey_at'] - now)}",
            ]
            for ike, c in children
        ]
        headers = [
            "IKE/CHILD", "STATE", "SPI IN", "SPI OUT", "ESP", "LOCAL TS", "REMOTE TS",
            "IN PKTS/BYTES", "OUT PKTS/BYTES", "DROPS", "INSTALLED", "REKEY",
        ]  # fmt: skip
        lines += table(headers, rows)
    lines += counter_lines(d)
    return "\n".join(lines)


def counter_lines(d: DaemonStatus) -> list[str]:
    """The daemon's counters (the ones that moved) and the dataplane's totals and drops."""
    from espfast.dataplane import Stats  # (the C extension only when there is something)

    out = []
    counters = d.get("counters")
    if counters is not None:
        moved = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in counters.items() if v)
        out += ["", f"Counters: {moved or 'none'}"]
    dp = d.get("dataplane")
    if dp is not None:
        drops = ", ".join(
            f"{k} {v}" for k, v in sorted(dp.items()) if v and k not in Stats.NOT_DROPS
        )
        out += [
            f"Dataplane: in {dp.get('rx_packets', 0)} / {size(dp.get('rx_bytes', 0))}, "
            f"out {dp.get('tx_packets', 0)} / {size(dp.get('tx_bytes', 0))}, "
            f"drops: {drops or 'none'}"
        ]
    return out


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns two spaces apart, indented two; no trailing blanks. Cells are
    escaped (identities come from peers: no newline or ESC reaches the terminal)."""
    cells = [[printable(str(cell)) for cell in r] for r in [headers, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return [
        "  " + "  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip()
        for r in cells
    ]


def age(seconds: float) -> str:
    """``42s``, ``5m03s``, ``2h07m``, ``3d04h``."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def since(when: float | None, now: float) -> str:
    return "-" if when is None else f"{age(now - when)} ago"


def size(n: int) -> str:
    """Bytes for a human: ``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
