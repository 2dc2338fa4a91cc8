"""ThreadWriter: one thread's ``index.atf`` (and lazily ``detail.atf``).

The unit of work is a batch: ``write_events(events, details)`` takes a numpy
array of ``INDEX_EVENT_DTYPE`` records (plus, optionally, the detail payloads
of some of them) and puts it on disk with one or a few ``pwritev`` calls. The
encoding (thread ids, detail links, detail framing) runs in Numba kernels
(``atf2.kernels.encode``); the CRC-32 of each events section is zlib's
polynomial, computed incrementally over the bytes as they are written, never
by reading the file back (``atf2.kernels.crc``: a PCLMULQDQ kernel where the
CPU has it, ``zlib.crc32`` elsewhere; the same value either way).

The hot path is one pass over the records: on CPUs with AVX2 + VPCLMULQDQ
(``atf2.kernels.encode_wide``) a 256-bit kernel checks the timestamps and
folds the CRC; records that already carry this writer's ``thread_id`` and
``detail_seq = NO_DETAIL`` are then written from the caller's array without a
copy, the others are encoded into a scratch buffer in the same pass. Large
batches are cut into chunks and pipelined: while one chunk is written, a
helper thread checks (or encodes) the next one and computes its CRC (the
kernels and ``pwritev`` release the GIL). The first chunk is small, as
nothing can be written before it is checked.

Failure model: a batch is all or nothing. If a write fails (ENOSPC, EIO, EFBIG
under RLIMIT_FSIZE), or the batch is rejected (timestamps going backwards), the
files are cut back to where they were before the batch and the writer stays
usable; ``finalize()`` then writes valid files holding every earlier batch.
The process must ignore SIGXFSZ for EFBIG to be reported rather than fatal
(the session layer does); the writer only needs ``write`` to fail.

Crash model: the header is a placeholder until ``finalize()``, but every
batch ends with a valid footer (written in the same ``pwritev`` as the batch's
last chunk), so a killed recorder's files read back every complete batch; if
the kill lands inside a multi-chunk batch, the reader counts the complete
records from the file size. Keeping a footer after every batch also means the
space for the final footer is always already allocated: after a size-limit or
full-disk failure, ``finalize()`` writes into room the file had before.
Detail events are written before the index events that point at them.
"""

from __future__ import annotations

import errno as _errno
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from .errors import AtfV2Error, SessionStateError, WriteError
from .kernels import crc as _crc
from .kernels import encode_wide as _wide
from .kernels.crc import crc32
from .kernels.encode import encode_index, encode_index_crc, first_decrease, frame_details
from .layout import (
    CLOCK_BOOTTIME,
    DETAIL_EVENT_HEADER_SIZE,
    DETAIL_FILE_NAME,
    DETAIL_FOOTER_DTYPE,
    DETAIL_FOOTER_MAGIC,
    DETAIL_FOOTER_SIZE,
    DETAIL_FUNCTION_CALL,
    DETAIL_FUNCTION_RETURN,
    DETAIL_HEADER_DTYPE,
    DETAIL_HEADER_SIZE,
    DETAIL_MAGIC,
    ENDIAN_LITTLE,
    EVENT_CALL,
    FLAG_HAS_DETAIL_FILE,
    FORMAT_VERSION,
    INDEX_EVENT_DTYPE,
    INDEX_EVENT_OFFSETS,
    INDEX_EVENT_SIZE,
    INDEX_EVENTS_OFFSET,
    INDEX_FILE_NAME,
    INDEX_FOOTER_DTYPE,
    INDEX_FOOTER_MAGIC,
    INDEX_FOOTER_SIZE,
    INDEX_HEADER_DTYPE,
    INDEX_MAGIC,
    NO_DETAIL,
    field_names,
    host_arch,
    host_os,
)
from .manifest import check_thread_id
from .manifest import thread_dir as _thread_dir

#: events per chunk of a batch (8 MiB of records): the pipelining grain
CHUNK_EVENTS = 1 << 18
#: largest u32 usable as a link (NO_DETAIL is reserved)
_MAX_LINK = NO_DETAIL - 1
_MAX_PAYLOAD = 0xFFFFFFFF - DETAIL_EVENT_HEADER_SIZE

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_EMPTY_I64 = np.empty(0, dtype=np.int64)

