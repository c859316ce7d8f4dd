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

from espfast import __version__
from espfast.control.text import printable

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "static": ("espfast.static", "run an ESP tunnel with manually configured keys (no IKE)"),
    "up": ("espfast.up", "run the IKEv2 daemon: negotiate and keep up the configured tunnels"),
    "demo": ("espfast.demo", "two namespaces, a tunnel between them, traffic through it, a report"),
    "pki": ("espfast.pki", "create a CA and gateway/client certificates"),
    "status": ("espfast.status", "show the running daemon's IKE and Child SAs"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="espfast", description="A userspace IKEv2/IPsec VPN for Linux."
    )
    parser.add_argument("--version", action="version", version=f"espfast {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log detail (-v INFO, -vv DEBUG)"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(_module=module)
        # -v also after the command (espfast up -v -c ...), adding to any given before it.
        sp.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS)
        importlib.import_module(module).add_arguments(sp)
    return parser


class OneLineFormatter(logging.Formatter):
    """Every record is one line of printable text: what a peer sent (an identity, a name
    in its certificate) cannot forge log lines or reach the terminal, whatever path it
    took into the message (espfast.control.text.printable; a traceback stays one line)."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {0: logging.WARNING, 1: logging.INFO}.get(args.verbose, logging.DEBUG)
    handler = logging.StreamHandler()
    handler.setFormatter(OneLineFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    result: int = importlib.import_module(args._module).run(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
