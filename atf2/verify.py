"""``verify_session``: every check a session can fail, each problem with file and offset.

Verification reads the files itself (raw bytes through the layout dtypes)
instead of going through the readers, because it must describe damage the
readers refuse to open. Checked, per thread: header fields, footer presence
and agreement with the header and the file size, CRC-32 of both events
sections (a zero checksum is "not recorded", noted, not a problem), per-event
thread ids, kinds and time order, both directions of every index <-> detail
link, detail framing; and the manifest against what is on disk (status,
threads, counts, time ranges, has_detail).

The probing helpers here (``probe_index``, ``probe_detail``) are shared with
``atf2.recover``, which repairs what they find.
"""

from __future__ import annotations

import mmap
import os
import re
import zlib
from typing import NamedTuple

import numpy as np

from .errors import AtfV2Error
from .kernels import verify as _kv
from .kernels.decode import DETAIL_OK, scan_detail
from .layout import (
    DETAIL_EVENT_HEADER_DTYPE,
    DETAIL_EVENTS_OFFSET,
    DETAIL_FILE_NAME,
    DETAIL_FOOTER_DTYPE,
    DETAIL_FOOTER_MAGIC,
    DETAIL_FOOTER_SIZE,
    DETAIL_HEADER_DTYPE,
    DETAIL_HEADER_SIZE,
    DETAIL_MAGIC,
    ENDIAN_LITTLE,
    FLAG_HAS_DETAIL_FILE,
    FORMAT_VERSION,
    INDEX_EVENT_DTYPE,
    INDEX_EVENT_SIZE,
    INDEX_EVENTS_OFFSET,
    INDEX_FILE_NAME,
    INDEX_FOOTER_DTYPE,
    INDEX_FOOTER_MAGIC,
    INDEX_FOOTER_SIZE,
    INDEX_HEADER_DTYPE,
    INDEX_HEADER_SIZE,
    INDEX_MAGIC,
    THREAD_DIR_PREFIX,
    field_offset,
)
from .manifest import STATUS_RECORDING, manifest_path, read_manifest

__all__ = ["DetailProbe", "IndexProbe", "Problem", "probe_detail", "probe_index", "verify_session"]

_THREAD_DIR = re.compile(re.escape(THREAD_DIR_PREFIX) + r"(0|[1-9][0-9]{0,9})")
_CRC_BLOCK = 1 << 24


class Problem(NamedTuple):
    """One finding: ``path`` and ``offset`` (None when the whole file is meant)."""

    path: str
    offset: int | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.offset is None else f"{self.path} at byte {self.offset}"
        return f"{where}: {self.message}"


