"""Ring kernels in isolation: push/take, drop-oldest accounting, watermarks, detail arena, concurrency."""

import threading

import numpy as np
import pytest
from numba import carray, njit, types
from numba.extending import intrinsic

from atf2 import layout as L
from atf2.errors import AtfV2Error
from atf2.kernels.ring import (
    detail_ring_push,
    detail_ring_take,
    encode_ring_records,
    index_ring_discard,
    index_ring_push,
    index_ring_take,
    make_kind_depth,
    pair_details,
    watermark_update,
)
from atf2.rings import RingConfig, ThreadChannel


@njit(nogil=True)
def push_range(ctrl, pool, start, count):
    """Producer loop: record i carries ticks=i, function_id=i, depth=i."""
    for i in range(start, start + count):
        index_ring_push(ctrl, pool, np.uint64(i), np.uint64(i), make_kind_depth(1, i))


@intrinsic
def _as_ptr(typingctx, addr):
    """An integer address as a uint64 pointer (what the hook does with CTRL_*_PTR)."""
    sig = types.CPointer(types.uint64)(addr)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return sig, codegen


def channel(cap=8, count=4, detail_bytes=128, detail_count=3, **kw):
    kw.setdefault("ring_growth", 1)  # a fixed pool: growth is tests/test_drain_growth.py's
    cfg = RingConfig(ring_capacity=cap, ring_count=count, detail_ring_bytes=detail_bytes, detail_ring_count=detail_count, **kw)
    return ThreadChannel(0, cfg, 123, "t")


def take(ch):
    n = ch.config.index_pool_records
    t, f, k = (np.empty(n, np.uint64) for _ in range(3))
    got, start = index_ring_take(ch.ctrl, ch.index_pool, t, f, k)
    got = int(got)
    return int(start), t[:got].copy(), f[:got].copy(), k[:got].copy()


def drops(ch, reason, lane=L.CTRL_INDEX_DROPS):
    return int(ch.ctrl[lane + reason])


def test_push_take_round_trip_fields():
    ch = channel()
    push_range(ch.ctrl, ch.index_pool, 0, 20)
    start, t, f, k = take(ch)
    assert start == 0
    assert t.tolist() == list(range(20)) and f.tolist() == list(range(20))
    assert ((k & 0xFFFFFFFF) == 1).all() and (k >> 32).tolist() == list(range(20))
    assert int(ch.ctrl[L.CTRL_INDEX_WRITE_POS]) == 20 == int(ch.ctrl[L.CTRL_INDEX_READ_POS])
    # records are RING_RECORD_DTYPE seen as 3 words
    rec = ch.index_pool.view(L.RING_RECORD_DTYPE).reshape(-1)
    assert rec["function_id"][3] == 3 and rec["call_depth"][3] == 3 and rec["event_kind"][3] == 1
    assert take(ch)[1].size == 0


def test_partial_ring_is_taken_in_place_and_producer_continues():
    ch = channel(cap=8, count=4)
    push_range(ch.ctrl, ch.index_pool, 0, 5)
    assert take(ch)[2].tolist() == [0, 1, 2, 3, 4]
    push_range(ch.ctrl, ch.index_pool, 5, 20)
    start, _, f, _ = take(ch)
    assert start == 5 and f.tolist() == list(range(5, 25))
    assert drops(ch, L.DROP_POOL_EXHAUSTED) == 0


def test_pool_exhausted_drops_oldest_rings_exactly():
    ch = channel(cap=8, count=4)  # 32 records
    push_range(ch.ctrl, ch.index_pool, 0, 100)
    start, _, f, _ = take(ch)
    dropped = drops(ch, L.DROP_POOL_EXHAUSTED)
    assert dropped + f.size == 100
    # the newest survive, contiguous, ending with the last record pushed
    assert f.tolist() == list(range(start, 100)) and start == dropped
    assert f.size > 24  # at most one ring (the active one being refilled) short of the pool


def test_drop_only_what_the_drain_has_not_consumed():
    ch = channel(cap=8, count=4)
    push_range(ch.ctrl, ch.index_pool, 0, 30)
    take(ch)  # consumes 0..29, including part of the active ring
    push_range(ch.ctrl, ch.index_pool, 30, 40)  # 70 total: pool of 32 overflows again
    _start, _, f, _ = take(ch)
    assert drops(ch, L.DROP_POOL_EXHAUSTED) + 30 + f.size == 70
    assert f[-1] == 69 and (np.diff(f.astype(np.int64)) == 1).all()


