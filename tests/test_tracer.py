"""The Python tracer (atf2.tracer + the @cfunc hook): what it records, and what it leaves alone."""

from __future__ import annotations

import os
import sys
import threading
import traceback
from collections import Counter

import numpy as np
import pytest

from atf2 import tracer
from atf2.errors import AtfV2Error
from atf2.layout import CLOCK_BOOTTIME, EVENT_CALL, EVENT_EXCEPTION, EVENT_RETURN
from atf2.reader.session import SessionReader
from atf2.session import trace_session_start, trace_session_stop


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def inner_raise():
    raise ValueError("boom")


def middle_raise():
    inner_raise()


def catcher():
    try:
        middle_raise()
    except ValueError:
        return "caught"


def gen(n):
    for i in range(n):  # noqa: UP028 - a generator frame that yields itself (yield from would delegate)
        yield i


def run_traced(tmp_path, body, c_calls=False):
    """Run ``body()`` inside a traced session; returns (SessionReader, body's result)."""
    session_dir = tmp_path / "s"
    if c_calls:
        session = trace_session_start(session_dir, trace_python=False)
        tracer.start_tracing(session, c_calls=True)
    else:
        trace_session_start(session_dir, trace_python=True)
    try:
        result = body()
    finally:
        if c_calls:
            tracer.stop_tracing()
        stats = trace_session_stop()
    assert stats.index.dropped == 0
    return SessionReader(session_dir), result


def thread_events(reader, thread):
    """[(kind, depth, qualname)] of one ThreadReader."""
    ev = thread.index.events
    return [
        (int(k), int(d), reader.symbol_name(f))
        for k, d, f in zip(ev["event_kind"], ev["call_depth"], ev["function_id"], strict=True)
    ]


def main_thread(reader):
    return next(t for t in reader.threads if reader.manifest["threads"][reader.threads.index(t)].get("name") == "MainThread")


def calls(events, name):
    return [e for e in events if e[2] == name and e[0] == EVENT_CALL]


def test_calls_returns_depths_and_symbols(tmp_path):
    reader, result = run_traced(tmp_path, lambda: fib(12))
    assert result == 144
    events = thread_events(reader, main_thread(reader))
    fib_events = [e for e in events if e[2] == "fib"]
    assert sum(1 for e in fib_events if e[0] == EVENT_CALL) == 465  # calls of fib(12)
    assert sum(1 for e in fib_events if e[0] == EVENT_RETURN) == 465
    # depth: fib(12) recursion is 12 frames deep above the first fib
    depths = [e[1] for e in fib_events]
    assert max(depths) - min(depths) == 11
    # every RETURN closes the CALL at the same depth (stack discipline)
    stack = []
    for kind, depth, _name in fib_events:
        if kind == EVENT_CALL:
            assert not stack or depth == stack[-1] + 1
            stack.append(depth)
        else:
            assert stack.pop() == depth
    assert not stack
    fid = int(main_thread(reader).index.events["function_id"][[e[2] == "fib" for e in events]][0])
    sym = reader.symbol(fid)
    assert (sym.name, sym.qualname, sym.module, sym.file, sym.line) == (
        "fib",
        "fib",
        __name__,
        fib.__code__.co_filename,
        fib.__code__.co_firstlineno,
    )
    assert reader.clock_type == CLOCK_BOOTTIME
    ts = main_thread(reader).index.events["timestamp_ns"]
    assert np.all(np.diff(ts.astype(np.int64)) >= 0)


def test_exception_exits_are_exception_events(tmp_path):
    reader, result = run_traced(tmp_path, catcher)
    assert result == "caught"
    events = thread_events(reader, main_thread(reader))
    seq = [e for e in events if e[2] in ("catcher", "middle_raise", "inner_raise")]
    d = seq[0][1]
    left = EVENT_EXCEPTION  # 3.12 too, though it says `return None` (tests/test_exception_exits.py)
    assert seq == [
        (EVENT_CALL, d, "catcher"),
        (EVENT_CALL, d + 1, "middle_raise"),
        (EVENT_CALL, d + 2, "inner_raise"),
        (left, d + 2, "inner_raise"),
        (left, d + 1, "middle_raise"),
        (EVENT_RETURN, d, "catcher"),
    ]


def test_generators_resume_and_suspend(tmp_path):
    def body():
        g = gen(3)
        out = [next(g), next(g)]
        g.close()  # resumed with GeneratorExit: leaves by exception
        return out + list(gen(2))

    reader, result = run_traced(tmp_path, body)
    assert result == [0, 1, 0, 1]
    events = [e for e in thread_events(reader, main_thread(reader)) if e[2] == "gen"]
    kinds = [e[0] for e in events]
    # first generator: 2 resumes + close; second: 3 resumes (0, 1, StopIteration).
    # CPython 3.13+ closes a generator suspended outside any try block without
    # running its frame (gen_close's fast path): no events for that close there
    # (a close through a finally is an exception exit everywhere: test_exception_exits)
    closed = [EVENT_CALL, EVENT_EXCEPTION] if sys.version_info < (3, 13) else []
    assert kinds == [1, 2, 1, 2, *closed, 1, 2, 1, 2, 1, 2]
    depths = {e[1] for e in events}
    assert len(depths) == 1  # always resumed from the same caller depth


