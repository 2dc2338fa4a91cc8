"""Interoperability with the original native C writer.

The two sessions under tests/data/reference-c-writer were written by the C
implementation; expected.json says what they hold. Every figure there must
come out of our readers, and our writer must produce the same bytes from the
same events (theirs read ours: only the CRC, which the C writer never
computed, may differ).
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import REFERENCE_DIR

import atf2
import atf2.v2
from atf2.kernels.fnv import fnv1a64
from atf2.writer import DetailBatch

SESSIONS = ["s1", "s2"]
MASK = (1 << 64) - 1


def _load(name):
    d = REFERENCE_DIR / name
    if not d.is_dir():
        pytest.skip(f"reference session {d} not found")
    with open(d / "expected.json") as f:
        return d, json.load(f)


def _fnv(data):
    return f"{int(fnv1a64(np.frombuffer(bytes(data), dtype=np.uint8))):016x}"


@pytest.mark.parametrize("name", SESSIONS)
@pytest.mark.parametrize("api", [atf2, atf2.v2])
def test_every_figure(name, api):
    d, exp = _load(name)
    with api.SessionReader(d) as s:
        assert s.manifest["format_version"] == "2.0" and s.status == "complete" and not s.recovered
        assert s.clock_type == exp["clock_type"]
        assert s.event_count() == exp["total_events"]
        assert s.time_range() == (exp["time_start_ns"], exp["time_end_ns"])
        assert len(s.threads) == len(exp["threads"])
        for t, e in zip(s.threads, exp["threads"], strict=True):
            assert t.thread_id == e["id"]
            assert os.path.getsize(d / e["index_path"]) == e["index_file_bytes"]
            assert len(t.index) == e["event_count"]
            assert not t.index.recovered and t.index.footer["checksum"] == 0
            assert t.index.header["clock_type"] == exp["clock_type"]
            ev = t.index.events
            assert int(ev["timestamp_ns"][0]) == e["first_timestamp_ns"] == t.index[0].timestamp_ns
            assert int(ev["timestamp_ns"][-1]) == e["last_timestamp_ns"] == t.index[-1].timestamp_ns
            assert t.time_range() == (e["first_timestamp_ns"], e["last_timestamp_ns"])
            assert int(ev["timestamp_ns"].sum(dtype=np.uint64)) == e["sum_timestamp_ns_mod_2_64"]
            assert int(ev["function_id"].sum(dtype=np.uint64)) == e["sum_function_id_mod_2_64"]
            assert _fnv(ev.tobytes()) == e["fnv1a64_of_index_events"]
            if e["event_count"] > 1 and e["timestamp_step"]:
                assert np.all(np.diff(ev["timestamp_ns"].astype(np.int64)) > 0)
            assert t.has_detail == e["has_detail"] == e["detail_file_present"]
            assert t.detail_count() == e["detail_count"]
            v = t.verify()
            assert v["index"].crc == "not recorded"
            if not e["has_detail"]:
                assert t.detail is None
                assert np.all(ev["detail_seq"] == atf2.NO_DETAIL)
                continue
            assert os.path.getsize(d / e["detail_path"]) == e["detail_file_bytes"]
            assert t.detail.events_bytes == e["detail_events_bytes"]
            assert v["detail"].crc == "not recorded"
            details = list(t.detail)
            assert [x.index_seq for x in details] == e["detail_index_seqs"]
            assert t.detail.index_seqs.tolist() == e["detail_index_seqs"]
            assert [len(x.payload) for x in details] == e["detail_payload_lengths"]
            assert [x.total_length - 24 for x in details] == e["detail_payload_lengths"]
            assert _fnv(b"".join(x.payload for x in details)) == e["fnv1a64_of_concatenated_payloads"]
        merged = s.merged()
        assert len(merged) == exp["total_events"]
        pairs = np.empty((len(merged), 2), dtype="<u4")
        pairs[:, 0] = merged["thread_id"]
        pairs[:, 1] = merged["seq"]
        assert pairs[:32].tolist() == exp["merged_order_first_32"]
        assert _fnv(pairs.tobytes()) == exp["fnv1a64_of_merged_order"]
        ts = merged["timestamp_ns"].astype(np.int64)
        assert bool(np.all(np.diff(ts) > 0)) == exp["merged_timestamps_strictly_increasing"]
        for chunk in (1, 7, 4096):
            again = np.concatenate(list(s.merged(chunk_size=chunk)))
            assert (again == merged).all()
        it = list(s.merged_iter())
        assert [s.threads[ti].thread_id for ti, _ in it] == pairs[:, 0].tolist()
        assert [e.timestamp_ns for _, e in it] == merged["timestamp_ns"].tolist()
        assert it[5][1] == s.threads[it[5][0]].index[int(merged["seq"][5])]


def _model(exp, t, i):
    """The generator the C writer was fed (expected.json's "model")."""
    return {
        "function_id": ((1 + i % 3) << 32) | ((i * 7 + t) % 1000),
        "event_kind": 1 if i % 2 == 0 else 2,
        "call_depth": i % 32,
    }


@pytest.mark.parametrize("name", SESSIONS)
def test_model_and_links(name):
    d, exp = _load(name)
    with atf2.SessionReader(d) as s:
        for t in s.threads:
            tid = t.thread_id
            ev = t.index.events
            for i in range(0, len(ev), 97):
                m = _model(exp, tid, i)
                e = t.index[i]
                assert (e.function_id, e.event_kind, e.call_depth, e.thread_id) == (m["function_id"], m["event_kind"], m["call_depth"], tid)
            if t.detail is None:
                continue
            for i in range(0, len(ev), 3):
                e = t.index[i]
                assert e.detail_seq == i // 3
                de = t.get_detail_for(e)
                assert de.index_seq == i and de.thread_id == tid and de.timestamp == e.timestamp_ns
                assert de.event_type == (3 if e.event_kind == 1 else 4)
                n = 16 + ((i // 3) * 37 % 185)
                assert de.payload == bytes(((tid * 31 + i * 7 + k) & 0xFF) for k in range(n))
                assert t.get_index_for(de) == e
                assert t.detail.get_by_index_seq(i) == de
                if i + 1 < len(ev):
                    assert t.detail.get_by_index_seq(i + 1) is None
                    assert t.get_detail_for(t.index[i + 1]) is None


@pytest.mark.parametrize("name", SESSIONS)
def test_our_writer_reproduces_their_bytes(name, tmp_path):
    """Same events in, same bytes out (headers and events; our footers add the CRC)."""
    d, exp = _load(name)
    with atf2.SessionReader(d) as s:
        for t in s.threads:
            events = t.index.events.copy()
            events["detail_seq"] = 0  # the writer assigns links itself
            details = None
            if t.detail is not None:
                parts = [x.payload for x in t.detail]
                offsets = np.zeros(len(parts) + 1, dtype=np.int64)
                np.cumsum([len(p) for p in parts], out=offsets[1:])
                details = DetailBatch(
                    t.detail.index_seqs.astype(np.int64), np.frombuffer(b"".join(parts), np.uint8), offsets,
                    np.array([x.event_type for x in t.detail], dtype=np.uint16), np.array([x.flags for x in t.detail], dtype=np.uint16),
                )
            with atf2.ThreadWriter(tmp_path, t.thread_id, clock_type=exp["clock_type"]) as w:
                half = len(events) // 2
                if details is None:
                    w.write_events(events[:half])
                    w.write_events(events[half:])
                else:
                    w.write_events(events, details)
            ours = Path(w.index_path).read_bytes()
            theirs = Path(t.index.path).read_bytes()
            if (atf2.layout.host_arch(), atf2.layout.host_os()) == (theirs[6], theirs[7]):
                assert ours[:64] == theirs[:64]
            else:
                assert ours[8:64] == theirs[8:64]
            assert ours[64:-64] == theirs[64:-64]
            assert ours[-64:-60] == theirs[-64:-60] and ours[-56:] == theirs[-56:]  # all but the CRC
            if t.detail is not None:
                ours = Path(w.detail_path).read_bytes()
                theirs = Path(t.detail.path).read_bytes()
                assert ours[8:64] == theirs[8:64]
                assert ours[64:-64] == theirs[64:-64]
                assert ours[-64:-60] == theirs[-64:-60] and ours[-56:] == theirs[-56:]
            else:
                assert not os.path.exists(w.detail_path)
