"""Drain throughput: Numba producers fill the rings, the drain streams them to disk.

Figures (default pool settings unless said):

* ``drain_paced_20M_{1,2}p``: the issue's bar. Producers emit 20 M events/s
  in total for a few seconds, from a Numba kernel pushing as fast as it can
  in 1 ms slices (20 k events per slice at full speed, then the thread sleeps
  until the next slice is due, the way a traced program spends time between
  bursts of calls): events written per second and events dropped (target:
  zero drops).
* ``drain_paced_spin_20M_1p``: the same rate, but the producer busy-waits
  between events (spinning on the clock): it holds a whole core, so on a
  2-core machine the drain competes with it for the other one.
* ``drain_flood_1p``: the producer pushes as fast as it can, without pause
  (far faster than any disk): what the drain sustains, and the drops that
  flooding causes.
* ``drain_only_prefilled``: the drain alone: a pool holding 4 Mi events is
  filled, then drained (best of three).
* ``drain_stall_{250,500,750}ms_20M_1p``: the paced 1-producer row with the
  disk stalled: from 0.5 s into production every write of the drain's write
  thread blocks until the stall (250, 500 or 750 ms) is over, as when the
  page cache or the device stops taking writes. What the default pool
  absorbs: the backlog grows by 20 M events/s meanwhile (the pool grows
  toward its most, 16 Mi events at the defaults; the write-behind queue
  holds 2 Mi more), then drains. ``index_high_water`` is the largest
  backlog seen; the verdict ``absorbed`` means zero drops.

The bar (issue 3: at default pool settings, >= 20 M events/s sustained with
zero drops) is judged per run on ``dropped`` and the rates over the
producers' time: ``offered_events_per_s`` = events recorded per second from
the first producer's start to the last one's end, ``sustained_events_per_s``
= events written per second from the first producer's start until the
session was stopped (its last events written, files finalized; the
session's start is not counted). A paced row meets the bar with zero drops
when its producers held the 20 M events/s pace (offered within 1% of it: on
a loaded machine a sleeping producer falls behind); the flood row when it
sustained at least 20 M events/s with zero drops, which it cannot once the
producer outruns the write path (producers never wait: the rings then
overflow). ``--repeat N`` prints that verdict per run.

Every row carries ``raw_write_events_per_s``: the same number of bytes
written with plain ``os.write`` of 8 MiB chunks in the same directory right
after the session (its files deleted first), in 32-byte events per second,
and ``ratio_vs_raw`` = drain events/s / that. Both are page-cache writes
without fsync. Before each session the same amount is written and deleted
once (``raw_cold_events_per_s``): on VMs whose host backs guest memory on
first touch, never-used page-cache pages cost ~10x more than reused ones,
and this gives the session and the raw reference the same kind of pages.
``loadavg`` is the 1-minute load average when the row finished;
``drain_wait_for_cpu_fraction`` the part of the session the drain thread
spent runnable but waiting for a core (Linux schedstat; on a loaded machine
this, not the drain's own work, is what lets the rings overflow), and
``max_index_rings`` the most index rings a producer's pool grew to
(``RingConfig.ring_growth``; 16 = never grew).
``drain_cpu_ns_per_event``: CPU time (thread time) the drain's two threads
(cycles, write-behind) spent per event written; unlike the rates it barely
depends on how many other processes share the cores, and
``drain_cpu_capacity_events_per_s`` = 1e9 / that is what the drain sustains
with one core to itself. ``raw_write_cpu_ns_per_event`` is the thread CPU
time of the raw write above per 32 bytes, and ``drain_cpu_vs_raw_write_cpu``
the ratio of the two, the same-run figure least sensitive to load: the
drain's whole work (take, tick conversion, encoding, CRC, write) per event
against the write alone.

Run: ``python -m atf2.bench.drain [--quick] [--repeat N]`` (with N > 1 it
also prints best and median per row) or ``python -m atf2.bench drain``.
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


def _produce_paced_slices(ch, fid, rate: float, seconds: float, slice_s: float = 0.001) -> None:
    """``rate`` events/s for ``seconds``: each slice pushed at full speed by ``flood``, then sleep until due."""
    per_slice = max(1, int(rate * slice_s))
    total = int(rate * seconds)
    t0 = time.perf_counter()
    i = 0
    while i < total:
        n = min(per_slice, total - i)
        flood(ch.ctrl, ch.index_pool, fid, i, n)
        i += n
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)


#: when a stall begins, after the first producer's start (seconds; a quarter of a shorter run, ``--quick``)
STALL_AT_S = 0.5


class _WriteStall:
    """Blocks the writers' ``pwritev`` during [start, start + seconds) (perf_counter time), then writes.

    A stand-in for a disk (or page cache) that stops taking writes: the
    write-behind thread sleeps in its write until the stall is over, the way
    it would block in the kernel. Installed over ``atf2.writer._pwritev``
    for one session only.
    """

    def __init__(self, seconds: float):
        from .. import writer

        self.seconds = seconds
        self.start = float("inf")
        self._writer = writer
        self._real = writer._pwritev

    def begin_at(self, start: float) -> None:
        self.start = start

    def __call__(self, fd, buffers, offset):
        now = time.perf_counter()
        if self.start <= now < self.start + self.seconds:
            time.sleep(self.start + self.seconds - now)
        return self._real(fd, buffers, offset)

    def __enter__(self) -> _WriteStall:
        self._writer._pwritev = self  # type: ignore[assignment]  # called as pwritev is
        return self

    def __exit__(self, *exc) -> None:
        self._writer._pwritev = self._real


def _session_run(mode: str, producers: int, seconds: float, rate: float, options: dict, stall_s: float = 0.0) -> dict:
    """One session: ``mode`` is "paced" (sleeping between slices), "spin" (busy-waiting paced) or "flood".

    ``stall_s``: the disk stalls that long, from ``STALL_AT_S`` after the producers start (see ``_WriteStall``).
    """
    with _WriteStall(stall_s) as stall:
        return _session_run_stalled(mode, producers, seconds, rate, options, stall)


def _session_run_stalled(mode: str, producers: int, seconds: float, rate: float, options: dict, stall: _WriteStall) -> dict:
    from .. import session as S

    root = tempfile.mkdtemp(prefix="atf2-bench-drain-")
    try:
        d = os.path.join(root, "s")
        tps = ticks_per_second()
        expected = rate * seconds if rate else 40e6 * seconds
        warm_bytes = int(min(expected * INDEX_EVENT_SIZE, 2 << 30))
        os.sync()  # both the session and the raw reference start with no dirty pages
        raw_cold = warm_bytes / INDEX_EVENT_SIZE / _raw_write(root, warm_bytes)[0]
        sess = S.trace_session_start(d, **options)
        fid = np.uint64(sess.symbols.register("bench"))
        per_thread_rate = rate / producers

        spans: list = []

        def work():
            ch = sess.register_current_thread()
            p0 = time.perf_counter()
            if mode == "paced":
                _produce_paced_slices(ch, fid, per_thread_rate, seconds)
            elif mode == "spin":
                paced(ch.ctrl, ch.index_pool, fid, int(per_thread_rate * seconds), tps / per_thread_rate)
            else:
                end = time.perf_counter() + seconds
                i = 0
                while time.perf_counter() < end:
                    flood(ch.ctrl, ch.index_pool, fid, i, 1 << 20)
                    i += 1 << 20
            spans.append((p0, time.perf_counter()))

        threads = [threading.Thread(target=work) for _ in range(producers)]
        drain_tid = sess.drain._thread.native_id
        t0 = time.perf_counter()
        stall.begin_at(t0 + min(STALL_AT_S, seconds / 4))  # (--quick: 0.5 s runs, the stall inside them)
        q0 = _runqueue_wait_s(drain_tid)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        q1 = _runqueue_wait_s(drain_tid)
        waited = (q1 - q0) / (time.perf_counter() - t0) if q0 is not None and q1 is not None else float("nan")
        st = S.trace_session_stop()
        done = time.perf_counter()
        max_rings = max(ch.index_ring_count for ch in sess.channels())
        wall = done - t0
        written = st.index.written
        rate_w = written / wall
        shutil.rmtree(d, ignore_errors=True)
        os.sync()
        raw_bytes = max(written * INDEX_EVENT_SIZE, 8 << 20)
        raw_s, raw_cpu = _raw_write(root, raw_bytes)
        raw_rate = raw_bytes / INDEX_EVENT_SIZE / raw_s
        first = min(b for b, _ in spans)
        producing = max(e for _, e in spans) - first
        return {
            "value": rate_w,
            "unit": "events/s",
            "recorded": st.index.recorded,
            "written": written,
            "dropped": st.index.dropped,
            "drop_fraction": st.index.dropped / max(1, st.index.recorded),
            "producers": producers,
            "seconds": wall,
            "producing_seconds": producing,
            "offered_events_per_s": st.index.recorded / producing,
            "sustained_events_per_s": written / (done - first),
            "drain_capacity_events_per_s": st.drain_capacity_events_per_s,
            **_cpu_figures(sess.drain.cpu_s, written, raw_cpu, raw_bytes / INDEX_EVENT_SIZE),
            "raw_write_events_per_s": raw_rate,
            "raw_cold_events_per_s": raw_cold,
            "ratio_vs_raw": rate_w / raw_rate if raw_rate else 0.0,
            "loadavg": os.getloadavg()[0],
            "drain_wait_for_cpu_fraction": waited,
            "max_index_rings": max_rings,
            "index_high_water": max(t.index.high_water for t in st.threads),
            "stall_s": stall.seconds,
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _runqueue_wait_s(native_id: int | None) -> float | None:
    """Seconds thread ``native_id`` of this process spent runnable, waiting for a core (Linux), or None."""
    try:
        with open(f"/proc/self/task/{native_id}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


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
            # Fill only once the drain has gone back to its long sleep (after a
            # busy cycle it comes back within milliseconds and would drain the
            # pool while it fills).
            deadline = time.perf_counter() + 5
            while sess.drain._inflow > 0 and time.perf_counter() < deadline:
                time.sleep(0.005)
            time.sleep(0.005)
            before = sess.get_stats().index.written
            flood(ch.ctrl, ch.index_pool, fid, r * events, events)
            if sess.get_stats().index.written != before:
                raise RuntimeError("the drain ran while the pool was filled: figure not measurable")
            t0 = time.perf_counter()
            sess.drain.wake.set()
            while sess.get_stats().index.written < done + events:
                time.sleep(0.0005)
            best = min(best, time.perf_counter() - t0)
            done += events
        st = S.trace_session_stop()
        cpu = sess.drain.cpu_s
        shutil.rmtree(d, ignore_errors=True)
        os.sync()
        raw_s, raw_cpu = _raw_write(root, events * INDEX_EVENT_SIZE)
        raw_rate = events / raw_s
        rate = events / best
        return {
            "value": rate,
            "unit": "events/s",
            "events": events,
            "dropped": st.index.dropped,
            **_cpu_figures(cpu, st.index.written, raw_cpu, events),
            "raw_write_events_per_s": raw_rate,
            "ratio_vs_raw": rate / raw_rate,
            "loadavg": os.getloadavg()[0],
        }
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _cpu_figures(drain_cpu_s: float, written: int, raw_cpu_s: float, raw_events: float) -> dict:
    """The drain's CPU figures of a row: per event written, the rate one core sustains, against a raw write's CPU per 32 bytes."""
    drain_ns = drain_cpu_s / max(1, written) * 1e9
    raw_ns = raw_cpu_s / raw_events * 1e9
    return {
        "drain_cpu_ns_per_event": drain_ns,
        "drain_cpu_capacity_events_per_s": written / drain_cpu_s if drain_cpu_s else 0.0,
        "raw_write_cpu_ns_per_event": raw_ns,
        "drain_cpu_vs_raw_write_cpu": drain_ns / raw_ns if raw_ns else 0.0,
    }


def _raw_write(directory: str, nbytes: int) -> tuple[float, float]:
    """(seconds, thread CPU seconds) to write ``nbytes`` with plain os.write (8 MiB chunks), no fsync, like the writer."""
    chunk = np.random.default_rng(0).integers(0, 255, 8 << 20, dtype=np.uint8).tobytes()
    path = os.path.join(directory, "raw.bin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        t0, c0 = time.perf_counter(), time.thread_time()
        left = nbytes
        while left > 0:
            left -= os.write(fd, chunk[: min(left, len(chunk))])
        return time.perf_counter() - t0, time.thread_time() - c0
    finally:
        os.close(fd)
        os.unlink(path)


#: disk stalls the stall rows impose (ms)
STALL_MS = (250, 500, 750)


def run(quick: bool = False) -> list:
    seconds = 0.5 if quick else 2.0
    # Warm-up: load every kernel of the path (producer, drain, writer) first.
    _session_run("flood", 1, 0.05, 0, {})
    rows = []
    for producers in (1, 2):
        r = _session_run("paced", producers, seconds, TARGET_RATE, {})
        rows.append({"name": f"drain_paced_20M_{producers}p", **r})
    r = _session_run("spin", 1, seconds, TARGET_RATE, {})
    rows.append({"name": "drain_paced_spin_20M_1p", **r})
    r = _session_run("flood", 1, seconds, 0, {})
    rows.append({"name": "drain_flood_1p", **r})
    for stall_ms in STALL_MS:
        r = _session_run("paced", 1, seconds, TARGET_RATE, {}, stall_s=stall_ms / 1000)
        rows.append({"name": f"drain_stall_{stall_ms}ms_20M_1p", **r})
    rows.append({"name": "drain_only_prefilled", **_prefilled_run(1 << 20 if quick else 4 << 20)})
    return rows


def _print_row(row: dict) -> None:
    extra = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k not in ("name", "value", "unit"))
    print(f"{row['name']:<24} {row['value']:>14.4g} {row['unit']:<9} {extra}", flush=True)


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    quick = "--quick" in argv
    repeat = int(argv[argv.index("--repeat") + 1]) if "--repeat" in argv else 1
    runs: dict = {}
    for k in range(repeat):
        if repeat > 1:
            print(f"# run {k + 1}/{repeat}", flush=True)
        for row in run(quick=quick):
            _print_row(row)
            runs.setdefault(row["name"], []).append(row)
    if repeat > 1:
        print("# best and median over the runs (events/s written; drops; ratio vs the same run's raw write; load average)")
        for name, rows in runs.items():
            by_value = sorted(rows, key=lambda r: r["value"])
            best, med = by_value[-1], by_value[len(by_value) // 2]
            drops = [r.get("dropped", 0) for r in rows]
            cpu = sorted(r["drain_cpu_ns_per_event"] for r in rows)
            cpu_ratio = sorted(r["drain_cpu_vs_raw_write_cpu"] for r in rows)
            print(
                f"{name:<24} best {best['value']:.4g} (ratio {best['ratio_vs_raw']:.3g}, dropped {best.get('dropped', 0)}, load {best['loadavg']:.1f})"
                f"  median {med['value']:.4g} (ratio {med['ratio_vs_raw']:.3g}, dropped {med.get('dropped', 0)}, load {med['loadavg']:.1f})"
                f"  drops per run {drops}  drain CPU median {cpu[len(cpu) // 2]:.1f} ns/event"
                f" ({cpu_ratio[len(cpu_ratio) // 2]:.2f}x the raw write's)",
                flush=True,
            )
    print("# bar: >= 20M events/s sustained, zero drops, default pool settings (see the module docstring)")
    for name, rows in runs.items():
        verdicts = [bar_met(r) for r in rows]
        if verdicts[0] is not None:
            sustained = ", ".join(f"{r['sustained_events_per_s'] / 1e6:.2f}M/s dropped {r['dropped']}" for r in rows)
            print(f"{name:<24} met in {sum(map(bool, verdicts))} of {len(rows)} runs: {sustained}", flush=True)
    print("# disk stalls at 20M events/s: absorbed = zero drops")
    for name, rows in runs.items():
        if name.startswith("drain_stall_"):
            seen = ", ".join(f"dropped {r['dropped']} backlog {r['index_high_water'] / 1e6:.2f}M" for r in rows)
            absorbed = sum(1 for r in rows if r["dropped"] == 0)
            print(f"{name:<24} absorbed in {absorbed} of {len(rows)} runs: {seen}", flush=True)


def bar_met(row: dict) -> bool | None:
    """Whether a row meets the issue's bar (None: the row does not judge it)."""
    if row["name"].startswith("drain_paced_"):
        return row["dropped"] == 0 and row["offered_events_per_s"] >= 0.99 * TARGET_RATE
    if row["name"] == "drain_flood_1p":
        return row["dropped"] == 0 and row["sustained_events_per_s"] >= TARGET_RATE
    return None


if __name__ == "__main__":
    main()
