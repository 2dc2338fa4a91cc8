"""k-way merge of per-thread event arrays into the session's global order.

Order: ``timestamp_ns``, then thread (the position of the thread in the list,
which the session sorts by thread number), then index_seq. Each thread's
events are already in order, so the merge only compares the heads of the
threads: for a few threads a branch-free scan of the heads picks each event
(the winner changes almost every event when threads interleave, so branches
would mispredict), for many a two-level scan over blocks of threads. The state (``heads``) lives outside the kernel, so a session larger than
memory is merged in chunks of any size.

The thread arrays are separate memory maps. The kernel reads them through
their data addresses (``addrs``) and lengths (``lens``), which the caller takes
from live arrays it keeps referenced for the duration of the call; every read
is at ``addrs[j] + 32 * h`` with ``h < lens[j]``, inside the array. Going
through addresses rather than a typed list of arrays keeps reference counting
out of the inner loop, which is what bounds a merge of short runs.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ..layout import INDEX_EVENT_OFFSETS, INDEX_EVENT_SIZE

_MAX_TS = np.uint64(0xFFFFFFFFFFFFFFFF)
_OFF_TS = INDEX_EVENT_OFFSETS["timestamp_ns"]
_OFF_FN = INDEX_EVENT_OFFSETS["function_id"]
_OFF_TID = INDEX_EVENT_OFFSETS["thread_id"]
_OFF_KIND = INDEX_EVENT_OFFSETS["event_kind"]
_OFF_DEPTH = INDEX_EVENT_OFFSETS["call_depth"]
_OFF_DSEQ = INDEX_EVENT_OFFSETS["detail_seq"]


@intrinsic
def _load_u64(typingctx, addr):
    """The little-endian u64 at integer address ``addr``."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.load(ptr, align=4)

    return sig, codegen


@intrinsic
def _load_u32(typingctx, addr):
    """The little-endian u32 at integer address ``addr``."""
    sig = types.uint32(types.uint64)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(32).as_pointer())
        return builder.load(ptr, align=4)

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def _ts_at(addrs, lens, j, h):
    if h < lens[j]:
        return _load_u64(addrs[j] + np.uint64(h * INDEX_EVENT_SIZE + _OFF_TS))
    return _MAX_TS


#: up to this many threads a branch-free scan of the heads picks the next
#: event; above it, a two-level scan (blocks of BLOCK threads) does
SCAN_MAX_THREADS = 16


@njit(cache=True, nogil=True, inline="always")
def _emit(out, o, addr, thread, seq):
    r = out[o]
    r.timestamp_ns = _load_u64(addr + np.uint64(_OFF_TS))
    r.function_id = _load_u64(addr + np.uint64(_OFF_FN))
    r.thread_id = _load_u32(addr + np.uint64(_OFF_TID))
    r.event_kind = _load_u32(addr + np.uint64(_OFF_KIND))
    r.call_depth = _load_u32(addr + np.uint64(_OFF_DEPTH))
    r.detail_seq = _load_u32(addr + np.uint64(_OFF_DSEQ))
    r.thread = np.uint32(thread)
    r.seq = seq


@njit(inline="always", nogil=True)
def _first_live(heads, lens):
    """The lowest thread with events left, or -1 when every thread is exhausted."""
    for j in range(heads.shape[0]):
        if heads[j] < lens[j]:
            return j
    return -1


