"""Per-thread ring pools and control blocks: the producer side of a session.

A ``ThreadChannel`` is what a registered thread writes into: a control block
(``ctrl``, uint64[ctrl_words(max rings)], slots in ``atf2.layout``) and one preallocated
pool per lane. The arrays are allocated once and never reallocated nor moved
while the thread is registered, so nopython code may keep their raw addresses
(``CTRL_INDEX_POOL_PTR`` / ``CTRL_DETAIL_POOL_PTR``, or ``ctrl.ctypes.data``)
and rebuild them with ``numba.carray``.

Detail lane and flight-recorder mode: the detail arena already keeps the
newest payloads and drops the oldest ring when the drain does not free space
(each record carries the absolute index position of its event). A flight
recorder can therefore capture a detail for every event into this arena and
let the drain persist only the records inside a window (``detail_ring_take``
with an index-position limit, dropping the rest with a reason of its own);
nothing here assumes the drain writes every detail it takes.

Sizes: the pools are ``numpy.empty`` buffers; large ones are mmap-backed, so
untouched rings cost address space, not memory. They are never touched at
allocation: a page is faulted in by the first record written to it, so a
thread pays only for the part of its rings it uses (pre-touching the default
32 MiB would cost tens of ms per thread here, ~8 ms per MiB of first-touch
faults). ``PoolCache`` keeps the pools of a few exited threads for the next
threads to register: their pages are already resident, so a short-lived
thread costs no page faults at all.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import AtfV2Error
from .kernels.ring import give_back_growth

if TYPE_CHECKING:
    from .flight_writer import FlightWriter
    from .stats import ThreadStats
    from .writer import ThreadWriter
from .layout import (
    CHANNEL_ACTIVE,
    CTRL_DETAIL_POOL_PTR,
    CTRL_DETAIL_RING_BYTES,
    CTRL_DETAIL_RING_COUNT,
    CTRL_ENABLED,
    CTRL_INDEX_FRESH_END,
    CTRL_INDEX_GROWTH_BUDGET_PTR,
    CTRL_INDEX_POOL_PTR,
    CTRL_INDEX_RING_CAPACITY,
    CTRL_INDEX_RING_COUNT,
    CTRL_INDEX_RING_COUNT_TARGET,
    CTRL_INDEX_RING_MAP,
    CTRL_INDEX_RING_MAP_MASK,
    CTRL_INDEX_WM_HIGH,
    CTRL_INDEX_WM_LOW,
    CTRL_STATE,
    CTRL_THREAD_ID,
    DETAIL_RING_ALIGN,
    DETAIL_RING_HEADER_SIZE,
    MAX_INDEX_RINGS,
    RING_RECORD_WORDS,
    ctrl_words,
)


@dataclass(frozen=True)
class RingConfig:
    """Pool geometry shared by every thread of a session.

    Defaults: 16 index rings of 64 Ki records (24 MiB per thread, 1 Mi
    events of backlog: 50 ms at 20 M events/s, more than two flush
    intervals) and 8 detail rings of 1 MiB.

    Growth: a thread's index pool may double its ring count up to
    ``ring_growth`` times its initial rings, when the producer finds its
    backlog over the low watermark at a ring switch (a thread producing
    faster than the drain gets a core or a disk to write with), wherever
    the waiting records lie (the ring map, ``atf2.layout``). The address
    space for the largest pool is reserved when the thread registers
    (``numpy.empty``: no memory until touched), so a thread costs what it
    uses: at most 24 MiB at the default rate of events, up to 384 MiB (16
    Mi events: 800 ms at 20 M events/s) only for a thread the drain could
    not keep up with. With the drain's write-behind queue (2 Mi events) that
    absorbs a 750 ms disk stall at 20 M events/s without a drop
    (``python -m atf2.bench.drain``, rows ``drain_stall_*``).

    Budget: all the threads' pools together grow by at most
    ``ring_growth_budget`` bytes (default 512 MiB); past it a pool stays as
    it is (its producer then drops oldest rings, counted) rather than let a
    program with many threads outrunning a slow disk run out of memory.
    A closed thread's growth goes back to the budget.
    """

    ring_capacity: int = 1 << 16
    ring_count: int = 16
    detail: bool = True
    detail_ring_bytes: int = 1 << 20
    detail_ring_count: int = 8
    #: watermarks, as fractions of the index pool (high > low: hysteresis)
    high_watermark: float = 0.75
    low_watermark: float = 0.25
    #: the most an index pool may grow, as a multiple of ring_count (a power of
    #: two; 1: fixed; less where ring_count times that exceeds the ring map)
    ring_growth: int = 16
    #: bytes all index pools of the session together may grow by (0: none may grow)
    ring_growth_budget: int = 512 << 20

    def __post_init__(self) -> None:
        def check(ok: bool, what: str) -> None:
            if not ok:
                raise AtfV2Error(f"invalid ring option: {what}")

        check(isinstance(self.ring_capacity, int) and self.ring_capacity >= 1, f"ring_capacity={self.ring_capacity!r} (>= 1)")
        check(isinstance(self.ring_count, int) and self.ring_count >= 2, f"ring_count={self.ring_count!r} (>= 2: one active ring plus spares)")
        check(
            isinstance(self.detail_ring_bytes, int)
            and self.detail_ring_bytes >= 2 * DETAIL_RING_HEADER_SIZE
            and self.detail_ring_bytes % DETAIL_RING_ALIGN == 0,
            f"detail_ring_bytes={self.detail_ring_bytes!r} (>= {2 * DETAIL_RING_HEADER_SIZE}, multiple of {DETAIL_RING_ALIGN})",
        )
        check(isinstance(self.detail_ring_count, int) and self.detail_ring_count >= 2, f"detail_ring_count={self.detail_ring_count!r} (>= 2)")
        check(
            isinstance(self.ring_growth, int) and self.ring_growth >= 1 and self.ring_growth & (self.ring_growth - 1) == 0,
            f"ring_growth={self.ring_growth!r} (a power of two >= 1)",
        )
        check(self.ring_count <= MAX_INDEX_RINGS, f"ring_count={self.ring_count!r} (at most {MAX_INDEX_RINGS} index rings per thread)")
        check(
            isinstance(self.ring_growth_budget, int) and not isinstance(self.ring_growth_budget, bool) and self.ring_growth_budget >= 0,
            f"ring_growth_budget={self.ring_growth_budget!r} (bytes, >= 0)",
        )
        check(0.0 < self.low_watermark < self.high_watermark <= 1.0, f"watermarks low={self.low_watermark} high={self.high_watermark} (0 < low < high <= 1)")

    @property
    def index_pool_records(self) -> int:
        """Records of a thread's index pool before any growth."""
        return self.ring_capacity * self.ring_count

    @property
    def index_pool_max_records(self) -> int:
        """Records of a thread's index pool grown to the full (the rows its array holds)."""
        return self.ring_capacity * self.max_ring_count

    @property
    def max_ring_count(self) -> int:
        """The most index rings a thread's pool may grow to: ``ring_count`` doubled
        up to ``ring_growth`` times over, and no more than the ring map holds."""
        count = self.ring_count
        while count * 2 <= min(self.ring_count * self.ring_growth, MAX_INDEX_RINGS):
            count *= 2
        return count

    @property
    def detail_pool_bytes(self) -> int:
        return self.detail_ring_bytes * self.detail_ring_count if self.detail else 0