def test_threads_new_and_already_running(tmp_path):
    go = threading.Event()
    ready = threading.Event()

    def waiting_worker():
        ready.set()
        go.wait()
        fib(8)

    early = threading.Thread(target=waiting_worker, name="early")
    early.start()
    ready.wait()

    def body():
        late = [threading.Thread(target=fib, args=(9,), name=f"late{i}") for i in range(3)]
        for t in late:
            t.start()
        go.set()
        for t in late:
            t.join()
        early.join()

    reader, _ = run_traced(tmp_path, body)
    names = [t["name"] for t in reader.manifest["threads"]]
    assert sorted(names) == ["MainThread", "early", "late0", "late1", "late2"]
    for info, thread in zip(reader.manifest["threads"], reader.threads, strict=True):
        events = thread_events(reader, thread)
        fib_calls = calls(events, "fib")
        if info["name"] == "MainThread":
            assert not fib_calls
            continue
        expected = 67 if info["name"] == "early" else 109  # calls of fib(8) / fib(9)
        assert len(fib_calls) == expected
        # real stack depth: _bootstrap, _bootstrap_inner, run, then the target
        top = min(e[1] for e in fib_calls)
        assert top == (4 if info["name"] == "early" else 3)
        assert all(e[1] >= 0 for e in events)


def test_a_thread_ends_at_its_bootstrap_and_its_teardown_is_not_recorded(tmp_path):
    """A threading thread's last event is the RETURN of Thread._bootstrap at
    depth 0: what runs after it (thread-local destructors, among them the
    session's exit bookkeeping) is not the program's and is not recorded."""

    def body():
        workers = [threading.Thread(target=fib, args=(5,), name=f"w{i}") for i in range(2)]
        for t in workers:
            t.start()
        for t in workers:
            t.join()

    reader, _ = run_traced(tmp_path, body)
    workers = [t for t, info in zip(reader.threads, reader.manifest["threads"], strict=True) if info["name"] != "MainThread"]
    assert len(workers) == 2
    for thread in workers:
        events = thread_events(reader, thread)
        assert events[-1] == (EVENT_RETURN, 0, "Thread._bootstrap")
        assert len(calls(events, "fib")) == 15
    atf2_dir = os.path.dirname(tracer.__file__) + os.sep
    files = {reader.symbol(int(f)).file or "" for t in workers for f in t.index.events["function_id"]}
    assert not [f for f in files if f.startswith(atf2_dir)]


def test_functions_made_in_a_loop_keep_distinct_ids(tmp_path):
    """exec'd functions die right after their call: their addresses may be reused."""

    def body():
        out = []
        for i in range(3000):  # also grows the code table past its first capacity
            ns = {}
            exec(f"def made_{i}(x):\n    return x + {i}\n", ns)
            out.append(ns[f"made_{i}"](1))
            del ns
        return out

    reader, out = run_traced(tmp_path, body)
    assert out == [1 + i for i in range(3000)]
    counts = Counter(e[2] for e in thread_events(reader, main_thread(reader)) if e[0] == EVENT_CALL)
    for i in range(3000):
        assert counts[f"made_{i}"] == 1


def test_c_calls_are_optional(tmp_path):
    def body():
        lst = []
        for _ in range(5):
            lst.append(len("abc"))  # noqa: PERF401 - the C calls append and len are the point
        return sorted(lst)

    reader, _ = run_traced(tmp_path, body)
    assert not calls(thread_events(reader, main_thread(reader)), "len")
    reader, _ = run_traced(tmp_path / "c", body, c_calls=True)
    events = thread_events(reader, main_thread(reader))
    assert len(calls(events, "len")) == 5
    assert len(calls(events, "list.append")) == 5
    assert len(calls(events, "sorted")) == 1
    sym = reader.symbol(int(main_thread(reader).index.events["function_id"][[e[2] == "len" for e in events]][0]))
    assert sym.module == "builtins"
    # a C function that raises is left by an exception
    reader, _ = run_traced(tmp_path / "c2", lambda: _swallow(lambda: len(5)), c_calls=True)
    events = thread_events(reader, main_thread(reader))
    assert [e[0] for e in events if e[2] == "len"] == [EVENT_CALL, EVENT_EXCEPTION]


def _swallow(fn):
    try:
        fn()
    except Exception:  # noqa: BLE001 - traced code that swallows its own exception
        pass


def test_program_behaviour_and_profilers_unchanged(tmp_path):
    seen = []

    def python_profiler(frame, event, arg):
        seen.append(event)

    def failing():
        return [1, 2, 3][10]  # noqa: PLE0643 - the IndexError is the point

    def body():
        try:
            failing()
        except IndexError as exc:
            return "".join(traceback.format_exception(exc))

    untraced = body()
    sys.setprofile(python_profiler)
    threading.setprofile(python_profiler)
    try:
        _reader, traced = run_traced(tmp_path, body)
        assert sys.getprofile() is python_profiler
        assert threading.getprofile() is python_profiler
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    assert traced == untraced  # same exception, same traceback text
    assert sys.getprofile() is None
    assert not tracer.tracing_active()


def test_start_twice_is_an_error(tmp_path):
    session = trace_session_start(tmp_path / "s", trace_python=True)
    try:
        with pytest.raises(AtfV2Error):
            tracer.start_tracing(session)
    finally:
        trace_session_stop()
    assert sys.getprofile() is None
