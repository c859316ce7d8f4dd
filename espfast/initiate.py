"""``espfast initiate NAME [--child CHILD]``: have the running daemon set up connection
NAME now (swanctl --initiate): its IKE SA if none is up, and its children (all of them,
or CHILD) on it. Waits for the outcome (``--timeout``, default 30 s): one line and exit
status 0 once every child is up, or one line on stderr and 1 when the IKE SA or a child
failed (with the reason), the connection is unknown, or the daemon does not answer.
The daemon side is espfast/operations.py."""

from __future__ import annotations

import argparse
from typing import Any

from espfast.operations import DEFAULT_TIMEOUT, add_client_arguments, call


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("conn", metavar="NAME", help="the connection's name in the config")
    parser.add_argument("--child", metavar="CHILD", help="only this child (default: all)")
    add_client_arguments(parser, timeout=DEFAULT_TIMEOUT)


def run(args: argparse.Namespace) -> int:
    params: dict[str, Any] = {"conn": args.conn}
    if args.child is not None:
        params["child"] = args.child
    return call("initiate", args, _render, **params)


def _render(result: Any) -> str:
    children = ", ".join(result["children"])
    if result["already_up"]:
        return f"{result['conn']}: already up (child {children})"
    return f"{result['conn']}: established (child {children})"
