"""Command line: ``camkit <command>``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _build_parser() -> argparse.ArgumentParser:
    from camkit import __version__
    from camkit._demo_cli import add_demo_parser
    from camkit._eval_cli import add_eval_parser

    parser = argparse.ArgumentParser(prog="camkit", description=__doc__)
    parser.add_argument("--version", action="version", version=f"camkit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_demo_parser(subparsers)
    add_eval_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
