"""The read API on files assembled byte by byte with struct from the spec tables
(not with the project's writer), and on sessions written by it."""

import json
import os
import struct
import sys
import zlib

import numpy as np
import pytest

import atf2
import atf2.v2
from atf2.errors import AtfV2Error, CorruptFileError, DanglingLinkError, ManifestError

NO = 0xFFFFFFFF


def index_bytes(tid, events, footer=True, checksum=None, flags=0, finalized=True, clock=3):
    """index.atf from (timestamp, function_id, thread_id, kind, depth, detail_seq) tuples."""
    body = b"".join(struct.pack("<QQIIII", *e) for e in events)
    n = len(events)
    t0, t1 = (events[0][0], events[-1][0]) if events else (0, 0)
    if finalized:
        header = struct.pack("<4sBBBBIIB3xIIIQQQQ", b"ATI2", 1, 1, 1, 4, flags, tid, clock, 0, 32, n, 64, 64 + 32 * n, t0, t1)
    else:
        header = struct.pack("<4sBBBBIIB3xIIIQQQQ", b"ATI2", 1, 1, 1, 4, 0, tid, clock, 0, 32, 0, 64, 64, 0, 0)
    assert len(header) == 64
    out = header + body
    if footer:
        crc = zlib.crc32(body) if checksum is None else checksum
        out += struct.pack("<4sIQQQQ24x", b"2ITA", crc, n, t0, t1, 32 * n)
    return out


def detail_bytes(tid, events, footer=True, checksum=None):
    """detail.atf from (event_type, flags, index_seq, timestamp, payload) tuples."""
    body = b"".join(struct.pack("<IHHIIQ", 24 + len(p), et, fl, iseq, tid, ts) + p for et, fl, iseq, ts, p in events)
    n = len(events)
    s0, s1 = (events[0][2], events[-1][2]) if events else (0, 0)
    t0, t1 = (events[0][3], events[-1][3]) if events else (0, 0)
    header = struct.pack("<4sBBBBIIIQQQQQI", b"ATD2", 1, 1, 1, 4, 0, tid, 0, 64, n, len(body), s0, s1, 0)
    assert len(header) == 64
    out = header + body
    if footer:
        crc = zlib.crc32(body) if checksum is None else checksum
        out += struct.pack("<4sIQQQQ24x", b"2DTA", crc, n, len(body), t0, t1)
    return out


def make_thread(tid, n=12, detail_every=3, t0=100):
    """(index events, detail events) of a small linked thread."""
    idx, det = [], []
    for i in range(n):
        ts = t0 + 10 * i
        seq = NO
        if detail_every and i % detail_every == 0:
            seq = len(det)
            det.append((3 if i % 2 == 0 else 4, i, i, ts, bytes([i]) * (i % 5)))
        idx.append((ts, (1 << 32) | i, tid, 1 if i % 2 == 0 else 2, i % 4, seq))
    return idx, det


def write_files(dirpath, tid, idx, det, **kw):
    tdir = os.path.join(dirpath, f"thread_{tid}")
    os.makedirs(tdir, exist_ok=True)
    with open(os.path.join(tdir, "index.atf"), "wb") as f:
        f.write(index_bytes(tid, idx, flags=1 if det else 0, **kw))
    if det:
        with open(os.path.join(tdir, "detail.atf"), "wb") as f:
            f.write(detail_bytes(tid, det))
    return tdir


def write_manifest_json(dirpath, data):
    with open(os.path.join(dirpath, "manifest.json"), "w") as f:
        json.dump(data, f)


# ---------------------------------------------------------------- IndexReader


