"""layout's host codes and dtype helpers on every platform branch, and the
manifest writer's cleanup when a write fails."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import atf2.layout as L
from atf2 import manifest
from atf2.errors import ManifestError


@pytest.mark.parametrize("helper", [L.field_names, lambda d: L.field_offset(d, "x")])
def test_dtype_helpers_need_a_structured_dtype(helper):
    with pytest.raises(TypeError, match="not a structured dtype"):
        helper(np.dtype("<u8"))


@pytest.mark.parametrize(("machine", "code"), [("aarch64", L.ARCH_ARM64), ("arm64", L.ARCH_ARM64), ("x86_64", L.ARCH_X86_64), ("riscv64", L.ARCH_X86_64)])
def test_host_arch(monkeypatch, machine, code):
    monkeypatch.setattr(L.platform, "machine", lambda: machine)
    assert L.host_arch() == code


@pytest.mark.parametrize(("platform", "code"), [("linux", L.OS_LINUX), ("darwin", L.OS_MACOS), ("win32", L.OS_WINDOWS), ("freebsd14", L.OS_LINUX)])
def test_host_os(monkeypatch, platform, code):
    monkeypatch.setattr(sys, "platform", platform)
    assert L.host_os() == code


def test_android_is_its_own_os(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(sys, "getandroidapilevel", lambda: 34, raising=False)
    assert L.host_os() == L.OS_ANDROID


def test_thread_ids_numpy_integers_and_bounds():
    assert manifest.check_thread_id(np.int64(3)) == 3
    for bad in (-1, manifest.MAX_THREAD_ID + 1, 1.0, "2", np.float64(2)):
        with pytest.raises(ManifestError):
            manifest.check_thread_id(bad)


def test_fsync_of_a_missing_directory_is_skipped(tmp_path):
    manifest._fsync_dir(str(tmp_path / "gone"))  # nothing to sync, no error


def test_a_failed_manifest_write_leaves_no_temporary_file(tmp_path, monkeypatch):
    manifest.write_manifest(tmp_path, {"status": "complete", "threads": []})

    def no_space(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(manifest.os, "write", no_space)
    with pytest.raises(OSError, match="No space"):
        manifest.write_manifest(tmp_path, {"status": "recording", "threads": []})
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["manifest.json"]  # the old manifest, untouched
    with open(tmp_path / "manifest.json") as f:
        assert '"complete"' in f.read()
