"""k-way merge of per-thread event arrays into the session's global order.

Order: ``timestamp_ns``, then thread (the position of the thread in the list,
which the session sorts by thread number), then index_seq. Each thread's
events are already in order, so the merge only ever compares the heads of the
threads: it picks the smallest head and then emits a whole run from that
thread, up to the next-smallest head, in a tight loop. The state (``heads``)
lives outside the kernel so that a session larger than memory is merged in
chunks of any size.
"""

from __future__ import annotations

import numpy as np
from numba import njit

_MAX_TS = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(cache=True, nogil=True)
def merge_chunk(arrays, heads, out):
    """Fill ``out`` with the next events of the merge; return how many.

    ``arrays``: typed List of INDEX_EVENT_DTYPE arrays, one per thread, in tie
    order. ``heads``: int64 per thread, the next position to emit (updated in
    place). ``out``: MERGED_EVENT_DTYPE array (index fields + ``thread`` +
    ``seq``). Returns fewer than ``len(out)`` only when the merge is done.
    """
    k = len(arrays)
    cap = out.shape[0]
    ts = np.empty(k, dtype=np.uint64)
    live = np.zeros(k, dtype=np.bool_)
    for j in range(k):
        a = arrays[j]
        if heads[j] < a.shape[0]:
            ts[j] = a[heads[j]].timestamp_ns
            live[j] = True
    o = 0
    while o < cap:
        best = -1
        for j in range(k):
            if live[j] and (best < 0 or ts[j] < ts[best]):
                best = j
        if best < 0:
            break
        second = -1
        for j in range(k):
            if j != best and live[j] and (second < 0 or ts[j] < ts[second]):
                second = j
        if second < 0:
            lim_ts = _MAX_TS
            lim_j = k
        else:
            lim_ts = ts[second]
            lim_j = second
        a = arrays[best]
        n = a.shape[0]
        h = heads[best]
        tb = np.uint32(best)
        while o < cap and h < n:
            t = a[h].timestamp_ns
            if t > lim_ts or (t == lim_ts and best > lim_j):
                break
            r = out[o]
            r.timestamp_ns = t
            r.function_id = a[h].function_id
            r.thread_id = a[h].thread_id
            r.event_kind = a[h].event_kind
            r.call_depth = a[h].call_depth
            r.detail_seq = a[h].detail_seq
            r.thread = tb
            r.seq = h
            o += 1
            h += 1
        heads[best] = h
        if h < n:
            ts[best] = a[h].timestamp_ns
        else:
            live[best] = False
    return o
