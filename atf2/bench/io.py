"""Writer and reader throughput, each with a same-run reference.

Figures (sizes for the full run; ``quick`` divides them by 20):

* ``write``: 10M index events from numpy arrays (ten 1M-event batches) through
  ``ThreadWriter``, finalize and close included, in events/s;
  ``ratio_vs_raw`` against plain ``os.write`` of the same bytes in the same
  batches to a fresh file in the same directory. Both are page-cache writes
  without fsync (dirty pages are synced before each run, outside the timing).
  The records already carry the writer's thread id and ``NO_DETAIL``, so the
  writer checks them and writes the caller's array as it is;
  ``encoding_events_per_s`` / ``encoding_ratio_vs_raw`` are the same run with
  ``detail_seq = 0`` in the input, which the writer must encode (copy).
* ``read_scan``: open the 10M-event file with ``IndexReader`` and scan every
  field of every event with a kernel (``kernels.decode.scan_index``), in GB/s of
  events; ``raw_mmap_scan_gb_s`` is a plain ``mmap`` + uint64 sum kernel over
  the same bytes.
* ``getitem``: mean latency of ``reader[i]`` over 1M random positions (the
  Python loop included); ``raw_unpack_us`` is a bare
  ``struct.Struct("<QQIIII").unpack_from(mmap, offset)`` loop over the same
  positions (a plain tuple, no named tuple: the floor for a reader written in
  Python), and ``ratio_vs_raw_unpack`` the median of the per-repetition
  ratios. ``reader[i]`` is a native call (``kernels/pyevent.py``), so the
  ratio can be below 1; ``python_path_us`` is the reader's pure-Python
  fallback (``_getitem_struct``, used without a JIT) on the same positions.
* ``take``: ``reader.take(indices)`` per event, 1M random indices;
  ``numpy_take_ns`` is numpy's ``take`` of the same indices from the same
  mapped events, ``ratio_vs_numpy`` the speed-up (the reader's kernel
  prefetches ahead).
* ``merge``: ``SessionReader.merged()`` over 4 threads x 2.5M events with
  irregularly interleaved timestamps, events/s; ``heapq_events_per_s`` is
  ``heapq.merge`` of the same (timestamp, thread, seq) keys (inputs prepared
  outside the timing), and ``ratio_vs_heapq`` the speed-up.

Each figure is the best of a few repetitions (``reps``); ratios pair runs made
back to back. Big files live in a temporary directory removed at the end.

Run: ``python -m atf2.bench io [--quick]`` or ``python -m atf2.bench.io [--quick]``.
"""

from __future__ import annotations

import heapq
import mmap
import os
import shutil
import sys
import tempfile
import time

import numpy as np
from numba import njit

from ..kernels.decode import scan_index
from ..layout import INDEX_EVENT_DTYPE, INDEX_EVENT_SIZE, INDEX_EVENTS_OFFSET, NO_DETAIL
from ..manifest import write_manifest
from ..reader import IndexReader, SessionReader
from ..reader._common import struct_for
from ..writer import ThreadWriter


@njit(cache=True, nogil=True)
def _raw_sum(words):
    s = np.uint64(0)
    for i in range(words.shape[0]):
        s += words[i]
    return s


def make_events(n: int, thread_id: int = 0, seed: int = 0, t0: int = 10**12, stride: int = 1) -> np.ndarray:
    """n events with increasing, irregular timestamps (``stride`` apart on average)."""
    rng = np.random.default_rng(seed)
    ev = np.empty(n, dtype=INDEX_EVENT_DTYPE)
    ev["timestamp_ns"] = t0 + np.cumsum(rng.integers(1, 2 * stride * 100, n, dtype=np.uint64))
    ev["function_id"] = rng.integers(0, 1 << 40, n, dtype=np.uint64)
    ev["thread_id"] = thread_id
    ev["event_kind"] = 1 + (np.arange(n) & 1)
    ev["call_depth"] = rng.integers(0, 64, n, dtype=np.uint32)
    ev["detail_seq"] = NO_DETAIL
    return ev


