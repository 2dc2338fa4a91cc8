"""``atf2 recover SESSION``: make a session left by a killed recorder whole."""

from __future__ import annotations

import argparse

from ..recover import recover_session
from ..verify import verify_session
from ._query import add_json_flag, add_session_argument, guarded, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "recover",
        help="repair a session whose recorder was killed (footers, headers, manifest)",
        description="Write footers and headers from what is on disk, keep partial trailing records aside "
        "in *.partial files (nothing is deleted), and rewrite the manifest with status \"recovered\". "
        "Only for sessions whose recorder is gone. Running it twice changes nothing. "
        "Exit 0 when the session verifies afterwards, 1 otherwise.",
    )
    add_session_argument(p)
    add_json_flag(p)
    p.set_defaults(func=run)


@guarded("recover")
def run(args: argparse.Namespace) -> int:
    report = recover_session(args.session)
    problems = verify_session(args.session)
    if args.json:
        report["verified"] = not problems
        report["problems"] = [str(p) for p in problems]
        print_json(report)
    else:
        if not report["changed"]:
            print(f"{args.session}: nothing to recover (status {report['status']})")
        for t in report["threads"]:
            line = f"thread {t['id']}: {t['index_events']} index events, {t['detail_events']} detail events"
            for m in t["moved_aside"]:
                line += f"; {m['length']} bytes of {m['file']} from byte {m['offset']} kept in {m['moved_to']}"
            if t["unlinked"]:
                line += f"; {t['unlinked']} links to lost detail events cleared (see recovered.json)"
            if report["changed"]:
                print(line)
        for m in report["manifest"]:
            print(f"unreadable {m['file']} kept as {m['moved_to']}; a new manifest was written")
        if report["changed"]:
            print(f"{args.session}: status {report['status']}")
        for p in problems:
            print(f"PROBLEM {p}")
        print("verify: " + ("OK" if not problems else f"{len(problems)} problem(s) remain"))
    return 1 if problems else 0
