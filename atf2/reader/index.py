"""IndexReader: random and sequential access to one ``index.atf``."""

from __future__ import annotations

import operator
import os
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ..errors import CorruptFileError
from ..kernels.crc import crc32
from ..kernels.decode import CHECK_DETAIL_LINK, CHECK_EVENT_KIND, CHECK_THREAD_ID, CHECK_TIME_ORDER, check_index
from ..kernels.gather import WORDS_PER_EVENT, gather_rows
from ..kernels.pyevent import build_index_event_reader
from ..layout import (
    ENDIAN_LITTLE,
    EVENT_KIND_NAMES,
    FLAG_HAS_DETAIL_FILE,
    FORMAT_VERSION,
    INDEX_EVENT_DTYPE,
    INDEX_EVENT_SIZE,
    INDEX_EVENTS_OFFSET,
    INDEX_FOOTER_DTYPE,
    INDEX_FOOTER_MAGIC,
    INDEX_FOOTER_SIZE,
    INDEX_HEADER_DTYPE,
    INDEX_HEADER_SIZE,
    INDEX_MAGIC,
    NO_DETAIL,
    field_offset,
)
from ._common import HeaderFooterMixin, MappedFile, struct_for


class IndexEvent(NamedTuple):
    """One index event: the six fields of the spec's 32-byte record."""

    timestamp_ns: int
    function_id: int
    thread_id: int
    event_kind: int
    call_depth: int
    detail_seq: int

    @property
    def kind_name(self) -> str:
        return EVENT_KIND_NAMES.get(self.event_kind, f"KIND_{self.event_kind}")

    @property
    def has_detail(self) -> bool:
        return self.detail_seq != NO_DETAIL


assert IndexEvent._fields == INDEX_EVENT_DTYPE.names


class VerifyResult(NamedTuple):
    """What ``verify()`` found (problems raise ``CorruptFileError`` instead).

    ``crc``: "ok", "not recorded" (footer checksum 0, as the native writer
    leaves it) or "no footer" (recovered file).
    """

    path: str
    crc: str
    recorded: int | None
    computed: int
    events: int


_EVENT_STRUCT = struct_for(INDEX_EVENT_DTYPE)
_unpack_event = _EVENT_STRUCT.unpack_from
_new_tuple = tuple.__new__
#: ``read(addr, count, i)`` -> IndexEvent, or IndexEvent itself for "not mine"
#: (see kernels/pyevent.py); None where the native reader is unavailable.
_read_native = build_index_event_reader(IndexEvent)

_HEADER_CHECKS = (
    ("magic", INDEX_MAGIC),
    ("endian", ENDIAN_LITTLE),
    ("version", FORMAT_VERSION),
    ("event_size", INDEX_EVENT_SIZE),
    ("events_offset", INDEX_EVENTS_OFFSET),
)


def check_header(header: Any, path: str, checks: tuple, dtype: np.dtype) -> None:
    """Raise CorruptFileError naming the first header field that is wrong."""
    for name, expected in checks:
        value = header[name]
        value = value.item() if isinstance(value, np.generic) else value
        if value != expected:
            raise CorruptFileError(f"header field {name} is {value!r}, expected {expected!r}", path, field_offset(dtype, name))