def _map(path: str) -> np.ndarray:
    """The file's bytes, read-only (memory-mapped when non-empty)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return np.zeros(0, np.uint8)
        return np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ), np.uint8)


def crc32(buf: np.ndarray) -> int:
    crc = 0
    for start in range(0, len(buf), _CRC_BLOCK):
        crc = zlib.crc32(buf[start : start + _CRC_BLOCK].data, crc)
    return crc


class IndexProbe(NamedTuple):
    path: str
    buf: np.ndarray  #: the whole file
    header: np.void | None  #: None when the file is shorter than a header
    footer: np.void | None  #: None when no footer was found
    footer_offset: int | None
    #: events on disk (the footer's count, or what the size holds)
    count: int  # type: ignore[assignment]  # shadows tuple.count, on purpose
    trailing: int  #: bytes after the last complete event (no footer) or after the footer

    @property
    def events(self) -> np.ndarray:
        end = INDEX_EVENTS_OFFSET + INDEX_EVENT_SIZE * self.count
        return self.buf[INDEX_EVENTS_OFFSET:end].view(INDEX_EVENT_DTYPE)

    @property
    def events_bytes(self) -> np.ndarray:
        return self.buf[INDEX_EVENTS_OFFSET : INDEX_EVENTS_OFFSET + INDEX_EVENT_SIZE * self.count]


def probe_index(path: str) -> IndexProbe:
    """Find header, footer and events of an index file, damaged or not."""
    buf = _map(path)
    size = len(buf)
    if size < INDEX_HEADER_SIZE:
        return IndexProbe(path, buf, None, None, None, 0, size)
    header = buf[:INDEX_HEADER_SIZE].view(INDEX_HEADER_DTYPE)[0]
    candidates = []
    declared = int(header["footer_offset"])
    if declared >= INDEX_EVENTS_OFFSET and (declared - INDEX_EVENTS_OFFSET) % INDEX_EVENT_SIZE == 0:
        candidates.append(declared)
    if size >= INDEX_HEADER_SIZE + INDEX_FOOTER_SIZE and (size - INDEX_HEADER_SIZE - INDEX_FOOTER_SIZE) % INDEX_EVENT_SIZE == 0:
        candidates.append(size - INDEX_FOOTER_SIZE)
    for at in candidates:
        if at + INDEX_FOOTER_SIZE <= size:
            footer = buf[at : at + INDEX_FOOTER_SIZE].view(INDEX_FOOTER_DTYPE)[0]
            if bytes(footer["magic"]) == INDEX_FOOTER_MAGIC:
                count = (at - INDEX_EVENTS_OFFSET) // INDEX_EVENT_SIZE
                return IndexProbe(path, buf, header, footer, at, count, size - at - INDEX_FOOTER_SIZE)
    count = (size - INDEX_EVENTS_OFFSET) // INDEX_EVENT_SIZE
    # The writer appends each batch and a new footer in one write over the old
    # footer: a write cut short can leave the start of a footer where the last
    # "events" seem to be. A record starting with the footer magic ends the events.
    for k in range(max(count - 3, 0), count):
        at = INDEX_EVENTS_OFFSET + INDEX_EVENT_SIZE * k
        if bytes(buf[at : at + len(INDEX_FOOTER_MAGIC)]) == INDEX_FOOTER_MAGIC:
            count = k
            break
    return IndexProbe(path, buf, header, None, None, count, size - INDEX_EVENTS_OFFSET - INDEX_EVENT_SIZE * count)


class DetailProbe(NamedTuple):
    path: str
    buf: np.ndarray
    header: np.void | None
    footer: np.void | None
    footer_offset: int | None
    offsets: np.ndarray  #: byte offset of each complete detail event
    events_end: int  #: end of the last complete event
    error: int  #: kernels.decode DETAIL_* code of a framing error, or DETAIL_OK
    error_offset: int

    @property
    def count(self) -> int:  # type: ignore[override]  # shadows tuple.count, on purpose
        return len(self.offsets)

    def headers(self) -> np.ndarray:
        """DETAIL_EVENT_HEADER_DTYPE records of the complete events."""
        idx = self.offsets[:, None] + np.arange(DETAIL_EVENT_HEADER_DTYPE.itemsize)
        return self.buf[idx].reshape(-1).view(DETAIL_EVENT_HEADER_DTYPE)


def probe_detail(path: str) -> DetailProbe:
    """Find header, footer and the complete events of a detail file."""
    buf = _map(path)
    size = len(buf)
    empty = np.zeros(0, np.int64)
    if size < DETAIL_HEADER_SIZE:
        return DetailProbe(path, buf, None, None, None, empty, size, DETAIL_OK, 0)
    header = buf[:DETAIL_HEADER_SIZE].view(DETAIL_HEADER_DTYPE)[0]
    footer = footer_offset = None
    end = size
    if size >= DETAIL_HEADER_SIZE + DETAIL_FOOTER_SIZE:
        candidate = buf[size - DETAIL_FOOTER_SIZE :].view(DETAIL_FOOTER_DTYPE)[0]
        if bytes(candidate["magic"]) == DETAIL_FOOTER_MAGIC:
            footer, footer_offset, end = candidate, size - DETAIL_FOOTER_SIZE, size - DETAIL_FOOTER_SIZE
    # a file with a footer is walked strictly; without one the walk stops at
    # the last complete event (the rest is a write cut short by a kill)
    offsets, _seqs, _n, error, error_offset, stop = scan_detail(buf, DETAIL_EVENTS_OFFSET, end, footer is not None, 1024)
    return DetailProbe(path, buf, header, footer, footer_offset, offsets.copy(), int(stop), int(error), int(error_offset))


# --------------------------------------------------------------------- checks


class _Report:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.notes: list[Problem] = []

    def add(self, path: str, offset: int | None, message: str) -> None:
        self.problems.append(Problem(path, offset, message))

    def note(self, path: str, offset: int | None, message: str) -> None:
        self.notes.append(Problem(path, offset, message))


def _field_offset(dtype: np.dtype, name: str, base: int = 0) -> int:
    return base + field_offset(dtype, name)


def _check_header_common(rep: _Report, path: str, header: np.void, dtype: np.dtype, magic: bytes, thread_id: int) -> bool:
    if bytes(header["magic"]) != magic:
        rep.add(path, 0, f"bad magic {bytes(header['magic'])!r} (expected {magic!r})")
        return False
    if int(header["endian"]) != ENDIAN_LITTLE:
        rep.add(path, _field_offset(dtype, "endian"), f"endian byte is {int(header['endian'])}, not {ENDIAN_LITTLE}")
    if int(header["version"]) != FORMAT_VERSION:
        rep.add(path, _field_offset(dtype, "version"), f"version {int(header['version'])}, not {FORMAT_VERSION}")
    if int(header["thread_id"]) != thread_id:
        rep.add(path, _field_offset(dtype, "thread_id"), f"header thread_id {int(header['thread_id'])} in the directory of thread {thread_id}")
    return True


def _check_index(rep: _Report, probe: IndexProbe, thread_id: int, clock_type: int | None, detail: DetailProbe | None) -> None:
    path = probe.path
    if probe.header is None:
        rep.add(path, 0, f"file of {len(probe.buf)} bytes is shorter than the {INDEX_HEADER_SIZE}-byte header")
        return
    h = probe.header
    if not _check_header_common(rep, path, h, INDEX_HEADER_DTYPE, INDEX_MAGIC, thread_id):
        return
    if int(h["event_size"]) != INDEX_EVENT_SIZE:
        rep.add(path, _field_offset(INDEX_HEADER_DTYPE, "event_size"), f"event_size {int(h['event_size'])}, not {INDEX_EVENT_SIZE}")
        return
    if int(h["events_offset"]) != INDEX_EVENTS_OFFSET:
        rep.add(path, _field_offset(INDEX_HEADER_DTYPE, "events_offset"), f"events_offset {int(h['events_offset'])}, not {INDEX_EVENTS_OFFSET}")
    if clock_type is not None and int(h["clock_type"]) != clock_type:
        rep.add(path, _field_offset(INDEX_HEADER_DTYPE, "clock_type"), f"clock_type {int(h['clock_type'])} but the manifest says {clock_type}")
    n = probe.count
    events = probe.events
    if probe.footer is None:
        rep.add(path, None, f"no footer (recorder killed before finalize?): {n} complete events by the file size; run `atf2 recover`")
        if probe.trailing:
            rep.add(path, INDEX_EVENTS_OFFSET + INDEX_EVENT_SIZE * n, f"{probe.trailing} trailing bytes of a partial event")
    else:
        f, at = probe.footer, probe.footer_offset
        assert at is not None  # a footer was found, so it has an offset
        if int(f["event_count"]) != n:
            rep.add(path, _field_offset(INDEX_FOOTER_DTYPE, "event_count", at), f"footer event_count {int(f['event_count'])} but the footer sits after {n} events")
        if int(f["bytes_written"]) != INDEX_EVENT_SIZE * n:
            rep.add(path, _field_offset(INDEX_FOOTER_DTYPE, "bytes_written", at), f"footer bytes_written {int(f['bytes_written'])}, expected {INDEX_EVENT_SIZE * n}")
        if probe.trailing:
            rep.add(path, at + INDEX_FOOTER_SIZE, f"{probe.trailing} bytes after the footer")
        if int(h["event_count"]) != n % (1 << 32):
            rep.add(path, _field_offset(INDEX_HEADER_DTYPE, "event_count"), f"header event_count {int(h['event_count'])}, footer says {n}")
        if int(h["footer_offset"]) != at:
            rep.add(path, _field_offset(INDEX_HEADER_DTYPE, "footer_offset"), f"header footer_offset {int(h['footer_offset'])}, footer is at {at}")
        if n:
            first, last = int(events[0]["timestamp_ns"]), int(events[-1]["timestamp_ns"])
            for name, want in (("time_start_ns", first), ("time_end_ns", last)):
                if int(f[name]) != want:
                    rep.add(path, _field_offset(INDEX_FOOTER_DTYPE, name, at), f"footer {name} {int(f[name])}, events say {want}")
                if int(h[name]) != want:
                    rep.add(path, _field_offset(INDEX_HEADER_DTYPE, name), f"header {name} {int(h[name])}, events say {want}")
        checksum = int(f["checksum"])
        if checksum == 0 and n == 0:
            pass  # the CRC-32 of no bytes is 0: nothing to tell
        elif checksum == 0:
            rep.note(path, _field_offset(INDEX_FOOTER_DTYPE, "checksum", at), "CRC-32 not recorded (checksum 0)")
        else:
            actual = crc32(probe.events_bytes)
            if actual != checksum:
                rep.add(path, _field_offset(INDEX_FOOTER_DTYPE, "checksum", at), f"CRC-32 mismatch: footer {checksum:#010x}, events {actual:#010x}")
    has_flag = bool(int(h["flags"]) & FLAG_HAS_DETAIL_FILE)
    if probe.footer is not None and has_flag != (detail is not None):
        rep.add(path, _field_offset(INDEX_HEADER_DTYPE, "flags"), f"has_detail_file flag is {int(has_flag)} but detail.atf {'exists' if detail else 'is absent'}")
    dbuf = detail.buf if detail is not None else np.zeros(0, np.uint8)
    doffs = detail.offsets if detail is not None else np.zeros(0, np.int64)
    table = _kv.check_index_events(events, np.uint32(thread_id), dbuf, doffs)
    messages = {
        _kv.I_TIME_ORDER: "timestamp smaller than the previous event's",
        _kv.I_THREAD_ID: f"event thread_id is not {thread_id}",
        _kv.I_EVENT_KIND: "event_kind is not CALL/RETURN/EXCEPTION",
        _kv.I_LINK_RANGE: f"detail_seq points past the {len(doffs)} detail events",
        _kv.I_LINK_BACK: "the detail event at detail_seq does not link back to this event",
        _kv.I_LINK_TIME: "the linked detail event has a different timestamp",
    }
    for row, message in messages.items():
        count, first = int(table[row, 0]), int(table[row, 1])
        if count:
            more = f" ({count} events; first shown)" if count > 1 else ""
            rep.add(path, INDEX_EVENTS_OFFSET + INDEX_EVENT_SIZE * first, f"event {first}: {message}{more}")


def _check_detail(rep: _Report, probe: DetailProbe, thread_id: int, index: IndexProbe | None) -> None:
    path = probe.path
    if probe.header is None:
        rep.add(path, 0, f"file of {len(probe.buf)} bytes is shorter than the {DETAIL_HEADER_SIZE}-byte header")
        return
    h = probe.header
    if not _check_header_common(rep, path, h, DETAIL_HEADER_DTYPE, DETAIL_MAGIC, thread_id):
        return
    if int(h["events_offset"]) != DETAIL_EVENTS_OFFSET:
        rep.add(path, _field_offset(DETAIL_HEADER_DTYPE, "events_offset"), f"events_offset {int(h['events_offset'])}, not {DETAIL_EVENTS_OFFSET}")
    if probe.error != DETAIL_OK:
        rep.add(path, probe.error_offset, f"detail event framing broken (code {probe.error}): total_length, index_seq order or size is wrong")
    n = probe.count
    length = probe.events_end - DETAIL_EVENTS_OFFSET
    if probe.footer is None:
        rep.add(path, None, f"no footer (recorder killed before finalize?): {n} complete detail events; run `atf2 recover`")
        if probe.events_end < len(probe.buf):
            rep.add(path, probe.events_end, f"{len(probe.buf) - probe.events_end} trailing bytes of a partial detail event")
    else:
        f, at = probe.footer, probe.footer_offset
        assert at is not None  # a footer was found, so it has an offset
        for name, want in (("event_count", n), ("bytes_length", length)):
            if int(f[name]) != want:
                rep.add(path, _field_offset(DETAIL_FOOTER_DTYPE, name, at), f"footer {name} {int(f[name])}, the events say {want}")
            if int(h[name]) != want:
                rep.add(path, _field_offset(DETAIL_HEADER_DTYPE, name), f"header {name} {int(h[name])}, the events say {want}")
        hdrs = probe.headers()
        if n:
            for name, want in (("time_start_ns", int(hdrs[0]["timestamp"])), ("time_end_ns", int(hdrs[-1]["timestamp"]))):
                if int(f[name]) != want:
                    rep.add(path, _field_offset(DETAIL_FOOTER_DTYPE, name, at), f"footer {name} {int(f[name])}, events say {want}")
            for name, want in (("index_seq_start", int(hdrs[0]["index_seq"])), ("index_seq_end", int(hdrs[-1]["index_seq"]))):
                if int(h[name]) != want:
                    rep.add(path, _field_offset(DETAIL_HEADER_DTYPE, name), f"header {name} {int(h[name])}, events say {want}")
        checksum = int(f["checksum"])
        if checksum == 0:
            rep.note(path, _field_offset(DETAIL_FOOTER_DTYPE, "checksum", at), "CRC-32 not recorded (checksum 0)")
        else:
            actual = crc32(probe.buf[DETAIL_EVENTS_OFFSET : probe.events_end])
            if actual != checksum:
                rep.add(path, _field_offset(DETAIL_FOOTER_DTYPE, "checksum", at), f"CRC-32 mismatch: footer {checksum:#010x}, events {actual:#010x}")
    events = index.events if index is not None and index.header is not None else np.zeros(0, INDEX_EVENT_DTYPE)
    table = _kv.check_detail_events(probe.buf, probe.offsets, np.uint32(thread_id), events)
    messages = {
        _kv.D_BOUNDS: "offset outside the file",
        _kv.D_THREAD_ID: f"thread_id is not {thread_id}",
        _kv.D_INDEX_RANGE: f"index_seq points past the {len(events)} index events",
        _kv.D_LINK_BACK: "the index event at index_seq does not link back to this detail event",
        _kv.D_EVENT_TYPE: "event_type is not FUNCTION_CALL/FUNCTION_RETURN",
    }
    for row, message in messages.items():
        count, first = int(table[row, 0]), int(table[row, 1])
        if count:
            more = f" ({count} events; first shown)" if count > 1 else ""
            rep.add(path, int(probe.offsets[first]), f"detail event {first}: {message}{more}")


def _thread_dirs_on_disk(session_dir: str) -> set[int]:
    found = set()
    for name in os.listdir(session_dir):
        m = _THREAD_DIR.fullmatch(name)
        if m and os.path.isdir(os.path.join(session_dir, name)):
            found.add(int(m.group(1)))
    return found


def verify_session(session_dir: str | os.PathLike[str], notes: list[Problem] | None = None) -> list[Problem]:
    """Check a session directory; return every problem found (empty: all good).

    ``notes``, if given, receives findings that are not problems (a checksum
    the writer did not record). Raises ``AtfV2Error`` only when
    ``session_dir`` is not a directory.
    """
    session_dir = os.fspath(session_dir)
    if not os.path.isdir(session_dir):
        raise AtfV2Error("not a session directory", session_dir)
    rep = _Report()
    mpath = manifest_path(session_dir)
    try:
        manifest = read_manifest(session_dir)
    except AtfV2Error as exc:
        rep.add(mpath, None, exc.reason)
        manifest = None
    status = manifest.get("status") if manifest is not None else None
    on_disk = _thread_dirs_on_disk(session_dir)
    entries = {}
    if manifest is not None:
        if status == STATUS_RECORDING:
            rep.add(mpath, None, 'status is "recording": the recorder is running or was killed; run `atf2 recover`')
        entries = {int(t["id"]): t for t in manifest["threads"]}
        for tid in sorted(on_disk - set(entries)):
            rep.add(os.path.join(session_dir, f"{THREAD_DIR_PREFIX}{tid}"), None, "thread directory not listed in the manifest")
    clock_type = manifest.get("clock_type") if manifest else None
    starts, ends = [], []
    for tid in sorted(set(entries) | on_disk):
        tdir = os.path.join(session_dir, f"{THREAD_DIR_PREFIX}{tid}")
        ipath = os.path.join(tdir, INDEX_FILE_NAME)
        dpath = os.path.join(tdir, DETAIL_FILE_NAME)
        if not os.path.isfile(ipath):
            rep.add(ipath, None, "missing")
            continue
        index = probe_index(ipath)
        detail = probe_detail(dpath) if os.path.isfile(dpath) else None
        _check_index(rep, index, tid, clock_type, detail)
        if detail is not None:
            _check_detail(rep, detail, tid, index)
        if index.header is not None and index.count:
            starts.append(int(index.events[0]["timestamp_ns"]))
            ends.append(int(index.events[-1]["timestamp_ns"]))
        entry = entries.get(tid)
        if entry is None:
            continue
        where = f"manifest thread {tid}"
        if "has_detail" in entry and bool(entry["has_detail"]) != (detail is not None):
            rep.add(mpath, None, f"{where}: has_detail is {entry['has_detail']} but detail.atf {'exists' if detail else 'is absent'}")
        actual = {"index_events": index.count, "detail_events": detail.count if detail is not None else 0}
        if index.count and index.header is not None:
            actual["time_start_ns"] = int(index.events[0]["timestamp_ns"])
            actual["time_end_ns"] = int(index.events[-1]["timestamp_ns"])
        for key, want in actual.items():
            if key in entry and entry[key] != want and status != STATUS_RECORDING:
                rep.add(mpath, None, f"{where}: {key} is {entry[key]}, the files hold {want}")
    if manifest is not None and starts and status != STATUS_RECORDING:
        t0, t1 = manifest.get("time_start_ns"), manifest.get("time_end_ns")
        if t0 and t0 > min(starts):
            rep.add(mpath, None, f"time_start_ns {t0} is after the first event ({min(starts)})")
        if t1 and t1 < max(ends):
            rep.add(mpath, None, f"time_end_ns {t1} is before the last event ({max(ends)})")
    if notes is not None:
        notes.extend(rep.notes)
    return rep.problems
