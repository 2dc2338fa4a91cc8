"""Per-thread fixed cost of tracing: W3 shrunk to almost no work, ours vs VizTracer.

``python -m atf2.bench.thread_lifecycle [--quick] [--reps N] [--threads T]``

W3 of ``atf2.bench.overhead`` runs W2 in 4 fresh threads each rep; with
little work per thread, what is left of our overhead is the per-thread
setup and teardown: registration and the hook's bootstrap on the traced
thread, the drain opening the thread's files, draining and finalizing them.
Same variants and clock (process CPU time, every thread of the process) as
``atf2.bench.overhead`` (its ``run_*`` helpers), interleaved rep by rep:
the figure is the median per rep above the floor, per thread, ours and
VizTracer's, and their ratio. The second row is the share of the program's
threads (each rep's time less the CPU of atf2's own threads in that rep's
window, read from their thread clocks): what a
thread pays itself (registration, hook bootstrap, exit), as opposed to the
drain's file work for it (VizTracer writes nothing until it saves, outside
the timed window). ``drain_ms_per_thread``: the drain's CPU time
over the whole loop per thread (opening, draining, finalizing the threads'
files, manifest rewrites, idle cycles), part of which falls after a rep's
timed window (finalizing its threads).

The churn row (``measure_churn``, ``--churn N``): N threads of 12 events
each, started and joined in waves of 50, as fast as Python does it. When
they end faster than the drain can create and finalize their files, the
ended threads wait for their files; what they hold meanwhile is the
figure: ``max_pools_held`` (ended threads still holding their ring pools,
seen after each wave) against ``max_waiting`` (ended threads whose files
were not finalized yet), and the RSS growth over the waves.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import threading
import time

from .longrun import rss_mib
from .overhead import load_workloads, run_floor, run_ours, run_untraced, run_viztracer


def internal_cpu_s() -> float:
    """CPU time of atf2's own threads (drain, write-behind) so far, read from
    their thread clocks: ``drain.cpu_s`` is only updated at the end of a cycle."""
    total = 0.0
    for thread in threading.enumerate():
        if thread.name.startswith("atf2-") and thread.ident is not None:
            try:
                total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
            except (OSError, AttributeError):  # it just ended; or no per-thread clocks here
                pass
    return total


def measure(reps: int, threads: int, records: int) -> dict:
    from atf2.session import trace_session_start

    workloads = load_workloads()

    def fn():
        return workloads.w3(threads, records)

    fn()
    workdir = tempfile.mkdtemp(prefix="atf2_bench_threads_")
    times: dict[str, list[float]] = {"untraced": [], "floor": [], "ours": [], "viztracer": [], "ours_drain": []}
    try:
        session = trace_session_start(os.path.join(workdir, "s"), trace_python=False)
        try:
            run_ours(fn, session)  # warm: kernels loaded, main thread registered
            d0 = session.drain.cpu_s
            for _ in range(reps):
                times["untraced"].append(run_untraced(fn))
                times["floor"].append(run_floor(fn))
                d_rep = internal_cpu_s()
                times["ours"].append(run_ours(fn, session)[0])
                times["ours_drain"].append(internal_cpu_s() - d_rep)
                t = run_viztracer(fn, 1_000_000)
                if t is not None:
                    times["viztracer"].append(t)
                time.sleep(0.03)  # the drain finalizes the rep's threads meanwhile (in drain_ms_per_thread)
            drain_s = session.drain.cpu_s - d0
        finally:
            stats = session.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items() if v}
    # The program's threads' share: each rep's time less the drain's CPU in
    # that rep's window (registration, bootstrap, first events, exit).
    program = statistics.median(o - d for o, d in zip(times["ours"], times["ours_drain"], strict=True))
    out = {
        "ours_ms_per_thread": (med["ours"] - med["floor"]) / threads * 1e3,
        "ours_program_ms_per_thread": (program - med["floor"]) / threads * 1e3,
        "ours_drain_ms_per_thread": med["ours_drain"] / threads * 1e3,
        "drain_ms_per_thread": drain_s / reps / threads * 1e3,
        "drops": stats.index.dropped,
        "load": os.getloadavg()[0],
    }
    if "viztracer" in med:
        out["viz_ms_per_thread"] = (med["viztracer"] - med["floor"]) / threads * 1e3
    return out


def measure_churn(n_threads: int, wave: int = 50, events: int = 12) -> dict:
    """Threads ending in waves faster than their files are made: what the ended ones hold (see the module docstring)."""
    import atf2
    from atf2.layout import CHANNEL_CLOSED

    workdir = tempfile.mkdtemp(prefix="atf2_bench_churn_")
    held, waiting, rss = [], [], []
    try:
        options = dict(flush_interval=0.005, ring_capacity=1024, spare_rings=3, detail_ring_bytes=16384, detail_spare_rings=1)
        with atf2.trace_session(os.path.join(workdir, "s"), **options) as s:
            fid = s.symbols.register("churn")
            atf2.emit(fid, 1)

            def work(k: int) -> None:
                for i in range(events):
                    atf2.emit(fid, 1 + i % 2, depth=k, detail=b"x" if i == 0 else None)

            # one thread first, to its end: the drain's first harvest and
            # close load their kernels (up to a few hundred ms in a new process)
            warm = threading.Thread(target=work, args=(0,))
            warm.start()
            warm.join()
            while s.channels()[-1].state != CHANNEL_CLOSED:
                time.sleep(0.005)
            t0 = time.perf_counter()
            for first in range(0, n_threads, wave):
                ts = [threading.Thread(target=work, args=(k,)) for k in range(first, min(first + wave, n_threads))]
                for t in ts:
                    t.start()
                for t in ts:
                    t.join()
                ended = [ch for ch in s.channels()[1:] if ch.exited.is_set()]
                held.append(sum(1 for ch in ended if ch.index_pool.size))
                waiting.append(sum(1 for ch in ended if ch.state != CHANNEL_CLOSED))
                rss.append(rss_mib())
            ended_s = time.perf_counter() - t0
            while any(ch.state != CHANNEL_CLOSED for ch in s.channels()[1:]):  # (the warm-up thread too)
                time.sleep(0.005)
            finalized_s = time.perf_counter() - t0
        stats = atf2.trace_session_get_stats()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "threads": n_threads,
        "threads_ended_per_s": n_threads / ended_s,
        "threads_finalized_per_s": n_threads / finalized_s,
        "max_waiting": max(waiting),
        "max_pools_held": max(held),
        "rss_growth_mib": rss[-1] - rss[min(1, len(rss) - 1)],
        "drops": stats.index.dropped,
        "load": os.getloadavg()[0],
    }


def churn_row(n_threads: int) -> dict:
    m = measure_churn(n_threads)
    return {
        "name": f"churn: {n_threads} threads ended in waves of 50",
        "value": m["threads_ended_per_s"],
        "unit": "threads/s",
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in m.items() if k not in ("threads", "threads_ended_per_s")},
    }


def run(quick: bool = False, reps: int | None = None, threads: int = 4, churn: int = 0) -> list[dict]:
    if churn:
        return [churn_row(churn)]
    m = measure(reps or (10 if quick else 40), threads, records=10)
    viz = m.get("viz_ms_per_thread")
    return [
        {
            "name": "W3-tiny ours per-thread cost above floor (median)",
            "value": m["ours_ms_per_thread"],
            "unit": "ms",
            "viztracer_ms": viz,
            "ratio_vs_viztracer": m["ours_ms_per_thread"] / viz if viz and viz > 0 else float("nan"),
            "drops": m["drops"],
            "loadavg": round(m["load"], 2),
        },
        {
            "name": "W3-tiny ours per-thread cost on the program's threads",
            "value": m["ours_program_ms_per_thread"],
            "unit": "ms",
            "viztracer_ms": viz,
            "ratio_vs_viztracer": m["ours_program_ms_per_thread"] / viz if viz and viz > 0 else float("nan"),
            "drain_in_window_ms": m["ours_drain_ms_per_thread"],
        },
        {
            "name": "W3-tiny drain CPU per thread (whole loop)",
            "value": m["drain_ms_per_thread"],
            "unit": "ms",
            "loadavg": round(m["load"], 2),
        },
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--churn", type=int, default=0, metavar="N", help="only the churn row, with N threads (e.g. 2000)")
    args = parser.parse_args(argv)
    for row in run(args.quick, args.reps, args.threads, args.churn):
        extra = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k not in ("name", "value", "unit"))
        print(f"{row['name']:60s} {row['value']:8.3f} {row['unit']}  {extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
