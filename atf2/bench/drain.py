"""Drain throughput: Numba producers fill the rings, the drain streams them to disk.

Figures (default pool settings unless said):

* ``drain_paced``: producers emit at a fixed total rate (20 M events/s, the
  issue's target) for a few seconds: events written per second and events
  dropped (target: zero).
* ``drain_flood``: producers push as fast as they can (far faster than any
  disk): what the drain sustains, in events written per second, with the
  drops that flooding causes.
* ``drain_only_prefilled``: the drain alone (no producer competing for the
  CPU): a pool holding 4 Mi events is filled, then drained (best of three).
* ``raw_write_events_per_s``: the same number of bytes the drain wrote, written
  with plain ``os.write`` of 8 MiB chunks in the same directory right after the
  session (its files deleted, dirty pages synced first, as before the
  session), in 32-byte events per second: the limit the drain is compared
  with (``ratio_vs_raw`` = drain events/s / raw events/s). Both are page-cache
  writes without fsync, so the figures swing with the machine's writeback.

Run: ``python -m atf2.bench.drain [--quick]`` or ``python -m atf2.bench drain``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time

import numpy as np
from numba import njit

from ..clock import ticks, ticks_py
from ..kernels.ring import index_ring_push
from ..layout import INDEX_EVENT_SIZE

TARGET_RATE = 20_000_000


@njit(nogil=True, cache=True)
def flood(ctrl, pool, function_id, start, n):
    """As fast as possible: event i carries call_depth i."""
    for i in range(start, start + n):
        index_ring_push(ctrl, pool, ticks(), function_id, np.uint64(1 + (i & 1)) | (np.uint64(i & 0xFFFFFFFF) << np.uint64(32)))


@njit(nogil=True, cache=True)
def paced(ctrl, pool, function_id, n, ticks_per_event):
    """``n`` events at a steady rate: bursts of 256, each waiting for its due time."""
    t0 = ticks()
    for i in range(n):
        if (i & 255) == 0:
            due = t0 + np.uint64(i * ticks_per_event)
            while ticks() < due:
                pass
        index_ring_push(ctrl, pool, ticks(), function_id, np.uint64(1 + (i & 1)) | (np.uint64(i & 0xFFFFFFFF) << np.uint64(32)))


def ticks_per_second() -> float:
    t0, c0 = time.perf_counter(), ticks_py()
    time.sleep(0.05)
    t1, c1 = time.perf_counter(), ticks_py()
    return (c1 - c0) / (t1 - t0)


def _session_run(mode: str, producers: int, seconds: float, rate: float, options: dict) -> dict:
    from .. import session as S

    root = tempfile.mkdtemp(prefix="atf2-bench-drain-")
    try:
        d = os.path.join(root, "s")
        tps = ticks_per_second()
        os.sync()  # both the session and the raw reference start with no dirty pages
        sess = S.trace_session_start(d, **options)
        fid = np.uint64(sess.symbols.register("bench"))
        per_thread_rate = rate / producers

        def work():
            ch = sess.register_current_thread()
            if mode == "paced":
                paced(ch.ctrl, ch.index_pool, fid, int(per_thread_rate * seconds), tps / per_thread_rate)
            else:
                end = time.perf_counter() + seconds
                i = 0
                while time.perf_counter() < end:
                    flood(ch.ctrl, ch.index_pool, fid, i, 1 << 20)
                    i += 1 << 20

        threads = [threading.Thread(target=work) for _ in range(producers)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        st = S.trace_session_stop()
        wall = time.perf_counter() - t0
        written = st.index.written
        rate_w = written / wall
        shutil.rmtree(d, ignore_errors=True)
        os.sync()
        raw_bytes = max(written * INDEX_EVENT_SIZE, 8 << 20)
        raw_rate = raw_bytes / INDEX_EVENT_SIZE / _raw_write_seconds(root, raw_bytes)
        return {
            "value": rate_w,
            "unit": "events/s",
            "recorded": st.index.recorded,
            "written": written,
            "dropped": st.index.dropped,
            "drop_fraction": st.index.dropped / max(1, st.index.recorded),
            "producers": producers,
            "seconds": wall,
            "drain_capacity_events_per_s": st.drain_capacity_events_per_s,
            "raw_write_events_per_s": raw_rate,
            "ratio_vs_raw": rate_w / raw_rate if raw_rate else 0.0,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _prefilled_run(events: int, repeats: int = 3) -> dict:
    """Drain alone: a pool holding ``events`` is filled, then drained with no producer running (best of ``repeats``)."""
    from .. import session as S

    root = tempfile.mkdtemp(prefix="atf2-bench-drain-")
    try:
        d = os.path.join(root, "s")
        cap = 1 << 16
        sess = S.trace_session_start(d, ring_capacity=cap, spare_rings=-(-events // cap), flush_interval=60)
        fid = np.uint64(sess.symbols.register("bench"))
        ch = sess.register_current_thread()
        best = float("inf")
        done = 0
        for r in range(repeats):
            flood(ch.ctrl, ch.index_pool, fid, r * events, events)
            t0 = time.perf_counter()
            sess.drain.wake.set()
            while sess.get_stats().index.written < done + events:
                time.sleep(0.0005)
            best = min(best, time.perf_counter() - t0)
            done += events
        st = S.trace_session_stop()
        shutil.rmtree(d, ignore_errors=True)
        os.sync()
        raw_rate = events / _raw_write_seconds(root, events * INDEX_EVENT_SIZE)
        rate = events / best
        return {
            "value": rate,
            "unit": "events/s",
            "events": events,
            "dropped": st.index.dropped,
            "raw_write_events_per_s": raw_rate,
            "ratio_vs_raw": rate / raw_rate,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _raw_write_seconds(directory: str, nbytes: int) -> float:
    """Seconds to write ``nbytes`` with plain os.write (8 MiB chunks), no fsync, like the writer."""
    chunk = np.random.default_rng(0).integers(0, 255, 8 << 20, dtype=np.uint8).tobytes()
    path = os.path.join(directory, "raw.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        t0 = time.perf_counter()
        left = nbytes
        while left > 0:
            left -= os.write(fd, chunk[: min(left, len(chunk))])
        return time.perf_counter() - t0
    finally:
        os.close(fd)
        os.unlink(path)


def run(quick: bool = False) -> list:
    seconds = 0.5 if quick else 3.0
    # Warm-up: load every kernel of the path (producer, drain, writer) first.
    _session_run("flood", 1, 0.05, 0, {})
    rows = []
    for producers in (1, 2):
        r = _session_run("paced", producers, seconds, TARGET_RATE, {})
        rows.append({"name": f"drain_paced_20M_{producers}p", **r})
    r = _session_run("flood", 1, seconds, 0, {})
    rows.append({"name": "drain_flood_1p", **r})
    rows.append({"name": "drain_only_prefilled", **_prefilled_run(1 << 20 if quick else 4 << 20)})
    return rows


def main(argv=None) -> None:
    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    for row in run(quick=quick):
        extra = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k not in ("name", "value", "unit"))
        print(f"{row['name']:<24} {row['value']:>14.4g} {row['unit']:<9} {extra}", flush=True)


if __name__ == "__main__":
    main()
