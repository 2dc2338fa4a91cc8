"""``atf2 record``: runs programs exactly like ``python`` and records them (children included)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from atf2.cli.record import default_session_dir
from atf2.layout import EVENT_CALL
from atf2.reader.session import SessionReader

PROGRAM = textwrap.dedent(
    """
    import sys, threading

    def work(n):
        return sum(i * i for i in range(n))

    def fail():
        raise RuntimeError("uncaught in the program")

    if __name__ == "__main__":
        print("argv", sys.argv[1:], "main", __name__, "path0", sys.path[0] == __import__("os").path.dirname(__import__("os").path.realpath(__file__)))
        threads = [threading.Thread(target=work, args=(500,)) for _ in range(2)]
        for t in threads:
            t.start()
        mode = sys.argv[-1]
        if mode == "raise":
            fail()
        if mode == "exit":
            sys.exit(7)
        if mode == "exit-text":
            sys.exit("bye")
    """
)

MP_PROGRAM = textwrap.dedent(
    """
    import multiprocessing as mp, sys

    def square(x):
        return x * x

    if __name__ == "__main__":
        ctx = mp.get_context(sys.argv[1])
        p = ctx.Process(target=square, args=(3,))
        p.start()
        p.join()
        print("child exit", p.exitcode)
    """
)


def run(args, cwd, **kw):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=300, **kw)


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    d = tmp_path_factory.mktemp("prog")
    (d / "prog.py").write_text(PROGRAM)
    (d / "mp_prog.py").write_text(MP_PROGRAM)
    (d / "pkgmod").mkdir()
    (d / "pkgmod" / "__init__.py").write_text("")
    (d / "pkgmod" / "__main__.py").write_text("import sys\nprint('module argv', sys.argv[1:], __name__)\nsys.exit(3)\n")
    return d


def calls_of(session_dir, name):
    with SessionReader(session_dir) as r:
        n = 0
        for t in r.threads:
            ev = t.index.events
            n += sum(1 for f in ev["function_id"][ev["event_kind"] == EVENT_CALL] if r.symbol_name(f) == name)
        return n, len(r.threads), r.manifest["status"]


@pytest.mark.parametrize(
    "mode, status, stderr_part",
    [("", 0, None), ("exit", 7, None), ("exit-text", 1, "bye"), ("raise", 1, "RuntimeError: uncaught in the program")],
)
def test_script_runs_like_python(program, tmp_path, mode, status, stderr_part):
    args = ["prog.py", "a b", "--flag"] + ([mode] if mode else [])
    plain = run(args, program)
    out = tmp_path / "s"
    rec = run(["-m", "atf2", "record", "-o", str(out), *args], program)
    assert plain.returncode == status
    assert rec.returncode == status
    assert rec.stdout == plain.stdout
    if stderr_part:
        assert stderr_part in rec.stderr
    if mode == "raise":
        # the traceback starts at the program, exactly as python prints it
        tb = plain.stderr.strip()
        assert tb in rec.stderr
        assert "atf2" not in rec.stderr.split("atf2 record:")[0]
    assert "atf2 record: session" in rec.stderr and "dropped 0" in rec.stderr
    n, threads, state = calls_of(out, "work")
    assert (n, threads, state) == (2, 3, "complete")


def test_module_runs_like_python_m(program, tmp_path):
    plain = run(["-m", "pkgmod", "x"], program)
    rec = run(["-m", "atf2", "record", "-q", "-o", str(tmp_path / "s"), "-m", "pkgmod", "x"], program)
    assert plain.returncode == rec.returncode == 3
    assert rec.stdout == plain.stdout == "module argv ['x'] __main__\n"
    assert rec.stderr == ""  # -q: no summary


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_children_get_their_own_sessions(program, tmp_path, method):
    parent = tmp_path / "session_x" / "pid_parent"
    rec = run(["-m", "atf2", "record", "-q", "-o", str(parent), "mp_prog.py", method], program)
    assert rec.returncode == 0, rec.stderr
    assert rec.stdout == "child exit 0\n"
    children = [p for p in (tmp_path / "session_x").iterdir() if p.name != "pid_parent"]
    assert len(children) >= 1 and all(p.name.startswith("pid_") for p in children)
    squares = [calls_of(p, "square") for p in children]
    assert any(n == 1 and state == "complete" for n, _, state in squares), squares
    assert calls_of(parent, "square")[0] == 0


def test_default_dir_and_errors(program, tmp_path):
    d = default_session_dir()
    parts = d.split(os.sep)
    assert parts[0] == "atf2_traces" and parts[1].startswith("session_") and parts[2] == f"pid_{os.getpid()}"
    rec = run(["-m", "atf2", "record", "-o", str(tmp_path / "s"), "no_such_script.py"], program)
    assert rec.returncode == 2 and "no_such_script.py" in rec.stderr and "Traceback" not in rec.stderr
    rec = run(["-m", "atf2", "record", "-q", "prog.py"], program)
    assert rec.returncode == 0
    made = list((program / "atf2_traces").iterdir())
    assert len(made) == 1 and made[0].name.startswith("session_")
    assert next(p.name for p in made[0].iterdir()).startswith("pid_")