@njit(cache=True, nogil=True)
def _merge_scan(addrs, lens, heads, out):
    k = addrs.shape[0]
    cap = out.shape[0]
    ts = np.empty(k, dtype=np.uint64)
    for j in range(k):
        ts[j] = _ts_at(addrs, lens, j, heads[j])
    o = 0
    while o < cap:
        # the smallest head, ties to the lowest thread; written as selects so
        # that it compiles without branches (the winner is unpredictable)
        best = 0
        bt = ts[0]
        for j in range(1, k):
            tj = ts[j]
            c = tj < bt
            best = j if c else best
            bt = tj if c else bt
        h = heads[best]
        if h >= lens[best]:
            # the winner reads as exhausted: either all are, or a live thread
            # holds the largest timestamp there is; take the lowest live one
            best = _first_live(heads, lens)
            if best < 0:
                break
            h = heads[best]
        _emit(out, o, addrs[best] + np.uint64(h * INDEX_EVENT_SIZE), best, h)
        o += 1
        heads[best] = h + 1
        ts[best] = _ts_at(addrs, lens, best, h + 1)
    return o


#: threads per block of the two-level scan
BLOCK = 8


@njit(cache=True, nogil=True, inline="always")
def _block_min(ts, lo, hi):
    best = lo
    bt = ts[lo]
    for j in range(lo + 1, hi):
        tj = ts[j]
        c = tj < bt
        best = j if c else best
        bt = tj if c else bt
    return best, bt


@njit(cache=True, nogil=True)
def _merge_blocks(addrs, lens, heads, out):
    """Many threads: each block of BLOCK threads keeps its smallest head; an
    event costs a scan of the block minima plus a rescan of one block."""
    k = addrs.shape[0]
    cap = out.shape[0]
    nb = (k + BLOCK - 1) // BLOCK
    ts = np.empty(k, dtype=np.uint64)
    for j in range(k):
        ts[j] = _ts_at(addrs, lens, j, heads[j])
    bmin = np.empty(nb, dtype=np.uint64)
    barg = np.empty(nb, dtype=np.int64)
    for b in range(nb):
        barg[b], bmin[b] = _block_min(ts, b * BLOCK, min(k, (b + 1) * BLOCK))
    o = 0
    while o < cap:
        wb = 0
        bt = bmin[0]
        for b in range(1, nb):
            tb = bmin[b]
            c = tb < bt
            wb = b if c else wb
            bt = tb if c else bt
        best = barg[wb]
        h = heads[best]
        if h >= lens[best]:
            best = _first_live(heads, lens)
            if best < 0:
                break
            h = heads[best]
            wb = best // BLOCK
        _emit(out, o, addrs[best] + np.uint64(h * INDEX_EVENT_SIZE), best, h)
        o += 1
        heads[best] = h + 1
        ts[best] = _ts_at(addrs, lens, best, h + 1)
        barg[wb], bmin[wb] = _block_min(ts, wb * BLOCK, min(k, (wb + 1) * BLOCK))
    return o


@njit(cache=True, nogil=True)
def merge_chunk(addrs, lens, heads, out):
    """Fill ``out`` with the next events of the merge; return how many.

    ``addrs``: uint64 data address of each thread's INDEX_EVENT_DTYPE array,
    in tie order; ``lens``: int64 their lengths; ``heads``: int64 per thread,
    the next position to emit (updated in place); ``out``:
    MERGED_EVENT_DTYPE array (index fields + ``thread`` + ``seq``). Returns
    fewer than ``len(out)`` only when the merge is done.
    """
    if addrs.shape[0] == 0:
        return 0
    if addrs.shape[0] <= SCAN_MAX_THREADS:
        return _merge_scan(addrs, lens, heads, out)
    return _merge_blocks(addrs, lens, heads, out)


def merge_inputs(arrays) -> tuple[np.ndarray, np.ndarray]:
    """(addrs, lens) of a list of INDEX_EVENT_DTYPE arrays, for ``merge_chunk``.

    The caller keeps ``arrays`` referenced while the kernel runs.
    """
    addrs = np.zeros(len(arrays), dtype=np.uint64)
    lens = np.zeros(len(arrays), dtype=np.int64)
    for j, a in enumerate(arrays):
        if len(a):
            if not a.flags.c_contiguous:
                raise ValueError("merge inputs must be contiguous")
            addrs[j] = a.ctypes.data
            lens[j] = len(a)
    return addrs, lens
