"""Small helpers of the exporter and the symbol table: JSON rendering of
decoded values at every depth and type, the pid of an exported session, and
module names derived from file paths."""

from __future__ import annotations

import math
import os
import sys
from types import SimpleNamespace

import pytest

from atf2.export import _jsonable, _pid_of, _us
from atf2.symbols import _module_of_file


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        (None, None),
        (True, True),
        (7, 7),
        (1 << 60, str(1 << 60)),  # beyond a double's exact integers
        (1.5, 1.5),
        (math.inf, "inf"),
        (b"\x00\xff", "00ff"),
        ((1, [2, "x"]), [1, [2, "x"]]),
        ({1: {"a": None}}, {"1": {"a": None}}),
        ([[[[[1]]]]], [[[["[1]"]]]]),  # deeper than 4: repr
        ({1, 2}, repr({1, 2})),
    ],
)
def test_jsonable(value, rendered):
    assert _jsonable(value) == rendered


def test_microseconds_are_exact():
    assert _us(1_234_567) == "1234.567" and _us(-5) == "-0.005" and _us(0) == "0.000"


def test_pid_of_an_exported_session(tmp_path):
    def reader(manifest, directory):
        return SimpleNamespace(manifest=manifest, session_dir=str(directory))

    assert _pid_of(None) == 1
    assert _pid_of(reader({"pid": 42}, tmp_path)) == 42
    assert _pid_of(reader({"pid": True}, tmp_path / "pid_77")) == 77  # not a pid: the directory name says
    assert _pid_of(reader({"pid": -1}, tmp_path / "pid_x")) == 1


def test_module_names_from_file_paths(monkeypatch, tmp_path):
    pkg = tmp_path / "site"
    monkeypatch.setattr(sys, "path", [str(tmp_path), str(pkg)])
    assert _module_of_file(str(pkg / "app" / "__init__.py")) == "app"  # the longest sys.path root wins
    assert _module_of_file(str(pkg / "app" / "views.py")) == "app.views"
    assert _module_of_file("/elsewhere/tool.py") == "tool"
    assert _module_of_file("<string>") == "<string>"
    assert _module_of_file("") == "<unknown>"
    assert _module_of_file(os.path.join(str(tmp_path), "top.py")) == "top"
