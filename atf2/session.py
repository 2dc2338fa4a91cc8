"""Recording sessions: start, emit, stats, stop.

A session is a directory (``manifest.json`` + ``thread_N/``) being filled by a
drain thread from per-thread rings (``atf2.rings``, ``atf2.drain``). One
session is active per process at a time.

Lifecycle
---------
* ``trace_session_start(dir, **options)`` checks the directory (created if
  missing; a non-empty one is refused unless ``overwrite=True``, which removes
  the previous ``manifest.json`` and ``thread_*`` directories only), writes
  ``manifest.json`` with status "recording", starts the drain, ignores SIGXFSZ
  (so a file-size limit is a counted write error, not a killed process; the
  previous disposition is restored at stop), and with ``trace_python=True``
  hands the session to ``atf2.tracer.start_tracing``.
* A thread is registered at its first event (``register_current_thread``): it
  gets the next number N and its rings (recycled from an exited thread when
  the session's ``PoolCache`` has some), nothing more: no file I/O on the
  traced thread. The drain creates the thread's ``ThreadWriter`` (directory,
  files) at its next cycle, before draining it. When the thread ends, a
  finalizer in its ``threading.local`` slot tells the drain, which takes its
  last events out of its rings and hands its pools back to the cache at its
  next step, then writes those events and finalizes the thread's files (as
  soon as they exist: see ``Drain._harvest``). The tracer may say so earlier with
  ``thread_exited()``. While recording, the manifest is rewritten by the
  drain for crash recovery when the set of threads changed: at most once per
  cycle, throttled (``_channels_changed``).
* ``trace_session_stop()`` stops the tracer, drains and finalizes everything,
  rewrites the manifest atomically with status "complete", and returns the
  final ``SessionStats``. Stopping again returns the same figures. An active
  session is stopped at interpreter exit (atexit).

Fork: in a child process the inherited session is *disabled*: its events are
ignored (``emit`` does nothing, the control blocks say not enabled), nothing
is drained, no file of the parent is touched, and stopping it only releases
it (status "disabled"); the child may then start a session of its own in
another directory.

Explicit events
---------------
``emit(function, kind, detail=None, depth=0)`` and ``emit_batch(...)`` go
through the same rings, stamped with the same clock as the tracer's events,
so they interleave correctly with traced calls. ``function`` is a registered
function id (``session.symbols.register(...)``) or a name, registered on
first use in module ``__main__``.

``emit_batch(function_ids, kinds, depths=None, timestamps_ns=None,
details=None)``: numpy-like columns of equal length. ``timestamps_ns``, if
given, are CLOCK_BOOTTIME nanoseconds (``time.clock_gettime_ns(
time.CLOCK_BOOTTIME)``), must be non-decreasing within the batch, and are
written as given; since a thread's file must never go backwards, an explicit
timestamp older than the thread's previous event is raised to that event's
timestamp (counted in ``ThreadStats.timestamps_clamped``). ``details``: a
sequence aligned with the events holding ``bytes`` or None.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import threading
import time
import types
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import numpy.typing as npt
from numba.core.compiler_lock import global_compiler_lock

from .drain import Drain, file_size
from .errors import AtfV2Error, SessionStateError, WriteError
from .kernels.ring import emit_many, emit_one, emit_one_detail
from .layout import (  # issue 5
    CHANNEL_ACTIVE,
    CHANNEL_CLOSED,
    CHANNEL_EXITED,
    CLOCK_BOOTTIME,
    CTRL_ENABLED,
    CTRL_STATE,
    DETAIL_FUNCTION_CALL,
    DETAIL_FUNCTION_RETURN,
    DETAIL_PAYLOAD_VERSION,
    EVENT_CALL,
    EVENT_KIND_NAMES,
    MANIFEST_DETAIL_PAYLOAD_VERSION_KEY,
    MANIFEST_FORMAT_VERSION,
    MANIFEST_NAME,
    THREAD_DIR_PREFIX,
)
from .manifest import STATUS_COMPLETE, STATUS_RECORDING, thread_dir, write_manifest
from .manifest_reserve import MANIFEST_RESERVE_NAME, release_reserve, reserve_size, reserve_space
from .rings import PoolCache, RingConfig, ThreadChannel
from .stats import LaneStats, SessionStats, ThreadStats
from .symbols import SymbolTable
from .writer import ThreadWriter

if TYPE_CHECKING:
    from .flight import FlightOptions
    from .payload import PayloadOptions

#: a function, for ``emit``: its registered id, or a name (registered in ``__main__``)
FunctionRef: TypeAlias = "str | int | np.integer[Any]"
#: a detail payload: any C-contiguous bytes-like object
BytesLike: TypeAlias = "bytes | bytearray | memoryview | npt.NDArray[Any]"

#: default drain period: the most a killed process can lose
DEFAULT_FLUSH_INTERVAL = 0.02
#: crash-recovery manifest rewrites (thread set changed) are at least this far
#: apart (seconds): the most a killed session's manifest lags its threads
#: (their files are on disk regardless; the reader and recover find them)
MANIFEST_REWRITE_MIN_INTERVAL = 0.5
_MAX_DEPTH = 0xFFFFFFFF
#: new threads whose files the drain creates per cycle (see _drain_channels)
_OPEN_PER_CYCLE = 64
_THREAD_DIR_RE = re.compile(re.escape(THREAD_DIR_PREFIX) + r"\d+")

_LOCK = threading.RLock()
_ACTIVE: Session | None = None
_LAST: Session | None = None
#: sessions inherited through fork(): kept referenced so nothing of the
#: parent's (writers, descriptors) is ever finalized from the child
_FORKED: list = []


class _ThreadExitSentinel:
    """Lives in a thread's ``threading.local`` slot; dies with the thread."""

    __slots__ = ("__weakref__", "channel", "session_ref")

    def __init__(self, session: Session, channel: ThreadChannel):
        self.session_ref = weakref.ref(session)
        self.channel = channel

    def __del__(self) -> None:
        session = self.session_ref()
        if session is not None:
            try:
                session._channel_ended(self.channel)
            except Exception:  # noqa: BLE001 - interpreter shutdown: modules half torn down, atexit already stopped it
                pass


