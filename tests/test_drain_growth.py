"""Index pools that grow: a thread whose backlog is over the low watermark at
a ring switch gets twice the rings, up to ``ring_growth`` times its initial
pool, without moving a waiting record, wherever the backlog lies (the ring
map, ``index_ring_advance``); a thread the drain keeps up with keeps its
initial pool."""

import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numba import njit

import atf2
from atf2 import layout as L
from atf2 import session as S
from atf2.clock import ticks
from atf2.errors import AtfV2Error
from atf2.kernels.ring import index_ring_push, index_ring_take
from atf2.rings import PoolCache, RingConfig, ThreadChannel
from atf2.stats import LaneStats


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
    """A backlog over the low mark at a ring switch doubles the ring count
    there, up to RING_COUNT_TARGET; the waiting records stay readable where they are,
    new ones go to fresh rows; the watermarks double with the pool."""
    ch = ThreadChannel(0, RingConfig(ring_capacity=64, ring_count=4, ring_growth=4), 1, "t")
    assert ch.index_pool.shape == (64 * 4 * 4, L.RING_RECORD_WORDS) and ch.index_ring_count == 4
    assert int(ch.ctrl[L.CTRL_INDEX_RING_COUNT_TARGET]) == 16  # the rows the array has
    assert (int(ch.ctrl[L.CTRL_INDEX_WM_LOW]), int(ch.ctrl[L.CTRL_INDEX_WM_HIGH])) == (64, 192)
    produce(ch.ctrl, ch.index_pool, 0, 64)  # 64 waiting: the low mark, but no switch yet
    assert ch.index_ring_count == 4
    produce(ch.ctrl, ch.index_pool, 64, 1)  # switch at w = 64 with [0, 64) waiting in block 0: 8 rings
    assert ch.index_ring_count == 8 and drops(ch) == 0
    assert (int(ch.ctrl[L.CTRL_INDEX_WM_LOW]), int(ch.ctrl[L.CTRL_INDEX_WM_HIGH])) == (128, 384)
    produce(ch.ctrl, ch.index_pool, 65, 127)  # switch at w = 128: 128 waiting, the new low mark: 16 rings
    assert ch.index_ring_count == 16 and drops(ch) == 0
    assert take_all(ch) == (0, list(range(192)))
    produce(ch.ctrl, ch.index_pool, 192, 3000)
    assert ch.index_ring_count == 16  # the target: no further
    # a grown pool is exhausted like any other: oldest rings dropped, counted exactly
    start, fids = take_all(ch)
    assert len(fids) == 1024 - 64 + 3192 % 64 and start + len(fids) == 3192 and drops(ch) == start - 192
    assert fids == list(range(start, 3192))


