"""detail="off" | "always" | "flight": links both ways, persisted details exactly inside windows."""

from __future__ import annotations

import fnmatch

import numpy as np
import pytest

import atf2
from atf2.detail import mark
from atf2.flight import FlightOptions, Roll
from atf2.layout import EVENT_CALL, EVENT_EXCEPTION, EVENT_RETURN, NO_DETAIL
from atf2.reader import SessionReader
from atf2.session import trace_session_start, trace_session_stop


def work(a, b=2):
    return helper(a) + b


def helper(x):
    return x * 2


def target(tag):
    return tag


def failing(msg):
    raise ValueError(msg)


def run_program(n=30, target_at=(), fail_at=(), mark_at=()):
    for i in range(n):
        work(i)
        if i in target_at:
            target(f"t{i}")
        if i in fail_at:
            try:
                failing("bad")
            except ValueError:
                pass
        if i in mark_at:
            mark(f"m{i}")


def record(tmp_path, name, detail, program, **options):
    path = tmp_path / name
    trace_session_start(path, detail=detail, trace_python=options.pop("trace_python", True), **options)
    try:
        program()
    finally:
        stats = trace_session_stop()
    return path, stats


def check_links(thread):
    """Every detail_seq names a detail whose index_seq names the event back, and vice versa."""
    events = thread.index.read_all() if hasattr(thread.index, "read_all") else np.array([tuple(thread.index[i]) for i in range(len(thread.index))])
    seqs = [int(thread.index[i].detail_seq) for i in range(len(thread.index))]
    linked = [i for i, s in enumerate(seqs) if s != NO_DETAIL]
    if thread.detail is None:
        assert linked == []
        return linked
    assert [seqs[i] for i in linked] == list(range(len(thread.detail)))  # compact, in order
    for i in linked:
        d = thread.detail[seqs[i]]
        assert d.index_seq == i and d.timestamp == thread.index[i].timestamp_ns
    del events
    return linked


def names(reader, thread):
    return [reader.symbol_name(thread.index[i].function_id) for i in range(len(thread.index))]


def test_off_has_no_detail_lane(tmp_path):
    path, _stats = record(tmp_path, "off", "off", lambda: run_program(5))
    with SessionReader(path) as r:
        t = r.thread(0)
        assert t.detail is None and not (path / "thread_0" / "detail.atf").exists()
        assert all(int(t.index[i].detail_seq) == NO_DETAIL for i in range(len(t.index)))
        assert "detail_payload_version" not in r.manifest


def test_always_every_python_event_has_its_detail(tmp_path):
    path, stats = record(tmp_path, "always", "always", lambda: run_program(5, fail_at=(2,)))
    with SessionReader(path) as r:
        assert r.manifest["detail_payload_version"] == 1
        t = r.thread(0)
        linked = check_links(t)
        assert linked == list(range(len(t.index)))
        fn = names(r, t)
        calls = [i for i, n in enumerate(fn) if n == "work" and t.index[i].event_kind == EVENT_CALL]
        assert [t.get_detail_for(t.index[i]).args for i in calls] == [[("a", k), ("b", 2)] for k in range(5)]
        rets = [i for i, n in enumerate(fn) if n == "helper" and t.index[i].event_kind == EVENT_RETURN]
        assert [t.get_detail_for(t.index[i]).return_value for i in rets] == [2 * k for k in range(5)]
        # the caller stack of helper: work, then the program
        d = t.get_detail_for(t.index[rets[0]])
        assert [r.symbol_name(f) for f in d.stack[:2]] == ["work", "run_program"]
        exc = [i for i, n in enumerate(fn) if n == "failing" and t.index[i].event_kind == EVENT_EXCEPTION]
        assert len(exc) == 1 and t.get_detail_for(t.index[exc[0]]).exception is not None
    assert stats.threads[0].detail.recorded == stats.threads[0].detail.written


def expected_positions(kinds, fn, triggers, pre, post):
    n = len(kinds)
    want = set()
    for p in triggers:
        want.update(range(max(0, p - pre), min(n, p + 1 + post)))
    return sorted(want)


