"""The drain thread: rings -> ATF events -> per-thread files.

Once per flush interval (sooner under a high inflow, see ``Drain._pause``,
and at once while a thread's index lane is over its high watermark) the
drain visits every registered thread and takes what was waiting when it
arrived, one chunk (64 Ki records) at a time. A chunk is one kernel pass
(``index_ring_take_encoded_crc``): ring records are read once, their ticks
converted to CLOCK_BOOTTIME ns, and finished 32-byte file records written
into a reused staging buffer while the CRC-32 of those bytes is computed.
The chunk then goes to the thread's ``ThreadWriter.write_encoded`` (one
``pwritev``) on a write-behind thread while the drain encodes the next one
into a second staging buffer: both the kernel and the write release the GIL.
The producer and the drain coordinate only through compare-and-swap on the
ring positions.

Chunks with details (the detail lane had something waiting) are paired with
their details and written through ``write_events``, which links them; so is
every chunk of a writer that stages batches itself (``FlightWriter``).

Threads that ended are drained one last time and their writer finalized and
closed in the same cycle, so a long session with thread churn keeps few files
open. Before that, at the start of every cycle and between two threads'
file operations, each thread that ended since is *harvested*: its last
events are taken out of its rings (encoded, with their details) and its
pools go back to the session's cache at once, so that threads ending faster
than their files can be created do not each hold their rings (``_harvest``).

A ``WriteError`` (disk full, I/O error, file too large) costs the chunk: its
events are counted as dropped with reason ``disk_error`` and the drain goes
on with the next chunk (checksummed again from what the file holds).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from .clock import TickConverter
from .errors import AtfV2Error, WriteError
from .kernels.crc import crc32
from .kernels.crc import kernel_ok as crc_kernel_ok
from .kernels.ring import (
    detail_ring_take,
    index_ring_discard,
    index_ring_take_encoded,
    index_ring_take_encoded_crc,
    pair_details,
    watermark_update,
)
from .layout import (
    CHANNEL_CLOSED,
    CTRL_DETAIL_BYTES_WRITTEN,
    CTRL_DETAIL_DROPS,
    CTRL_DETAIL_READ_POS,
    CTRL_DETAIL_WRITE_POS,
    CTRL_DETAIL_WRITTEN,
    CTRL_ENABLED,
    CTRL_INDEX_DRAIN_HIGH_WATER,
    CTRL_INDEX_DROPS,
    CTRL_INDEX_READ_POS,
    CTRL_INDEX_WM_LOW,
    CTRL_INDEX_WM_STATE,
    CTRL_INDEX_WRITE_POS,
    CTRL_INDEX_WRITTEN,
    CTRL_STATE,
    DROP_DISK_ERROR,
    DROP_ENCODER_LAG,
    DROP_PAIR_LOST,
    INDEX_EVENT_DTYPE,
    INDEX_EVENT_SIZE,
    WM_HIGH,
)
from .writer import DetailBatch, ThreadWriter

if TYPE_CHECKING:  # pragma: no cover
    from .rings import RingConfig, ThreadChannel

_ALL_POSITIONS = np.uint64(0xFFFFFFFFFFFFFFFF)
#: index records per drain step (64 Ki records: 2 MiB of staging and one 2 MiB write each)
DRAIN_CHUNK = 1 << 16
#: encoded chunks that may wait for the write-behind thread at once (64 MiB
#: of staging at most, grown only while writes lag, shared by every thread):
#: a write stalled by the page cache or a descheduled I/O thread then no
#: longer stops the drain from freeing ring space (see ``_acquire_stage``)
WRITE_BEHIND_CHUNKS = 32


class Drain:
    """Owns the staging buffers and the loop; one per session."""

    def __init__(
        self,
        config: RingConfig,
        channels: Callable[[], list[ThreadChannel]],
        flush_interval: float,
        on_channels_changed: Callable[[], object],
    ) -> None:
        self.config = config
        self._channels = channels  # callable -> list of ThreadChannel to visit this cycle (snapshot)
        #: channels whose thread ended, appended by the session (any thread),
        #: taken by ``harvest_ended`` (the drain)
        self.ended: deque = deque()
        self._on_channels_changed = on_channels_changed
        self.flush_interval = float(flush_interval)
        self.converter = TickConverter()
        # Index records are staged one chunk at a time (small enough to stay
        # in cache, large enough for big writes). The detail staging holds a
        # whole arena: every detail of a taken event must be taken with it.
        n = self._chunk = min(DRAIN_CHUNK, config.index_pool_records)
        self._max_chunks = -(-config.index_pool_max_records // n) + 1
        # The fused take writes finished file records into a staging buffer
        # (seen as words), which waits for its write (``_WriteBehind``) while
        # the drain encodes the next chunks into others: two to start with,
        # more while the writes lag (up to WRITE_BEHIND_CHUNKS).
        self._stages = [_take_stage(n) for _ in range(2)]
        self._max_stages = max(2, WRITE_BEHIND_CHUNKS * DRAIN_CHUNK // n)
        self._free_stages = list(range(len(self._stages)))
        self._inflight: deque = deque()  # stage numbers handed to the I/O thread, in write order
        self._io = _WriteBehind()
        self._fused_crc = crc_kernel_ok()
        # issue 5: sized for a whole arena even without a detail lane, since a
        # thread may get one lazily (detail="off" + emit(detail=...)); unused,
        # these numpy.empty buffers cost address space, not memory.
        dbytes = config.detail_ring_bytes * config.detail_ring_count
        max_details = dbytes // 16 + 1
        self._d_index = np.empty(max_details, dtype=np.uint64)
        self._d_type = np.empty(max_details, dtype=np.uint16)
        self._d_flags = np.empty(max_details, dtype=np.uint16)
        self._d_offsets = np.empty(max_details + 1, dtype=np.int64)
        self._d_payload = np.empty(dbytes, dtype=np.uint8)
        self._d_positions = np.empty(max_details, dtype=np.int64)
        self._d_keep = np.empty(max_details, dtype=np.bool_)
        self.wake = threading.Event()
        self._stop = False
        self.cycles = 0
        self.busy_s = 0.0
        #: CPU time the drain's cycles used (thread time: busy_s minus the time
        #: the thread waited for a core), not counting the write-behind thread
        self.cycles_cpu_s = 0.0
        self._inflow = 0.0
        self._busy_channels = 0
        self._last_cycle = 0.0
        self.events_written = 0
        self.errors: list[str] = []
        self._known = 0
        self._thread = threading.Thread(target=self._run, name="atf2-drain", daemon=True)

    # ------------------------------------------------------------- lifecycle

    def start(self) -> None:
        self._thread.start()

    @property
    def cpu_s(self) -> float:
        """CPU time the drain used: its cycles plus the write-behind thread's writes."""
        return self.cycles_cpu_s + self._io.cpu_s

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """Last cycle, finalize every thread, join."""
        self._stop = True
        self.wake.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join()

    def _run(self) -> None:
        while True:
            stopping = self._stop
            pressure = self.cycle(final=stopping)
            if stopping:
                self._io.close()
                self._inflight.clear()
                for stage in self._stages:
                    _give_stage(stage)
                self._stages = []
                return
            if not pressure:
                self.wake.wait(self._pause())
                self.wake.clear()

    def _pause(self) -> float:
        """How long to sleep before the next cycle: the flush interval, or less under a high inflow.

        At high rates the drain comes back about when one chunk per thread
        is waiting (at least 1 ms later), so the backlog stays small and
        nearly the whole pool is left to absorb the times the drain does
        not get a core (a loaded machine), instead of a flush interval's
        worth of events (400 Ki at 20 M events/s) waiting every cycle.
        """
        if self._inflow <= 0:
            return self.flush_interval
        return min(self.flush_interval, max(0.001, self._chunk * max(1, self._busy_channels) / self._inflow))

    # ---------------------------------------------------------------- cycles

    def cycle(self, final: bool = False) -> bool:
        """Drain every thread once; finalize ended ones (all of them if ``final``).

        Returns True when some thread's index lane is over its high watermark
        (the loop then runs again at once instead of sleeping).
        """
        t0 = time.perf_counter()
        c0 = time.thread_time()
        pressure = False
        self.harvest_ended()
        channels = self._channels()
        total = busy = 0
        for ch in channels:
            if ch.state == CHANNEL_CLOSED:
                continue
            if ch.exited.is_set() or final:
                self._close(ch)
                self.harvest_ended()
                continue
            moved = self._drain(ch)
            total += moved
            busy += moved > 0
            # Run again at once when a lane is over its high watermark, or
            # when one interval's worth of events already filled a quarter of
            # the pool (the low mark): sleeping a whole interval then risks
            # exhausting the pool before the next cycle.
            if int(ch.ctrl[CTRL_INDEX_WM_STATE]) == WM_HIGH or moved >= int(ch.ctrl[CTRL_INDEX_WM_LOW]):
                pressure = True
        if len(channels) != self._known or any(ch.state == CHANNEL_CLOSED and not ch.reported for ch in channels):
            self._known = len(channels)
            for ch in channels:
                if ch.state == CHANNEL_CLOSED:
                    ch.reported = True
            if not final:
                self._on_channels_changed()
        # events per second coming in, seen over the last cycle and the pause before it
        self._inflow = total / max(1e-4, t0 - self._last_cycle) if self._last_cycle else 0.0
        self._busy_channels = busy
        self._last_cycle = t0
        self.cycles += 1
        self.busy_s += time.perf_counter() - t0
        self.cycles_cpu_s += time.thread_time() - c0
        return pressure

    def _drain(self, ch: ThreadChannel) -> int:
        """Move what is waiting in ``ch``'s rings to its files, chunk by chunk; return the events taken.

        Takes what was waiting when the call began (at most one pool), so a
        producer that never pauses cannot keep the drain on one thread forever.
        Returns once every chunk is encoded and handed to the write-behind
        thread, without waiting for the writes: ring space is freed as fast
        as the drain encodes, whatever the disk does (``_close`` and chunks
        with details wait for them).
        """
        ctrl = ch.ctrl
        # WRITE_POS first, then the clock anchor: every record below the limit
        # was stamped before the anchor, so its tick converts by interpolation.
        limit = int(ctrl[CTRL_INDEX_WRITE_POS])
        waiting = limit - int(ctrl[CTRL_INDEX_READ_POS])
        if waiting > int(ctrl[CTRL_INDEX_DRAIN_HIGH_WATER]):
            ctrl[CTRL_INDEX_DRAIN_HIGH_WATER] = waiting
        details = ch.has_detail_lane and ctrl[CTRL_DETAIL_WRITE_POS] != ctrl[CTRL_DETAIL_READ_POS]
        if waiting <= 0 and not details:
            watermark_update(ctrl, ctrl[CTRL_INDEX_WRITE_POS] - ctrl[CTRL_INDEX_READ_POS])
            return 0
        self.converter.anchor()
        # The last timestamp and CRC of what is encoded so far, written or not
        # (chunks are encoded ahead of their write); drain-side, kept across cycles.
        chain = ch.encoded_chain
        if chain is None:
            chain = ch.encoded_chain = [ch.last_ts_ns, ch.writer.index_crc if type(ch.writer) is ThreadWriter else 0]
        elif not self._reap() and type(ch.writer) is ThreadWriter:
            # Every write is done: continue from the file's CRC. After a failed
            # write it differs from the encoded chain (the chunk never reached
            # the file), and every later chunk would be checksummed again.
            chain[1] = ch.writer.index_crc
        taken = 0
        for _ in range(self._max_chunks):
            n = self._drain_chunk(ch, limit, chain)
            taken += n
            if n < self._chunk:
                break
        watermark_update(ctrl, ctrl[CTRL_INDEX_WRITE_POS] - ctrl[CTRL_INDEX_READ_POS])
        return taken

    def _drain_chunk(self, ch: ThreadChannel, limit: int, chain: list) -> int:
        """Take at most one chunk of index records below ``limit`` (and their details), write it; return the records taken.

        The records come out of the ring already encoded (and checksummed,
        when no detail waits) by one kernel pass into a staging buffer. A
        chunk without details is handed to the write-behind thread
        (``ThreadWriter.write_encoded``) while the drain encodes the next;
        one with details is written here through ``write_events``, which
        links them. ``chain``: [last timestamp, CRC] after the chunks
        encoded so far.
        """
        anchor_ticks, anchor_ns, n_anchors = self.converter.anchors()
        stage = self._acquire_stage()
        try:
            return self._drain_chunk_into(ch, limit, chain, stage, anchor_ticks, anchor_ns, n_anchors)
        finally:
            if stage not in self._inflight and stage not in self._free_stages:
                self._free_stages.append(stage)  # not handed to the I/O thread (or written already)

    def _drain_chunk_into(
        self, ch: ThreadChannel, limit: int, chain: list, stage: int,
        anchor_ticks: np.ndarray, anchor_ns: np.ndarray, n_anchors: int,
    ) -> int:
        writer = ch.writer
        events_buf, words = self._stages[stage]
        # Only a plain ThreadWriter takes encoded chunks; a writer that stages
        # batches itself (detail mode "flight": FlightWriter) gets write_events.
        direct = type(writer) is ThreadWriter
        crc_in = chain[1]
        n, last, clamped, crc, details, kept = self._take_chunk(
            ch, limit, chain[0], words, anchor_ticks, anchor_ns, n_anchors, crc_in if direct and self._fused_crc else None,
        )
        if n == 0:
            return 0
        events = events_buf[:n]
        if writer is None:
            self._count_disk_error(ch, n, kept, ch.writer_error or "no writer")
            return n
        chain[0] = last
        if details is None and direct:
            chain[1] = crc
            self._io.submit(stage, self._write_encoded, ch, events, crc, crc_in, last, clamped)
            self._inflight.append(stage)
            if chain[1] is None:
                self._settle_all()  # no CRC to chain from: the write computes it
                chain[1] = writer.index_crc
            return n
        # A detail batch refers to the drain's detail staging: write it now,
        # after the chunks before it.
        self._settle_all()
        try:
            self._write_batch(ch, events, details, kept, last, clamped)
        finally:
            if direct:
                chain[1] = writer.index_crc
        return n

    def _take_chunk(
        self, ch: ThreadChannel, limit: int, last_ts: int, words: np.ndarray,
        anchor_ticks: np.ndarray, anchor_ns: np.ndarray, n_anchors: int, crc_in: int | None,
    ) -> tuple[int, int, int, int | None, DetailBatch | None, int]:
        """One kernel pass: up to ``len(words)`` of ``ch``'s index records below ``limit``, encoded into ``words``, and their details.

        Returns (records taken, last timestamp, timestamps clamped, CRC of
        the encoded bytes chained from ``crc_in`` or None when ``crc_in`` is
        None, details or None, details kept). The details are in the drain's
        detail staging until the next take.
        """
        ctrl = ch.ctrl
        has_detail = ch.has_detail_lane and ctrl[CTRL_DETAIL_WRITE_POS] != ctrl[CTRL_DETAIL_READ_POS]
        crc = None
        if crc_in is not None and not has_detail:
            n, start, last, clamped, crc = index_ring_take_encoded_crc(
                ctrl, ch.index_pool, limit, words, ch.thread_id, last_ts,
                anchor_ticks, anchor_ns, n_anchors, crc_in,
            )
        else:
            n, start, last, clamped = index_ring_take_encoded(
                ctrl, ch.index_pool, limit, words, ch.thread_id, last_ts,
                anchor_ticks, anchor_ns, n_anchors,
            )
        n = int(n)
        m = kept = 0
        details = None
        if has_detail:
            # Details are pushed before their index record: all those of the
            # records just taken are visible now.
            m, _ = detail_ring_take(
                ctrl, ch.detail_words, ch.detail_bytes, start + np.uint64(n),
                self._d_index, self._d_type, self._d_flags, self._d_offsets, self._d_payload,
            )
        if m:
            kept = pair_details(m, self._d_index, start, n, self._d_positions, self._d_keep)
            lost = m - kept
            if lost:
                ctrl[CTRL_DETAIL_DROPS + DROP_PAIR_LOST] += lost
            if kept:
                details = self._detail_batch(m, kept)
        return n, int(last), int(clamped), None if crc is None else int(crc), details, kept

    def _write_batch(
        self, ch: ThreadChannel, events: np.ndarray, details: DetailBatch | None, kept: int, last: int, clamped: int
    ) -> None:
        """Write ``events`` and their details through ``write_events`` (here, on the drain) and account for them."""
        assert ch.writer is not None
        try:
            ch.writer.write_events(events, details)
        except (WriteError, AtfV2Error) as exc:
            self._count_disk_error(ch, len(events), kept, str(exc))
            return
        self._commit(ch, len(events), last, clamped)
        if kept:
            assert details is not None  # kept events make a batch
            ctrl = ch.ctrl
            ctrl[CTRL_DETAIL_WRITTEN] += np.uint64(kept)
            ctrl[CTRL_DETAIL_BYTES_WRITTEN] += np.uint64(details.offsets[-1])

    def _acquire_stage(self) -> int:
        """A staging buffer no write still reads: a free one, a new one while
        writes lag (up to ``_max_stages``), else the oldest in flight once written."""
        inflight = self._inflight
        self._reap()
        if self._free_stages:
            return self._free_stages.pop()
        if len(self._stages) < self._max_stages:
            self._stages.append(_take_stage(self._chunk))
            return len(self._stages) - 1
        stage = inflight.popleft()
        self._io.wait(stage)
        return stage

    def _reap(self) -> int:
        """Free the stages whose writes are done (oldest first); return how many are still in flight."""
        inflight = self._inflight
        while inflight and self._io.done(inflight[0]):
            stage = inflight.popleft()
            self._io.wait(stage)  # raises what its job raised
            self._free_stages.append(stage)
        return len(inflight)

    def _settle_all(self) -> None:
        """Wait for every write handed to the I/O thread; their stages are free again."""
        try:
            self._io.wait_all()
        finally:
            self._free_stages.extend(self._inflight)
            self._inflight.clear()

    def _write_encoded(
        self, ch: ThreadChannel, events: np.ndarray, crc: int | None, crc_in: int, last: int, clamped: int
    ) -> None:
        """Write one encoded chunk (on the write-behind thread) and account for it."""
        writer = ch.writer
        assert writer is not None  # chunks are queued only for a channel with a writer
        try:
            if crc is None or crc_in != writer.index_crc:
                # no fused CRC, or an earlier chunk failed and its CRC never
                # reached the file: checksum from what the file holds
                crc_in = writer.index_crc
                crc = crc32(events.view(np.uint8), crc_in)
            writer.write_encoded(events, crc, crc_in, ordered=True)  # the kernel clamped the timestamps
        except (WriteError, AtfV2Error) as exc:
            self._count_disk_error(ch, len(events), 0, str(exc))
            return
        self._commit(ch, len(events), last, clamped)

    def _commit(self, ch: ThreadChannel, n: int, last: int, clamped: int) -> None:
        ch.last_ts_ns = last
        ch.timestamps_clamped += clamped
        ch.ctrl[CTRL_INDEX_WRITTEN] += np.uint64(n)
        self.events_written += n

    def _detail_batch(self, m: int, kept: int) -> DetailBatch:
        offsets = self._d_offsets[: m + 1]
        if kept == m:
            return DetailBatch(
                self._d_positions[:kept].copy(), self._d_payload[: offsets[m]], offsets.copy(),
                self._d_type[:m].copy(), self._d_flags[:m].copy(),
            )
        keep = self._d_keep[:m]
        starts, ends = offsets[:-1][keep], offsets[1:][keep]
        lengths = ends - starts
        new_offsets = np.zeros(kept + 1, dtype=np.int64)
        np.cumsum(lengths, out=new_offsets[1:])
        payload = np.concatenate([self._d_payload[s:e] for s, e in zip(starts, ends, strict=True)]) if kept else self._d_payload[:0]
        return DetailBatch(
            self._d_positions[:kept].copy(), payload, new_offsets, self._d_type[:m][keep], self._d_flags[:m][keep]
        )

    def _count_disk_error(self, ch: ThreadChannel, n: int, k: int, message: str) -> None:
        ch.ctrl[CTRL_INDEX_DROPS + DROP_DISK_ERROR] += np.uint64(n)
        if k:
            ch.ctrl[CTRL_DETAIL_DROPS + DROP_DISK_ERROR] += np.uint64(k)
        ch.writer_error = message
        if len(self.errors) < 100:
            self.errors.append(f"thread {ch.thread_id}: {message}")

    def harvest_ended(self) -> None:
        """``_harvest`` every channel whose thread ended since the last call (not when stopping)."""
        ended = self.ended
        while ended:
            ch = ended.popleft()
            if not self._stop and ch.ended_tail is None and ch.state != CHANNEL_CLOSED:
                self._harvest(ch)

    def _harvest(self, ch: ThreadChannel) -> None:
        """An ended thread's last events out of its rings, its pools given back now; its files wait for ``_close``.

        Opening and finalizing a thread's files costs a few file-system
        calls (about 1 ms each on a busy VM), so a program that ends threads
        faster than that gets ahead of the drain. Without this, each ended
        thread waiting for its files would hold its rings, and every new
        thread would get fresh ones: memory would grow with the backlog of
        files, not with the events. Its last events (at most one chunk: a
        larger backlog stays in the rings and ``_close`` writes it chunk by
        chunk) are kept encoded in ``ch.ended_tail`` instead, and the pools
        go back to the cache for the next thread.
        """
        ctrl = ch.ctrl
        limit = int(ctrl[CTRL_INDEX_WRITE_POS])
        if limit - int(ctrl[CTRL_INDEX_READ_POS]) > self._chunk or not ch.index_pool.shape[0]:
            return
        chain = ch.encoded_chain
        last_ts = ch.last_ts_ns if chain is None else chain[0]
        self.converter.anchor()
        anchor_ticks, anchor_ns, n_anchors = self.converter.anchors()
        stage = self._acquire_stage()
        try:
            events_buf, words = self._stages[stage]
            n, last, clamped, _, details, kept = self._take_chunk(
                ch, limit, last_ts, words, anchor_ticks, anchor_ns, n_anchors, None,
            )
            events = events_buf[:n].copy()
        finally:
            self._free_stages.append(stage)
        if details is not None:  # its payload may be a view of the detail staging
            details = details._replace(payload=details.payload.copy())
        self._count_stragglers(ch)
        if chain is not None:
            chain[0] = last
        ch.ended_tail = (events, details, kept, last, clamped)
        ch.release_pools()

    def _count_stragglers(self, ch: ThreadChannel) -> None:
        """After a thread's last pass: consume what is still in its rings, counted
        as dropped (so recorded == written + dropped holds exactly)."""
        ctrl = ch.ctrl
        late = index_ring_discard(ctrl)
        if late:
            ctrl[CTRL_INDEX_DROPS + DROP_ENCODER_LAG] += late
        if ch.has_detail_lane:
            m, _ = detail_ring_take(
                ctrl, ch.detail_words, ch.detail_bytes, _ALL_POSITIONS,
                self._d_index, self._d_type, self._d_flags, self._d_offsets, self._d_payload,
            )
            if m:
                ctrl[CTRL_DETAIL_DROPS + DROP_ENCODER_LAG] += np.uint64(m)

    def _close(self, ch: ThreadChannel) -> None:
        """Last pass over a thread: drain, account for stragglers, finalize, release."""
        ctrl = ch.ctrl
        ctrl[CTRL_ENABLED] = 0
        tail, ch.ended_tail = ch.ended_tail, None
        try:
            if tail is None:
                self._drain(ch)
        finally:
            self._settle_all()  # every chunk of this thread is written (or counted) before it is finalized
        if tail is None:
            # Anything pushed after that pass never reaches the encoder.
            self._count_stragglers(ch)
        else:
            events, details, kept, last, clamped = tail
            if len(events) and ch.writer is None:
                self._count_disk_error(ch, len(events), kept, ch.writer_error or "no writer")
            elif len(events):
                self._write_batch(ch, events, details, kept, last, clamped)
        if ch.writer is not None:
            try:
                ch.writer.close()
            except (WriteError, AtfV2Error, OSError) as exc:
                ch.writer_error = f"finalize failed: {exc}"
                self.errors.append(f"thread {ch.thread_id}: finalize failed: {exc}")
        ctrl[CTRL_STATE] = CHANNEL_CLOSED
        if ch.exited.is_set():
            # The thread is gone: nobody can push any more, free the pools.
            ch.release_pools()


