"""ThreadReader: one ``thread_N/`` directory, index and detail linked both ways."""

from __future__ import annotations

import os
from typing import Any

from ..errors import CorruptFileError, DanglingLinkError
from ..layout import DETAIL_FILE_NAME, INDEX_FILE_NAME, NO_DETAIL
from .detail import DetailEvent, DetailReader
from .index import IndexEvent, IndexReader, VerifyResult


def _field(event: Any, name: str) -> int:
    """A field of an IndexEvent / DetailEvent, a structured record or a mapping."""
    try:
        return int(getattr(event, name))
    except AttributeError:
        return int(event[name])


class ThreadReader:
    """``index`` (IndexReader) and ``detail`` (DetailReader, or None without detail file).

    ``thread_id``: when given (the session passes the manifest's id), both
    file headers must carry it.
    """

    def __init__(self, thread_dir: str | os.PathLike[str], thread_id: int | None = None):
        self.thread_dir = os.fspath(thread_dir)
        self.index = IndexReader(os.path.join(self.thread_dir, INDEX_FILE_NAME))
        self.detail: DetailReader | None = None
        try:
            expected = self.index.thread_id if thread_id is None else int(thread_id)
            if self.index.thread_id != expected:
                raise CorruptFileError(
                    f"the header says thread {self.index.thread_id}, the session says {expected}", self.index.path, 12
                )
            detail_path = os.path.join(self.thread_dir, DETAIL_FILE_NAME)
            if os.path.exists(detail_path):
                self.detail = DetailReader(detail_path)
                if self.detail.thread_id != expected:
                    raise CorruptFileError(
                        f"the header says thread {self.detail.thread_id}, the index file says {expected}", detail_path, 12
                    )
            elif self.index.has_detail:
                raise CorruptFileError("the header flags a detail file, but detail.atf is missing", self.index.path, 8)
        except BaseException:
            self.close()
            raise

    @property
    def thread_id(self) -> int:
        """The thread number N (from the index header)."""
        return self.index.thread_id

    @property
    def has_detail(self) -> bool:
        """Whether the thread has a detail.atf."""
        return self.detail is not None

    @property
    def recovered(self) -> bool:
        """True when a file was read without its footer (recorder killed)."""
        return self.index.recovered or (self.detail is not None and self.detail.recovered)

    def __len__(self) -> int:
        return len(self.index)

    def event_count(self) -> int:
        """Events in index.atf."""
        return len(self.index)

    def detail_count(self) -> int:
        """Events in detail.atf (0 without one)."""
        return 0 if self.detail is None else len(self.detail)

    def time_range(self) -> tuple[int, int]:
        """(first, last) timestamp of the index; (0, 0) when empty."""
        return self.index.time_range()

    def get_detail_for(self, index_event: Any) -> DetailEvent | None:
        """The detail event an index event links to (``detail_seq``), or None (O(1)).

        Raises ``DanglingLinkError`` when the link points at nothing.
        """
        seq = _field(index_event, "detail_seq")
        if seq == NO_DETAIL:
            return None
        if self.detail is None:
            raise DanglingLinkError(f"an event links to detail event {seq}, but the thread has no detail file", self.index.path)
        return self.detail.get(seq)

    def get_index_for(self, detail_event: Any) -> IndexEvent:
        """The index event a detail event links back to (``index_seq``) (O(1)).

        Raises ``DanglingLinkError`` when the link points past the index file.
        """
        seq = _field(detail_event, "index_seq")
        if seq < 0 or seq >= len(self.index):
            raise DanglingLinkError(
                f"a detail event links to index event {seq}, but the index holds {len(self.index)} events",
                self.detail.path if self.detail is not None else self.index.path,
            )
        return self.index[seq]

    def verify(self) -> dict[str, VerifyResult]:
        """Verify both files and the links between them; raise ``CorruptFileError``."""
        n_detail = -1 if self.detail is None else len(self.detail)
        out = {"index": self.index.verify(detail_count=max(n_detail, 0))}
        if self.detail is not None:
            out["detail"] = self.detail.verify(index_count=len(self.index))
        return out

    def close(self) -> None:
        """Unmap both files."""
        if self.detail is not None:
            self.detail.close()
        self.index.close()

    def __enter__(self) -> ThreadReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        d = f", {len(self.detail)} details" if self.detail is not None else ""
        return f"<ThreadReader thread_{self.thread_id}: {len(self.index)} events{d}>"
