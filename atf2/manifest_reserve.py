"""Disk space held back for the final manifest of a session.

A session whose file system fills to the last byte could not rewrite its
manifest at stop (the atomic rewrite needs room for a second copy), so it
stayed "recording" until ``atf2 recover``. The session therefore allocates a
hidden reserve file in its directory at start, grows it as the manifest
grows, and deletes it right before the final rewrite, which then fits.

Readers, ``verify_session`` and ``recover_session`` look only at
``manifest.json`` and ``thread_N/``: the reserve is invisible to them.
``recover_session`` deletes the one a killed session left behind.
"""

from __future__ import annotations

import errno
import os

#: the reserve file in the session directory (hidden: a dot name)
MANIFEST_RESERVE_NAME = ".manifest.reserve"

#: the least reserved: far above the manifest of a session of a few thousand
#: threads and symbols; the session grows it for bigger manifests
MIN_RESERVE_BYTES = 1 << 20

#: reserve this many times the last manifest's size (the final one is
#: indented, the crash-recovery rewrites are compact, and it keeps growing)
RESERVE_FACTOR = 4

_CHUNK = b"\0" * (1 << 16)


def reserve_path(session_dir: str | os.PathLike[str]) -> str:
    return os.path.join(os.fspath(session_dir), MANIFEST_RESERVE_NAME)


def reserve_size(manifest_bytes: int) -> int:
    """The reserve wanted for a manifest of ``manifest_bytes``."""
    return max(MIN_RESERVE_BYTES, RESERVE_FACTOR * int(manifest_bytes))


def reserve_space(session_dir: str | os.PathLike[str], size: int) -> int:
    """Make the reserve file at least ``size`` bytes of allocated space.

    Uses ``posix_fallocate`` (real blocks, not a sparse file) where the file
    system supports it, else writes zeros. Returns the reserve's size
    afterwards; raises ``OSError`` when the space is not there (the reserve
    keeps what it had).
    """
    path = reserve_path(session_dir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        have = os.fstat(fd).st_size
        if have >= size:
            return have
        try:
            if not hasattr(os, "posix_fallocate"):
                raise OSError(errno.EOPNOTSUPP, "no posix_fallocate")
            os.posix_fallocate(fd, 0, size)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                os.ftruncate(fd, have)
                raise
            pos = have
            try:
                while pos < size:
                    pos += os.pwrite(fd, _CHUNK[: min(len(_CHUNK), size - pos)], pos)
            except OSError:
                os.ftruncate(fd, have)
                raise
        return size
    finally:
        os.close(fd)


def release_reserve(session_dir: str | os.PathLike[str]) -> bool:
    """Delete the reserve (if any); True when there was one."""
    try:
        os.unlink(reserve_path(session_dir))
    except FileNotFoundError:
        return False
    return True
