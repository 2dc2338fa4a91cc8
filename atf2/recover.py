"""``recover_session``: make a session left by a killed recorder whole again.

What a kill leaves: index files with placeholder headers and no footers, maybe
a partial last event; detail files likewise, maybe with detail events whose
index events never reached disk (the writer writes details first); a manifest
still saying ``"recording"``. Recovery, per thread:

* the complete events stay where they are; bytes after the last complete
  event (and detail events whose index event is missing) are moved to a
  ``<file>.partial`` file beside it, never deleted;
* index events whose ``detail_seq`` points at a detail event that is not on
  disk get ``NO_DETAIL`` (their old values are listed in ``recovered.json``);
* footers are written (CRC-32 of the events on disk; a footer already there
  keeps its checksum, so recovery never hides corruption) and headers
  rewritten with the real counts, time ranges and has_detail flag.

Then the manifest is rewritten atomically with ``"status": "recovered"`` and
the real counts. Files whose headers are not ATF v2 at all are corruption,
not a crash: recovery refuses them (``CorruptFileError``) before changing
anything. Running recovery again changes nothing.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .errors import CorruptFileError, ManifestError
from .kernels import verify as _kv
from .layout import (
    CLOCK_BOOTTIME,
    DETAIL_EVENTS_OFFSET,
    DETAIL_FILE_NAME,
    DETAIL_FOOTER_DTYPE,
    DETAIL_FOOTER_MAGIC,
    DETAIL_HEADER_DTYPE,
    DETAIL_MAGIC,
    ENDIAN_LITTLE,
    FLAG_HAS_DETAIL_FILE,
    FORMAT_VERSION,
    INDEX_EVENT_SIZE,
    INDEX_EVENTS_OFFSET,
    INDEX_FILE_NAME,
    INDEX_FOOTER_DTYPE,
    INDEX_FOOTER_MAGIC,
    INDEX_HEADER_DTYPE,
    INDEX_MAGIC,
    MANIFEST_FORMAT_VERSION,
    NO_DETAIL,
    THREAD_DIR_PREFIX,
    host_arch,
    host_os,
)
from .manifest import STATUS_COMPLETE, STATUS_RECORDING, STATUS_RECOVERED, manifest_path, read_manifest, write_manifest
from .manifest_reserve import release_reserve
from .verify import DetailProbe, IndexProbe, _thread_dirs_on_disk, crc32, probe_detail, probe_index

__all__ = ["RECOVERY_LOG_NAME", "recover_session"]

#: per-thread record of what recovery moved aside or changed
RECOVERY_LOG_NAME = "recovered.json"
PARTIAL_SUFFIX = ".partial"


def _aside_path(path: str) -> str:
    candidate = path + PARTIAL_SUFFIX
    k = 1
    while os.path.exists(candidate):
        candidate = f"{path}{PARTIAL_SUFFIX}.{k}"
        k += 1
    return candidate


def _write_new(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _move_tail_aside(path: str, buf: np.ndarray, keep: int, log: list) -> None:
    """Copy ``buf[keep:]`` to a new aside file (synced) before cutting ``path`` at ``keep``."""
    if keep >= len(buf):
        return
    aside = _aside_path(path)
    _write_new(aside, bytes(buf[keep:]))
    log.append({"file": os.path.basename(path), "offset": keep, "length": len(buf) - keep, "moved_to": os.path.basename(aside)})


def _patch(path: str, writes: list[tuple[int, bytes]], size: int) -> None:
    fd = os.open(path, os.O_RDWR)
    try:
        for offset, data in writes:
            view = memoryview(data)
            while view:
                written = os.pwrite(fd, view, offset)
                view = view[written:]
                offset += written
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_recoverable(probe: IndexProbe | DetailProbe, magic: bytes, thread_id: int) -> None:
    h = probe.header
    if h is None:
        return
    if bytes(h["magic"]) != magic:
        raise CorruptFileError(f"bad magic {bytes(h['magic'])!r}: not a file a crash leaves; not recovering", probe.path, 0)
    if int(h["thread_id"]) != thread_id or int(h["endian"]) != ENDIAN_LITTLE or int(h["version"]) != FORMAT_VERSION:
        raise CorruptFileError("header names another thread, endianness or version; not recovering", probe.path, 0)


class _Plan:
    """What one thread's files hold and what they must become."""

    def __init__(self, tid: int, tdir: str) -> None:
        self.tid = tid
        self.tdir = tdir
        self.ipath = os.path.join(tdir, INDEX_FILE_NAME)
        self.dpath = os.path.join(tdir, DETAIL_FILE_NAME)
        for path in (self.ipath, self.dpath):
            # a FIFO, socket or directory in a file's place: no crash leaves that
            if os.path.lexists(path) and not os.path.isfile(path):
                raise CorruptFileError("not a regular file; not recovering", path)
        self.index: IndexProbe | None = probe_index(self.ipath) if os.path.isfile(self.ipath) else None
        self.detail: DetailProbe | None = probe_detail(self.dpath) if os.path.isfile(self.dpath) else None
        if self.index is not None:
            _check_recoverable(self.index, INDEX_MAGIC, tid)
            if self.index.header is not None and int(self.index.header["event_size"]) != INDEX_EVENT_SIZE:
                raise CorruptFileError("event_size is not 32; not recovering", self.ipath, 0)
        if self.detail is not None:
            _check_recoverable(self.detail, DETAIL_MAGIC, tid)
            if self.detail.footer is not None and self.detail.error:
                raise CorruptFileError("detail events broken before a footer: corruption, not a crash; not recovering", self.dpath, self.detail.error_offset)


