"""``atf2 dump SESSION``: events in global order, names resolved, indented by depth."""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from typing import Any

import numpy as np

from ..errors import AtfV2Error
from ..layout import EVENT_KIND_NAMES, NO_DETAIL
from ..reader import DetailEvent
from ._query import add_json_flag, add_session_argument, guarded, open_session

#: events merged per step: memory stays flat whatever the session size
DUMP_CHUNK = 1 << 16
#: opaque detail payloads are shown up to this many bytes
HEX_PREVIEW = 32
_ARROWS = {1: "->", 2: "<-", 3: "<!"}


def _ns_arg(text: str) -> tuple[bool, int]:
    """NS, or +NS relative to the session's first event."""
    relative = text.startswith("+")
    try:
        value = int(text[1:] if relative else text)
    except ValueError:
        raise AtfV2Error(f"not a number of nanoseconds: {text!r}") from None
    return relative, value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "dump",
        help="events in global order with names, indented by depth, detail values when present",
        description="Print the events of a session merged in global order (timestamp, thread, index_seq). "
        "--json prints one JSON object per line (JSON Lines).",
    )
    add_session_argument(p)
    p.add_argument("--thread", type=int, action="append", metavar="N", help="only thread N (repeatable)")
    p.add_argument("--function", metavar="PATTERN", help="only functions whose name matches this shell pattern (e.g. 'mod.*')")
    p.add_argument("--from", dest="start", metavar="NS", help="first timestamp (ns on the session clock; +NS: from the session start)")
    p.add_argument("--to", dest="end", metavar="NS", help="last timestamp (same forms as --from)")
    p.add_argument("--limit", type=int, metavar="K", help="print at most K events")
    p.add_argument("--no-details", action="store_true", help="do not read the detail lane")
    add_json_flag(p)
    p.set_defaults(func=run)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _detail_text(event: DetailEvent, as_json: bool) -> Any:  # a str, or a dict with as_json
    error: str | None
    try:
        decoded = event.decoded()
    except AtfV2Error as exc:
        decoded, error = None, str(exc)
    else:
        error = None
    if decoded is None:
        data = bytes(event.payload)
        if as_json:
            out: dict[str, Any] = {"payload_hex": data.hex()}
            if error:
                out["decode_error"] = error
            return out
        more = "..." if len(data) > HEX_PREVIEW else ""
        return f"[{len(data)} bytes {data[:HEX_PREVIEW].hex()}{more}]"
    if as_json:
        out = {}
        if decoded.args:
            out["args"] = [[name, repr(v)] for name, v in decoded.args]
        if decoded.return_value is not None:
            out["return_value"] = repr(decoded.return_value)
        if decoded.exception is not None:
            out["exception"] = [str(x) for x in decoded.exception]
        return out
    if decoded.exception is not None:
        return "raised " + ": ".join(str(x) for x in decoded.exception)
    if decoded.args:
        return "(" + ", ".join(f"{name}={_short(v)}" if name else _short(v) for name, v in decoded.args) + ")"
    if decoded.return_value is not None:
        return "= " + _short(decoded.return_value)
    return ""


@guarded("dump")
def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 0:
        raise AtfV2Error("--limit must be >= 0")
    with open_session(args.session) as reader:
        t0, _ = reader.time_range()
        lo = hi = None
        if args.start is not None:
            rel, v = _ns_arg(args.start)
            lo = t0 + v if rel else v
        if args.end is not None:
            rel, v = _ns_arg(args.end)
            hi = t0 + v if rel else v
        positions = {tr.thread_id: k for k, tr in enumerate(reader.threads)}
        wanted_pos = None
        if args.thread:
            missing = [t for t in args.thread if t not in positions]
            if missing:
                raise AtfV2Error(f"no thread {missing[0]} in this session (threads: {sorted(positions)})", reader.session_dir)
            wanted_pos = np.array([positions[t] for t in args.thread], np.uint32)
        thread_ids = np.array([tr.thread_id for tr in reader.threads], np.int64)
        name_cache: dict = {}
        matches: dict = {}

        def name(fid: int) -> str:
            hit = name_cache.get(fid)
            if hit is None:
                hit = name_cache[fid] = reader.symbol_name(fid)
            return hit

        printed = 0
        out = sys.stdout
        for chunk in reader.merged(chunk_size=DUMP_CHUNK):
            ts = chunk["timestamp_ns"]
            if hi is not None and len(ts) and int(ts[0]) > hi:
                break
            mask = np.ones(len(chunk), bool)
            if lo is not None:
                mask &= ts >= np.uint64(lo)
            if hi is not None:
                mask &= ts <= np.uint64(hi)
            if wanted_pos is not None:
                mask &= np.isin(chunk["thread"], wanted_pos)
            if args.function:
                fids = np.unique(chunk["function_id"][mask])
                for f in fids.tolist():
                    if f not in matches:
                        matches[f] = fnmatch.fnmatchcase(name(f), args.function)
                keep = np.array([f for f in fids.tolist() if matches[f]], np.uint64)
                mask &= np.isin(chunk["function_id"], keep)
            rows = chunk[mask]
            if args.limit is not None:
                rows = rows[: args.limit - printed]
            lines = []
            for t, fid, _tid, kind, depth, dseq, pos, seq in rows.tolist():
                thread = int(thread_ids[pos])
                detail = None
                if dseq != NO_DETAIL and not args.no_details:
                    dreader = reader.threads[pos].detail
                    if dreader is not None:
                        detail = _detail_text(dreader.get(dseq), args.json)
                if args.json:
                    rec = {"timestamp_ns": t, "thread": thread, "seq": seq, "kind": EVENT_KIND_NAMES.get(kind, kind),
                           "function_id": fid, "name": name(fid), "depth": depth}
                    if detail is not None:
                        rec["detail"] = detail
                    lines.append(json.dumps(rec))
                else:
                    arrow = _ARROWS.get(kind, f"?{kind}")
                    text = f"{t - t0:>14,} t{thread:<3} {'  ' * min(depth, 64)}{arrow} {name(fid)}"
                    if detail:
                        text += "  " + detail
                    lines.append(text)
            if lines:
                out.write("\n".join(lines) + "\n")
            printed += len(rows)
            if args.limit is not None and printed >= args.limit:
                break
    return 0
