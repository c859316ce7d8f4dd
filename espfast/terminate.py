"""``espfast terminate NAME``: have the running daemon delete the IKE SAs of connection
NAME and their Child SAs (swanctl --terminate --ike NAME), telling the peer. Waits for
the peer's confirmation (``--timeout``, default 30 s): one line and exit status 0, or one
line on stderr and 1 (no such connection, no IKE SA of it, no answer). A connection that
``start_action = start`` set up is not set up again until ``espfast initiate`` or a
restart. The daemon side is espfast/operations.py."""

from __future__ import annotations

import argparse
from typing import Any

from espfast.operations import DEFAULT_TIMEOUT, add_client_arguments, call


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("conn", metavar="NAME", help="the connection's name in the config")
    add_client_arguments(parser, timeout=DEFAULT_TIMEOUT)


def run(args: argparse.Namespace) -> int:
    return call("terminate", args, _render, conn=args.conn)


def _render(result: Any) -> str:
    n = result["ike_sas"]
    return f"{result['conn']}: {n} IKE SA{'s' if n != 1 else ''} deleted"
