"""The writer's 256-bit check/encode + CRC kernels and the paths that use them:
records already encoded are written without a copy, others are encoded; the
bytes on disk are the same either way."""

import os
import zlib
from pathlib import Path

import numpy as np
import pytest

import atf2
import atf2.writer as W
from atf2.errors import AtfV2Error
from atf2.kernels import encode_wide as EW
from atf2.writer import ThreadWriter

wide = pytest.mark.skipif(not EW.usable(), reason="CPU without AVX2 + VPCLMULQDQ (or JIT disabled)")


@wide
@pytest.mark.parametrize("n", [1, 2, 3, 64, 65, 1001])
@pytest.mark.parametrize("seed", [0, 0xFFFFFFFF, 0xDEADBEEF])
def test_kernels_equal_zlib(make_events, n, seed):
    ev = make_events(n, thread_id=5, seed=n)
    ev["function_id"][::3] = np.uint64(0xFFFFFFFFFFFFFFFF)  # high bits too
    want = zlib.crc32(ev.tobytes(), seed)
    assert EW.check_crc(ev, 5, 0, seed) == (EW.ENCODED, want)
    raw = ev.copy()
    raw["thread_id"] = 9
    raw["detail_seq"] = 3
    dst = np.zeros(n + 1, dtype=atf2.INDEX_EVENT_DTYPE)
    dst[n] = np.frombuffer(b"\xab" * 32, dtype=atf2.INDEX_EVENT_DTYPE)[0]
    assert EW.encode_crc(raw, dst[:n], 5, 0, seed) == (-1, want)
    assert dst[:n].tobytes() == ev.tobytes() and dst[n:].tobytes() == b"\xab" * 32  # no overrun


@wide
@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_check_reports_records_to_encode(make_events, n):
    for field, value in (("thread_id", 6), ("detail_seq", 0)):
        for at in {0, n // 2, n - 1}:
            ev = make_events(n, thread_id=5)
            ev[field][at] = value
            assert EW.check_crc(ev, 5, 0, 0)[0] == EW.NOT_ENCODED


@wide
@pytest.mark.parametrize("n", [1, 2, 7, 64])
def test_kernels_find_the_first_decreasing_timestamp(make_events, n):
    ev = make_events(n, t0=1000, step=10)
    assert EW.check_crc(ev, 0, 1001 + 30 * n, 0)[0] == 0  # below the previous batch
    assert EW.encode_crc(ev, np.empty_like(ev), 0, 1001 + 30 * n, 0)[0] == 0
    if n > 1:
        for at in {1, n // 2, n - 1} - {0}:
            bad = ev.copy()
            bad["timestamp_ns"][at] = 0
            assert EW.check_crc(bad, 0, 0, 0)[0] == at
            bad["thread_id"] = 3  # a bad timestamp wins over records to encode
            assert EW.check_crc(bad, 0, 0, 0)[0] == at
            assert EW.encode_crc(bad, np.empty_like(bad), 0, 0, 0)[0] == at


def _files_for(session_dir, tid, batches):
    with ThreadWriter(session_dir, tid) as w:
        for b in batches:
            w.write_events(b)
    return Path(w.index_path).read_bytes()


@pytest.mark.parametrize("chunk", [4, 64, W.CHUNK_EVENTS])
def test_encoded_and_raw_inputs_give_the_same_file(tmp_path, make_events, monkeypatch, chunk):
    """Zero-copy (records already right), encoded, and mixed chunks: identical bytes."""
    monkeypatch.setattr(W, "CHUNK_EVENTS", chunk)
    ev = make_events(2000, thread_id=3, seed=4)
    raw = ev.copy()
    raw["thread_id"] = 0
    raw["detail_seq"] = 0
    mixed = ev.copy()
    mixed["detail_seq"][1500] = 7  # one record of a late chunk needs encoding
    mixed["thread_id"][10] = 1
    files = [_files_for(tmp_path / name, 3, [a[:700], a[700:]]) for name, a in (("enc", ev), ("raw", raw), ("mix", mixed))]
    assert files[0] == files[1] == files[2]
    assert files[0][64:-64] == ev.tobytes()
    assert zlib.crc32(ev.tobytes()) == int.from_bytes(files[0][-60:-56], "little")


def test_zero_copy_leaves_the_callers_array_alone(session_dir, make_events):
    ev = make_events(1000)
    keep = ev.copy()
    with ThreadWriter(session_dir, 0) as w:
        w.write_events(ev)
    assert ev.tobytes() == keep.tobytes()


def test_bad_timestamp_in_a_late_zero_copy_chunk_is_rolled_back(session_dir, make_events, monkeypatch):
    monkeypatch.setattr(W, "CHUNK_EVENTS", 64)
    ev = make_events(1000, seed=3)
    w = ThreadWriter(session_dir, 0)
    w.write_events(ev[:100])
    size = os.path.getsize(w.index_path)
    bad = ev[100:].copy()
    bad["timestamp_ns"][800] = 0
    with pytest.raises(AtfV2Error, match="position 800"):
        w.write_events(bad)
    assert w.event_count == 100 and os.path.getsize(w.index_path) == size
    w.write_events(ev[100:])
    w.close()
    with atf2.IndexReader(w.index_path) as r:
        assert not r.recovered and r.verify().crc == "ok" and r.events.tobytes() == ev.tobytes()


@pytest.mark.parametrize("n", [1, 5, 8, 9, 100, 1000])
def test_chunks_cover_the_batch(monkeypatch, n):
    monkeypatch.setattr(W, "CHUNK_EVENTS", 8)
    cuts = W._chunk_bounds(n)
    sizes = np.diff(cuts)
    assert cuts[0] == 0 and cuts[-1] == n and (sizes > 0).all()
    assert sizes[0] == 1 or len(sizes) == 1  # the first chunk, checked before any write, is small
    assert sizes.max() <= 8  # a merged tail stays within a chunk (the scratch buffers' size)



@pytest.mark.parametrize("crc_kernel", [True, False])
def test_without_the_wide_kernels_the_file_is_the_same(tmp_path, make_events, monkeypatch, crc_kernel):
    """CPUs without VPCLMULQDQ (or without PCLMULQDQ: zlib) take the narrow paths: same bytes."""
    monkeypatch.setattr(W, "CHUNK_EVENTS", 64)
    ev = make_events(1000, thread_id=2, seed=6)
    raw = ev.copy()
    raw["thread_id"] = 0
    want = _files_for(tmp_path / "wide", 2, [ev[:300], raw[300:]])
    monkeypatch.setattr(EW, "usable", lambda: False)
    if not crc_kernel:
        monkeypatch.setattr(W._crc, "kernel_ok", lambda: False)
    assert _files_for(tmp_path / "narrow", 2, [ev[:300], raw[300:]]) == want
