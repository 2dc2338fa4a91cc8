"""Chrome Trace Event Format export: fields viewers need, exact times, per-thread nesting."""

import json
import os
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

import atf2
from atf2 import layout as L
from atf2.export import export_chrome
from atf2.manifest import write_manifest
from atf2.payload import PayloadEncoder
from atf2.reader import SessionReader
from atf2.writer import DetailBatch, ThreadWriter

C, R, E = atf2.EVENT_CALL, atf2.EVENT_RETURN, atf2.EVENT_EXCEPTION
MOD = 3 << 32
MAIN, WORK, LEAF = MOD | 0, MOD | 1, MOD | 2

# thread 0: main -> work(2, "x") -> leaf raises; work returns 42; main returns;
# then work is called and never returns. Times in ns, deliberately not round.
T0 = [
    (1_000_000_001, C, MAIN, 0), (1_000_000_123, C, WORK, 1), (1_000_000_500, C, LEAF, 2),
    (1_000_000_777, E, LEAF, 2), (1_000_001_001, R, WORK, 1), (1_000_002_002, R, MAIN, 0),
    (1_000_003_000, C, WORK, 0), (1_000_003_999, C, LEAF, 1), (1_000_004_000, R, LEAF, 1),
]
# thread 1 starts inside leaf (its CALL is before the trace)
T1 = [(1_000_000_050, R, LEAF, 3), (1_000_000_060, C, MAIN, 2), (1_000_000_090, R, MAIN, 2)]


def events(rows, thread):
    a = np.zeros(len(rows), atf2.INDEX_EVENT_DTYPE)
    for i, (t, k, f, d) in enumerate(rows):
        a[i] = (t, f, thread, k, d, atf2.NO_DETAIL)
    return a


def make_session(root):
    enc = PayloadEncoder()
    root = str(root)
    os.makedirs(root, exist_ok=True)
    w = ThreadWriter(root, 0, L.CLOCK_BOOTTIME)
    payloads = [None, enc.call(WORK, [2, "x"]), None, None, enc.return_(WORK, 42), None, None, None, None]
    flags = [L.DETAIL_PAYLOAD_VERSION if p is not None else 0 for p in payloads]
    w.write_events(events(T0, 0), DetailBatch.from_payloads(payloads, flags))
    s0 = w.finalize()
    w.close()
    w = ThreadWriter(root, 1, L.CLOCK_BOOTTIME)
    w.write_events(events(T1, 1), [None, b"\x01\x02\xff", None])  # opaque bytes (flags 0)
    s1 = w.finalize()
    w.close()
    threads = []
    for s, name in ((s0, "MainThread"), (s1, "worker")):
        threads.append({"id": s["thread_id"], "has_detail": s["has_detail"], "index_events": s["index_events"],
                        "detail_events": s["detail_events"], "time_start_ns": s["time_start_ns"],
                        "time_end_ns": s["time_end_ns"], "os_thread_id": 4000 + s["thread_id"], "name": name})
    write_manifest(root, {
        "format_version": "2.1", "status": "complete", "clock_type": L.CLOCK_BOOTTIME, "threads": threads,
        "modules": [{"id": 3, "name": "app", "path": "/app.py"}],
        "symbols": [
            {"function_id": MAIN, "module_id": 3, "name": "main", "qualname": "main", "file": "/app.py", "line": 1},
            {"function_id": WORK, "module_id": 3, "name": "work", "qualname": "Job.work", "file": "/app.py", "line": 5,
             "params": ["n", "label"]},
            {"function_id": LEAF, "module_id": 3, "name": "leaf", "qualname": "leaf", "file": "/app.py", "line": 9},
        ],
    })
    return root


def load(path):
    with open(path) as f:
        return json.load(f, parse_float=Decimal)


def check_trace_event_format(doc):
    """What Perfetto / chrome://tracing need from a JSON trace."""
    assert isinstance(doc, dict) and isinstance(doc["traceEvents"], list)
    for ev in doc["traceEvents"]:
        assert ev["ph"] in ("X", "M")
        assert isinstance(ev["name"], str) and ev["name"]
        assert isinstance(ev["pid"], int) and isinstance(ev["tid"], int)
        if ev["ph"] == "X":
            assert isinstance(ev["ts"], (int, Decimal)) and isinstance(ev["dur"], (int, Decimal))
            assert ev["dur"] >= 0
            assert isinstance(ev.get("cat", ""), str)
            assert isinstance(ev.get("args", {}), dict)
        else:
            assert isinstance(ev["args"], dict)
    # per thread: every pair of X events is nested or disjoint
    by_tid = {}
    for ev in doc["traceEvents"]:
        if ev["ph"] == "X":
            by_tid.setdefault((ev["pid"], ev["tid"]), []).append((ev["ts"], ev["ts"] + ev["dur"]))
    for spans in by_tid.values():
        spans.sort(key=lambda s: (s[0], -s[1]))
        stack = []
        for start, end in spans:
            while stack and stack[-1] <= start and not (stack[-1] == start == end):
                stack.pop()
            assert not stack or end <= stack[-1], f"span {start}..{end} overlaps its parent ending {stack[-1]}"
            stack.append(end)


