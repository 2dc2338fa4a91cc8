"""The drain's write-behind queue: encoded chunks wait for their writes in a
bounded queue of staging buffers, so a stalled write (page cache, a
descheduled I/O thread) does not stop the drain from freeing ring space."""

import threading
import time

import numpy as np
import pytest
from numba import njit

import atf2
import atf2.drain as D
from atf2 import layout as L
from atf2 import session as S
from atf2.clock import ticks
from atf2.errors import WriteError
from atf2.kernels.ring import index_ring_push
from atf2.writer import ThreadWriter

CHUNK = 1000


@njit(nogil=True)
def produce(ctrl, pool, first, n):
    """Events first..first+n-1: function id = its number, clock-stamped."""
    for i in range(first, first + n):
        index_ring_push(ctrl, pool, ticks(), np.uint64(i), np.uint64(1))


@pytest.fixture
def gated_writes(monkeypatch):
    """Every ``write_encoded`` waits for the returned event (set it to let the writes through)."""
    gate = threading.Event()
    original = ThreadWriter.write_encoded

    def stalled(self, events, crc, crc_in, **kw):
        gate.wait(60)
        return original(self, events, crc, crc_in, **kw)

    monkeypatch.setattr(ThreadWriter, "write_encoded", stalled)
    monkeypatch.setattr(D, "DRAIN_CHUNK", CHUNK)
    yield gate
    gate.set()


def consumed_by_drain(ch) -> int:
    """Records the drain took out of the rings (READ_POS minus what the producer reclaimed)."""
    return int(ch.ctrl[L.CTRL_INDEX_READ_POS]) - int(ch.ctrl[L.CTRL_INDEX_DROPS + L.DROP_POOL_EXHAUSTED])


def wait_until(predicate, sess, seconds=20.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        sess.drain.wake.set()
        time.sleep(0.002)
    return False


def read_function_ids(d):
    with atf2.SessionReader(d) as r:
        (t,) = r.thread_ids
        tr = r.thread(t)
        assert tr.verify()["index"].crc == "ok" and not tr.recovered
        return tr.index.events["function_id"].tolist()


def test_stalled_writes_do_not_stop_the_drain_freeing_rings(tmp_path, gated_writes):
    """Writes blocked: the drain keeps taking (and encoding) far more than its
    first two staging buffers, so a pool of 4 Ki records carries 20 Ki events
    without a drop; once the writes go through, every event is on disk in order."""
    n, step = 20 * CHUNK, 2 * CHUNK
    sess = S.trace_session_start(tmp_path / "s", ring_capacity=1024, spare_rings=3, flush_interval=0.005)
    try:
        ch = sess.register_current_thread()
        for first in range(0, n, step):
            produce(ch.ctrl, ch.index_pool, first, step)
            assert wait_until(lambda: consumed_by_drain(ch) == first + step, sess), (first, consumed_by_drain(ch))  # noqa: B023 - polled within this iteration
        assert int(ch.ctrl[L.CTRL_INDEX_WRITTEN]) == 0  # nothing written yet: all of it waits in the queue
        assert 2 < len(sess.drain._stages) <= sess.drain._max_stages
        gated_writes.set()
    finally:
        gated_writes.set()
        st = S.trace_session_stop()
    assert st.index.recorded == n and st.index.dropped == 0 and st.index.written == n
    assert read_function_ids(tmp_path / "s") == list(range(n))


def test_write_behind_queue_is_bounded_and_accounts_exactly(tmp_path, gated_writes):
    """Writes blocked for good: the drain stops at ``_max_stages`` chunks (its
    staging memory is bounded), the pool then drops its oldest rings, and once
    the writes resume recorded == written + dropped with an ordered subset on disk."""
    n, step = 60 * CHUNK, 2 * CHUNK
    # a pool that does not grow: what it drops is then certain
    sess = S.trace_session_start(tmp_path / "s", ring_capacity=1024, spare_rings=3, ring_growth=1, flush_interval=0.005)
    try:
        ch = sess.register_current_thread()
        limit = sess.drain._max_stages * CHUNK
        assert limit < n - 4096
        for first in range(0, n, step):
            produce(ch.ctrl, ch.index_pool, first, step)
            wait_until(lambda: consumed_by_drain(ch) >= min(first + step, limit), sess, seconds=0.5)  # noqa: B023 - polled within this iteration
        assert len(sess.drain._stages) == sess.drain._max_stages
        assert consumed_by_drain(ch) <= limit
        assert int(ch.ctrl[L.CTRL_INDEX_DROPS + L.DROP_POOL_EXHAUSTED]) > 0
    finally:
        gated_writes.set()
        st = S.trace_session_stop()
    assert st.index.recorded == n and st.index.written + st.index.dropped == n
    assert st.index.written >= limit
    fids = read_function_ids(tmp_path / "s")
    assert len(fids) == st.index.written and fids == sorted(set(fids))
    assert fids[:limit] == list(range(limit))  # the queued chunks were all written, first to last


def test_after_a_failed_write_the_chain_continues_from_the_file(tmp_path, monkeypatch):
    """A failed chunk never reaches the file, so the chunks encoded behind it
    are checksummed again on the I/O thread; once no write is in flight the
    drain continues from the file's CRC and the fused CRC is used again."""
    monkeypatch.setattr(D, "DRAIN_CHUNK", CHUNK)
    original = ThreadWriter.write_encoded
    calls = []

    def failing_second(self, events, crc, crc_in, **kw):
        calls.append(len(events))
        if len(calls) == 2:
            raise WriteError("no space left", "index.atf")
        return original(self, events, crc, crc_in, **kw)

    rechecked = []
    real_crc32 = D.crc32
    monkeypatch.setattr(D, "crc32", lambda buf, crc: rechecked.append(len(buf)) or real_crc32(buf, crc))
    monkeypatch.setattr(ThreadWriter, "write_encoded", failing_second)
    sess = S.trace_session_start(tmp_path / "s", ring_capacity=1024, spare_rings=7, flush_interval=60)
    try:
        ch = sess.register_current_thread()
        for first in (0, 3 * CHUNK):
            produce(ch.ctrl, ch.index_pool, first, 3 * CHUNK)
            assert wait_until(
                lambda: int(ch.ctrl[L.CTRL_INDEX_WRITTEN]) + int(ch.ctrl[L.CTRL_INDEX_DROPS + L.DROP_DISK_ERROR]) == first + 3 * CHUNK,  # noqa: B023 - polled within this iteration
                sess,
            )
        fused = sess.drain._fused_crc
    finally:
        st = S.trace_session_stop()
    assert st.index.written == 5 * CHUNK and st.index.drops["disk_error"] == CHUNK
    if fused:
        assert len(rechecked) <= 1  # at most the chunk encoded behind the failed one (if it was)
    fids = read_function_ids(tmp_path / "s")
    assert fids == list(range(CHUNK)) + list(range(2 * CHUNK, 6 * CHUNK))