def test_rings_submitted_and_active_ring():
    ch = channel(cap=8, count=4)
    push_range(ch.ctrl, ch.index_pool, 0, 8)
    assert int(ch.ctrl[L.CTRL_INDEX_RINGS_SUBMITTED]) == 0
    push_range(ch.ctrl, ch.index_pool, 8, 9)
    assert int(ch.ctrl[L.CTRL_INDEX_RINGS_SUBMITTED]) == 2
    assert int(ch.ctrl[L.CTRL_INDEX_ACTIVE_RING]) == 2


def test_watermarks_hysteresis():
    ch = channel(cap=8, count=4, high_watermark=0.75, low_watermark=0.25)  # high 24, low 8
    c = ch.ctrl
    assert int(c[L.CTRL_INDEX_WM_HIGH]) == 24 and int(c[L.CTRL_INDEX_WM_LOW]) == 8
    push_range(c, ch.index_pool, 0, 25)  # the switch at 24 sees 24 waiting
    assert int(c[L.CTRL_INDEX_WM_STATE]) == L.WM_HIGH and int(c[L.CTRL_INDEX_WM_CROSSINGS]) == 1
    watermark_update(c, np.uint64(16))  # between the marks: stays high
    assert int(c[L.CTRL_INDEX_WM_STATE]) == L.WM_HIGH
    take(ch)
    watermark_update(c, np.uint64(0))
    assert int(c[L.CTRL_INDEX_WM_STATE]) == L.WM_NORMAL
    push_range(c, ch.index_pool, 25, 8)  # little backlog: no new crossing
    assert int(c[L.CTRL_INDEX_WM_CROSSINGS]) == 1
    assert int(c[L.CTRL_INDEX_HIGH_WATER]) == 24


def test_discard_counts_what_is_waiting():
    ch = channel()
    push_range(ch.ctrl, ch.index_pool, 0, 11)
    assert int(index_ring_discard(ch.ctrl)) == 11
    assert take(ch)[1].size == 0


def test_control_block_addresses_work_from_nopython_code():
    """What the capture hook does: rebuild ctrl and pool from raw addresses."""
    ch = channel(cap=16, count=2)

    @njit
    def hook_like(ctrl_addr, n):
        # the fixed slots, then the ring map (its length - 1 is in the fixed slots)
        words = L.CTRL_INDEX_RING_MAP + carray(_as_ptr(ctrl_addr), L.CTRL_SLOTS)[L.CTRL_INDEX_RING_MAP_MASK] + 1
        ctrl = carray(_as_ptr(ctrl_addr), words)
        rows = np.intp(ctrl[L.CTRL_INDEX_RING_CAPACITY] * ctrl[L.CTRL_INDEX_RING_COUNT])
        pool = carray(_as_ptr(ctrl[L.CTRL_INDEX_POOL_PTR]), (rows, 3))
        for i in range(n):
            index_ring_push(ctrl, pool, np.uint64(100 + i), np.uint64(7), np.uint64(2))

    hook_like(ch.ctrl.ctypes.data, 5)
    _, t, f, k = take(ch)
    assert t.tolist() == [100, 101, 102, 103, 104] and set(f.tolist()) == {7} and set(k.tolist()) == {2}


def test_concurrent_producer_and_drain_account_exactly():
    """A nogil producer races the drain on a tiny pool: nothing lost unaccounted, order kept."""
    ch = channel(cap=64, count=4)
    total = 3_000_000
    done = threading.Event()

    def produce():
        push_range(ch.ctrl, ch.index_pool, 0, total)
        done.set()

    th = threading.Thread(target=produce)
    th.start()
    seen = []
    while True:
        finished = done.is_set()
        _, _, f, _ = take(ch)
        if f.size:
            seen.append(f)
        if finished:
            break
    th.join()
    got = np.concatenate(seen) if seen else np.empty(0, np.uint64)
    assert got.size + drops(ch, L.DROP_POOL_EXHAUSTED) == total
    assert (np.diff(got.astype(np.int64)) > 0).all()
    assert got[-1] == total - 1
    assert int(ch.ctrl[L.CTRL_INDEX_READ_POS]) == total


# ----------------------------------------------------------------- detail lane


def dtake(ch, limit):
    nbytes = ch.config.detail_pool_bytes
    k = nbytes // 16 + 1
    idx, ty, fl = np.empty(k, np.uint64), np.empty(k, np.uint16), np.empty(k, np.uint16)
    offs, pay = np.empty(k + 1, np.int64), np.empty(nbytes, np.uint8)
    m, _nb = detail_ring_take(ch.ctrl, ch.detail_words, ch.detail_bytes, np.uint64(limit), idx, ty, fl, offs, pay)
    return [(int(idx[i]), int(ty[i]), int(fl[i]), bytes(pay[offs[i] : offs[i + 1]])) for i in range(m)]