def test_export_session(tmp_path):
    root = make_session(tmp_path / "s")
    out = tmp_path / "trace.json"
    with SessionReader(root) as reader:
        result = reader.export_chrome(out)
    assert result["events"] == 12 and result["intervals"] == 7 and result["bytes"] == os.path.getsize(out)
    doc = load(out)
    check_trace_event_format(doc)
    meta = {(e["name"], e["tid"]): e["args"] for e in doc["traceEvents"] if e["ph"] == "M"}
    assert meta[("thread_name", 0)] == {"name": "MainThread (os 4000)"}
    assert meta[("thread_name", 1)] == {"name": "worker (os 4001)"}
    assert meta[("process_name", 0)]["name"].endswith("s")
    xs = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert {e["name"] for e in xs} == {"main", "Job.work", "leaf"} and {e["cat"] for e in xs} == {"app"}
    origin = 1_000_000_001
    assert doc["otherData"]["time_origin_ns"] == origin
    spans = {(e["tid"], e["name"], e["ts"]): e for e in xs}
    # exact ns: ts and dur are microseconds with three decimals
    work = spans[(0, "Job.work", Decimal(123 - 1) / 1000)]
    assert work["dur"] == Decimal(1001 - 123) / 1000
    assert work["args"]["call"] == {"args": {"n": 2, "label": "x"}}
    assert work["args"]["return"] == {"return_value": 42}
    leaf = spans[(0, "leaf", Decimal(500 - 1) / 1000)]
    assert leaf["args"]["exception_exit"] is True and leaf["dur"] == Decimal("0.277")
    # the edges: thread 1's leaf began before the trace, thread 0's last work never ended
    unopened = spans[(1, "leaf", Decimal(50 - 1) / 1000)]
    assert unopened["args"]["unopened"] is True and unopened["dur"] == 0
    unclosed = spans[(0, "Job.work", Decimal(3000 - 1) / 1000)]
    assert unclosed["args"]["unclosed"] is True and unclosed["dur"] == Decimal("1.000")
    # opaque detail payloads are given as hex
    main1 = spans[(1, "main", Decimal(60 - 1) / 1000)]
    assert main1["args"]["call"] == {"payload_hex": "0102ff"}


def test_export_absolute_times_threads_and_chunking(tmp_path):
    root = make_session(tmp_path / "s")
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    export_chrome(root, a, relative=False)
    export_chrome(root, b, relative=False, chunk_size=2)
    assert Path(a).read_text() == Path(b).read_text()
    doc = load(a)
    ts = sorted(e["ts"] for e in doc["traceEvents"] if e["ph"] == "X")
    assert ts[0] == Decimal(1_000_000_001) / 1000
    c = tmp_path / "c.json"
    export_chrome(root, c, threads=[1], details=False)
    doc = load(c)
    check_trace_event_format(doc)
    xs = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert {e["tid"] for e in xs} == {1} and all("call" not in e["args"] for e in xs)


def test_export_event_array_and_progress(tmp_path, capsys):
    ev = np.concatenate([events(T0, 0), events(T1, 1)])
    out = tmp_path / "arr.json"
    result = export_chrome(ev, out, progress=True, chunk_size=4)
    assert "100.0% (12/12 events)" in capsys.readouterr().err
    doc = load(out)
    check_trace_event_format(doc)
    assert result["intervals"] == 7
    assert {e["name"] for e in doc["traceEvents"] if e["ph"] == "X"} == {f"0x{f:x}" for f in (MAIN, WORK, LEAF)}


def test_export_reference_session(tmp_path):
    out = tmp_path / "s2.json"
    result = export_chrome(os.path.join(os.path.dirname(__file__), "data", "reference-c-writer", "s2"), out)
    assert result["events"] == 40_000
    doc = load(out)
    check_trace_event_format(doc)
    xs = [e for e in doc["traceEvents"] if e["ph"] == "X"]
    assert len(xs) == result["intervals"]
    assert any("payload_hex" in e["args"].get("call", {}) for e in xs)


def test_export_failure_leaves_no_partial_file(tmp_path):
    with pytest.raises(atf2.AtfV2Error):
        export_chrome(tmp_path / "nothing-here", tmp_path / "x.json")
    assert os.listdir(tmp_path) == []
