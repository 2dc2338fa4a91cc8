"""Verification kernels: every check ``atf2 verify`` makes over events, in one pass each.

Unlike the readers' checks (``kernels.decode``), which stop at the first bad
event, these count every failure of every kind and remember where the first
one is, so a report can list each kind of damage once with a count. Detail
events are read from the file bytes at offsets found by
``kernels.decode.scan_detail``; every read is checked against the buffer.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..layout import (
    DETAIL_EVENT_HEADER_SIZE,
    DETAIL_FUNCTION_CALL,
    DETAIL_FUNCTION_RETURN,
    EVENT_CALL,
    EVENT_EXCEPTION,
    NO_DETAIL,
    OFF_DETAIL_EVENT_TYPE,
    OFF_DETAIL_INDEX_SEQ,
    OFF_DETAIL_THREAD_ID,
    OFF_DETAIL_TIMESTAMP,
)
from .decode import get_u32, get_u64

# rows of the (count, first position) table returned by check_index_events
I_TIME_ORDER = 0  #: timestamp smaller than the previous event's
I_THREAD_ID = 1  #: thread_id field is not the file's thread
I_EVENT_KIND = 2  #: event_kind is none of CALL/RETURN/EXCEPTION
I_LINK_RANGE = 3  #: detail_seq points past the detail events
I_LINK_BACK = 4  #: the detail event pointed at does not point back here
I_LINK_TIME = 5  #: the detail event's timestamp differs from this event's
INDEX_CHECKS = 6

# rows of the table returned by check_detail_events
D_BOUNDS = 0  #: an offset outside the file
D_THREAD_ID = 1
D_INDEX_RANGE = 2  #: index_seq points past the index events
D_LINK_BACK = 3  #: the index event pointed at does not point back here
D_EVENT_TYPE = 4  #: event_type is not FUNCTION_CALL / FUNCTION_RETURN (reserved)
DETAIL_CHECKS = 5

_NO_DETAIL = np.uint32(NO_DETAIL)


@njit(cache=True, nogil=True, inline="always")
def _hit(table, row, pos):
    if table[row, 0] == 0:
        table[row, 1] = pos
    table[row, 0] += 1


@njit(cache=True, nogil=True)
def check_index_events(events, thread_id, buf, offsets):
    """Check every index event; ``buf``/``offsets`` are the detail file bytes
    and its event offsets (empty when the thread has no detail file).
    Returns an int64 table (INDEX_CHECKS, 2): failures, first position."""
    table = np.zeros((INDEX_CHECKS, 2), np.int64)
    tid = np.uint32(thread_id)
    n_detail = offsets.shape[0]
    last = np.uint64(0)
    for i in range(events.shape[0]):
        e = events[i]
        if e.timestamp_ns < last:
            _hit(table, I_TIME_ORDER, i)
        last = e.timestamp_ns
        if e.thread_id != tid:
            _hit(table, I_THREAD_ID, i)
        if e.event_kind < EVENT_CALL or e.event_kind > EVENT_EXCEPTION:
            _hit(table, I_EVENT_KIND, i)
        ds = e.detail_seq
        if ds != _NO_DETAIL:
            if np.int64(ds) >= n_detail:
                _hit(table, I_LINK_RANGE, i)
            else:
                pos = offsets[np.int64(ds)]
                if pos < 0 or pos + DETAIL_EVENT_HEADER_SIZE > buf.shape[0]:
                    _hit(table, I_LINK_RANGE, i)
                else:
                    if np.int64(get_u32(buf, pos + OFF_DETAIL_INDEX_SEQ)) != i:
                        _hit(table, I_LINK_BACK, i)
                    if get_u64(buf, pos + OFF_DETAIL_TIMESTAMP) != e.timestamp_ns:
                        _hit(table, I_LINK_TIME, i)
    return table


@njit(cache=True, nogil=True)
def check_detail_events(buf, offsets, thread_id, events):
    """Check every detail event against its thread and its index event.
    Returns an int64 table (DETAIL_CHECKS, 2): failures, first position."""
    table = np.zeros((DETAIL_CHECKS, 2), np.int64)
    tid = np.uint32(thread_id)
    n_index = events.shape[0]
    for k in range(offsets.shape[0]):
        pos = offsets[k]
        if pos < 0 or pos + DETAIL_EVENT_HEADER_SIZE > buf.shape[0]:
            _hit(table, D_BOUNDS, k)
            continue
        if get_u32(buf, pos + OFF_DETAIL_THREAD_ID) != tid:
            _hit(table, D_THREAD_ID, k)
        etype = np.uint32(buf[pos + OFF_DETAIL_EVENT_TYPE]) | (np.uint32(buf[pos + OFF_DETAIL_EVENT_TYPE + 1]) << np.uint32(8))
        if etype != DETAIL_FUNCTION_CALL and etype != DETAIL_FUNCTION_RETURN:
            _hit(table, D_EVENT_TYPE, k)
        seq = np.int64(get_u32(buf, pos + OFF_DETAIL_INDEX_SEQ))
        if seq >= n_index:
            _hit(table, D_INDEX_RANGE, k)
        elif np.int64(events[seq].detail_seq) != k:
            _hit(table, D_LINK_BACK, k)
    return table


@njit(cache=True, nogil=True)
def dangling_links(events, n_detail):
    """Positions of index events whose detail_seq points at or past ``n_detail``."""
    count = 0
    for i in range(events.shape[0]):
        ds = events[i].detail_seq
        if ds != _NO_DETAIL and np.int64(ds) >= n_detail:
            count += 1
    out = np.empty(count, np.int64)
    j = 0
    for i in range(events.shape[0]):
        ds = events[i].detail_seq
        if ds != _NO_DETAIL and np.int64(ds) >= n_detail:
            out[j] = i
            j += 1
    return out
