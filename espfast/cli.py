"""The ``espfast`` command line.

Each subcommand lives in its own module with two functions, ``add_arguments(parser)`` and
``run(args) -> int``; a new command is one line in COMMANDS. Command modules keep heavy
imports (the C extension, cryptography) inside ``run`` so that ``espfast --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from espfast import __version__, logfmt

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "static": ("espfast.static", "run an ESP tunnel with manually configured keys (no IKE)"),
    "up": ("espfast.up", "run the IKEv2 daemon: negotiate and keep up the configured tunnels"),
    "demo": ("espfast.demo", "two namespaces, a tunnel between them, traffic through it, a report"),
    "pki": ("espfast.pki", "create a CA and gateway/client certificates"),
    "profile": ("espfast.profiles.cli", "write a client profile: iOS/macOS, Windows, Android..."),
    "status": ("espfast.status", "show the running daemon's IKE and Child SAs"),
    "initiate": ("espfast.initiate", "have the running daemon set up a connection now"),
    "terminate": ("espfast.terminate", "have the running daemon delete a connection's IKE SAs"),
    "reload": ("espfast.reload", "have the running daemon re-read its config file"),
    "user": ("espfast.users", "add, delete or list EAP users (the gateway's local user file)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="espfast", description="A userspace IKEv2/IPsec VPN for Linux."
    )
    parser.add_argument("--version", action="version", version=f"espfast {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log detail (-v INFO, -vv DEBUG)"
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines as text (default) or one JSON object per line (for log shippers)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(_module=module)
        # -v also after the command (espfast up -v -c ...), adding to any given before it.
        sp.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS)
        sp.add_argument("--log-format", choices=("text", "json"), default=argparse.SUPPRESS)
        importlib.import_module(module).add_arguments(sp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    logfmt.configure(level, args.log_format)
    result: int = importlib.import_module(args._module).run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
