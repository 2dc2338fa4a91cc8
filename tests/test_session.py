"""Session lifecycle, explicit events end to end, details, faults, fork, exit."""

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types

import numpy as np
import pytest
from conftest import env_without_coverage

import atf2
import atf2.session as session_mod
from atf2 import layout as L
from atf2.errors import AtfV2Error, SessionStateError
from atf2.reader import SessionReader

BOOT = getattr(time, "CLOCK_BOOTTIME", 7)


def manifest(d):
    with open(os.path.join(d, "manifest.json")) as f:
        return json.load(f)


def wait_until(cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting for the drain"
        time.sleep(0.002)


def run_py(code, timeout=120, measured=True):
    """Run ``code`` in a fresh interpreter; ``measured=False`` for one that is SIGKILLed (env_without_coverage)."""
    env = None if measured else env_without_coverage()
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_end_to_end_every_field(tmp_path):
    d = tmp_path / "s"
    before = time.clock_gettime_ns(BOOT)
    with atf2.trace_session(d) as s:
        assert manifest(d)["status"] == "recording"
        f = s.symbols.register("f", "mod.f", module="mod", file="mod.py", line=10)
        atf2.emit(f, L.EVENT_CALL, depth=1)
        atf2.emit("g", L.EVENT_CALL, detail=b"args", depth=2)
        atf2.emit("g", L.EVENT_EXCEPTION, detail=b"", depth=2)
        atf2.emit(f, L.EVENT_RETURN, depth=1)
    after = time.clock_gettime_ns(BOOT)
    st = atf2.trace_session_get_stats()
    assert st.status == "complete" and st.events_recorded == st.events_written == 4 and st.events_dropped == 0
    assert st.detail.written == 2 and st.detail.bytes_written == 4
    g = s.symbols.register("g")
    m = manifest(d)
    assert m["status"] == "complete" and m["clock_type"] == L.CLOCK_BOOTTIME and "anchors" in m["clock"]
    assert m["threads"][0]["index_events"] == 4 and m["threads"][0]["detail_events"] == 2
    want = {"function_id": f, "module_id": 0, "name": "f", "qualname": "mod.f", "file": "mod.py", "line": 10}
    assert any(want.items() <= sym.items() for sym in m["symbols"])
    assert {"id": 0, "name": "mod", "path": "mod.py"} in m["modules"]
    r = SessionReader(d)
    try:
        t = r.thread(0)
        ev = t.index.events
        assert ev["function_id"].tolist() == [f, g, g, f]
        assert ev["event_kind"].tolist() == [1, 1, 3, 2]
        assert ev["call_depth"].tolist() == [1, 2, 2, 1]
        assert (ev["thread_id"] == 0).all()
        assert ev["detail_seq"].tolist() == [L.NO_DETAIL, 0, 1, L.NO_DETAIL]
        ts = ev["timestamp_ns"].astype(np.int64)
        assert (np.diff(ts) >= 0).all() and before - 1_000_000 <= ts[0] and ts[-1] <= after + 1_000_000
        assert m["time_start_ns"] == ts[0] and m["time_end_ns"] == ts[-1]
        d0, d1 = t.get_detail_for(t.index[1]), t.get_detail_for(t.index[2])
        assert (d0.payload, d0.event_type, d0.index_seq, d0.timestamp) == (b"args", L.DETAIL_FUNCTION_CALL, 1, ts[1])
        assert (d1.payload, d1.event_type, d1.index_seq) == (b"", L.DETAIL_FUNCTION_RETURN, 2)
        assert t.get_index_for(d0)[1] == g  # round trip index -> detail -> index
        t.verify()
    finally:
        r.close()


def test_emit_batch_explicit_timestamps_and_details(tmp_path):
    with atf2.trace_session(tmp_path / "s") as s:
        ids = [s.symbols.register(n) for n in ("a", "b")]
        now = time.clock_gettime_ns(BOOT)
        ts = np.array([now, now + 5, now + 5, now + 100], np.uint64)
        atf2.emit_batch([ids[0], ids[1], ids[1], ids[0]], [1, 1, 2, 2], depths=[0, 1, 1, 0], timestamps_ns=ts,
                        details=[None, b"xy", None, b"z"])
        with pytest.raises(AtfV2Error, match="non-decreasing"):
            atf2.emit_batch([ids[0]] * 2, [1, 2], timestamps_ns=[now + 10, now])
        atf2.emit_batch(["a", "b"], [1, 1], timestamps_ns=[now - 1000, now - 1000])  # older: clamped
    st = atf2.trace_session_get_stats()
    assert st.threads[0].timestamps_clamped == 2
    with SessionReader(tmp_path / "s") as r:
        ev = r.thread(0).index.events
        assert ev["timestamp_ns"].tolist() == [now, now + 5, now + 5, now + 100, now + 100, now + 100]
        assert ev["function_id"].tolist() == [ids[0], ids[1], ids[1], ids[0], ids[0], ids[1]]
        assert ev["call_depth"].tolist() == [0, 1, 1, 0, 0, 0]
        assert ev["detail_seq"].tolist()[:4] == [L.NO_DETAIL, 0, L.NO_DETAIL, 1]
        assert r.thread(0).detail.get(1).payload == b"z"


def test_emit_validation(tmp_path):
    with atf2.trace_session(tmp_path / "s", detail=False):
        with pytest.raises(AtfV2Error, match="kind"):
            atf2.emit("f", 9)
        with pytest.raises(AtfV2Error, match="not registered"):
            atf2.emit(12345, 1)
        with pytest.raises(AtfV2Error, match="detail=False"):
            atf2.emit("f", 1, detail=b"x")
        with pytest.raises(AtfV2Error, match="bytes-like"):
            atf2.emit("f", 1, detail="text")
        with pytest.raises(AtfV2Error, match="depth"):
            atf2.emit("f", 1, depth=-1)
        with pytest.raises(AtfV2Error):
            atf2.emit_batch([0, 0], [1])


def test_lifecycle_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(session_mod, "_LAST", None)
    with pytest.raises(SessionStateError):
        atf2.trace_session_stop()
    with pytest.raises(SessionStateError):
        atf2.trace_session_get_stats()
    with pytest.raises(SessionStateError):
        atf2.emit("f", 1)
    s = atf2.trace_session_start(tmp_path / "a")
    with pytest.raises(SessionStateError, match="already active"):
        atf2.trace_session_start(tmp_path / "b")
    atf2.emit("f", 1)
    first = atf2.trace_session_stop()
    assert atf2.trace_session_stop() is first and s.stop() is first  # idempotent
    assert atf2.trace_session_get_stats() is first
    with pytest.raises(SessionStateError):
        atf2.emit("f", 1)


def test_directory_checks(tmp_path):
    d = tmp_path / "s"
    with atf2.trace_session(d):
        atf2.emit("f", 1)
    with pytest.raises(AtfV2Error, match="not empty"):
        atf2.trace_session_start(d)
    (d / "notes.txt").write_text("keep me")
    with atf2.trace_session(d, overwrite=True):
        pass
    assert manifest(d)["threads"] == [] and (d / "notes.txt").exists() and not (d / "thread_0").exists()
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(AtfV2Error, match="not usable"):
        atf2.trace_session_start(blocker / "sub")
    assert session_mod.active_session() is None


def test_bad_options(tmp_path):
    for bad in ({"spare_rings": 0}, {"ring_capacity": 0}, {"flush_interval": 0}, {"detail_ring_bytes": 7}):
        with pytest.raises(AtfV2Error):
            atf2.trace_session_start(tmp_path / "s", **bad)
    assert not (tmp_path / "s").exists()


def test_stats_during_session(tmp_path):
    with atf2.trace_session(tmp_path / "s", flush_interval=0.005) as s:
        for _ in range(10):
            atf2.emit("f", 1)
        wait_until(lambda: s.get_stats().events_written >= 10)
        st = atf2.trace_session_get_stats()
        assert st.status == "recording" and st.events_written == 10 and st.drain_cycles > 0
        t = st.threads[0]
        assert t.state == "active" and t.index.watermark_state == "normal" and t.index.pending == 0
        assert t.index_file_bytes >= 64 + 32 * 10  # flushed while recording
        d = st.as_dict()
        assert d["events_written"] == 10 and d["threads"][0]["index"]["drops"]["pool_exhausted"] == 0
        # rewritten by the drain (at the end of the cycle) when the thread registered
        wait_until(lambda: manifest(s.session_dir)["threads"])
        m = manifest(s.session_dir)
        assert m["status"] == "recording" and [t["id"] for t in m["threads"]] == [0]


def test_drop_oldest_counts_in_session(tmp_path):
    with atf2.trace_session(tmp_path / "s", ring_capacity=64, spare_rings=1, ring_growth=1, flush_interval=5) as s:
        fid = s.symbols.register("f")
        atf2.emit_batch(np.full(1000, fid), np.ones(1000, np.uint32), depths=np.arange(1000))
    st = atf2.trace_session_get_stats()
    t = st.threads[0]
    assert t.index.recorded == 1000 and t.index.written + t.index.drops["pool_exhausted"] == 1000
    assert t.index.watermark_crossings >= 1 and t.index.high_water >= 64
    with SessionReader(tmp_path / "s") as r:
        depths = r.thread(0).index.events["call_depth"]
        assert depths.tolist() == list(range(1000 - len(depths), 1000))


def test_disk_error_is_counted_and_session_finalizes(tmp_path, monkeypatch):
    import atf2.writer as writer_mod

    real = writer_mod._pwritev
    failing = {"on": False}

    def pwritev(fd, buffers, offset):
        if failing["on"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, buffers, offset)

    monkeypatch.setattr(writer_mod, "_pwritev", pwritev)
    with atf2.trace_session(tmp_path / "s", flush_interval=0.005) as s:
        def written():
            return s.get_stats().events_written

        atf2.emit("f", 1)
        wait_until(lambda: written() >= 1)
        failing["on"] = True
        atf2.emit("f", 1, detail=b"lost")
        atf2.emit("f", 2)
        wait_until(lambda: s.get_stats().events_dropped >= 2)
        failing["on"] = False
        atf2.emit("f", 2)
    st = atf2.trace_session_get_stats()
    assert st.index.drops["disk_error"] == 2 and st.index.written == 2 and st.index.recorded == 4
    assert st.detail.drops["disk_error"] == 1
    assert st.errors and "No space left" in st.errors[0] and "No space left" in st.threads[0].error
    with SessionReader(tmp_path / "s") as r:
        assert r.thread(0).index.events["event_kind"].tolist() == [1, 2]
        r.thread(0).verify()
    assert manifest(tmp_path / "s")["threads"][0]["dropped"]["disk_error"] == 2


def test_sigxfsz_ignored_while_recording(tmp_path):
    before = signal.getsignal(signal.SIGXFSZ)
    with atf2.trace_session(tmp_path / "s"):
        assert signal.getsignal(signal.SIGXFSZ) == signal.SIG_IGN
    assert signal.getsignal(signal.SIGXFSZ) == before


def test_trace_python_calls_the_tracer_in_order(tmp_path, monkeypatch):
    calls = []
    fake = types.ModuleType("atf2.tracer")
    fake.start_tracing = lambda s: calls.append(("start", s.drain.alive))
    fake.stop_tracing = lambda: calls.append(("stop", session_mod.active_session().drain.alive))
    monkeypatch.setitem(sys.modules, "atf2.tracer", fake)
    monkeypatch.setattr(atf2, "tracer", fake, raising=False)
    with atf2.trace_session(tmp_path / "s", trace_python=True):
        pass
    assert calls == [("start", True), ("stop", True)]


def test_trace_python_without_tracer_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "atf2.tracer", None)
    monkeypatch.delattr(atf2, "tracer", raising=False)
    with pytest.raises(AtfV2Error, match=r"atf2\.tracer"):
        atf2.trace_session_start(tmp_path / "s", trace_python=True)
    assert session_mod.active_session() is None and not (tmp_path / "s").exists()