# Indirections so tests can inject I/O failures without a full disk.
_pwritev = os.pwritev
_ftruncate = os.ftruncate

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _forget_pool_after_fork() -> None:
    # A forked child inherits the executor but not its threads: work submitted
    # to it would never run. The child makes its own on first use.
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _helper_pool() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="atf2-writer")
    return _pool


class DetailBatch(NamedTuple):
    """The detail events of one batch, in columns.

    ``positions``: int64, strictly increasing indices into the batch's events.
    ``payload``: uint8, the payloads concatenated.
    ``offsets``: int64 of length ``len(positions) + 1``; payload ``k`` is
    ``payload[offsets[k]:offsets[k + 1]]``.
    ``event_type``: uint16 per detail event, or None to derive it from the
    paired event's kind (CALL -> FUNCTION_CALL, RETURN/EXCEPTION -> FUNCTION_RETURN).
    ``flags``: uint16 per detail event, or None for 0.
    """

    positions: np.ndarray
    payload: np.ndarray
    offsets: np.ndarray
    event_type: np.ndarray | None = None
    flags: np.ndarray | None = None

    @classmethod
    def from_payloads(cls, payloads: Sequence[Any], flags: Sequence[int] | None = None) -> DetailBatch:
        """Build from a list aligned with the events: ``bytes`` (a detail) or None per event."""
        positions = [i for i, p in enumerate(payloads) if p is not None]
        parts = [bytes(payloads[i]) for i in positions]
        offsets = np.zeros(len(parts) + 1, dtype=np.int64)
        if parts:
            np.cumsum([len(p) for p in parts], out=offsets[1:])
        payload = np.frombuffer(b"".join(parts), dtype=np.uint8)
        flag_arr = None if flags is None else np.asarray([flags[i] for i in positions], dtype=np.uint16)
        return cls(np.asarray(positions, dtype=np.int64), payload, offsets, None, flag_arr)


def _as_events(events: Any) -> np.ndarray:
    if not isinstance(events, np.ndarray):
        raise AtfV2Error(f"events must be a numpy array of INDEX_EVENT_DTYPE, not {type(events).__name__}")
    if events.dtype != INDEX_EVENT_DTYPE:
        if events.dtype.names is None or set(events.dtype.names) != set(field_names(INDEX_EVENT_DTYPE)):
            raise AtfV2Error(f"events must have dtype INDEX_EVENT_DTYPE (fields {INDEX_EVENT_DTYPE.names}), not {events.dtype}")
        converted = np.empty(events.shape, dtype=INDEX_EVENT_DTYPE)
        for name in field_names(INDEX_EVENT_DTYPE):  # by name: astype would match fields by position
            converted[name] = events[name]
        events = converted
    if events.ndim != 1:
        raise AtfV2Error(f"events must be one-dimensional, not of shape {events.shape}")
    return np.ascontiguousarray(events)


