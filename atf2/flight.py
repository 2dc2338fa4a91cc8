"""Flight-recorder mode: triggers, windows and what to persist.

In ``detail="flight"`` every event's detail is captured into memory, and only
the details inside windows around triggers reach ``detail.atf``. This module
holds the decisions, as pure functions over numpy arrays (the loops are the
kernels of ``atf2.kernels.windows``):

* ``FlightOptions``: pre-roll / post-roll (``Roll``: N events or a duration)
  and the triggers (symbol name patterns matched at CALL with ``fnmatch``,
  exceptions, marks from ``atf2.mark``);
* ``find_triggers``: trigger positions and kinds in a run of index events;
* ``compute_windows``: coalesced windows, clipped to what is still held and
  cut short by the end of the session;
* ``window_mask``: which positions (details) fall inside the windows;
* ``manifest_windows``: the manifest's ``windows`` entries.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from .errors import AtfV2Error
from .kernels.windows import coalesce, in_windows, window_bounds
from .layout import EVENT_CALL, EVENT_EXCEPTION

# Trigger kinds (bits, OR-ed when windows merge)
TRIGGER_SYMBOL = 1
TRIGGER_EXCEPTION = 2
TRIGGER_MARK = 4
TRIGGER_NAMES = {TRIGGER_SYMBOL: "symbol", TRIGGER_EXCEPTION: "exception", TRIGGER_MARK: "mark"}

# Window states (kernels.windows.window_bounds)
WINDOW_COMPLETE = 0
WINDOW_OPEN = 1  #: the post-roll is not over yet; more events may extend it
WINDOW_CUT = 2  #: the session stopped before the post-roll was over

_UNITS_NS = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_ROLL_RE = re.compile(r"^\s*(\d+)\s*(ns|us|ms|s)?\s*$")


class Roll(NamedTuple):
    """A pre- or post-roll: ``amount`` events, or ``amount`` ns when ``in_ns``."""

    amount: int
    in_ns: bool = False

    @classmethod
    def parse(cls, text: Any) -> Roll:
        """``"100"`` (events), ``"5ms"`` / ``"250us"`` / ``"2s"`` / ``"10ns"`` (time), or a Roll / int."""
        if isinstance(text, Roll):
            return text
        if isinstance(text, int) and not isinstance(text, bool):
            if text < 0:
                raise AtfV2Error(f"a roll must be >= 0, not {text}")
            return cls(text, False)
        m = _ROLL_RE.match(str(text))
        if not m:
            raise AtfV2Error(f"invalid roll {text!r}: give N events or a duration like 5ms, 250us, 2s")
        value, unit = int(m.group(1)), m.group(2)
        return cls(value, False) if unit is None else cls(value * _UNITS_NS[unit], True)

    def to_manifest(self) -> dict:
        return {"ns": self.amount} if self.in_ns else {"events": self.amount}


@dataclass(frozen=True)
class FlightOptions:
    """What opens a window and how much around it is kept."""

    pre_roll: Roll = Roll(1000)  # noqa: RUF009 - a NamedTuple, immutable
    post_roll: Roll = Roll(1000)  # noqa: RUF009 - a NamedTuple, immutable
    symbols: tuple = ()  #: fnmatch patterns, matched at CALL against qualname and module.qualname
    exceptions: bool = False  #: a function left by an exception opens a window
    marks: bool = True  #: ``atf2.mark(reason)`` opens a window

    @classmethod
    def from_triggers(cls, triggers: Iterable[str] = (), pre_roll: Any = 1000, post_roll: Any = 1000) -> FlightOptions:
        """From ``--trigger`` values: ``symbol=PATTERN``, ``exception``, ``mark``."""
        symbols, exceptions = [], False
        for t in triggers:
            if t == "exception":
                exceptions = True
            elif t == "mark":
                pass  # marks always trigger
            elif isinstance(t, str) and t.startswith("symbol=") and len(t) > len("symbol="):
                symbols.append(t[len("symbol="):])
            else:
                raise AtfV2Error(f"invalid trigger {t!r}: use symbol=PATTERN, exception or mark")
        return cls(Roll.parse(pre_roll), Roll.parse(post_roll), tuple(symbols), exceptions)

    def matches_symbol(self, *names: str | None) -> bool:
        """Whether a function with these names (qualname, module.qualname, ...) is a symbol trigger."""
        return any(
            fnmatch.fnmatchcase(name, pattern) for pattern in self.symbols for name in names if name
        )

    def to_manifest(self) -> dict:
        return {
            "pre_roll": self.pre_roll.to_manifest(),
            "post_roll": self.post_roll.to_manifest(),
            "triggers": [f"symbol={p}" for p in self.symbols] + (["exception"] if self.exceptions else []) + ["mark"],
        }


class Triggers(NamedTuple):
    """Triggers in position order: events [start, end), time ``ts``, ``kinds`` bits."""

    start: np.ndarray  # int64
    end: np.ndarray  # int64
    ts: np.ndarray  # uint64
    kinds: np.ndarray  # int64


def find_triggers(base: int, function_ids: np.ndarray, kinds: np.ndarray, ts: np.ndarray,
                  symbol_ids: Any = (), exceptions: bool = False,
                  mark_positions: Sequence[int] = (), mark_ts: Sequence[int] = ()) -> Triggers:
    """Triggers among the events at positions ``base + k``.

    ``symbol_ids``: function ids whose CALL is a trigger. ``exceptions``: an
    EXCEPTION event is a trigger. Marks: ``mark_positions`` (the position of
    the next event when the mark was made) and their times; a mark covers no
    event. A CALL that is also a mark's position stays two triggers.
    """
    function_ids = np.asarray(function_ids, dtype=np.uint64)
    kinds = np.asarray(kinds)
    bits = np.zeros(len(kinds), dtype=np.int64)
    ids = np.asarray(list(symbol_ids) if not isinstance(symbol_ids, np.ndarray) else symbol_ids, dtype=np.uint64)
    if ids.size:
        bits[(kinds == EVENT_CALL) & np.isin(function_ids, ids)] |= TRIGGER_SYMBOL
    if exceptions:
        bits[kinds == EVENT_EXCEPTION] |= TRIGGER_EXCEPTION
    hit = np.flatnonzero(bits)
    ev_start = hit.astype(np.int64) + base
    mp = np.asarray(mark_positions, dtype=np.int64)
    start = np.concatenate([ev_start, mp])
    end = np.concatenate([ev_start + 1, mp])
    tts = np.concatenate([np.asarray(ts, dtype=np.uint64)[hit], np.asarray(mark_ts, dtype=np.uint64)])
    tk = np.concatenate([bits[hit], np.full(len(mp), TRIGGER_MARK, dtype=np.int64)])
    order = np.lexsort((end, start))  # by position; a mark (empty) before the event at its position
    return Triggers(start[order], end[order], tts[order], tk[order])


class Windows(NamedTuple):
    """Coalesced windows [start, stop) of positions, in order, and what they saved."""

    start: np.ndarray  # int64
    stop: np.ndarray  # int64
    kinds: np.ndarray  # int64: TRIGGER_* bits
    first: np.ndarray  # int64: index of the first trigger (into the Triggers)
    last: np.ndarray  # int64: index of the last trigger
    state: np.ndarray  # int8: WINDOW_*
    clipped: np.ndarray  # bool: pre-roll wanted more than was held

    def __len__(self) -> int:
        return len(self.start)


def compute_windows(triggers: Triggers, ts: np.ndarray, base: int, options: FlightOptions,
                    held_from: int, final: bool = True, stop_ns: int | None = None) -> Windows:
    """Coalesced windows for ``triggers`` over the events ``ts`` (positions ``base + k``).

    ``held_from``: first position whose detail is still in memory (the
    pre-roll gets what is there). ``final``: no event follows ``ts`` (the
    session stopped at ``stop_ns``, default the last timestamp): a post-roll
    reaching past the end is cut short; otherwise that window stays open.
    """
    ts = np.ascontiguousarray(ts, dtype=np.uint64)
    k = len(triggers.start)
    starts = np.empty(k, dtype=np.int64)
    stops = np.empty(k, dtype=np.int64)
    clipped = np.empty(k, dtype=np.bool_)
    states = np.empty(k, dtype=np.int8)
    if stop_ns is None:
        stop_ns = int(ts[-1]) if len(ts) else 0
    pre, post = options.pre_roll, options.post_roll
    window_bounds(ts, np.int64(base), triggers.start, triggers.end, triggers.ts,
                  np.int64(pre.amount), pre.in_ns, np.int64(post.amount), post.in_ns,
                  np.int64(held_from), np.uint64(stop_ns), final, starts, stops, clipped, states)
    outs = [np.empty(k, dtype=np.int64) for _ in range(5)]
    o_state = np.empty(k, dtype=np.int8)
    o_clipped = np.empty(k, dtype=np.bool_)
    m = coalesce(starts, stops, triggers.kinds, states, clipped, outs[0], outs[1], outs[2], outs[3], outs[4], o_state, o_clipped)
    return Windows(outs[0][:m], outs[1][:m], outs[2][:m], outs[3][:m], outs[4][:m], o_state[:m], o_clipped[:m])


def window_mask(positions: np.ndarray, windows: Windows) -> np.ndarray:
    """Boolean mask: which of the non-decreasing ``positions`` lie inside a window."""
    positions = np.ascontiguousarray(positions, dtype=np.int64)
    out = np.empty(len(positions), dtype=np.bool_)
    in_windows(positions, np.ascontiguousarray(windows.start), np.ascontiguousarray(windows.stop), out)
    return out


def manifest_windows(windows: Windows, triggers: Triggers, ts: np.ndarray, base: int, thread_id: int,
                     reasons: dict | None = None) -> list:
    """The manifest ``windows`` entries of (final) windows.

    ``ts``: timestamps of positions ``base + k`` (covering the windows).
    ``reasons``: {trigger index: mark reason}. Pre/post roll saved: the events
    (and ns) kept before the first trigger and after the last one.
    """
    entries = []
    for j in range(len(windows)):
        start, stop = int(windows.start[j]), int(windows.stop[j])
        f, last = int(windows.first[j]), int(windows.last[j])
        t_first, t_last = int(triggers.ts[f]), int(triggers.ts[last])
        pre_events = max(0, int(triggers.start[f]) - start)
        post_events = max(0, stop - int(triggers.end[last]))
        has_events = stop > start
        start_ns = int(ts[start - base]) if has_events else t_first
        end_ns = int(ts[stop - 1 - base]) if has_events else t_last
        kinds = int(windows.kinds[j])
        entry = {
            "thread_id": int(thread_id),
            "start_ns": start_ns,
            "end_ns": end_ns,
            "start_index_seq": start,
            "end_index_seq": stop - 1 if has_events else start,
            "events": stop - start,
            "trigger_kinds": [name for bit, name in TRIGGER_NAMES.items() if kinds & bit],
            "triggers": last - f + 1,
            "trigger_ns": t_first,
            "pre_roll_events": pre_events,
            "pre_roll_ns": max(0, t_first - start_ns) if pre_events else 0,
            "post_roll_events": post_events,
            "post_roll_ns": max(0, end_ns - t_last) if post_events else 0,
            "pre_roll_clipped": bool(windows.clipped[j]),
            "post_roll_cut": int(windows.state[j]) == WINDOW_CUT,
        }
        if reasons:
            marks = [reasons[i] for i in range(f, last + 1) if i in reasons]
            if marks:
                entry["marks"] = marks
        entries.append(entry)
    return entries
