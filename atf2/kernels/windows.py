"""Flight-recorder windows: which events' details to persist around triggers.

Pure functions over numpy arrays (positions are index-lane sequence numbers,
``ts`` the events' timestamps in ns). A trigger covers the events
[trig_start, trig_end): one event for a CALL or EXCEPTION trigger, none for a
mark (trig_start = trig_end = the position of the next event). Its window is
a pre-roll before trig_start and a post-roll after trig_end, each counted in
events or in ns from the trigger's time. The window is clipped to what is
still held (``held_from``: the first position whose detail is still in memory)
and to what exists (``end``: one past the last event seen). Windows that
overlap or touch merge.

They know nothing of files, threads or sessions.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def window_bounds(ts, base, trig_start, trig_end, trig_ts, pre, pre_is_ns, post, post_is_ns,
                  held_from, stop_ns, final, out_start, out_stop, out_clipped, out_state):
    """Per trigger: the half-open window [out_start, out_stop) of absolute positions.

    ``ts[k]`` is the timestamp of position ``base + k``; ``end = base + len(ts)``.
    ``out_clipped[i]``: the pre-roll wanted events before ``held_from``.
    ``out_state[i]``: 0 complete, 1 open (the post-roll reaches past ``end`` and
    more events may come: ``final`` False), 2 cut short (``final``: the
    session stopped at ``stop_ns`` before the post-roll was over).
    """
    n = ts.shape[0]
    end = base + n
    upre = np.uint64(pre)  # the ns forms; the event forms stay int64
    upost = np.uint64(post)
    for i in range(trig_start.shape[0]):
        s = trig_start[i]
        e = trig_end[i]
        t = trig_ts[i]
        # pre-roll
        if pre_is_ns:
            limit = t - upre if t > upre else np.uint64(0)
            k = np.searchsorted(ts, limit, side="left")
            want = base + k
            if want > s:
                want = s
        else:
            want = s - pre
            if want < 0:
                want = 0
        start = want
        if start < held_from:
            start = held_from
        out_clipped[i] = want < held_from
        # post-roll
        state = 0
        if post_is_ns:
            k = np.searchsorted(ts, t + upost, side="right")
            stop = base + k
            if stop < e:
                stop = e
            if stop >= end:
                # no event after the post-roll yet: either more may come, or
                # the session ended before the post-roll did
                if not final:
                    state = 1
                elif stop_ns < t + upost:
                    state = 2
        else:
            stop = e + post
            if stop > end:
                state = 2 if final else 1
        if stop > end:
            stop = end
        if start > stop:
            start = stop
        out_start[i] = start
        out_stop[i] = stop
        out_state[i] = state


@njit(cache=True, nogil=True)
def coalesce(starts, stops, kinds, states, clipped, out_start, out_stop, out_kinds, out_first, out_last, out_state, out_clipped):
    """Merge windows (in trigger order) that overlap or touch; return the number of windows.

    Window j covers triggers out_first[j]..out_last[j] (inclusive),
    out_kinds[j] is the OR of their kinds, out_state[j] the largest state
    (open > cut > complete: an open window is never persisted as final) and
    out_clipped[j] whether its first trigger's pre-roll was clipped.
    """
    m = 0
    for i in range(starts.shape[0]):
        if m > 0 and starts[i] <= out_stop[m - 1]:
            j = m - 1
            if stops[i] > out_stop[j]:
                out_stop[j] = stops[i]
            if starts[i] < out_start[j]:
                out_start[j] = starts[i]
            out_kinds[j] |= kinds[i]
            out_last[j] = i
            if states[i] > out_state[j]:
                out_state[j] = states[i]
        else:
            out_start[m] = starts[i]
            out_stop[m] = stops[i]
            out_kinds[m] = kinds[i]
            out_first[m] = i
            out_last[m] = i
            out_state[m] = states[i]
            out_clipped[m] = clipped[i]
            m += 1
    return m


@njit(cache=True, nogil=True)
def in_windows(positions, starts, stops, out):
    """out[k] = positions[k] lies in one of the sorted, disjoint windows [starts, stops).

    ``positions`` must be non-decreasing (one pass over both)."""
    j = 0
    nw = starts.shape[0]
    for k in range(positions.shape[0]):
        p = positions[k]
        while j < nw and stops[j] <= p:
            j += 1
        out[k] = j < nw and starts[j] <= p
