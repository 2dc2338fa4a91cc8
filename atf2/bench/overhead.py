"""Tracing overhead: ours vs VizTracer, per event, above the floor.

``python -m atf2.bench.overhead [--quick] [--reps N]``

For each workload (``examples/overhead_workloads.py``: W1 fib(25), W2 a
realistic mix, W3 = W2 in 4 threads), in one run and interleaved rep by rep:

* untraced: the workload alone;
* floor: a ``@cfunc`` profile hook that returns at once, in every thread;
  what CPython charges any C-level profiler per event;
* ours: ``atf2.tracer`` recording into a live session (drain thread writing
  to disk meanwhile), events and drops from the session's stats;
* viztracer: ``VizTracer(ignore_c_function=True)`` (Python functions only,
  like ours), buffer large enough to keep every event.

Per-event overhead above the floor = (t - t_floor) / events, with the events
we recorded as the denominator for both tracers (both hooks see exactly the
same CPython profile events). Best-of and median over the reps, and the
paired median (per rep: ours - floor and viztracer - floor of that rep, the
median of their ratios): the bar is ours <= 0.8 x VizTracer's, zero drops.
The main clock is process CPU time (the drain's work included); the paired
medians are also given in the workload threads' own CPU time
(``time.thread_time``: not inflated when the VM preempts them, drain left
out) and in wall time.

``--instructions``: the same contenders' per-event instruction counts under
valgrind's callgrind (see the section below): repeatable on a loaded VM where
the timings above are not.

Why samples are long: one W2 run is ~25 ms (42k events), so the per-event
difference of a few tens of ns (~1 ms per run) drowns in timer and scheduler
noise and one-off costs. Each timed sample therefore runs the workload
``inner`` times back to back (``inner`` calibrated so an untraced sample is
>= ``target_s``, 0.3 s by default) inside ONE tracing start/stop (the session
itself is started once, outside every timed region). W3 stays "W2 in 4 real
threads started inside the timed region": each thread runs W2 ``inner``
times, which amortizes its start-up; the per-thread fixed cost is reported
on its own row (``atf2.bench.thread_lifecycle``, W3 with almost no work).
Every contender (floor, ours, VizTracer) gets one untimed warm-up sample
first (JIT, first sight of the code objects, VizTracer's buffer).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import math
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

_set_profile = ctypes.pythonapi.PyEval_SetProfile
_set_profile.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_set_profile.restype = None


def load_workloads():
    """examples/overhead_workloads.py (a file of the repository, not a package module)."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.path.join(here, "..", "..", "examples", "overhead_workloads.py")
    spec = importlib.util.spec_from_file_location("atf2_overhead_workloads", path)
    assert spec is not None and spec.loader is not None, path  # a .py path always has a spec and loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


#: The clock: process CPU time (every thread of this process, ours including
#: the drain's encoding and writing), not wall time: this machine is shared
#: and other processes' load would otherwise swamp differences of a few ns
#: per event. ``--wall`` switches to wall time.
_clock = time.process_time