def test_index_reader_on_struct_file(tmp_path):
    idx, _ = make_thread(7, n=20, detail_every=0)
    path = tmp_path / "index.atf"
    path.write_bytes(index_bytes(7, idx))
    with atf2.IndexReader(path) as r:
        assert len(r) == 20 and r.thread_id == 7 and not r.has_detail and not r.recovered
        assert r.clock_type == 3
        for i, e in enumerate(idx):
            assert r[i] == e and tuple(r[i]) == e and isinstance(r[i], atf2.IndexEvent)
        assert r[-1] == idx[-1] and r[np.int64(3)] == idx[3]
        with pytest.raises(IndexError):
            r[20]
        with pytest.raises(IndexError):
            r[-21]
        assert list(r) == idx
        sl = r[2:5]
        assert sl.dtype == atf2.INDEX_EVENT_DTYPE and sl.tolist() == idx[2:5]
        assert r[::7].tolist() == idx[::7]
        tk = r.take([5, 0, -1, 5])
        assert tk.tolist() == [idx[5], idx[0], idx[-1], idx[5]]
        assert r.take(np.array([], dtype=np.int64)).shape == (0,)
        with pytest.raises(IndexError):
            r.take([20])
        assert r[[1, 2]].tolist() == idx[1:3]
        assert r[np.array([1, 2])].tolist() == idx[1:3] and r[np.array([4])].tolist() == [idx[4]]
        assert r[np.uint32(4)] == idx[4] and r[True] == idx[1]
        ev = r.events
        assert not ev.flags.writeable and ev.tolist() == idx
        assert r.time_range() == (idx[0][0], idx[-1][0])
        h = r.header
        assert h["magic"] == b"ATI2" and h["event_count"] == 20 and h["footer_offset"] == 64 + 640
        assert r.footer["checksum"] == zlib.crc32(path.read_bytes()[64:-64])
        v = r.verify()
        assert v.crc == "ok" and v.events == 20 and v.recorded == v.computed
        e = r[0]
        assert e.kind_name == "CALL" and not e.has_detail
    assert r.closed
    with pytest.raises(ValueError):
        r[0]



def test_native_getitem_is_in_use():
    """With a JIT on a little-endian host, reader[i] is the native reader (kernels/pyevent.py).

    It falls back silently to the struct path elsewhere; here a silent fallback
    would be a 2x slowdown nobody sees, so it is a failure."""
    from numba.core import config

    from atf2.reader import index as index_module

    # (the NUMBA_DISABLE_JIT run: the native reader is there only if Numba's
    # cache holds it from an earlier compiled run, and numba re-reads its
    # config, which nojit_plugin has taken the variable out of, at a compile)
    if config.DISABLE_JIT or "nojit_plugin" in sys.modules or sys.byteorder != "little":
        pytest.skip("the native reader needs the JIT and a little-endian host")
    assert index_module._read_native is not None
    assert atf2.IndexReader.__getitem__ is atf2.IndexReader._getitem_native


GETITEM_KEYS = [0, 1, 7, 19, -1, -7, -20, 20, -21, 1 << 70, -(1 << 70), True, False, np.int64(3), np.uint32(4), np.int8(-2),
                "3", 2.0, None, slice(2, 5), slice(None, None, -3), [1, 2], np.array([4, -1]), (1, 2)]


@pytest.mark.parametrize("getitem", ["_getitem_native", "_getitem_struct"])
def test_getitem_paths_agree_with_struct_unpacking(tmp_path, getitem):
    """Both reader[i] paths (native and pure Python) give the bytes' values, and the same errors."""
    idx, _ = make_thread(7, n=20, detail_every=0)
    idx[3] = (2**64 - 1, 2**64 - 2, 7, 3, 2**32 - 1, 2**32 - 2)  # every bit of every field set somewhere
    idx[19] = (2**64 - 1, 0, 7, 1, 0, 0)
    idx[:3] = sorted(idx[:3])
    path = tmp_path / "index.atf"
    path.write_bytes(index_bytes(7, sorted(idx[:19]) + [idx[19]], footer=False))
    raw = path.read_bytes()
    n = (len(raw) - 64) // 32

    def expected(key):
        if isinstance(key, slice):
            return r.events[key]
        if isinstance(key, (list, tuple, np.ndarray)):
            return r.events[np.asarray(key)]
        try:
            i = key.__index__()
        except (AttributeError, TypeError):
            return TypeError
        if not -n <= i < n:
            return IndexError
        return atf2.IndexEvent(*struct.unpack_from("<QQIIII", raw, 64 + 32 * (i % n)))

    from atf2.reader import index as index_module

    if getitem == "_getitem_native" and index_module._read_native is None:
        pytest.skip("no native reader here (no JIT)")
    read = getattr(atf2.IndexReader, getitem)
    with atf2.IndexReader(path) as r:
        for key in GETITEM_KEYS:
            want = expected(key)
            if want is IndexError or want is TypeError:
                with pytest.raises(want):
                    read(r, key)
            elif isinstance(want, np.ndarray):  # slices and index arrays: structured copies
                got = read(r, key)
                assert got.dtype == atf2.INDEX_EVENT_DTYPE and got.tolist() == want.tolist()
            else:
                got = read(r, key)
                assert type(got) is atf2.IndexEvent and got == want and hash(got) == hash(tuple(want))
                assert got.timestamp_ns == want[0] and got.kind_name == want.kind_name
    for key in (0, -1, 5):
        with pytest.raises(ValueError, match="closed"):
            read(r, key)
    empty = tmp_path / "empty.atf"
    empty.write_bytes(index_bytes(7, []))
    with atf2.IndexReader(empty) as r:
        for key in (0, -1, 1):
            with pytest.raises(IndexError):
                read(r, key)



