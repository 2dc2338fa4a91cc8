"""Analysis benchmarks: summary and intervals over a 10M-event session, Chrome export of 1M.

``python -m atf2.bench.analysis [--quick]``. The session is written to a
temporary directory with ``ThreadWriter`` (4 threads, nested call trees of
depth 8 over 500 functions) and read back with ``SessionReader``, so the
figures include the mmap reads. Each rate is compared, in the same run, with a
raw limit: ``kernels.decode.scan_index`` touching every field of every event
once (what any pass over the events must at least cost). Bar: summary and
intervals >= 20M events/s.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

import numpy as np

from ..layout import CLOCK_BOOTTIME, EVENT_CALL, EVENT_RETURN, INDEX_EVENT_DTYPE, NO_DETAIL

BAR_EVENTS_PER_S = 20e6


def call_trees(n: int, thread: int = 0, functions: int = 500, depth: int = 8, seed: int = 0) -> np.ndarray:
    """``n`` (rounded down to whole trees) balanced events: call trees of
    ``depth`` nested calls of random functions, 10 ns apart."""
    rng = np.random.default_rng(seed + thread)
    block = 2 * depth
    trees = n // block
    fids = rng.integers(0, functions, (trees, depth)).astype(np.uint64) | np.uint64(1 << 32)
    ev = np.zeros(trees * block, INDEX_EVENT_DTYPE)
    ev["timestamp_ns"] = np.uint64(1_000_000_000 + thread) + np.arange(len(ev), dtype=np.uint64) * np.uint64(10)
    ev["function_id"] = np.concatenate([fids, fids[:, ::-1]], axis=1).reshape(-1)
    ev["event_kind"] = np.tile(np.repeat(np.array([EVENT_CALL, EVENT_RETURN], np.uint32), depth), trees)
    ev["call_depth"] = np.tile(np.concatenate([np.arange(depth), np.arange(depth)[::-1]]).astype(np.uint32), trees)
    ev["thread_id"] = thread
    ev["detail_seq"] = NO_DETAIL
    return ev


def write_session(root: str, n_events: int, threads: int = 4) -> str:
    from ..manifest import write_manifest
    from ..writer import ThreadWriter

    entries = []
    for t in range(threads):
        with ThreadWriter(root, t, CLOCK_BOOTTIME) as w:
            w.write_events(call_trees(n_events // threads, thread=t))
            s = w.finalize()
        entries.append({"id": t, "has_detail": False, "index_events": s["index_events"], "detail_events": 0,
                        "time_start_ns": s["time_start_ns"], "time_end_ns": s["time_end_ns"], "name": f"T{t}"})
    write_manifest(root, {"format_version": "2.1", "status": "complete", "clock_type": CLOCK_BOOTTIME, "threads": entries})
    return root


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def run(quick: bool = False) -> list:
    from ..analysis import intervals, summary
    from ..export import export_chrome
    from ..kernels.decode import scan_index
    from ..reader import SessionReader

    n = 1_000_000 if quick else 10_000_000
    n_export = 100_000 if quick else 1_000_000
    repeat = 2 if quick else 3
    rows = []
    tmp = tempfile.mkdtemp(prefix="atf2-bench-analysis-")
    try:
        root = write_session(os.path.join(tmp, "big"), n)
        with SessionReader(root) as reader:
            total = reader.event_count()
            # compile and warm the page cache before timing
            summary(reader.threads[0].index.events[:1000])
            intervals(reader.threads[0].index.events[:1000])
            for tr in reader.threads:
                scan_index(tr.index.events)
            raw = _best(lambda: [scan_index(tr.index.events) for tr in reader.threads], repeat)
            raw_rate = total / raw
            for name, fn in (("summary", lambda: summary(reader)), ("intervals", lambda: intervals(reader))):
                dt = _best(fn, repeat)
                rate = total / dt
                rows.append({"name": f"{name} {total / 1e6:.0f}M events", "value": rate / 1e6, "unit": "Mevents/s",
                             "seconds": dt, "raw_scan_Mevents_s": raw_rate / 1e6, "ratio_to_raw_scan": rate / raw_rate,
                             "bar_Mevents_s": BAR_EVENTS_PER_S / 1e6, "meets_bar": rate >= BAR_EVENTS_PER_S})
        root = write_session(os.path.join(tmp, "export"), n_export)
        out = os.path.join(tmp, "trace.json")
        with SessionReader(root) as reader:
            total = reader.event_count()
            export_chrome(reader.threads[0].index.events[:100], out + ".warm", progress=False)
            t = time.perf_counter()
            result = export_chrome(reader, out, progress=False)
            dt = time.perf_counter() - t
            # peer in the same run: json.dumps of the same number of plain X-event dicts
            sample = [{"name": "f", "cat": "c", "ph": "X", "pid": 1, "tid": 0, "ts": 1.5, "dur": 0.25, "args": {"depth": 3}}] * result["intervals"]
            t = time.perf_counter()
            with open(out + ".peer", "w") as f:
                for ev in sample:
                    f.write(__import__("json").dumps(ev))
            peer = time.perf_counter() - t
        rows.append({"name": f"export chrome {total / 1e6:g}M events", "value": total / dt, "unit": "events/s",
                     "seconds": dt, "slices": result["intervals"], "ratio_to_json_dumps_peer": peer / dt})
        rows.append({"name": f"export chrome {total / 1e6:g}M events: size", "value": result["bytes"] / 1e6, "unit": "MB",
                     "bytes_per_slice": result["bytes"] / max(result["intervals"], 1)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m atf2.bench.analysis")
    parser.add_argument("--quick", action="store_true", help="1M events instead of 10M, export of 100k")
    args = parser.parse_args()
    for row in run(quick=args.quick):
        extra = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k not in ("name", "value", "unit"))
        print(f"{row['name']:<36} {row['value']:>12.4g} {row['unit']:<10} {extra}", flush=True)
