"""Encoding kernels: numpy batches -> the bytes the writer puts on disk.

All kernels are ``@njit(cache=True, nogil=True)``: the writer runs them while
another thread computes the CRC of the previous chunk or writes it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..layout import (
    DETAIL_EVENT_HEADER_SIZE,
    INDEX_EVENT_SIZE,
    NO_DETAIL,
    OFF_DETAIL_EVENT_TYPE,
    OFF_DETAIL_FLAGS,
    OFF_DETAIL_INDEX_SEQ,
    OFF_DETAIL_THREAD_ID,
    OFF_DETAIL_TIMESTAMP,
    OFF_DETAIL_TOTAL_LENGTH,
)
from .crc import _K1, _K2, _M32, _fold, _load, fold_finish, table_bytes

_NO_DETAIL = np.uint32(NO_DETAIL)
#: the CRC folds 64-byte blocks: two records
_PER_BLOCK = 64 // INDEX_EVENT_SIZE
assert _PER_BLOCK * INDEX_EVENT_SIZE == 64


@njit(cache=True, nogil=True)
def encode_index(src, dst, thread_id, prev_ts, detail_pos, detail_base):
    """Copy ``src`` (INDEX_EVENT_DTYPE) into ``dst[:len(src)]`` as file records.

    Sets ``thread_id`` on every record, ``detail_seq`` to ``NO_DETAIL`` except
    at ``detail_pos`` (positions relative to ``src``, increasing), which get
    ``detail_base, detail_base + 1, ...``. Checks that timestamps do not
    decrease, starting from ``prev_ts``; returns the position of the first one
    that does (nothing after it is encoded), or -1.
    """
    n = src.shape[0]
    tid = np.uint32(thread_id)
    last = np.uint64(prev_ts)
    for i in range(n):
        t = src[i].timestamp_ns
        if t < last:
            return i
        last = t
        dst[i].timestamp_ns = t
        dst[i].function_id = src[i].function_id
        dst[i].thread_id = tid
        dst[i].event_kind = src[i].event_kind
        dst[i].call_depth = src[i].call_depth
        dst[i].detail_seq = _NO_DETAIL
    base = np.uint32(detail_base)
    for j in range(detail_pos.shape[0]):
        dst[detail_pos[j]].detail_seq = base + np.uint32(j)
    return -1


@njit(cache=True, nogil=True)
def encode_index_crc(src, dst, thread_id, prev_ts, detail_pos, detail_base, crc):
    """``encode_index`` and the CRC-32 of what it wrote, in one pass.

    Each 64-byte block of output is folded into the CRC (PCLMULQDQ, see
    ``kernels.crc``) right after it is written, while it is in L1. Returns
    ``(bad, crc)``: the position of the first timestamp that decreases (-1 if
    none; the CRC is then meaningless) and ``zlib.crc32(dst bytes, crc)``.
    Only for CPUs where ``kernels.crc.USE_KERNEL`` holds.
    """
    n = src.shape[0]
    tid = np.uint32(thread_id)
    last = np.uint64(prev_ts)
    nd = detail_pos.shape[0]
    j = 0
    next_pos = detail_pos[0] if nd > 0 else -1
    base_seq = np.uint32(detail_base)
    s = np.uint64(crc) ^ _M32
    addr = dst.ctypes.data
    x1l = x1h = x2l = x2h = x3l = x3h = x4l = x4h = np.uint64(0)
    for i in range(n):
        t = src[i].timestamp_ns
        if t < last:
            return i, np.uint64(0)
        last = t
        d = dst[i]
        d.timestamp_ns = t
        d.function_id = src[i].function_id
        d.thread_id = tid
        d.event_kind = src[i].event_kind
        d.call_depth = src[i].call_depth
        if i == next_pos:
            d.detail_seq = base_seq + np.uint32(j)
            j += 1
            next_pos = detail_pos[j] if j < nd else -1
        else:
            d.detail_seq = _NO_DETAIL
        if i % _PER_BLOCK == _PER_BLOCK - 1:
            p = addr + (i + 1 - _PER_BLOCK) * INDEX_EVENT_SIZE
            if i >= _PER_BLOCK:
                x1l, x1h = _fold(x1l, x1h, _K1, _K2, _load(p), _load(p + 8))
                x2l, x2h = _fold(x2l, x2h, _K1, _K2, _load(p + 16), _load(p + 24))
                x3l, x3h = _fold(x3l, x3h, _K1, _K2, _load(p + 32), _load(p + 40))
                x4l, x4h = _fold(x4l, x4h, _K1, _K2, _load(p + 48), _load(p + 56))
            else:
                x1l = _load(p) ^ s
                x1h = _load(p + 8)
                x2l = _load(p + 16)
                x2h = _load(p + 24)
                x3l = _load(p + 32)
                x3h = _load(p + 40)
                x4l = _load(p + 48)
                x4h = _load(p + 56)
    nbytes = n * INDEX_EVENT_SIZE
    if n >= _PER_BLOCK:
        full = (n // _PER_BLOCK) * 64
        s = fold_finish(x1l, x1h, x2l, x2h, x3l, x3h, x4l, x4h, addr, full, nbytes)
        s = table_bytes(s, addr, nbytes & ~15, nbytes)
    else:
        s = table_bytes(s, addr, 0, nbytes)
    return -1, (s ^ _M32) & _M32


@njit(cache=True, nogil=True, inline="always")
def put_u16(buf, pos, value):
    v = np.uint64(value)
    buf[pos] = np.uint8(v & np.uint64(0xFF))
    buf[pos + 1] = np.uint8((v >> np.uint64(8)) & np.uint64(0xFF))


@njit(cache=True, nogil=True, inline="always")
def put_u32(buf, pos, value):
    v = np.uint64(value)
    for k in range(4):
        buf[pos + k] = np.uint8((v >> np.uint64(8 * k)) & np.uint64(0xFF))


@njit(cache=True, nogil=True, inline="always")
def put_u64(buf, pos, value):
    v = np.uint64(value)
    for k in range(8):
        buf[pos + k] = np.uint8((v >> np.uint64(8 * k)) & np.uint64(0xFF))


@njit(cache=True, nogil=True)
def frame_details(events, positions, payload, offsets, event_type, flags, thread_id, index_base, out):
    """Frame detail events back to back into ``out``; return the bytes used.

    Event ``k`` pairs with ``events[positions[k]]``: its header gets
    ``total_length = 24 + len(payload k)``, ``event_type[k]``, ``flags[k]``,
    ``index_seq = index_base + positions[k]``, ``thread_id`` and the paired
    event's timestamp; its payload is ``payload[offsets[k]:offsets[k+1]]``.
    The caller has validated positions and offsets and sized ``out``.
    """
    pos = 0
    for k in range(positions.shape[0]):
        a = offsets[k]
        b = offsets[k + 1]
        total = DETAIL_EVENT_HEADER_SIZE + (b - a)
        put_u32(out, pos + OFF_DETAIL_TOTAL_LENGTH, total)
        put_u16(out, pos + OFF_DETAIL_EVENT_TYPE, event_type[k])
        put_u16(out, pos + OFF_DETAIL_FLAGS, flags[k])
        put_u32(out, pos + OFF_DETAIL_INDEX_SEQ, index_base + positions[k])
        put_u32(out, pos + OFF_DETAIL_THREAD_ID, thread_id)
        put_u64(out, pos + OFF_DETAIL_TIMESTAMP, events[positions[k]].timestamp_ns)
        start = pos + DETAIL_EVENT_HEADER_SIZE
        for j in range(b - a):
            out[start + j] = payload[a + j]
        pos += total
    return pos


@njit(cache=True, nogil=True)
def first_decrease(timestamps, prev_ts):
    """Position of the first timestamp below its predecessor (``prev_ts`` before 0), or -1."""
    last = np.uint64(prev_ts)
    for i in range(timestamps.shape[0]):
        t = timestamps[i]
        if t < last:
            return i
        last = t
    return -1
