"""Concurrency: stats and stop from other threads while producers run, start/stop
cycles that leak nothing (threads, profile hooks, file descriptors), and the
locks of the recording path never deadlock against the tracer's hooks."""

import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import atf2
from atf2 import layout as L
from atf2.reader import SessionReader


def run_py(code, timeout=120):
    """Run ``code`` in a fresh interpreter; a hang is a test failure, not a stuck run."""
    prelude = f"import faulthandler, sys; faulthandler.dump_traceback_later({timeout - 10}, exit=True)\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )


def open_fds():
    return set(os.listdir("/proc/self/fd"))


def atf2_threads():
    return [t for t in threading.enumerate() if t is not threading.main_thread() and t.is_alive()]


# ------------------------------------------------------ stats and stop from elsewhere


def test_stats_from_other_threads_while_producers_run(tmp_path):
    n_producers, batches, per_batch = 4, 40, 1000
    seen = []
    errors = []
    with atf2.trace_session(tmp_path / "s", flush_interval=0.002) as s:
        fid = s.symbols.register("work")
        stop_polling = threading.Event()

        def produce():
            try:
                for b in range(batches):
                    atf2.emit_batch(np.full(per_batch, fid), np.ones(per_batch, np.uint32), depths=np.arange(per_batch) + b)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        def poll():
            try:
                while not stop_polling.is_set():
                    st = atf2.trace_session_get_stats()
                    seen.append((st.index.recorded, st.index.written, st.index.dropped, len(st.threads)))
                    s.get_stats()
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        pollers = [threading.Thread(target=poll) for _ in range(2)]
        producers = [threading.Thread(target=produce) for _ in range(n_producers)]
        for t in pollers + producers:
            t.start()
        for t in producers:
            t.join()
        stop_polling.set()
        for t in pollers:
            t.join()
    assert not errors, errors
    assert len(seen) > 2
    for recorded, written, dropped, _ in seen:  # every snapshot is self-consistent
        assert written + dropped <= recorded <= n_producers * batches * per_batch
    final = atf2.trace_session_get_stats()
    assert final.index.recorded == n_producers * batches * per_batch
    assert final.index.written + final.index.dropped == final.index.recorded
    with SessionReader(tmp_path / "s") as r:
        assert r.event_count() == final.index.written


def test_stop_from_another_thread_while_producers_run(tmp_path):
    """Producers racing a stop: no exception but "session is complete", files whole, counts exact."""
    from atf2.errors import SessionStateError

    s = atf2.trace_session_start(tmp_path / "s", flush_interval=0.002)
    fid = s.symbols.register("work")
    emitted = [0] * 4
    errors = []
    started = threading.Barrier(5)

    def produce(k):
        started.wait()
        try:
            while True:
                s.emit(fid, L.EVENT_CALL, detail=b"x" * (emitted[k] % 7) if emitted[k] % 50 == 0 else None)
                emitted[k] += 1
        except SessionStateError:
            pass  # the session stopped under us: the expected end
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    producers = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for t in producers:
        t.start()
    started.wait()
    time.sleep(0.2)
    stopper_result = []
    stopper = threading.Thread(target=lambda: stopper_result.append(s.stop()))
    stopper.start()
    stopper.join(60)
    assert not stopper.is_alive()
    for t in producers:
        t.join(60)
        assert not t.is_alive()
    assert not errors, errors
    final = stopper_result[0]
    assert final.status == "complete" and s.stop() is final
    # every event was either recorded before the stop or refused with SessionStateError;
    # events recorded after the drain's last look can only be counted, never half-written
    assert final.index.recorded <= sum(emitted)
    assert final.index.written + final.index.dropped == final.index.recorded
    with SessionReader(tmp_path / "s") as r:
        assert not r.recovered and r.event_count() == final.index.written
        r.verify()


