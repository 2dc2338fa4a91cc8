"""CLI paths the command tests leave out: formatting helpers, the error
guard's three outcomes, option errors and the human-readable variants."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_cli_query import run
from test_export import make_session

from atf2.cli import _query
from atf2.errors import AtfV2Error


@pytest.fixture
def session(tmp_path):
    return make_session(tmp_path / "s")


@pytest.mark.parametrize(
    ("ns", "text"),
    [(999, "999ns"), (1_500, "1.50us"), (2_500_000, "2.50ms"), (3_000_000_000, "3.000s"), (-1_500, "-1.50us")],
)
def test_fmt_ns_picks_the_unit(ns, text):
    assert _query.fmt_ns(ns) == text


@pytest.mark.parametrize(("n", "text"), [(10, "10B"), (2048, "2.0KiB"), (3 << 20, "3.0MiB"), (5 << 40, "5120.0GiB")])
def test_fmt_bytes_picks_the_unit(n, text):
    assert _query.fmt_bytes(n) == text


def test_json_of_numpy_scalars_bytes_and_other_objects(capsys):
    _query.print_json({"n": np.uint64(7), "b": b"\x01\xff", "m": memoryview(b"\x02"), "o": object})
    doc = json.loads(capsys.readouterr().out)
    assert doc["n"] == 7 and doc["b"] == "01ff" and doc["m"] == "02" and doc["o"] == repr(object)


def test_guard_turns_os_errors_into_atf_errors_and_reports_internal_errors(capsys, monkeypatch, tmp_path):
    @_query.guarded("probe")
    def os_error(args):
        raise FileNotFoundError(2, "No such file or directory", str(tmp_path / "x"))

    with pytest.raises(AtfV2Error) as info:
        os_error(None)
    assert "No such file or directory" in str(info.value) and str(tmp_path / "x") in str(info.value)

    @_query.guarded("probe")
    def bug(args):
        raise ZeroDivisionError("boom")

    monkeypatch.delenv(_query.DEBUG_ENV, raising=False)
    assert bug(None) == 3
    err = capsys.readouterr().err
    assert err.startswith("atf2 probe: internal error: ZeroDivisionError: boom") and "Traceback" not in err
    monkeypatch.setenv(_query.DEBUG_ENV, "1")
    with pytest.raises(ZeroDivisionError):
        bug(None)

    @_query.guarded("probe")
    def atf_error(args):
        raise AtfV2Error("bad")

    with pytest.raises(AtfV2Error):
        atf_error(None)


def test_broken_pipe_ends_quietly(capsys, session, monkeypatch):
    import atf2.cli.info as info

    def broken(args):
        raise BrokenPipeError

    monkeypatch.setattr(info, "collect", lambda reader: broken(None))
    status, _, err = run(capsys, "info", session)
    assert status == 0 and err == ""


def test_summary_option_errors(capsys, session):
    status, _, err = run(capsys, "summary", session, "--top", -1)
    assert status == 2 and "--top must be >= 0" in err
    status, _, err = run(capsys, "summary", session, "--thread", 7)
    assert status == 2 and "no thread 7" in err


def test_summary_json_per_thread(capsys, session):
    status, out, _ = run(capsys, "summary", session, "--json", "--per-thread")
    doc = json.loads(out)
    assert status == 0 and {r["thread"] for r in doc["per_thread"]} == {0, 1}


def test_recover_of_a_complete_session_changes_nothing(capsys, session):
    status, out, _ = run(capsys, "recover", session)
    assert status == 0
    assert "nothing to recover (status complete)" in out and out.rstrip().endswith("verify: OK")
    status, out, _ = run(capsys, "recover", session, "--json")
    doc = json.loads(out)
    assert status == 0 and doc["verified"] and doc["problems"] == [] and not doc["changed"]
