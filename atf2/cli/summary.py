"""``atf2 summary SESSION``: per-function calls and times, top N, and the threads' busy time."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

    from ..reader import SessionReader

from ..analysis import SORT_KEYS
from ..errors import AtfV2Error
from ..layout import field_names
from ._query import add_json_flag, add_session_argument, fmt_ns, guarded, open_session, print_json

#: short sort names accepted besides the column names
SORT_ALIASES = {
    "incl": "incl_total_ns",
    "excl": "excl_total_ns",
    "incl_mean": "incl_mean_ns",
    "excl_mean": "excl_mean_ns",
    "incl_max": "incl_max_ns",
    "excl_max": "excl_max_ns",
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "summary",
        help="per function: calls, inclusive/exclusive time (total, mean, max); threads' busy time",
        description="Inclusive totals count each outermost call once (recursion is not double counted); "
        "calls cut by the trace edges are counted in 'unclosed' / 'unopened' with the time that was seen.",
    )
    add_session_argument(p)
    p.add_argument("--top", type=int, default=20, metavar="N", help="show the N first functions (default 20; 0: all)")
    p.add_argument("--sort", default="incl", choices=sorted(set(SORT_ALIASES) | set(SORT_KEYS)), metavar="KEY",
                   help=f"sort key, largest first: {', '.join(SORT_ALIASES)} or a column name (default incl)")
    p.add_argument("--thread", type=int, action="append", metavar="N", help="only thread N (repeatable)")
    p.add_argument("--per-thread", action="store_true", help="also list the functions of each thread")
    add_json_flag(p)
    p.set_defaults(func=run)


def _records(rows: np.ndarray, reader: SessionReader) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        d = {name: r[name].item() for name in field_names(rows.dtype)}
        d["name"] = reader.symbol_name(d["function_id"])
        out.append(d)
    return out


def _table(rows: np.ndarray, reader: SessionReader, indent: str = "") -> None:
    print(f"{indent}{'calls':>10} {'incl total':>11} {'incl mean':>10} {'incl max':>10} {'excl total':>11} {'excl mean':>10} {'excl max':>10}  function")
    for r in rows:
        marks = []
        if r["unclosed"]:
            marks.append(f"{r['unclosed']} unclosed")
        if r["unopened"]:
            marks.append(f"{r['unopened']} unopened")
        if r["exceptions"]:
            marks.append(f"{r['exceptions']} raised")
        note = f"  ({', '.join(marks)})" if marks else ""
        print(f"{indent}{r['calls']:>10,} {fmt_ns(r['incl_total_ns']):>11} {fmt_ns(r['incl_mean_ns']):>10} {fmt_ns(r['incl_max_ns']):>10} "
              f"{fmt_ns(r['excl_total_ns']):>11} {fmt_ns(r['excl_mean_ns']):>10} {fmt_ns(r['excl_max_ns']):>10}  "
              f"{reader.symbol_name(int(r['function_id']))}{note}")


@guarded("summary")
def run(args: argparse.Namespace) -> int:
    if args.top < 0:
        raise AtfV2Error("--top must be >= 0")
    sort = SORT_ALIASES.get(args.sort, args.sort)
    with open_session(args.session) as reader:
        known = {tr.thread_id for tr in reader.threads}
        if args.thread:
            missing = [t for t in args.thread if t not in known]
            if missing:
                raise AtfV2Error(f"no thread {missing[0]} in this session (threads: {sorted(known)})", reader.session_dir)
        s = reader.summary(threads=args.thread, sort=sort, top=args.top or None)
        if args.json:
            doc = {"sort": sort, "functions": _records(s.functions, reader),
                   "threads": [{n: r[n].item() for n in field_names(s.threads.dtype)} for r in s.threads]}
            if args.per_thread:
                doc["per_thread"] = _records(s.per_thread, reader)
            print_json(doc)
            return 0
        print(f"functions, by {sort} (top {args.top or 'all'}):")
        _table(s.functions, reader)
        if args.per_thread:
            for tid in s.threads["thread"].tolist():
                print(f"\nthread {tid}:")
                _table(s.per_thread[s.per_thread["thread"] == tid], reader, "  ")
        print(f"\n{'thread':>6} {'events':>12} {'calls':>10} {'span':>10} {'busy':>10} {'busy %':>7}  edges")
        for t in s.threads:
            edges = []
            if t["unclosed"]:
                edges.append(f"{t['unclosed']} unclosed")
            if t["unopened"]:
                edges.append(f"{t['unopened']} unopened")
            if t["bad_events"]:
                edges.append(f"{t['bad_events']} events of unknown kind")
            print(f"{t['thread']:>6} {t['events']:>12,} {t['calls']:>10,} {fmt_ns(t['span_ns']):>10} {fmt_ns(t['busy_ns']):>10} "
                  f"{100 * t['busy_fraction']:>6.1f}%  {', '.join(edges)}")
    return 0