class _WorkloadClocks:
    """Wall seconds and CPU seconds of the workload's own threads (``time.thread_time``), summed
    over every workload run so far; a sample's figures are differences.

    Beside the main clock (process CPU time, the drain's work included): the
    threads' own CPU time is not inflated when the machine preempts them (a
    shared 2-core VM), and leaves out the drain; wall time is what a user waits.
    Only the workload runs are counted, not the drain settling between them.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.wall = 0.0
        self.cpu = 0.0

    def add(self, wall: float, cpu: float) -> None:
        with self._lock:
            self.wall += wall
            self.cpu += cpu

    def read(self) -> tuple[float, float]:
        with self._lock:
            return self.wall, self.cpu


_WORKLOAD_CLOCKS = _WorkloadClocks()


def _timed(fn) -> float:
    t0 = _clock()
    fn()
    return _clock() - t0


def run_untraced(fn) -> float:
    return _timed(fn)


def run_floor(fn) -> float:
    from atf2.kernels.hook import floor_hook

    def bootstrap(frame, event, arg):  # new threads: install the floor hook once
        _set_profile(floor_hook.address, None)

    threading.setprofile(bootstrap)
    _set_profile(floor_hook.address, None)
    try:
        return _timed(fn)
    finally:
        _set_profile(None, None)
        threading.setprofile(None)


def run_ours(fn, session) -> tuple[float, int, int]:
    """(seconds, events recorded, drops) of one traced run inside ``session``."""
    from atf2 import tracer

    before = session.get_stats().index
    t0 = _clock()
    tracer.start_tracing(session)
    try:
        fn()
    finally:
        tracer.stop_tracing()
    # The drain's work for these events is part of our cost: wait until it
    # has caught up (sleeping costs no CPU time; under --wall it is excluded).
    t = _clock() - t0
    if _clock is time.process_time:
        # the drain's CPU until it has caught up counts; this thread's polling does not
        w0 = time.thread_time()
        wait_drain(session)
        t = _clock() - t0 - (time.thread_time() - w0)
    else:
        wait_drain(session)
    after = session.get_stats().index
    return t, after.recorded - before.recorded, after.dropped - before.dropped


def wait_drain(session, timeout_s: float = 5.0) -> None:
    """Sleep until the drain has taken every record written so far (sleeping costs no CPU time).

    Only the records present on entry: while tracing is on, this loop's own
    calls add records, so "until nothing is pending" would never end.
    """
    from atf2.layout import CTRL_INDEX_READ_POS, CTRL_INDEX_WRITE_POS

    targets = [(ch, int(ch.ctrl[CTRL_INDEX_WRITE_POS])) for ch in session._snapshot()]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(int(ch.ctrl[CTRL_INDEX_READ_POS]) < w for ch, w in targets):
        time.sleep(0.002)


def settle_for(session):
    """Between two runs of a sample of ours: let the drain catch up, or None.

    A W1 run is ~0.5M events in ~50 ms, faster than the drain sustains on a
    loaded 2-core machine: back to back, 20 runs overflow the rings. With the
    process CPU clock the pause is free and the drain's work still counted,
    so the sample measures per-event cost with every event kept. Under
    ``--wall`` the pause would be timed: no settling there.
    """
    if _clock is not time.process_time:
        return None
    return lambda: wait_drain(session)


def _pending(session) -> bool:
    """Records still waiting for the drain (a cheap look at the control blocks, not get_stats)."""
    from atf2.layout import CTRL_INDEX_READ_POS, CTRL_INDEX_WRITE_POS

    return any(ch.ctrl[CTRL_INDEX_READ_POS] < ch.ctrl[CTRL_INDEX_WRITE_POS] for ch in session._snapshot())


def run_viztracer(fn, entries: int) -> float | None:
    try:
        from viztracer import VizTracer
    except ImportError:
        return None
    tracer = VizTracer(tracer_entries=entries, verbose=0, ignore_c_function=True)
    # start and stop timed, as they are for ours (run_ours)
    t0 = _clock()
    tracer.start()
    try:
        fn()
    finally:
        tracer.stop()
        t = _clock() - t0
        tracer.clear()
    return t


def workload(workloads, name: str, n: int = 3000, inner: int = 1, settle=None):
    """One timed sample of workload ``name``: the workload run ``inner`` times.

    ``settle`` (W1, W2; see :func:`settle_for`) runs between two runs.
    W3 starts its 4 threads once per sample (inside the timed region) and each
    thread runs W2 ``inner`` times: thread start-up is paid, then amortized.
    """

    clocks = _WORKLOAD_CLOCKS

    def repeat(run):
        def sample():
            for i in range(inner):
                if settle is not None and i:
                    settle()
                w0, c0 = time.perf_counter(), time.thread_time()
                run()
                clocks.add(time.perf_counter() - w0, time.thread_time() - c0)

        return sample

    if name == "W1":
        return repeat(workloads.w1)
    if name == "W2":
        return repeat(lambda: workloads.w2(n))
    if name == "W3":

        def w3(threads: int = 4) -> None:
            def body(i: int) -> None:
                c0 = time.thread_time()
                for _ in range(inner):
                    workloads.w2(n, seed=i)
                clocks.add(0.0, time.thread_time() - c0)

            w0 = time.perf_counter()
            workers = [threading.Thread(target=body, args=(i,), name=f"w3-{i}") for i in range(threads)]
            for t in workers:
                t.start()
            for t in workers:
                t.join()
            clocks.add(time.perf_counter() - w0, 0.0)

        return w3
    raise ValueError(f"unknown workload {name!r}")


def calibrate_inner(make, target_s: float) -> int:
    """How many workload runs make an untraced sample last >= ``target_s`` (min of 3 timings of one run)."""
    one = make(1)
    one()  # warm caches (regex, imports), untimed
    t = min(_timed(one) for _ in range(3))
    return max(1, math.ceil(target_s / max(t, 1e-6)))


def measure(name: str, make, reps: int, workdir: str, target_s: float = 0.3) -> dict:
    """Interleaved reps of untraced/floor/ours/viztracer on ``make(inner)`` samples.

    ``make(inner, settle=None)`` returns the sample callable (see :func:`workload`).
    """
    from atf2.session import trace_session_start, trace_session_stop

    inner = calibrate_inner(make, target_s)
    fn = make(inner)
    times: dict[str, list[float]] = {"untraced": [], "floor": [], "ours": [], "viztracer": []}
    # the same samples on the two other clocks (see _WorkloadClocks)
    walls: dict[str, list[float]] = {variant: [] for variant in times}
    cpus: dict[str, list[float]] = {variant: [] for variant in times}
    events, drops = [], 0
    session = trace_session_start(os.path.join(workdir, name), trace_python=False)
    fn_ours = make(inner, settle=settle_for(session))
    try:
        # Warm-up, untimed, for every contender alike.
        run_untraced(fn)
        run_floor(fn)
        _, warm_events, _ = run_ours(fn_ours, session)
        viz_entries = max(1_000_000, 2 * warm_events)
        run_viztracer(fn, entries=viz_entries)
        for rep in range(reps):
            order = ["untraced", "floor", "ours", "viztracer"]
            order = order[rep % 4 :] + order[: rep % 4]  # rotate: no variant always runs first
            for variant in order:
                wall0, cpu0 = _WORKLOAD_CLOCKS.read()
                if variant == "untraced":
                    times[variant].append(run_untraced(fn))
                elif variant == "floor":
                    times[variant].append(run_floor(fn))
                elif variant == "ours":
                    t, n, d = run_ours(fn_ours, session)
                    times[variant].append(t)
                    events.append(n)
                    drops += d
                else:
                    vt = run_viztracer(fn, entries=viz_entries)
                    if vt is None:
                        continue
                    times[variant].append(vt)
                wall1, cpu1 = _WORKLOAD_CLOCKS.read()
                walls[variant].append(wall1 - wall0)
                cpus[variant].append(cpu1 - cpu0)
    finally:
        stats = trace_session_stop()
    n_events = int(statistics.median(events))
    out: dict[str, Any] = {
        "workload": name,
        "events": n_events,
        "inner": inner,
        "drops": int(stats.index.dropped),
        "load": round(os.getloadavg()[0], 2),
    }
    for variant, ts in times.items():
        if ts:
            out[f"{variant}_best_s"] = min(ts)
            out[f"{variant}_median_s"] = statistics.median(ts)
    # Paired: within each rep the four variants run back to back, so the
    # difference ours - floor of the same rep cancels slow load drifts; the
    # median over reps of those differences is the steadiest estimate here.
    if times["viztracer"]:
        ours_d = [(o - f) / n_events * 1e9 for o, f in zip(times["ours"], times["floor"], strict=True)]
        viz_d = [(v - f) / n_events * 1e9 for v, f in zip(times["viztracer"], times["floor"], strict=True)]
        out["ours_ns_above_floor_paired"] = statistics.median(ours_d)
        out["viz_ns_above_floor_paired"] = statistics.median(viz_d)
        out["ratio_paired"] = statistics.median([o / v for o, v in zip(ours_d, viz_d, strict=True) if v > 0] or [float("nan")])
        for clock, samples in (("thread_cpu", cpus), ("wall", walls)):
            ours_c = [(o - f) / n_events * 1e9 for o, f in zip(samples["ours"], samples["floor"], strict=True)]
            viz_c = [(v - f) / n_events * 1e9 for v, f in zip(samples["viztracer"], samples["floor"], strict=True)]
            out[f"ours_ns_above_floor_{clock}"] = statistics.median(ours_c)
            out[f"viz_ns_above_floor_{clock}"] = statistics.median(viz_c)
            out[f"floor_ns_{clock}"] = statistics.median(
                [(f - u) / n_events * 1e9 for f, u in zip(samples["floor"], samples["untraced"], strict=True)]
            )
            out[f"ratio_{clock}"] = statistics.median([o / v for o, v in zip(ours_c, viz_c, strict=True) if v > 0] or [float("nan")])
    for stat in ("best", "median"):
        floor = out[f"floor_{stat}_s"]
        out[f"floor_ns_per_event_{stat}"] = (floor - out[f"untraced_{stat}_s"]) / n_events * 1e9
        out[f"ours_ns_above_floor_{stat}"] = (out[f"ours_{stat}_s"] - floor) / n_events * 1e9
        if f"viztracer_{stat}_s" in out:
            out[f"viz_ns_above_floor_{stat}"] = (out[f"viztracer_{stat}_s"] - floor) / n_events * 1e9
            viz = out[f"viz_ns_above_floor_{stat}"]
            out[f"ratio_{stat}"] = out[f"ours_ns_above_floor_{stat}"] / viz if viz > 0 else float("nan")
    return out


# --------------------------------------------------------------------------
# Instruction counts (``--instructions``): the same contenders under callgrind
# --------------------------------------------------------------------------
# Each contender runs each workload after a warm-up once (N) and twice in a
# row (2N), in the same process. The difference of the two counts is the
# instructions of N events with every one-off cost cancelled (imports, JIT
# cache, start/stop of tracing, thread start-up, first sight of the code
# objects, the session's files). Counts are per thread. Callgrind's dump
# request writes the counts of the calling thread only, so every thread
# dumps its own: the workload's threads at the end of their work (label
# ``W|contender|k|run``), and atf2's drain and write-behind threads when
# asked through the drain's cycle (``W|ours|k|atf2``, once the drain has
# written every record of the run; ``...|atf2-start`` before it).

#: valgrind serializes threads, so the drain runs only when the workload
#: yields its turn: pools as large as ring_growth allows (8x) absorb that
_VALGRIND_RING_GROWTH = 8
#: write-behind job tag of the dump requests (the drain tags its jobs with staging indices >= 0)
_DUMP_TAG = -1


def instruction_sample(workloads, name: str, n: int, k: int, label: str):
    """Workload ``name`` run ``k`` times; each of its threads then dumps its counts as ``label``."""
    from . import callgrind

    if name in ("W1", "W2"):

        def sample() -> None:
            for _ in range(k):
                workloads.w1() if name == "W1" else workloads.w2(n)
            callgrind.dump(label)

        return sample
    if name != "W3":
        raise ValueError(f"unknown workload {name!r}")

    def w3(threads: int = 4) -> None:
        def body(i: int) -> None:
            for _ in range(k):
                workloads.w2(n, seed=i)
            callgrind.dump(label)

        workers = [threading.Thread(target=body, args=(i,), name=f"w3-{i}") for i in range(threads)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()
        callgrind.dump(label)

    return w3


class _DrainDumps:
    """Has the session's drain thread (and its write-behind thread) dump their counts on request.

    Wraps the drain's ``cycle`` (looked up on the instance by its loop): the
    next cycle after a request dumps the drain thread, then has the
    write-behind thread run a dump job and waits for it.
    """

    def __init__(self, session) -> None:
        from . import callgrind

        self.drain = session.drain
        self.label: str | None = None
        self.done = threading.Event()
        io = getattr(self.drain, "_io", None)
        original = self.drain.cycle

        def cycle(*args, **kwargs):
            result = original(*args, **kwargs)
            label = self.label
            if label is not None:
                self.label = None
                callgrind.dump(label)
                if io is not None:
                    io.submit(_DUMP_TAG, callgrind.dump, label)
                    io.wait(_DUMP_TAG)
                self.done.set()
            return result

        self.drain.cycle = cycle

    def dump(self, label: str, timeout_s: float = 600.0) -> None:
        self.done.clear()
        self.label = label
        self.drain.wake.set()
        if not self.done.wait(timeout_s):
            raise RuntimeError(f"the drain did not dump {label!r}")


def _settle_writes(session, timeout_s: float = 600.0) -> None:
    """Until the drain has taken every record (wait_drain) and its write-behind jobs are done."""
    wait_drain(session, timeout_s)
    io = getattr(getattr(session, "drain", None), "_io", None)
    deadline = time.monotonic() + timeout_s
    while io is not None and time.monotonic() < deadline and not all(e.is_set() for e in list(io._pending.values())):
        time.sleep(0.002)


def _warm_everything(workloads) -> None:
    """Load every kernel and module the contenders use (a throwaway session), before counting starts."""
    from atf2.session import trace_session_start, trace_session_stop

    workdir = tempfile.mkdtemp(prefix="atf2_bench_warm_")
    try:
        session = trace_session_start(os.path.join(workdir, "warm"), trace_python=False)
        try:
            for name in ("W1", "W2", "W3"):
                run_ours(workload(workloads, name, 30), session)
        finally:
            trace_session_stop()
        run_floor(workload(workloads, "W3", 30))
        run_viztracer(workload(workloads, "W3", 30), entries=100_000)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def count_instructions(names: tuple[str, ...], n: int, result_path: str) -> None:
    """The child's side (run under callgrind): every phase, then figures as JSON in ``result_path``."""
    import gc
    import json

    from atf2.session import trace_session_start, trace_session_stop

    from . import callgrind

    workloads = load_workloads()
    _warm_everything(workloads)  # at valgrind's uninstrumented speed
    gc.collect()
    gc.freeze()  # what is alive now is never scanned again: collections stay small and alike
    callgrind.start_instrumentation()
    workdir = tempfile.mkdtemp(prefix="atf2_bench_instructions_")
    result: dict[str, Any] = {"on_valgrind": callgrind.running_on_valgrind(), "workloads": {}}
    try:
        for name in names:
            figures: dict[str, Any] = {"events": {}}
            session = trace_session_start(os.path.join(workdir, name), trace_python=False, ring_growth=_VALGRIND_RING_GROWTH)
            try:
                drain = _DrainDumps(session)
                for k in (0, 1, 2):  # 0: the warm-up (one run, not counted)
                    gc.collect()
                    callgrind.dump("gap")
                    drain.dump(f"{name}|ours|{k}|atf2-start")
                    fn = instruction_sample(workloads, name, n, max(k, 1), f"{name}|ours|{k}|run")
                    _, events, _ = run_ours(fn, session)
                    _settle_writes(session)
                    drain.dump(f"{name}|ours|{k}|atf2")
                    figures["events"][k] = events
            finally:
                stats = trace_session_stop()
            figures["drops"] = int(stats.index.dropped)
            figures["recorded"] = int(stats.index.recorded)
            entries = max(1_000_000, 3 * max(figures["events"].values()))
            figures["viztracer"] = importlib.util.find_spec("viztracer") is not None
            for contender in ("untraced", "floor", "viztracer"):
                if contender == "viztracer" and not figures["viztracer"]:
                    continue
                for k in (0, 1, 2):
                    gc.collect()
                    callgrind.dump("gap")
                    fn = instruction_sample(workloads, name, n, max(k, 1), f"{name}|{contender}|{k}|run")
                    if contender == "untraced":
                        run_untraced(fn)
                    elif contender == "floor":
                        run_floor(fn)
                    else:
                        run_viztracer(fn, entries=entries)
            result["workloads"][name] = figures
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    with open(result_path, "w", encoding="utf-8") as f:
        json.dump(result, f)


