"""Aggregation kernel: intervals -> per-function call counts and times.

``agg`` is an int64 table with one row per dense function id (see
``kernels.intervals.dense_id``) and the ``A_*`` columns below. Inclusive time
is summed only over calls that are not nested in another open call of the
same function (cProfile's rule): a recursive function's inclusive total is
then the wall time spent in it, not a multiple of it. Exclusive time, counts
and maxima count every call. Known limit: when several frames of one function
were already open before the trace began (unopened RETURNs of a recursion),
their inclusive times nest and are each counted.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .intervals import FLAG_EXCEPTION, FLAG_RECURSIVE, FLAG_UNCLOSED, FLAG_UNOPENED

A_CALLS = 0
A_UNCLOSED = 1
A_UNOPENED = 2
A_EXCEPTIONS = 3
A_RECURSIVE = 4
A_INCL_TOTAL = 5
A_INCL_MAX = 6
A_EXCL_TOTAL = 7
A_EXCL_MAX = 8
AGG_COLUMNS = 9

#: columns combined across threads by max instead of sum
MAX_COLUMNS = (A_INCL_MAX, A_EXCL_MAX)


@njit(cache=True, nogil=True)
def accumulate(intervals, dense, n, agg):
    """Add ``intervals[:n]`` (with dense ids ``dense[:n]``) into ``agg``.

    ``agg`` must have a row for every dense id in ``dense[:n]`` (the caller
    grows it to the id count before calling)."""
    for i in range(n):
        d = dense[i]
        start = intervals[i].start_ns
        end = intervals[i].end_ns
        incl = np.int64(end - start) if end >= start else np.int64(0)
        excl = intervals[i].exclusive_ns
        fl = intervals[i].flags
        agg[d, A_CALLS] += 1
        if fl & FLAG_UNCLOSED:
            agg[d, A_UNCLOSED] += 1
        if fl & FLAG_UNOPENED:
            agg[d, A_UNOPENED] += 1
        if fl & FLAG_EXCEPTION:
            agg[d, A_EXCEPTIONS] += 1
        if fl & FLAG_RECURSIVE:
            agg[d, A_RECURSIVE] += 1
        else:
            agg[d, A_INCL_TOTAL] += incl
        if incl > agg[d, A_INCL_MAX]:
            agg[d, A_INCL_MAX] = incl
        agg[d, A_EXCL_TOTAL] += excl
        if excl > agg[d, A_EXCL_MAX]:
            agg[d, A_EXCL_MAX] = excl
