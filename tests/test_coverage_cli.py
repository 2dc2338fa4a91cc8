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


class _Event:
    """A detail event stand-in: ``decoded()`` returns ``decoded`` or raises ``error``."""

    def __init__(self, decoded=None, error=None, payload=b"\x01\x02"):
        self._decoded, self._error, self.payload = decoded, error, payload

    def decoded(self):
        if self._error is not None:
            raise self._error
        return self._decoded


def _decoded(args=None, return_value=None, exception=None):
    from types import SimpleNamespace

    return SimpleNamespace(args=args, return_value=return_value, exception=exception)


def test_dump_detail_text_every_shape():
    from atf2.cli.dump import _detail_text

    bad = _Event(error=AtfV2Error("truncated payload"))
    assert _detail_text(bad, True) == {"payload_hex": "0102", "decode_error": "truncated payload"}
    assert _detail_text(bad, False) == "[2 bytes 0102]"
    raised = _Event(_decoded(exception=("ValueError", "bad")))
    assert _detail_text(raised, False) == "raised ValueError: bad"
    assert _detail_text(raised, True) == {"exception": ["ValueError", "bad"]}
    long_value = "x" * 100
    returned = _Event(_decoded(return_value=long_value))
    assert _detail_text(returned, False) == "= " + repr(long_value)[:57] + "..."
    assert _detail_text(returned, True) == {"return_value": repr(long_value)}
    assert _detail_text(_Event(_decoded(args=[(None, 3)])), False) == "(3)"
    assert _detail_text(_Event(_decoded()), False) == ""


def test_dump_option_errors_and_an_early_end(capsys, session):
    status, _, err = run(capsys, "dump", session, "--from", "soon")
    assert status == 2 and "not a number of nanoseconds: 'soon'" in err
    status, _, err = run(capsys, "dump", session, "--limit", -1)
    assert status == 2 and "--limit must be >= 0" in err
    status, out, _ = run(capsys, "dump", session, "--to", "+0", "--no-details")
    assert status == 0 and len(out.splitlines()) >= 1 and "[" not in out  # the first event(s) only, no detail values
    status, out, _ = run(capsys, "dump", session, "--limit", 0)
    assert status == 0 and out == ""


def test_recover_text_report_of_cut_files_and_a_broken_manifest(capsys, tmp_path, make_events, write_session):
    import os

    import atf2.layout as L

    ev = make_events(6, thread_id=0)
    d = write_session(tmp_path / "s", {0: [(ev, [b"\x01" if i % 2 == 0 else None for i in range(6)])]})
    index = d / "thread_0" / "index.atf"
    detail = d / "thread_0" / "detail.atf"
    with open(index, "r+b") as f:
        f.truncate(os.path.getsize(index) - L.INDEX_FOOTER_SIZE - 5)  # a partial last event
    with open(detail, "r+b") as f:
        f.truncate(os.path.getsize(detail) - L.DETAIL_FOOTER_SIZE - 30)  # the last detail events are lost
    (d / "manifest.json").write_text("{")
    status, out, _ = run(capsys, "recover", d)
    assert status == 0
    assert out.splitlines() == [
        "thread 0: 5 index events, 1 detail events; 20 bytes of detail.atf from byte 89 kept in detail.atf.partial; "
        "27 bytes of index.atf from byte 224 kept in index.atf.partial; 2 links to lost detail events cleared (see recovered.json)",
        "unreadable manifest.json kept as manifest.json.partial; a new manifest was written",
        f"{d}: status recovered",
        "verify: OK",
    ]


@pytest.mark.parametrize("argv", [[], ["--"]])
def test_record_needs_something_to_run(capsys, tmp_path, argv):
    status, _, err = run(capsys, "record", "-o", tmp_path / "s", *argv)
    assert status == 2 and "nothing to run" in err and not (tmp_path / "s").exists()


def test_record_summary_lines(capsys, tmp_path):
    from types import SimpleNamespace

    from atf2.cli.record import _children_dirs, _print_summary

    session = tmp_path / "pid_1"
    for name in ("pid_1", "pid_2", "pid_3", "other"):
        (tmp_path / name).mkdir()
    assert _children_dirs(str(session)) == ["pid_2", "pid_3"]
    assert _children_dirs(str(tmp_path / "gone" / "pid_1")) == []

    class Tracer:
        @staticmethod
        def measure_event_cost_ns():
            raise RuntimeError("no estimate here")

    index = SimpleNamespace(recorded=10, written=9, dropped=1, drops={"ring_full": 1, "pool_exhausted": 0})
    stats = SimpleNamespace(index=index, threads=[1, 2], bytes_written=1234)
    _print_summary(str(session), stats, 0.0, Tracer)
    err = capsys.readouterr().err
    assert "dropped 1 {'ring_full': 1}" in err and "nan ns/event" in err and "0% of elapsed" in err
    assert "children 2 sessions beside it: pid_2, pid_3" in err
