"""``atf2 verify SESSION``: every problem of a session, one per line; exit 1 if any."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..verify import Problem

from ..verify import verify_session
from ._query import add_json_flag, add_session_argument, guarded, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verify",
        help="check CRCs, counts, links and the manifest; exit 1 on any problem",
        description="Check every file of a session: headers, footers, CRC-32s, event order, "
        "index <-> detail links and the manifest. Lists every problem with its file and byte offset.",
    )
    add_session_argument(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def _as_dict(p: Problem) -> dict[str, Any]:
    return {"path": p.path, "offset": p.offset, "message": p.message}


@guarded("verify")
def run(args: argparse.Namespace) -> int:
    notes: list = []
    problems = verify_session(args.session, notes)
    if args.json:
        print_json({"ok": not problems, "problems": [_as_dict(p) for p in problems], "notes": [_as_dict(n) for n in notes]})
    else:
        for p in problems:
            print(f"PROBLEM {p}")
        for n in notes:
            print(f"note    {n}")
        print(f"{args.session}: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
    return 1 if problems else 0