def _recover_detail(plan: _Plan, n_index: int, log: list) -> int:
    """Fix detail.atf; return how many detail events it keeps (-1: no file)."""
    d = plan.detail
    if d is None:
        return -1
    if d.header is None:  # killed while creating it: nothing complete inside
        aside = _aside_path(plan.dpath)
        os.rename(plan.dpath, aside)
        log.append({"file": DETAIL_FILE_NAME, "offset": 0, "length": len(d.buf), "moved_to": os.path.basename(aside)})
        return -1
    hdrs = d.headers()
    # a detail event whose index event is not on disk cannot be linked: cut there
    k = int(np.searchsorted(hdrs["index_seq"].astype(np.int64), n_index)) if len(hdrs) else 0
    cut = int(d.offsets[k]) if k < d.count else d.events_end
    untouched = d.footer is not None and k == d.count and d.footer_offset == cut
    footer = np.zeros(1, DETAIL_FOOTER_DTYPE)
    if untouched:
        footer[0] = d.footer
        end = cut + DETAIL_FOOTER_DTYPE.itemsize  # untouched: the footer sits at the cut
    else:
        _move_tail_aside(plan.dpath, d.buf, cut, log)
        footer["magic"] = DETAIL_FOOTER_MAGIC
        footer["checksum"] = crc32(d.buf[DETAIL_EVENTS_OFFSET:cut])
        end = cut + DETAIL_FOOTER_DTYPE.itemsize
    kept = hdrs[:k]
    footer["event_count"] = k
    footer["bytes_length"] = cut - DETAIL_EVENTS_OFFSET
    footer["time_start_ns"] = kept[0]["timestamp"] if k else 0
    footer["time_end_ns"] = kept[-1]["timestamp"] if k else 0
    header = np.zeros(1, DETAIL_HEADER_DTYPE)
    header[0] = d.header
    header["events_offset"] = DETAIL_EVENTS_OFFSET
    header["event_count"] = k
    header["bytes_length"] = cut - DETAIL_EVENTS_OFFSET
    header["index_seq_start"] = kept[0]["index_seq"] if k else 0
    header["index_seq_end"] = kept[-1]["index_seq"] if k else 0
    if (untouched and header.tobytes() == bytes(d.buf[: header.nbytes]) and footer.tobytes() == bytes(d.buf[cut:end])
            and len(d.buf) == end):
        return k
    d_buf = d.buf
    plan.detail = None  # the map must not outlive the rewrite
    _patch(plan.dpath, [(cut, footer.tobytes()), (0, header.tobytes())], end)
    del d_buf
    return k


