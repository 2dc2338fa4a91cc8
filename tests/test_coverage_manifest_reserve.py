"""The manifest reserve's fallbacks: no posix_fallocate on the file system
(zeros written instead), a real ENOSPC from either path (the reserve keeps
what it had), a reserve already big enough, and releasing one that is gone."""

from __future__ import annotations

import errno
import os

import pytest

from atf2 import manifest_reserve as mr


def _size(d):
    return os.path.getsize(mr.reserve_path(d))


def test_reserve_grows_and_is_released(tmp_path):
    assert mr.reserve_size(10) == mr.MIN_RESERVE_BYTES and mr.reserve_size(1 << 30) == mr.RESERVE_FACTOR << 30
    assert mr.reserve_space(tmp_path, 1000) == 1000 and _size(tmp_path) == 1000
    assert mr.reserve_space(tmp_path, 500) == 1000  # big enough already: left alone
    assert mr.release_reserve(tmp_path) and not mr.release_reserve(tmp_path)


@pytest.mark.parametrize("code", [errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS])
def test_without_fallocate_zeros_are_written(tmp_path, monkeypatch, code):
    def unsupported(fd, offset, length):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(mr.os, "posix_fallocate", unsupported)
    size = 3 * len(mr._CHUNK) + 5
    assert mr.reserve_space(tmp_path, size) == size
    with open(mr.reserve_path(tmp_path), "rb") as f:
        assert f.read() == b"\0" * size


def test_platform_without_fallocate(tmp_path, monkeypatch):
    monkeypatch.delattr(mr.os, "posix_fallocate")
    assert mr.reserve_space(tmp_path, 100) == 100 and _size(tmp_path) == 100


def test_no_space_keeps_what_the_reserve_had(tmp_path, monkeypatch):
    assert mr.reserve_space(tmp_path, 100) == 100

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(mr.os, "posix_fallocate", full)
    with pytest.raises(OSError, match="No space"):
        mr.reserve_space(tmp_path, 1 << 20)
    assert _size(tmp_path) == 100
    def unsupported(*args):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(mr.os, "posix_fallocate", unsupported)  # the zeros path, out of space too
    monkeypatch.setattr(mr.os, "pwrite", full)
    with pytest.raises(OSError, match="No space"):
        mr.reserve_space(tmp_path, 1 << 20)
    assert _size(tmp_path) == 100