def instruction_rows(dumps, child: dict) -> list[dict]:
    """Per-event instructions above the floor, ours vs VizTracer, from the dumps and the child's figures."""
    by_label: dict[str, list] = {}
    for d in dumps:
        by_label.setdefault(d.label, []).append(d)

    def count(label: str) -> tuple[int, int]:
        """(instructions of the threads that dumped ``label``, how many threads)."""
        found = by_label.get(label, [])
        return sum(d.instructions for d in found), len(found)

    rows = []
    for name, figures in child["workloads"].items():
        events = {int(k): v for k, v in figures["events"].items()}
        n_events = events[2] - events[1]  # the events of N runs, as for every count below
        per_event: dict[str, float] = {}
        threads: dict[str, int] = {}
        for contender in ("untraced", "floor", "ours", "viztracer"):
            if f"{name}|{contender}|1|run" not in by_label:
                continue
            (i1, _), (i2, nt) = count(f"{name}|{contender}|1|run"), count(f"{name}|{contender}|2|run")
            per_event[contender] = (i2 - i1) / n_events
            threads[contender] = nt
        (a1, _), (a2, na) = count(f"{name}|ours|1|atf2"), count(f"{name}|ours|2|atf2")
        floor = per_event["floor"]
        ours = per_event["ours"] - floor
        atf2_threads = (a2 - a1) / n_events
        row: dict[str, Any] = {
            "name": f"{name} ours instructions/event above floor",
            "value": ours,
            "unit": "instr",
            "events": n_events,
            "events_first_n": events[1],
            "drops": figures["drops"],
            "floor_instr": floor - per_event["untraced"],
            "untraced_instr": per_event["untraced"],
            "workload_threads": threads["ours"],
            "atf2_threads": na,
            "atf2_threads_instr": atf2_threads,
            "ours_with_atf2_threads": ours + atf2_threads,
        }
        if "viztracer" in per_event:
            viz = per_event["viztracer"] - floor
            row["viztracer_instr"] = viz
            row["ratio_vs_viztracer"] = ours / viz if viz > 0 else float("nan")
            row["ratio_with_atf2_threads"] = (ours + atf2_threads) / viz if viz > 0 else float("nan")
            row["bar"] = 0.8
        rows.append(row)
    return rows