def _recover_index(plan: _Plan, n_detail: int, clock_type: int, log: list, unlinked: list) -> dict:
    p = plan.index
    n = p.count if p is not None and p.header is not None else 0
    if p is None or p.header is None:
        if p is not None and len(p.buf):
            aside = _aside_path(plan.ipath)
            os.rename(plan.ipath, aside)
            log.append({"file": INDEX_FILE_NAME, "offset": 0, "length": len(p.buf), "moved_to": os.path.basename(aside)})
        elif p is not None:
            os.unlink(plan.ipath)  # an empty file: nothing to keep
        header = np.zeros(1, INDEX_HEADER_DTYPE)
        header["magic"] = INDEX_MAGIC
        header["endian"] = ENDIAN_LITTLE
        header["version"] = FORMAT_VERSION
        header["arch"] = host_arch()
        header["os"] = host_os()
        header["thread_id"] = plan.tid
        header["clock_type"] = clock_type
        header["event_size"] = INDEX_EVENT_SIZE
        _write_new(plan.ipath, header.tobytes())
        p = plan.index = probe_index(plan.ipath)
    events = p.events
    keep = INDEX_EVENTS_OFFSET + INDEX_EVENT_SIZE * n
    # links to detail events that are not on disk (any more)
    dangling = _kv.dangling_links(events, max(n_detail, 0))
    untouched = p.footer is not None and p.footer_offset == keep and not len(dangling)
    footer = np.zeros(1, INDEX_FOOTER_DTYPE)
    writes = []
    if untouched:
        footer[0] = p.footer
    else:
        _move_tail_aside(plan.ipath, p.buf, keep if p.footer_offset is None else p.footer_offset + INDEX_FOOTER_DTYPE.itemsize, log)
        if len(dangling):
            fixed = events[dangling].copy()
            unlinked.extend({"index_seq": int(i), "detail_seq": int(s)} for i, s in zip(dangling, fixed["detail_seq"], strict=True))
            fixed["detail_seq"] = NO_DETAIL
            for i, rec in zip(dangling, fixed, strict=True):
                writes.append((INDEX_EVENTS_OFFSET + INDEX_EVENT_SIZE * int(i), rec.tobytes()))
            patched = bytearray(p.events_bytes)
            for off, data in writes:
                patched[off - INDEX_EVENTS_OFFSET : off - INDEX_EVENTS_OFFSET + len(data)] = data
            footer["checksum"] = crc32(np.frombuffer(bytes(patched), np.uint8))
        elif p.footer is not None:
            footer["checksum"] = p.footer["checksum"]
        else:
            footer["checksum"] = crc32(p.events_bytes)
        footer["magic"] = INDEX_FOOTER_MAGIC
    t0 = int(events[0]["timestamp_ns"]) if n else 0
    t1 = int(events[-1]["timestamp_ns"]) if n else 0
    footer["event_count"] = n
    footer["time_start_ns"] = t0
    footer["time_end_ns"] = t1
    footer["bytes_written"] = INDEX_EVENT_SIZE * n
    header = np.zeros(1, INDEX_HEADER_DTYPE)
    header[0] = p.header
    flags = int(header["flags"][0]) & ~FLAG_HAS_DETAIL_FILE
    header["flags"] = flags | (FLAG_HAS_DETAIL_FILE if n_detail >= 0 else 0)
    header["events_offset"] = INDEX_EVENTS_OFFSET
    header["event_count"] = n & 0xFFFFFFFF
    header["footer_offset"] = keep
    header["time_start_ns"] = t0
    header["time_end_ns"] = t1
    end = keep + INDEX_FOOTER_DTYPE.itemsize
    same = (
        header.tobytes() == bytes(p.buf[: header.nbytes])
        and footer.tobytes() == bytes(p.buf[keep:end])
        and len(p.buf) == end
        and not writes
    )
    if not same:
        buf = p.buf
        plan.index = None
        _patch(plan.ipath, writes + [(keep, footer.tobytes()), (0, header.tobytes())], end)
        del buf
    return {"index_events": n, "time_start_ns": t0, "time_end_ns": t1, "changed": not same}


