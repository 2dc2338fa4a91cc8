"""FlightWriter: the flight-recorder stage between a thread's drain and its ThreadWriter.

In ``detail="flight"`` the drain hands every batch (index events and the
details captured for them) to this wrapper instead of the ThreadWriter. It
holds back the most recent events (those a future trigger's pre-roll could
still reach, and those of windows not yet closed) with their details, finds
the triggers, and passes the older events on to the real writer with only the
details that fall inside windows (``atf2.flight``). Index events all reach
the file, in order, just later; details outside every window are discarded
and counted as ``outside_window`` detail drops. Held details are bounded by
``hold_bytes`` (the detail pool's size): beyond it the oldest are discarded
first, and a window wanting them records a clipped pre-roll.

The manifest entries of finished windows accumulate in ``windows``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .flight import (
    TRIGGER_MARK,
    WINDOW_OPEN,
    FlightOptions,
    Triggers,
    Windows,
    compute_windows,
    find_triggers,
    manifest_windows,
    window_mask,
)
from .layout import (
    CTRL_DETAIL_DROPS,
    CTRL_DETAIL_WRITTEN,
    DROP_OUTSIDE_WINDOW,
    DROP_PAIR_LOST,
    DROP_POOL_EXHAUSTED,
    EVENT_CALL,
    INDEX_EVENT_DTYPE,
)
from .writer import DetailBatch, ThreadWriter, _normalize_details

_EMPTY_TRIGGERS = Triggers(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.uint64), np.empty(0, np.int64))


class FlightWriter:
    """Wraps a ThreadWriter (same ``write_events`` / ``close`` / ``finalize`` interface)."""

    def __init__(self, writer: ThreadWriter, ctrl: np.ndarray | None, thread_id: int, options: FlightOptions,
                 symbol_trigger: Callable[[int], bool], mark_fids: set[int], hold_bytes: int) -> None:
        self.writer = writer
        self.thread_id = int(thread_id)
        self.ctrl = ctrl
        self.options = options
        self._symbol_trigger = symbol_trigger
        self._symbol_cache: dict = {}
        self._mark_fids = np.asarray(sorted(mark_fids), dtype=np.uint64)
        self.hold_bytes = int(hold_bytes)
        self._events = np.empty(0, dtype=INDEX_EVENT_DTYPE)
        self._base = 0  # index_seq of _events[0]
        self._held_from = 0  # first index_seq whose detail may still be held
        self._d_pos = np.empty(0, np.int64)
        self._d_type = np.empty(0, np.uint16)
        self._d_flags = np.empty(0, np.uint16)
        self._d_off = np.zeros(1, np.int64)
        self._d_payload = np.empty(0, np.uint8)
        self._triggers = _EMPTY_TRIGGERS
        self._reasons: dict = {}  # trigger start position -> mark reason
        self.windows: list = []
        self.discarded = 0
        self._ring_lost = 0  # the arena's drop-oldest count seen so far
        self._suspect_next = False
        self._uncounted = 0  # discards whose CTRL_DETAIL_WRITTEN the drain has not added yet
        self._closed = False

    # -- what the session reads of a writer ----------------------------------

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writer, name)

    # -- the stage --------------------------------------------------------------

    def write_events(self, events: np.ndarray, details: Any = None) -> None:
        self._settle_counts()
        n0 = len(self._events)
        start = self._base + n0
        events = np.asarray(events, dtype=INDEX_EVENT_DTYPE)
        d = _normalize_details(details, events)
        self._events = np.concatenate([self._events, events]) if n0 else events.copy()
        if d is not None:
            offs = d.offsets - d.offsets[0]
            self._d_pos = np.concatenate([self._d_pos, d.positions + start])
            self._d_type = np.concatenate([self._d_type, d.event_type])
            self._d_flags = np.concatenate([self._d_flags, d.flags])
            self._d_off = np.concatenate([self._d_off, self._d_off[-1] + offs[1:]])
            self._d_payload = np.concatenate([self._d_payload, d.payload[d.offsets[0]: d.offsets[-1]]])
        self._note_ring_drops(start, d)
        self._find_triggers(events, start)
        self._bound_details()
        self._flush(final=False)

    def _find_triggers(self, events: np.ndarray, start: int) -> None:
        fids = events["function_id"]
        kinds = events["event_kind"]
        calls = np.unique(fids[kinds == EVENT_CALL])
        for fid in calls.tolist():
            if fid not in self._symbol_cache:
                self._symbol_cache[fid] = bool(self._symbol_trigger(fid))
        symbol_ids = [f for f in calls.tolist() if self._symbol_cache[f]]
        marks: np.ndarray | list[int] = np.flatnonzero((kinds == EVENT_CALL) & np.isin(fids, self._mark_fids)) if self.options.marks else []
        new = find_triggers(start, fids, kinds, events["timestamp_ns"], symbol_ids, self.options.exceptions,
                            [start + int(i) for i in marks], [int(events["timestamp_ns"][i]) for i in marks])
        # A mark's CALL event is the marker: make it a one-event trigger at its own position.
        is_mark = new.kinds == TRIGGER_MARK
        new = new._replace(end=np.where(is_mark, new.start + 1, new.end))
        for p in new.start[is_mark].tolist():
            self._reasons[p] = self._mark_reason(p)
        if len(new.start):
            self._triggers = Triggers(*(np.concatenate([a, b]) for a, b in zip(self._triggers, new, strict=True)))
            order = np.lexsort((self._triggers.end, self._triggers.start))
            self._triggers = Triggers(*(a[order] for a in self._triggers))

    def _note_ring_drops(self, start: int, d: Any) -> None:
        """The arena dropped its oldest details since the last batch: nothing before this batch's
        first detail is held any more (drop-oldest loses the oldest first)."""
        if self.ctrl is None:
            return
        lost = int(self.ctrl[CTRL_DETAIL_DROPS + DROP_POOL_EXHAUSTED]) + int(self.ctrl[CTRL_DETAIL_DROPS + DROP_PAIR_LOST])
        # The counter may also have moved after the drain took this batch (the
        # loss then sits before the next batch): distrust the next batch too.
        suspect = lost > self._ring_lost or self._suspect_next
        self._suspect_next = lost > self._ring_lost
        if suspect:
            self._ring_lost = lost
            first = int(d.positions[0]) + start if d is not None else start + 0
            self._held_from = max(self._held_from, first)
            k = int(np.searchsorted(self._d_pos, first, side="left"))
            if k:
                self._drop_details(k)

    def _mark_reason(self, position: int) -> str | None:
        k = int(np.searchsorted(self._d_pos, position))
        if k >= len(self._d_pos) or self._d_pos[k] != position or self._d_flags[k] == 0:
            return None
        from .payload import decode

        try:
            lo, hi = self._d_off[k] - self._d_off[0], self._d_off[k + 1] - self._d_off[0]  # offsets are cumulative
            args = decode(self._d_payload[lo:hi].tobytes(), int(self._d_flags[k])).args
        except Exception:  # noqa: BLE001 - an undecodable mark payload: a window without a reason, not a failed drain
            return None
        return str(args[0][1]) if args else None

    def _bound_details(self) -> None:
        """Discard the oldest held details beyond ``hold_bytes`` (drop-oldest, as the ring)."""
        excess = int(self._d_off[-1] - self._d_off[0]) - self.hold_bytes
        if excess <= 0:
            return
        k = int(np.searchsorted(self._d_off, self._d_off[0] + excess, side="left"))
        k = min(k, len(self._d_pos))
        if k:
            self._held_from = max(self._held_from, int(self._d_pos[k - 1]) + 1)
            self._drop_details(k)

    def _drop_details(self, k: int, persisted: int = 0) -> None:
        """Remove the first k held details; ``k - persisted`` of them were not written."""
        lost = k - persisted
        if lost:
            self.discarded += lost
            self._uncounted += lost
        base = self._d_off[k]
        self._d_pos = self._d_pos[k:]
        self._d_type = self._d_type[k:]
        self._d_flags = self._d_flags[k:]
        self._d_payload = self._d_payload[base - self._d_off[0]:] if k else self._d_payload
        self._d_off = self._d_off[k:]

    def _settle_counts(self) -> None:
        """Move discarded details from 'written' to the outside_window drops (once the drain counted them)."""
        if self.ctrl is not None and self._uncounted:
            self.ctrl[CTRL_DETAIL_WRITTEN] -= np.uint64(self._uncounted)
            self.ctrl[CTRL_DETAIL_DROPS + DROP_OUTSIDE_WINDOW] += np.uint64(self._uncounted)
        self._uncounted = 0

    def _horizon(self, windows: Windows, final: bool) -> int:
        """Positions below the horizon are decided: no future trigger can reach them."""
        end = self._base + len(self._events)
        if final:
            return end
        pre = self.options.pre_roll
        if pre.in_ns:
            ts = self._events["timestamp_ns"]
            h = self._base + int(np.searchsorted(ts, np.uint64(max(0, int(ts[-1]) - pre.amount)), side="left")) if len(ts) else end
        else:
            h = end - pre.amount
        h = max(self._base, min(h, end))
        for j in range(len(windows)):  # never split a window, nor pass an open one
            s, t = int(windows.start[j]), int(windows.stop[j])
            if (int(windows.state[j]) == WINDOW_OPEN and s < h) or s < h < t:
                h = s
        return max(self._base, h)

    def _flush(self, final: bool) -> None:
        if not len(self._events):
            return
        ts = self._events["timestamp_ns"]
        tr = self._triggers
        stop_ns = int(ts[-1])
        windows = compute_windows(tr, ts, self._base, self.options, self._held_from, final=final, stop_ns=stop_ns)
        h = self._horizon(windows, final)
        if h <= self._base:
            return
        # windows entirely below the horizon are finished: record them, forget their triggers
        done = windows.stop <= h
        if final:
            done[:] = True
        if done.any():
            reasons = {i: self._reasons.get(int(tr.start[i])) for i in range(len(tr.start)) if int(tr.kinds[i]) & TRIGGER_MARK}
            reasons = {i: r for i, r in reasons.items() if r is not None}
            sel = type(windows)(*(a[done] for a in windows))
            self.windows.extend(manifest_windows(sel, tr, ts, self._base, self.thread_id, reasons))
            last_trigger = int(sel.last[-1])
            for p in tr.start[: last_trigger + 1].tolist():
                self._reasons.pop(p, None)
            self._triggers = Triggers(*(a[last_trigger + 1:] for a in tr))
        # write [base, h): details inside windows only
        n = h - self._base
        k = int(np.searchsorted(self._d_pos, h, side="left"))
        keep = window_mask(self._d_pos[:k], windows) if k else np.zeros(0, dtype=bool)
        details = None
        if keep.any():
            idx = np.flatnonzero(keep)
            starts, ends = self._d_off[idx], self._d_off[idx + 1]
            lengths = ends - starts
            offsets = np.zeros(len(idx) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            base_off = self._d_off[0]
            payload = np.concatenate([self._d_payload[s - base_off: e - base_off] for s, e in zip(starts, ends, strict=True)])
            details = DetailBatch(self._d_pos[idx] - self._base, payload, offsets, self._d_type[idx], self._d_flags[idx])
        self.writer.write_events(self._events[:n], details)
        self._drop_details(k, int(keep.sum()))
        self._events = self._events[n:]
        self._base = h

    # -- end of the thread --------------------------------------------------------

    def finalize(self, *args: Any, **kw: Any) -> Any:
        if not self._closed:
            self._flush(final=True)
            self._drop_details(len(self._d_pos))
            self._settle_counts()
            self._closed = True
        return self.writer.finalize(*args, **kw)

    def close(self) -> None:
        if not self._closed:
            try:
                self._flush(final=True)
                self._drop_details(len(self._d_pos))
                self._settle_counts()
            finally:
                self._closed = True
        self.writer.close()