def test_take_matches_numpy_take(tmp_path):
    """take() (a prefetching gather kernel) returns what numpy's take of the events would, in the indices' shape."""
    idx, _ = make_thread(7, n=50, detail_every=0)
    path = tmp_path / "index.atf"
    path.write_bytes(index_bytes(7, idx))
    rng = np.random.default_rng(5)
    with atf2.IndexReader(path) as r:
        ev = r.events
        for positions in (
            rng.integers(-50, 50, 1000),  # longer than the prefetch distance, negatives too
            rng.integers(0, 50, (7, 3)).astype(np.int32),
            np.array([49, 0, 49], dtype=np.uint64),
            np.array([-50, -1], dtype=np.int8),
            np.array([], dtype=np.int64),
            np.array([], dtype=np.float64),
            [3],
            4,
        ):
            got = r.take(positions)
            want = ev.take(np.asarray(positions, dtype=np.int64))
            assert got.dtype == atf2.INDEX_EVENT_DTYPE and got.shape == want.shape and got.tolist() == want.tolist()
            assert got.flags.writeable and not np.shares_memory(got, ev)
        for bad, pos in (([1, 2, 50, 3], 2), ([-51], 0), (np.array([2**63 + 5], dtype=np.uint64), None)):
            with pytest.raises(IndexError, match="out of range for 50 events") as err:
                r.take(bad)
            assert pos is None or f"position {pos} " in str(err.value)
        with pytest.raises(TypeError, match="integers"):
            r.take([1.5])
    empty = tmp_path / "empty.atf"
    empty.write_bytes(index_bytes(7, []))
    with atf2.IndexReader(empty) as r:
        assert r.take([]).shape == (0,)
        with pytest.raises(IndexError):
            r.take([0])

def test_native_getitem_leaks_nothing(tmp_path):
    """Reference counts: a million reader[i] leave no objects and no references behind."""
    idx, _ = make_thread(7, n=20, detail_every=0)
    path = tmp_path / "index.atf"
    path.write_bytes(index_bytes(7, idx))
    with atf2.IndexReader(path) as r:
        def many_reads(rounds):
            for _ in range(rounds):
                for i in range(-20, 20):
                    r[i]
                r[20:21]
            return sys.getrefcount(atf2.IndexEvent), sys.getallocatedblocks()

        many_reads(10)
        class_refs, blocks = many_reads(100)
        # 200,000 more events made and freed: a leak of anything per call would show by the thousands
        class_refs_after, blocks_after = many_reads(5_000)
        assert class_refs_after == class_refs
        assert blocks_after - blocks < 100
        event = r[3]
        assert sys.getrefcount(event) == 2 and all(sys.getrefcount(v) >= 2 for v in event)

def test_index_crc_mismatch_and_not_recorded(tmp_path):
    idx, _ = make_thread(0, detail_every=0)
    p = tmp_path / "a.atf"
    p.write_bytes(index_bytes(0, idx, checksum=0))
    with atf2.IndexReader(p) as r:
        assert r.verify().crc == "not recorded"
    p.write_bytes(index_bytes(0, idx, checksum=12345))
    with atf2.IndexReader(p) as r:  # never checked on open
        assert len(r) == len(idx)
        with pytest.raises(CorruptFileError, match="CRC"):
            r.verify()