def _load_manifest(session_dir: str, log: list) -> dict:
    path = manifest_path(session_dir)
    try:
        return read_manifest(session_dir)
    except ManifestError:
        if os.path.exists(path):
            # unreadable: keep it, and start a new one from the files
            aside = _aside_path(path)
            os.rename(path, aside)
            log.append({"file": os.path.basename(path), "moved_to": os.path.basename(aside)})
        return {"format_version": MANIFEST_FORMAT_VERSION, "status": STATUS_RECORDING, "threads": []}


def recover_session(session_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Repair a session in place; return what was done.

    The result: ``{"status", "changed", "threads": [{"id", "index_events",
    "detail_events", "moved_aside": [...], "unlinked": n}]}``. Raises
    ``AtfV2Error`` (before changing anything) for damage a crash cannot cause.
    """
    session_dir = os.fspath(session_dir)
    if not os.path.isdir(session_dir):
        raise ManifestError("not a session directory", session_dir)
    manifest_log: list = []
    manifest = _load_manifest(session_dir, manifest_log)
    entries = {int(t["id"]): t for t in manifest["threads"]}
    tids = sorted(set(entries) | _thread_dirs_on_disk(session_dir))
    plans = [_Plan(tid, os.path.join(session_dir, f"{THREAD_DIR_PREFIX}{tid}")) for tid in tids]
    clock_type = manifest.get("clock_type")
    if clock_type is None:
        found = [int(p.index.header["clock_type"]) for p in plans if p.index is not None and p.index.header is not None]
        clock_type = found[0] if found else CLOCK_BOOTTIME
    changed = bool(manifest_log)
    report_threads = []
    for plan in plans:
        if plan.index is None and plan.detail is None and not os.path.isdir(plan.tdir):
            os.makedirs(plan.tdir)  # listed in the manifest, never created
        log: list = []
        unlinked: list = []
        n_index = plan.index.count if plan.index is not None and plan.index.header is not None else 0
        n_detail = _recover_detail(plan, n_index, log)
        result = _recover_index(plan, n_detail, clock_type, log, unlinked)
        if log or unlinked:
            _write_log(plan, log, unlinked)
        changed |= bool(log or unlinked or result["changed"])
        entry = entries.setdefault(plan.tid, {"id": plan.tid})
        entry["has_detail"] = n_detail >= 0
        entry["index_events"] = result["index_events"]
        entry["detail_events"] = max(n_detail, 0)
        if result["index_events"]:
            entry["time_start_ns"] = result["time_start_ns"]
            entry["time_end_ns"] = result["time_end_ns"]
        report_threads.append({"id": plan.tid, "index_events": result["index_events"], "detail_events": max(n_detail, 0),
                               "moved_aside": log, "unlinked": len(unlinked)})
    if not changed and manifest.get("status") != STATUS_RECORDING:
        # a whole session (complete, or recovered before): leave it as it is
        return {"status": manifest.get("status"), "changed": False, "threads": report_threads, "manifest": []}
    new = dict(manifest)
    new["threads"] = [entries[t] for t in sorted(entries)]
    new.setdefault("clock_type", clock_type)
    ranges = [(t["time_start_ns"], t["time_end_ns"]) for t in new["threads"] if t.get("index_events")]
    if ranges:
        first, last = min(r[0] for r in ranges), max(r[1] for r in ranges)
        if not new.get("time_start_ns") or new["time_start_ns"] > first:
            new["time_start_ns"] = first
        if not new.get("time_end_ns") or new["time_end_ns"] < last:
            new["time_end_ns"] = last
    new["recovered_from_status"] = manifest.get("status", STATUS_COMPLETE)
    new["status"] = STATUS_RECOVERED
    # a killed recorder leaves the space it held back for its final manifest
    # (atf2.manifest_reserve): freeing it lets this rewrite fit on a full disk
    release_reserve(session_dir)
    write_manifest(session_dir, new)
    return {"status": new["status"], "changed": True, "threads": report_threads, "manifest": manifest_log}


def _write_log(plan: _Plan, log: list, unlinked: list) -> None:
    path = os.path.join(plan.tdir, RECOVERY_LOG_NAME)
    previous = []
    if os.path.exists(path):
        try:
            with open(path, encoding="utf-8") as f:
                previous = json.load(f)
        except (OSError, ValueError):
            previous = []
    previous.append({"moved_aside": log, "detail_links_cleared": unlinked})
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(previous, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
