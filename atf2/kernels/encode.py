"""Encoding kernels: numpy batches -> the bytes the writer puts on disk.

All kernels are ``@njit(cache=True, nogil=True)``: the writer runs them while
another thread computes the CRC of the previous chunk or writes it.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..layout import (
    DETAIL_EVENT_HEADER_SIZE,
    NO_DETAIL,
    OFF_DETAIL_EVENT_TYPE,
    OFF_DETAIL_FLAGS,
    OFF_DETAIL_INDEX_SEQ,
    OFF_DETAIL_THREAD_ID,
    OFF_DETAIL_TIMESTAMP,
    OFF_DETAIL_TOTAL_LENGTH,
)

_NO_DETAIL = np.uint32(NO_DETAIL)


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