# Staging buffers outlive their drain: the next session's drain reuses them.
# Fresh memory costs a page fault per 4 KiB on first touch (about 8 ms per MiB
# on the VMs we measure on): paid once per process, at session start (the
# buffers are touched here, before any producer runs), not in a drain cycle.
_spare_stages: list = []
_stages_lock = threading.Lock()


def _take_stage(n: int) -> tuple[np.ndarray, np.ndarray]:
    """A staging buffer of ``n`` file records: (INDEX_EVENT_DTYPE array, its uint64[n, 4] view)."""
    with _stages_lock:
        for i, stage in enumerate(_spare_stages):
            if len(stage[0]) == n:
                return _spare_stages.pop(i)
    events = np.zeros(n, dtype=INDEX_EVENT_DTYPE)
    words = events.view(np.uint64).reshape(n, INDEX_EVENT_SIZE // 8)
    words[:, 0] = 0  # touch every page now
    return events, words


def _give_stage(stage: tuple[np.ndarray, np.ndarray]) -> None:
    # All of them (at most WRITE_BEHIND_CHUNKS): a process that needed them
    # once keeps their pages resident rather than fault them in again.
    with _stages_lock:
        if len(_spare_stages) < WRITE_BEHIND_CHUNKS:
            _spare_stages.append(stage)


class _WriteBehind:
    """One helper thread that runs the drain's writes in order, so the next chunk is encoded meanwhile.

    Both sides release the GIL for their heavy part (the encoding kernel,
    ``pwritev``). Jobs are tagged with the staging buffer they read; the
    drain waits for a buffer's job before reusing it, and for all of them
    before anything that must follow every write (details, finalizing).
    Started on first use, in the process that uses it (a forked child gets
    its own).
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue | None = None
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._pending: dict = {}  # staging index -> threading.Event of its job
        self._error: BaseException | None = None
        self.cpu_s = 0.0  # thread CPU time of the jobs

    def submit(self, tag: int, fn: Callable[..., object], *args: Any) -> None:
        if self._jobs is None or self._pid != os.getpid():
            self._jobs = queue.SimpleQueue()
            self._pid = os.getpid()
            self._pending.clear()
            self._thread = threading.Thread(target=self._serve, args=(self._jobs,), name="atf2-drain-io", daemon=True)
            try:
                self._thread.start()
            except RuntimeError:  # 3.12+ starts no thread at interpreter shutdown (a stop at exit): write here
                self._jobs = self._thread = None
                try:
                    fn(*args)
                except BaseException as exc:  # noqa: BLE001 - raised at the drain's next wait, as from the thread
                    self._error = exc
                return
        done = threading.Event()
        self._pending[tag] = done
        self._jobs.put((fn, args, done))

    def _serve(self, jobs: queue.SimpleQueue) -> None:
        while True:
            job = jobs.get()
            if job is None:
                return
            fn, args, done = job
            c0 = time.thread_time()
            try:
                fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the drain thread at its next wait
                self._error = exc
            finally:
                self.cpu_s += time.thread_time() - c0
                done.set()

    def done(self, tag: int) -> bool:
        """Whether the job of ``tag`` (if any) has finished (without raising its error)."""
        job = self._pending.get(tag)
        return job is None or job.is_set()

    def wait(self, tag: int) -> None:
        done = self._pending.pop(tag, None)
        if done is not None:
            done.wait()
        if self._error is not None:
            exc, self._error = self._error, None
            raise exc

    def wait_all(self) -> None:
        for tag in list(self._pending):
            self.wait(tag)

    def close(self) -> None:
        """Wait for every write, end the thread (a stopped session leaves no thread behind)."""
        self.wait_all()
        if self._jobs is not None and self._thread is not None and self._pid == os.getpid():
            self._jobs.put(None)
            self._thread.join()
        self._jobs = self._thread = None


def file_size(path: str | None) -> int:
    if not path:
        return 0
    try:
        return os.stat(path).st_size
    except OSError:
        return 0