def test_growth_wherever_the_backlog_lies():
    """The pool doubles at the first switch with a backlog over the low mark,
    whether the waiting records lie in an odd block of the pool or across
    two blocks: they keep their slots, new rings take fresh ones."""
    for first_pushed in (300, 200, 128, 100):  # backlog in block 1; blocks 0 and 1; one block exactly; blocks 1 and 0
        ch = ThreadChannel(0, RingConfig(ring_capacity=64, ring_count=4, ring_growth=2), 1, "t")
        for first in range(0, first_pushed, 50):  # the drain keeps up: under the low mark (64) at every switch
            n = min(50, first_pushed - first)
            produce(ch.ctrl, ch.index_pool, first, n)
            assert take_all(ch)[1] == list(range(first, first + n))
        assert ch.index_ring_count == 4
        switch = (first_pushed // 64 + 2) * 64  # the second switch after first_pushed: over the low mark there
        produce(ch.ctrl, ch.index_pool, first_pushed, switch + 1 - first_pushed)
        assert ch.index_ring_count == 8 and drops(ch) == 0, first_pushed
        # up to the last record the grown pool holds with [first_pushed, ...) waiting:
        # more than the old pool held, nothing dropped, all in order
        end = ((first_pushed + 7 * 64) // 64 + 1) * 64
        assert end - first_pushed > 4 * 64
        produce(ch.ctrl, ch.index_pool, switch + 1, end - switch - 1)
        assert drops(ch) == 0
        assert take_all(ch, 1 << 12) == (first_pushed, list(range(first_pushed, end)))
        produce(ch.ctrl, ch.index_pool, end, 1)  # one more switch: the pool is full and grown to the most
        assert drops(ch) == 0 and ch.index_ring_count == 8


def test_no_growth_under_the_low_mark():
    ch = ThreadChannel(0, RingConfig(ring_capacity=64, ring_count=4, ring_growth=2), 1, "t")
    for first in range(0, 6400, 63):  # 63 waiting at most: the low mark is 64
        produce(ch.ctrl, ch.index_pool, first, 63)
        assert take_all(ch)[1] == list(range(first, first + 63))
    assert ch.index_ring_count == 4 and 0 < int(ch.ctrl[L.CTRL_INDEX_HIGH_WATER]) < 64


def waiting_slots(ch):
    """Pool slots of the rings holding waiting records (and of the active ring)."""
    cap = int(ch.ctrl[L.CTRL_INDEX_RING_CAPACITY])
    c, w = int(ch.ctrl[L.CTRL_INDEX_READ_POS]), int(ch.ctrl[L.CTRL_INDEX_WRITE_POS])
    if w == 0:
        return []
    rings = range(c // cap, (w - 1) // cap + 1)
    mask = int(ch.ctrl[L.CTRL_INDEX_RING_MAP_MASK])
    return [int(ch.ctrl[L.CTRL_INDEX_RING_MAP + (r & mask)]) for r in rings]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    count=st.sampled_from([2, 3, 4, 5]),
    growth=st.sampled_from([1, 2, 4, 8]),
    # (records pushed, records the drain takes then): often none, so that backlogs build up
    calm=st.lists(st.integers(1, 7), max_size=12),
    steps=st.lists(st.tuples(st.integers(0, 80), st.one_of(st.just(0), st.integers(0, 100))), min_size=1, max_size=60),
)
def test_ring_map_keeps_waiting_rings_apart(count, growth, calm, steps):
    """Any interleaving of pushes and takes, any growth: the waiting rings sit
    in distinct slots inside the pool as it stands, every record taken is the
    one pushed at its position, taken + dropped + waiting = pushed, and
    nothing is dropped while the pool could still grow. ``calm``: a drain
    that first keeps up (under the low mark), so that the pool grows late, at
    any ring, not only in its first round of slots."""
    cap = 8
    ch = ThreadChannel(0, RingConfig(ring_capacity=cap, ring_count=count, ring_growth=growth), 1, "t")
    pushed = taken = 0
    for push, take in [(k, k) for k in calm] + steps:
        produce(ch.ctrl, ch.index_pool, pushed, push)
        pushed += push
        slots = waiting_slots(ch)
        assert len(set(slots)) == len(slots) and all(0 <= s < ch.index_ring_count for s in slots)
        if ch.index_ring_count < count * growth:
            assert drops(ch) == 0
        start, fids = take_all(ch, take) if take else (0, [])
        assert fids == list(range(start, start + len(fids)))
        taken += len(fids)
    waiting = int(ch.ctrl[L.CTRL_INDEX_WRITE_POS]) - int(ch.ctrl[L.CTRL_INDEX_READ_POS])
    assert taken + drops(ch) + waiting == pushed


def test_no_growth_past_the_limit():
    ch = ThreadChannel(0, RingConfig(ring_capacity=64, ring_count=2, ring_growth=1), 1, "t")
    produce(ch.ctrl, ch.index_pool, 0, 1000)
    assert ch.index_ring_count == 2 and drops(ch) == 1000 - 64 - 1000 % 64
    with pytest.raises(AtfV2Error, match="ring_growth"):
        RingConfig(ring_growth=3)
    # a ring map holds MAX_INDEX_RINGS rings at most: growth stops there
    assert RingConfig(ring_count=256, ring_growth=4).max_ring_count == L.MAX_INDEX_RINGS
    assert RingConfig(ring_count=256, ring_growth=16).max_ring_count == L.MAX_INDEX_RINGS
    assert RingConfig(ring_count=65, ring_growth=16).max_ring_count == 520  # 65 * 8: one more doubling is past the map
    assert RingConfig(ring_count=1000, ring_growth=16).max_ring_count == 1000
    assert RingConfig(ring_count=16, ring_growth=16).max_ring_count == 256
    with pytest.raises(AtfV2Error, match=f"ring_count=1025 \\(at most {L.MAX_INDEX_RINGS} index rings"):
        RingConfig(ring_count=1025)


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
        assert ch.index_ring_count == 4 and int(ch.ctrl[L.CTRL_INDEX_HIGH_WATER]) < 1024


def test_a_grown_pool_is_not_recycled():
    config = RingConfig(ring_capacity=64, ring_count=2, ring_growth=2)
    cache = PoolCache(config)
    grown, kept = ThreadChannel(0, config, 0, "t", cache), ThreadChannel(1, config, 0, "t", cache)
    grown.ctrl[L.CTRL_INDEX_RING_COUNT] = 4
    grown.release_pools()
    kept.release_pools()
    assert len(cache._free) == 1 and cache._free[0][0].shape == (256, L.RING_RECORD_WORDS)


def test_the_growth_budget_is_shared_by_every_thread_and_given_back():
    """All pools of a session grow out of one budget: a thread takes its
    growth with a CAS, a thread past it keeps its pool (refusals counted,
    oldest rings dropped as without growth), a closed thread gives its
    growth back and the next can grow."""
    record = L.RING_RECORD_WORDS * 8
    config = RingConfig(ring_capacity=64, ring_count=2, ring_growth=4, ring_growth_budget=(2 * 64 + 4 * 64) * record)
    cache = PoolCache(config)
    assert cache.growth_budget_records == 6 * 64
    a, b = ThreadChannel(0, config, 0, "a", cache), ThreadChannel(1, config, 0, "b", cache)
    produce(a.ctrl, a.index_pool, 0, 1000)  # 2 -> 4 -> 8 rings: 2 + 4 rings of budget, all of it
    assert a.index_ring_count == 8 and cache.growth_budget_records == 0 and int(a.ctrl[L.CTRL_INDEX_GROWTH_REFUSED]) == 0
    produce(b.ctrl, b.index_pool, 0, 1000)
    assert b.index_ring_count == 2 and drops(b) == 1000 - 64 - 1000 % 64
    refused = int(b.ctrl[L.CTRL_INDEX_GROWTH_REFUSED])
    assert refused > 0 and LaneStats.index_from_ctrl(b.ctrl).growth_refused == refused
    assert LaneStats.index_from_ctrl(a.ctrl).rings == 8
    a.release_pools()  # thread a is gone: its 6 rings of growth go back
    assert cache.growth_budget_records == 6 * 64
    c = ThreadChannel(2, config, 0, "c", cache)
    produce(c.ctrl, c.index_pool, 0, 1000)
    assert c.index_ring_count == 8 and cache.growth_budget_records == 0


def test_no_budget_no_growth(tmp_path):
    with atf2.trace_session(tmp_path / "s", ring_capacity=1024, spare_rings=1, ring_growth_budget=0, flush_interval=60) as sess:
        ch = sess.register_current_thread()
        produce(ch.ctrl, ch.index_pool, 0, 10_000)
        assert ch.index_ring_count == 2 and int(ch.ctrl[L.CTRL_INDEX_GROWTH_REFUSED]) > 0
    st = atf2.trace_session_get_stats()
    assert st.index.recorded == 10_000 and st.index.dropped == 10_000 - st.index.written > 0
    assert st.index.growth_refused > 0 and st.index.rings == 2
    with atf2.SessionReader(tmp_path / "s") as r:
        assert r.manifest["options"]["ring_growth_budget"] == 0
    for bad in (-1, 1.5, True):
        with pytest.raises(AtfV2Error, match="ring_growth_budget"):
            atf2.trace_session_start(tmp_path / "t", ring_growth_budget=bad)
