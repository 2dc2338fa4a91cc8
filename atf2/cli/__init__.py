"""The ``atf2`` command line: one sub-module per command.

Each module in ``COMMANDS`` defines ``register(subparsers)``, which adds its
sub-parser and sets ``func`` (called with the parsed namespace, returns the exit
status). Errors that users can cause surface as ``AtfV2Error`` and are printed
as one clear line with exit status 2, never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import AtfV2Error

COMMANDS = ("record", "info", "dump", "summary", "export", "verify", "recover")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atf2", description="Record and analyse ATF v2 traces of Python programs.")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = args.func(args)
    except AtfV2Error as exc:
        print(f"atf2 {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `atf2 dump ... | head`
        return 0
    return int(status or 0)
