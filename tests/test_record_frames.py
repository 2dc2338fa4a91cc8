"""``atf2 record`` records the program and nothing of atf2: the main thread's
trace is the program's ``<module>`` call, from its CALL at depth 0 to its
RETURN (EXCEPTION when it ends by an exception), with no runner frames around
it, no atf2 code at start or stop, and no events of atf2's own threads."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import atf2
from atf2.layout import EVENT_CALL, EVENT_EXCEPTION, EVENT_RETURN
from atf2.reader.session import SessionReader

ATF2_DIR = os.path.dirname(os.path.abspath(atf2.__file__)) + os.sep
# a frame left by an exception (3.12 included: tests/test_exception_exits.py)
UNWIND = EVENT_EXCEPTION

PROGRAM = textwrap.dedent(
    """
    import sys, threading

    def leaf(n):
        return n + 1

    def worker():
        for i in range(5):
            leaf(i)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    leaf(0)
    if sys.argv[-1] == "raise":
        raise KeyError("uncaught")
    """
)


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    d = tmp_path_factory.mktemp("frames")
    (d / "prog.py").write_text(PROGRAM)
    (d / "pkgf").mkdir()
    (d / "pkgf" / "__init__.py").write_text("def helper():\n    return 1\n")
    (d / "pkgf" / "__main__.py").write_text("import sys\nfrom pkgf import helper\nhelper()\nsys.exit(3)\n")
    return d


def record(program, out, *args):
    cmd = [sys.executable, "-m", "atf2", "record", "-q", "-o", str(out), *args]
    return subprocess.run(cmd, cwd=program, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize(
    "options, target, status, last_kind, module_file",
    [
        ([], ["prog.py"], 0, EVENT_RETURN, "prog.py"),
        (["--c-calls"], ["prog.py", "raise"], 1, UNWIND, "prog.py"),
        (["--detail", "always"], ["-m", "pkgf"], 3, UNWIND, os.path.join("pkgf", "__main__.py")),
    ],
    ids=["script", "c-calls-uncaught", "module-detail-sys-exit"],
)
def test_main_thread_is_the_program_module_only(program, tmp_path, options, target, status, last_kind, module_file):
    out = tmp_path / "s"
    rec = record(program, out, *options, *target)
    assert rec.returncode == status, rec.stderr
    with SessionReader(out) as r:
        assert r.manifest["status"] == "complete"
        names = [t["name"] for t in r.manifest["threads"]]
        assert not any(n.startswith("atf2-") for n in names), names  # no drain/io thread recorded
        main = next(t for t, m in zip(r.threads, r.manifest["threads"], strict=True) if m["name"] == "MainThread")
        ev = main.index.events
        first = r.symbol(int(ev["function_id"][0]))
        assert (int(ev["event_kind"][0]), first.name, int(ev["call_depth"][0])) == (EVENT_CALL, "<module>", 0)
        assert first.file == str(program / module_file)
        assert (int(ev["event_kind"][-1]), int(ev["function_id"][-1]), int(ev["call_depth"][-1])) == (
            last_kind,
            int(ev["function_id"][0]),
            0,
        )
        # <module> is the main thread's only frame at depth 0: it encloses every other event
        assert np.count_nonzero(ev["call_depth"] == 0) == 2
        leaked = [s for s in r.manifest["symbols"] if (s.get("file") or "").startswith(ATF2_DIR)]
        assert leaked == []
        if target[0] == "prog.py":  # the worker thread is recorded, from Thread.run on
            calls = [
                r.symbol_name(int(f))
                for t in r.threads
                for f in t.index.events["function_id"][t.index.events["event_kind"] == EVENT_CALL]
            ]
            assert calls.count("leaf") == 6


MP_PROGRAM = textwrap.dedent(
    """
    import multiprocessing as mp, sys

    def square(x):
        return x * x

    if __name__ == "__main__":
        p = mp.get_context(sys.argv[1]).Process(target=square, args=(3,))
        p.start()
        p.join()
    """
)


@pytest.mark.parametrize("method, first", [("fork", "BaseProcess._bootstrap"), ("spawn", "spawn_main")])
def test_children_record_their_work_only(program, tmp_path, method, first):
    """A forked child's trace starts where os.fork() returned in it, a spawned
    child's at spawn_main (depth 0, left by its sys.exit); neither holds atf2 code."""
    (program / "mp_prog.py").write_text(MP_PROGRAM)
    rec = record(program, tmp_path / "run" / "pid_parent", "mp_prog.py", method)
    assert rec.returncode == 0, rec.stderr
    (child,) = [p for p in (tmp_path / "run").iterdir() if p.name != "pid_parent"]
    with SessionReader(child) as r:
        assert r.manifest["status"] == "complete"
        ev = r.threads[0].index.events
        assert (int(ev["event_kind"][0]), r.symbol_name(int(ev["function_id"][0]))) == (EVENT_CALL, first)
        if method == "spawn":
            assert int(ev["call_depth"][0]) == 0
            assert (int(ev["event_kind"][-1]), r.symbol_name(int(ev["function_id"][-1]))) == (UNWIND, first)
        calls = [r.symbol_name(int(f)) for f in ev["function_id"][ev["event_kind"] == EVENT_CALL]]
        assert calls.count("square") == 1
        leaked = [s for s in r.manifest["symbols"] if (s.get("file") or "").startswith(ATF2_DIR)]
        assert leaked == []