def test_flight_without_trigger_writes_no_detail_file(tmp_path):
    flight = FlightOptions.from_triggers(["symbol=target", "exception"], 5, 5)
    path, stats = record(tmp_path, "quiet", "flight", lambda: run_program(20), flight=flight)
    with SessionReader(path) as r:
        t = r.thread(0)
        assert t.detail is None and not (path / "thread_0" / "detail.atf").exists()
        assert all(int(t.index[i].detail_seq) == NO_DETAIL for i in range(len(t.index)))
        assert r.manifest["windows"] == []
    d = stats.threads[0].detail
    assert d.written == 0 and d.drops["outside_window"] == d.recorded > 0


@pytest.mark.parametrize("pre,post", [(3, 4), (0, 0), (40, 2)])
def test_flight_symbol_trigger_persists_exactly_the_windows(tmp_path, pre, post):
    flight = FlightOptions.from_triggers(["symbol=targ*"], pre, post)
    path, stats = record(tmp_path, f"sym{pre}", "flight", lambda: run_program(30, target_at=(5, 6, 20)), flight=flight)
    with SessionReader(path) as r:
        t = r.thread(0)
        fn = names(r, t)
        kinds = [int(t.index[i].event_kind) for i in range(len(t.index))]
        triggers = [i for i, (n, k) in enumerate(zip(fn, kinds, strict=True)) if k == EVENT_CALL and fnmatch.fnmatchcase(n, "targ*")]
        assert len(triggers) == 3
        assert check_links(t) == expected_positions(kinds, fn, triggers, pre, post)
        windows = r.manifest["windows"]
        assert all(w["trigger_kinds"] == ["symbol"] for w in windows)
        assert sum(w["triggers"] for w in windows) == 3
        for w in windows:
            assert w["thread_id"] == 0 and w["start_ns"] == t.index[w["start_index_seq"]].timestamp_ns
            assert w["end_ns"] == t.index[w["end_index_seq"]].timestamp_ns
        # the target's own CALL detail is there, with its argument
        d = t.get_detail_for(t.index[triggers[0]])
        assert d.args == [("tag", "t5")]
    d = stats.threads[0].detail
    assert d.recorded == d.written + d.dropped


def test_flight_exception_and_mark_triggers(tmp_path):
    flight = FlightOptions.from_triggers(["exception"], 2, 2)
    path, _ = record(tmp_path, "exc", "flight", lambda: run_program(30, fail_at=(4,), mark_at=(15,)), flight=flight)
    with SessionReader(path) as r:
        t = r.thread(0)
        fn = names(r, t)
        kinds = [int(t.index[i].event_kind) for i in range(len(t.index))]
        exc = [i for i, k in enumerate(kinds) if k == EVENT_EXCEPTION]
        marks = [i for i, (n, k) in enumerate(zip(fn, kinds, strict=True)) if n == "mark" and k == EVENT_CALL]
        assert len(exc) == 1 and len(marks) == 1
        assert check_links(t) == expected_positions(kinds, fn, exc + marks, 2, 2)
        kinds_seen = [w["trigger_kinds"] for w in r.manifest["windows"]]
        assert kinds_seen == [["exception"], ["mark"]]
        assert r.manifest["windows"][1]["marks"] == ["m15"]


def test_flight_post_roll_cut_short_by_stop(tmp_path):
    flight = FlightOptions.from_triggers(["symbol=target"], 1, 10_000)

    def program():
        run_program(3)
        target("last")

    path, _ = record(tmp_path, "cut", "flight", program, flight=flight)
    with SessionReader(path) as r:
        (w,) = r.manifest["windows"]
        assert w["post_roll_cut"] and w["post_roll_events"] < 10_000
        t = r.thread(0)
        assert w["end_index_seq"] == len(t.index) - 1
        linked = check_links(t)
        assert linked == list(range(w["start_index_seq"], len(t.index)))


def test_flight_with_emit_only_session_and_marks(tmp_path):
    """Without Python tracing: emit() events, atf2.mark() emits its own marker pair."""
    flight = FlightOptions(Roll(2), Roll(1))

    def program():
        for i in range(20):
            atf2.emit("step", EVENT_CALL)
            atf2.emit("step", EVENT_RETURN)
            if i == 10:
                mark("checkpoint")

    path, _ = record(tmp_path, "emit", "flight", program, flight=flight, trace_python=False)
    with SessionReader(path) as r:
        t = r.thread(0)
        fn = names(r, t)
        p = fn.index("mark")
        assert check_links(t) == [p] and r.manifest["windows"][0]["marks"] == ["checkpoint"]
        assert t.detail[0].args == [("reason", "checkpoint")]
        # emitted events carry no capture, so only the marker has a detail


