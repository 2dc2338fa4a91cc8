"""Session figures: what was recorded, written and dropped, per thread and per lane.

Every lane keeps the identity ``recorded == written + dropped + pending``
(pending: still in the rings or in the drain's hands; 0 after the thread was
finalized). Counts come from the threads' control blocks (``atf2.layout``
CTRL_* slots), so reading them never stops a producer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .layout import (
    CHANNEL_ACTIVE,
    CHANNEL_CLOSED,
    CHANNEL_EXITED,
    CTRL_DETAIL_BYTES_WRITTEN,
    CTRL_DETAIL_DROPS,
    CTRL_DETAIL_HIGH_WATER,
    CTRL_DETAIL_READ_POS,
    CTRL_DETAIL_RECORDS,
    CTRL_DETAIL_RING_COUNT,
    CTRL_DETAIL_RINGS_SUBMITTED,
    CTRL_DETAIL_WRITE_POS,
    CTRL_DETAIL_WRITTEN,
    CTRL_INDEX_DRAIN_HIGH_WATER,
    CTRL_INDEX_DROPS,
    CTRL_INDEX_GROWTH_REFUSED,
    CTRL_INDEX_HIGH_WATER,
    CTRL_INDEX_RING_COUNT,
    CTRL_INDEX_RINGS_SUBMITTED,
    CTRL_INDEX_WM_CROSSINGS,
    CTRL_INDEX_WM_HIGH,
    CTRL_INDEX_WM_LOW,
    CTRL_INDEX_WM_STATE,
    CTRL_INDEX_WRITE_POS,
    CTRL_INDEX_WRITTEN,
    DROP_REASON_NAMES,
    INDEX_EVENT_SIZE,
    WM_HIGH,
)

_STATE_NAMES = {CHANNEL_ACTIVE: "active", CHANNEL_EXITED: "exited", CHANNEL_CLOSED: "closed"}


def _drops(ctrl: np.ndarray, base: int) -> dict:
    return {name: int(ctrl[base + code]) for code, name in DROP_REASON_NAMES.items()}


@dataclass
class LaneStats:
    """One lane (index or detail) of one thread, or summed over threads."""

    #: records the producers pushed (index lane: events recorded)
    recorded: int = 0
    #: records the drain wrote to the files
    written: int = 0
    #: records dropped, all reasons (``sum(drops.values())``)
    dropped: int = 0
    #: records dropped per reason (``atf2.layout.DROP_REASON_NAMES``)
    drops: dict = field(default_factory=lambda: dict.fromkeys(DROP_REASON_NAMES.values(), 0))
    #: records still in the rings or in the drain's hands (0 once the thread is finalized)
    pending: int = 0
    #: bytes accepted by the writer (index: 32 per event; detail: payload bytes)
    bytes_written: int = 0
    #: full rings the producers handed to the drain
    rings_submitted: int = 0
    #: most records (index) / bytes (detail) ever waiting in the pool
    high_water: int = 0
    #: "normal" or "high" (index lane; hysteresis between the two watermarks)
    watermark_state: str = "normal"
    #: times the lane went from normal to high
    watermark_crossings: int = 0
    #: the high and low watermarks, in records waiting
    watermark_high: int = 0
    watermark_low: int = 0
    #: rings in the pool (index lane: grows from the initial count, see RingConfig)
    rings: int = 0
    #: times an index pool would have grown but the session's growth budget had no room
    growth_refused: int = 0

    def add(self, other: LaneStats) -> None:
        self.recorded += other.recorded
        self.written += other.written
        self.dropped += other.dropped
        self.pending += other.pending
        self.bytes_written += other.bytes_written
        self.rings_submitted += other.rings_submitted
        self.high_water = max(self.high_water, other.high_water)
        self.watermark_crossings += other.watermark_crossings
        self.rings += other.rings
        self.growth_refused += other.growth_refused
        if other.watermark_state == "high":
            self.watermark_state = "high"
        for k, v in other.drops.items():
            self.drops[k] = self.drops.get(k, 0) + v

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def index_from_ctrl(cls, ctrl: npt.NDArray[np.uint64]) -> LaneStats:
        drops = _drops(ctrl, CTRL_INDEX_DROPS)
        recorded = int(ctrl[CTRL_INDEX_WRITE_POS])
        written = int(ctrl[CTRL_INDEX_WRITTEN])
        dropped = sum(drops.values())
        return cls(
            recorded=recorded,
            written=written,
            dropped=dropped,
            drops=drops,
            pending=recorded - written - dropped,
            bytes_written=written * INDEX_EVENT_SIZE,
            rings_submitted=int(ctrl[CTRL_INDEX_RINGS_SUBMITTED]),
            high_water=max(int(ctrl[CTRL_INDEX_HIGH_WATER]), int(ctrl[CTRL_INDEX_DRAIN_HIGH_WATER])),
            watermark_state="high" if int(ctrl[CTRL_INDEX_WM_STATE]) == WM_HIGH else "normal",
            watermark_crossings=int(ctrl[CTRL_INDEX_WM_CROSSINGS]),
            watermark_high=int(ctrl[CTRL_INDEX_WM_HIGH]),
            watermark_low=int(ctrl[CTRL_INDEX_WM_LOW]),
            rings=int(ctrl[CTRL_INDEX_RING_COUNT]),
            growth_refused=int(ctrl[CTRL_INDEX_GROWTH_REFUSED]),
        )

    @classmethod
    def detail_from_ctrl(cls, ctrl: npt.NDArray[np.uint64]) -> LaneStats:
        drops = _drops(ctrl, CTRL_DETAIL_DROPS)
        recorded = int(ctrl[CTRL_DETAIL_RECORDS])
        written = int(ctrl[CTRL_DETAIL_WRITTEN])
        dropped = sum(drops.values())
        waiting = int(ctrl[CTRL_DETAIL_WRITE_POS]) - int(ctrl[CTRL_DETAIL_READ_POS])
        return cls(
            recorded=recorded,
            written=written,
            dropped=dropped,
            drops=drops,
            pending=recorded - written - dropped,
            bytes_written=int(ctrl[CTRL_DETAIL_BYTES_WRITTEN]),
            rings_submitted=int(ctrl[CTRL_DETAIL_RINGS_SUBMITTED]),
            high_water=max(int(ctrl[CTRL_DETAIL_HIGH_WATER]), waiting),
            rings=int(ctrl[CTRL_DETAIL_RING_COUNT]),
        )


@dataclass
class ThreadStats:
    """One registered thread: its lanes, files and time range."""

    #: the session-local thread number N (``thread_N/``)
    thread_id: int
    #: ``threading.get_native_id()`` of the thread
    os_thread_id: int
    #: the thread's name (``threading.current_thread().name``)
    name: str
    #: "active", "exited" (finalizing) or "closed" (files finalized)
    state: str
    #: index lane (of this thread, or summed over threads)
    index: LaneStats
    #: detail lane (of this thread, or summed over threads)
    detail: LaneStats
    index_file_bytes: int = 0
    detail_file_bytes: int = 0
    time_start_ns: int = 0
    time_end_ns: int = 0
    #: events whose timestamp was raised to keep the file non-decreasing
    timestamps_clamped: int = 0
    #: last write error of this thread's files, if any
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def state_name(state: int) -> str:
        return _STATE_NAMES.get(state, str(state))


@dataclass
class SessionStats:
    """A session's figures: its threads, its lanes summed over threads, the drain's work."""

    session_dir: str
    #: "recording", "complete", or "disabled" (in a forked child)
    status: str
    pid: int
    #: seconds from start to stop (to now while recording)
    elapsed_s: float
    #: one ``ThreadStats`` per registered thread, by thread number
    threads: list
    #: index lane (of this thread, or summed over threads)
    index: LaneStats
    #: detail lane (of this thread, or summed over threads)
    detail: LaneStats
    #: cycles the drain ran
    drain_cycles: int = 0
    #: seconds the drain spent working (not sleeping)
    drain_busy_s: float = 0.0
    #: events written per second of session time
    drain_rate_events_per_s: float = 0.0
    #: events written per second of drain work: what the drain could sustain
    drain_capacity_events_per_s: float = 0.0
    #: sum of the thread files' sizes on disk
    bytes_written: int = 0
    time_start_ns: int = 0
    time_end_ns: int = 0
    #: write errors and other problems the drain met (the session went on)
    errors: list = field(default_factory=list)

    @property
    def events_recorded(self) -> int:
        return self.index.recorded

    @property
    def events_written(self) -> int:
        return self.index.written

    @property
    def events_dropped(self) -> int:
        return self.index.dropped

    def thread(self, thread_id: int) -> ThreadStats:
        for t in self.threads:
            if t.thread_id == thread_id:
                return t
        raise KeyError(thread_id)

    def as_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["events_recorded"] = self.events_recorded
        d["events_written"] = self.events_written
        d["events_dropped"] = self.events_dropped
        return d
