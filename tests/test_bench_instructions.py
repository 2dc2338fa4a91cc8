"""The overhead benchmark's instruction-count mode (atf2.bench.callgrind, overhead --instructions)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from atf2.bench import callgrind, overhead
from tests.conftest import env_without_coverage


def _dump_text(label: str | None, thread: int, total: int) -> str:
    trigger = f"Client Request: {label}" if label is not None else "Program termination"
    return textwrap.dedent(
        f"""\
        version: 1
        creator: callgrind-3.19.0
        pid: 42
        cmd:  python x.py
        part: 3
        thread: {thread}
        desc: Trigger: {trigger}
        events: Ir
        fn=(1) main
        0 {total}
        summary: {total}
        totals: {total}
        """
    )


def test_parse_and_read_dumps(tmp_path):
    files = {
        "callgrind.out.42.2-01": ("W2|ours|1|run", 1, 500),
        "callgrind.out.42.10-03": ("W2|ours|1|atf2", 3, 70),
        "callgrind.out.42-01": (None, 1, 9),
        "callgrind.out.42": ("ignored: no thread suffix", 0, 1),
        "notes.txt": ("ignored", 0, 1),
    }
    for name, (label, thread, total) in files.items():
        (tmp_path / name).write_text(_dump_text(label, thread, total))
    dumps = callgrind.read_dumps(str(tmp_path))
    assert [(d.part, d.label, d.thread, d.instructions) for d in dumps] == [
        (2, "W2|ours|1|run", 1, 500),
        (10, "W2|ours|1|atf2", 3, 70),
        (sys.maxsize, "", 1, 9),
    ]
    with pytest.raises(ValueError, match="no totals"):
        callgrind.parse_dump("thread: 1\n", 5)


def test_instruction_rows_difference_of_n_and_2n():
    def d(label, thread, n):
        return callgrind.ThreadDump(0, label, thread, n)

    # per event (1000 events): untraced 100, floor 300, ours 350, viztracer 400; atf2 threads 20
    # one-off costs (k=1 and k=2 alike) must cancel: 7000 on every count
    dumps = []
    for contender, cost in (("untraced", 100), ("floor", 300), ("ours", 350), ("viztracer", 400)):
        for k in (1, 2):
            dumps.append(d(f"W3|{contender}|{k}|run", 1, 7000 + k * 1000 * cost // 2))
            dumps.append(d(f"W3|{contender}|{k}|run", 2, 7000 + k * 1000 * cost // 2))
    for k in (1, 2):
        dumps += [d(f"W3|ours|{k}|atf2", 3, 5000 + k * 20_000), d(f"W3|ours|{k}|atf2", 4, 11), d("gap", 1, 10**9)]
    child = {"workloads": {"W3": {"events": {"0": 1005, "1": 1005, "2": 2005}, "drops": 0}}}
    (row,) = overhead.instruction_rows(dumps, child)
    assert row["events"] == 1000
    assert row["untraced_instr"] == pytest.approx(100)
    assert row["floor_instr"] == pytest.approx(200)
    assert row["value"] == pytest.approx(50)
    assert row["viztracer_instr"] == pytest.approx(100)
    assert row["ratio_vs_viztracer"] == pytest.approx(0.5)
    assert row["atf2_threads_instr"] == pytest.approx(20)
    assert row["ratio_with_atf2_threads"] == pytest.approx(0.7)
    assert (row["workload_threads"], row["atf2_threads"]) == (2, 2)


def test_client_requests_are_harmless_natively():
    assert not callgrind.running_on_valgrind()
    callgrind.dump("nothing happens")  # not under valgrind: the magic sequence is a no-op


def test_instructions_mode_skips_without_valgrind(monkeypatch):
    monkeypatch.setattr(callgrind, "valgrind", lambda: None)
    assert overhead.run_instructions(only=("W2",), n=10) is None


def test_count_instructions_runs_every_phase_natively(tmp_path):
    """The child's work, outside valgrind (its dumps do nothing): every phase runs, nothing dropped."""
    out = tmp_path / "figures.json"
    overhead.count_instructions(("W2", "W3"), 20, str(out))
    result = json.loads(out.read_text())
    assert result["on_valgrind"] is False
    for name in ("W2", "W3"):
        figures = result["workloads"][name]
        assert figures["drops"] == 0
        events = {int(k): v for k, v in figures["events"].items()}
        assert events[2] - events[1] > 0.8 * events[1] > 0  # the second run is N more events


@pytest.mark.skipif(callgrind.valgrind() is None or not callgrind.available(), reason="needs valgrind on Linux x86-64")
def test_dumps_under_callgrind_are_per_thread_and_counted(tmp_path):
    """A real callgrind run of a tiny program (no atf2 import: seconds): each thread's own labelled dump."""
    script = tmp_path / "tiny.py"
    script.write_text(
        textwrap.dedent(
            """\
            import importlib.util, sys, threading

            spec = importlib.util.spec_from_file_location("callgrind", sys.argv[1])
            callgrind = sys.modules["callgrind"] = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(callgrind)

            def fib(n):
                return n if n < 2 else fib(n - 1) + fib(n - 2)

            for _ in range(3):
                fib(14)  # warm: the adaptive interpreter specializes the code first
            callgrind.start_instrumentation()
            for k in (0, 1, 2, 3):  # 0: a warm-up run (one-off costs: the bench has one too)
                callgrind.dump("gap")
                for _ in range(max(k, 1)):
                    fib(14)
                callgrind.dump(f"main|{k}")

            def worker():
                fib(12)
                callgrind.dump("worker")

            t = threading.Thread(target=worker)
            t.start()
            t.join()
            """
        )
    )
    out = tmp_path / "cg"
    out.mkdir()
    # atf2.bench.callgrind loaded by path, without the atf2 package (numba): seconds under valgrind
    argv = [sys.executable, str(script), callgrind.__file__]
    proc = subprocess.run(
        callgrind.command(str(out), argv), env=env_without_coverage(), capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dumps = {d.label: d for d in callgrind.read_dumps(str(out)) if d.label}
    assert dumps["main|1"].thread == dumps["main|3"].thread == 1
    assert dumps["worker"].thread != 1
    c1, c2, c3 = (dumps[f"main|{k}"].instructions for k in (1, 2, 3))
    # what the bench relies on: one more run adds the same count, whatever the fixed part
    assert abs((c3 - c2) - (c2 - c1)) < 0.03 * (c2 - c1)  # measured: ~1%
    assert 0 < dumps["worker"].instructions < c2 - c1  # fib(12) < fib(14)