class PoolCache:
    """A small free-list of ring pools recycled from exited threads (one per session).

    ``take()`` (a registering thread) returns ``(index_pool, detail_words)``
    of a previous thread, or fresh ``numpy.empty`` ones; ``give()`` (the drain,
    once a thread is gone and its channel closed) keeps up to ``keep`` pool
    sets and drops the rest, so a burst of thread churn holds at most
    ``keep`` pools' resident pages. A recycled pool holds stale records: that
    is fine, a new channel's positions start at 0 and the drain only reads
    below the write position. ``list.append``/``pop`` are atomic under the
    GIL, so neither side takes a lock.
    """

    def __init__(self, config: RingConfig, keep: int = 8):
        self.config = config
        self.keep = keep
        self._free: list = []
        self.reused = 0  # pools handed out again (for tests and figures)
        # the session's growth budget, in records (CTRL_INDEX_GROWTH_BUDGET_PTR):
        # producers take from it with a CAS, give_back_growth returns to it
        self.growth_budget = np.array([config.ring_growth_budget // (RING_RECORD_WORDS * 8)], dtype=np.uint64)

    @property
    def growth_budget_records(self) -> int:
        """Records the session's index pools may still grow by."""
        return int(self.growth_budget[0])

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        try:
            pools = self._free.pop()
        except IndexError:
            return (
                np.empty((self.config.index_pool_max_records, RING_RECORD_WORDS), dtype=np.uint64),
                np.empty(self.config.detail_pool_bytes // 8, dtype=np.uint64),
            )
        self.reused += 1
        return pools

    def give(self, index_pool: np.ndarray, detail_words: np.ndarray, grown_records: int = 0) -> None:
        """Take back a closed channel's pools (and the ``grown_records`` its index pool grew by, for the budget)."""
        if grown_records:
            give_back_growth(self.growth_budget, grown_records)
        # A pool that grew holds up to ring_growth times the resident pages of
        # one that did not: let it go rather than keep them for a next thread.
        if not grown_records and len(self._free) < self.keep and index_pool.shape[0] == self.config.index_pool_max_records:
            self._free.append((index_pool, detail_words))

    def clear(self) -> None:
        self._free.clear()


class ThreadChannel:
    """One registered thread: control block, index pool, detail arena, writer.

    Producer-side attributes (stable while registered): ``ctrl``,
    ``index_pool`` (uint64[max_ring_count * ring_capacity, 3]: room
    for the grown pool; ``index_ring_count`` rings in use), ``detail_words`` /
    ``detail_bytes`` (uint64 and uint8 views of the detail arena, empty when
    detail is off), ``thread_id`` (N). The drain owns ``writer`` and the
    lifecycle; ``final_stats`` holds the thread's figures once it is closed
    (and ``manifest_entry`` its manifest entry).
    """

    def __init__(self, thread_id: int, config: RingConfig, os_thread_id: int, name: str, pools: PoolCache | None = None):
        self.thread_id = thread_id
        self.config = config
        self.os_thread_id = os_thread_id
        self.name = name
        self.pools = pools
        # (the ring map, one word per ring the pool may grow to, follows the fixed slots)
        self.ctrl = np.zeros(ctrl_words(config.max_ring_count), dtype=np.uint64)
        if pools is not None:
            self.index_pool, self.detail_words = pools.take()
        else:
            self.index_pool = np.empty((config.index_pool_max_records, RING_RECORD_WORDS), dtype=np.uint64)
            self.detail_words = np.empty(config.detail_pool_bytes // 8, dtype=np.uint64)
        self.detail_bytes = self.detail_words.view(np.uint8)
        c = self.ctrl
        c[CTRL_STATE] = CHANNEL_ACTIVE
        c[CTRL_ENABLED] = 1
        c[CTRL_THREAD_ID] = thread_id
        # __array_interface__, not .ctypes: this runs on the registering (traced)
        # thread, where building the ctypes helper cost ~20 us of its start
        c[CTRL_INDEX_POOL_PTR] = self.index_pool.__array_interface__["data"][0]
        c[CTRL_INDEX_RING_CAPACITY] = config.ring_capacity
        c[CTRL_INDEX_RING_COUNT] = config.ring_count
        # the most rings the pool may grow to: the producer doubles the count
        # toward it while its backlog is over the low mark (index_ring_advance)
        c[CTRL_INDEX_RING_COUNT_TARGET] = config.max_ring_count
        # the first ring_count rings take slots 0, 1, ... in turn (ring map: atf2.layout)
        c[CTRL_INDEX_FRESH_END] = config.ring_count
        c[CTRL_INDEX_RING_MAP_MASK] = c.shape[0] - CTRL_INDEX_RING_MAP - 1
        if pools is not None:  # (else no budget: a channel of its own, in tests and calibration)
            c[CTRL_INDEX_GROWTH_BUDGET_PTR] = pools.growth_budget.__array_interface__["data"][0]
        self.set_watermarks(config.ring_count)
        if config.detail:
            c[CTRL_DETAIL_POOL_PTR] = self.detail_words.__array_interface__["data"][0]
            c[CTRL_DETAIL_RING_BYTES] = config.detail_ring_bytes
            c[CTRL_DETAIL_RING_COUNT] = config.detail_ring_count
        self._lazy_detail_lane = False  # issue 5: add_detail_lane() ran
        # Drain-side state (only the drain thread touches these).
        self.writer: ThreadWriter | FlightWriter | None = None
        self.writer_error: str | None = None
        self.exited = threading.Event()
        self.final_stats: ThreadStats | None = None  # once closed (computed once by the session)
        self.manifest_entry: dict[str, Any] | None = None  # its manifest "threads" entry, once closed
        self.time_start_ns: int | None = None
        self.time_end_ns: int | None = None
        self.last_ts_ns = 0  # of the last event written
        self.encoded_chain: list | None = None  # [last timestamp, CRC] of what is encoded, written or not
        # an ended thread's last events, taken out of its rings before its files
        # are done (Drain._harvest): (events, details, details kept, last timestamp, clamped)
        self.ended_tail: tuple | None = None
        self.timestamps_clamped = 0
        self.reported = False  # the drain has told the session this channel closed

    def set_watermarks(self, ring_count: int) -> None:
        """The index lane's watermarks for a pool of ``ring_count`` rings (the producer doubles them when the pool grows)."""
        c = self.ctrl
        total = self.config.ring_capacity * ring_count
        c[CTRL_INDEX_WM_HIGH] = max(1, int(total * self.config.high_watermark))
        c[CTRL_INDEX_WM_LOW] = min(int(c[CTRL_INDEX_WM_HIGH]) - 1, int(total * self.config.low_watermark))

    @property
    def index_ring_count(self) -> int:
        """Index rings in use (grows from ``config.ring_count``, see ``RingConfig``)."""
        return int(self.ctrl[CTRL_INDEX_RING_COUNT])

    @property
    def state(self) -> int:
        return int(self.ctrl[CTRL_STATE])

    @property
    def has_detail_lane(self) -> bool:
        return self.config.detail or self._lazy_detail_lane

    def add_detail_lane(self) -> None:
        """Give this thread its detail arena now (issue 5: a ``detail="off"`` session
        allocates it on the thread's first explicit ``emit(..., detail=...)``, never
        on the hook path). Producer thread only; the drain sees the lane once
        ``has_detail_lane`` turns True, after the arena and its slots are set."""
        if self.has_detail_lane:
            return
        words = np.empty(self.config.detail_ring_bytes * self.config.detail_ring_count // 8, dtype=np.uint64)
        self.detail_words, self.detail_bytes = words, words.view(np.uint8)
        c = self.ctrl
        c[CTRL_DETAIL_RING_BYTES] = self.config.detail_ring_bytes
        c[CTRL_DETAIL_RING_COUNT] = self.config.detail_ring_count
        c[CTRL_DETAIL_POOL_PTR] = words.ctypes.data
        self._lazy_detail_lane = True

    def release_pools(self) -> None:
        """Drop the pools of an ended thread's channel (the control block stays for the stats).

        Only once no producer can touch them (the thread is gone and its last
        events taken): they go back to the ``PoolCache`` they came from, if
        any, and the control block no longer points at them.
        """
        self.ctrl[CTRL_INDEX_POOL_PTR] = 0
        self.ctrl[CTRL_DETAIL_POOL_PTR] = 0
        if self.pools is not None and self.index_pool.shape[0]:
            grown = (self.index_ring_count - self.config.ring_count) * self.config.ring_capacity
            self.pools.give(self.index_pool, self.detail_words, grown_records=grown)
        self.index_pool = np.empty((0, RING_RECORD_WORDS), dtype=np.uint64)
        self.detail_words = np.empty(0, dtype=np.uint64)
        self.detail_bytes = self.detail_words.view(np.uint8)

    def __repr__(self) -> str:
        return f"ThreadChannel(thread_id={self.thread_id}, os_thread_id={self.os_thread_id}, name={self.name!r}, state={self.state})"
