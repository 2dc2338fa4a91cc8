"""Index pools that grow: a thread whose backlog the drain finds over the low
watermark gets twice the rings, up to ``ring_growth`` times its initial pool,
without moving a waiting record (``index_ring_advance``); a thread the drain
keeps up with keeps its initial pool."""

import time

import numpy as np
import pytest
from numba import njit

import atf2
from atf2 import layout as L
from atf2 import session as S
from atf2.clock import ticks
from atf2.errors import AtfV2Error
from atf2.kernels.ring import index_ring_push, index_ring_take
from atf2.rings import PoolCache, RingConfig, ThreadChannel


@njit(nogil=True)
def produce(ctrl, pool, first, n):
    """Events first..first+n-1: function id = its number."""
    for i in range(first, first + n):
        index_ring_push(ctrl, pool, ticks(), np.uint64(i), np.uint64(1))


def take_all(ch, limit=1 << 16):
    out = [np.empty(limit, np.uint64) for _ in range(3)]
    n, start = index_ring_take(ch.ctrl, ch.index_pool, *out)
    return int(start), out[1][: int(n)].tolist()


def drops(ch):
    return int(ch.ctrl[L.CTRL_INDEX_DROPS + L.DROP_POOL_EXHAUSTED])


def test_growth_keeps_every_waiting_record_in_place():
    """Asked to grow while its whole pool waits, the producer doubles the ring
    count at its next eligible ring switch (an odd multiple of the pool): the
    waiting records stay readable where they are, new ones go to fresh rows."""
    ch = ThreadChannel(0, RingConfig(ring_capacity=64, ring_count=4, ring_growth=4), 1, "t")
    assert ch.index_pool.shape == (64 * 4 * 4, L.RING_RECORD_WORDS) and ch.index_ring_count == 4
    ch.ctrl[L.CTRL_INDEX_RING_COUNT_TARGET] = 16
    produce(ch.ctrl, ch.index_pool, 0, 256)  # the pool is full, nothing taken
    assert ch.index_ring_count == 4
    produce(ch.ctrl, ch.index_pool, 256, 256)  # w = 256, an odd multiple of 256: 8 rings, no reclaim
    assert ch.index_ring_count == 8 and drops(ch) == 0
    assert take_all(ch) == (0, list(range(512)))
    produce(ch.ctrl, ch.index_pool, 512, 200)  # w = 512 = 1 x 512 records: 16 rings (all taken, so no wait)
    assert ch.index_ring_count == 16 and drops(ch) == 0
    produce(ch.ctrl, ch.index_pool, 712, 300)
    assert take_all(ch) == (512, list(range(512, 1012)))
    produce(ch.ctrl, ch.index_pool, 1012, 3000)
    assert ch.index_ring_count == 16  # the target: no further
    # a grown pool is exhausted like any other: oldest rings dropped, counted exactly
    start, fids = take_all(ch)
    assert len(fids) == 1024 - 64 + 4012 % 64 and start + len(fids) == 4012 and drops(ch) == start - 1012
    assert fids == list(range(start, 4012))


def test_growth_waits_for_a_switch_that_keeps_rows():
    """Requested while records wait, growth waits for an odd multiple of the pool."""
    ch = ThreadChannel(0, RingConfig(ring_capacity=64, ring_count=4, ring_growth=2), 1, "t")
    produce(ch.ctrl, ch.index_pool, 0, 200)
    assert take_all(ch)[1] == list(range(200))
    produce(ch.ctrl, ch.index_pool, 200, 100)  # past w = 256 (1 x 256) before any request
    assert take_all(ch)[1] == list(range(200, 300))
    ch.ctrl[L.CTRL_INDEX_RING_COUNT_TARGET] = 8
    produce(ch.ctrl, ch.index_pool, 300, 200)
    assert take_all(ch)[1] == list(range(300, 500))
    produce(ch.ctrl, ch.index_pool, 500, 200)  # w passes 512 (2 x 256: even): still 4 rings
    assert ch.index_ring_count == 4
    assert take_all(ch)[1] == list(range(500, 700))
    produce(ch.ctrl, ch.index_pool, 700, 100)  # w = 768 = 3 x 256: 8 rings
    assert ch.index_ring_count == 8 and drops(ch) == 0
    produce(ch.ctrl, ch.index_pool, 800, 300)  # 400 waiting: more than the old pool held
    assert drops(ch) == 0 and take_all(ch) == (700, list(range(700, 1100)))


def test_no_growth_without_a_request_or_past_the_limit():
    ch = ThreadChannel(0, RingConfig(ring_capacity=64, ring_count=2, ring_growth=2), 1, "t")
    produce(ch.ctrl, ch.index_pool, 0, 1000)
    assert ch.index_ring_count == 2 and drops(ch) == 1000 - 64 - 1000 % 64
    with pytest.raises(AtfV2Error, match="ring_growth"):
        RingConfig(ring_growth=3)


def wait_consumed(sess, ch, seconds=20.0):
    end = time.monotonic() + seconds
    while int(ch.ctrl[L.CTRL_INDEX_READ_POS]) != int(ch.ctrl[L.CTRL_INDEX_WRITE_POS]):
        assert time.monotonic() < end, "the drain did not take the backlog"
        sess.drain.wake.set()
        time.sleep(0.002)


def test_drain_grows_the_pool_of_a_thread_it_lags_behind(tmp_path):
    """Bursts of a whole pool, each drained before the next: every drain finds a
    backlog over the low mark, so the pool doubles up to ring_growth times its
    rings; no event is dropped and the file holds every one in order."""
    sess = S.trace_session_start(tmp_path / "s", ring_capacity=1024, spare_rings=3, ring_growth=8, flush_interval=60)
    n = 0
    try:
        ch = sess.register_current_thread()
        for _ in range(12):
            burst = ch.index_ring_count * 1024
            produce(ch.ctrl, ch.index_pool, n, burst)
            n += burst
            wait_consumed(sess, ch)
        assert ch.index_ring_count == 32
        assert int(ch.ctrl[L.CTRL_INDEX_WM_LOW]) == 32 * 1024 // 4  # the watermarks followed
    finally:
        st = S.trace_session_stop()
    assert st.index.recorded == n and st.index.dropped == 0 and st.index.written == n
    with atf2.SessionReader(tmp_path / "s") as r:
        (t,) = r.thread_ids
        tr = r.thread(t)
        assert tr.verify()["index"].crc == "ok"
        assert tr.index.events["function_id"].tolist() == list(range(n))


def test_a_thread_the_drain_keeps_up_with_keeps_its_pool(tmp_path):
    with atf2.trace_session(tmp_path / "s", ring_capacity=1024, spare_rings=3, flush_interval=60) as sess:
        ch = sess.register_current_thread()
        for k in range(40):
            produce(ch.ctrl, ch.index_pool, k * 500, 500)  # under the low mark (1024 of 4096)
            wait_consumed(sess, ch)
        assert ch.index_ring_count == 4 and int(ch.ctrl[L.CTRL_INDEX_RING_COUNT_TARGET]) == 4


def test_a_grown_pool_is_not_recycled():
    config = RingConfig(ring_capacity=64, ring_count=2, ring_growth=2)
    cache = PoolCache(config)
    grown, kept = ThreadChannel(0, config, 0, "t", cache), ThreadChannel(1, config, 0, "t", cache)
    grown.ctrl[L.CTRL_INDEX_RING_COUNT] = 4
    grown.release_pools()
    kept.release_pools()
    assert len(cache._free) == 1 and cache._free[0][0].shape == (256, L.RING_RECORD_WORDS)
