"""Chrome Trace Event Format export (loadable in Perfetto UI and chrome://tracing).

Every CALL/RETURN pair becomes one complete event (``"ph": "X"``) with ``ts``
and ``dur`` in microseconds, printed with three decimals so nanoseconds are
kept exactly; threads and the process get ``"M"`` metadata events with their
names. When the paired index events have detail events, their content goes
to ``args`` (decoded Python payloads when ``atf2.payload`` understands them,
else the payload bytes as hex). Calls cut by the edges of the trace carry
``"unclosed"`` / ``"unopened"`` in their args.

The file is written as the intervals are produced, chunk by chunk: memory
stays bounded by the chunk size whatever the trace size. Timestamps are
relative to the session's first event by default (``relative=False`` keeps
the clock's values; large values lose precision in viewers that parse JSON
numbers as doubles).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .analysis import FLAG_EXCEPTION, FLAG_UNCLOSED, FLAG_UNOPENED, _IdMap, _ThreadPairer, thread_events
from .errors import AtfV2Error
from .layout import NO_DETAIL

if TYPE_CHECKING:
    from .analysis import EventSource
    from .reader import DetailReader, SessionReader

__all__ = ["export_chrome"]

#: events per pairing step; small enough that the progress line moves
EXPORT_CHUNK = 1 << 16
#: exports of more events than this show a progress line when stderr is a terminal
PROGRESS_THRESHOLD = 1_000_000


class _Progress:
    """A one-line stderr progress display, redrawn at most 5 times a second."""

    def __init__(self, total: int, enabled: bool, stream: IO[str] | None = None) -> None:
        self.total = max(int(total), 1)
        self.enabled = enabled
        self.stream = stream if stream is not None else sys.stderr
        self.last = 0.0

    def update(self, done: int, final: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not final and now - self.last < 0.2:
            return
        self.last = now
        pct = 100.0 * min(done, self.total) / self.total
        self.stream.write(f"\ratf2 export: {pct:5.1f}% ({done:,}/{self.total:,} events)")
        if final:
            self.stream.write("\n")
        self.stream.flush()


def _us(ns: int) -> str:
    """ns as a JSON number of microseconds, exact (three decimals)."""
    sign = "-" if ns < 0 else ""
    q, r = divmod(abs(ns), 1000)
    return f"{sign}{q}.{r:03d}"


def _jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe rendering of a decoded payload value."""
    if value is None or isinstance(value, (bool, int, str)):
        return value if not isinstance(value, int) or abs(value) < (1 << 53) else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, (list, tuple)) and depth < 4:
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, dict) and depth < 4:
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    return repr(value)


def _detail_args(detail: DetailReader, seq: int, function_name: Callable[[int], str]) -> dict:
    event = detail.get(seq)
    try:
        decoded = event.decoded()
    except AtfV2Error as exc:
        return {"payload_hex": bytes(event.payload).hex(), "decode_error": str(exc)}
    if decoded is None:  # opaque bytes (flags 0), e.g. the native writer's registers
        return {"payload_hex": bytes(event.payload).hex()}
    out: dict = {}
    if decoded.args:
        out["args"] = {(name if name is not None else f"arg{i}"): _jsonable(v) for i, (name, v) in enumerate(decoded.args)}
    if decoded.return_value is not None:
        out["return_value"] = _jsonable(decoded.return_value)
    if decoded.exception is not None:
        out["exception"] = _jsonable(decoded.exception)
    if decoded.stack:
        out["stack"] = [function_name(f) for f in decoded.stack]
    return out


class _Names:
    """Event names and categories per function id, JSON-escaped once."""

    def __init__(self, reader: SessionReader | None) -> None:
        self.reader = reader
        self.cache: dict = {}

    def name(self, fid: int) -> str:
        if self.reader is not None:
            return self.reader.symbol_name(fid)
        return f"0x{fid:x}"

    def encoded(self, fid: int) -> str:
        hit = self.cache.get(fid)
        if hit is None:
            sym = self.reader.symbol(fid) if self.reader is not None else None
            cat = (sym.module if sym is not None and sym.module else None) or f"module_{fid >> 32}"
            hit = f'"name":{json.dumps(self.name(fid))},"cat":{json.dumps(cat)}'
            self.cache[fid] = hit
        return hit


def _pid_of(reader: SessionReader | None) -> int:
    if reader is None:
        return 1
    pid = reader.manifest.get("pid")
    if isinstance(pid, int) and not isinstance(pid, bool) and pid >= 0:
        return pid
    base = os.path.basename(os.path.normpath(reader.session_dir))
    if base.startswith("pid_") and base[4:].isdigit():
        return int(base[4:])
    return 1


def _thread_label(entry: dict, tid: int) -> str:
    name = entry.get("name") or f"thread {tid}"
    os_tid = entry.get("os_thread_id")
    return f"{name} (os {os_tid})" if os_tid is not None else name