class Session:
    """One recording session (use ``trace_session_start`` / ``trace_session``)."""

    def __init__(
        self,
        session_dir: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        ring_capacity: int = RingConfig.ring_capacity,
        spare_rings: int = RingConfig.ring_count - 1,
        ring_growth: int = RingConfig.ring_growth,
        ring_growth_budget: int = RingConfig.ring_growth_budget,
        detail: bool | str = "off",
        detail_ring_bytes: int = RingConfig.detail_ring_bytes,
        detail_spare_rings: int = RingConfig.detail_ring_count - 1,
        high_watermark: float = RingConfig.high_watermark,
        low_watermark: float = RingConfig.low_watermark,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        trace_python: bool = False,
        fsync: bool = False,
        payload_options: PayloadOptions | None = None,
        flight: FlightOptions | dict[str, Any] | None = None,
    ) -> None:
        self.session_dir = os.path.abspath(os.fspath(session_dir))
        # issue 5: detail="off" | "always" | "flight" (Python arguments captured), or a bool (lane for emit only)
        from .detail import parse_detail_mode

        # "off" (the default): a thread's detail lane is allocated on its first emit(detail=...)
        self._lazy_detail_lane = isinstance(detail, str) and detail == "off"
        detail, self.detail_mode = parse_detail_mode(detail)
        for name, value in (("spare_rings", spare_rings), ("detail_spare_rings", detail_spare_rings)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise AtfV2Error(f"invalid ring option: {name}={value!r} (>= 1)")
        self.config = RingConfig(
            ring_capacity=ring_capacity,
            ring_count=spare_rings + 1,
            ring_growth=ring_growth,
            ring_growth_budget=ring_growth_budget,
            detail=bool(detail),
            detail_ring_bytes=detail_ring_bytes,
            detail_ring_count=detail_spare_rings + 1,
            high_watermark=high_watermark,
            low_watermark=low_watermark,
        )
        if not (isinstance(flush_interval, (int, float)) and 0 < flush_interval <= 60):
            raise AtfV2Error(f"invalid flush_interval={flush_interval!r} (seconds, 0 < x <= 60)")
        self.flush_interval = float(flush_interval)
        self.trace_python = bool(trace_python)
        self.overwrite = bool(overwrite)
        self.fsync = bool(fsync)
        self.symbols = SymbolTable()
        self.detail_capture = None  # issue 5: atf2.detail.DetailCapture when Python details are captured
        self.flight_options = None
        if self.detail_mode in ("always", "flight"):
            from .detail import DetailCapture
            from .flight import FlightOptions

            self.detail_capture = DetailCapture(self.symbols, payload_options)  # used by whoever starts the tracer
            if self.detail_mode == "flight":
                self.flight_options = flight if isinstance(flight, FlightOptions) else FlightOptions.from_triggers(**(flight or {}))
        self.pid = os.getpid()
        self.clock_type = CLOCK_BOOTTIME
        self._lock = threading.RLock()
        self._local = threading.local()
        self._channels: list[ThreadChannel] = []
        self._tracer: types.ModuleType | None = None
        self._old_sigxfsz: Callable[[int, types.FrameType | None], Any] | int | None = None
        self._status = "new"
        self._t0 = time.monotonic()
        self._t_stop: float | None = None
        self._final: SessionStats | None = None
        self._reserved = 0  # bytes of the final manifest's reserve (atf2.manifest_reserve)
        self._manifest_due = 0.0  # monotonic time before which crash-recovery manifest rewrites wait
        self.pools = PoolCache(self.config)  # ring pools of exited threads, for the next ones
        self._opened = 0  # channels whose files the drain has opened (a prefix of _channels)
        self.drain = Drain(self.config, self._drain_channels, self.flush_interval, self._channels_changed)

    # ------------------------------------------------------------ lifecycle

    def _open(self) -> None:
        tracer = self._load_tracer() if self.trace_python else None
        self._prepare_dir()
        self._status = STATUS_RECORDING
        self._t0 = time.monotonic()
        self._write_manifest(fsync=True)
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGXFSZ"):
            self._old_sigxfsz = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        self._grow_reserve()  # after SIGXFSZ is ignored: an RLIMIT_FSIZE below the reserve gives EFBIG
        self.drain.start()
        if tracer is not None:
            try:
                tracer.start_tracing(self)
            except BaseException:
                self.stop()
                raise
            self._tracer = tracer

    @staticmethod
    def _load_tracer() -> types.ModuleType:
        try:
            from . import tracer
        except ModuleNotFoundError as exc:
            if exc.name not in ("atf2.tracer",):
                raise
            raise AtfV2Error("trace_python=True needs the Python tracer (atf2.tracer), which is not available yet; use trace_python=False and emit()") from None
        return tracer

    def _prepare_dir(self) -> None:
        d = self.session_dir
        try:
            if os.path.isdir(d):
                entries = os.listdir(d)
                if entries:
                    if not self.overwrite:
                        raise AtfV2Error("session directory is not empty (pass overwrite=True to replace a previous session)", d)
                    for name in entries:
                        path = os.path.join(d, name)
                        if name in (MANIFEST_NAME, MANIFEST_RESERVE_NAME):
                            os.unlink(path)
                        elif _THREAD_DIR_RE.fullmatch(name) and os.path.isdir(path):
                            shutil.rmtree(path)
            else:
                os.makedirs(d)
            probe = os.path.join(d, f".atf2-probe-{os.getpid()}")
            with open(probe, "wb") as f:
                f.write(b"x")
            os.unlink(probe)
        except OSError as exc:
            raise AtfV2Error(f"session directory is not usable: {exc.strerror or exc}", d) from None

    def stop(self) -> SessionStats:
        """Finalize everything and return the final figures (idempotent)."""
        global _ACTIVE, _LAST
        with self._lock:
            if self._final is not None:
                return self._final
            if self._status == "disabled":
                self._t_stop = time.monotonic()
                self._final = self._stats()
            else:
                if self._tracer is not None:
                    try:
                        self._tracer.stop_tracing()
                    finally:
                        self._tracer = None
                for ch in self._snapshot():
                    ch.ctrl[CTRL_ENABLED] = 0
                self.drain.stop()
                self._status = STATUS_COMPLETE
                self._t_stop = time.monotonic()
                try:
                    # the space held back for this rewrite (a full disk at stop)
                    release_reserve(self.session_dir)
                except OSError as exc:
                    self.drain.errors.append(f"manifest reserve: {exc}")
                try:
                    self._write_manifest(fsync=True)
                except OSError as exc:
                    self.drain.errors.append(f"manifest: {exc}")
                if self._old_sigxfsz is not None and threading.current_thread() is threading.main_thread():
                    signal.signal(signal.SIGXFSZ, self._old_sigxfsz)
                    self._old_sigxfsz = None
                self._final = self._stats()
        with _LOCK:
            if _ACTIVE is self:
                _ACTIVE = None
                _LAST = self
        return self._final

    @property
    def active(self) -> bool:
        return self._status == STATUS_RECORDING

    @property
    def status(self) -> str:
        return self._status

    # ------------------------------------------------------------- threads

    def _snapshot(self) -> list:
        # No lock: the drain calls this while stop() holds the session lock
        # and waits for it; copying a list is atomic under the GIL.
        return list(self._channels)

    def register_current_thread(self) -> ThreadChannel:
        """The calling thread's channel, registering the thread on first call (idempotent)."""
        ch = getattr(self._local, "channel", None)
        if ch is not None:
            return ch
        if self._status != STATUS_RECORDING:
            raise SessionStateError(f"session is {self._status}: cannot register a thread", self.session_dir)
        thread = threading.current_thread()
        with self._lock:
            # again under the lock: a stop() that ran while we waited for it
            # has disabled and finalized every channel it saw; one added now
            # would never be drained nor finalized
            if self._status != STATUS_RECORDING:
                raise SessionStateError(f"session is {self._status}: cannot register a thread", self.session_dir)
            # Only what the hook needs: the control block and (recycled) pools.
            # The thread's files are the drain's business (``_open_writer``).
            ch = ThreadChannel(len(self._channels), self.config, threading.get_native_id(), thread.name, self.pools)
            self._channels.append(ch)
        self._local.channel = ch
        self._local.sentinel = _ThreadExitSentinel(self, ch)
        # No drain wake-up: its next periodic cycle opens the thread's files
        # and takes its events (a pool holds many flush intervals of them).
        return ch

    def _drain_channels(self) -> list:
        """Drain thread, at the start of each cycle: the channels to visit, new ones' files opened.

        Registration only appends to ``_channels`` (thread N is its index), so
        the channels new since the last cycle are a suffix: their writers are
        created here, on the drain, before their first drain.
        """
        channels = self._snapshot()
        # At most _OPEN_PER_CYCLE new writers a cycle (all of them at the final
        # one): the channels not opened yet wait for the next cycle, unvisited.
        # Opening every new thread's files at once let a burst of short-lived
        # threads (created faster than files can be) hold thousands of fds.
        end = len(channels) if self.drain._stop else min(len(channels), self._opened + _OPEN_PER_CYCLE)
        for ch in channels[self._opened : end]:
            self._open_writer(ch)
            self.drain.harvest_ended()  # (each open costs file-system calls: see Drain._harvest)
        self._opened = end
        return channels[:end]

    def _open_writer(self, ch: ThreadChannel) -> None:
        """Drain thread, before a new thread's first drain: create its ``ThreadWriter`` (files).

        A failure leaves ``ch.writer`` None and ``ch.writer_error`` set: the
        thread keeps its rings (producers never fail) and the drain counts
        its events as disk-error drops.
        """
        try:
            ch.writer = ThreadWriter(self.session_dir, ch.thread_id, self.clock_type, fsync=self.fsync)
        except WriteError as exc:
            ch.writer_error = str(exc)
            self.drain.errors.append(f"thread {ch.thread_id}: {exc}")
            return
        if self.detail_mode == "flight":  # issue 5
            from .detail import make_flight_writer

            try:
                ch.writer = make_flight_writer(self, ch)
            except Exception as exc:  # noqa: BLE001 - on the drain thread: must not end the drain
                ch.writer.close()
                ch.writer, ch.writer_error = None, f"flight writer: {exc}"
                self.drain.errors.append(f"thread {ch.thread_id}: flight writer: {exc}")

    def channels(self) -> list[ThreadChannel]:
        """Every channel registered so far (a snapshot), closed ones included."""
        return self._snapshot()

    def channel_for_current_thread(self) -> ThreadChannel:
        """Same as ``register_current_thread``: for the tracer, from any thread."""
        return self.register_current_thread()

    def thread_exited(self, channel: ThreadChannel | None = None) -> None:
        """The thread of ``channel`` (default: the calling thread) will not emit any more.

        Its rings are drained and its files finalized at the drain's next
        cycle. If the calling thread emits again it is registered anew (new N).
        """
        current: ThreadChannel | None = getattr(self._local, "channel", None)
        if channel is None:
            if current is None:
                return
            channel = current
        if current is channel:
            self._local.channel = None
            sentinel = getattr(self._local, "sentinel", None)
            self._local.sentinel = None
            if sentinel is not None:
                sentinel.session_ref = lambda: None  # already reported here
        self._channel_ended(channel)

    def _channel_ended(self, channel: ThreadChannel) -> None:
        # In a forked child the parent's other threads "end" while the child
        # is being set up (before the session is disabled): ignore them, and
        # touch no lock the parent may have held.
        if os.getpid() != self.pid or self._status != STATUS_RECORDING or channel.exited.is_set():
            return
        channel.ctrl[CTRL_ENABLED] = 0
        if int(channel.ctrl[CTRL_STATE]) == CHANNEL_ACTIVE:
            channel.ctrl[CTRL_STATE] = CHANNEL_EXITED
        channel.exited.set()
        self.drain.ended.append(channel)
        self.drain.wake.set()

    def _channels_changed(self) -> None:
        """Drain thread: the set of threads changed; keep the manifest current for crash recovery.

        A rewrite costs O(threads) (stats of every thread, JSON): with
        thousands of threads it takes most of a second, during which the
        drain neither drains nor closes ended threads' files. So a rewrite
        waits until 20x the last one's cost has passed (the drain spends at
        most ~5% of its time on them), and at least
        ``MANIFEST_REWRITE_MIN_INTERVAL`` (a program that starts threads all
        the time pays for one rewrite per interval, not one per thread: each
        costs several file-system calls, ~3 ms here); meanwhile the drain is
        asked again every cycle, so the last change is written too.
        (``recover_session`` also finds thread directories the manifest lacks.)
        """
        if self._status != STATUS_RECORDING:
            return
        now = time.monotonic()
        if now < self._manifest_due:
            self.drain._known = -1  # not written yet: the drain calls again next cycle
            return
        try:
            self._write_manifest(fsync=False)
        except OSError as exc:
            self.drain.errors.append(f"manifest: {exc}")
        self._grow_reserve()
        self._manifest_due = now + max(MANIFEST_REWRITE_MIN_INTERVAL, 20 * (time.monotonic() - now))

    # -------------------------------------------------------------- events

    def _channel(self) -> ThreadChannel | None:
        ch = getattr(self._local, "channel", None)
        if ch is None or not ch.ctrl[CTRL_ENABLED]:
            if self._status != STATUS_RECORDING:
                if self._status == "disabled":
                    return None
                raise SessionStateError(f"session is {self._status}: cannot emit", self.session_dir)
            if ch is not None:
                self.thread_exited(ch)
            ch = self.register_current_thread()
        return ch

    def function_id(self, function: FunctionRef) -> int:
        """A registered id for ``function`` (a name is registered in module ``__main__``)."""
        if isinstance(function, str):
            return self.symbols.register(function)
        if isinstance(function, (int, np.integer)) and not isinstance(function, bool):
            fid = int(function)
            if fid not in self.symbols:
                raise AtfV2Error(f"function id {fid:#x} is not registered in the session's symbol table")
            return fid
        raise AtfV2Error(f"function must be a registered id or a name, not {type(function).__name__}")

    def emit(self, function: FunctionRef, kind: int, detail: BytesLike | None = None, depth: int = 0) -> None:
        """Record one event on the calling thread (see the module docstring)."""
        if kind not in EVENT_KIND_NAMES:
            raise AtfV2Error(f"event kind must be one of {sorted(EVENT_KIND_NAMES)}, not {kind!r}")
        if not (isinstance(depth, (int, np.integer)) and 0 <= depth <= _MAX_DEPTH):
            raise AtfV2Error(f"call depth must be an integer in 0..{_MAX_DEPTH}, not {depth!r}")
        fid = self.function_id(function)
        ch = self._channel()
        if ch is None:
            return
        kind_depth = np.uint64(int(kind) | (int(depth) << 32))
        if detail is None:
            emit_one(ch.ctrl, ch.index_pool, np.uint64(fid), kind_depth)
            return
        try:
            # (ignore: numpy < 2.5 declares ndarray's buffer protocol to type checkers only from
            # Python 3.12; numpy 2.5, installed for 3.12+, accepts it: unused-ignore there)
            payload = np.frombuffer(memoryview(detail).cast("B"), dtype=np.uint8)  # type: ignore[arg-type, unused-ignore]
        except TypeError:
            raise AtfV2Error(f"detail must be bytes-like, not {type(detail).__name__}") from None
        if not ch.has_detail_lane and self._lazy_detail_lane:  # issue 5
            ch.add_detail_lane()
        if not ch.has_detail_lane:
            raise AtfV2Error("this session was started with detail=False: emit() cannot take a detail")
        event_type = DETAIL_FUNCTION_CALL if kind == EVENT_CALL else DETAIL_FUNCTION_RETURN
        emit_one_detail(ch.ctrl, ch.index_pool, ch.detail_words, ch.detail_bytes, np.uint64(fid), kind_depth, event_type, payload)

    def emit_batch(
        self,
        function_ids: npt.ArrayLike,
        kinds: npt.ArrayLike,
        depths: npt.ArrayLike | None = None,
        timestamps_ns: npt.ArrayLike | None = None,
        details: Sequence[BytesLike | None] | None = None,
    ) -> None:
        """Record a batch of events on the calling thread (see the module docstring)."""
        raw_ids = np.asarray(function_ids)
        n = raw_ids.shape[0] if raw_ids.ndim == 1 else -1
        if n < 0:
            raise AtfV2Error("function_ids must be a 1-D column")
        if raw_ids.dtype.kind in "US" or raw_ids.dtype == object:
            fids = np.fromiter((self.function_id(f) for f in raw_ids.tolist()), dtype=np.uint64, count=n)
        elif raw_ids.dtype.kind in "iu":
            if n and (raw_ids.min() < 0):
                raise AtfV2Error("function ids must be non-negative")
            fids = np.ascontiguousarray(raw_ids, dtype=np.uint64)
            for fid in np.unique(fids).tolist():
                self.function_id(fid)
        else:
            raise AtfV2Error(f"function_ids must be integers or names, not {raw_ids.dtype}")
        kinds_a = _column(kinds, np.uint32, "kinds", n)
        if n and not np.isin(kinds_a, list(EVENT_KIND_NAMES)).all():
            raise AtfV2Error(f"event kinds must be among {sorted(EVENT_KIND_NAMES)}")
        depths_a = np.zeros(n, dtype=np.uint32) if depths is None else _column(depths, np.uint32, "depths", n)
        use_ns = timestamps_ns is not None
        ts = _column(timestamps_ns, np.uint64, "timestamps_ns", n) if timestamps_ns is not None else np.zeros(0, dtype=np.uint64)
        if use_ns and n > 1 and (ts[1:] < ts[:-1]).any():
            raise AtfV2Error("timestamps_ns must be non-decreasing within a batch")
        has = np.zeros(n, dtype=np.bool_)
        offsets = np.zeros(n + 1, dtype=np.int64)
        payload = np.empty(0, dtype=np.uint8)
        if details is not None:
            if len(details) != n:
                raise AtfV2Error(f"details has {len(details)} entries for {n} events")
            parts = []
            for i, d in enumerate(details):
                if d is not None:
                    has[i] = True
                    parts.append(bytes(d))
                    offsets[i + 1] = len(parts[-1])
            np.cumsum(offsets, out=offsets)
            payload = np.frombuffer(b"".join(parts), dtype=np.uint8) if parts else payload
        ch = self._channel()
        if ch is None or n == 0:
            return
        if has.any() and not ch.has_detail_lane and self._lazy_detail_lane:  # issue 5
            ch.add_detail_lane()
        if has.any() and not ch.has_detail_lane:
            raise AtfV2Error("this session was started with detail=False: emit_batch() cannot take details")
        detail_types = np.where(kinds_a == EVENT_CALL, DETAIL_FUNCTION_CALL, DETAIL_FUNCTION_RETURN).astype(np.uint16)
        emit_many(
            ch.ctrl, ch.index_pool, ch.detail_words, ch.detail_bytes, fids, kinds_a, depths_a, ts, use_ns,
            has, detail_types, payload, offsets,
        )

    # -------------------------------------------------------------- figures

    def get_stats(self) -> SessionStats:
        with self._lock:
            if self._final is not None:
                return self._final
            return self._stats()

    def _thread_stats(self, ch: ThreadChannel) -> ThreadStats:
        """The figures of one thread; a closed thread's are final, computed once.

        (The manifest rewrites of a long session with thread churn ask for
        every thread's figures: without the cache, two ``stat`` calls and the
        control-block reads per thread that ended long ago, each time.)
        """
        if ch.final_stats is not None:
            return ch.final_stats
        # CLOSED is the drain's last store for a channel: what is read after
        # seeing it does not change any more.
        closed = ch.state == CHANNEL_CLOSED
        w = ch.writer
        stats = ThreadStats(
            thread_id=ch.thread_id,
            os_thread_id=ch.os_thread_id,
            name=ch.name,
            state=ThreadStats.state_name(ch.state),
            index=LaneStats.index_from_ctrl(ch.ctrl),
            detail=LaneStats.detail_from_ctrl(ch.ctrl),
            index_file_bytes=file_size(w.index_path) if w is not None else 0,
            detail_file_bytes=file_size(w.detail_path) if w is not None and w.has_detail else 0,
            time_start_ns=w.time_start_ns if w is not None else 0,
            time_end_ns=w.time_end_ns if w is not None else 0,
            timestamps_clamped=ch.timestamps_clamped,
            error=ch.writer_error,
        )
        if closed:
            ch.final_stats = stats
        return stats

    def _stats(self) -> SessionStats:
        threads = [self._thread_stats(ch) for ch in self._snapshot()]
        index, detail = LaneStats(), LaneStats()
        for t in threads:
            index.add(t.index)
            detail.add(t.detail)
        end = self._t_stop if self._t_stop is not None else time.monotonic()
        elapsed = max(end - self._t0, 1e-9)
        busy = self.drain.busy_s
        starts = [t.time_start_ns for t in threads if t.index.written]
        ends = [t.time_end_ns for t in threads if t.index.written]
        return SessionStats(
            session_dir=self.session_dir,
            status=self._status,
            pid=self.pid,
            elapsed_s=elapsed,
            threads=threads,
            index=index,
            detail=detail,
            drain_cycles=self.drain.cycles,
            drain_busy_s=busy,
            drain_rate_events_per_s=index.written / elapsed,
            drain_capacity_events_per_s=index.written / busy if busy > 0 else 0.0,
            bytes_written=sum(t.index_file_bytes + t.detail_file_bytes for t in threads),
            time_start_ns=min(starts) if starts else 0,
            time_end_ns=max(ends) if ends else 0,
            errors=list(self.drain.errors),
        )

    # ------------------------------------------------------------- manifest

    def _manifest(self) -> dict:
        stats = self._stats()
        modules, symbols = self.symbols.to_manifest()
        threads: list[dict[str, Any]] = []
        # Threads whose files could not be created (disk full before the
        # drain's first cycle for them): listing them under "threads" would
        # make SessionReader refuse the session (a listed thread's directory
        # must exist), so they go under their own key, drops and error kept.
        unwritten: list[dict[str, Any]] = []
        # Not strict: a thread registering between the two snapshots makes
        # the second one longer; it is listed by the next manifest.
        for t, ch in zip(stats.threads, self._snapshot(), strict=False):
            listed = threads
            if ch.writer is None and ch.writer_error is not None and not os.path.isdir(thread_dir(self.session_dir, ch.thread_id)):
                listed = unwritten
            if ch.manifest_entry is not None:
                listed.append(ch.manifest_entry)
                continue
            w = ch.writer
            listed.append(
                {
                    "id": t.thread_id,
                    "has_detail": bool(w is not None and w.has_detail),
                    "index_events": w.event_count if w is not None else 0,
                    "detail_events": w.detail_count if w is not None else 0,
                    "time_start_ns": t.time_start_ns,
                    "time_end_ns": t.time_end_ns,
                    "os_thread_id": t.os_thread_id,
                    "name": t.name,
                    "dropped": dict(t.index.drops),
                    "detail_dropped": dict(t.detail.drops),
                    "recorded": t.index.recorded,
                    "error": t.error,
                }
            )
            if ch.final_stats is t:  # closed: this entry is final too
                ch.manifest_entry = listed[-1]
        return {
            "format_version": MANIFEST_FORMAT_VERSION,
            "status": self._status,
            "clock_type": self.clock_type,
            "clock": self.drain.converter.as_manifest(),
            "time_start_ns": stats.time_start_ns,
            "time_end_ns": stats.time_end_ns,
            "pid": self.pid,
            "threads": threads,
            **({"threads_without_files": unwritten} if unwritten else {}),
            "modules": modules,
            "symbols": symbols,
            "windows": self._detail_windows(),
            "options": {
                "ring_capacity": self.config.ring_capacity,
                "ring_count": self.config.ring_count,
                "ring_growth": self.config.ring_growth,
                "ring_growth_budget": self.config.ring_growth_budget,
                "detail": self.config.detail,
                "detail_ring_bytes": self.config.detail_ring_bytes,
                "detail_ring_count": self.config.detail_ring_count,
                "flush_interval": self.flush_interval,
                "trace_python": self.trace_python,
                "detail_mode": self.detail_mode,
                **({"flight": self.flight_options.to_manifest()} if self.flight_options else {}),
            },
            **({MANIFEST_DETAIL_PAYLOAD_VERSION_KEY: DETAIL_PAYLOAD_VERSION} if self.detail_mode in ("always", "flight") else {}),
            "stats": {
                "events_recorded": stats.index.recorded,
                "events_written": stats.index.written,
                "events_dropped": stats.index.dropped,
                "drain_cycles": stats.drain_cycles,
                "errors": stats.errors[:20],
            },
        }

    def _detail_windows(self) -> list:
        """issue 5: the flight-recorder windows finished so far (atf2.detail.session_windows)."""
        if self.detail_mode != "flight":
            return []
        from .detail import session_windows

        return session_windows(self)

    def _write_manifest(self, fsync: bool) -> None:
        # The rewrites while recording (fsync=False) are for crash recovery
        # only: compact JSON; the ones at start and stop are indented.
        write_manifest(self.session_dir, self._manifest(), fsync=fsync, compact=not fsync)

    def _grow_reserve(self) -> None:
        """Keep the space for the final manifest (atf2.manifest_reserve) ahead of its size."""
        try:
            want = reserve_size(os.path.getsize(os.path.join(self.session_dir, MANIFEST_NAME)))
            if want > self._reserved:
                self._reserved = reserve_space(self.session_dir, want)
        except OSError as exc:
            if len(self.drain.errors) < 100:
                self.drain.errors.append(f"manifest reserve: {exc}")

    # ------------------------------------------------------------------ fork

    def _disable_after_fork(self) -> None:
        self._lock = threading.RLock()
        self._status = "disabled"
        for ch in self._channels:
            ch.ctrl[CTRL_ENABLED] = 0

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"Session({self.session_dir!r}, status={self._status!r}, threads={len(self._channels)})"


def _column(values: npt.ArrayLike, dtype: npt.DTypeLike, name: str, n: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise AtfV2Error(f"{name} must be a 1-D column of {n} values, not shape {arr.shape}")
    if arr.dtype.kind not in "iub":
        raise AtfV2Error(f"{name} must hold integers, not {arr.dtype}")
    if n and (arr.min() < 0 or int(arr.max()) > np.iinfo(dtype).max):
        raise AtfV2Error(f"{name} out of range for {np.dtype(dtype).name}")
    return np.ascontiguousarray(arr, dtype=dtype)


# ---------------------------------------------------------------------------
# Module-level API (exported from atf2)
# ---------------------------------------------------------------------------


def trace_session_start(session_dir: str | os.PathLike[str], **options: Any) -> Session:
    """Start recording into ``session_dir``; see ``Session`` for the options."""
    global _ACTIVE
    with _LOCK:
        if _ACTIVE is not None:
            raise SessionStateError(f"a session is already active ({_ACTIVE.session_dir}); stop it first")
        session = Session(session_dir, **options)
        session._open()
        _ACTIVE = session
        return session


def trace_session_stop() -> SessionStats:
    """Stop the active session (or return the last one's figures again)."""
    with _LOCK:
        session = _ACTIVE or _LAST
    if session is None:
        raise SessionStateError("trace_session_stop: no session was started")
    return session.stop()


def trace_session_get_stats() -> SessionStats:
    """Figures of the active session, or of the last stopped one."""
    session = _ACTIVE or _LAST
    if session is None:
        raise SessionStateError("trace_session_get_stats: no session was started")
    return session.get_stats()


@contextmanager
def trace_session(session_dir: str | os.PathLike[str], **options: Any) -> Iterator[Session]:
    """``with atf2.trace_session(dir) as s:`` start ... stop."""
    session = trace_session_start(session_dir, **options)
    try:
        yield session
    finally:
        session.stop()


def active_session() -> Session | None:
    return _ACTIVE


def _require_active() -> Session:
    session = _ACTIVE
    if session is None:
        raise SessionStateError("no active session: call atf2.trace_session_start() first")
    return session


def emit(function: FunctionRef, kind: int, detail: BytesLike | None = None, depth: int = 0) -> None:
    """Record one explicit event on the calling thread of the active session."""
    _require_active().emit(function, kind, detail, depth)


def emit_batch(
    function_ids: npt.ArrayLike,
    kinds: npt.ArrayLike,
    depths: npt.ArrayLike | None = None,
    timestamps_ns: npt.ArrayLike | None = None,
    details: Sequence[BytesLike | None] | None = None,
) -> None:
    """Record a batch of explicit events on the calling thread of the active session."""
    _require_active().emit_batch(function_ids, kinds, depths, timestamps_ns, details)


def _stop_at_exit() -> None:
    session = _ACTIVE
    if session is not None and session.pid == os.getpid():
        session.stop()


def _before_fork() -> None:
    # Numba's compiler lock is process-wide. A child forked while another
    # thread (the drain, a producer) is compiling or loading a kernel would
    # inherit it held by a thread that does not exist there, and hang at its
    # first dispatch that needs it. Holding it across fork() avoids that.
    global_compiler_lock.acquire()


def _after_fork_in_parent() -> None:
    global_compiler_lock.release()


def _after_fork_in_child() -> None:
    global _LOCK
    global_compiler_lock.release()
    _LOCK = threading.RLock()
    session = _ACTIVE
    if session is not None:
        session._disable_after_fork()
        _FORKED.append(session)


atexit.register(_stop_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child)
