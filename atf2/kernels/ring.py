"""Ring kernels: producers push raw records, the drain takes them out.

The contract (slots, pools, drop reasons) is the "thread control block"
section of ``atf2.layout``; read that first. In short: each lane of a thread is
a circle of fixed rings in one preallocated pool (the index lane's pool can
grow, its ring map says which slot holds which ring); positions are absolute and
only grow; the producer publishes WRITE_POS after storing a record; the drain
copies [READ_POS, WRITE_POS) then moves READ_POS with a compare-and-swap; the
producer, when every ring is still waiting, reclaims the oldest ring by moving
READ_POS itself with a compare-and-swap (drop-oldest) and counts what it
discarded. Neither side ever waits for the other.

Hot path: ``index_ring_push`` is inlined into its caller (``emit``, the
benchmarks' producers): three loads, one compare, three stores and a release
store in the common case. Everything else (switching rings, reclaiming,
watermarks) sits in ``index_ring_advance``, reached once per ring. The capture
hook uses ``index_ring_push_raw``, the same steps on raw pointers with the
slow path behind the C ABI (see there why).

Memory order: WRITE_POS is stored with release semantics and loaded by the
drain with acquire semantics, so a record is complete before it is visible.
The compare-and-swap is sequentially consistent. On x86_64 these compile to a
plain store, a plain load and ``lock cmpxchg``.

These kernels know nothing of threads, files or sessions.
"""

from __future__ import annotations

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core import cgutils
from numba.core import config as numba_config
from numba.core.errors import NumbaError
from numba.core.types import ExternalFunction
from numba.extending import intrinsic

from ..clock import interpolate, locate_segment, ticks
from ..layout import (
    CTRL_DETAIL_ACTIVE_END,
    CTRL_DETAIL_ACTIVE_RING,
    CTRL_DETAIL_DROPS,
    CTRL_DETAIL_HIGH_WATER,
    CTRL_DETAIL_READ_POS,
    CTRL_DETAIL_RECORDS,
    CTRL_DETAIL_RING_BYTES,
    CTRL_DETAIL_RING_COUNT,
    CTRL_DETAIL_RINGS_SUBMITTED,
    CTRL_DETAIL_ROW_DELTA,
    CTRL_DETAIL_WRITE_POS,
    CTRL_ENABLED,
    CTRL_INDEX_ACTIVE_END,
    CTRL_INDEX_ACTIVE_RING,
    CTRL_INDEX_DROPS,
    CTRL_INDEX_FRESH_END,
    CTRL_INDEX_FRESH_NEXT,
    CTRL_INDEX_GROWTH_BUDGET_PTR,
    CTRL_INDEX_GROWTH_REFUSED,
    CTRL_INDEX_HIGH_WATER,
    CTRL_INDEX_POOL_PTR,
    CTRL_INDEX_READ_POS,
    CTRL_INDEX_RING_CAPACITY,
    CTRL_INDEX_RING_COUNT,
    CTRL_INDEX_RING_COUNT_TARGET,
    CTRL_INDEX_RING_MAP,
    CTRL_INDEX_RING_MAP_MASK,
    CTRL_INDEX_RINGS_SUBMITTED,
    CTRL_INDEX_ROW_DELTA,
    CTRL_INDEX_WM_CROSSINGS,
    CTRL_INDEX_WM_HIGH,
    CTRL_INDEX_WM_LOW,
    CTRL_INDEX_WM_STATE,
    CTRL_INDEX_WRITE_POS,
    DETAIL_RING_ALIGN,
    DETAIL_RING_FLAGS_SHIFT,
    DETAIL_RING_HEADER_SIZE,
    DETAIL_RING_TYPE_SHIFT,
    DROP_POOL_EXHAUSTED,
    DROP_RING_FULL,
    INDEX_EVENT_SIZE,
    NO_DETAIL,
    RING_KIND_MASK,
    RING_KIND_TIMESTAMP_NS,
    RING_RECORD_WORDS,
    WM_HIGH,
    WM_NORMAL,
)
from .crc import _K1, _K2, _load, fold_finish, table_bytes
from .crc import _M32 as _CRC_M32

_U64 = ir.IntType(64)


# ---------------------------------------------------------------------------
# Atomics on one element of a uint64 array
# ---------------------------------------------------------------------------


def _element_pointer(context, builder, arrty, arr, idx, idxty):
    idx = context.cast(builder, idx, idxty, types.intp)
    if isinstance(arrty, types.CPointer):  # a raw uint64 pointer (the capture hook's control block)
        return builder.gep(arr, [idx])
    ary = context.make_array(arrty)(context, builder, arr)
    return cgutils.get_item_pointer(context, builder, arrty, ary, [idx])


@intrinsic
def u64_pointer(typingctx, addr):
    """An integer as a uint64 pointer (for ``numba.carray``, or indexed as it is)."""
    sig = types.CPointer(types.uint64)(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(64).as_pointer())

    return sig, codegen


@intrinsic
def atomic_load(typingctx, arr, idx):
    """``arr[idx]`` with acquire ordering (arr: uint64 array)."""
    sig = types.uint64(arr, idx)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1], signature.args[1])
        return builder.load_atomic(ptr, "acquire", 8)

    return sig, codegen


