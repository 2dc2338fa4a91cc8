"""Round trips of hypothesis-generated sessions: write, read back, compare."""

import tempfile
import zlib
from pathlib import Path
from unittest import mock

import numpy as np
from hypothesis import example, given, settings
from hypothesis import strategies as st

import atf2
import atf2.writer as W
from atf2.manifest import write_manifest

U64 = 2**64 - 1


@st.composite
def batch(draw, max_events=40):
    """(timestamp deltas, function ids, kinds, depths, payloads or None per event, flags)"""
    n = draw(st.integers(0, max_events))
    deltas = draw(st.lists(st.sampled_from([0, 0, 1, 2, 7, 1000, 2**20]), min_size=n, max_size=n))
    fids = draw(st.lists(st.integers(0, U64), min_size=n, max_size=n))
    kinds = draw(st.lists(st.integers(1, 3), min_size=n, max_size=n))
    depths = draw(st.lists(st.integers(0, 2**32 - 1), min_size=n, max_size=n))
    with_details = draw(st.booleans())
    payloads = [
        draw(st.one_of(st.none(), st.binary(min_size=0, max_size=77))) if with_details else None for _ in range(n)
    ]
    flags = draw(st.lists(st.integers(0, 0xFFFF), min_size=n, max_size=n))
    as_list = draw(st.booleans())
    return deltas, fids, kinds, depths, payloads, flags, as_list


session_strategy = st.dictionaries(
    st.integers(0, 40), st.lists(batch(), max_size=5), max_size=4
).map(lambda d: dict(sorted(d.items())))


def build(tid, batches, t_start):
    """Turn drawn batches into (events, details) pairs and the expected records."""
    t = t_start
    out, expected_idx, expected_det = [], [], []
    seq = 0
    for deltas, fids, kinds, depths, payloads, flags, as_list in batches:
        n = len(deltas)
        ev = np.zeros(n, dtype=atf2.INDEX_EVENT_DTYPE)
        for i in range(n):
            t += deltas[i]
            ev[i] = (t, fids[i], 12345, kinds[i], depths[i], 7)  # thread_id/detail_seq are the writer's
        if as_list or not any(p is not None for p in payloads):
            details = payloads if any(p is not None for p in payloads) else None
            det_flags = [0] * n
        else:
            pos = [i for i, p in enumerate(payloads) if p is not None]
            parts = [payloads[i] for i in pos]
            offsets = np.zeros(len(pos) + 1, dtype=np.int64)
            np.cumsum([len(p) for p in parts], out=offsets[1:])
            details = W.DetailBatch(
                np.array(pos, dtype=np.int64), np.frombuffer(b"".join(parts), dtype=np.uint8), offsets,
                None, np.array([flags[i] for i in pos], dtype=np.uint16),
            )
            det_flags = flags
        base = len(expected_idx)
        for i in range(n):
            link = 0xFFFFFFFF
            if payloads[i] is not None:
                link = seq
                etype = 3 if kinds[i] == 1 else 4
                expected_det.append((24 + len(payloads[i]), etype, det_flags[i], base + i, tid, int(ev[i]["timestamp_ns"]), payloads[i]))
                seq += 1
            expected_idx.append((int(ev[i]["timestamp_ns"]), fids[i], tid, kinds[i], depths[i], link))
        out.append((ev, details))
    return out, expected_idx, expected_det


