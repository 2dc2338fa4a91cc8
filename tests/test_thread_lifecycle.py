"""Thread lifecycle costs: registration does only what the hook needs, the drain does the rest.

* registering a thread does no file I/O (audit hook, in a subprocess): the
  thread's directory and files are created by the drain thread, at its first
  cycle after the registration;
* ring pools of exited threads are recycled for the next ones (PoolCache);
* manifest rewrites while recording: at most one per drain cycle, none when
  nothing changed; closed threads' figures are computed once;
* a session killed while recording is still discoverable and readable.
"""

import json
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np

import atf2
import atf2.session as session_mod
from atf2 import layout as L
from atf2.reader import SessionReader
from atf2.rings import PoolCache, RingConfig, ThreadChannel

SMALL = dict(ring_capacity=1024, spare_rings=3, detail_ring_bytes=16384, detail_spare_rings=1)


def wait_until(cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting for the drain"
        time.sleep(0.002)


def run_in_thread(fn):
    out = {}

    def body():
        out["value"] = fn()

    t = threading.Thread(target=body)
    t.start()
    t.join()
    return out["value"]


def test_files_appear_only_after_the_drain_ran(tmp_path):
    d = tmp_path / "s"
    # a long flush interval: the drain sleeps until woken
    with atf2.trace_session(d, flush_interval=30, **SMALL) as s:
        time.sleep(0.05)  # the drain's first cycle (at start) is over
        cycles = s.drain.cycles
        hold = threading.Event()
        ready = threading.Event()

        def work():
            ch = s.register_current_thread()
            atf2.emit("f", L.EVENT_CALL)
            ready.set()
            hold.wait()
            return ch

        t = threading.Thread(target=work)
        t.start()
        ready.wait()
        assert not (d / "thread_0").exists()  # registered and emitting, no files yet
        assert s.drain.cycles == cycles  # registration did not wake the drain
        s.drain.wake.set()
        wait_until(lambda: (d / "thread_0").is_dir() and any((d / "thread_0").iterdir()))
        hold.set()
        t.join()
    with SessionReader(d) as r:
        assert len(r.thread(0).index.events) == 1


def test_registration_does_no_file_io(tmp_path):
    """An audit hook sees every file operation; none happens on the registering thread."""
    code = textwrap.dedent(
        f"""
        import sys, threading, time
        import atf2
        s = atf2.trace_session_start({str(tmp_path / "s")!r}, flush_interval=0.005)
        seen = []
        registering = set()  # threads inside register_current_thread()
        def hook(event, args):
            if event == "open" or event.startswith("os.") or event.startswith("shutil."):
                ident = threading.get_ident()
                seen.append(("registering" if ident in registering else ident, event))
        sys.addaudithook(hook)
        idents = {{}}
        def work(k):
            idents[k] = threading.get_ident()
            registering.add(idents[k])
            s.register_current_thread()
            registering.discard(idents[k])
            atf2.emit("f", 1)  # (its first call may load the kernel from Numba's cache: not registration)
        for k in range(4):
            t = threading.Thread(target=work, args=(k,)); t.start(); t.join()
        time.sleep(0.2)
        drain = s.drain._thread.ident
        s.stop()
        on_producers = [e for i, e in seen if i == "registering"]
        mkdirs_on_drain = [e for i, e in seen if i == drain and e == "os.mkdir"]
        print(len(on_producers), len(mkdirs_on_drain), on_producers[:5])
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    producers, drain_mkdirs, sample = out.stdout.split(" ", 2)
    assert int(producers) == 0, sample
    assert int(drain_mkdirs) == 4  # every thread's directory, made by the drain


def test_pools_of_exited_threads_are_recycled(tmp_path):
    d = tmp_path / "s"
    with atf2.trace_session(d, flush_interval=0.002, **SMALL) as s:
        fid = s.symbols.register("f")

        def work(k):
            ch = s.register_current_thread()
            atf2.emit_batch(np.full(500, fid), np.full(500, L.EVENT_CALL), depths=np.full(500, k))
            return ch.index_pool.ctypes.data

        first = run_in_thread(lambda: work(0))
        wait_until(lambda: len(s.pools._free) == 1)  # closed, pools handed back
        second = run_in_thread(lambda: work(1))
        assert second == first and s.pools.reused == 1
        # a live thread's pools are never handed out
        hold, ready = threading.Event(), threading.Event()
        live = {}

        def stay():
            live["addr"] = work(2)
            ready.set()
            hold.wait()

        t = threading.Thread(target=stay)
        t.start()
        ready.wait()
        other = run_in_thread(lambda: work(3))
        assert other != live["addr"]
        hold.set()
        t.join()
    with SessionReader(d) as r:
        for n in range(4):
            ev = r.thread(n).index.events
            assert len(ev) == 500 and (ev["call_depth"] == n).all()  # no stale record of a previous owner
    assert s.get_stats().index.dropped == 0


def test_pool_cache_keeps_a_bounded_number():
    config = RingConfig(ring_capacity=64, ring_count=2, detail_ring_bytes=4096, detail_ring_count=2)
    cache = PoolCache(config, keep=2)
    channels = [ThreadChannel(n, config, 0, "t", cache) for n in range(4)]
    for ch in channels:
        ch.release_pools()
        ch.release_pools()  # twice: the empty pools are not given back
    assert len(cache._free) == 2
    again = ThreadChannel(4, config, 0, "t", cache)
    assert again.index_pool.shape == (config.index_pool_max_records, L.RING_RECORD_WORDS)
    assert again.ctrl[L.CTRL_INDEX_POOL_PTR] == again.index_pool.ctypes.data and cache.reused == 1


def test_manifest_rewritten_at_most_once_per_cycle_and_only_on_change(tmp_path, monkeypatch):
    writes = []
    original = session_mod.Session._write_manifest

    def counting(self, fsync):
        writes.append((self.drain.cycles, fsync))
        original(self, fsync)

    monkeypatch.setattr(session_mod.Session, "_write_manifest", counting)
    d = tmp_path / "s"
    with atf2.trace_session(d, flush_interval=0.002, **SMALL) as s:
        for _ in range(40):
            run_in_thread(lambda: atf2.emit("f", L.EVENT_CALL))

        def final_state_written():
            threads = json.loads((d / "manifest.json").read_text())["threads"]
            return len(threads) == 40 and all(t["index_events"] == 1 for t in threads)

        # every thread closed and reported, no rewrite pending (throttled ones wait), the last change written
        wait_until(lambda: all(ch.reported for ch in s.channels()) and s.drain._known == 40 and final_state_written())
        recording = [c for c, fsync in writes if not fsync]
        assert 1 <= len(recording) == len(set(recording))  # never twice in one cycle
        assert len(recording) < 40  # batched: not once per thread start and exit
        before, cycles = len(writes), s.drain.cycles
        time.sleep(0.1)  # nothing changes: many cycles, no rewrite
        assert s.drain.cycles > cycles + 5 and len(writes) == before
    assert [f for _, f in writes].count(True) == 2  # at start and at stop, fsynced
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["status"] == "complete" and len(manifest["threads"]) == 40


def test_closed_thread_figures_are_final_and_cached(tmp_path):
    with atf2.trace_session(tmp_path / "s", flush_interval=0.002, **SMALL) as s:
        run_in_thread(lambda: [atf2.emit("f", L.EVENT_CALL) for _ in range(10)])
        ch = s.channels()[0]
        wait_until(lambda: ch.state == L.CHANNEL_CLOSED)
        first = s.get_stats().threads[0]
        assert first.index.written == 10 and first.state == "closed" and first.index_file_bytes > 0
        assert s.get_stats().threads[0] is first  # not recomputed (no stat calls per rewrite)
        s._manifest()
        assert ch.manifest_entry is not None and ch.manifest_entry["index_events"] == 10


def test_killed_session_is_discoverable_and_readable(tmp_path):
    d = tmp_path / "s"
    code = textwrap.dedent(
        f"""
        import os, threading, time
        import atf2
        s = atf2.trace_session_start({str(d)!r}, flush_interval=0.005)
        def work(k):
            for i in range(100):
                atf2.emit("f", 1, depth=k)
        for k in range(3):
            t = threading.Thread(target=work, args=(k,)); t.start(); t.join()
        deadline = time.monotonic() + 20
        while not all(ch.reported for ch in s.channels()) and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(1.0)  # > MANIFEST_REWRITE_MIN_INTERVAL: the last change is in the manifest
        os._exit(0)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["status"] == "recording" and [t["id"] for t in manifest["threads"]] == [0, 1, 2]
    with SessionReader(d) as r:
        for n in range(3):
            ev = r.thread(n).index.events
            assert len(ev) == 100 and (ev["call_depth"] == n).all()


def test_files_that_cannot_be_created_cost_the_events_not_the_drain(tmp_path, monkeypatch):
    from atf2.errors import WriteError

    real = session_mod.ThreadWriter

    def writer(session_dir, thread_id, *args, **kwargs):
        if thread_id == 1:
            raise WriteError("cannot create: No space left on device", str(tmp_path / "s" / "thread_1"))
        return real(session_dir, thread_id, *args, **kwargs)

    monkeypatch.setattr(session_mod, "ThreadWriter", writer)
    with atf2.trace_session(tmp_path / "s", flush_interval=0.002, **SMALL) as s:
        for _ in range(3):
            run_in_thread(lambda: [atf2.emit("f", L.EVENT_CALL) for _ in range(20)])
        wait_until(lambda: all(ch.state == L.CHANNEL_CLOSED for ch in s.channels()))
        assert s.drain.alive
    st = s.get_stats()
    t0, t1, t2 = st.threads
    assert (t0.index.written, t2.index.written) == (20, 20)
    assert t1.index.written == 0 and t1.index.drops["disk_error"] == 20 and "No space" in t1.error
    assert st.index.recorded == st.index.written + st.index.dropped == 60