def _sync() -> None:
    try:
        os.sync()
    except (AttributeError, OSError):  # pragma: no cover
        pass


def _time_writer(directory: str, events: np.ndarray, batch: int) -> float:
    _sync()
    t0 = time.perf_counter()
    w = ThreadWriter(directory, 0)
    for lo in range(0, len(events), batch):
        w.write_events(events[lo : lo + batch])
    w.close()
    return time.perf_counter() - t0


def _time_raw(directory: str, events: np.ndarray, batch: int) -> float:
    path = os.path.join(directory, "raw.bin")
    data = events.view(np.uint8).data
    step = batch * INDEX_EVENT_SIZE
    _sync()
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    for lo in range(0, len(data), step):
        view = data[lo : lo + step]
        while view:
            view = view[os.write(fd, view) :]
    os.close(fd)
    elapsed = time.perf_counter() - t0
    os.unlink(path)
    return elapsed


def bench_write(directory: str, n: int, batch: int, reps: int) -> dict:
    events = make_events(n)
    # the same records with detail_seq 0: the writer must encode them (a
    # copy into scratch) instead of writing the caller's array as it is
    to_encode = events.copy()
    to_encode["detail_seq"] = 0
    _time_writer(directory, events[: 2 * batch], batch)  # load the kernels, warm the helper thread
    _time_writer(directory, to_encode[: 2 * batch], batch)
    writer, raw, ratios, encoding, enc_ratios = [], [], [], [], []
    for _ in range(reps):
        shutil.rmtree(os.path.join(directory, "thread_0"), ignore_errors=True)
        tw = _time_writer(directory, events, batch)
        tr = _time_raw(directory, events, batch)
        shutil.rmtree(os.path.join(directory, "thread_0"), ignore_errors=True)
        te = _time_writer(directory, to_encode, batch)
        writer.append(tw)
        raw.append(tr)
        encoding.append(te)
        ratios.append(tr / tw)
        enc_ratios.append(tr / te)
    return {
        "name": "write",
        "value": n / min(writer),
        "unit": "events/s",
        "events": n,
        "batch": batch,
        "raw_write_events_per_s": n / min(raw),
        "ratio_vs_raw": float(np.median(ratios)),
        "ratio_best_vs_best": min(raw) / min(writer),
        "encoding_events_per_s": n / min(encoding),
        "encoding_ratio_vs_raw": float(np.median(enc_ratios)),
    }