@settings(max_examples=60, deadline=None)
@given(spec=session_strategy, t0=st.integers(0, 2**62), chunk=st.sampled_from([1, 3, 16, W.CHUNK_EVENTS]))
def test_session_round_trip(spec, t0, chunk):
    with tempfile.TemporaryDirectory() as d, mock.patch.object(W, "CHUNK_EVENTS", chunk):
        expected = {}
        entries = []
        for tid, batches in spec.items():
            pairs, exp_idx, exp_det = build(tid, batches, t0 + tid)
            with atf2.ThreadWriter(d, tid) as w:
                for ev, details in pairs:
                    w.write_events(ev, details)
            expected[tid] = (exp_idx, exp_det)
            entries.append({"id": tid, "has_detail": bool(exp_det)})
            assert w.event_count == len(exp_idx) and w.detail_count == len(exp_det)
        write_manifest(d, {"format_version": "2.1", "status": "complete", "threads": entries})
        with atf2.SessionReader(d) as s:
            assert s.thread_ids == sorted(spec)
            for t in s.threads:
                exp_idx, exp_det = expected[t.thread_id]
                assert list(t.index) == exp_idx
                assert t.index.events.tolist() == exp_idx
                assert t.has_detail == bool(exp_det)
                if exp_det:
                    assert list(t.detail) == exp_det
                    for e in exp_idx:
                        if e[5] != 0xFFFFFFFF:
                            d_ev = t.get_detail_for(atf2.IndexEvent(*e))
                            assert d_ev == exp_det[e[5]] and t.get_index_for(d_ev) == atf2.IndexEvent(*e)
                v = t.verify()
                assert v["index"].crc == "ok" and (not exp_det or v["detail"].crc == "ok")
                raw = Path(t.index.path).read_bytes()
                assert t.index.footer["checksum"] == zlib.crc32(raw[64:-64])
                if exp_idx:
                    assert t.time_range() == (exp_idx[0][0], exp_idx[-1][0])
            merged = s.merged()
            order = sorted(
                (e[0], ti, i) for ti, t in enumerate(s.threads) for i, e in enumerate(expected[t.thread_id][0])
            )
            assert [(int(m["timestamp_ns"]), int(m["thread"]), int(m["seq"])) for m in merged] == order
            if len(merged):
                chunks = list(s.merged(chunk_size=max(1, len(merged) // 3)))
                assert (np.concatenate(chunks) == merged).all()


@settings(max_examples=40, deadline=None)
@given(sizes=st.lists(st.integers(0, 300), min_size=1, max_size=6), every=st.integers(1, 5))
def test_odd_payload_sizes(sizes, every):
    with tempfile.TemporaryDirectory() as d:
        n = len(sizes)
        ev = np.zeros(n, dtype=atf2.INDEX_EVENT_DTYPE)
        ev["timestamp_ns"] = np.arange(n)
        ev["event_kind"] = 1
        payloads = [bytes((i + k) & 0xFF for k in range(s)) if i % every == 0 else None for i, s in enumerate(sizes)]
        with atf2.ThreadWriter(d, 0) as w:
            w.write_events(ev, payloads)
        with atf2.ThreadReader(w.thread_dir) as t:
            got = [t.get_detail_for(e).payload if e.detail_seq != 0xFFFFFFFF else None for e in t.index]
            assert got == payloads


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 30), min_size=0, max_size=40),
    values=st.sampled_from([[0, 1, 2], [5], [2**64 - 1], [0, 2**64 - 1], list(range(50))]),
    chunk=st.integers(1, 50),
    seed=st.integers(0, 1000),
)
@example(sizes=[], values=[5], chunk=1, seed=0)
@example(sizes=[0, 0, 3], values=[2**64 - 1], chunk=2, seed=0)
@example(sizes=[3] * 20, values=[0, 2**64 - 1], chunk=7, seed=1)
def test_merge_kernel_matches_sorted(sizes, values, chunk, seed):
    """Any thread count (scan and block paths), heavy ties, the largest timestamp."""
    from atf2.kernels.merge import merge_chunk, merge_inputs

    rng = np.random.default_rng(seed)
    arrays = []
    for j, n in enumerate(sizes):
        ev = np.zeros(n, dtype=atf2.INDEX_EVENT_DTYPE)
        ev["timestamp_ns"] = np.sort(rng.choice(np.array(values, dtype=np.uint64), n))
        ev["function_id"] = np.arange(n)
        ev["thread_id"] = j
        arrays.append(ev)
    expect = sorted((int(t), j, i) for j, a in enumerate(arrays) for i, t in enumerate(a["timestamp_ns"]))
    addrs, lens = merge_inputs(arrays)
    heads = np.zeros(len(arrays), dtype=np.int64)
    got = []
    while True:
        out = np.empty(chunk, dtype=atf2.MERGED_EVENT_DTYPE)
        n = merge_chunk(addrs, lens, heads, out)
        got.extend((int(r["timestamp_ns"]), int(r["thread"]), int(r["seq"])) for r in out[:n])
        for r in out[:n]:
            assert r["function_id"] == r["seq"] and r["thread_id"] == r["thread"]
        if n < chunk:
            break
    assert got == expect
