"""Analysis of recorded events: CALL/RETURN intervals and per-function summaries.

Both work on a ``SessionReader`` (every thread of the session) or on a plain
numpy array of ``INDEX_EVENT_DTYPE`` records (split by its ``thread_id``
field, or by a ``thread`` column as in ``SessionReader.merged()``, where it is
the thread's position in ``reader.threads``, so results name positions). Each
thread is paired on its own by ``kernels.intervals.pair_chunk`` in chunks, so
memory stays bounded by the chunk size (plus the output of ``intervals``).

See ``kernels.intervals`` for how the edges of a trace are treated: calls
still open at the end and RETURNs whose CALL came before the trace are
reported with ``FLAG_UNCLOSED`` / ``FLAG_UNOPENED`` instead of being paired
with the wrong event. An EXCEPTION event ends a call like a RETURN does.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, NamedTuple, TypeAlias

import numpy as np
import numpy.typing as npt

from .kernels import intervals as _k
from .kernels import summary as _ks
from .kernels.intervals import FLAG_EXCEPTION, FLAG_RECURSIVE, FLAG_UNCLOSED, FLAG_UNOPENED
from .layout import INDEX_EVENT_DTYPE, field_names

if TYPE_CHECKING:
    from .reader import SessionReader

#: what the analyses read: a session, or an array of index events
#: (INDEX_EVENT_DTYPE fields, plus ``thread`` when merged)
EventSource: TypeAlias = "SessionReader | npt.NDArray[np.void]"

__all__ = [
    "FLAG_EXCEPTION",
    "FLAG_RECURSIVE",
    "FLAG_UNCLOSED",
    "FLAG_UNOPENED",
    "FUNCTION_SUMMARY_DTYPE",
    "INTERVAL_DTYPE",
    "THREAD_SUMMARY_DTYPE",
    "Summary",
    "intervals",
    "iter_intervals",
    "summary",
]

#: one CALL/RETURN pair. ``call_index`` / ``return_index`` are the index_seq of
#: the two events in their thread's index.atf (-1 when the event is not in the
#: trace, see the flags); ``exclusive_ns`` is the time not spent in callees.
INTERVAL_DTYPE = np.dtype(
    [
        ("start_ns", "<u8"),
        ("end_ns", "<u8"),
        ("exclusive_ns", "<i8"),
        ("function_id", "<u8"),
        ("call_index", "<i8"),
        ("return_index", "<i8"),
        ("thread", "<u4"),
        ("depth", "<u4"),  # call_depth recorded in the CALL (the RETURN if unopened)
        ("flags", "<u4"),  # FLAG_* bits
    ]
)

#: per function (``thread`` = -1) or per function and thread. Inclusive totals
#: count only calls not nested in another call of the same function, so
#: ``incl_mean_ns`` is over ``calls - recursive``; exclusive figures count all.
FUNCTION_SUMMARY_DTYPE = np.dtype(
    [
        ("function_id", "<u8"),
        ("thread", "<i8"),
        ("calls", "<i8"),
        ("unclosed", "<i8"),
        ("unopened", "<i8"),
        ("exceptions", "<i8"),
        ("recursive", "<i8"),
        ("incl_total_ns", "<i8"),
        ("incl_mean_ns", "<f8"),
        ("incl_max_ns", "<i8"),
        ("excl_total_ns", "<i8"),
        ("excl_mean_ns", "<f8"),
        ("excl_max_ns", "<i8"),
    ]
)

#: per thread: ``busy_ns`` is the time with at least one call open.
THREAD_SUMMARY_DTYPE = np.dtype(
    [
        ("thread", "<u4"),
        ("events", "<i8"),
        ("calls", "<i8"),
        ("unclosed", "<i8"),
        ("unopened", "<i8"),
        ("bad_events", "<i8"),
        ("time_start_ns", "<u8"),
        ("time_end_ns", "<u8"),
        ("span_ns", "<i8"),
        ("busy_ns", "<i8"),
        ("busy_fraction", "<f8"),
    ]
)

SORT_KEYS = tuple(
    name for name in field_names(FUNCTION_SUMMARY_DTYPE) if name not in ("function_id", "thread")
)

DEFAULT_CHUNK = 1 << 20


class Summary(NamedTuple):
    functions: np.ndarray  #: FUNCTION_SUMMARY_DTYPE, one row per function, thread = -1
    per_thread: np.ndarray  #: FUNCTION_SUMMARY_DTYPE, one row per (thread, function)
    threads: np.ndarray  #: THREAD_SUMMARY_DTYPE, one row per thread


class _IdMap:
    """Function id -> dense id, shared by all threads of one analysis."""

    def __init__(self) -> None:
        self.keys, self.slots, self.dense_fids, self.count = _k.new_idmap()

    def __len__(self) -> int:
        return int(self.count[0])

    @property
    def function_ids(self) -> np.ndarray:
        return self.dense_fids[: len(self)]


class _ThreadPairer:
    """Resumable pairing of one thread's events, chunk by chunk."""

    def __init__(self, thread: int, events: np.ndarray, idmap: _IdMap) -> None:
        self.thread = int(thread)
        self.events = events
        self.idmap = idmap
        n = len(events)
        self.t_first = int(events[0]["timestamp_ns"]) if n else 0
        self.t_last = int(events[-1]["timestamp_ns"]) if n else 0
        self.state = _k.new_state(self.t_first)
        self.stack = _k.new_stack()
        self.active = np.zeros(max(len(idmap), 64), np.int64)
        self.calls = 0

    def run(self, chunk_size: int, out: np.ndarray | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (intervals, dense ids) as calls close, chunk by chunk, then the
        calls still open at the end. With ``out`` given, intervals are written
        into it back to back (it must hold len(events) rows) and the yielded
        arrays are views of it; otherwise views of a reused buffer."""
        m = self.idmap
        n = len(self.events)
        chunk_size = max(int(chunk_size), 1)
        buf = None
        dense = np.empty(0, np.int64)
        pos = 0
        for base in range(0, n, chunk_size):
            chunk = self.events[base : base + chunk_size]
            room = len(chunk) + int(self.state[_k.ST_NSTACK])
            if len(dense) < room:
                dense = np.empty(room, np.int64)
            if out is not None:
                target = out[pos:]
            else:
                if buf is None or len(buf) < room:
                    buf = np.empty(room, INTERVAL_DTYPE)
                target = buf
            k, self.stack, self.active, m.keys, m.slots, m.dense_fids = _k.pair_chunk(
                chunk, base, self.thread, self.state, self.stack, self.active,
                m.keys, m.slots, m.dense_fids, m.count, target, dense,
            )
            self.calls += k
            pos += k if out is not None else 0
            yield target[:k], dense[:k]
        open_calls = int(self.state[_k.ST_NSTACK])
        if open_calls:
            target = out[pos:] if out is not None else np.empty(open_calls, INTERVAL_DTYPE)
            dense = np.empty(open_calls, np.int64)
            # as np.uint64: a timestamp at or above 2**63 (a damaged file) does not fit the int64 a Python int becomes
            k = _k.close_open(self.thread, self.state, self.stack, self.active, np.uint64(self.t_last), target, dense)
            self.calls += k
            yield target[:k], dense[:k]

    @property
    def busy_ns(self) -> int:
        return int(self.state[_k.ST_BUSY])

    @property
    def bad_events(self) -> int:
        return int(self.state[_k.ST_BAD])


def _split_by_thread(events: np.ndarray) -> list[tuple[int, np.ndarray]]:
    column = "thread" if "thread" in field_names(events.dtype) else "thread_id"
    if len(events) == 0:
        return []
    ids = events[column]
    first = ids[0]
    if (ids == first).all():
        return [(int(first), events)]
    order = np.argsort(ids, kind="stable")
    ordered = events[order]
    ids = ids[order]
    cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    bounds = [0, *cuts.tolist(), len(ordered)]
    return [(int(ids[a]), ordered[a:b]) for a, b in itertools.pairwise(bounds)]


def thread_events(source: EventSource, threads: Iterable[int] | None = None) -> list[tuple[int, npt.NDArray[np.void]]]:
    """[(thread number, that thread's events)] of a reader or an event array.

    An array needs the INDEX_EVENT_DTYPE fields; it is split by its ``thread``
    column if it has one (a merged array), else by ``thread_id``. ``threads``:
    optional collection of thread numbers to keep."""
    if isinstance(source, np.ndarray):
        names = source.dtype.names or ()
        missing = [n for n in field_names(INDEX_EVENT_DTYPE) if n not in names]
        if missing:
            raise TypeError(f"event array lacks the fields {missing} of INDEX_EVENT_DTYPE")
        pairs = _split_by_thread(source)
    else:
        pairs = [(int(tr.thread_id), tr.index.events) for tr in source.threads]
    if threads is not None:
        keep = {int(t) for t in threads}
        pairs = [p for p in pairs if p[0] in keep]
    return pairs


def iter_intervals(
    source: EventSource, *, threads: Iterable[int] | None = None, chunk_size: int = DEFAULT_CHUNK
) -> Iterator[tuple[int, npt.NDArray[np.void]]]:
    """Yield ``(thread, intervals)`` arrays (INTERVAL_DTYPE) as calls close,
    thread by thread, with memory bounded by ``chunk_size`` events. The
    arrays are reused between steps: copy what you keep."""
    idmap = _IdMap()
    for thread, events in thread_events(source, threads):
        pairer = _ThreadPairer(thread, events, idmap)
        for chunk, _dense in pairer.run(chunk_size):
            if len(chunk):
                yield thread, chunk


def intervals(
    source: EventSource, *, threads: Iterable[int] | None = None, chunk_size: int = DEFAULT_CHUNK
) -> npt.NDArray[np.void]:
    """All CALL/RETURN intervals (INTERVAL_DTYPE), thread after thread; within
    a thread in the order the calls end (calls still open at the end last)."""
    pairs = thread_events(source, threads)
    # np.zeros (calloc) rather than np.empty: fresh pages fault in much faster here
    out = np.zeros(sum(len(ev) for _, ev in pairs), INTERVAL_DTYPE)
    idmap = _IdMap()
    pos = 0
    for thread, events in pairs:
        pairer = _ThreadPairer(thread, events, idmap)
        for _chunk, _dense in pairer.run(chunk_size, out=out[pos:]):
            pass
        pos += pairer.calls
    return out[:pos]


def _rows(agg: np.ndarray, function_ids: np.ndarray, thread: int) -> np.ndarray:
    used = np.flatnonzero(agg[:, _ks.A_CALLS] > 0)
    rows = np.zeros(len(used), FUNCTION_SUMMARY_DTYPE)
    a = agg[used]
    rows["function_id"] = function_ids[used]
    rows["thread"] = thread
    rows["calls"] = a[:, _ks.A_CALLS]
    rows["unclosed"] = a[:, _ks.A_UNCLOSED]
    rows["unopened"] = a[:, _ks.A_UNOPENED]
    rows["exceptions"] = a[:, _ks.A_EXCEPTIONS]
    rows["recursive"] = a[:, _ks.A_RECURSIVE]
    rows["incl_total_ns"] = a[:, _ks.A_INCL_TOTAL]
    rows["incl_max_ns"] = a[:, _ks.A_INCL_MAX]
    rows["excl_total_ns"] = a[:, _ks.A_EXCL_TOTAL]
    rows["excl_max_ns"] = a[:, _ks.A_EXCL_MAX]
    outer = np.maximum(rows["calls"] - rows["recursive"], 1)
    rows["incl_mean_ns"] = rows["incl_total_ns"] / outer
    rows["excl_mean_ns"] = rows["excl_total_ns"] / np.maximum(rows["calls"], 1)
    return rows


def _sorted(rows: np.ndarray, sort: str | None, top: int | None, by_thread: bool) -> np.ndarray:
    if sort is not None:
        if sort not in SORT_KEYS:
            raise ValueError(f"unknown sort key {sort!r}; one of {', '.join(SORT_KEYS)}")
        keys: tuple[np.ndarray, ...] = (rows["function_id"], -rows[sort].astype(np.float64))
        if by_thread:
            keys = keys + (rows["thread"],)
        rows = rows[np.lexsort(keys)]
    if top is not None:
        if by_thread:
            rank = np.zeros(len(rows), np.int64)
            _, first, counts = np.unique(rows["thread"], return_index=True, return_counts=True)
            for f, c in zip(first, counts, strict=True):
                rank[f : f + c] = np.arange(c)
            rows = rows[rank < top]
        else:
            rows = rows[:top]
    return rows


def summary(
    source: EventSource,
    *,
    threads: Iterable[int] | None = None,
    sort: str | None = "incl_total_ns",
    top: int | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> Summary:
    """Per-function figures overall and per thread, and per-thread busy time.

    ``sort``: a column of FUNCTION_SUMMARY_DTYPE, largest first (None keeps
    first-seen order); ``top``: keep that many rows (per thread for
    ``per_thread``). All times in ns of the session clock.
    """
    if top is not None and int(top) < 0:
        raise ValueError("top must be >= 0")
    idmap = _IdMap()
    total = np.zeros((64, _ks.AGG_COLUMNS), np.int64)
    per_thread = []
    thread_rows = []
    for thread, events in thread_events(source, threads):
        pairer = _ThreadPairer(thread, events, idmap)
        agg = np.zeros((max(len(idmap), 64), _ks.AGG_COLUMNS), np.int64)
        for chunk, dense in pairer.run(chunk_size):
            if len(idmap) > len(agg):
                agg = np.concatenate([agg, np.zeros((2 * len(idmap) - len(agg), _ks.AGG_COLUMNS), np.int64)])
            _ks.accumulate(chunk, dense, len(chunk), agg)
        per_thread.append(_rows(agg, idmap.dense_fids, thread))
        if len(agg) > len(total):
            total = np.concatenate([total, np.zeros((len(agg) - len(total), _ks.AGG_COLUMNS), np.int64)])
        summed = total[: len(agg)]
        for col in range(_ks.AGG_COLUMNS):
            if col in _ks.MAX_COLUMNS:
                np.maximum(summed[:, col], agg[:, col], out=summed[:, col])
            else:
                summed[:, col] += agg[:, col]
        # clamped to the i8 column: damaged timestamps may be 2**64 apart
        span = max(min(pairer.t_last - pairer.t_first, 2**63 - 1), -(2**63))
        thread_rows.append(
            (
                thread,
                len(events),
                pairer.calls,
                int((per_thread[-1]["unclosed"]).sum()),
                int((per_thread[-1]["unopened"]).sum()),
                pairer.bad_events,
                pairer.t_first,
                pairer.t_last,
                span,
                pairer.busy_ns,
                pairer.busy_ns / span if span > 0 else 0.0,
            )
        )
    functions = _rows(total, idmap.dense_fids, -1)
    per = np.concatenate(per_thread) if per_thread else np.zeros(0, FUNCTION_SUMMARY_DTYPE)
    return Summary(
        functions=_sorted(functions, sort, top, by_thread=False),
        per_thread=_sorted(per, sort, top, by_thread=True),
        threads=np.array(thread_rows, THREAD_SUMMARY_DTYPE),
    )