def test_stopped_at_interpreter_exit(tmp_path):
    d = tmp_path / "s"
    r = run_py(f"""
        import atf2
        atf2.trace_session_start({str(d)!r})
        for i in range(100):
            atf2.emit("f", 1 + i % 2, detail=b"d" if i % 10 == 0 else None)
    """)
    assert r.returncode == 0, r.stderr
    m = manifest(d)
    assert m["status"] == "complete" and m["threads"][0]["index_events"] == 100
    with SessionReader(d) as reader:
        assert reader.event_count() == 100 and reader.thread(0).detail_count() == 10
        reader.thread(0).verify()


def test_killed_process_keeps_what_was_flushed(tmp_path):
    d = tmp_path / "s"
    r = run_py(f"""
        import os, signal, time, atf2
        atf2.trace_session_start({str(d)!r}, flush_interval=0.01)
        for i in range(500):
            atf2.emit("f", 1)
        time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGKILL)
    """, measured=False)
    assert r.returncode == -signal.SIGKILL
    m = manifest(d)
    assert m["status"] == "recording" and m["threads"][0]["id"] == 0
    assert os.path.getsize(d / "thread_0" / "index.atf") >= 64 + 32 * 500
    with SessionReader(d) as reader:
        assert reader.recovered and reader.event_count() == 500