def test_concurrent_stops_return_the_same_figures(tmp_path):
    s = atf2.trace_session_start(tmp_path / "s", flush_interval=0.002)
    for i in range(1000):
        atf2.emit("f", 1 + i % 2)
    results = []
    ts = [threading.Thread(target=lambda: results.append(s.stop())) for _ in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert len(results) == 6 and all(r is results[0] for r in results)
    assert results[0].index.written == 1000


# --------------------------------------------------------------- start/stop cycles


def test_start_stop_cycles_leak_nothing(tmp_path):
    # warm up once (numba caches, lazily imported modules) before taking the baseline
    with atf2.trace_session(tmp_path / "warm", flush_interval=0.002):
        atf2.emit("f", 1)
    base_fds, base_threads = open_fds(), atf2_threads()
    base_profile = (sys.getprofile(), threading.getprofile())
    for cycle in range(25):
        d = tmp_path / f"c{cycle}"
        with atf2.trace_session(d, flush_interval=0.002, detail=cycle % 2 == 0):
            workers = [threading.Thread(target=lambda: [atf2.emit("w", 1) for _ in range(50)]) for _ in range(3)]
            for t in workers:
                t.start()
            atf2.emit("main", 1)
            for t in workers:
                t.join()
        with SessionReader(d) as r:
            assert r.event_count() == 151 and not r.recovered
    assert open_fds() == base_fds
    assert (sys.getprofile(), threading.getprofile()) == base_profile
    deadline = time.monotonic() + 10
    while atf2_threads() != base_threads and time.monotonic() < deadline:
        time.sleep(0.01)
    assert atf2_threads() == base_threads


def test_traced_start_stop_cycles_restore_hooks_and_threads(tmp_path):
    """With the Python tracer: hooks of every thread restored, no drain left behind."""
    pytest.importorskip("atf2.tracer")

    def previous_profiler(frame, event, arg):
        return None

    sys.setprofile(previous_profiler)
    threading.setprofile(previous_profiler)
    try:
        with atf2.trace_session(tmp_path / "warm", flush_interval=0.002, trace_python=True):
            pass
        base_fds, base_threads = open_fds(), atf2_threads()

        def f(x):
            return x + 1

        for cycle in range(15):
            with atf2.trace_session(tmp_path / f"c{cycle}", flush_interval=0.002, trace_python=True,
                                    detail="always" if cycle % 3 == 0 else "off"):
                t = threading.Thread(target=lambda: [f(i) for i in range(20)])
                t.start()
                for i in range(20):
                    f(i)
                t.join()
            assert sys.getprofile() is previous_profiler and threading.getprofile() is previous_profiler
            with SessionReader(tmp_path / f"c{cycle}") as r:
                names = {r.symbol_name(fid) for fid in r.merged()["function_id"]}
                assert any(n.split(".")[-1] == "f" for n in names)
        assert open_fds() == base_fds
        deadline = time.monotonic() + 10
        while atf2_threads() != base_threads and time.monotonic() < deadline:
            time.sleep(0.01)
        assert atf2_threads() == base_threads
    finally:
        sys.setprofile(None)
        threading.setprofile(None)


# ------------------------------------------------------------------------ deadlocks


def test_emit_by_name_under_detail_capture_does_not_deadlock(tmp_path):
    """Regression: emit("name") registers a symbol; under the symbol table's lock
    the traced Symbol() call ran the detail hook, which registered its code
    object in the same table: the thread waited for itself forever."""
    d = tmp_path / "s"
    r = run_py(f"""
        import atf2
        with atf2.trace_session({str(d)!r}, flush_interval=0.005, detail="always", trace_python=True):
            def g(x, y=3):
                return x * y
            for i in range(20):
                g(i)
            atf2.emit("manual", 1, detail=b"raw")
            atf2.emit("manual", 2)
        print("done")
    """, timeout=90)
    assert r.returncode == 0 and "done" in r.stdout, r.stderr[-3000:]
    with SessionReader(d) as reader:
        names = [reader.symbol_name(f) for f in reader.merged()["function_id"]]
        assert names.count("manual") == 2 and sum(n.split(".")[-1] == "g" for n in names) == 40


def test_stop_from_another_thread_while_traced_threads_run(tmp_path):
    """The tracer's hooks in running threads: stats polled and stop called from
    two other threads; every recorded event is written, and each traced
    thread sees its profile hook removed."""
    pytest.importorskip("atf2.tracer")

    def f(x):
        return x + 1

    running = threading.Event()
    finish = threading.Event()
    hooks_after = []

    def loop():
        n = 0
        running.set()
        while not finish.is_set():
            f(n)
            n += 1
        hooks_after.append(sys.getprofile())

    s = atf2.trace_session_start(tmp_path / "s", trace_python=True, flush_interval=0.005)
    ts = [threading.Thread(target=loop) for _ in range(3)]
    for t in ts:
        t.start()
    running.wait(30)
    time.sleep(0.3)
    polled, result = [], []
    poller = threading.Thread(target=lambda: [polled.append(s.get_stats().index.recorded) for _ in range(30)])
    stopper = threading.Thread(target=lambda: result.append(s.stop()))
    poller.start()
    stopper.start()
    stopper.join(60)
    poller.join(60)
    time.sleep(0.05)  # the loops run on, untraced
    finish.set()
    for t in ts:
        t.join(30)
    final = result[0]
    assert final.status == "complete" and final.index.recorded > 0
    # (tight loops can outrun a drain on a loaded machine: drops, but counted)
    assert final.index.written + final.index.dropped == final.index.recorded and final.index.written > 0
    assert polled == sorted(polled)  # monotone while the producers ran
    assert hooks_after == [None, None, None] and sys.getprofile() is None
    with SessionReader(tmp_path / "s") as r:
        assert not r.recovered and r.event_count() == final.index.written
        names = {r.symbol_name(fid).split(".")[-1] for fid in set(r.merged()["function_id"].tolist())}
        assert "f" in names
    assert atf2.verify_session(tmp_path / "s") == []