def run_instructions(only: tuple[str, ...] = (), n: int = 3000, keep: str | None = None) -> list[dict] | None:
    """``--instructions``: run the contenders under callgrind in a child; None when valgrind is missing."""
    import json
    import subprocess

    from . import callgrind

    if callgrind.valgrind() is None or not callgrind.available():
        return None
    names = tuple(name for name in ("W1", "W2", "W3") if not only or name in only)
    out_dir = keep or tempfile.mkdtemp(prefix="atf2_bench_callgrind_")
    os.makedirs(out_dir, exist_ok=True)
    try:
        result_path = os.path.join(out_dir, "figures.json")
        argv = [sys.executable, "-m", "atf2.bench.overhead", "--instructions-child", result_path, "--n", str(n), "--only", *names]
        env = dict(os.environ, PYTHONHASHSEED="0")  # the same dict layouts (and work) in every run
        proc = subprocess.run(callgrind.command(out_dir, argv), env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not os.path.exists(result_path):
            raise RuntimeError(f"the callgrind child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        with open(result_path, encoding="utf-8") as f:
            child = json.load(f)
        if not child["on_valgrind"]:
            raise RuntimeError("the child did not run under valgrind (client requests unanswered)")
        return instruction_rows(callgrind.read_dumps(out_dir), child)
    finally:
        if keep is None:
            shutil.rmtree(out_dir, ignore_errors=True)


def run(
    quick: bool = False,
    reps: int | None = None,
    only: tuple[str, ...] = (),
    target_s: float | None = None,
) -> list[dict]:
    workloads = load_workloads()
    reps = reps or (3 if quick else 15)
    n = 800 if quick else 3000
    target_s = target_s if target_s is not None else (0.03 if quick else 0.3)
    names = [name for name in ("W1", "W2", "W3") if not only or name in only]
    rows = []
    workdir = tempfile.mkdtemp(prefix="atf2_bench_overhead_")
    try:
        for name in names:
            m = measure(name, lambda inner, settle=None, name=name: workload(workloads, name, n, inner, settle), reps, workdir, target_s)
            for stat in ("best", "median"):
                row = {
                    "name": f"{name} ours ns/event above floor ({stat})",
                    "value": m[f"ours_ns_above_floor_{stat}"],
                    "unit": "ns",
                    "viztracer_ns": m.get(f"viz_ns_above_floor_{stat}", float("nan")),
                    "ratio_vs_viztracer": m.get(f"ratio_{stat}", float("nan")),
                    "bar": 0.8,
                    "floor_ns": m[f"floor_ns_per_event_{stat}"],
                    "events": m["events"],
                    "inner": m["inner"],
                    "drops": m["drops"],
                    "loadavg": m["load"],
                    "untraced_s": m[f"untraced_{stat}_s"],
                    "ours_s": m[f"ours_{stat}_s"],
                }
                rows.append(row)
            if "ratio_paired" in m:
                rows.append(
                    {
                        "name": f"{name} ours ns/event above floor (paired median)",
                        "value": m["ours_ns_above_floor_paired"],
                        "unit": "ns",
                        "viztracer_ns": m["viz_ns_above_floor_paired"],
                        "ratio_vs_viztracer": m["ratio_paired"],
                        "bar": 0.8,
                        "events": m["events"],
                        "inner": m["inner"],
                        "drops": m["drops"],
                        "loadavg": m["load"],
                    }
                )
                for clock, label in (("thread_cpu", "workload threads' CPU"), ("wall", "wall")):
                    rows.append(
                        {
                            "name": f"{name} ours ns/event above floor ({label}, paired median)",
                            "value": m[f"ours_ns_above_floor_{clock}"],
                            "unit": "ns",
                            "viztracer_ns": m[f"viz_ns_above_floor_{clock}"],
                            "ratio_vs_viztracer": m[f"ratio_{clock}"],
                            "bar": 0.8,
                            "floor_ns": m[f"floor_ns_{clock}"],
                            "events": m["events"],
                            "drops": m["drops"],
                        }
                    )
        if "W3" in names:
            # W3's per-thread fixed cost (registration, files, finalization),
            # amortized in W3's samples above: shown on its own row here.
            from . import thread_lifecycle

            rows.extend(thread_lifecycle.run(quick=quick))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m atf2.bench.overhead")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int)
    parser.add_argument("--only", nargs="*", default=(), choices=("W1", "W2", "W3"), help="workloads to run (default: all)")
    parser.add_argument("--target-s", type=float, help="min untraced seconds per timed sample (default 0.3; --quick 0.03)")
    parser.add_argument("--wall", action="store_true", help="wall-clock time instead of process CPU time")
    parser.add_argument("--instructions", action="store_true", help="count instructions under valgrind's callgrind instead of timing")
    parser.add_argument("--n", type=int, default=3000, help="W2/W3 records per run (--instructions)")
    parser.add_argument("--keep", help="--instructions: keep callgrind's files in this directory")
    parser.add_argument("--instructions-child", metavar="JSON", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.instructions_child:
        count_instructions(tuple(args.only) or ("W1", "W2", "W3"), args.n, args.instructions_child)
        return
    if args.instructions:
        rows = run_instructions(only=tuple(args.only), n=args.n, keep=args.keep)
        if rows is None:
            print("skipped: --instructions needs valgrind (not found on PATH) on Linux x86-64", flush=True)
            return
        _print_rows(rows)
        return
    if args.wall:
        global _clock
        _clock = time.perf_counter
    _print_rows(run(quick=args.quick, reps=args.reps, only=tuple(args.only), target_s=args.target_s))


def _print_rows(rows) -> None:
    for row in rows:
        extras = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k not in ("name", "value", "unit"))
        print(f"{row['name']:<50} {row['value']:>8.2f} {row['unit']}  {extras}", flush=True)


if __name__ == "__main__":
    main()
