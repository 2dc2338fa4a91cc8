"""The one exception family that bad files, bad paths and bad options produce."""

from __future__ import annotations

import os


class AtfV2Error(Exception):
    """Something about an ATF v2 session, file or option is wrong.

    ``path`` and ``offset`` (when known) say where: the message always names
    them, so a user can find the bad byte without a debugger.
    """

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None, offset: int | None = None):
        self.path = os.fspath(path) if path is not None else None
        self.offset = offset
        where = ""
        if self.path is not None:
            where = f"{self.path}"
            if offset is not None:
                where += f" at byte {offset}"
            where += ": "
        super().__init__(where + message)
        self.reason = message


class CorruptFileError(AtfV2Error):
    """A file's bytes contradict the format (magic, sizes, lengths, links)."""


class ManifestError(AtfV2Error):
    """manifest.json is missing, unreadable or inconsistent."""


class SessionStateError(AtfV2Error):
    """A session API was called in the wrong state (double start, stop without start)."""


class WriteError(AtfV2Error):
    """Writing a trace file failed (ENOSPC, EIO, EFBIG under RLIMIT_FSIZE, ...).

    ``errno`` is the OS error number. The writer raises it only after putting
    its files back at the last complete batch, so a later ``finalize()`` still
    produces valid files; the events of the failed batch are not on disk.
    """

    def __init__(self, message: str, path: str | os.PathLike[str] | None = None, offset: int | None = None, errno: int | None = None):
        super().__init__(message, path, offset)
        self.errno = errno


class DanglingLinkError(CorruptFileError, IndexError):
    """A link (detail_seq, index_seq) names a position that does not exist.

    Also an ``IndexError``, so ``reader.get(k)`` with a bad ``k`` behaves like
    any out-of-range lookup.
    """