def test_index_without_footer_is_recovered(tmp_path):
    idx, _ = make_thread(0, n=10, detail_every=0)
    p = tmp_path / "a.atf"
    raw = index_bytes(0, idx, footer=False, finalized=False)
    for extra in (b"", b"\x01" * 17):  # trailing partial record ignored
        p.write_bytes(raw + extra)
        with atf2.IndexReader(p) as r:
            assert r.recovered and r.footer is None and len(r) == 10 and list(r) == idx
            assert r.time_range() == (idx[0][0], idx[-1][0])
            assert r.verify().crc == "no footer"
    # a finalized header whose footer is damaged: header's footer_offset is used
    raw = bytearray(index_bytes(0, idx))
    raw[-64:-60] = b"XXXX"
    p.write_bytes(raw)
    with atf2.IndexReader(p) as r:
        assert r.recovered and len(r) == 10
    p.write_bytes(raw[:-30])  # cut inside the footer
    with atf2.IndexReader(p) as r:
        assert r.recovered and len(r) == 10


def test_empty_index(tmp_path):
    p = tmp_path / "a.atf"
    p.write_bytes(index_bytes(3, []))
    with atf2.IndexReader(p) as r:
        assert len(r) == 0 and list(r) == [] and r.time_range() == (0, 0) and r.events.shape == (0,)
        assert r.verify().crc == "ok"


def test_zero_copy_view_outlives_close(tmp_path):
    idx, _ = make_thread(0, detail_every=0)
    p = tmp_path / "a.atf"
    p.write_bytes(index_bytes(0, idx))
    r = atf2.IndexReader(p)
    ev = r.events
    r.close()  # the view keeps the map alive
    assert ev.tolist() == idx
    del ev


# --------------------------------------------------------------- DetailReader


def test_detail_verify_reports_an_event_outside_the_file(tmp_path):
    # The kernel's CHECK_BOUNDS answer: the message must not read the event
    # (it used to, and failed with AttributeError instead; found by mypy).
    _idx, det = make_thread(2, n=3)
    p = tmp_path / "detail.atf"
    p.write_bytes(detail_bytes(2, det))
    with atf2.DetailReader(p) as r:
        r._offsets = np.array([1 << 40], np.int64)  # forged: past the end of the file
        with pytest.raises(CorruptFileError, match="detail event 0 lies outside the file"):
            r.verify()


def test_detail_reader_on_struct_file(tmp_path):
    _idx, det = make_thread(2, n=30)
    p = tmp_path / "detail.atf"
    p.write_bytes(detail_bytes(2, det))
    with atf2.DetailReader(p) as r:
        assert len(r) == len(det) and r.thread_id == 2 and not r.recovered
        for k, (et, fl, iseq, ts, payload) in enumerate(det):
            d = r.get(k)
            assert d == (24 + len(payload), et, fl, iseq, 2, ts, payload)
            assert r[k] == d and bytes(r.payload_view(k)) == payload
            assert r.get_by_index_seq(iseq) == d and r.position_of_index_seq(iseq) == k
            assert r.get_by_index_seq(iseq + 1) is None
        assert r.get_by_index_seq(-1) is None and r.get_by_index_seq(2**40) is None
        with pytest.raises(DanglingLinkError):
            r.get(len(det))
        with pytest.raises(IndexError):
            r.get(-1)
        assert [tuple(x) for x in r] == [tuple(r.get(k)) for k in range(len(det))]
        assert r.index_seqs.tolist() == [d[2] for d in det]
        assert r.offsets[0] == 64 and not r.offsets.flags.writeable
        assert r.events_bytes == len(p.read_bytes()) - 128
        assert r.time_range() == (det[0][3], det[-1][3])
        assert r.verify().crc == "ok" and r.verify(index_count=30).events == len(det)
        with pytest.raises(CorruptFileError, match="index event"):
            r.verify(index_count=5)


def test_detail_without_footer(tmp_path):
    _, det = make_thread(1, n=30)
    raw = detail_bytes(1, det, footer=False)
    ends = np.cumsum([64] + [24 + len(d[4]) for d in det])[1:]
    p = tmp_path / "d.atf"
    for cut in (0, 1, 5, 23, 24, 30, 60):  # a partial last event is ignored
        size = len(raw) - cut
        p.write_bytes(raw[:size])
        with atf2.DetailReader(p) as r:
            assert r.recovered and r.footer is None
            assert len(r) == int(np.sum(ends <= size))
            assert [x.payload for x in r] == [d[4] for d in det[: len(r)]]
            assert r.verify().crc == "no footer"