def test_fork_child_never_writes_parent_files(tmp_path):
    d = tmp_path / "s"
    with atf2.trace_session(d, flush_interval=0.005) as s:
        atf2.emit("parent", 1)
        # another registered thread alive at fork time: it does not exist in the child
        release = threading.Event()
        helper = threading.Thread(target=lambda: (atf2.emit("helper", 1), release.wait()))
        helper.start()
        wait_until(lambda: len(s.channels()) == 2)
        pid = os.fork()
        if pid == 0:  # child
            code = 0
            try:
                child = session_mod.active_session()
                code |= 0 if child.status == "disabled" else 1
                for _ in range(1000):
                    atf2.emit("child", 1)  # ignored
                code |= 0 if child.get_stats().status == "disabled" else 2
                atf2.trace_session_stop()
                with atf2.trace_session(str(d) + "-child"):  # a session of its own is fine
                    atf2.emit("child", 1)
            except BaseException:  # noqa: BLE001 - the forked child reports through its exit code
                code |= 4
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        release.set()
        helper.join()
        assert os.waitstatus_to_exitcode(status) == 0
        atf2.emit("parent", 2)
    with SessionReader(d) as r:
        assert r.event_count() == 3
        assert [r.symbol_name(f) for f in r.thread(0).index.events["function_id"]] == ["parent", "parent"]
        assert [r.symbol_name(f) for f in r.thread(1).index.events["function_id"]] == ["helper"]
    with SessionReader(str(d) + "-child") as r:
        assert r.event_count() == 1
    assert s.get_stats().status == "complete"
