"""intervals() and summary() against hand-computed references."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import atf2
from atf2.analysis import (
    FLAG_EXCEPTION,
    FLAG_RECURSIVE,
    FLAG_UNCLOSED,
    FLAG_UNOPENED,
    intervals,
    summary,
)

C, R, E = atf2.EVENT_CALL, atf2.EVENT_RETURN, atf2.EVENT_EXCEPTION


def events(rows, thread=0):
    """rows: (timestamp, kind, function_id, depth)"""
    a = np.zeros(len(rows), atf2.INDEX_EVENT_DTYPE)
    for i, (t, k, f, d) in enumerate(rows):
        a[i] = (t, f, thread, k, d, atf2.NO_DETAIL)
    return a


def as_dicts(iv):
    return sorted(
        (int(r["start_ns"]), int(r["end_ns"]), int(r["exclusive_ns"]), int(r["function_id"]), int(r["flags"]),
         int(r["call_index"]), int(r["return_index"]), int(r["thread"]))
        for r in iv
    )


def by_function(rows):
    return {int(r["function_id"]): r for r in rows}


# main(1) -> a(2) -> b(3) raises; a returns; f(4) recursive f(4); main returns
NESTED = [
    (0, C, 1, 0), (10, C, 2, 1), (20, C, 3, 2), (30, E, 3, 2), (40, R, 2, 1),
    (50, C, 4, 1), (52, C, 4, 2), (55, R, 4, 2), (60, R, 4, 1), (100, R, 1, 0),
]


def test_nested_recursion_exception_intervals():
    iv = intervals(events(NESTED))
    assert as_dicts(iv) == sorted([
        (0, 100, 100 - 30 - 10, 1, 0, 0, 9, 0),
        (10, 40, 30 - 10, 2, 0, 1, 4, 0),
        (20, 30, 10, 3, FLAG_EXCEPTION, 2, 3, 0),
        (50, 60, 10 - 3, 4, 0, 5, 8, 0),
        (52, 55, 3, 4, FLAG_RECURSIVE, 6, 7, 0),
    ])
    depth = {(int(r["start_ns"])): int(r["depth"]) for r in iv}
    assert depth == {0: 0, 10: 1, 20: 2, 50: 1, 52: 2}


def test_nested_recursion_exception_summary():
    s = summary(events(NESTED))
    f = by_function(s.functions)
    assert set(f) == {1, 2, 3, 4}
    assert (f[1]["calls"], f[1]["incl_total_ns"], f[1]["excl_total_ns"]) == (1, 100, 60)
    assert (f[2]["incl_total_ns"], f[2]["excl_total_ns"], f[2]["incl_max_ns"]) == (30, 20, 30)
    assert (f[3]["exceptions"], f[3]["incl_total_ns"], f[3]["excl_total_ns"]) == (1, 10, 10)
    # recursion: inclusive counts the outermost call only (10, not 10 + 3)
    r = f[4]
    assert (r["calls"], r["recursive"], r["incl_total_ns"], r["incl_max_ns"]) == (2, 1, 10, 10)
    assert r["incl_mean_ns"] == 10.0
    assert (r["excl_total_ns"], r["excl_max_ns"], r["excl_mean_ns"]) == (10, 7, 5.0)
    # exclusive times partition the busy time
    assert s.functions["excl_total_ns"].sum() == 100
    (t,) = s.threads
    assert (t["thread"], t["events"], t["calls"], t["busy_ns"], t["span_ns"]) == (0, 10, 5, 100, 100)
    assert t["busy_fraction"] == 1.0
    # default sort: inclusive total, largest first
    assert list(s.functions["function_id"]) == [1, 2, 3, 4]  # 100, 30, 10, 10 (ties by id)


def test_unbalanced_edges():
    # trace starts inside g(7) called by h(8): b(3) runs, g returns, h returns,
    # then x(9) is called and never returns
    rows = [
        (100, C, 3, 2), (110, R, 3, 2), (120, R, 7, 1), (150, R, 8, 0),
        (160, C, 9, 0), (170, C, 3, 1), (175, R, 3, 1), (200, C, 5, 1),
    ]
    iv = intervals(events(rows))
    assert as_dicts(iv) == sorted([
        (100, 110, 10, 3, 0, 0, 1, 0),
        (100, 120, 20 - 10, 7, FLAG_UNOPENED, -1, 2, 0),
        (100, 150, 50 - 20, 8, FLAG_UNOPENED, -1, 3, 0),
        (170, 175, 5, 3, 0, 5, 6, 0),
        (200, 200, 0, 5, FLAG_UNCLOSED, 7, -1, 0),
        (160, 200, 40 - 5 - 0, 9, FLAG_UNCLOSED, 4, -1, 0),
    ])
    s = summary(events(rows))
    f = by_function(s.functions)
    assert (f[7]["unopened"], f[8]["unopened"], f[9]["unclosed"], f[5]["unclosed"]) == (1, 1, 1, 1)
    assert f[3]["calls"] == 2 and f[3]["incl_total_ns"] == 15
    (t,) = s.threads
    assert (t["unopened"], t["unclosed"]) == (2, 2)
    # busy: [100, 150] covered by the unopened calls, then [160, 200]
    assert t["busy_ns"] == 50 + 40
    assert s.functions["excl_total_ns"].sum() == t["busy_ns"]


def test_return_of_outer_call_closes_the_inner_ones():
    # a(1) -> b(2) -> c(3); the returns of c and b were lost; a returns
    rows = [(0, C, 1, 0), (10, C, 2, 1), (20, C, 3, 2), (50, R, 1, 0)]
    assert as_dicts(intervals(events(rows))) == sorted([
        (20, 50, 30, 3, FLAG_UNCLOSED, 2, -1, 0),
        (10, 50, 10, 2, FLAG_UNCLOSED, 1, -1, 0),
        (0, 50, 10, 1, 0, 0, 3, 0),
    ])


def test_unopened_return_nested_in_an_open_call():
    # a(1) open; q(6) returns without a call seen (lost); a returns
    rows = [(0, C, 1, 0), (5, C, 2, 1), (8, R, 2, 1), (20, R, 6, 1), (30, R, 1, 0)]
    assert as_dicts(intervals(events(rows))) == sorted([
        (5, 8, 3, 2, 0, 1, 2, 0),
        (0, 20, 17, 6, FLAG_UNOPENED, -1, 3, 0),
        (0, 30, 10, 1, 0, 0, 4, 0),
    ])


def test_several_threads_and_merged_input():
    t0 = events([(0, C, 1, 0), (10, C, 2, 1), (15, R, 2, 1), (40, R, 1, 0)], thread=0)
    t1 = events([(5, C, 2, 0), (25, R, 2, 0), (30, C, 1, 0), (31, R, 1, 0)], thread=1)
    both = np.concatenate([t0, t1])
    s = summary(both, sort=None)
    f = by_function(s.functions)
    assert (f[1]["calls"], f[1]["incl_total_ns"], f[1]["incl_max_ns"], f[1]["excl_total_ns"]) == (2, 41, 40, 36)
    assert (f[2]["calls"], f[2]["incl_total_ns"], f[2]["incl_max_ns"]) == (2, 25, 20)
    per = {(int(r["thread"]), int(r["function_id"])): int(r["incl_total_ns"]) for r in s.per_thread}
    assert per == {(0, 1): 40, (0, 2): 5, (1, 2): 20, (1, 1): 1}
    busy = {int(r["thread"]): int(r["busy_ns"]) for r in s.threads}
    assert busy == {0: 40, 1: 21}
    # a merged array (thread column, interleaved) gives the same answer
    merged = np.zeros(8, atf2.INDEX_EVENT_DTYPE.descr + [("thread", "<u4"), ("seq", "<u8")])
    order = np.argsort(both["timestamp_ns"], kind="stable")
    for name in atf2.INDEX_EVENT_DTYPE.names:
        merged[name] = both[name][order]
    merged["thread"] = both["thread_id"][order]
    assert as_dicts(intervals(merged)) == as_dicts(intervals(both))
    assert {int(r["thread"]) for r in intervals(both, threads=[1])} == {1}


def test_sort_and_top():
    s = summary(events(NESTED), sort="excl_total_ns", top=2)
    assert list(s.functions["function_id"]) == [1, 2]
    s = summary(events(NESTED), sort="calls", top=1)
    assert list(s.functions["function_id"]) == [4]
    assert len(s.per_thread) == 1
    with pytest.raises(ValueError):
        summary(events(NESTED), sort="nope")


def test_unknown_kinds_are_counted_and_skipped():
    rows = [(0, C, 1, 0), (1, 0, 1, 0), (2, 99, 5, 0), (3, R, 1, 0)]
    s = summary(events(rows))
    assert s.threads["bad_events"][0] == 2
    assert s.functions["calls"].tolist() == [1]


def test_empty_inputs():
    s = summary(np.zeros(0, atf2.INDEX_EVENT_DTYPE))
    assert len(s.functions) == len(s.per_thread) == len(s.threads) == 0
    assert len(intervals(np.zeros(0, atf2.INDEX_EVENT_DTYPE))) == 0
    with pytest.raises(TypeError):
        intervals(np.zeros(3, [("x", "u8")]))


def reference_intervals(rows):
    """Straightforward pairing for well-nested traces (list-based)."""
    out, stack = [], []
    for i, (t, k, f, _d) in enumerate(rows):
        if k == C:
            stack.append([t, f, 0, i])
        else:
            start, fn, child, ci = stack.pop()
            assert fn == f
            if stack:
                stack[-1][2] += t - start
            out.append((start, t, t - start - child, fn, FLAG_EXCEPTION if k == E else 0, ci, i, 0))
    return out


@st.composite
def nested_traces(draw):
    rows, stack, t = [], [], 0
    for _ in range(draw(st.integers(0, 60))):
        t += draw(st.integers(0, 5))
        if stack and draw(st.booleans()):
            f = stack.pop()
            rows.append((t, draw(st.sampled_from([R, R, E])), f, len(stack)))
        else:
            f = draw(st.integers(1, 6))
            rows.append((t, C, f, len(stack)))
            stack.append(f)
    while stack:
        t += draw(st.integers(0, 5))
        f = stack.pop()
        rows.append((t, R, f, len(stack)))
    return rows


@settings(max_examples=60, deadline=None)
@given(nested_traces(), st.integers(1, 7))
def test_matches_reference_and_chunking_is_invisible(rows, chunk):
    ev = events(rows)
    iv = intervals(ev, chunk_size=chunk)
    got = [r[:4] + (r[4] & ~FLAG_RECURSIVE,) + r[5:] for r in as_dicts(iv)]
    assert got == sorted(reference_intervals(rows))
    s1 = summary(ev)
    s2 = summary(ev, chunk_size=chunk)
    assert s1.functions.tobytes() == s2.functions.tobytes()
    if rows:
        assert s1.functions["excl_total_ns"].sum() == s1.threads["busy_ns"].sum()


def test_session_reader_delegations(tmp_path):
    from atf2.manifest import write_manifest
    from atf2.writer import ThreadWriter

    rows = {0: NESTED, 1: [(3, C, 1, 0), (13, C, 2, 1), (14, R, 2, 1), (20, R, 1, 0)]}
    entries = []
    for tid, r in rows.items():
        with ThreadWriter(tmp_path, tid) as w:
            w.write_events(events(r, thread=tid))
            w.finalize()
        entries.append({"id": tid})
    write_manifest(tmp_path, {"format_version": "2.1", "status": "complete", "threads": entries})
    both = np.concatenate([events(r, thread=t) for t, r in rows.items()])
    with atf2.SessionReader(tmp_path) as reader:
        assert as_dicts(reader.intervals()) == as_dicts(intervals(both))
        s, ref = reader.summary(sort="calls"), summary(both, sort="calls")
        for name in ("functions", "per_thread", "threads"):
            assert getattr(s, name).tobytes() == getattr(ref, name).tobytes()
        assert as_dicts(intervals(reader.merged())) == as_dicts(intervals(both))
