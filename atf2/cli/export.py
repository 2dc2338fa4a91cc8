"""``atf2 export SESSION --format chrome -o trace.json``: a timeline for Perfetto / chrome://tracing."""

from __future__ import annotations

import argparse

from ..export import export_chrome
from ._query import add_json_flag, add_session_argument, fmt_bytes, guarded, open_session, print_json

FORMATS = ("chrome",)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a Chrome Trace Event Format JSON timeline (open it in ui.perfetto.dev or chrome://tracing)",
        description="One complete ('X') event per CALL/RETURN pair, thread names as metadata, detail values as args. "
        "Written as it is produced: memory does not grow with the trace.",
    )
    add_session_argument(p)
    p.add_argument("--format", choices=FORMATS, default="chrome", help="output format (default chrome)")
    p.add_argument("-o", "--output", required=True, metavar="PATH", help="output file")
    p.add_argument("--thread", type=int, action="append", metavar="N", help="only thread N (repeatable)")
    p.add_argument("--absolute", action="store_true", help="timestamps on the session clock instead of from the first event")
    p.add_argument("--no-details", action="store_true", help="leave detail values out of args")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None, help="always show a progress line")
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="never show a progress line")
    add_json_flag(p)
    p.set_defaults(func=run)


@guarded("export")
def run(args: argparse.Namespace) -> int:
    with open_session(args.session) as reader:
        result = export_chrome(
            reader, args.output, threads=args.thread, relative=not args.absolute,
            details=not args.no_details, progress=args.progress,
        )
    if args.json:
        print_json(result)
    else:
        rate = result["events"] / result["seconds"] if result["seconds"] > 0 else 0.0
        print(f"wrote {result['path']}: {result['intervals']:,} slices from {result['events']:,} events, "
              f"{fmt_bytes(result['bytes'])} in {result['seconds']:.2f}s ({rate:,.0f} events/s)")
    return 0
