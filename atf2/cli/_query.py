"""What the query commands (info, dump, summary, export, verify, recover) share:
opening a session, JSON output, human-readable times, and turning every
failure into one line on stderr instead of a traceback."""

from __future__ import annotations

import argparse
import functools
import json
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import AtfV2Error

if TYPE_CHECKING:
    from ..reader import SessionReader

#: set to get the traceback of an unexpected error (for bug reports)
DEBUG_ENV = "ATF2_DEBUG"


def add_session_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("session", metavar="SESSION", help="session directory (the one holding manifest.json)")


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="machine-readable JSON output")


def open_session(path: str) -> SessionReader:
    from ..reader import SessionReader

    if not os.path.isdir(path):
        raise AtfV2Error("no such session directory", path)
    return SessionReader(path)


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=1, default=_json_default)
    sys.stdout.write("\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return repr(value)


def fmt_ns(ns: float) -> str:
    """A duration with a unit a human reads at a glance (ns, µs, ms, s)."""
    ns = float(ns)
    if abs(ns) < 1e3:
        return f"{ns:.0f}ns"
    if abs(ns) < 1e6:
        return f"{ns / 1e3:.2f}us"
    if abs(ns) < 1e9:
        return f"{ns / 1e6:.2f}ms"
    return f"{ns / 1e9:.3f}s"


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f}{unit}" if unit == "B" else f"{n:.1f}{unit}"
        n /= 1024
    return f"{n}B"  # pragma: no cover


def guarded(name: str) -> Callable:
    """Decorate a command's ``run``: AtfV2Error goes to the dispatcher (one
    line, exit 2); OS errors become AtfV2Error; anything else is reported as
    an internal error in one line (exit 3), traceback only with ATF2_DEBUG=1."""

    def wrap(run: Callable) -> Callable:
        @functools.wraps(run)
        def guarded_run(args: argparse.Namespace) -> int:
            try:
                return run(args)
            except AtfV2Error:
                raise
            except (BrokenPipeError, KeyboardInterrupt):
                raise
            except OSError as exc:
                raise AtfV2Error(exc.strerror or str(exc), exc.filename) from None
            except Exception as exc:
                if os.environ.get(DEBUG_ENV):
                    raise
                print(f"atf2 {name}: internal error: {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for a traceback)", file=sys.stderr)
                return 3

        return guarded_run

    return wrap
