"""The query commands: info, dump, summary, export, verify, recover (in-process and one real process)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_export import make_session
from test_verify_recover import _killed_session, patch

import atf2.cli as cli

FIXTURE = os.path.join(os.path.dirname(__file__), "data", "reference-c-writer", "s2")


@pytest.fixture(autouse=True)
def _available_commands(monkeypatch):
    # commands owned by other work in progress may not exist yet
    available = tuple(n for n in cli.COMMANDS if importlib.util.find_spec(f"atf2.cli.{n}") is not None)
    monkeypatch.setattr(cli, "COMMANDS", available)


def run(capsys, *argv):
    status = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def session(tmp_path):
    return make_session(tmp_path / "s")


def test_info(capsys, session):
    status, out, err = run(capsys, "info", session)
    assert status == 0 and err == ""
    assert "complete" in out and "MainThread" in out and "worker" in out and "4001" in out
    status, out, _ = run(capsys, "info", session, "--json")
    info = json.loads(out)
    assert info["status"] == "complete" and info["index_events"] == 12 and info["detail_events"] == 3
    assert [t["index_events"] for t in info["threads"]] == [9, 3]
    assert info["threads"][0]["index_bytes"] == os.path.getsize(os.path.join(session, "thread_0", "index.atf"))


def test_dump_order_names_depth_details(capsys, session):
    status, out, _ = run(capsys, "dump", session)
    assert status == 0
    lines = out.splitlines()
    assert len(lines) == 12
    times = [int(line.split()[0].replace(",", "")) for line in lines]
    assert times == sorted(times)
    work_call = next(line for line in lines if "-> Job.work" in line)
    assert "(n=2, label='x')" in work_call and "t0" in work_call
    assert work_call.index("->") > next(line for line in lines if "-> main" in line).index("->")  # indented by depth
    assert any("<- Job.work  = 42" in line for line in lines)
    assert any("[3 bytes 0102ff]" in line for line in lines)


def test_dump_filters_and_json(capsys, session):
    status, out, _ = run(capsys, "dump", session, "--thread", 1, "--json")
    recs = [json.loads(line) for line in out.splitlines()]
    assert {r["thread"] for r in recs} == {1} and len(recs) == 3
    status, out, _ = run(capsys, "dump", session, "--function", "Job.*", "--json")
    recs = [json.loads(line) for line in out.splitlines()]
    assert {r["name"] for r in recs} == {"Job.work"} and len(recs) == 3
    assert recs[0]["detail"]["args"] == [["n", "2"], ["label", "'x'"]]
    status, out, _ = run(capsys, "dump", session, "--from", "+100", "--to", "+1000", "--json")
    ts = [json.loads(line)["timestamp_ns"] for line in out.splitlines()]
    assert ts and all(1_000_000_101 <= t <= 1_000_001_001 for t in ts)
    status, out, _ = run(capsys, "dump", session, "--limit", 4)
    assert len(out.splitlines()) == 4
    status, _, err = run(capsys, "dump", session, "--thread", 9)
    assert status == 2 and "no thread 9" in err


def test_summary(capsys, session):
    status, out, _ = run(capsys, "summary", session, "--sort", "excl", "--per-thread")
    assert status == 0
    assert "Job.work" in out and "unclosed" in out and "unopened" in out and "thread 1:" in out
    status, out, _ = run(capsys, "summary", session, "--json", "--top", 1, "--sort", "calls")
    doc = json.loads(out)
    assert len(doc["functions"]) == 1 and doc["functions"][0]["name"] == "leaf"
    assert doc["functions"][0]["calls"] == 3  # two on thread 0, one unopened on thread 1
    busy = {t["thread"]: t["busy_ns"] for t in doc["threads"]}
    assert busy == {0: 2001 + 1000, 1: 30}  # thread 1: the unopened leaf ends at its first event


def test_export(capsys, session, tmp_path):
    out_path = tmp_path / "t.json"
    status, out, _ = run(capsys, "export", session, "--format", "chrome", "-o", out_path, "--no-progress")
    assert status == 0 and "7 slices" in out
    doc = json.loads(Path(out_path).read_text())
    assert sum(e["ph"] == "X" for e in doc["traceEvents"]) == 7
    status, out, _ = run(capsys, "export", session, "-o", out_path, "--json")
    assert json.loads(out)["intervals"] == 7


def test_verify_and_recover(capsys, tmp_path):
    status, out, _ = run(capsys, "verify", FIXTURE)
    assert status == 0 and "OK" in out and "not recorded" in out
    root, _ = _killed_session(tmp_path)
    status, out, _ = run(capsys, "verify", root, "--json")
    doc = json.loads(out)
    assert status == 1 and not doc["ok"] and any("no footer" in p["message"] for p in doc["problems"])
    status, out, _ = run(capsys, "recover", root)
    assert status == 0 and "kept in index.atf.partial" in out and "verify: OK" in out
    status, out, _ = run(capsys, "recover", root)
    assert status == 0 and "nothing to recover" in out
    assert run(capsys, "verify", root)[0] == 0


@pytest.mark.parametrize("command", ["info", "dump", "summary", "export", "recover"])
def test_corrupt_session_gives_one_clear_line(capsys, session, tmp_path, command):
    patch(os.path.join(session, "thread_1", "index.atf"), 0, b"JUNK")
    extra = ["-o", tmp_path / "x.json"] if command == "export" else []
    status, _out, err = run(capsys, command, session, *extra)
    assert status == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "thread_1/index.atf" in err and "byte 0" in err


def test_verify_corrupt_session_lists_problems(capsys, session):
    patch(os.path.join(session, "thread_1", "index.atf"), 0, b"JUNK")
    status, out, err = run(capsys, "verify", session)
    assert status == 1 and "bad magic" in out and "Traceback" not in err


def test_missing_session_and_unwritable_output(capsys, session, tmp_path):
    status, _, err = run(capsys, "summary", tmp_path / "nope")
    assert status == 2 and "no such session directory" in err
    status, _, err = run(capsys, "export", session, "-o", tmp_path / "no" / "dir" / "t.json")
    assert status == 2 and "Traceback" not in err and err.count("\n") == 1


def test_real_process_exit_status_and_no_traceback(session):
    patch(os.path.join(session, "thread_0", "index.atf"), 0, b"JUNK")
    code = (
        "import importlib.util, sys; import atf2.cli as c; "
        "c.COMMANDS = tuple(n for n in c.COMMANDS if importlib.util.find_spec('atf2.cli.' + n)); "
        "sys.exit(c.main(sys.argv[1:]))"
    )
    for command, want in (("summary", 2), ("verify", 1)):
        proc = subprocess.run([sys.executable, "-c", code, command, session], capture_output=True, text=True, timeout=300)
        assert proc.returncode == want, proc.stderr
        assert "Traceback" not in proc.stderr


def test_info_reports_drops_per_lane(capsys, session):
    with open(os.path.join(session, "manifest.json")) as f:
        m = json.load(f)
    m["threads"][1]["dropped"] = {"ring_full": 5}
    m["threads"][1]["detail_dropped"] = {"disk": 2}
    with open(os.path.join(session, "manifest.json"), "w") as f:
        json.dump(m, f)
    status, out, _ = run(capsys, "info", session)
    assert status == 0 and "index lane: ring_full: 5" in out and "detail lane: disk: 2" in out
    status, out, _ = run(capsys, "info", session, "--json")
    assert status == 0 and json.loads(out)["dropped"] == {"index": {"ring_full": 5}, "detail": {"disk": 2}}
