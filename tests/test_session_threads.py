"""Sessions with several threads: per-thread files, merged order, thread exit, churn."""

import os
import threading
import time

import numpy as np

import atf2
from atf2 import layout as L
from atf2.reader import SessionReader


def wait_until(cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting for the drain"
        time.sleep(0.002)


def test_four_threads_distinct_events_and_merged_order(tmp_path):
    d = tmp_path / "s"
    n_events = 2000
    with atf2.trace_session(d, flush_interval=0.005) as s:
        ids = [s.symbols.register(f"worker{k}") for k in range(4)]
        barrier = threading.Barrier(4)
        numbers = {}

        def work(k):
            numbers[k] = s.register_current_thread().thread_id
            barrier.wait()
            for i in range(n_events):
                atf2.emit(ids[k], L.EVENT_CALL if i % 2 == 0 else L.EVENT_RETURN, depth=i % 7,
                          detail=bytes([k]) * (i % 5) if i % 100 == 0 else None)

        threads = [threading.Thread(target=work, args=(k,), name=f"w{k}") for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(numbers.values()) == [0, 1, 2, 3]
    assert sorted(p.name for p in d.iterdir() if p.is_dir()) == ["thread_0", "thread_1", "thread_2", "thread_3"]
    with SessionReader(d) as r:
        for k, n in numbers.items():
            t = r.thread(n)
            ev = t.index.events
            assert len(ev) == n_events and (ev["function_id"] == ids[k]).all() and (ev["thread_id"] == n).all()
            assert ev["call_depth"].tolist() == [i % 7 for i in range(n_events)]
            assert (np.diff(ev["timestamp_ns"].astype(np.int64)) >= 0).all()
            assert t.detail_count() == n_events // 100
            for j in range(t.detail_count()):
                de = t.detail.get(j)
                assert de.payload == bytes([k]) * ((100 * j) % 5) and de.index_seq == 100 * j
                assert t.index[de.index_seq][5] == j  # detail_seq links back
        merged = r.merged()
        assert len(merged) == 4 * n_events
        key = np.lexsort((merged["seq"], merged["thread"], merged["timestamp_ns"]))
        assert (key == np.arange(len(merged))).all()
        for n in numbers.values():
            assert merged["seq"][merged["thread"] == n].tolist() == list(range(n_events))
    st = atf2.trace_session_get_stats()
    assert st.index.written == 4 * n_events and st.index.dropped == 0
    assert {t.name for t in st.threads} == {"w0", "w1", "w2", "w3"}


def test_thread_exit_finalizes_its_files_during_the_session(tmp_path):
    with atf2.trace_session(tmp_path / "s", flush_interval=0.005) as s:
        atf2.emit("main", 1)
        t = threading.Thread(target=lambda: [atf2.emit("short", 1) for _ in range(10)])
        t.start()
        t.join()
        wait_until(lambda: s.get_stats().threads[1].state == "closed")
        st = s.get_stats()
        assert st.threads[1].index.written == 10 and st.threads[0].state == "active"
        # finalized while the session runs: the footer is there, the reader does not need recovery
        with atf2.ThreadReader(tmp_path / "s" / "thread_1") as tr:
            assert not tr.recovered and len(tr) == 10
        assert s.drain.alive


def test_registration_is_idempotent_and_tracer_can_end_a_thread(tmp_path):
    with atf2.trace_session(tmp_path / "s", flush_interval=0.005) as s:
        ch = s.register_current_thread()
        assert s.register_current_thread() is ch and s.channel_for_current_thread() is ch
        assert ch.ctrl.dtype == np.uint64 and ch.ctrl.shape == (L.ctrl_words(s.config.max_ring_count),)
        assert ch.ctrl.shape == (L.CTRL_SLOTS + 256,)  # the default pool grows to 256 rings: a map of 256 words
        assert int(ch.ctrl[L.CTRL_INDEX_POOL_PTR]) == ch.index_pool.ctypes.data
        assert ch.index_pool.shape == (s.config.ring_capacity * s.config.ring_count * s.config.ring_growth, 3)  # room to grow
        assert s.config.max_ring_count == s.config.ring_count * s.config.ring_growth
        assert ch.index_ring_count == s.config.ring_count
        atf2.emit("a", 1)
        s.thread_exited()  # what the tracer calls when it knows the thread is done
        wait_until(lambda: s.get_stats().threads[0].state == "closed")
        atf2.emit("a", 2)  # the same OS thread again: a new thread number
        assert s.register_current_thread().thread_id == 1
    st = atf2.trace_session_get_stats()
    assert [t.index.written for t in st.threads] == [1, 1]


def test_thread_churn_keeps_few_files_open(tmp_path):
    fd_dir = "/proc/self/fd"
    with atf2.trace_session(tmp_path / "s", flush_interval=0.002, ring_capacity=256, spare_rings=1,
                            detail_ring_bytes=4096, detail_spare_rings=1) as s:
        atf2.emit("main", 1)
        base = len(os.listdir(fd_dir))
        for _wave in range(5):
            ts = [threading.Thread(target=atf2.emit, args=("t", 1)) for _ in range(20)]
            for t in ts:
                t.start()
            for t in ts:
                t.join()
        wait_until(lambda: all(t.state == "closed" for t in s.get_stats().threads[1:]))
        assert len(os.listdir(fd_dir)) <= base + 2
        st = s.get_stats()
        assert len(st.threads) == 101 and all(t.index.written == 1 for t in st.threads)
        assert all(ch.index_pool.size == 0 for ch in s._channels[1:])  # pools released
    with SessionReader(tmp_path / "s") as r:
        assert len(r.threads) == 101 and r.event_count() == 101


def test_threads_never_mix_events(tmp_path):
    """Batches from 8 threads at once: each file holds only its thread's ids, in order."""
    with atf2.trace_session(tmp_path / "s", flush_interval=0.002) as s:
        ids = [s.symbols.register(f"f{k}") for k in range(8)]
        got = {}

        def work(k):
            got[k] = s.register_current_thread().thread_id
            for b in range(20):
                atf2.emit_batch(np.full(500, ids[k]), np.ones(500, np.uint32), depths=np.arange(b * 500, (b + 1) * 500))

        ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    with SessionReader(tmp_path / "s") as r:
        for k, n in got.items():
            ev = r.thread(n).index.events
            assert (ev["function_id"] == ids[k]).all() and ev["call_depth"].tolist() == list(range(10_000))