def _column(values: Any, dtype: Any, name: str, length: int) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != length:
        raise AtfV2Error(f"details.{name} must be one-dimensional of length {length}, not of shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iub":
        raise AtfV2Error(f"details.{name} must hold integers, not {arr.dtype}")
    if arr.size and arr.dtype != np.dtype(dtype):
        info = np.iinfo(dtype)
        if arr.min() < info.min or arr.max() > info.max:
            raise AtfV2Error(f"details.{name} has values outside {np.dtype(dtype).name}")
    return np.ascontiguousarray(arr, dtype=dtype)


def _normalize_details(details: Any, events: np.ndarray) -> DetailBatch | None:
    """Validate ``details`` against a batch; return a DetailBatch of exact dtypes, or None."""
    n = len(events)
    if details is None:
        return None
    if isinstance(details, (list, tuple)) and not isinstance(details, DetailBatch):  # DetailBatch is a tuple too
        if len(details) != n:
            raise AtfV2Error(f"a details list must be aligned with the events: {len(details)} entries for {n} events")
        details = DetailBatch.from_payloads(details)
    if not isinstance(details, DetailBatch):
        raise AtfV2Error(f"details must be None, a DetailBatch or a list of bytes/None, not {type(details).__name__}")
    positions = np.asarray(details.positions)
    k = len(positions) if positions.ndim == 1 else -1
    if k < 0:
        raise AtfV2Error("details.positions must be one-dimensional")
    positions = _column(positions, np.int64, "positions", k)
    if k == 0:
        return None
    if positions[0] < 0 or positions[-1] >= n or (k > 1 and not np.all(positions[1:] > positions[:-1])):
        raise AtfV2Error(f"details.positions must be strictly increasing indices into the {n} events")
    payload = np.asarray(details.payload)
    if payload.dtype != np.uint8 or payload.ndim != 1:
        try:
            payload = np.frombuffer(payload.data.cast("B"), dtype=np.uint8)
        except (TypeError, ValueError):
            raise AtfV2Error("details.payload must be a one-dimensional uint8 array") from None
    payload = np.ascontiguousarray(payload)
    offsets = _column(details.offsets, np.int64, "offsets", k + 1)
    lengths = np.diff(offsets)
    if offsets[0] < 0 or offsets[-1] > len(payload) or np.any(lengths < 0):
        raise AtfV2Error(f"details.offsets must be non-decreasing within the {len(payload)} payload bytes")
    if lengths.max() > _MAX_PAYLOAD:
        raise AtfV2Error("a detail payload is larger than the format allows (4 GiB - 24 bytes)")
    if details.event_type is None:
        kinds = events["event_kind"][positions]
        event_type = np.where(kinds == EVENT_CALL, DETAIL_FUNCTION_CALL, DETAIL_FUNCTION_RETURN).astype(np.uint16)
    else:
        event_type = _column(details.event_type, np.uint16, "event_type", k)
    flags = np.zeros(k, dtype=np.uint16) if details.flags is None else _column(details.flags, np.uint16, "flags", k)
    return DetailBatch(positions, payload, offsets, event_type, flags)


def _chunk_bounds(n: int) -> np.ndarray:
    """Where a batch of ``n`` events is cut into pipelined chunks.

    The first chunk is checked before anything can be written, so it is
    small (an eighth of a chunk) and the next ones double up to
    ``CHUNK_EVENTS``: the helper thread checks chunk ``k + 1`` while chunk
    ``k`` is written. A last chunk shorter than half the one before joins
    it if that stays within ``CHUNK_EVENTS`` (the scratch buffers' size). A
    1M-event batch is 6 writes.
    """
    cuts = [0]
    size = max(1, CHUNK_EVENTS // 8)
    while cuts[-1] < n:
        cuts.append(min(n, cuts[-1] + size))
        size = min(2 * size, CHUNK_EVENTS)
    if len(cuts) > 2 and cuts[-1] - cuts[-2] < (cuts[-2] - cuts[-3]) // 2 and cuts[-1] - cuts[-3] <= CHUNK_EVENTS:
        del cuts[-2]
    return np.asarray(cuts, dtype=np.int64)


def _write_all(fd: int, buffers: Sequence[Any], offset: int) -> None:
    """Write ``buffers`` back to back at ``offset`` with ``pwritev``.

    One system call in the normal case; a short write (signal, size limit) is
    continued, and the call that cannot make progress raises.
    """
    views = [memoryview(b).cast("B") for b in buffers]
    views = [v for v in views if len(v)]
    while views:
        written = _pwritev(fd, views, offset)
        if written <= 0:  # pragma: no cover - pwritev raises instead
            raise OSError(_errno.EIO, "pwritev wrote nothing")
        offset += written
        while views and written >= len(views[0]):
            written -= len(views.pop(0))
        if written:
            views[0] = views[0][written:]


class ThreadWriter:
    """Writes ``<session_dir>/thread_<N>/index.atf`` and, lazily, ``detail.atf``.

    ``write_events`` may be called from any one thread at a time (calls are
    serialized by a lock); ``finalize`` is idempotent; ``close`` finalizes.
    """

    def __init__(self, session_dir: str | os.PathLike[str], thread_id: int, clock_type: int = CLOCK_BOOTTIME, *, fsync: bool = False):
        self._thread_id = check_thread_id(thread_id)
        if not (isinstance(clock_type, int) and 0 <= clock_type <= 0xFF):
            raise AtfV2Error(f"clock_type must be a u8 code, not {clock_type!r}")
        self._clock_type = int(clock_type)
        self._fsync = bool(fsync)
        self._thread_dir = _thread_dir(session_dir, self._thread_id)
        self._index_path = os.path.join(self._thread_dir, INDEX_FILE_NAME)
        self._detail_path = os.path.join(self._thread_dir, DETAIL_FILE_NAME)
        self._lock = threading.Lock()
        self._arch = host_arch()
        self._os = host_os()
        # committed state (changed only when a whole batch is on disk)
        self._n_index = 0
        self._n_detail = 0
        self._detail_bytes = 0
        self._index_crc = 0
        self._detail_crc = 0
        self._t_first = 0
        self._t_last = 0
        self._d_t_first = 0
        self._d_t_last = 0
        self._d_seq_first = 0
        self._d_seq_last = 0
        self._scratch: list = []
        self._detail_fd: int | None = None
        self._summary: dict | None = None
        self._closed = False
        # A failure here must not leave a file without a complete placeholder
        # header (a 0-byte index.atf made SessionReader refuse the whole
        # session): what this constructor created is removed again.
        created_dir = not os.path.isdir(self._thread_dir)
        try:
            os.makedirs(self._thread_dir, exist_ok=True)
            self._index_fd = os.open(self._index_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC, 0o644)
        except OSError as exc:
            self._remove_created(created_dir)
            raise WriteError(f"cannot create: {exc.strerror or exc}", self._index_path, errno=exc.errno) from exc
        try:
            _write_all(self._index_fd, [self._index_header(final=False), self._index_footer()], 0)
        except OSError as exc:
            os.close(self._index_fd)
            try:
                os.unlink(self._index_path)
            except OSError:
                pass
            self._remove_created(created_dir)
            raise WriteError(f"cannot write the header: {exc.strerror or exc}", self._index_path, 0, errno=exc.errno) from exc

    def _remove_created(self, created_dir: bool) -> None:
        """Constructor failed: remove the thread directory if it made it and it is empty."""
        if created_dir:
            try:
                os.rmdir(self._thread_dir)
            except OSError:  # not empty or already gone: leave it
                pass

    # ------------------------------------------------------------------ headers

    def _index_header(self, final: bool) -> np.ndarray:
        h = np.zeros(1, dtype=INDEX_HEADER_DTYPE)
        h["magic"] = INDEX_MAGIC
        h["endian"] = ENDIAN_LITTLE
        h["version"] = FORMAT_VERSION
        h["arch"] = self._arch
        h["os"] = self._os
        h["flags"] = FLAG_HAS_DETAIL_FILE if self._detail_fd is not None else 0
        h["thread_id"] = self._thread_id
        h["clock_type"] = self._clock_type
        h["event_size"] = INDEX_EVENT_SIZE
        h["events_offset"] = INDEX_EVENTS_OFFSET
        h["footer_offset"] = INDEX_EVENTS_OFFSET
        if final:
            h["event_count"] = min(self._n_index, 0xFFFFFFFF)
            h["footer_offset"] = INDEX_EVENTS_OFFSET + INDEX_EVENT_SIZE * self._n_index
            h["time_start_ns"] = self._t_first
            h["time_end_ns"] = self._t_last
        return h

    def _detail_header(self, final: bool) -> np.ndarray:
        h = np.zeros(1, dtype=DETAIL_HEADER_DTYPE)
        h["magic"] = DETAIL_MAGIC
        h["endian"] = ENDIAN_LITTLE
        h["version"] = FORMAT_VERSION
        h["arch"] = self._arch
        h["os"] = self._os
        h["thread_id"] = self._thread_id
        h["events_offset"] = DETAIL_HEADER_SIZE
        if final:
            h["event_count"] = self._n_detail
            h["bytes_length"] = self._detail_bytes
            h["index_seq_start"] = self._d_seq_first
            h["index_seq_end"] = self._d_seq_last
        return h

    def _index_footer(self, n: int = 0, crc: int = 0, t_first: int = 0, t_last: int = 0) -> np.ndarray:
        f = np.zeros(1, dtype=INDEX_FOOTER_DTYPE)
        f["magic"] = INDEX_FOOTER_MAGIC
        f["checksum"] = crc
        f["event_count"] = n
        f["time_start_ns"] = t_first
        f["time_end_ns"] = t_last
        f["bytes_written"] = n * INDEX_EVENT_SIZE
        return f

    def _detail_footer(self, n: int = 0, length: int = 0, crc: int = 0, t_first: int = 0, t_last: int = 0) -> np.ndarray:
        f = np.zeros(1, dtype=DETAIL_FOOTER_DTYPE)
        f["magic"] = DETAIL_FOOTER_MAGIC
        f["checksum"] = crc
        f["event_count"] = n
        f["bytes_length"] = length
        f["time_start_ns"] = t_first
        f["time_end_ns"] = t_last
        return f

    def _current_index_footer(self) -> np.ndarray:
        return self._index_footer(self._n_index, self._index_crc, self._t_first, self._t_last)

    def _current_detail_footer(self) -> np.ndarray:
        return self._detail_footer(self._n_detail, self._detail_bytes, self._detail_crc, self._d_t_first, self._d_t_last)

    # --------------------------------------------------------------- properties

    thread_id = property(lambda self: self._thread_id)
    clock_type = property(lambda self: self._clock_type)
    event_count = property(lambda self: self._n_index, doc="index events written")
    detail_count = property(lambda self: self._n_detail, doc="detail events written")
    index_bytes = property(lambda self: self._n_index * INDEX_EVENT_SIZE, doc="bytes in the index events section")
    detail_bytes = property(lambda self: self._detail_bytes, doc="bytes in the detail events section")
    time_start_ns = property(lambda self: self._t_first, doc="first timestamp (0 while empty)")
    time_end_ns = property(lambda self: self._t_last, doc="last timestamp (0 while empty)")
    has_detail = property(lambda self: self._detail_fd is not None, doc="detail.atf exists")
    index_path = property(lambda self: self._index_path)
    detail_path = property(lambda self: self._detail_path)
    thread_dir = property(lambda self: self._thread_dir)
    finalized = property(lambda self: self._summary is not None)
    index_crc = property(lambda self: self._index_crc, doc="CRC-32 of the index events section so far (what write_encoded continues)")
    closed = property(lambda self: self._closed)

    # ------------------------------------------------------------------ writing

    def write_events(
        self, events: npt.NDArray[np.void], details: DetailBatch | Sequence[bytes | None] | None = None
    ) -> None:
        """Append one batch; all or nothing (see the module docstring).

        ``events``: INDEX_EVENT_DTYPE array; ``thread_id`` and ``detail_seq``
        are set by the writer (the caller's array is not modified).
        ``details``: None, a ``DetailBatch``, or a list aligned with ``events``
        holding ``bytes`` or None per event.
        Raises ``AtfV2Error`` for a bad batch (nothing written), ``WriteError``
        for an I/O failure (files restored to the previous batch).
        """
        events = _as_events(events)
        with self._lock:
            if self._summary is not None or self._closed:
                raise SessionStateError("write_events after finalize/close", self._index_path)
            details = _normalize_details(details, events)
            n = len(events)
            if n == 0:
                return
            positions = _EMPTY_I64 if details is None else details.positions
            k = len(positions)
            if k:
                if self._n_index + int(positions[-1]) > _MAX_LINK:
                    raise AtfV2Error("index_seq of a detail event would not fit the u32 link field", self._index_path)
                if self._n_detail + k - 1 > _MAX_LINK:
                    raise AtfV2Error("too many detail events for the u32 detail_seq field", self._detail_path)
            index_end = INDEX_EVENTS_OFFSET + INDEX_EVENT_SIZE * self._n_index
            detail_end = DETAIL_HEADER_SIZE + self._detail_bytes
            created_detail = False
            target = self._index_path
            detail_crc = self._detail_crc
            detail_len = 0
            ts = events["timestamp_ns"]
            t_first = self._t_first if self._n_index else int(ts[0])
            t_last = int(ts[-1])
            try:
                if k:
                    assert details is not None  # k > 0: a batch with events
                    target = self._detail_path
                    if self._detail_fd is None:
                        created_detail = True
                        self._open_detail()
                    assert self._detail_fd is not None  # opened just above if it was not
                    framed = np.empty(k * DETAIL_EVENT_HEADER_SIZE + int(details.offsets[-1] - details.offsets[0]), dtype=np.uint8)
                    detail_len = frame_details(
                        events, details.positions, details.payload, details.offsets, details.event_type,
                        details.flags, self._thread_id, self._n_index, framed,
                    )
                    # index events are checked when encoded; check now what the
                    # detail file would carry, so it is never written for a bad batch
                    self._check_timestamps(events)
                    detail_crc = crc32(framed, detail_crc)
                    d_first = self._d_t_first if self._n_detail else int(ts[positions[0]])
                    footer = self._detail_footer(
                        self._n_detail + k, self._detail_bytes + detail_len, detail_crc, d_first, int(ts[positions[-1]])
                    )
                    _write_all(self._detail_fd, [framed, footer], detail_end)
                    target = self._index_path

                def index_footer(crc: int) -> np.ndarray:
                    return self._index_footer(self._n_index + n, crc, t_first, t_last)

                index_crc = self._write_index(events, positions, index_end, index_footer)
            except BaseException as exc:
                self._rollback(index_end, detail_end, created_detail)
                if isinstance(exc, OSError):
                    raise WriteError(f"write failed, batch of {n} events dropped: {exc.strerror or exc}", target, errno=exc.errno) from exc
                raise
            # commit
            if k:
                first_pos, last_pos = int(positions[0]), int(positions[-1])
                if self._n_detail == 0:
                    self._d_seq_first = self._n_index + first_pos
                    self._d_t_first = int(events["timestamp_ns"][first_pos])
                self._d_seq_last = self._n_index + last_pos
                self._d_t_last = int(events["timestamp_ns"][last_pos])
                self._n_detail += k
                self._detail_bytes += detail_len
                self._detail_crc = detail_crc
            self._t_first = t_first
            self._t_last = t_last
            self._n_index += n
            self._index_crc = index_crc

    def write_encoded(self, events: np.ndarray, crc: int, crc_in: int, *, ordered: bool = False) -> None:
        """Append a batch the caller already encoded and checksummed: one ``pwritev``.

        The drain's fast path (``atf2.kernels.ring.index_ring_take_encoded_crc``).
        ``events`` are written as they are: ``thread_id`` must be this
        writer's and ``detail_seq`` NO_DETAIL (a batch with details goes
        through ``write_events``). ``crc_in`` must equal ``index_crc`` and
        ``crc`` be ``zlib.crc32(events bytes, crc_in)``. Timestamps are
        checked as in ``write_events`` (nothing written if one decreases) and
        an I/O failure rolls the file back to the previous batch
        (``WriteError``). ``ordered``: the caller guarantees that timestamps
        never decrease inside the batch (the drain's kernel clamps them), so
        only the first is checked, against the file's last (the full scan
        cost the drain several ns per event: the batch is cold in this
        thread's cache).
        """
        events = _as_events(events)
        with self._lock:
            if self._summary is not None or self._closed:
                raise SessionStateError("write_encoded after finalize/close", self._index_path)
            n = len(events)
            if n == 0:
                return
            if int(crc_in) != self._index_crc:
                raise AtfV2Error(f"write_encoded: crc_in {int(crc_in):#x} does not continue this file's CRC {self._index_crc:#x}", self._index_path)
            # the timestamps as an aligned strided view of little-endian words
            # (the field view is unaligned for Numba: several times slower)
            ts = events.view("<u8")[INDEX_EVENT_OFFSETS["timestamp_ns"] // 8 :: INDEX_EVENT_SIZE // 8]
            if ordered:
                bad = 0 if int(ts[0]) < self._t_last else -1
            else:
                bad = first_decrease(ts, np.uint64(self._t_last))
            if bad >= 0:
                raise self._order_error(events, bad)
            t_first = self._t_first if self._n_index else int(ts[0])
            t_last = int(ts[-1])
            index_end = INDEX_EVENTS_OFFSET + INDEX_EVENT_SIZE * self._n_index
            crc = int(crc) & 0xFFFFFFFF
            try:
                _write_all(self._index_fd, [events, self._index_footer(self._n_index + n, crc, t_first, t_last)], index_end)
            except BaseException as exc:
                self._rollback(index_end, DETAIL_HEADER_SIZE + self._detail_bytes, False)
                if isinstance(exc, OSError):
                    raise WriteError(f"write failed, batch of {n} events dropped: {exc.strerror or exc}", self._index_path, errno=exc.errno) from exc
                raise
            self._t_first = t_first
            self._t_last = t_last
            self._n_index += n
            self._index_crc = crc

    def _check_timestamps(self, events: np.ndarray) -> None:
        bad = first_decrease(events["timestamp_ns"], np.uint64(self._t_last))
        if bad >= 0:
            raise self._order_error(events, bad)

    def _order_error(self, events: np.ndarray, i: int) -> AtfV2Error:
        ts = int(events["timestamp_ns"][i])
        prev = int(events["timestamp_ns"][i - 1]) if i > 0 else self._t_last
        where = f"position {i - 1} of this batch" if i > 0 else "the last event of the previous batch"
        return AtfV2Error(
            f"timestamps must not decrease: event at position {i} of the batch has timestamp_ns {ts} < {prev} at {where}; batch rejected",
            self._index_path,
        )

    def _scratch_slot(self, k: int, events: int) -> np.ndarray:
        """Scratch buffer ``k`` (of two) with room for ``events`` records, made on first need.

        Two, as chunk ``c + 1`` is encoded while chunk ``c`` is written; the
        encodings of one batch never run at the same time, so this needs no
        lock. Records written without a copy need no scratch at all.
        """
        while len(self._scratch) <= k:
            self._scratch.append(np.empty(0, dtype=INDEX_EVENT_DTYPE))
        if len(self._scratch[k]) < events:
            self._scratch[k] = np.empty(events, dtype=INDEX_EVENT_DTYPE)
        return self._scratch[k]

    def _write_index(self, events: np.ndarray, detail_pos: np.ndarray, offset: int, footer_for: Any) -> int:
        """Check or encode, checksum and write ``events`` at ``offset``; return the new CRC.

        The last write also carries the footer ``footer_for(crc)`` describing
        the file with this batch, so that the file is complete after every
        batch and a failed batch can be cut off leaving room for the footer.
        Records are checked (timestamps) before they are written, chunk by
        chunk: a bad batch puts nothing past the previous batch on disk in
        the common case (a bad timestamp in a later chunk is rolled back).
        """
        n = len(events)
        crc = self._index_crc
        tid = self._thread_id
        detail_base = self._n_detail
        prev_ts = np.uint64(self._t_last)
        cuts = _chunk_bounds(n)
        nchunks = len(cuts) - 1
        fused = _crc.kernel_ok()
        wide = fused and _wide.usable()
        bounds = np.searchsorted(detail_pos, cuts) if len(detail_pos) else None

        def encode(c: int, crc_in: int) -> tuple[int, int, np.ndarray]:
            lo = int(cuts[c])
            hi = int(cuts[c + 1])
            src = events[lo:hi]
            prev = prev_ts if c == 0 else events[lo - 1]["timestamp_ns"]
            if bounds is None and wide:
                first = src[0]
                if first["thread_id"] == tid and first["detail_seq"] == NO_DETAIL:
                    # Perhaps the caller's records are already what the file
                    # holds: check them in place and write them without a copy.
                    status, crc_out = _wide.check_crc(src, tid, prev, crc_in)
                    if status == _wide.ENCODED:
                        return -1, int(crc_out), src
                    if status >= 0:
                        return lo + status, crc_in, src
                out = self._scratch_slot(c % 2, min(n, CHUNK_EVENTS))[: hi - lo]
                bad, crc_out = _wide.encode_crc(src, out, tid, prev, crc_in)
                return (lo + bad if bad >= 0 else -1), int(crc_out), out
            out = self._scratch_slot(c % 2, min(n, CHUNK_EVENTS))[: hi - lo]
            if bounds is not None:
                pos = detail_pos[bounds[c] : bounds[c + 1]] - lo
                base = detail_base + int(bounds[c])
            else:
                pos, base = _EMPTY_I64, 0
            if fused:  # encode and checksum in one pass
                bad, crc_out = encode_index_crc(src, out, tid, prev, pos, base, crc_in)
                return (lo + bad if bad >= 0 else -1), int(crc_out), out
            bad = encode_index(src, out, tid, prev, pos, base)
            if bad >= 0:
                return lo + bad, crc_in, out
            return -1, crc32(out.view(np.uint8), crc_in), out

        if nchunks == 1:
            bad, crc, out = encode(0, crc)
            if bad >= 0:
                raise self._order_error(events, bad)
            _write_all(self._index_fd, [out, footer_for(crc)], offset)
            return crc
        pool = _helper_pool()
        # the first (small) chunk is checked here, the others by the helper
        # thread while the previous one is written
        first: Any = encode(0, crc)
        future = None
        try:
            for c in range(nchunks):
                if future is not None:
                    first = future.result()
                    future = None
                bad, crc, out = first
                if bad >= 0:
                    raise self._order_error(events, bad)
                if c + 1 < nchunks:
                    future = pool.submit(encode, c + 1, crc)
                    _write_all(self._index_fd, [out], offset)
                else:
                    _write_all(self._index_fd, [out, footer_for(crc)], offset)
                offset += out.nbytes
        finally:
            if future is not None:  # a write failed while the next chunk was encoded
                try:
                    future.result()
                except BaseException:  # noqa: BLE001 - the write's own error is the one raised
                    pass
        return crc

    def _open_detail(self) -> None:
        try:
            fd = os.open(self._detail_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | _O_CLOEXEC, 0o644)
        except OSError as exc:
            raise WriteError(f"cannot create: {exc.strerror or exc}", self._detail_path, errno=exc.errno) from exc
        self._detail_fd = fd
        _write_all(fd, [self._detail_header(final=False), self._detail_footer()], 0)

    def _rollback(self, index_end: int, detail_end: int, created_detail: bool) -> None:
        """Cut the files back to the last complete batch and its footer (best effort).

        The footer goes back where it was, into space the file already had,
        so it fits even when the failure was a size limit.
        """
        try:
            _ftruncate(self._index_fd, index_end)
            _write_all(self._index_fd, [self._current_index_footer()], index_end)
        except OSError:
            pass
        if self._detail_fd is not None:
            if created_detail:
                os.close(self._detail_fd)
                self._detail_fd = None
                try:
                    os.unlink(self._detail_path)
                except OSError:
                    pass
            else:
                try:
                    _ftruncate(self._detail_fd, detail_end)
                    _write_all(self._detail_fd, [self._current_detail_footer()], detail_end)
                except OSError:
                    pass

    # --------------------------------------------------------------- finishing

    def finalize(self, fsync: bool | None = None) -> dict[str, Any]:
        """Write footers and final headers; return a summary dict (idempotent).

        Summary keys: thread_id, index_events, detail_events, index_bytes,
        detail_bytes, index_crc32, detail_crc32, time_start_ns, time_end_ns,
        has_detail, index_path, detail_path (None without detail file).
        """
        with self._lock:
            if self._summary is not None:
                return dict(self._summary)
            if self._closed:
                raise SessionStateError("finalize after close", self._index_path)
            do_sync = self._fsync if fsync is None else bool(fsync)
            events_end = INDEX_EVENTS_OFFSET + INDEX_EVENT_SIZE * self._n_index
            try:
                if self._detail_fd is not None:
                    self._finalize_detail(do_sync)
                _write_all(self._index_fd, [self._current_index_footer()], events_end)
                _ftruncate(self._index_fd, events_end + INDEX_FOOTER_SIZE)
                _write_all(self._index_fd, [self._index_header(final=True)], 0)
                if do_sync:
                    os.fsync(self._index_fd)
            except OSError as exc:
                raise WriteError(f"finalize failed: {exc.strerror or exc}", self._index_path, errno=exc.errno) from exc
            self._summary = {
                "thread_id": self._thread_id,
                "index_events": self._n_index,
                "detail_events": self._n_detail,
                "index_bytes": self._n_index * INDEX_EVENT_SIZE,
                "detail_bytes": self._detail_bytes,
                "index_crc32": self._index_crc,
                "detail_crc32": self._detail_crc,
                "time_start_ns": self._t_first,
                "time_end_ns": self._t_last,
                "has_detail": self._detail_fd is not None,
                "index_path": self._index_path,
                "detail_path": self._detail_path if self._detail_fd is not None else None,
            }
            return dict(self._summary)

    def _finalize_detail(self, do_sync: bool) -> None:
        fd = self._detail_fd
        assert fd is not None  # called only when the detail file exists
        end = DETAIL_HEADER_SIZE + self._detail_bytes
        _write_all(fd, [self._current_detail_footer()], end)
        _ftruncate(fd, end + DETAIL_FOOTER_SIZE)
        _write_all(fd, [self._detail_header(final=True)], 0)
        if do_sync:
            os.fsync(fd)

    def close(self) -> None:
        """Finalize (if not done) and close the files. Safe to call twice."""
        if self._closed:
            return
        try:
            if self._summary is None:
                self.finalize()
        finally:
            with self._lock:
                self._closed = True
                for fd in (self._index_fd, self._detail_fd):
                    if fd is not None:
                        try:
                            os.close(fd)
                        except OSError:
                            pass
                self._scratch = []

    def __enter__(self) -> ThreadWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("finalized" if self._summary else "open")
        return f"<ThreadWriter thread_{self._thread_id} {self._n_index} events, {self._n_detail} details, {state}>"
