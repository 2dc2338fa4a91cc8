"""DetailReader: O(1) access to the length-prefixed events of one ``detail.atf``."""

from __future__ import annotations

import operator
import os
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from ..errors import CorruptFileError, DanglingLinkError
from ..kernels.crc import crc32
from ..kernels.decode import (
    CHECK_BOUNDS,
    CHECK_DETAIL_LINK,
    CHECK_THREAD_ID,
    CHECK_TIME_ORDER,
    DETAIL_PARTIAL_HEADER,
    DETAIL_PAST_END,
    DETAIL_SEQ_ORDER,
    DETAIL_SHORT_LENGTH,
    DETAIL_TOO_LARGE,
    check_detail,
    scan_detail,
)
from ..layout import (
    DETAIL_EVENT_HEADER_DTYPE,
    DETAIL_EVENT_HEADER_SIZE,
    DETAIL_EVENT_MAX_SIZE,
    DETAIL_EVENTS_OFFSET,
    DETAIL_FOOTER_DTYPE,
    DETAIL_FOOTER_MAGIC,
    DETAIL_FOOTER_SIZE,
    DETAIL_HEADER_DTYPE,
    DETAIL_HEADER_SIZE,
    DETAIL_MAGIC,
    ENDIAN_LITTLE,
    FORMAT_VERSION,
    field_offset,
)
from ._common import HeaderFooterMixin, MappedFile, struct_for
from .index import VerifyResult, check_header


class DetailEvent(NamedTuple):
    """One detail event: the 24-byte header's fields and the payload bytes."""

    total_length: int
    event_type: int
    flags: int
    index_seq: int
    thread_id: int
    timestamp: int
    payload: bytes

    # -- Python payload (issue 5: atf2.payload, every byte in atf2/PAYLOAD.md) --

    def decoded(self, symbols: Any = None) -> Any:
        """The decoded Python payload (``atf2.payload.DecodedPayload``), None if opaque (flags 0).

        ``symbols`` (a SymbolTable or {function_id: manifest symbol}) names the
        arguments; by default the session's, when read through a SessionReader.
        """
        if self.flags == 0:
            return None
        from ..payload import decode

        return decode(self.payload, self.flags, symbols if symbols is not None else getattr(self, "symbols", None))

    @property
    def args(self) -> list | None:
        """CALL: [(parameter name or None, value)] of the first arguments."""
        d = self.decoded()
        return None if d is None else d.args

    @property
    def return_value(self) -> Any:
        """RETURN: the returned value (None for other events and opaque payloads)."""
        d = self.decoded()
        return None if d is None else d.return_value

    @property
    def exception(self) -> tuple | None:
        """EXCEPTION: (type name, message)."""
        d = self.decoded()
        return None if d is None else d.exception

    @property
    def stack(self) -> list | None:
        """Function ids of the callers, innermost first."""
        d = self.decoded()
        return None if d is None else d.stack


class _DetailEventWithSymbols(DetailEvent):
    """A DetailEvent carrying its session's symbols (``.symbols``) for argument names (issue 5)."""

    symbols: Any


_DetailEventWithSymbols.__name__ = "DetailEvent"  # same repr as the plain event


assert DetailEvent._fields[:-1] == DETAIL_EVENT_HEADER_DTYPE.names

_HEADER_STRUCT = struct_for(DETAIL_EVENT_HEADER_DTYPE)
_HEADER_CHECKS = (
    ("magic", DETAIL_MAGIC),
    ("endian", ENDIAN_LITTLE),
    ("version", FORMAT_VERSION),
    ("events_offset", DETAIL_EVENTS_OFFSET),
)
_SCAN_ERRORS = {
    DETAIL_SHORT_LENGTH: f"detail event total_length is below the {DETAIL_EVENT_HEADER_SIZE}-byte header",
    DETAIL_PAST_END: "detail event total_length runs past the end of the events section",
    DETAIL_PARTIAL_HEADER: "a detail event header is cut by the end of the events section",
    DETAIL_SEQ_ORDER: "detail event index_seq does not increase",
    DETAIL_TOO_LARGE: f"detail event total_length is above the {DETAIL_EVENT_MAX_SIZE}-byte limit",
}