@intrinsic
def atomic_store(typingctx, arr, idx, value):
    """``arr[idx] = value`` with release ordering (arr: uint64 array or pointer)."""
    sig = types.void(arr, idx, value)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1], signature.args[1])
        val = context.cast(builder, args[2], signature.args[2], types.uint64)
        builder.store_atomic(val, ptr, "release", 8)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def atomic_cas(typingctx, arr, idx, expected, new):
    """Compare-and-swap ``arr[idx]``: returns the old value (== expected on success)."""
    sig = types.uint64(arr, idx, expected, new)

    def codegen(context, builder, signature, args):
        ptr = _element_pointer(context, builder, signature.args[0], args[0], args[1], signature.args[1])
        exp = context.cast(builder, args[2], signature.args[2], types.uint64)
        new_val = context.cast(builder, args[3], signature.args[3], types.uint64)
        res = builder.cmpxchg(ptr, exp, new_val, "seq_cst", "seq_cst")
        return builder.extract_value(res, 0)

    return sig, codegen


_ONE = np.uint64(1)
_TWO = np.uint64(2)
_ZERO = np.uint64(0)
_RECORD_WORDS = np.uint64(RING_RECORD_WORDS)
_HDR = np.uint64(DETAIL_RING_HEADER_SIZE)
_ALIGN_UP = np.uint64(DETAIL_RING_ALIGN - 1)
_ALIGN_MASK = ~np.uint64(DETAIL_RING_ALIGN - 1)
_LEN_MASK = np.uint64(0xFFFFFFFF)
_U16_MASK = np.uint64(0xFFFF)
_EIGHT = np.uint64(8)
_S32 = np.uint64(32)
_NO_DETAIL_HI = np.uint64(NO_DETAIL) << np.uint64(32)


# ---------------------------------------------------------------------------
# Producer side, index lane
# ---------------------------------------------------------------------------


@njit(inline="always", nogil=True)
def index_ring_push(ctrl, pool, ts, function_id, kind_depth) -> None:
    """Append one raw record (ticks, function id, kind | depth << 32) to the thread's index lane.

    Never blocks, never allocates. When the active ring is full the next one
    is taken out of line (``index_ring_advance``), dropping the oldest waiting
    ring if the drain has not freed any.
    """
    w = ctrl[CTRL_INDEX_WRITE_POS]
    if w >= ctrl[CTRL_INDEX_ACTIVE_END]:
        index_ring_advance(ctrl)
    row = w - ctrl[CTRL_INDEX_ROW_DELTA]
    pool[row, 0] = ts
    pool[row, 1] = function_id
    pool[row, 2] = kind_depth
    atomic_store(ctrl, CTRL_INDEX_WRITE_POS, w + _ONE)


def _index_ring_advance_c(ctrl_addr):  # pragma: no cover - native code, run by the capture hook
    words = u64_pointer(ctrl_addr)
    index_ring_advance(carray(words, CTRL_INDEX_RING_MAP + words[CTRL_INDEX_RING_MAP_MASK] + 1))


# ``index_ring_advance`` behind the C ABI, for ``index_ring_push_raw``, which
# calls it as a plain C function by a symbol the JIT linker resolves in this
# process (cached code too). Called as a Numba function it would return a
# status its caller must pass on: inside the capture hook, Numba's C wrapper
# would then check a status after every profile event (~15 instructions,
# C-function events included).
_ADVANCE_SYMBOL = "atf2_index_ring_advance"
_call_index_ring_advance_c = ExternalFunction(_ADVANCE_SYMBOL, types.void(types.uint64))


@njit(inline="always", nogil=True)
def index_ring_push_raw(ctrl_addr, ctrl, ts, function_id, kind_depth):  # pragma: no cover - inlined into the capture hook
    """``index_ring_push`` on raw pointers (``ctrl``: ``u64_pointer(ctrl_addr)``) for the capture hook.

    Nothing here can fail in Numba's eyes (no array views; the slow path
    through the C ABI), so the hook's C wrapper checks no status.
    """
    w = ctrl[CTRL_INDEX_WRITE_POS]
    if w >= ctrl[CTRL_INDEX_ACTIVE_END]:
        _call_index_ring_advance_c(ctrl_addr)
    pool = u64_pointer(ctrl[CTRL_INDEX_POOL_PTR])
    row = (w - ctrl[CTRL_INDEX_ROW_DELTA]) * _RECORD_WORDS
    pool[row] = ts
    pool[row + _ONE] = function_id
    pool[row + _TWO] = kind_depth
    atomic_store(ctrl, CTRL_INDEX_WRITE_POS, w + _ONE)


@njit(inline="always", nogil=True)
def ring_map_word(ctrl, ring):
    """Where in ``ctrl`` the ring map holds index ring ``ring``'s slot."""
    return np.uint64(CTRL_INDEX_RING_MAP) + (ring & ctrl[CTRL_INDEX_RING_MAP_MASK])


@njit(inline="always", nogil=True)
def ring_slot(ctrl, ring):
    """The pool slot holding index ring ``ring`` (rows [slot * capacity, (slot + 1) * capacity))."""
    return ctrl[ring_map_word(ctrl, ring)]