class IndexReader(HeaderFooterMixin):
    """One ``index.atf`` mapped read-only.

    ``len(reader)``, ``reader[i]`` -> ``IndexEvent``, ``reader[a:b]`` and
    ``reader.take(indices)`` -> structured arrays (copies), ``reader.events``
    -> a zero-copy view of the whole events section, iteration.

    ``reader[i]`` is a single native call (``atf2.kernels.pyevent``) that
    builds the ``IndexEvent`` straight from the mapped record; without a JIT
    it is ``struct`` unpacking, with the same results.

    A file whose footer is missing or damaged (recorder killed) is read up to
    its last complete record; ``recovered`` is then True and ``footer`` None.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self._file = MappedFile(path, INDEX_HEADER_SIZE, "index file")
        self.path = self._file.path
        try:
            self._open()
        except BaseException:
            self._file.close()
            raise

    def _open(self) -> None:
        f = self._file
        header = f.array(INDEX_HEADER_DTYPE, 0, 1)[0].copy()
        check_header(header, self.path, _HEADER_CHECKS, INDEX_HEADER_DTYPE)
        self._header = header
        size = f.size
        footer = None
        if size >= INDEX_HEADER_SIZE + INDEX_FOOTER_SIZE and (size - INDEX_HEADER_SIZE - INDEX_FOOTER_SIZE) % INDEX_EVENT_SIZE == 0:
            cand = f.array(INDEX_FOOTER_DTYPE, size - INDEX_FOOTER_SIZE, 1)[0].copy()
            count = (size - INDEX_HEADER_SIZE - INDEX_FOOTER_SIZE) // INDEX_EVENT_SIZE
            if (
                cand["magic"] == INDEX_FOOTER_MAGIC
                and int(cand["event_count"]) == count
                and int(cand["bytes_written"]) == count * INDEX_EVENT_SIZE
            ):
                footer = cand
        self._footer = footer
        if footer is not None:
            n = int(footer["event_count"])
        else:
            # Recovered: trust a finalized header's footer_offset if it fits,
            # else count the complete records in the file.
            fo = int(header["footer_offset"])
            if fo > INDEX_EVENTS_OFFSET and (fo - INDEX_EVENTS_OFFSET) % INDEX_EVENT_SIZE == 0 and fo <= size:
                n = (fo - INDEX_EVENTS_OFFSET) // INDEX_EVENT_SIZE
            else:
                n = (size - INDEX_EVENTS_OFFSET) // INDEX_EVENT_SIZE
        self._n = n
        self._events = f.array(INDEX_EVENT_DTYPE, INDEX_EVENTS_OFFSET, n)
        self._map = f.map
        # What the native reader may read: the events' address and count while
        # the map is open (``_events`` keeps it alive), count 0 once closed.
        self._native_addr = self._events.ctypes.data
        self._event_words = self._events.view(np.uint64).reshape(n, WORDS_PER_EVENT)  # for take()'s kernel
        self._native_count = n

    # ----------------------------------------------------------------- metadata

    @property
    def clock_type(self) -> int:
        return int(self._header["clock_type"])

    @property
    def has_detail(self) -> bool:
        """The header's has_detail_file flag (0 in a recovered file's placeholder header)."""
        return bool(int(self._header["flags"]) & FLAG_HAS_DETAIL_FILE)

    @property
    def events(self) -> npt.NDArray[np.void]:
        """Zero-copy read-only structured view of every event (valid while open)."""
        self._check_open()
        return self._events

    def time_range(self) -> tuple[int, int]:
        """(first, last) timestamp; (0, 0) for an empty file."""
        if self._footer is not None:
            return int(self._footer["time_start_ns"]), int(self._footer["time_end_ns"])
        if self._n == 0:
            return 0, 0
        return int(self._events[0]["timestamp_ns"]), int(self._events[self._n - 1]["timestamp_ns"])

    # ------------------------------------------------------------------- access

    def __len__(self) -> int:
        return self._n

    def _check_open(self) -> None:
        if self._file.map is None:
            raise ValueError(f"{self.path}: reader is closed")

    # Both reader[i] paths take exactly (self, i) and read module globals, not
    # default arguments: CPython then runs them inline (BINARY_SUBSCR_GETITEM
    # needs a two-argument __getitem__), ~90 ns less per call than through the
    # generic slot.

    def _getitem_native(self, i: Any) -> Any:
        # One native call reads the record and builds the IndexEvent
        # (kernels/pyevent.py); anything it does not handle (not an int, out
        # of range, a closed reader) takes the general path, which raises.
        event = _read_native(self._native_addr, self._native_count, i)
        if event is not IndexEvent:
            return event
        return self._getitem_slow(i)

    def _getitem_struct(self, i: Any) -> Any:
        # The pure-Python path, where the native one is unavailable: one
        # chained comparison, one unpack and the named-tuple wrap
        # (tuple.__new__ of a tuple subclass). Everything else falls through.
        try:
            if 0 <= i < self._n:
                return _new_tuple(IndexEvent, _unpack_event(self._map, INDEX_EVENTS_OFFSET + INDEX_EVENT_SIZE * i))
        except (TypeError, ValueError):  # slices, arrays, a closed reader
            pass
        return self._getitem_slow(i)

    #: ``reader[i]``: an IndexEvent; ``reader[a:b]``, ``reader[array]``: structured arrays
    __getitem__ = _getitem_native if _read_native is not None else _getitem_struct

    def _getitem_slow(self, i: Any) -> Any:
        if isinstance(i, slice):
            self._check_open()
            return self._events[i].copy()
        if isinstance(i, (np.ndarray, list, tuple)):
            return self.take(i)
        i = operator.index(i)
        n = self._n
        if i < 0:
            i += n
        if i < 0 or i >= n:
            raise IndexError(f"event {i} out of range for {n} events")
        self._check_open()
        return _new_tuple(IndexEvent, _EVENT_STRUCT.unpack_from(self._map, INDEX_EVENTS_OFFSET + INDEX_EVENT_SIZE * i))

    def take(self, indices: npt.ArrayLike) -> npt.NDArray[np.void]:
        """Events at ``indices`` (any integer array; negatives count from the end).

        A structured array of the indices' shape, gathered by a kernel that
        prefetches ahead (``atf2.kernels.gather``).
        """
        self._check_open()
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu":
            if idx.size == 0:
                idx = idx.astype(np.int64)
            else:
                raise TypeError(f"indices must be integers, not {idx.dtype}")
        if idx.dtype == np.uint64 and idx.size and int(idx.max()) > np.iinfo(np.int64).max:
            raise IndexError(f"index {int(idx.max())} is out of range for {self._n} events")
        positions = np.ascontiguousarray(idx.reshape(-1), dtype=np.int64)
        out = np.empty(positions.shape[0], dtype=INDEX_EVENT_DTYPE)
        bad = gather_rows(self._event_words, positions, out.view(np.uint64).reshape(-1, WORDS_PER_EVENT))
        if bad >= 0:
            raise IndexError(f"index {int(positions[bad])} (position {bad} of the indices) is out of range for {self._n} events")
        return out.reshape(idx.shape)

    def __iter__(self) -> Iterator[IndexEvent]:
        self._check_open()
        step = 1 << 16
        for lo in range(0, self._n, step):
            for row in self._events[lo : lo + step].tolist():
                yield _new_tuple(IndexEvent, row)

    # ------------------------------------------------------------------- checks

    def verify(self, detail_count: int = -1) -> VerifyResult:
        """Check the CRC (when recorded) and every event's thread id, order, kind.

        ``detail_count`` >= 0 also checks that every detail link points inside
        a detail file of that many events. Raises ``CorruptFileError``.
        """
        self._check_open()
        start = INDEX_EVENTS_OFFSET
        computed = crc32(memoryview(self._file.map)[start : start + self._n * INDEX_EVENT_SIZE])
        if self._footer is None:
            crc, recorded = "no footer", None
        else:
            recorded = int(self._footer["checksum"])
            if recorded == computed:
                crc = "ok"
            elif recorded == 0:
                crc = "not recorded"
            else:
                raise CorruptFileError(
                    f"CRC-32 mismatch: footer says {recorded:#010x}, events hash to {computed:#010x}",
                    self.path,
                    self._file.size - INDEX_FOOTER_SIZE + field_offset(INDEX_FOOTER_DTYPE, "checksum"),
                )
        err, pos = check_index(self._events, self.thread_id, detail_count)
        if err:
            off = INDEX_EVENTS_OFFSET + INDEX_EVENT_SIZE * pos
            e = self[pos]
            msg = {
                CHECK_THREAD_ID: f"event {pos} has thread_id {e.thread_id}, the header says {self.thread_id}",
                CHECK_TIME_ORDER: f"event {pos} goes back in time ({e.timestamp_ns} after {self[pos - 1].timestamp_ns if pos else 0})",
                CHECK_EVENT_KIND: f"event {pos} has unknown event_kind {e.event_kind}",
                CHECK_DETAIL_LINK: f"event {pos} links to detail event {e.detail_seq}, which does not exist ({detail_count} detail events)",
            }[err]
            raise CorruptFileError(msg, self.path, off)
        return VerifyResult(self.path, crc, recorded, computed, self._n)

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Unmap the file. Zero-copy views taken from ``events`` keep it alive."""
        self._native_count = 0  # first: the native reader must stop reading the map
        # None once closed, as MappedFile's: typed for the open state
        self._events = None  # type: ignore[assignment]
        self._event_words = None  # type: ignore[assignment]
        self._map = None  # type: ignore[assignment]
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.map is None

    def __enter__(self) -> IndexReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " recovered" if self.recovered else ""
        return f"<IndexReader {self.path} thread {self.thread_id}: {self._n} events{state}>"
