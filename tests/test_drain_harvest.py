"""An ended thread gives its rings back before its files exist (``Drain._harvest``).

Creating and finalizing a thread's files costs file-system calls; a program
that ends threads faster than that gets ahead of the drain. The ended
threads waiting for their files must not hold their ring pools meanwhile:
their last events are kept encoded, the pools go back to the session's
cache, and the files get exactly those events later.
"""

import threading
import time

import numpy as np
import pytest

import atf2
import atf2.drain as D
from atf2 import layout as L
from atf2 import session as S
from atf2.errors import WriteError
from atf2.reader import SessionReader

EVENTS = 30


def wait_until(cond, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out waiting for the drain"
        time.sleep(0.005)


def run_threads(s, ks, events=EVENTS):
    """One thread per k: ``events`` events of function f<k>, a detail on every third."""

    def work(k):
        fid = s.function_id(f"f{k}")
        for i in range(events):
            atf2.emit(fid, 1 + i % 2, depth=i, detail=f"{k}:{i}".encode() if i % 3 == 0 else None)

    ts = [threading.Thread(target=work, args=(k,), name=f"w{k}") for k in ks]
    for t in ts:
        t.start()
    for t in ts:
        t.join()


def ended(s):
    return [ch for ch in s.channels() if ch.exited.is_set()]


@pytest.fixture
def no_files_until_stop(monkeypatch):
    """The drain opens no thread's files before stop: every ended thread waits for its files."""
    monkeypatch.setattr(S, "_OPEN_PER_CYCLE", 0)


def check_files(d, names, events=EVENTS):
    with SessionReader(d) as r:
        assert r.status == "complete" and not r.recovered
        by_name = {e["name"]: e["id"] for e in r.manifest["threads"]}
        for k in names:
            t = r.thread(by_name[f"w{k}"])
            assert t.verify()["index"].crc == "ok" and not t.recovered  # (links checked both ways)
            ev = t.index.events
            assert ev["call_depth"].tolist() == list(range(events))
            assert ev["event_kind"].tolist() == [1 + i % 2 for i in range(events)]
            assert (np.diff(ev["timestamp_ns"].astype(np.int64)) >= 0).all()
            details = [t.get_detail_for(t.index[i]) for i in range(events)]
            linked = [(i, de.payload) for i, de in enumerate(details) if de is not None]
            assert linked == [(i, f"{k}:{i}".encode()) for i in range(0, events, 3)]


def test_ended_threads_give_their_pools_back_before_their_files_exist(tmp_path, no_files_until_stop):
    d = tmp_path / "s"
    with atf2.trace_session(d, flush_interval=0.005, ring_capacity=1024, spare_rings=3, detail_ring_bytes=16384) as s:
        run_threads(s, range(10))
        wait_until(lambda: len(ended(s)) == 10 and all(ch.ended_tail is not None for ch in ended(s)))
        assert not list(d.glob("thread_*"))  # no file yet ...
        assert all(ch.index_pool.size == 0 and ch.detail_words.size == 0 for ch in ended(s))  # ... and no pool
        assert all(ch.state == L.CHANNEL_EXITED for ch in ended(s))
        # their events are neither written nor lost: pending, and counted once
        st = s.get_stats()
        for t in st.threads:
            assert (t.index.recorded, t.index.written, t.index.dropped, t.index.pending) == (EVENTS, 0, 0, EVENTS)
            assert (t.detail.recorded, t.detail.pending) == (EVENTS // 3, EVENTS // 3)
        # the next threads run on the pools the ended ones gave back (how many the
        # cache holds depends on how registrations and harvests interleaved:
        # it keeps at most 8, and the last thread's pools came back after every
        # registration of its wave)
        reused, cached = s.pools.reused, len(s.pools._free)
        assert cached >= 1
        run_threads(s, range(10, 18))
        assert s.pools.reused - reused >= min(cached, 8)
    st = atf2.trace_session_get_stats()
    assert st.index.recorded == st.index.written == 18 * EVENTS and st.index.dropped == 0
    assert st.detail.recorded == st.detail.written == 18 * (EVENTS // 3) and st.detail.dropped == 0
    check_files(d, range(18))


def test_a_backlog_bigger_than_a_chunk_stays_in_the_rings(tmp_path, no_files_until_stop, monkeypatch):
    monkeypatch.setattr(D, "DRAIN_CHUNK", 64)
    d = tmp_path / "s"
    with atf2.trace_session(d, flush_interval=0.005, ring_capacity=1024, spare_rings=3, detail_ring_bytes=16384) as s:
        run_threads(s, [0], events=40)  # within a chunk: harvested
        run_threads(s, [1], events=200)  # more: left to the close, which writes it chunk by chunk
        wait_until(lambda: len(ended(s)) == 2 and ended(s)[0].ended_tail is not None)
        time.sleep(0.05)  # a few more cycles
        small, big = ended(s)
        assert small.index_pool.size == 0 and big.ended_tail is None and big.index_pool.size > 0
    st = atf2.trace_session_get_stats()
    assert [t.index.written for t in st.threads] == [40, 200] and st.index.dropped == 0
    check_files(d, [0], events=40)
    check_files(d, [1], events=200)


def test_harvested_events_of_a_thread_without_files_are_counted_as_disk_errors(tmp_path, no_files_until_stop, monkeypatch):
    real = S.ThreadWriter

    def writer(session_dir, thread_id, *args, **kwargs):
        if thread_id == 1:
            raise WriteError("cannot create: no space left", f"thread_{thread_id}")
        return real(session_dir, thread_id, *args, **kwargs)

    monkeypatch.setattr(S, "ThreadWriter", writer)
    d = tmp_path / "s"
    with atf2.trace_session(d, flush_interval=0.005, detail_ring_bytes=16384) as s:
        run_threads(s, [0])
        run_threads(s, [1])
        wait_until(lambda: len(ended(s)) == 2 and all(ch.ended_tail is not None for ch in ended(s)))
    st = atf2.trace_session_get_stats()
    good, bad = st.threads
    assert (good.index.written, good.index.dropped) == (EVENTS, 0)
    assert (bad.index.written, bad.index.drops["disk_error"]) == (0, EVENTS)
    assert (bad.detail.written, bad.detail.drops["disk_error"]) == (0, EVENTS // 3)
    assert "no space left" in bad.error
    check_files(d, [0])


def test_threads_ended_while_files_lag_hold_few_pools(tmp_path, monkeypatch):
    """Files far slower than threads end (each thread's first file takes 20 ms):
    the ended threads waiting for theirs hold no pools."""
    real = S.ThreadWriter

    def slow_writer(*args, **kwargs):
        time.sleep(0.02)
        return real(*args, **kwargs)

    monkeypatch.setattr(S, "ThreadWriter", slow_writer)
    d = tmp_path / "s"
    held = []
    with atf2.trace_session(d, flush_interval=0.005, ring_capacity=1024, spare_rings=3, detail_ring_bytes=16384) as s:
        # one thread first, to its end: the drain's first harvest and close load
        # their kernels (a few hundred ms in a new process: waves would pile up)
        run_threads(s, [120])
        wait_until(lambda: ended(s)[0].state == L.CHANNEL_CLOSED)
        for wave in range(6):
            run_threads(s, range(wave * 20, wave * 20 + 20))
            time.sleep(0.01)  # the drain gets a core (the files still lag: 20 ms each)
            held.append(sum(1 for ch in ended(s) if ch.index_pool.size))
            waiting = sum(1 for ch in ended(s) if ch.state != L.CHANNEL_CLOSED)
        assert waiting > 20  # the files did lag behind
        assert max(held) <= 20, held  # at most the wave that just ended
    st = atf2.trace_session_get_stats()
    assert st.index.written == 121 * EVENTS and st.index.dropped == 0
    check_files(d, range(121))


def test_churn_bench_row(capsys):
    """``python -m atf2.bench.thread_lifecycle --churn N``: what ended threads hold while their files lag."""
    from atf2.bench import thread_lifecycle

    assert thread_lifecycle.main(["--churn", "150"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("churn: 150 threads ended in waves of 50") and "threads/s" in out
    fields = dict(f.split("=") for f in out.split()[1:] if "=" in f)
    assert int(fields["drops"]) == 0
    assert int(fields["max_pools_held"]) <= 50 + 8  # the last wave (and the cache's keep)
    assert int(fields["max_pools_held"]) <= int(fields["max_waiting"])  # a closed thread holds none