def test_payload_of_every_odd_size(tmp_path):
    det = [(3, 0, i, 1000 + i, bytes(range(i % 256)) * (1 + i // 256)) for i in range(0, 600, 7)]
    p = tmp_path / "d.atf"
    p.write_bytes(detail_bytes(0, det))
    with atf2.DetailReader(p) as r:
        assert [x.payload for x in r] == [d[4] for d in det]


# --------------------------------------------------------------- ThreadReader


def test_thread_reader_links(tmp_path):
    idx, det = make_thread(4, n=25)
    tdir = write_files(tmp_path, 4, idx, det)
    with atf2.ThreadReader(tdir) as t:
        assert t.thread_id == 4 and t.has_detail and len(t) == 25 and t.detail_count() == len(det)
        for i, e in enumerate(idx):
            d = t.get_detail_for(t.index[i])
            if e[5] == NO:
                assert d is None
            else:
                assert d.payload == det[e[5]][4]
                assert t.get_index_for(d) == t.index[i]
        # also accepts structured records
        assert t.get_detail_for(t.index.events[0]) == t.detail.get(0)
        v = t.verify()
        assert v["index"].crc == "ok" and v["detail"].crc == "ok"


def test_thread_without_detail(tmp_path):
    idx, _ = make_thread(0, detail_every=0)
    tdir = write_files(tmp_path, 0, idx, [])
    with atf2.ThreadReader(tdir) as t:
        assert t.detail is None and t.get_detail_for(t.index[0]) is None
        fake = atf2.IndexEvent(0, 0, 0, 1, 0, 5)
        with pytest.raises(DanglingLinkError):
            t.get_detail_for(fake)


def test_dangling_links(tmp_path):
    idx, det = make_thread(0, n=9)
    idx[3] = idx[3][:5] + (99,)  # detail_seq past the detail file
    det[-1] = det[-1][:2] + (500,) + det[-1][3:]  # index_seq past the index file
    tdir = write_files(tmp_path, 0, idx, det)
    with atf2.ThreadReader(tdir) as t:
        with pytest.raises(DanglingLinkError):
            t.get_detail_for(t.index[3])
        with pytest.raises(AtfV2Error):
            t.get_index_for(t.detail.get(len(det) - 1))
        with pytest.raises(CorruptFileError):
            t.verify()


# -------------------------------------------------------------- SessionReader


def test_minimal_manifest_session(tmp_path):
    threads = {}
    for tid in (0, 1, 2):
        idx, det = make_thread(tid, n=10 + tid, detail_every=tid, t0=100 + tid)
        write_files(tmp_path, tid, idx, det)
        threads[tid] = (idx, det)
    write_manifest_json(tmp_path, {"threads": [{"id": t, "has_detail": bool(threads[t][1])} for t in (2, 0, 1)], "format_version": "2.0"})
    with atf2.SessionReader(tmp_path) as s:
        assert s.thread_ids == [0, 1, 2] and s.status == "complete" and not s.recovered
        assert s.event_count() == 33
        assert s.time_range() == (100, max(threads[t][0][-1][0] for t in threads))
        merged = s.merged()
        expect = sorted(((e[0], tid, i) for tid, (idx, _) in threads.items() for i, e in enumerate(idx)))
        assert [(int(m["timestamp_ns"]), int(m["thread"]), int(m["seq"])) for m in merged] == expect
        assert merged.dtype == atf2.MERGED_EVENT_DTYPE
        for m in merged[:5]:
            assert tuple(m.tolist()[:6]) == threads[int(m["thread"])][0][int(m["seq"])]
        assert s.thread(1).thread_id == 1
        with pytest.raises(KeyError):
            s.thread(9)
        assert s.symbol(5) is None and s.symbol_name(0x1_0000_0005) == "0x100000005"


def test_merge_ties_by_thread_then_seq(tmp_path):
    for tid in (3, 1):
        idx = [(50, 0, tid, 1, 0, NO), (50, 0, tid, 2, 0, NO), (60, 0, tid, 1, 0, NO)]
        write_files(tmp_path, tid, idx, [])
    write_manifest_json(tmp_path, {"threads": [{"id": 3}, {"id": 1}]})
    with atf2.SessionReader(tmp_path) as s:
        m = s.merged()
        assert [(int(x["thread_id"]), int(x["seq"])) for x in m] == [(1, 0), (1, 1), (3, 0), (3, 1), (1, 2), (3, 2)]
        assert [s.threads[ti].thread_id for ti, _ in s.merged_iter()] == [1, 1, 3, 3, 1, 3]


def test_session_2_1_symbols_and_status(write_session, session_dir, make_events):
    ev0 = make_events(50, seed=1)
    ev1 = make_events(40, seed=2)
    write_session(
        session_dir,
        {0: [(ev0, None)], 1: [(ev1, [b"x"] * 40)]},
        status="recording",
        modules=[{"id": 1, "name": "mod", "path": "/x/mod.py"}],
        symbols=[
            {"function_id": (1 << 32) | 5, "module_id": 1, "name": "f", "qualname": "C.f", "file": "/x/mod.py", "line": 3},
            {"function_id": (1 << 32) | 6, "module_id": 1, "name": "g", "file": "/x/mod.py", "line": 9},
        ],
        windows=[],
        extra_key={"anything": 1},
    )
    with atf2.SessionReader(session_dir) as s:
        assert s.status == "recording" and s.recovered  # not stopped cleanly
        assert s.manifest["extra_key"] == {"anything": 1}
        sym = s.symbol((1 << 32) | 5)
        assert sym == atf2.reader.Symbol((1 << 32) | 5, "mod", "f", "C.f", "/x/mod.py", 3)
        assert s.symbol_name((1 << 32) | 5) == "C.f" and s.symbol_name((1 << 32) | 6) == "g"
        assert s.symbol_name(7) == "0x7"
        assert s.event_count() == 90
        chunks = list(s.merged(chunk_size=16))
        assert all(len(c) <= 16 for c in chunks) and sum(map(len, chunks)) == 90
        assert (np.concatenate(chunks) == s.merged()).all()
        with pytest.raises(ValueError):
            s.merged(chunk_size=0)
        assert repr(s).startswith("<SessionReader")


def test_empty_session(session_dir):
    write_manifest_json(session_dir, {"format_version": "2.1", "status": "complete", "threads": []})
    with atf2.SessionReader(session_dir) as s:
        assert s.event_count() == 0 and s.time_range() == (0, 0) and len(s.merged()) == 0
        assert list(s.merged(chunk_size=5)) == [] and list(s.merged_iter()) == []


def test_session_with_empty_threads(write_session, session_dir, make_events):
    write_session(session_dir, {0: [], 1: [(make_events(5), None)], 2: []})
    with atf2.SessionReader(session_dir) as s:
        assert s.event_count() == 5 and len(s.merged()) == 5
        assert set(s.merged()["thread"].tolist()) == {1}


def test_killed_recorder_session(session_dir, make_events):
    """status "recording", placeholder headers, no footers: read what is there."""
    idx, det = make_thread(0, n=12)
    tdir = os.path.join(session_dir, "thread_0")
    os.makedirs(tdir)
    with open(os.path.join(tdir, "index.atf"), "wb") as f:
        f.write(index_bytes(0, idx, footer=False, finalized=False)[:-7])  # mid-event
    with open(os.path.join(tdir, "detail.atf"), "wb") as f:
        f.write(detail_bytes(0, det, footer=False))
    write_manifest_json(session_dir, {"format_version": "2.1", "status": "recording", "threads": [{"id": 0, "has_detail": False}]})
    with atf2.SessionReader(session_dir) as s:
        t = s.threads[0]
        assert s.recovered and t.recovered and t.index.recovered and t.detail.recovered
        assert len(t.index) == 11 and len(t.detail) == len(det)
        assert list(t.index) == idx[:11]


def test_readers_close_their_maps(write_session, session_dir, make_events):
    write_session(session_dir, {0: [(make_events(5), [b"a"] * 5)]})
    s = atf2.SessionReader(session_dir)
    t = s.threads[0]
    with s:
        pass
    assert t.index.closed and t.detail.closed
    with pytest.raises(ValueError):
        t.index[0]
    with pytest.raises(ValueError):
        t.detail.get(0)


def test_analysis_delegations_are_lazy(session_dir):
    write_manifest_json(session_dir, {"threads": []})
    with atf2.SessionReader(session_dir) as s:
        for name in ("summary", "intervals", "export_chrome"):
            assert callable(getattr(s, name))


def test_manifest_errors(tmp_path):
    with pytest.raises(ManifestError, match="missing"):
        atf2.SessionReader(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="JSON"):
        atf2.SessionReader(tmp_path)
    write_manifest_json(tmp_path, {"threads": [{"id": 0}]})
    with pytest.raises(ManifestError, match="absent"):
        atf2.SessionReader(tmp_path)
    idx, _ = make_thread(0, detail_every=0)
    write_files(tmp_path, 0, idx, [])
    write_manifest_json(tmp_path, {"threads": [{"id": 0, "has_detail": True}]})
    with pytest.raises(ManifestError, match="detail"):
        atf2.SessionReader(tmp_path)
    write_manifest_json(tmp_path, {"threads": [{"id": 1}]})
    (tmp_path / "thread_1").mkdir()
    (tmp_path / "thread_1" / "index.atf").write_bytes(index_bytes(0, idx))  # wrong thread id inside
    with pytest.raises(CorruptFileError, match="thread"):
        atf2.SessionReader(tmp_path)


@pytest.mark.parametrize(
    "bad_id", [-1, True, False, 1.0, "0", "../thread_0", None, [0], {"id": 0}, 2**32, "thread_0"]
)
def test_manifest_thread_ids_are_checked(tmp_path, bad_id):
    idx, _ = make_thread(0, detail_every=0)
    write_files(tmp_path, 0, idx, [])
    write_manifest_json(tmp_path, {"threads": [{"id": bad_id}]})
    with pytest.raises(ManifestError):
        atf2.SessionReader(tmp_path)


@pytest.mark.parametrize(
    "manifest",
    [
        [],
        {"format_version": "3.0", "threads": []},
        {"format_version": 2.0, "threads": []},
        {},
        {"threads": {"0": {}}},
        {"threads": [0]},
        {"threads": [{"has_detail": True}]},
        {"threads": [{"id": 0}, {"id": 0}]},
        {"threads": [{"id": 0, "has_detail": "yes"}]},
        {"threads": [{"id": 0, "name": 5}]},
        {"threads": [{"id": 0, "dropped": {"disk": -1}}]},
        {"threads": [], "status": "weird"},
        {"threads": [], "clock_type": "3"},
        {"threads": [], "symbols": [{"name": "f"}]},
        {"threads": [], "symbols": [{"function_id": "1"}]},
        {"threads": [], "modules": "x"},
    ],
)
def test_bad_manifests(tmp_path, manifest):
    idx, _ = make_thread(0, detail_every=0)
    write_files(tmp_path, 0, idx, [])
    write_manifest_json(tmp_path, manifest)
    with pytest.raises(ManifestError):
        atf2.SessionReader(tmp_path)


def test_manifest_roundtrip_atomic(tmp_path):
    from atf2.manifest import read_manifest, thread_dir, write_manifest

    data = {"format_version": "2.1", "status": "complete", "threads": [{"id": 3, "name": "T"}], "extra": [1, 2]}
    path = write_manifest(tmp_path, data)
    assert path == str(tmp_path / "manifest.json")
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temporary left behind
    got = read_manifest(tmp_path)
    assert got["threads"] == data["threads"] and got["extra"] == [1, 2]
    write_manifest(tmp_path, {**data, "status": "recovered"})
    assert read_manifest(tmp_path)["status"] == "recovered"
    assert thread_dir(tmp_path, 3) == os.path.join(tmp_path, "thread_3")
    with pytest.raises(ManifestError):
        thread_dir(tmp_path, "3")


def test_top_level_and_v2_name_the_same_objects():
    for name in ("SessionReader", "ThreadReader", "IndexReader", "DetailReader", "IndexEvent", "DetailEvent", "AtfV2Error", "INDEX_EVENT_DTYPE", "MERGED_EVENT_DTYPE"):
        assert getattr(atf2, name) is getattr(atf2.v2, name), name
    from atf2.v2 import AtfV2Error as E
    from atf2.v2 import SessionReader as S

    assert S is atf2.SessionReader and E is atf2.AtfV2Error
    assert atf2.ThreadWriter is atf2.writer.ThreadWriter and atf2.DetailBatch is atf2.writer.DetailBatch