def bench_read_scan(path: str, reps: int) -> dict:
    nbytes = os.path.getsize(path) - 128
    with IndexReader(path) as r:
        scan_index(r.events[:10])
    ours, raw = [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        with IndexReader(path) as r:
            scan_index(r.events)
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        with open(path, "rb") as f:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        words = np.frombuffer(m, dtype=np.uint64, count=nbytes // 8, offset=64)
        _raw_sum(words)
        del words
        m.close()
        raw.append(time.perf_counter() - t0)
    return {
        "name": "read_scan",
        "value": nbytes / min(ours) / 1e9,
        "unit": "GB/s",
        "raw_mmap_scan_gb_s": nbytes / min(raw) / 1e9,
        "ratio_vs_raw": min(raw) / min(ours),
    }


def bench_random_access(path: str, count: int, reps: int) -> list:
    with IndexReader(path) as r, open(path, "rb") as f:
        n = len(r)
        rng = np.random.default_rng(1)
        positions = rng.integers(0, n, count)
        as_list = positions.tolist()
        r.take(positions[:10])
        scan_index(r.events)  # fault the pages in, as an open reader would have them
        get = r.__getitem__
        python_get = IndexReader._getitem_struct.__get__(r)
        # the floor: a bare struct unpack of each record from an mmap, the
        # same positions, no reader (CPython's own cost of the loop, the call
        # and the tuple, and the cache/TLB miss at each position)
        raw_map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        unpack = struct_for(INDEX_EVENT_DTYPE).unpack_from
        best_get = best_take = best_raw = best_python = best_numpy_take = float("inf")
        ratios = []
        for _ in range(reps):
            t0 = time.perf_counter()
            for i in as_list:
                get(i)
            t_get = time.perf_counter() - t0
            t0 = time.perf_counter()
            for i in as_list:
                unpack(raw_map, INDEX_EVENTS_OFFSET + INDEX_EVENT_SIZE * i)
            t_raw = time.perf_counter() - t0
            t0 = time.perf_counter()
            for i in as_list:
                python_get(i)
            best_python = min(best_python, time.perf_counter() - t0)
            best_get = min(best_get, t_get)
            best_raw = min(best_raw, t_raw)
            ratios.append(t_get / t_raw)
            t0 = time.perf_counter()
            r.take(positions)
            best_take = min(best_take, time.perf_counter() - t0)
            t0 = time.perf_counter()
            r.events.take(positions)
            best_numpy_take = min(best_numpy_take, time.perf_counter() - t0)
        raw_map.close()
        t0 = time.perf_counter()
        for _ in as_list:
            pass
        loop = time.perf_counter() - t0
    return [
        {
            "name": "getitem",
            "value": best_get / count * 1e6,
            "unit": "us/event",
            "positions": count,
            "raw_unpack_us": best_raw / count * 1e6,
            "ratio_vs_raw_unpack": float(np.median(ratios)),
            "python_path_us": best_python / count * 1e6,
            "empty_loop_us": loop / count * 1e6,
        },
        {
            "name": "take",
            "value": best_take / count * 1e9,
            "unit": "ns/event",
            "indices": count,
            "numpy_take_ns": best_numpy_take / count * 1e9,
            "ratio_vs_numpy": best_numpy_take / best_take,
        },
    ]


def bench_merge(directory: str, threads: int, per_thread: int, reps: int) -> dict:
    session = os.path.join(directory, "merge")
    os.makedirs(session)
    entries = []
    keys = []
    for t in range(threads):
        ev = make_events(per_thread, thread_id=t, seed=10 + t, stride=threads)
        with ThreadWriter(session, t) as w:
            w.write_events(ev)
        entries.append({"id": t, "has_detail": False})
        keys.append(ev["timestamp_ns"].tolist())
    write_manifest(session, {"format_version": "2.1", "status": "complete", "threads": entries})
    total = threads * per_thread
    best = float("inf")
    with SessionReader(session) as s:
        s.merged(chunk_size=1000).__next__()  # load the kernel
        for _ in range(reps):
            t0 = time.perf_counter()
            out = s.merged()
            best = min(best, time.perf_counter() - t0)
            assert len(out) == total
            del out
    iters = [zip(ts, [t] * len(ts), range(len(ts)), strict=True) for t, ts in enumerate(keys)]
    t0 = time.perf_counter()
    merged = list(heapq.merge(*iters))
    heap = time.perf_counter() - t0
    assert len(merged) == total
    del merged, keys, iters
    shutil.rmtree(session, ignore_errors=True)
    return {
        "name": "merge",
        "value": total / best,
        "unit": "events/s",
        "threads": threads,
        "events": total,
        "heapq_events_per_s": total / heap,
        "ratio_vs_heapq": heap / best,
    }


def run(quick: bool = False, events: int | None = None) -> list:
    """All figures; ``events`` overrides the size (10M, or 500k when ``quick``)."""
    n = events or (500_000 if quick else 10_000_000)
    batch = min(1_000_000, n)
    reps = 2 if quick or events else 3
    root = tempfile.mkdtemp(prefix="atf2-bench-io-")
    rows = []
    try:
        rows.append(bench_write(root, n, batch, reps))
        path = os.path.join(root, "thread_0", "index.atf")
        rows.append(bench_read_scan(path, reps))
        rows.extend(bench_random_access(path, min(n, 50_000 if quick else 1_000_000), reps))
        shutil.rmtree(os.path.join(root, "thread_0"), ignore_errors=True)
        rows.append(bench_merge(root, 4, n // 4, reps))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return rows


def main(argv=None) -> None:
    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    for row in run(quick=quick):
        extra = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k not in ("name", "value", "unit"))
        print(f"{row['name']:<10} {row['value']:>14.4g} {row['unit']:<9} {extra}", flush=True)


if __name__ == "__main__":
    main()