def test_flight_pre_roll_clipped_to_what_is_held(tmp_path):
    flight = FlightOptions.from_triggers(["symbol=target"], 100_000, 0)
    path, _ = record(tmp_path, "clip", "flight", lambda: run_program(300, target_at=(290,)), flight=flight,
                     detail_ring_bytes=4096, detail_spare_rings=1)
    with SessionReader(path) as r:
        (w,) = r.manifest["windows"]
        # how much is still held depends on when the drain ran: anything from 0 up
        assert w["pre_roll_clipped"] and w["pre_roll_events"] < 100_000
        t = r.thread(0)
        linked = check_links(t)
        assert linked == list(range(w["start_index_seq"], w["end_index_seq"] + 1))


class _FakeWriter:
    """Collects what a FlightWriter passes on."""

    def __init__(self):
        self.events = []
        self.details = []  # (index_seq, payload bytes)
        self.n = 0

    def write_events(self, events, details=None):
        from atf2.writer import _normalize_details

        d = _normalize_details(details, events)
        if d is not None:
            for k, p in enumerate(d.positions.tolist()):
                self.details.append((self.n + p, d.payload[d.offsets[k]: d.offsets[k + 1]].tobytes()))
        self.events.append(events.copy())
        self.n += len(events)

    def finalize(self):
        return {}

    def close(self):
        pass


@pytest.mark.parametrize("seed", range(6))
def test_flight_writer_in_batches_matches_the_whole_run(seed):
    from atf2.flight import compute_windows, find_triggers, window_mask
    from atf2.flight_writer import FlightWriter
    from atf2.layout import INDEX_EVENT_DTYPE
    from atf2.writer import DetailBatch

    rng = np.random.default_rng(seed)
    n = 400
    ev = np.zeros(n, dtype=INDEX_EVENT_DTYPE)
    ev["timestamp_ns"] = np.cumsum(rng.integers(1, 50, n))
    ev["event_kind"] = rng.choice([EVENT_CALL, EVENT_RETURN, EVENT_EXCEPTION], n, p=[0.5, 0.47, 0.03])
    ev["function_id"] = rng.integers(0, 40, n)
    payloads = [bytes(rng.integers(0, 256, rng.integers(1, 40)).astype(np.uint8)) for _ in range(n)]
    options = FlightOptions(Roll(int(rng.integers(0, 30))), Roll(int(rng.integers(0, 30))), ("f7",), True)
    fake = _FakeWriter()
    fw = FlightWriter(fake, None, 0, options, lambda fid: fid == 7, set(), hold_bytes=1 << 30)
    cuts = np.sort(rng.choice(np.arange(1, n), 8, replace=False))
    for a, b in zip(np.r_[0, cuts], np.r_[cuts, n], strict=True):
        fw.write_events(ev[a:b], DetailBatch.from_payloads(payloads[a:b]))
    fw.close()
    assert np.array_equal(np.concatenate(fake.events), ev)
    tr = find_triggers(0, ev["function_id"], ev["event_kind"], ev["timestamp_ns"], [7], True)
    w = compute_windows(tr, ev["timestamp_ns"], 0, options, held_from=0, final=True)
    want = np.flatnonzero(window_mask(np.arange(n), w)).tolist()
    assert [p for p, _ in fake.details] == want
    assert all(payload == payloads[p] for p, payload in fake.details)
    assert len(fw.windows) == len(w) and [x["start_index_seq"] for x in fw.windows] == w.start.tolist()


class BadStr(Exception):
    def __str__(self):
        raise RuntimeError("no str")


def raise_deep(n, exc):
    if n == 0:
        raise exc
    return raise_deep(n - 1, exc)


def caught_then_raised():
    try:
        raise KeyError("caught here")
    except KeyError:
        pass
    raise TypeError("raised later")


def exception_program():
    for exc in (ValueError("bad"), BadStr()):
        try:
            raise_deep(2, exc)
        except Exception:  # noqa: BLE001 - the traced program swallows what it raised
            pass
    try:
        caught_then_raised()
    except TypeError:
        pass


