"""Killed recorder: SIGKILL an `atf2 record` run mid-way. The session opens,
every event drained before the kill is there (the program writes a progress
counter to a side file: every call it counted more than a few flush intervals
before the kill must be in the trace), `atf2 verify` explains the state,
`atf2 recover` makes it whole, and the recovered files pass verification.
"""

import json
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import env_without_coverage

import atf2

PROGRAM = textwrap.dedent("""
    import os, sys, threading, time

    progress_path = sys.argv[1]

    def work(i):
        return i + 1

    def worker():
        i = 0
        while True:
            work(i)
            i += 1
            if i % 500 == 0:
                time.sleep(0.001)

    threading.Thread(target=worker, name="worker", daemon=True).start()
    i = 0
    while True:
        work(i)
        i += 1
        if i % 500 == 0:
            # the count of finished work() calls, replaced atomically
            with open(progress_path + ".tmp", "w") as f:
                f.write(str(i))
            os.replace(progress_path + ".tmp", progress_path)
            time.sleep(0.001)
""")

#: how long after reading the progress counter the recorder is killed: many
#: flush intervals (20 ms by default), so that the events counted were drained
SETTLE_S = 1.0


def read_progress(path):
    try:
        return int(path.read_text())
    except (OSError, ValueError):
        return 0


def cli(*argv):
    """``atf2 ARGV...`` in this process (the CLI's own entry point): (status, stdout, stderr)."""
    import contextlib
    import io

    from atf2.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(list(argv))
    return subprocess.CompletedProcess(argv, status, out.getvalue(), err.getvalue())


def count_work_calls(reader, thread_name):
    entries = {e["id"]: e for e in reader.manifest["threads"]}
    total = 0
    for t in reader.threads:
        if entries.get(t.thread_id, {}).get("name") != thread_name:
            continue
        ev = t.index.events
        fids = {f for f in set(ev["function_id"].tolist()) if reader.symbol_name(f).split(".")[-1] == "work"}
        for f in fids:
            total += int(((ev["function_id"] == f) & (ev["event_kind"] == 1)).sum())
    return total


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("killed")
    script = tmp / "program.py"
    script.write_text(PROGRAM)
    progress = tmp / "progress"
    d = tmp / "session"
    proc = subprocess.Popen([sys.executable, "-m", "atf2", "record", "-o", str(d), str(script), str(progress)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp,
                            env=env_without_coverage())  # SIGKILLed: see env_without_coverage
    try:
        deadline = time.monotonic() + 120
        while read_progress(progress) < 20_000:
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the traced program made no progress"
            time.sleep(0.05)
        counted = read_progress(progress)
        time.sleep(SETTLE_S)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    # the last count the program wrote: it had made fewer than 500 calls more
    return {"dir": d, "counted": counted, "final": read_progress(progress)}


def test_killed_session_opens_with_everything_drained(killed):
    d = killed["dir"]
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["status"] == "recording"
    with atf2.SessionReader(d) as r:
        assert r.recovered
        names = {e["name"] for e in r.manifest["threads"]}
        assert {"MainThread", "worker"} <= names
        # every work() call the program counted before SETTLE_S is in the trace
        assert killed["counted"] <= count_work_calls(r, "MainThread") <= killed["final"] + 500
        assert count_work_calls(r, "worker") > 0
        before = r.event_count()
        assert len(r.merged()) == before
    killed["events_before_recovery"] = before


def test_verify_explains_then_recover_makes_it_whole(killed):
    d = str(killed["dir"])
    v = cli("verify", d)
    assert v.returncode == 1
    assert "recording" in v.stdout and "atf2 recover" in v.stdout
    rec = cli("recover", d)
    assert rec.returncode == 0, rec.stderr
    v2 = cli("verify", "--json", d)
    assert v2.returncode == 0, v2.stdout
    assert json.loads(v2.stdout)["ok"] is True
    assert atf2.verify_session(d) == []
    with atf2.SessionReader(d) as r:
        assert r.status == "recovered" and not any(t.recovered for t in r.threads)
        assert count_work_calls(r, "MainThread") >= killed["counted"]
        if "events_before_recovery" in killed:  # recovery keeps every complete event
            assert r.event_count() == killed["events_before_recovery"]
        for t in r.threads:
            t.verify()  # footers with CRCs written by recovery
            assert (t.index.footer is not None and t.index.footer["checksum"] != 0) or len(t.index) == 0
    again = cli("recover", d)  # idempotent
    assert again.returncode == 0