class DetailReader(HeaderFooterMixin):
    """One ``detail.atf`` mapped read-only.

    The position -> byte offset table is built at open by one kernel pass,
    which also checks every length against the file. ``get(detail_seq)`` is
    O(1); ``get_by_index_seq(i)`` is a binary search over the backward links.
    A file whose footer is missing (recorder killed) is read up to its last
    complete event and ``recovered`` is True.
    """

    #: symbols (SymbolTable or {function_id: symbol}) that events read here use for argument names (issue 5)
    symbols: Any = None

    def __init__(self, path: str | os.PathLike[str]):
        self._file = MappedFile(path, DETAIL_HEADER_SIZE, "detail file")
        self.path = self._file.path
        try:
            self._open()
        except BaseException:
            self._file.close()
            raise

    def _open(self) -> None:
        f = self._file
        header = f.array(DETAIL_HEADER_DTYPE, 0, 1)[0].copy()
        check_header(header, self.path, _HEADER_CHECKS, DETAIL_HEADER_DTYPE)
        self._header = header
        size = f.size
        footer = None
        if size >= DETAIL_HEADER_SIZE + DETAIL_FOOTER_SIZE:
            cand = f.array(DETAIL_FOOTER_DTYPE, size - DETAIL_FOOTER_SIZE, 1)[0].copy()
            if cand["magic"] == DETAIL_FOOTER_MAGIC and int(cand["bytes_length"]) == size - DETAIL_HEADER_SIZE - DETAIL_FOOTER_SIZE:
                footer = cand
        self._footer = footer
        start = DETAIL_EVENTS_OFFSET
        if footer is not None:
            end, strict, expected = size - DETAIL_FOOTER_SIZE, True, int(footer["event_count"])
        else:
            bl = int(header["bytes_length"])  # a finalized header whose footer was damaged
            if 0 < bl <= size - DETAIL_HEADER_SIZE:
                end, expected = DETAIL_HEADER_SIZE + bl, int(header["event_count"])
            else:
                end, expected = size, 0
            strict = False
        capacity = min(expected, (end - start) // DETAIL_EVENT_HEADER_SIZE + 1)
        offsets, seqs, count, err, where, stop = scan_detail(f.bytes, start, end, strict, capacity)
        if err:
            raise CorruptFileError(f"{_SCAN_ERRORS[err]} (detail event {count})", self.path, int(where))
        if footer is not None and count != expected:
            raise CorruptFileError(
                f"the footer says {expected} detail events, the events section holds {count}",
                self.path,
                size - DETAIL_FOOTER_SIZE + field_offset(DETAIL_FOOTER_DTYPE, "event_count"),
            )
        self._offsets = offsets
        self._seqs = seqs
        self._n = int(count)
        self._end = int(stop)
        self._unpack = _HEADER_STRUCT.unpack_from

    # ----------------------------------------------------------------- metadata

    @property
    def offsets(self) -> npt.NDArray[np.int64]:
        """int64 byte offset of each detail event in the file (read-only)."""
        view = self._offsets.view()
        view.setflags(write=False)
        return view

    @property
    def index_seqs(self) -> npt.NDArray[np.uint32]:
        """uint32 backward link (index_seq) of each detail event (read-only)."""
        view = self._seqs.view()
        view.setflags(write=False)
        return view

    @property
    def events_bytes(self) -> int:
        """Bytes in the events section that were read."""
        return self._end - DETAIL_EVENTS_OFFSET

    def time_range(self) -> tuple[int, int]:
        if self._footer is not None:
            return int(self._footer["time_start_ns"]), int(self._footer["time_end_ns"])
        if self._n == 0:
            return 0, 0
        return self[0].timestamp, self[self._n - 1].timestamp

    # ------------------------------------------------------------------- access

    def __len__(self) -> int:
        return self._n

    def _check_open(self) -> None:
        if self._file.map is None:
            raise ValueError(f"{self.path}: reader is closed")

    def get(self, detail_seq: int) -> DetailEvent:
        """The detail event at position ``detail_seq`` (O(1)).

        Raises ``DanglingLinkError`` (an ``AtfV2Error`` and an ``IndexError``)
        when there is no such position.
        """
        i = operator.index(detail_seq)
        if i < 0 or i >= self._n:
            raise DanglingLinkError(f"detail event {i} does not exist ({self._n} detail events)", self.path)
        self._check_open()
        off = int(self._offsets[i])
        fields = self._unpack(self._file.map, off)
        event = DetailEvent._make((*fields, self._file.map[off + DETAIL_EVENT_HEADER_SIZE : off + fields[0]]))
        if self.symbols is not None:  # issue 5: names for event.args
            event = _DetailEventWithSymbols(*event)
            event.symbols = self.symbols
        return event

    __getitem__ = get

    def payload_view(self, detail_seq: int) -> memoryview:
        """Zero-copy view of the payload of event ``detail_seq`` (valid while open)."""
        i = operator.index(detail_seq)
        if i < 0 or i >= self._n:
            raise DanglingLinkError(f"detail event {i} does not exist ({self._n} detail events)", self.path)
        self._check_open()
        off = int(self._offsets[i])
        total = self._unpack(self._file.map, off)[0]
        return memoryview(self._file.map)[off + DETAIL_EVENT_HEADER_SIZE : off + total]

    def position_of_index_seq(self, index_seq: int) -> int:
        """Position of the detail event whose index_seq is ``index_seq``, or -1 (O(log n))."""
        i = operator.index(index_seq)
        if i < 0 or i > 0xFFFFFFFF:
            return -1
        pos = int(np.searchsorted(self._seqs, np.uint32(i)))
        if pos < self._n and int(self._seqs[pos]) == i:
            return pos
        return -1

    def get_by_index_seq(self, index_seq: int) -> DetailEvent | None:
        """The detail event paired with index event ``index_seq``, or None (O(log n))."""
        pos = self.position_of_index_seq(index_seq)
        return None if pos < 0 else self.get(pos)

    def __iter__(self) -> Iterator[DetailEvent]:
        for i in range(self._n):
            yield self.get(i)

    # ------------------------------------------------------------------- checks

    def verify(self, index_count: int = -1) -> VerifyResult:
        """Check the CRC (when recorded) and every event's thread id, time order
        and (with ``index_count`` >= 0) backward link. Raises ``CorruptFileError``."""
        self._check_open()
        computed = crc32(memoryview(self._file.map)[DETAIL_EVENTS_OFFSET : self._end])
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
                    self._file.size - DETAIL_FOOTER_SIZE + field_offset(DETAIL_FOOTER_DTYPE, "checksum"),
                )
        err, pos = check_detail(self._file.bytes, self._offsets, self.thread_id, index_count)
        if err:
            # Only the message that applies is built: an event outside the
            # file cannot be read to describe it.
            if err == CHECK_BOUNDS:
                msg = f"detail event {pos} lies outside the file"
            elif err == CHECK_TIME_ORDER:
                msg = f"detail event {pos} goes back in time"
            elif err == CHECK_THREAD_ID:
                msg = f"detail event {pos} has thread_id {self.get(pos).thread_id}, the header says {self.thread_id}"
            else:
                assert err == CHECK_DETAIL_LINK, err
                msg = (
                    f"detail event {pos} links to index event {self.get(pos).index_seq}, "
                    f"which does not exist ({index_count} index events)"
                )
            raise CorruptFileError(msg, self.path, int(self._offsets[pos]))
        return VerifyResult(self.path, crc, recorded, computed, self._n)

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.map is None

    def __enter__(self) -> DetailReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " recovered" if self.recovered else ""
        return f"<DetailReader {self.path} thread {self.thread_id}: {self._n} events{state}>"
