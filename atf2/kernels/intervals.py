"""Pairing kernel: one thread's index events -> CALL/RETURN intervals.

A thread's events are walked once with an explicit call stack. A RETURN (or an
EXCEPTION, which also ends the call) closes the innermost open call of the
same function. The walk is resumable: all of its state lives in arrays that
the caller passes back in with the next chunk, so a thread larger than memory
is paired chunk by chunk and intervals are produced as calls close.

Edges of the trace are handled explicitly instead of being mis-paired:

* a RETURN whose CALL came before the trace started ("unopened") becomes an
  interval that starts where its parent started (the thread's first timestamp
  at the top level), flagged ``FLAG_UNOPENED``; everything closed under that
  parent so far becomes its child, which is what the real stack must have been;
* a RETURN that matches an outer open call (events in between were lost)
  closes the calls above that one at the RETURN's time, flagged ``FLAG_UNCLOSED``;
* calls still open at the end are closed at the thread's last timestamp by
  ``close_open``, flagged ``FLAG_UNCLOSED``.

Function ids are 64-bit and sparse, so the kernel numbers them densely with an
open-addressing hash table (dense ids index the per-function arrays used for
recursion detection here and for aggregation in ``kernels.summary``).

The kernel reads structured INDEX_EVENT_DTYPE records and writes structured
interval records; it never indexes past the arrays it is given (the caller
sizes the output to ``len(events) + open calls``, the most one chunk can close).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ..layout import EVENT_CALL, EVENT_EXCEPTION, EVENT_RETURN

# Interval flags (analysis semantics, not file bytes).
FLAG_UNCLOSED = 1  #: no RETURN seen: ended by the trace end or by an outer RETURN
FLAG_UNOPENED = 2  #: no CALL seen: the call began before the trace
FLAG_EXCEPTION = 4  #: ended by an EXCEPTION event
FLAG_RECURSIVE = 8  #: another call of the same function was open around it

#: how far down the stack a RETURN looks for its CALL before calling itself unopened
MAX_MATCH_SEARCH = 256

# Columns of the stack array (uint64 each).
S_START = 0
S_FID = 1
S_DENSE = 2
S_CHILD = 3  # inclusive time of the closed direct children so far
S_CALL = 4  # index_seq of the CALL
S_DEPTH = 5  # recorded call_depth of the CALL
S_RECURSIVE = 6
STACK_COLUMNS = 7

# Slots of the per-thread state array (int64).
ST_NSTACK = 0
ST_ROOT_CHILD = 1  # like S_CHILD, for the virtual frame below the first call
ST_BUSY = 2  # time with at least one call open (ns)
ST_T_FIRST = 3  # the thread's first timestamp: where unopened top-level calls begin
ST_BAD = 4  # events whose kind is none of CALL/RETURN/EXCEPTION (skipped)
STATE_SLOTS = 5

_EMPTY = np.int64(-1)
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)


def new_state(t_first: int) -> np.ndarray:
    st = np.zeros(STATE_SLOTS, np.int64)
    # the u64 timestamp's bits (the kernel reads them back as uint64): one at
    # or above 2**63, as a damaged file may hold, must not raise OverflowError
    st[ST_T_FIRST:ST_T_FIRST + 1] = np.array([t_first], np.uint64).view(np.int64)
    return st


def new_stack(capacity: int = 64) -> np.ndarray:
    return np.zeros((capacity, STACK_COLUMNS), np.uint64)


def new_idmap(capacity: int = 1024):
    """(keys, slots, dense_fids, count): an empty function id -> dense id table."""
    capacity = 1 << max(4, int(capacity - 1).bit_length())
    return (
        np.zeros(capacity, np.uint64),
        np.full(capacity, -1, np.int64),
        np.zeros(capacity // 2, np.uint64),
        np.zeros(1, np.int64),
    )


@njit(cache=True, nogil=True, inline="always")
def _probe(keys, slots, key):
    mask = np.uint64(keys.shape[0] - 1)
    h = (key * _HASH_MUL) >> np.uint64(20)
    pos = np.int64(h & mask)
    while slots[pos] != _EMPTY and keys[pos] != key:
        pos = np.int64((np.uint64(pos) + np.uint64(1)) & mask)
    return pos


@njit(cache=True, nogil=True)
def dense_id(keys, slots, dense_fids, count, key):
    """Dense id of ``key``, adding it if new. Returns (id, keys, slots, dense_fids)
    (the arrays are replaced when the table grows; the load stays <= 1/2)."""
    pos = _probe(keys, slots, key)
    if slots[pos] != _EMPTY:
        return slots[pos], keys, slots, dense_fids
    n = count[0]
    if 2 * (n + 1) > keys.shape[0]:
        cap = keys.shape[0] * 2
        nkeys = np.zeros(cap, np.uint64)
        nslots = np.full(cap, _EMPTY, np.int64)
        for j in range(n):
            p = _probe(nkeys, nslots, dense_fids[j])
            nkeys[p] = dense_fids[j]
            nslots[p] = j
        ndense = np.zeros(cap // 2, np.uint64)
        ndense[:n] = dense_fids[:n]
        keys, slots, dense_fids = nkeys, nslots, ndense
        pos = _probe(keys, slots, key)
    keys[pos] = key
    slots[pos] = n
    dense_fids[n] = key
    count[0] = n + 1
    return n, keys, slots, dense_fids


@njit(cache=True, nogil=True)
def _grow_rows(a, need):
    cap = a.shape[0]
    while cap < need:
        cap *= 2
    if cap == a.shape[0]:
        return a
    b = np.zeros((cap,) + a.shape[1:], a.dtype)
    b[: a.shape[0]] = a
    return b


@njit(cache=True, nogil=True)
def _grow_1d(a, need):
    cap = max(a.shape[0], 1)
    while cap < need:
        cap *= 2
    if cap == a.shape[0]:
        return a
    b = np.zeros(cap, a.dtype)
    b[: a.shape[0]] = a
    return b


@njit(cache=True, nogil=True, inline="always")
def _pop(st, stack, active, t_end, flags, ret_index, thread, out, dense_out, n_out):
    """Close the innermost open call at ``t_end``; write it at ``out[n_out]``."""
    top = st[ST_NSTACK] - 1
    start = stack[top, S_START]
    dur = np.int64(t_end - start) if t_end >= start else np.int64(0)
    child = np.int64(stack[top, S_CHILD])
    excl = dur - child if dur > child else np.int64(0)
    d = np.int64(stack[top, S_DENSE])
    if stack[top, S_RECURSIVE] != 0:
        flags |= FLAG_RECURSIVE
    active[d] -= 1
    out[n_out].start_ns = start
    out[n_out].end_ns = t_end
    out[n_out].exclusive_ns = excl
    out[n_out].function_id = stack[top, S_FID]
    out[n_out].depth = np.uint32(stack[top, S_DEPTH])
    out[n_out].flags = np.uint32(flags)
    out[n_out].call_index = np.int64(stack[top, S_CALL])
    out[n_out].return_index = ret_index
    out[n_out].thread = thread
    dense_out[n_out] = d
    if top > 0:
        stack[top - 1, S_CHILD] += np.uint64(dur)
    else:
        st[ST_ROOT_CHILD] += dur
        st[ST_BUSY] += dur
    st[ST_NSTACK] = top
    return n_out + 1


@njit(cache=True, nogil=True)
def pair_chunk(events, base, thread, st, stack, active, keys, slots, dense_fids, count, out, dense_out):
    """Pair one chunk of a thread's events (``events[i]`` is index_seq ``base + i``).

    Writes closed intervals to ``out`` (INTERVAL_DTYPE, ``thread`` in their
    thread column) and their dense function ids to ``dense_out``. Returns
    ``(n_out, stack, active, keys, slots, dense_fids)``: arrays may have been
    replaced by bigger ones and must be passed back in with the next chunk.
    """
    n_out = 0
    for i in range(events.shape[0]):
        t = events[i].timestamp_ns
        kind = events[i].event_kind
        f = events[i].function_id
        if kind == EVENT_CALL:
            # known function: one probe, no call (the slow path may grow the table)
            p = _probe(keys, slots, f)
            d = slots[p]
            if d == _EMPTY:
                d, keys, slots, dense_fids = dense_id(keys, slots, dense_fids, count, f)
            if d >= active.shape[0]:
                active = _grow_1d(active, d + 1)
            top = st[ST_NSTACK]
            if top >= stack.shape[0]:
                stack = _grow_rows(stack, top + 1)
            stack[top, S_START] = t
            stack[top, S_FID] = f
            stack[top, S_DENSE] = np.uint64(d)
            stack[top, S_CHILD] = 0
            stack[top, S_CALL] = np.uint64(base + i)
            stack[top, S_DEPTH] = np.uint64(events[i].call_depth)
            stack[top, S_RECURSIVE] = 1 if active[d] > 0 else 0
            active[d] += 1
            st[ST_NSTACK] = top + 1
        elif kind == EVENT_RETURN or kind == EVENT_EXCEPTION:
            flags = FLAG_EXCEPTION if kind == EVENT_EXCEPTION else 0
            nst = st[ST_NSTACK]
            lowest = nst - MAX_MATCH_SEARCH if nst > MAX_MATCH_SEARCH else 0
            j = nst - 1
            while j >= lowest and stack[j, S_FID] != f:
                j -= 1
            if j >= lowest:
                # calls above the match lost their RETURN: they end here
                while st[ST_NSTACK] - 1 > j:
                    n_out = _pop(st, stack, active, t, FLAG_UNCLOSED, np.int64(-1), thread, out, dense_out, n_out)
                n_out = _pop(st, stack, active, t, flags, np.int64(base + i), thread, out, dense_out, n_out)
            else:
                # the CALL came before the trace: the call spans its parent's
                # whole observed time so far, and everything closed under that
                # parent until now was nested in it
                d, keys, slots, dense_fids = dense_id(keys, slots, dense_fids, count, f)
                if d >= active.shape[0]:
                    active = _grow_1d(active, d + 1)
                if nst > 0:
                    start = stack[nst - 1, S_START]
                    child = np.int64(stack[nst - 1, S_CHILD])
                else:
                    start = np.uint64(st[ST_T_FIRST])
                    child = st[ST_ROOT_CHILD]
                dur = np.int64(t - start) if t >= start else np.int64(0)
                excl = dur - child if dur > child else np.int64(0)
                out[n_out].start_ns = start
                out[n_out].end_ns = t
                out[n_out].exclusive_ns = excl
                out[n_out].function_id = f
                out[n_out].depth = events[i].call_depth
                out[n_out].flags = np.uint32(flags | FLAG_UNOPENED)
                out[n_out].call_index = -1
                out[n_out].return_index = base + i
                out[n_out].thread = thread
                dense_out[n_out] = d
                n_out += 1
                if nst > 0:
                    stack[nst - 1, S_CHILD] = np.uint64(dur)
                else:
                    st[ST_ROOT_CHILD] = dur
                    st[ST_BUSY] = dur
        else:
            st[ST_BAD] += 1
    return n_out, stack, active, keys, slots, dense_fids


@njit(cache=True, nogil=True)
def close_open(thread, st, stack, active, t_last, out, dense_out):
    """Close every call still open at the end of the thread, at ``t_last``
    (flagged FLAG_UNCLOSED). ``out`` must hold ``st[ST_NSTACK]`` rows."""
    n_out = 0
    while st[ST_NSTACK] > 0:
        n_out = _pop(st, stack, active, np.uint64(t_last), FLAG_UNCLOSED, np.int64(-1), thread, out, dense_out, n_out)
    return n_out
