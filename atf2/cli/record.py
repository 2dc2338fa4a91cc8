"""``atf2 record [-o DIR] [options] script.py [args...]`` / ``atf2 record [-o DIR] -m module [args...]``.

Runs the program as ``python`` would (argv, ``__main__``, exit status,
uncaught exceptions with their traceback) with every Python function call of
every thread recorded, then prints a short summary on stderr. The program's
exit status is ``atf2 record``'s exit status.

DIR is the session directory of this process, by default
``atf2_traces/session_YYYYMMDD_HHMMSS/pid_<pid>/``; ``multiprocessing``
children (fork and spawn) record their own sessions beside it, in
``<DIR>/../pid_<child pid>/``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..stats import SessionStats
import os
import sys
import time

from .. import detail as _detail  # issue 5: detail modes
from ..errors import AtfV2Error


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "record",
        help="run a Python program and record every function call",
        description=__doc__.split("\n\n")[1],
        usage="atf2 record [-o DIR] [options] (script.py | -m module) [args ...]",
    )
    p.add_argument("-o", "--output", metavar="DIR", help="session directory (default: atf2_traces/session_<time>/pid_<pid>)")
    p.add_argument("-m", dest="module", metavar="module", help="run a library module as a script (like python -m)")
    p.add_argument("--c-calls", action="store_true", help="also record calls of C functions (builtins)")
    p.add_argument("--no-children", action="store_true", help="do not record multiprocessing children")
    p.add_argument("--overwrite", action="store_true", help="reuse a non-empty DIR (its previous session is removed)")
    p.add_argument("--ring-capacity", type=int, metavar="N", help="records per index ring (default 65536)")
    p.add_argument("--spare-rings", type=int, metavar="K", help="spare index rings per thread (default 15)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary at the end")
    _detail.add_record_arguments(p)  # issue 5: --detail, --trigger, --pre-roll, --post-roll
    p.add_argument("target", nargs=argparse.REMAINDER, metavar="script.py [args ...]")
    p.set_defaults(func=run)


def default_session_dir(now: time.struct_time | None = None) -> str:
    stamp = time.strftime("%Y%m%d_%H%M%S", now or time.localtime())
    return os.path.join("atf2_traces", f"session_{stamp}", f"pid_{os.getpid()}")


def run(args: argparse.Namespace) -> int:
    from .. import runner, tracer

    target = list(args.target)
    if args.module is None:
        if target and target[0] == "--":
            target.pop(0)
        if not target:
            raise AtfV2Error("nothing to run: give a script (atf2 record script.py ...) or -m module")
        script, program_args = target[0], target[1:]
    else:
        script, program_args = None, target
    session_dir = os.path.abspath(args.output or default_session_dir())
    session_options = {"overwrite": bool(args.overwrite)}
    if args.ring_capacity is not None:
        session_options["ring_capacity"] = args.ring_capacity
    if args.spare_rings is not None:
        session_options["spare_rings"] = args.spare_rings
    session_options.update(_detail.record_session_options(args))  # issue 5
    if script is not None and not os.path.isfile(script):
        raise AtfV2Error(f"can't open file {script!r}: no such file", script)

    if not args.no_children:
        # issue 5: children record with the same detail options
        runner.enable_child_tracing(os.path.dirname(session_dir), args.c_calls, _detail.record_session_options(args))
    # The main thread is traced only inside the program's code (run_script/run_module).
    runner.start_recording(session_dir, args.c_calls, session_options, current_thread=False)
    t0 = time.perf_counter()
    try:
        if script is not None:
            status = runner.run_script(script, program_args)
        else:
            status = runner.run_module(args.module, program_args)
        runner.wait_for_threads()
    finally:
        elapsed = time.perf_counter() - t0
        stats = runner.stop_recording()
    if not args.quiet:
        _print_summary(session_dir, stats, elapsed, tracer)
    return status


def _print_summary(session_dir: str, stats: SessionStats, elapsed: float, tracer: Any) -> None:
    events = stats.index.recorded
    try:
        per_event_ns = tracer.measure_event_cost_ns()
    except Exception:  # noqa: BLE001 - an estimate only
        per_event_ns = float("nan")
    overhead = events * per_event_ns * 1e-9
    share = overhead / elapsed if elapsed > 0 else 0.0
    drops = {k: v for k, v in stats.index.drops.items() if v}
    children = _children_dirs(session_dir)
    lines = [
        f"atf2 record: session {session_dir}",
        f"  events   {events:,} written {stats.index.written:,}, dropped {stats.index.dropped:,}"
        + (f" {drops}" if drops else ""),
        f"  threads  {len(stats.threads)}",
        f"  bytes    {stats.bytes_written:,}",
        f"  elapsed  {elapsed:.3f} s",
        f"  overhead ~{overhead:.3f} s ({share:.0%} of elapsed; {per_event_ns:.0f} ns/event measured here)",
    ]
    if children:
        lines.append(f"  children {len(children)} sessions beside it: {', '.join(children)}")
    print("\n".join(lines), file=sys.stderr)


def _children_dirs(session_dir: str) -> list[str]:
    parent = os.path.dirname(session_dir)
    mine = os.path.basename(session_dir)
    try:
        names = sorted(n for n in os.listdir(parent) if n.startswith("pid_") and n != mine)
    except OSError:
        return []
    return names
