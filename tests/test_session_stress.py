"""Stress: many threads flooding deliberately small rings.

For every thread and lane: recorded == written + dropped, exactly, and what
was written is an ordered subset of what was recorded (the call_depth column
carries each event's sequence number).
"""

import threading

import numpy as np
from numba import njit

import atf2
from atf2.clock import ticks
from atf2.kernels.ring import index_ring_push
from atf2.reader import SessionReader

THREADS = 16
EVENTS = 1_000_000


@njit(nogil=True, cache=True)
def flood(ctrl, pool, function_id, n):
    """A producer as fast as the capture hook: event i has call_depth i."""
    for i in range(n):
        index_ring_push(ctrl, pool, ticks(), function_id, np.uint64(1 + (i & 1)) | (np.uint64(i) << np.uint64(32)))


def check_thread(t_stats, events, recorded):
    idx = t_stats.index
    assert idx.recorded == recorded
    assert idx.written + idx.dropped == recorded and idx.pending == 0
    assert idx.written == len(events)
    seq = events["call_depth"].astype(np.int64)
    assert (np.diff(seq) > 0).all()  # ordered subset of 0..recorded-1
    assert len(seq) == 0 or (seq[0] >= 0 and seq[-1] < recorded)
    assert (np.diff(events["timestamp_ns"].astype(np.int64)) >= 0).all()
    assert ((events["event_kind"] - 1) == (seq & 1)).all()


def test_sixteen_threads_flooding_small_rings(tmp_path):
    d = tmp_path / "s"
    with atf2.trace_session(d, ring_capacity=1024, spare_rings=3, flush_interval=0.005) as s:
        ids = [s.symbols.register(f"t{k}") for k in range(THREADS)]
        numbers = {}
        barrier = threading.Barrier(THREADS)

        def work(k):
            ch = s.register_current_thread()
            numbers[k] = ch.thread_id
            barrier.wait()
            flood(ch.ctrl, ch.index_pool, np.uint64(ids[k]), EVENTS)

        ts = [threading.Thread(target=work, args=(k,)) for k in range(THREADS)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    st = atf2.trace_session_get_stats()
    assert st.index.recorded == THREADS * EVENTS
    assert st.index.written + st.index.dropped == THREADS * EVENTS
    assert st.index.drops["pool_exhausted"] == st.index.dropped  # the only reason here
    assert st.index.written >= THREADS * 3 * 1024 and st.index.dropped > 0  # the final pass empties every pool
    with SessionReader(d) as r:
        for k, n in numbers.items():
            ev = r.thread(n).index.events
            assert (ev["function_id"] == ids[k]).all()
            check_thread(st.thread(n), ev, EVENTS)


def test_details_under_pressure_stay_paired_and_counted(tmp_path):
    d = tmp_path / "s"
    n_threads, n_events, every = 4, 100_000, 7
    with atf2.trace_session(d, ring_capacity=512, spare_rings=2, detail_ring_bytes=2048, detail_spare_rings=2,
                            flush_interval=0.005) as s:
        fid = s.symbols.register("f")
        numbers = {}

        def work(k):
            numbers[k] = s.register_current_thread().thread_id
            for b in range(0, n_events, 10_000):
                seq = np.arange(b, b + 10_000)
                details = [int(i).to_bytes(4, "little") * (1 + i % 3) if i % every == 0 else None for i in seq]
                atf2.emit_batch(np.full(seq.size, fid), 1 + (seq & 1), depths=seq, details=details)

        ts = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    st = atf2.trace_session_get_stats()
    n_details = len(range(0, n_events, every))
    with SessionReader(d) as r:
        for n in numbers.values():
            t = r.thread(n)
            ev = t.index.events
            ts_ = st.thread(n)
            check_thread(ts_, ev, n_events)
            dl = ts_.detail
            assert dl.recorded == n_details and dl.written + dl.dropped == n_details and dl.pending == 0
            assert dl.written == t.detail_count()
            # every written detail is the one recorded with its event
            linked = np.flatnonzero(ev["detail_seq"] != 0xFFFFFFFF)
            assert len(linked) == dl.written
            for pos in linked[:: max(1, len(linked) // 200)]:
                de = t.get_detail_for(t.index[pos])
                i = int(ev["call_depth"][pos])
                assert de.index_seq == pos and de.payload == i.to_bytes(4, "little") * (1 + i % 3)
            t.verify()
