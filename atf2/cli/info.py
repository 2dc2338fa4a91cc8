"""``atf2 info SESSION``: status, threads, events per lane, time range, drops, file sizes."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..reader import SessionReader
import os

from ..layout import DETAIL_FILE_NAME, INDEX_FILE_NAME
from ._query import add_json_flag, add_session_argument, fmt_bytes, fmt_ns, guarded, open_session, print_json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="what a session holds: status, threads, events, time range, drops, sizes")
    add_session_argument(p)
    add_json_flag(p)
    p.set_defaults(func=run)


def _size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def collect(reader: SessionReader) -> dict[str, Any]:
    entries = {int(t["id"]): t for t in reader.manifest["threads"]}
    threads = []
    drops: dict = {"index": {}, "detail": {}}
    for tr in reader.threads:
        entry = entries.get(tr.thread_id, {})
        tdir = tr.thread_dir
        t0, t1 = tr.time_range() if len(tr.index) else (None, None)
        dropped = {"index": dict(entry.get("dropped") or {}), "detail": dict(entry.get("detail_dropped") or {})}
        for lane, counts in dropped.items():
            for reason, count in counts.items():
                if isinstance(count, int):
                    drops[lane][reason] = drops[lane].get(reason, 0) + count
        threads.append({
            "id": tr.thread_id,
            "name": entry.get("name"),
            "os_thread_id": entry.get("os_thread_id"),
            "index_events": len(tr.index),
            "detail_events": tr.detail_count(),
            "time_start_ns": t0,
            "time_end_ns": t1,
            "dropped": dropped,
            "recovered": tr.recovered,
            "index_bytes": _size(os.path.join(tdir, INDEX_FILE_NAME)),
            "detail_bytes": _size(os.path.join(tdir, DETAIL_FILE_NAME)) if tr.detail is not None else 0,
        })
    t0, t1 = reader.time_range()
    return {
        "session": reader.session_dir,
        "status": reader.status,
        "format_version": reader.manifest.get("format_version"),
        "clock_type": reader.clock_type,
        "time_start_ns": t0,
        "time_end_ns": t1,
        "duration_ns": t1 - t0,
        "index_events": sum(t["index_events"] for t in threads),
        "detail_events": sum(t["detail_events"] for t in threads),
        "dropped": drops,
        "files_bytes": sum(t["index_bytes"] + t["detail_bytes"] for t in threads) + _size(reader.manifest_path),
        "symbols": len(reader.manifest.get("symbols", ())),
        "threads": threads,
    }


@guarded("info")
def run(args: argparse.Namespace) -> int:
    with open_session(args.session) as reader:
        info = collect(reader)
    if args.json:
        print_json(info)
        return 0
    print(f"session   {info['session']}")
    print(f"status    {info['status']}   (format {info['format_version']}, clock {info['clock_type']})")
    print(f"time      {info['time_start_ns']} .. {info['time_end_ns']} ns  ({fmt_ns(info['duration_ns'])})")
    print(f"events    {info['index_events']:,} index, {info['detail_events']:,} detail, {len(info['threads'])} threads, "
          f"{info['symbols']} symbols, {fmt_bytes(info['files_bytes'])} on disk")
    for lane in ("index", "detail"):
        drops = ", ".join(f"{k}: {v:,}" for k, v in sorted(info["dropped"][lane].items()) if v) or "none"
        print(f"dropped   {lane} lane: {drops}")
    print()
    print(f"{'thread':>6} {'name':<20} {'os tid':>8} {'index':>12} {'detail':>10} {'duration':>10} {'index.atf':>10} {'detail.atf':>10}  notes")
    for t in info["threads"]:
        span = fmt_ns(t["time_end_ns"] - t["time_start_ns"]) if t["index_events"] else "-"
        notes = []
        if t["recovered"]:
            notes.append("recovered (no footer)")
        for lane in ("index", "detail"):
            notes += [f"{lane} dropped {k}: {v:,}" for k, v in sorted(t["dropped"][lane].items()) if isinstance(v, int) and v]
        name = (t["name"] or "")[:20]
        os_tid = "" if t["os_thread_id"] is None else t["os_thread_id"]
        print(f"{t['id']:>6} {name:<20} {os_tid:>8} {t['index_events']:>12,} {t['detail_events']:>10,} {span:>10} "
              f"{fmt_bytes(t['index_bytes']):>10} {fmt_bytes(t['detail_bytes']) if t['detail_bytes'] else '-':>10}  {'; '.join(notes)}")
    return 0
