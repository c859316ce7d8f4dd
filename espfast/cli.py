"""The ``espfast`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from espfast import __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="espfast", description=__doc__)
    parser.add_argument("--version", action="version", version=f"espfast {__version__}")
    parser.add_subparsers(dest="command", required=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    parser.parse_args(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