@njit(inline="always", nogil=True)
def _take_growth(ctrl, records):
    """Take ``records`` out of the session's growth budget (CTRL_INDEX_GROWTH_BUDGET_PTR); False when it has no room."""
    addr = ctrl[CTRL_INDEX_GROWTH_BUDGET_PTR]
    if addr == _ZERO:
        return True
    budget = u64_pointer(addr)
    left = atomic_load(budget, 0)
    while left >= records:
        seen = atomic_cas(budget, 0, left, left - records)
        if seen == left:
            return True
        left = seen
    ctrl[CTRL_INDEX_GROWTH_REFUSED] += _ONE
    return False


@njit(cache=True, nogil=True)
def give_back_growth(budget, records) -> None:
    """Return ``records`` to a growth budget (``budget``: its uint64[1] array) once a grown pool is let go."""
    left = atomic_load(budget, 0)
    while True:
        seen = atomic_cas(budget, 0, left, left + np.uint64(records))
        if seen == left:
            return
        left = seen


@njit(cache=True, nogil=True)
def index_ring_advance(ctrl) -> None:
    """Slow path of the push: the active ring is full (or none yet): make the next ring active.

    Ring L = w // capacity goes to a slot no waiting ring holds: a fresh one
    (never used since the pool last grew) while any is left, else the slot of
    ring L - count, which the drain must have consumed. If it has not, the
    pool is exhausted: the oldest waiting ring is reclaimed (READ_POS moved to
    its end with a CAS) and its unconsumed records counted as dropped.

    Why this keeps slots apart: the last ``count`` rings always hold
    ``count`` distinct slots (fresh slots are distinct from everything, and
    "the slot of ring L - count" repeats a window that was distinct), and a
    ring's slot is reused only ``count`` rings later, when the reclaim loop
    has made sure it is consumed.
    """
    w = ctrl[CTRL_INDEX_WRITE_POS]
    cap = ctrl[CTRL_INDEX_RING_CAPACITY]
    count = ctrl[CTRL_INDEX_RING_COUNT]
    c = atomic_load(ctrl, CTRL_INDEX_READ_POS)
    # Backlog as the producer sees it before any reclaim: this is what the
    # watermarks and the high-water mark describe.
    waiting = w - c
    # Growth, decided here at the switch, not by the drain: a backlog over
    # the low watermark means the drain is not keeping up (it waits for a
    # core, the disk stalls), and a drain that does not run cannot ask.
    # RING_COUNT_TARGET: the most rings the pool array has rows for; the
    # growth also comes out of the session's budget, shared by every thread
    # (memory stays bounded however many threads outrun the drain). The
    # new slots [count, 2 * count) are fresh: the next rings take them in
    # turn, so no waiting ring moves, wherever the backlog lies.
    if waiting >= ctrl[CTRL_INDEX_WM_LOW] and count < ctrl[CTRL_INDEX_RING_COUNT_TARGET] and _take_growth(ctrl, cap * count):
        count = count * np.uint64(2)
        ctrl[CTRL_INDEX_RING_COUNT] = count
        ctrl[CTRL_INDEX_FRESH_END] = count
        # the watermarks follow the pool at once (the drain would only
        # rescale them at its next visit: meanwhile the old low mark would
        # make the next switch double the pool again)
        ctrl[CTRL_INDEX_WM_HIGH] = ctrl[CTRL_INDEX_WM_HIGH] * np.uint64(2)
        ctrl[CTRL_INDEX_WM_LOW] = ctrl[CTRL_INDEX_WM_LOW] * np.uint64(2)
    total = cap * count
    while w + cap - c > total:
        oldest_end = (c // cap + _ONE) * cap
        if atomic_cas(ctrl, CTRL_INDEX_READ_POS, c, oldest_end) == c:
            ctrl[CTRL_INDEX_DROPS + DROP_POOL_EXHAUSTED] += oldest_end - c
            c = oldest_end
        else:
            c = atomic_load(ctrl, CTRL_INDEX_READ_POS)
    ring = w // cap
    slot = ctrl[CTRL_INDEX_FRESH_NEXT]
    if slot < ctrl[CTRL_INDEX_FRESH_END]:
        ctrl[CTRL_INDEX_FRESH_NEXT] = slot + _ONE
    else:
        slot = ring_slot(ctrl, ring - count)
    # the map entry before any record of the ring is published (the drain
    # reads entries only below the WRITE_POS it loaded with acquire)
    ctrl[ring_map_word(ctrl, ring)] = slot
    ctrl[CTRL_INDEX_ROW_DELTA] = w - slot * cap
    ctrl[CTRL_INDEX_ACTIVE_RING] = slot
    if w > _ZERO:
        ctrl[CTRL_INDEX_RINGS_SUBMITTED] += _ONE
    if waiting > ctrl[CTRL_INDEX_HIGH_WATER]:
        ctrl[CTRL_INDEX_HIGH_WATER] = waiting
    # Watermarks with hysteresis: the producer raises the state, the drain
    # lowers it once the backlog is under the low mark (see watermark_update).
    if waiting >= ctrl[CTRL_INDEX_WM_HIGH]:  # noqa: SIM102 - the CAS (a write) only above the mark
        if atomic_cas(ctrl, CTRL_INDEX_WM_STATE, WM_NORMAL, WM_HIGH) == WM_NORMAL:
            ctrl[CTRL_INDEX_WM_CROSSINGS] += _ONE
    # Publish the new end last: until then the fast path keeps calling us.
    ctrl[CTRL_INDEX_ACTIVE_END] = w + cap


def _build_index_ring_advance_c() -> None:
    """Compile (or load from Numba's cache) the C-ABI advance and give the JIT linker its symbol.

    Built here, below ``index_ring_advance``, which it calls. A ``cfunc`` is
    compiled even under ``NUMBA_DISABLE_JIT`` (the capture hooks' are loaded
    from the cache then, and need this symbol); only where it cannot be (no
    JIT and no cache) is it left out: nothing but the hook calls it.
    """
    try:
        advance = cfunc(types.void(types.uint64), nopython=True, cache=True)(_index_ring_advance_c)
    except NumbaError:  # pragma: no cover - NUMBA_DISABLE_JIT with a cold cache
        if not numba_config.DISABLE_JIT:
            raise
        return
    _KEEP_ALIVE.append(advance)
    llvm.add_symbol(_ADVANCE_SYMBOL, advance.address)


_KEEP_ALIVE: list = []
_build_index_ring_advance_c()


@njit(inline="always", nogil=True)
def make_kind_depth(kind, depth):
    """The ring record's third word."""
    return (np.uint64(kind) & np.uint64(RING_KIND_MASK)) | (np.uint64(depth) << np.uint64(32))


# ---------------------------------------------------------------------------
# Producer side, detail lane
# ---------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def _detail_records_between(ctrl, dwords, start, end):
    """Count detail records in [start, end) of the arena (absolute byte positions, one ring)."""
    rb = ctrl[CTRL_DETAIL_RING_BYTES]
    total = rb * ctrl[CTRL_DETAIL_RING_COUNT]
    n = _ZERO
    p = start
    while p < end:
        if end - p < _HDR:
            break
        word1 = dwords[(p % total) // _EIGHT + _ONE]
        length = word1 & _LEN_MASK
        if length == _ZERO:
            break
        n += _ONE
        p += (length + _ALIGN_UP) & _ALIGN_MASK
    return n


@njit(cache=True, nogil=True)
def detail_ring_advance(ctrl, dwords) -> None:
    """Close the active detail ring (marking its unused tail) and make the next one active.

    Same drop-oldest rule as the index lane; the reclaimed records are
    counted one by one (their lengths are in the arena, stable: only this
    producer writes there).
    """
    w = ctrl[CTRL_DETAIL_WRITE_POS]
    end = ctrl[CTRL_DETAIL_ACTIVE_END]
    rb = ctrl[CTRL_DETAIL_RING_BYTES]
    total = rb * ctrl[CTRL_DETAIL_RING_COUNT]
    if w < end:
        # Unused tail: a zero-length header tells the drain to skip to the
        # ring's end (a tail shorter than a header is skipped by rule).
        if end - w >= _HDR:
            row = (w - ctrl[CTRL_DETAIL_ROW_DELTA]) // _EIGHT
            dwords[row] = _ZERO
            dwords[row + _ONE] = _ZERO
        w = end
        atomic_store(ctrl, CTRL_DETAIL_WRITE_POS, w)
    c = atomic_load(ctrl, CTRL_DETAIL_READ_POS)
    while w + rb - c > total:
        oldest_end = (c // rb + _ONE) * rb
        lost = _detail_records_between(ctrl, dwords, c, oldest_end)
        if atomic_cas(ctrl, CTRL_DETAIL_READ_POS, c, oldest_end) == c:
            ctrl[CTRL_DETAIL_DROPS + DROP_POOL_EXHAUSTED] += lost
            c = oldest_end
        else:
            c = atomic_load(ctrl, CTRL_DETAIL_READ_POS)
    ring = (w // rb) % ctrl[CTRL_DETAIL_RING_COUNT]
    ctrl[CTRL_DETAIL_ROW_DELTA] = w - ring * rb
    ctrl[CTRL_DETAIL_ACTIVE_RING] = ring
    if w > _ZERO:
        ctrl[CTRL_DETAIL_RINGS_SUBMITTED] += _ONE
    if w - c > ctrl[CTRL_DETAIL_HIGH_WATER]:
        ctrl[CTRL_DETAIL_HIGH_WATER] = w - c
    ctrl[CTRL_DETAIL_ACTIVE_END] = w + rb


@njit(cache=True, nogil=True)
def detail_ring_push(ctrl, dwords, dbytes, index_pos, event_type, flags, payload, start, length) -> bool:
    """Store ``payload[start:start+length]`` as the detail of index-lane position ``index_pos``.

    Push the detail *before* its index record: the drain reads the index
    lane's WRITE_POS first, so every detail of a visible index record is
    visible too. ``dwords``/``dbytes`` are uint64 and uint8 views of the same
    arena. Returns False when the payload can never fit a ring (counted as
    DROP_RING_FULL); the index event is then recorded without detail.
    """
    ctrl[CTRL_DETAIL_RECORDS] += _ONE
    need = _HDR + np.uint64(length)
    padded = (need + _ALIGN_UP) & _ALIGN_MASK
    if padded > ctrl[CTRL_DETAIL_RING_BYTES] or ctrl[CTRL_DETAIL_RING_COUNT] == _ZERO:
        ctrl[CTRL_DETAIL_DROPS + DROP_RING_FULL] += _ONE
        return False
    if ctrl[CTRL_DETAIL_WRITE_POS] + padded > ctrl[CTRL_DETAIL_ACTIVE_END]:
        detail_ring_advance(ctrl, dwords)
    w = ctrl[CTRL_DETAIL_WRITE_POS]
    row = w - ctrl[CTRL_DETAIL_ROW_DELTA]
    word = row // _EIGHT
    dwords[word] = np.uint64(index_pos)
    dwords[word + _ONE] = (
        need
        | (np.uint64(event_type) << np.uint64(DETAIL_RING_TYPE_SHIFT))
        | (np.uint64(flags) << np.uint64(DETAIL_RING_FLAGS_SHIFT))
    )
    base = row + _HDR
    for k in range(length):
        dbytes[base + np.uint64(k)] = payload[start + k]
    atomic_store(ctrl, CTRL_DETAIL_WRITE_POS, w + padded)
    return True


# ---------------------------------------------------------------------------
# Explicit events (atf2.emit / emit_batch): stamped with ticks() like the hook
# ---------------------------------------------------------------------------


@njit(cache=True, nogil=True)
def emit_one(ctrl, pool, function_id, kind_depth) -> None:
    # Tested here, not only by the caller: between the caller's Python-level
    # test and this push, stop() may have closed the lane (a record pushed
    # after the drain's final pass would be recorded but neither written nor
    # counted as dropped).
    if ctrl[CTRL_ENABLED] == 0:
        return
    index_ring_push(ctrl, pool, ticks(), function_id, kind_depth)


@njit(cache=True, nogil=True)
def emit_one_detail(ctrl, pool, dwords, dbytes, function_id, kind_depth, event_type, payload) -> bool:
    if ctrl[CTRL_ENABLED] == 0:  # as in emit_one
        return False
    ts = ticks()
    stored = detail_ring_push(
        ctrl, dwords, dbytes, ctrl[CTRL_INDEX_WRITE_POS], event_type, 0, payload, 0, payload.shape[0]
    )
    index_ring_push(ctrl, pool, ts, function_id, kind_depth)
    return stored


@njit(cache=True, nogil=True)
def emit_many(ctrl, pool, dwords, dbytes, function_ids, kinds, depths, timestamps_ns, use_ns,
              has_detail, detail_types, payload, offsets) -> None:
    """Push a batch; row i's detail (if has_detail[i]) is payload[offsets[i]:offsets[i+1]]."""
    if ctrl[CTRL_ENABLED] == 0:  # as in emit_one
        return
    for i in range(function_ids.shape[0]):
        kd = make_kind_depth(kinds[i], depths[i])
        if use_ns:
            ts = np.uint64(timestamps_ns[i])
            kd |= np.uint64(RING_KIND_TIMESTAMP_NS)
        else:
            ts = ticks()
        if has_detail[i]:
            detail_ring_push(
                ctrl, dwords, dbytes, ctrl[CTRL_INDEX_WRITE_POS], detail_types[i], 0,
                payload, offsets[i], offsets[i + 1] - offsets[i],
            )
        index_ring_push(ctrl, pool, ts, function_ids[i], kd)


# ---------------------------------------------------------------------------
# Drain side (GIL released)
# ---------------------------------------------------------------------------


@njit(inline="always", nogil=True)
def ring_row(ctrl, position):
    """(pool row of absolute index position ``position``, the row where its ring ends, its ring).

    A reader walking the rows calls it again at the ring's end, with the
    next ring's first position: the next ring's rows are wherever the ring
    map puts them.
    """
    cap = ctrl[CTRL_INDEX_RING_CAPACITY]
    ring = position // cap
    start = ring_slot(ctrl, ring) * cap
    return start + position % cap, start + cap, ring


@njit(cache=True, nogil=True)
def index_ring_take(ctrl, pool, out_ticks, out_fid, out_kd):
    """Copy the oldest waiting index records (at most ``len(out_ticks)``) out of the pool and consume them.

    Returns (n, first absolute position). Copy first, then CAS READ_POS: if
    the producer reclaimed rows meanwhile the CAS fails and the copy is
    redone from the new READ_POS.
    """
    cap = ctrl[CTRL_INDEX_RING_CAPACITY]
    while True:
        c = atomic_load(ctrl, CTRL_INDEX_READ_POS)
        w = atomic_load(ctrl, CTRL_INDEX_WRITE_POS)
        n = w - c
        if n > np.uint64(out_ticks.shape[0]):
            n = np.uint64(out_ticks.shape[0])
        if n > _ZERO:
            row, ring_end, ring = ring_row(ctrl, c)
        for k in range(n):
            out_ticks[k] = pool[row, 0]
            out_fid[k] = pool[row, 1]
            out_kd[k] = pool[row, 2]
            row += _ONE
            if row == ring_end:
                row, ring_end, ring = ring_row(ctrl, (ring + _ONE) * cap)
        if atomic_cas(ctrl, CTRL_INDEX_READ_POS, c, c + n) == c:
            return n, c


@njit(cache=True, nogil=True)
def watermark_update(ctrl, waiting) -> None:
    """Drain side of the hysteresis: back to normal once the backlog is at or under the low mark."""
    if waiting <= ctrl[CTRL_INDEX_WM_LOW]:
        atomic_cas(ctrl, CTRL_INDEX_WM_STATE, WM_HIGH, WM_NORMAL)


@njit(cache=True, nogil=True)
def detail_ring_take(ctrl, dwords, dbytes, index_limit, out_index_pos, out_type, out_flags, out_offsets, out_payload):
    """Copy waiting detail records whose index position is below ``index_limit``; consume them.

    Stops at the first record whose index event the drain has not taken yet
    (it stays for the next cycle). Returns (n records, payload bytes). Record
    i's payload is out_payload[out_offsets[i]:out_offsets[i+1]]. ``out_*`` must
    hold a whole arena.
    """
    rb = ctrl[CTRL_DETAIL_RING_BYTES]
    total = rb * ctrl[CTRL_DETAIL_RING_COUNT]
    while True:
        c = atomic_load(ctrl, CTRL_DETAIL_READ_POS)
        w = atomic_load(ctrl, CTRL_DETAIL_WRITE_POS)
        p = c
        n = 0
        nbytes = 0
        out_offsets[0] = 0
        while p < w:
            ring_end = (p // rb + _ONE) * rb
            if ring_end - p < _HDR:
                p = ring_end
                continue
            row = p % total
            word = row // _EIGHT
            word1 = dwords[word + _ONE]
            length = word1 & _LEN_MASK
            if length == _ZERO:
                p = ring_end
                continue
            idx = dwords[word]
            if idx >= index_limit:
                break
            plen = np.int64(length - _HDR)
            src = np.int64(row + _HDR)
            for k in range(plen):
                out_payload[nbytes + k] = dbytes[src + k]
            out_index_pos[n] = idx
            out_type[n] = (word1 >> np.uint64(DETAIL_RING_TYPE_SHIFT)) & _U16_MASK
            out_flags[n] = (word1 >> np.uint64(DETAIL_RING_FLAGS_SHIFT)) & _U16_MASK
            nbytes += plen
            n += 1
            out_offsets[n] = nbytes
            p += (length + _ALIGN_UP) & _ALIGN_MASK
        if atomic_cas(ctrl, CTRL_DETAIL_READ_POS, c, p) == c:
            return n, nbytes


@njit(cache=True, nogil=True)
def encode_ring_records(n, ticks_ns, raw_ts, fid, kd, thread_id, last_ts, events):
    """Raw records -> INDEX_EVENT_DTYPE rows ``events[:n]`` (detail_seq = none, the writer links).

    ``ticks_ns``: the converted clock values; ``raw_ts``: the raw timestamp
    words (used as-is where the record carries RING_KIND_TIMESTAMP_NS). Keeps
    the thread's timestamps non-decreasing: a value below ``last_ts`` (an
    explicit timestamp older than a clock-stamped event, or a conversion
    wobble across anchors) is raised to it. Returns (new last_ts, clamped).
    """
    clamped = 0
    for i in range(n):
        word = kd[i]
        kind = word & np.uint64(RING_KIND_MASK)
        if kind & np.uint64(RING_KIND_TIMESTAMP_NS):
            ts = raw_ts[i]
            kind ^= np.uint64(RING_KIND_TIMESTAMP_NS)
        else:
            ts = ticks_ns[i]
        if ts < last_ts:
            ts = last_ts
            clamped += 1
        last_ts = ts
        e = events[i]
        e.timestamp_ns = ts
        e.function_id = fid[i]
        e.thread_id = thread_id
        e.event_kind = kind
        e.call_depth = word >> np.uint64(32)
        e.detail_seq = NO_DETAIL
    return last_ts, clamped


@njit(cache=True, nogil=True)
def pair_details(m, index_pos, start, n, positions, keep):
    """Map detail records to batch positions; flag the ones without a partner.

    A detail pairs with the index event at absolute position ``index_pos``,
    i.e. batch position ``index_pos - start``. Details whose event is not in
    the batch (dropped by drop-oldest before the drain got it) or that repeat
    a position are not kept. Returns the number kept; ``positions[:kept]``.
    """
    kept = 0
    prev = np.int64(-1)
    for j in range(m):
        p = np.int64(index_pos[j]) - np.int64(start)
        if index_pos[j] < start or p >= n or p <= prev:
            keep[j] = False
            continue
        keep[j] = True
        positions[kept] = p
        prev = p
        kept += 1
    return kept


@njit(cache=True, nogil=True)
def index_ring_discard(ctrl):
    """Consume every waiting index record without copying it; return how many."""
    while True:
        c = atomic_load(ctrl, CTRL_INDEX_READ_POS)
        w = atomic_load(ctrl, CTRL_INDEX_WRITE_POS)
        if atomic_cas(ctrl, CTRL_INDEX_READ_POS, c, w) == c:
            return w - c


# ---------------------------------------------------------------------------
# Drain side, fused: take + tick conversion + encoding (+ CRC) in one pass
# ---------------------------------------------------------------------------
#
# ``index_ring_take`` + ``TickConverter.convert`` + ``encode_ring_records`` +
# the writer's encode and CRC pass over every event five times through four
# staging arrays. The kernels below read each ring record once and write the
# finished 32-byte file record straight into the caller's staging buffer
# (``out``: INDEX_EVENT_DTYPE rows seen as uint64[n, 4] words, so the host
# must be little-endian like the format); the CRC variant folds each 4 KiB
# block into the CRC right after writing it, while it is in L1. Results are
# bit-identical to the separate kernels.
#
# Which records: those in [READ_POS, min(limit, READ_POS + len(out))). The
# drain reads WRITE_POS as ``limit`` *before* sampling its clock anchor, so
# every record taken was stamped before the anchor and converts by
# interpolation. Same copy-then-CAS protocol as ``index_ring_take``: if the
# producer reclaimed rows meanwhile, the pass is redone from the new READ_POS.
#
# Tick conversion: ``n_anchors`` 0 = identity (ticks are ns), 1 = identity
# slope from the one anchor, >= 2 = piecewise-linear as ``convert_ticks``,
# with the slope computed once per segment.

#: records encoded between two CRC folds (4 KiB of output: stays in L1)
_CRC_BLOCK_RECORDS = 128


@njit(cache=True, nogil=True)
def _encode_block(ctrl, pool, row, ring_end, ring, out, i, end, tid, last, clamped, seg, t0, n0, slope, lo, hi,
                  anchor_ticks, anchor_ns, n_anchors):
    """Encode ring rows from ``row`` into ``out[i:end]``; return the loop state after them.

    State: (row, ring_end, ring, last, clamped, seg, t0, n0, slope, lo, hi):
    the pool row, where its ring's rows end, that ring's number (the next
    ring's slot is looked up in the ring map there), and the segment the
    last converted tick fell in (lo == hi: none yet).
    """
    for k in range(i, end):
        word = pool[row, 2]
        kind = word & np.uint64(RING_KIND_MASK)
        ts = pool[row, 0]
        if kind & np.uint64(RING_KIND_TIMESTAMP_NS):
            kind ^= np.uint64(RING_KIND_TIMESTAMP_NS)
        elif n_anchors == 1:
            ts = anchor_ns[0] + (ts - anchor_ticks[0])
        elif n_anchors >= 2:
            if ts < lo or ts >= hi:
                seg, t0, n0, slope, lo, hi = locate_segment(ts, seg, anchor_ticks, anchor_ns, n_anchors)
            ts = interpolate(ts, t0, n0, slope)
        if ts < last:
            ts = last
            clamped += 1
        last = ts
        out[k, 0] = ts
        out[k, 1] = pool[row, 1]
        out[k, 2] = tid | (kind << _S32)
        out[k, 3] = (word >> _S32) | _NO_DETAIL_HI
        row += _ONE
        if row == ring_end:
            row, ring_end, ring = ring_row(ctrl, (ring + _ONE) * ctrl[CTRL_INDEX_RING_CAPACITY])
    return row, ring_end, ring, last, clamped, seg, t0, n0, slope, lo, hi


@njit(inline="always", nogil=True)
def _take_bounds(ctrl, limit, out):
    """(READ_POS, records to take, first pool row, where its ring's rows end, its ring)."""
    c = atomic_load(ctrl, CTRL_INDEX_READ_POS)
    n = limit - c if limit > c else _ZERO
    if n > np.uint64(out.shape[0]):
        n = np.uint64(out.shape[0])
    row = ring_end = ring = _ZERO
    if n > _ZERO:  # (no ring map entry before the first push)
        row, ring_end, ring = ring_row(ctrl, c)
    return c, np.int64(n), row, ring_end, ring


@njit(cache=True, nogil=True)
def index_ring_take_encoded(ctrl, pool, limit, out, thread_id, last_ts, anchor_ticks, anchor_ns, n_anchors):
    """Take waiting index records into ``out`` as finished file records; consume them.

    Returns (n, first absolute position, new last_ts, clamped). ``out[:n]``
    holds INDEX_EVENT_DTYPE rows: converted timestamps kept non-decreasing
    from ``last_ts`` (as ``encode_ring_records``), ``thread_id``, detail_seq
    NO_DETAIL. See the section comment above.
    """
    tid = np.uint64(thread_id) & _LEN_MASK
    limit = np.uint64(limit)
    while True:
        c, n, row, ring_end, ring = _take_bounds(ctrl, limit, out)
        row, ring_end, ring, last, clamped, _s, _t0, _n0, _sl, _lo, _hi = _encode_block(
            ctrl, pool, row, ring_end, ring, out, 0, n, tid, np.uint64(last_ts), 0, 0, _ZERO, _ZERO, 0.0, _ZERO, _ZERO,
            anchor_ticks, anchor_ns, n_anchors,
        )
        if n == 0 or atomic_cas(ctrl, CTRL_INDEX_READ_POS, c, c + np.uint64(n)) == c:
            return n, c, last, clamped


@intrinsic
def _fold_blocks(typingctx, lanes_addr, data_addr, nblocks):
    """Fold ``nblocks`` 64-byte blocks at ``data_addr`` into the four 128-bit CRC lanes at ``lanes_addr``.

    The lanes (8 u64: lo, hi of each) stay in vector registers for the whole
    loop, which ``kernels.crc._fold`` (u64 pairs in and out) cannot do: about
    1.5x its speed. Same constants and arithmetic as ``kernels.crc``.
    """
    sig = types.void(types.intp, types.intp, types.intp)

    def codegen(context, builder, signature, args):
        i8, i32, i64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
        vec = ir.VectorType(i64, 2)
        vptr = vec.as_pointer()
        clmul = builder.module.declare_intrinsic("llvm.x86.pclmulqdq", fnty=ir.FunctionType(vec, [vec, vec, i8]))
        lanes_ptr = builder.inttoptr(args[0], vptr)
        base, n = args[1], args[2]
        k = ir.Constant(vec, [ir.Constant(i64, int(_K1)), ir.Constant(i64, int(_K2))])
        start = [builder.load(builder.gep(lanes_ptr, [ir.Constant(i32, j)]), align=8) for j in range(4)]
        entry = builder.block
        loop = builder.append_basic_block("crc.fold")
        done = builder.append_basic_block("crc.done")
        builder.cbranch(builder.icmp_signed(">", n, ir.Constant(i64, 0)), loop, done)
        builder.position_at_end(loop)
        idx = builder.phi(i64)
        lanes = [builder.phi(vec) for _ in range(4)]
        idx.add_incoming(ir.Constant(i64, 0), entry)
        addr = builder.add(base, builder.mul(idx, ir.Constant(i64, 64)))
        folded = []
        for j in range(4):
            data = builder.load(builder.inttoptr(builder.add(addr, ir.Constant(i64, 16 * j)), vptr), align=1)
            lo = builder.call(clmul, [lanes[j], k, ir.Constant(i8, 0x00)])
            hi = builder.call(clmul, [lanes[j], k, ir.Constant(i8, 0x11)])
            folded.append(builder.xor(builder.xor(lo, hi), data))
            lanes[j].add_incoming(start[j], entry)
            lanes[j].add_incoming(folded[j], loop)
        nxt = builder.add(idx, ir.Constant(i64, 1))
        idx.add_incoming(nxt, loop)
        builder.cbranch(builder.icmp_signed("<", nxt, n), loop, done)
        builder.position_at_end(done)
        final = []
        for j in range(4):
            phi = builder.phi(vec)
            phi.add_incoming(start[j], entry)
            phi.add_incoming(folded[j], loop)
            final.append(phi)
        for j in range(4):
            builder.store(final[j], builder.gep(lanes_ptr, [ir.Constant(i32, j)]), align=8)
        return context.get_dummy_value()

    return sig, codegen


@njit(inline="always", nogil=True)
def _crc_advance(lanes, addr, pos, end, s):
    """Fold the whole 64-byte blocks of [pos, end) into ``lanes``; return the new pos.

    The first block (pos 0) loads the lanes, with the register ``s`` mixed in.
    """
    if pos == 0:
        if end < 64:
            return pos
        for j in range(8):
            lanes[j] = _load(addr + 8 * j)
        lanes[0] ^= s
        pos = 64
    blocks = (end - pos) // 64
    if blocks > 0:
        _fold_blocks(lanes.ctypes.data, addr + pos, blocks)
        pos += blocks * 64
    return pos


@njit(cache=True, nogil=True)
def index_ring_take_encoded_crc(ctrl, pool, limit, out, thread_id, last_ts, anchor_ticks, anchor_ns, n_anchors, crc):
    """``index_ring_take_encoded`` that also returns ``zlib.crc32(out[:n] bytes, crc)``.

    Returns (n, first absolute position, new last_ts, clamped, crc). Output
    is checksummed 4 KiB at a time right after it is written (PCLMULQDQ, see
    ``_fold_blocks``). Only where ``kernels.crc.kernel_ok()``.
    """
    tid = np.uint64(thread_id) & _LEN_MASK
    limit = np.uint64(limit)
    addr = out.ctypes.data
    lanes = np.empty(8, dtype=np.uint64)
    s = np.uint64(crc) ^ _CRC_M32
    while True:
        c, n, row, ring_end, ring = _take_bounds(ctrl, limit, out)
        last = np.uint64(last_ts)
        clamped = seg = 0
        t0 = n0 = lo = hi = _ZERO
        slope = 0.0
        pos = 0
        i = 0
        while i < n:
            end = min(i + _CRC_BLOCK_RECORDS, n)
            row, ring_end, ring, last, clamped, seg, t0, n0, slope, lo, hi = _encode_block(
                ctrl, pool, row, ring_end, ring, out, i, end, tid, last, clamped, seg, t0, n0, slope, lo, hi,
                anchor_ticks, anchor_ns, n_anchors,
            )
            pos = _crc_advance(lanes, addr, pos, end * INDEX_EVENT_SIZE, s)
            i = end
        if n == 0 or atomic_cas(ctrl, CTRL_INDEX_READ_POS, c, c + np.uint64(n)) == c:
            break
    nbytes = n * INDEX_EVENT_SIZE
    if pos >= 64:
        # what is left (an odd last record) folds 16 bytes at a time
        r = fold_finish(lanes[0], lanes[1], lanes[2], lanes[3], lanes[4], lanes[5], lanes[6], lanes[7], addr, pos, nbytes)
    else:
        r = table_bytes(s, addr, 0, nbytes)
    return n, c, last, clamped, (r ^ _CRC_M32) & _CRC_M32