def exception_details(reader, thread):
    out = []
    for i in range(len(thread.index)):
        ev = thread.index[i]
        if ev.event_kind == EVENT_EXCEPTION and ev.detail_seq != NO_DETAIL:
            out.append((reader.symbol_name(ev.function_id), thread.get_detail_for(ev).exception))
    return out


# no_cover: the detail lane catches exceptions through a trace function it installs
# only where the program has none (detail.py); coverage's tracer would be that one.
@pytest.mark.no_cover
def test_always_exceptions_have_type_and_message_in_every_frame_they_leave(tmp_path):
    path, _ = record(tmp_path, "exc", "always", exception_program)
    with SessionReader(path) as r:
        t = r.thread(0)
        check_links(t)
        got = exception_details(r, t)
        bad_str = f"{__name__}.BadStr"
        assert got == [("raise_deep", ("ValueError", "bad"))] * 3 + [
            ("raise_deep", (bad_str, "<str() raised RuntimeError>"))
        ] * 3 + [("caught_then_raised", ("TypeError", "raised later"))]


# no_cover: the detail lane catches exceptions through a trace function it installs
# only where the program has none (detail.py); coverage's tracer would be that one.
@pytest.mark.no_cover
def test_flight_exception_window_holds_the_exception(tmp_path):
    flight = FlightOptions.from_triggers(["exception"], 1, 1)
    path, _ = record(tmp_path, "fexc", "flight", lambda: run_program(10, fail_at=(3,)), flight=flight)
    with SessionReader(path) as r:
        t = r.thread(0)
        check_links(t)
        assert exception_details(r, t) == [("failing", ("ValueError", "bad"))]


# no_cover: the detail lane catches exceptions through a trace function it installs
# only where the program has none (detail.py); coverage's tracer would be that one.
@pytest.mark.no_cover
def test_trace_function_of_the_program_is_left_alone_and_ours_is_removed(tmp_path):
    import sys
    import threading

    assert sys.gettrace() is None
    path, _ = record(tmp_path, "own", "always", lambda: run_program(3, fail_at=(1,)))
    assert sys.gettrace() is None  # ours removed itself once the session stopped
    seen = []

    def tracer(frame, event, arg):
        seen.append(event)
        return None

    sys.settrace(tracer)
    try:
        path, _ = record(tmp_path, "foreign", "always", lambda: run_program(3, fail_at=(1,)))
        assert sys.gettrace() is tracer
    finally:
        sys.settrace(None)
    assert "call" in seen
    with SessionReader(path) as r:
        # the program's trace function kept its place: the exception is not visible to us
        assert exception_details(r, r.thread(0)) == [("failing", ("<unavailable>", ""))]
    del threading


def test_thread_running_before_start_has_detail_from_its_first_event(tmp_path):
    import threading
    import time

    go, started = threading.Event(), threading.Event()

    def loop():
        started.set()
        while not go.is_set():
            time.sleep(0.001)
        for i in range(3):
            work(i)

    th = threading.Thread(target=loop)
    th.start()
    started.wait()

    def program():
        go.set()
        th.join()

    path, _ = record(tmp_path, "adopted", "always", program)
    with SessionReader(path) as r:
        (t,) = [r.thread(i) for i in range(len(r.manifest["threads"])) if r.thread(i).index is not None and i != 0]
        assert len(t.index) > 0
        assert check_links(t) == list(range(len(t.index)))  # the adopting event included
        assert "work" in names(r, t)


def test_default_mode_is_off_no_detail_lane_no_detail_files(tmp_path):
    path = tmp_path / "default"
    with atf2.trace_session(path, trace_python=True) as s:
        run_program(3, fail_at=(1,))
        (ch,) = s.channels()
        assert s.detail_mode == "off" and s.detail_capture is None and not ch.has_detail_lane
        assert ch.detail_words.size == 0  # no arena allocated
    with SessionReader(path) as r:
        assert r.manifest["options"]["detail_mode"] == "off" and "detail_payload_version" not in r.manifest
        assert not list(path.glob("thread_*/detail.atf"))
        assert all(int(r.thread(0).index[i].detail_seq) == NO_DETAIL for i in range(len(r.thread(0).index)))


