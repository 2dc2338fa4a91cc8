"""SessionReader: a whole session directory, threads merged into one order."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, NamedTuple, overload

import numpy as np
import numpy.typing as npt

from ..errors import ManifestError
from ..kernels.merge import merge_chunk, merge_inputs
from ..layout import INDEX_EVENT_DTYPE
from ..manifest import STATUS_COMPLETE, read_manifest, thread_dir
from ..payload import ManifestSymbols
from .index import IndexEvent, VerifyResult
from .thread import ThreadReader

if TYPE_CHECKING:
    from ..analysis import Summary

#: one event of the merged session order: the index fields, then ``thread``
#: (position of the thread in ``SessionReader.threads``) and ``seq`` (its
#: index_seq, the position in that thread's index.atf)
MERGED_EVENT_DTYPE = np.dtype(INDEX_EVENT_DTYPE.descr + [("thread", "<u4"), ("seq", "<u8")])

#: default events per chunk of ``merged_iter`` (and of ``merged(chunk_size=True)``)
DEFAULT_CHUNK = 1 << 20

_new_tuple = tuple.__new__


class Symbol(NamedTuple):
    """What the manifest says about a function id."""

    function_id: int
    module: str | None
    name: str | None
    qualname: str | None
    file: str | None
    line: int | None


class SessionReader:
    """Reads ``<session_dir>/manifest.json`` and every ``thread_N/`` it lists.

    ``threads`` holds one ThreadReader per manifest thread, sorted by thread
    number (the tie order of the merge). Sessions whose recorder was killed
    (status "recording", footers missing) are read up to the last complete
    record; ``recovered`` then says so.
    """

    def __init__(self, session_dir: str | os.PathLike[str]):
        self.session_dir = os.fspath(session_dir)
        self.manifest = read_manifest(self.session_dir)
        entries = sorted(self.manifest["threads"], key=lambda t: t["id"])
        self.threads: list = []
        detail_symbols = ManifestSymbols(self.manifest)  # issue 5: lazy, shared by the threads
        try:
            for entry in entries:
                tdir = thread_dir(self.session_dir, entry["id"])
                if not os.path.isdir(tdir):
                    raise ManifestError(f"thread {entry['id']} is listed, but its directory {tdir} is absent", self.manifest_path)
                reader = ThreadReader(tdir, entry["id"])
                self.threads.append(reader)
                if reader.detail is not None:  # issue 5: argument names of detail payloads
                    reader.detail.symbols = detail_symbols
                if entry.get("has_detail") is True and reader.detail is None and self.status == STATUS_COMPLETE:
                    raise ManifestError(f"thread {entry['id']} has_detail, but {tdir} holds no detail.atf", self.manifest_path)
        except BaseException:
            self.close()
            raise
        self._symbols: dict | None = None

    # ----------------------------------------------------------------- metadata

    @property
    def manifest_path(self) -> str:
        """Path of the session's ``manifest.json``."""
        return os.path.join(self.session_dir, "manifest.json")

    @property
    def status(self) -> str:
        """The manifest's status: "complete", "recording" (still recording, or the recorder was killed) or "recovered"."""
        return self.manifest["status"]

    @property
    def recovered(self) -> bool:
        """True when the session did not stop cleanly or a file had to be recovered."""
        return self.status != STATUS_COMPLETE or any(t.recovered for t in self.threads)

    @property
    def thread_ids(self) -> list[int]:
        """Thread numbers N of the session, in order."""
        return [t.thread_id for t in self.threads]

    def thread(self, thread_id: int) -> ThreadReader:
        """The ThreadReader of thread number ``thread_id`` (KeyError if absent)."""
        for t in self.threads:
            if t.thread_id == thread_id:
                return t
        raise KeyError(thread_id)

    @property
    def clock_type(self) -> int | None:
        """``CLOCK_*`` code of the timestamps (3: CLOCK_BOOTTIME), None for a session without threads."""
        if "clock_type" in self.manifest:
            return self.manifest["clock_type"]
        return self.threads[0].index.clock_type if self.threads else None

    def event_count(self) -> int:
        """Index events of all threads."""
        return sum(len(t.index) for t in self.threads)

    def time_range(self) -> tuple[int, int]:
        """(first, last) timestamp over all non-empty threads; (0, 0) if none."""
        ranges = [t.time_range() for t in self.threads if len(t.index)]
        if not ranges:
            return 0, 0
        return min(r[0] for r in ranges), max(r[1] for r in ranges)

    # ------------------------------------------------------------------ symbols

    def _symbol_table(self) -> dict:
        if self._symbols is None:
            modules = {}
            for m in self.manifest.get("modules", ()):
                if "id" in m:
                    modules[m["id"]] = m.get("name")
            table = {}
            for s in self.manifest.get("symbols", ()):
                fid = s["function_id"]
                module_id = s.get("module_id", fid >> 32)
                table[fid] = Symbol(fid, modules.get(module_id), s.get("name"), s.get("qualname"), s.get("file"), s.get("line"))
            self._symbols = table
        return self._symbols

    def symbol(self, function_id: int) -> Symbol | None:
        """The manifest's entry for ``function_id``, or None."""
        return self._symbol_table().get(int(function_id))

    def symbol_name(self, function_id: int) -> str:
        """The qualified name of ``function_id`` (name, else a hex fallback)."""
        sym = self._symbol_table().get(int(function_id))
        if sym is not None and (sym.qualname or sym.name):
            return sym.qualname or sym.name
        return f"0x{int(function_id):x}"

    # -------------------------------------------------------------------- merge

    def _merge_inputs(self) -> tuple[list, np.ndarray, np.ndarray]:
        arrays = [t.index.events for t in self.threads]  # kept referenced while the kernel reads them
        addrs, lens = merge_inputs(arrays)
        return arrays, addrs, lens

    @overload
    def merged(self, chunk_size: None = None) -> npt.NDArray[np.void]: ...
    @overload
    def merged(self, chunk_size: int) -> Iterator[npt.NDArray[np.void]]: ...

    def merged(self, chunk_size: int | None = None) -> npt.NDArray[np.void] | Iterator[npt.NDArray[np.void]]:
        """Every event of every thread in global order (timestamp, thread, index_seq).

        Without ``chunk_size``: one ``MERGED_EVENT_DTYPE`` array. With it: an
        iterator of arrays of at most ``chunk_size`` events, so that a session
        larger than memory can be merged.
        """
        if chunk_size is None:
            out = np.empty(self.event_count(), dtype=MERGED_EVENT_DTYPE)
            if len(out):
                arrays, addrs, lens = self._merge_inputs()
                n = merge_chunk(addrs, lens, np.zeros(len(arrays), dtype=np.int64), out)
                assert n == len(out)
            return out
        chunk_size = int(chunk_size)
        if chunk_size <= 0:
            raise ValueError("chunk_size must be positive")
        return self._merged_chunks(chunk_size)

    def _merged_chunks(self, chunk_size: int) -> Iterator[npt.NDArray[np.void]]:
        if not self.threads:
            return
        arrays, addrs, lens = self._merge_inputs()
        heads = np.zeros(len(arrays), dtype=np.int64)
        remaining = self.event_count()
        while remaining > 0:
            out = np.empty(min(chunk_size, remaining), dtype=MERGED_EVENT_DTYPE)
            n = merge_chunk(addrs, lens, heads, out)
            if n == 0:  # pragma: no cover - counts are consistent by construction
                return
            remaining -= n
            yield out[:n]

    def merged_iter(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[int, IndexEvent]]:
        """``(thread_index, IndexEvent)`` for every event, in global order."""
        for chunk in self._merged_chunks(chunk_size):
            for row in chunk.tolist():
                yield row[6], _new_tuple(IndexEvent, row[:6])

    # ------------------------------------------------------------------- checks

    def verify(self) -> dict[int, dict[str, VerifyResult]]:
        """Verify every thread (CRCs, order, links); ``{thread_id: {...}}``. Raises CorruptFileError."""
        return {t.thread_id: t.verify() for t in self.threads}

    # ------------------------------------------------- analysis (atf2.analysis)

    def summary(self, **kw: Any) -> Summary:
        """``atf2.summary(self, **kw)``."""
        from ..analysis import summary

        return summary(self, **kw)

    def intervals(self, **kw: Any) -> npt.NDArray[np.void]:
        """``atf2.intervals(self, **kw)``."""
        from ..analysis import intervals

        return intervals(self, **kw)

    def export_chrome(self, path: str | os.PathLike[str], **kw: Any) -> dict[str, Any]:
        """``atf2.export_chrome(self, path, **kw)``."""
        from ..export import export_chrome

        return export_chrome(self, path, **kw)

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Unmap every file (zero-copy arrays taken from them keep their mapping alive)."""
        for t in self.threads:
            t.close()

    def __enter__(self) -> SessionReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SessionReader {self.session_dir}: {len(self.threads)} threads, {self.event_count()} events, {self.status}>"