def dpush(ch, index_pos, data, event_type=3, flags=0):
    arr = np.frombuffer(data, np.uint8) if data else np.empty(0, np.uint8)
    return detail_ring_push(ch.ctrl, ch.detail_words, ch.detail_bytes, index_pos, event_type, flags, arr, 0, arr.size)


def test_detail_push_take_and_limit():
    ch = channel(detail_bytes=128, detail_count=3)
    assert dpush(ch, 0, b"abc") and dpush(ch, 2, b"", 4, 7) and dpush(ch, 5, b"x" * 40)
    assert dtake(ch, 3) == [(0, 3, 0, b"abc"), (2, 4, 7, b"")]
    # the record whose index event is not taken yet stays
    assert dtake(ch, 5) == []
    assert dtake(ch, 6) == [(5, 3, 0, b"x" * 40)]
    assert int(ch.ctrl[L.CTRL_DETAIL_RECORDS]) == 3


def test_detail_records_never_straddle_rings():
    ch = channel(detail_bytes=64, detail_count=4)
    payloads = [bytes([i]) * (i * 5 % 41) for i in range(10)]
    out = []
    for i, p in enumerate(payloads):
        assert dpush(ch, i, p)
        out += dtake(ch, i + 1)
    assert [o[3] for o in out] == payloads and [o[0] for o in out] == list(range(10))


def test_detail_too_big_is_ring_full():
    ch = channel(detail_bytes=64, detail_count=2)
    assert not dpush(ch, 0, b"y" * 49)  # 16 + 49 > 64
    assert dpush(ch, 1, b"y" * 48)
    assert drops(ch, L.DROP_RING_FULL, L.CTRL_DETAIL_DROPS) == 1
    assert int(ch.ctrl[L.CTRL_DETAIL_RECORDS]) == 2
    assert len(dtake(ch, 10)) == 1


def test_detail_pool_exhausted_drops_oldest_counted_in_records():
    ch = channel(detail_bytes=64, detail_count=3)
    for i in range(50):
        assert dpush(ch, i, b"z" * 10)  # 32 bytes each: 2 per ring
    got = dtake(ch, 1000)
    lost = drops(ch, L.DROP_POOL_EXHAUSTED, L.CTRL_DETAIL_DROPS)
    assert lost + len(got) == 50
    assert [g[0] for g in got] == list(range(50 - len(got), 50))


def test_detail_disabled_lane_refuses():
    ch = channel(detail=False)
    assert not dpush(ch, 0, b"a")
    assert drops(ch, L.DROP_RING_FULL, L.CTRL_DETAIL_DROPS) == 1


# -------------------------------------------------------------- drain kernels


def test_encode_converts_clamps_and_honours_ns_flag():
    ev = np.zeros(4, L.INDEX_EVENT_DTYPE)
    ns = np.array([10, 20, 5, 40], np.uint64)
    raw = np.array([0, 0, 0, 30], np.uint64)
    fid = np.array([7, 8, 9, 10], np.uint64)
    kd = np.array([1 | (3 << 32), 2, 1, 3 | L.RING_KIND_TIMESTAMP_NS], np.uint64)
    last, clamped = encode_ring_records(4, ns, raw, fid, kd, 5, np.uint64(0), ev)
    assert ev["timestamp_ns"].tolist() == [10, 20, 20, 30]
    assert clamped == 1 and last == 30
    assert ev["event_kind"].tolist() == [1, 2, 1, 3] and ev["call_depth"].tolist() == [3, 0, 0, 0]
    assert ev["function_id"].tolist() == [7, 8, 9, 10]
    assert (ev["detail_seq"] == L.NO_DETAIL).all() and (ev["thread_id"] == 5).all()


def test_pair_details_flags_orphans_and_repeats():
    pos = np.empty(4, np.int64)
    keep = np.empty(4, np.bool_)
    kept = pair_details(4, np.array([8, 10, 12, 12], np.uint64), np.uint64(10), 5, pos, keep)
    assert kept == 2 and pos[:2].tolist() == [0, 2] and keep.tolist() == [False, True, True, False]


def test_ring_config_validation():
    with pytest.raises(AtfV2Error):
        RingConfig(ring_count=1)
    with pytest.raises(AtfV2Error):
        RingConfig(detail_ring_bytes=100)
    with pytest.raises(AtfV2Error):
        RingConfig(high_watermark=0.2, low_watermark=0.5)