def test_emit_detail_in_off_mode_allocates_that_threads_lane_lazily(tmp_path):
    import threading

    path = tmp_path / "lazy"
    with atf2.trace_session(path) as s:
        atf2.emit("plain", EVENT_CALL)

        def other():
            atf2.emit("other", EVENT_CALL)
            atf2.emit("other", EVENT_RETURN)

        th = threading.Thread(target=other)
        th.start()
        th.join()
        (mine,) = [ch for ch in s.channels() if ch.thread_id == 0]
        assert not mine.has_detail_lane
        atf2.emit("plain", EVENT_RETURN, detail=b"first detail")
        assert mine.has_detail_lane
        atf2.emit_batch(["plain", "plain"], [EVENT_CALL, EVENT_RETURN], details=[None, b"batch"])
    with SessionReader(path) as r:
        t0 = r.thread(0)
        assert [int(t0.index[i].detail_seq) for i in range(4)] == [NO_DETAIL, 0, NO_DETAIL, 1]
        assert t0.detail.get(0).payload == b"first detail" and t0.detail.get(1).payload == b"batch"
        assert check_links(t0) == [1, 3]
        assert r.thread(1).detail is None and not (path / "thread_1" / "detail.atf").exists()
    with atf2.trace_session(tmp_path / "strict", detail=False), pytest.raises(atf2.AtfV2Error, match="detail=False"):
        atf2.emit("plain", EVENT_CALL, detail=b"x")


MP_PROGRAM = """
import multiprocessing as mp, sys

def square(x):
    return x * x

if __name__ == "__main__":
    p = mp.get_context(sys.argv[1]).Process(target=square, args=(3,))
    p.start()
    p.join()
    print("child exit", p.exitcode)
"""


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_record_children_use_the_same_detail_options(tmp_path, method):
    import subprocess
    import sys

    (tmp_path / "mp_prog.py").write_text(MP_PROGRAM)
    parent = tmp_path / "rec" / "pid_parent"
    rec = subprocess.run(
        [sys.executable, "-m", "atf2", "record", "-q", "--detail", "flight", "--trigger", "symbol=square",
         "--pre-roll", "2", "--post-roll", "2", "-o", str(parent), "mp_prog.py", method],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )
    assert rec.returncode == 0 and rec.stdout == "child exit 0\n", rec.stderr
    (child,) = [p for p in (tmp_path / "rec").iterdir() if p.name != "pid_parent"]
    with SessionReader(child) as r:
        assert r.manifest["options"]["detail_mode"] == "flight"
        (w,) = r.manifest["windows"]
        assert w["trigger_kinds"] == ["symbol"]
        t = r.thread(w["thread_id"])
        calls = [t.get_detail_for(t.index[i]) for i in range(len(t.index))
                 if t.index[i].event_kind == EVENT_CALL and r.symbol_name(t.index[i].function_id).endswith("square")]
        assert [d.args for d in calls] == [[("x", 3)]]


class Hang:
    def __repr__(self):
        while True:
            pass


def takes(value):
    return 1


def test_a_repr_that_never_returns_is_interrupted_and_its_type_skipped(tmp_path):
    from atf2.payload import PayloadOptions

    def program():
        for _ in range(2):
            assert takes(Hang()) == 1
        total = sum(range(1000))  # the program goes on; no ReprTimeout leaks into it
        assert total == 499500

    path, _ = record(tmp_path, "hang", "always", program, payload_options=PayloadOptions(repr_timeout_ns=50_000_000))
    with SessionReader(path) as r:
        t = r.thread(0)
        values = [t.get_detail_for(t.index[i]).args[0][1] for i in range(len(t.index))
                  if r.symbol_name(t.index[i].function_id) == "takes" and t.index[i].event_kind == EVENT_CALL]
        assert [(v.type_name, v.status, v.text) for v in values] == [(f"{__name__}.Hang", "repr_skipped", "slow repr")] * 2


# no_cover: the detail lane catches exceptions through a trace function it installs
# only where the program has none (detail.py); coverage's tracer would be that one.
@pytest.mark.no_cover
def test_threads_started_during_the_session_record_exceptions_too(tmp_path):
    import threading

    def worker():
        try:
            failing("from a thread")
        except ValueError:
            pass

    def program():
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()

    path, _ = record(tmp_path, "threads", "always", program)
    with SessionReader(path) as r:
        got = []
        for i in range(1, len(r.manifest["threads"])):
            t = r.thread(i)
            check_links(t)
            got += exception_details(r, t)
        assert got == [("failing", ("ValueError", "from a thread"))] * 2