def export_chrome(
    source: EventSource | str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    threads: Iterable[int] | None = None,
    relative: bool = True,
    details: bool = True,
    progress: bool | None = None,
    chunk_size: int = EXPORT_CHUNK,
) -> dict:
    """Write ``source`` (a SessionReader, a session directory or an event
    array) to ``path`` as Chrome Trace Event Format JSON.

    ``threads``: thread numbers to export (default all). ``progress``: show a
    progress line on stderr (default: when stderr is a terminal and the trace
    has more than PROGRESS_THRESHOLD events). Returns ``{"path", "events",
    "intervals", "bytes", "seconds"}``.
    """
    started = time.perf_counter()
    own = None  # a reader opened here, closed here
    if isinstance(source, (str, os.PathLike)):
        from .reader import SessionReader

        source = own = SessionReader(source)
    try:
        return _export(source, os.fspath(path), threads, relative, details, progress, chunk_size, started)
    finally:
        if own is not None:
            own.close()


def _export(
    source: EventSource,
    path: str,
    threads: Iterable[int] | None,
    relative: bool,
    details: bool,
    progress: bool | None,
    chunk_size: int,
    started: float,
) -> dict:
    reader = None if isinstance(source, np.ndarray) else source
    pairs = thread_events(source, threads)
    total = sum(len(ev) for _, ev in pairs)
    if progress is None:
        progress = total > PROGRESS_THRESHOLD and sys.stderr.isatty()
    bar = _Progress(total, bool(progress))
    origin = min((int(ev[0]["timestamp_ns"]) for _, ev in pairs if len(ev)), default=0) if relative else 0
    pid = _pid_of(reader)
    names = _Names(reader)
    entries = {int(t["id"]): t for t in reader.manifest["threads"]} if reader is not None else {}
    detail_of = {tr.thread_id: tr.detail for tr in reader.threads} if reader is not None and details else {}
    session_name = os.path.basename(os.path.normpath(reader.session_dir)) if reader is not None else "events"
    other = {"generator": "atf2", "time_origin_ns": origin, "clock_type": reader.clock_type if reader is not None else None}
    if reader is not None:
        other["status"] = reader.status
    n_intervals = 0
    done = 0
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8", newline="\n") as out:
            out.write('{"displayTimeUnit":"ns","otherData":' + json.dumps(other) + ',"traceEvents":[\n')
            out.write(json.dumps({"name": "process_name", "ph": "M", "pid": pid, "tid": 0, "args": {"name": f"atf2 {session_name}"}}))
            for tid, _ in pairs:
                label = _thread_label(entries.get(tid, {}), tid)
                out.write(",\n" + json.dumps({"name": "thread_name", "ph": "M", "pid": pid, "tid": tid, "args": {"name": label}}))
                out.write(",\n" + json.dumps({"name": "thread_sort_index", "ph": "M", "pid": pid, "tid": tid, "args": {"sort_index": tid}}))
            idmap = _IdMap()
            for tid, events in pairs:
                detail = detail_of.get(tid)
                pairer = _ThreadPairer(tid, events, idmap)
                head = f',"ph":"X","pid":{pid},"tid":{tid},"ts":'
                base_done = done
                for step, (chunk, _dense) in enumerate(pairer.run(chunk_size)):
                    if len(chunk):
                        out.write(_format_chunk(chunk, events, detail, names, head, origin))
                        n_intervals += len(chunk)
                    done = min(base_done + (step + 1) * chunk_size, base_done + len(events))
                    bar.update(done)
                done = base_done + len(events)
            out.write("\n]}\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    bar.update(total, final=True)
    return {"path": path, "events": total, "intervals": n_intervals, "bytes": os.path.getsize(path),
            "seconds": time.perf_counter() - started}


def _format_chunk(chunk: np.ndarray, events: np.ndarray, detail: DetailReader | None, names: _Names, head: str, origin: int) -> str:
    starts = (chunk["start_ns"].astype(np.int64) - np.int64(origin)).tolist() if origin else chunk["start_ns"].tolist()
    durs = np.where(chunk["end_ns"] >= chunk["start_ns"], chunk["end_ns"] - chunk["start_ns"], 0).tolist()
    fids = chunk["function_id"].tolist()
    flags = chunk["flags"].tolist()
    depth = chunk["depth"].tolist()
    call_seq = ret_seq = None
    if detail is not None and len(chunk):
        ci, ri = chunk["call_index"], chunk["return_index"]
        call_seq = np.where(ci >= 0, events["detail_seq"][np.clip(ci, 0, None)], NO_DETAIL).tolist()
        ret_seq = np.where(ri >= 0, events["detail_seq"][np.clip(ri, 0, None)], NO_DETAIL).tolist()
    parts = []
    for i in range(len(fids)):
        args = {"depth": depth[i]}
        fl = flags[i]
        if fl:
            if fl & FLAG_UNCLOSED:
                args["unclosed"] = True
            if fl & FLAG_UNOPENED:
                args["unopened"] = True
            if fl & FLAG_EXCEPTION:
                args["exception_exit"] = True
        if detail is not None and call_seq is not None and ret_seq is not None:
            if call_seq[i] != NO_DETAIL:
                args["call"] = _detail_args(detail, call_seq[i], names.name)
            if ret_seq[i] != NO_DETAIL:
                args["return"] = _detail_args(detail, ret_seq[i], names.name)
        if len(args) == 1:
            tail = f',"args":{{"depth":{depth[i]}}}}}'
        else:
            tail = ',"args":' + json.dumps(args, separators=(",", ":")) + "}"
        parts.append(f",\n{{{names.encoded(fids[i])}{head}{_us(starts[i])},\"dur\":{_us(durs[i])}{tail}")
    return "".join(parts)
