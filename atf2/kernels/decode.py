"""Decoding kernels: bounds-checked scans over the bytes of ATF v2 files.

Every kernel here takes the file (or a section of it) as a ``uint8`` array and
never reads outside it, whatever the lengths inside the file say: a length is
checked against the buffer before the bytes it covers are touched. Errors are
returned as (code, byte offset) pairs; the Python side turns them into
``CorruptFileError`` with the file name.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..layout import (
    DETAIL_EVENT_HEADER_SIZE,
    DETAIL_EVENT_MAX_SIZE,
    EVENT_CALL,
    EVENT_EXCEPTION,
    OFF_DETAIL_INDEX_SEQ,
    OFF_DETAIL_THREAD_ID,
    OFF_DETAIL_TIMESTAMP,
    OFF_DETAIL_TOTAL_LENGTH,
)

# error codes of scan_detail / check_detail
DETAIL_OK = 0
DETAIL_SHORT_LENGTH = 1  #: total_length < 24
DETAIL_PAST_END = 2  #: total_length runs past the end of the events section
DETAIL_PARTIAL_HEADER = 3  #: fewer than 24 bytes left for a header
DETAIL_SEQ_ORDER = 4  #: index_seq not increasing
DETAIL_TOO_LARGE = 5  #: total_length above DETAIL_EVENT_MAX_SIZE
DETAIL_TOO_MANY = 6  #: more events than the header/footer count said

# error codes of check_index / check_detail
CHECK_OK = 0
CHECK_THREAD_ID = 1
CHECK_TIME_ORDER = 2
CHECK_EVENT_KIND = 3
CHECK_DETAIL_LINK = 4
CHECK_BOUNDS = 5  #: an offset outside the buffer


@njit(cache=True, nogil=True, inline="always")
def get_u32(buf, pos):
    return (
        np.uint32(buf[pos])
        | (np.uint32(buf[pos + 1]) << np.uint32(8))
        | (np.uint32(buf[pos + 2]) << np.uint32(16))
        | (np.uint32(buf[pos + 3]) << np.uint32(24))
    )


@njit(cache=True, nogil=True, inline="always")
def get_u64(buf, pos):
    v = np.uint64(0)
    for k in range(8):
        v |= np.uint64(buf[pos + k]) << np.uint64(8 * k)
    return v


@njit(cache=True, nogil=True)
def scan_detail(buf, start, end, strict, capacity):
    """Walk the detail events in ``buf[start:end]``; build the position tables.

    Returns ``(offsets, index_seqs, count, error, error_offset, stop)``:
    ``offsets[i]`` is the byte offset of event ``i`` in ``buf``,
    ``index_seqs[i]`` its backward link. ``capacity`` is the expected count
    (a hint; the tables grow when it is too small). With ``strict`` a record
    that does not fit is an error; without (a file whose footer is missing), it
    ends the scan at ``stop``, the end of the last complete event.
    """
    end = min(end, buf.shape[0])
    start = max(start, 0)
    cap = max(capacity, 16)
    offsets = np.empty(cap, dtype=np.int64)
    seqs = np.empty(cap, dtype=np.uint32)
    count = 0
    pos = start
    last_seq = np.int64(-1)
    while pos < end:
        if end - pos < DETAIL_EVENT_HEADER_SIZE:
            if strict:
                return offsets[:count], seqs[:count], count, DETAIL_PARTIAL_HEADER, pos, pos
            break
        total = np.int64(get_u32(buf, pos + OFF_DETAIL_TOTAL_LENGTH))
        if total < DETAIL_EVENT_HEADER_SIZE:
            return offsets[:count], seqs[:count], count, DETAIL_SHORT_LENGTH, pos, pos
        if total > end - pos:
            if strict:
                return offsets[:count], seqs[:count], count, DETAIL_PAST_END, pos, pos
            break  # a record cut by the end of a file whose footer is missing
        if total > DETAIL_EVENT_MAX_SIZE:
            return offsets[:count], seqs[:count], count, DETAIL_TOO_LARGE, pos, pos
        seq = get_u32(buf, pos + OFF_DETAIL_INDEX_SEQ)
        if np.int64(seq) <= last_seq:
            return offsets[:count], seqs[:count], count, DETAIL_SEQ_ORDER, pos, pos
        last_seq = np.int64(seq)
        if count == cap:
            cap *= 2
            grown = np.empty(cap, dtype=np.int64)
            grown[:count] = offsets[:count]
            offsets = grown
            grown_seqs = np.empty(cap, dtype=np.uint32)
            grown_seqs[:count] = seqs[:count]
            seqs = grown_seqs
        offsets[count] = pos
        seqs[count] = seq
        count += 1
        pos += total
    return offsets[:count], seqs[:count], count, DETAIL_OK, pos, pos


@njit(cache=True, nogil=True)
def check_index(events, thread_id, detail_count):
    """Check every event of an index file: thread id, time order, kind, link.

    Returns ``(error, position)``; ``detail_count`` < 0 skips the link check.
    """
    tid = np.uint32(thread_id)
    last = np.uint64(0)
    for i in range(events.shape[0]):
        e = events[i]
        if e.thread_id != tid:
            return CHECK_THREAD_ID, i
        if e.timestamp_ns < last:
            return CHECK_TIME_ORDER, i
        last = e.timestamp_ns
        if e.event_kind < EVENT_CALL or e.event_kind > EVENT_EXCEPTION:
            return CHECK_EVENT_KIND, i
        if detail_count >= 0 and e.detail_seq != np.uint32(0xFFFFFFFF) and np.int64(e.detail_seq) >= detail_count:
            return CHECK_DETAIL_LINK, i
    return CHECK_OK, -1


@njit(cache=True, nogil=True)
def check_detail(buf, offsets, thread_id, index_count):
    """Check the detail events at ``offsets``: thread id, time order, link.

    ``index_count`` < 0 skips the link check. Returns ``(error, position)``.
    """
    tid = np.uint32(thread_id)
    last = np.uint64(0)
    for i in range(offsets.shape[0]):
        pos = offsets[i]
        if pos < 0 or pos + DETAIL_EVENT_HEADER_SIZE > buf.shape[0]:
            return CHECK_BOUNDS, i
        if get_u32(buf, pos + OFF_DETAIL_THREAD_ID) != tid:
            return CHECK_THREAD_ID, i
        t = get_u64(buf, pos + OFF_DETAIL_TIMESTAMP)
        if t < last:
            return CHECK_TIME_ORDER, i
        last = t
        if index_count >= 0 and np.int64(get_u32(buf, pos + OFF_DETAIL_INDEX_SEQ)) >= index_count:
            return CHECK_DETAIL_LINK, i
    return CHECK_OK, -1


@njit(cache=True, nogil=True)
def scan_index(events):
    """Touch every field of every event once; return a checksum-like fold.

    The sequential-read benchmark's kernel and a cheap "is every byte
    readable" pass: sums timestamps and function ids, xors the small fields.
    """
    s_ts = np.uint64(0)
    s_fn = np.uint64(0)
    x = np.uint64(0)
    for i in range(events.shape[0]):
        e = events[i]
        s_ts += e.timestamp_ns
        s_fn += e.function_id
        x ^= (np.uint64(e.thread_id) << np.uint64(32)) | np.uint64(e.event_kind)
        x ^= (np.uint64(e.call_depth) << np.uint64(32)) | np.uint64(e.detail_seq)
    return s_ts, s_fn, x
