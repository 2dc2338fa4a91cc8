"""ThreadWriter: the bytes it writes (parsed with struct, field by field), batches,
ordering, details, failures and rollback."""

import errno
import os
import signal
import struct
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import env_without_coverage

import atf2
import atf2.writer as W
from atf2 import layout as L
from atf2.errors import AtfV2Error, SessionStateError, WriteError
from atf2.writer import DetailBatch, ThreadWriter

# struct formats straight from the spec tables
IDX_HEADER = struct.Struct("<4sBBBBIIB3sIIIQQQQ")
IDX_EVENT = struct.Struct("<QQIIII")
IDX_FOOTER = struct.Struct("<4sIQQQQ24s")
DET_HEADER = struct.Struct("<4sBBBBIIIQQQQQI")
DET_EVENT = struct.Struct("<IHHIIQ")
DET_FOOTER = struct.Struct("<4sIQQQQ24s")
assert (IDX_HEADER.size, IDX_EVENT.size, IDX_FOOTER.size) == (64, 32, 64)
assert (DET_HEADER.size, DET_EVENT.size, DET_FOOTER.size) == (64, 24, 64)


def parse_index(path):
    data = Path(path).read_bytes()
    h = IDX_HEADER.unpack_from(data, 0)
    header = dict(zip(
        [
            "magic", "endian", "version", "arch", "os", "flags", "thread_id", "clock_type",
            "reserved0", "reserved1", "event_size", "event_count", "events_offset",
            "footer_offset", "time_start_ns", "time_end_ns",
        ], h, strict=True))
    n = (len(data) - 128) // 32
    events = [IDX_EVENT.unpack_from(data, 64 + 32 * i) for i in range(n)]
    f = IDX_FOOTER.unpack_from(data, len(data) - 64)
    footer = dict(zip(
        ["magic", "checksum", "event_count", "time_start_ns", "time_end_ns", "bytes_written", "reserved"], f, strict=True))
    return data, header, events, footer


def parse_detail(path):
    data = Path(path).read_bytes()
    h = DET_HEADER.unpack_from(data, 0)
    header = dict(zip(
        [
            "magic", "endian", "version", "arch", "os", "flags", "thread_id", "reserved0",
            "events_offset", "event_count", "bytes_length", "index_seq_start", "index_seq_end",
            "reserved1",
        ], h, strict=True))
    events = []
    pos = 64
    while pos < len(data) - 64:
        total, etype, flags, iseq, tid, ts = DET_EVENT.unpack_from(data, pos)
        events.append((total, etype, flags, iseq, tid, ts, data[pos + 24 : pos + total]))
        pos += total
    assert pos == len(data) - 64
    f = DET_FOOTER.unpack_from(data, pos)
    footer = dict(zip(
        ["magic", "checksum", "event_count", "bytes_length", "time_start_ns", "time_end_ns", "reserved"], f, strict=True))
    return data, header, events, footer


def test_placeholder_header_then_final(session_dir, make_events):
    w = ThreadWriter(session_dir, 5, clock_type=L.CLOCK_BOOTTIME)
    assert w.thread_dir == os.path.join(session_dir, "thread_5")
    data, h, events, footer = parse_index(w.index_path)
    assert len(data) == 128 and events == []
    assert h["magic"] == b"ATI2" and h["endian"] == 1 and h["version"] == 1
    assert h["event_size"] == 32 and h["events_offset"] == 64 and h["footer_offset"] == 64
    assert h["event_count"] == 0 and h["thread_id"] == 5 and h["clock_type"] == 3
    assert not os.path.exists(w.detail_path)
    ev = make_events(100, seed=1)
    w.write_events(ev)
    summary = w.finalize()
    w.close()
    data, h, events, footer = parse_index(w.index_path)
    assert h["event_count"] == 100 and h["footer_offset"] == 64 + 32 * 100
    assert h["time_start_ns"] == ev["timestamp_ns"][0] and h["time_end_ns"] == ev["timestamp_ns"][-1]
    assert h["flags"] == 0 and h["arch"] == L.host_arch() and h["os"] == L.host_os()
    assert h["reserved0"] == bytes(3) and h["reserved1"] == 0
    assert footer["magic"] == b"2ITA" and footer["event_count"] == 100 and footer["bytes_written"] == 3200
    assert footer["checksum"] == zlib.crc32(data[64:-64]) == summary["index_crc32"]
    assert footer["reserved"] == bytes(24)
    assert (footer["time_start_ns"], footer["time_end_ns"]) == (h["time_start_ns"], h["time_end_ns"])
    for i, e in enumerate(events):
        assert e == (int(ev["timestamp_ns"][i]), int(ev["function_id"][i]), 5, int(ev["event_kind"][i]),
                     int(ev["call_depth"][i]), L.NO_DETAIL)
    assert not os.path.exists(w.detail_path)
    assert summary["index_events"] == 100 and summary["detail_events"] == 0 and summary["has_detail"] is False


def test_details_bytes_and_links(session_dir, make_events):
    ev = make_events(50, thread_id=9, seed=2)  # thread_id is overwritten by the writer
    ev["event_kind"] = np.where(np.arange(50) % 3 == 0, L.EVENT_CALL, np.where(np.arange(50) % 3 == 1, L.EVENT_RETURN, L.EVENT_EXCEPTION))
    payloads = [bytes([i]) * (i % 7) if i % 4 == 1 else None for i in range(50)]
    with ThreadWriter(session_dir, 2) as w:
        w.write_events(ev[:20], payloads[:20])
        w.write_events(ev[20:], payloads[20:])
        assert w.has_detail and w.detail_count == sum(p is not None for p in payloads)
    _, h, events, _ = parse_index(w.index_path)
    assert h["flags"] & 1
    ddata, dh, devents, dfooter = parse_detail(w.detail_path)
    assert dh["magic"] == b"ATD2" and dh["thread_id"] == 2 and dh["events_offset"] == 64
    assert dh["event_count"] == len(devents) == dfooter["event_count"]
    assert dh["bytes_length"] == dfooter["bytes_length"] == len(ddata) - 128
    with_detail = [i for i, p in enumerate(payloads) if p is not None]
    assert (dh["index_seq_start"], dh["index_seq_end"]) == (with_detail[0], with_detail[-1])
    assert dfooter["checksum"] == zlib.crc32(ddata[64:-64])
    assert dfooter["time_start_ns"] == ev["timestamp_ns"][with_detail[0]]
    assert dfooter["time_end_ns"] == ev["timestamp_ns"][with_detail[-1]]
    for k, i in enumerate(with_detail):
        total, etype, flags, iseq, tid, ts, payload = devents[k]
        assert iseq == i and events[i][5] == k  # both directions
        assert total == 24 + len(payloads[i]) and payload == payloads[i]
        assert tid == 2 and ts == ev["timestamp_ns"][i] and flags == 0
        assert etype == (L.DETAIL_FUNCTION_CALL if ev["event_kind"][i] == L.EVENT_CALL else L.DETAIL_FUNCTION_RETURN)
    for i in range(50):
        if payloads[i] is None:
            assert events[i][5] == L.NO_DETAIL
        assert events[i][2] == 2


def test_detail_batch_columns(session_dir, make_events):
    ev = make_events(10, seed=3)
    payload = np.frombuffer(b"abcdefghij", dtype=np.uint8)
    batch = DetailBatch(
        positions=np.array([1, 4, 9]), payload=payload, offsets=np.array([0, 3, 3, 10]),
        event_type=np.array([7, 8, 9], dtype=np.uint16), flags=np.array([1, 2, 0xFFFF]),
    )
    with ThreadWriter(session_dir, 0) as w:
        w.write_events(ev, batch)
    _, _, devents, _ = parse_detail(w.detail_path)
    assert [(d[1], d[2], d[3], d[6]) for d in devents] == [(7, 1, 1, b"abc"), (8, 2, 4, b""), (9, 0xFFFF, 9, b"defghij")]


def test_caller_array_untouched_and_field_order_by_name(session_dir, make_events):
    ev = make_events(10, thread_id=77, seed=4)
    before = ev.copy()
    shuffled = np.zeros(10, dtype=[(n, atf2.INDEX_EVENT_DTYPE.fields[n][0]) for n in reversed(atf2.INDEX_EVENT_DTYPE.names)])
    for n in atf2.INDEX_EVENT_DTYPE.names:
        shuffled[n] = ev[n]
    with ThreadWriter(session_dir, 1) as w:
        w.write_events(ev, [b"x"] * 10)
        w.write_events(shuffled[::-1][::-1].copy()[:0])
    assert (ev == before).all()
    with ThreadWriter(session_dir, 3) as w:
        w.write_events(shuffled)
    with atf2.IndexReader(w.index_path) as r:
        assert (r.events["timestamp_ns"] == ev["timestamp_ns"]).all()
        assert (r.events["function_id"] == ev["function_id"]).all()


def test_timestamps_must_not_decrease(session_dir, make_events):
    ev = make_events(20, seed=5, step=100)
    with ThreadWriter(session_dir, 0) as w:
        w.write_events(ev[:10])
        size = os.path.getsize(w.index_path)
        bad = ev[10:].copy()
        bad["timestamp_ns"][4] = bad["timestamp_ns"][3] - 1
        with pytest.raises(AtfV2Error, match=r"position 4 .*position 3"):
            w.write_events(bad)
        with pytest.raises(AtfV2Error, match="position 4"):
            w.write_events(bad, [b"d"] * 10)  # with details: rejected before anything is written
        assert not os.path.exists(w.detail_path)
        early = ev[:1].copy()
        early["timestamp_ns"] = ev["timestamp_ns"][9] - 1
        with pytest.raises(AtfV2Error, match="previous batch"):
            w.write_events(early)
        assert os.path.getsize(w.index_path) == size and w.event_count == 10
        w.write_events(ev[10:])  # the writer is still usable
        equal = ev[19:20].copy()
        w.write_events(equal)  # equal timestamps are fine
    with atf2.IndexReader(w.index_path) as r:
        assert len(r) == 21 and r.verify().crc == "ok"


def test_bad_batches_are_atf_errors(session_dir, make_events):
    ev = make_events(5)
    with ThreadWriter(session_dir, 0) as w:
        for bad in (
            [1, 2, 3],
            np.zeros(5, dtype=np.uint64),
            ev.reshape(5, 1),
        ):
            with pytest.raises(AtfV2Error):
                w.write_events(bad)
        for details in (
            [b"x"] * 4,  # not aligned
            DetailBatch(np.array([2, 1]), np.zeros(2, np.uint8), np.array([0, 1, 2])),  # not increasing
            DetailBatch(np.array([5]), np.zeros(2, np.uint8), np.array([0, 1])),  # past the batch
            DetailBatch(np.array([-1]), np.zeros(2, np.uint8), np.array([0, 1])),
            DetailBatch(np.array([1]), np.zeros(2, np.uint8), np.array([0, 3])),  # past the payload
            DetailBatch(np.array([1, 2]), np.zeros(2, np.uint8), np.array([0, 2, 1])),  # decreasing offsets
            DetailBatch(np.array([1]), np.zeros(2, np.uint8), np.array([0])),  # wrong length
            DetailBatch(np.array([1]), np.zeros(2, np.uint8), np.array([0, 1]), event_type=np.array([70000])),
            "payload",
        ):
            with pytest.raises(AtfV2Error):
                w.write_events(ev, details)
        assert w.event_count == 0 and not w.has_detail
        with pytest.raises(AtfV2Error):
            w.write_events(make_events(0), [b"x"])
    for tid in (-1, True, 1.5, "0", 2**32):
        with pytest.raises(AtfV2Error):
            ThreadWriter(session_dir, tid)


def test_finalize_idempotent_and_state(session_dir, make_events):
    w = ThreadWriter(session_dir, 0)
    w.write_events(make_events(3))
    s1 = w.finalize()
    assert w.finalize() == s1 and w.finalized
    with pytest.raises(SessionStateError):
        w.write_events(make_events(3, t0=10**9))
    w.close()
    w.close()
    assert w.closed and w.finalize() == s1


def test_close_finalizes_and_empty_thread(session_dir):
    with ThreadWriter(session_dir, 4) as w:
        pass
    data, _h, _events, footer = parse_index(w.index_path)
    assert len(data) == 128 and footer["event_count"] == 0 and footer["checksum"] == zlib.crc32(b"")
    with atf2.ThreadReader(w.thread_dir) as r:
        assert len(r.index) == 0 and r.detail is None and not r.recovered


def test_properties(session_dir, make_events):
    ev = make_events(10, t0=500)
    with ThreadWriter(session_dir, 6) as w:
        assert (w.event_count, w.detail_count, w.index_bytes, w.detail_bytes) == (0, 0, 0, 0)
        w.write_events(ev, [b"12345" if i == 3 else None for i in range(10)])
        assert (w.event_count, w.detail_count, w.index_bytes, w.detail_bytes) == (10, 1, 320, 29)
        assert (w.time_start_ns, w.time_end_ns) == (ev["timestamp_ns"][0], ev["timestamp_ns"][-1])
        assert w.has_detail and w.index_path.endswith("thread_6/index.atf") and w.detail_path.endswith("thread_6/detail.atf")
        assert "thread_6" in repr(w)


def test_every_batch_leaves_a_readable_file(session_dir, make_events):
    """Without finalize (recorder killed between batches) the files read back every batch."""
    ev = make_events(30)
    w = ThreadWriter(session_dir, 0)
    w.write_events(ev[:10], [b"a" if i % 2 else None for i in range(10)])
    w.write_events(ev[10:30])
    with atf2.ThreadReader(w.thread_dir) as r:
        assert len(r.index) == 30 and len(r.detail) == 5 and r.verify()["index"].crc == "ok"
        assert (r.index.events["timestamp_ns"] == ev["timestamp_ns"]).all()
    os.close(w._index_fd)  # simulate the kill: no finalize
    os.close(w._detail_fd)
    w._closed = True


def test_chunked_pipeline(session_dir, make_events, monkeypatch):
    """Batches larger than a chunk are encoded/checksummed in a helper thread while written."""
    monkeypatch.setattr(W, "CHUNK_EVENTS", 64)
    ev = make_events(1000, seed=7)
    payloads = [bytes(range(i % 50)) if i % 7 == 0 else None for i in range(1000)]
    with ThreadWriter(session_dir, 0) as w:
        w.write_events(ev[:10])
        w.write_events(ev[10:900], payloads[10:900])
        w.write_events(ev[900:], payloads[900:])
    with atf2.ThreadReader(w.thread_dir) as r:
        assert r.verify()["index"].crc == "ok"
        e = r.index.events
        assert (e["timestamp_ns"] == ev["timestamp_ns"]).all() and (e["call_depth"] == ev["call_depth"]).all()
        k = 0
        for i, p in enumerate(payloads[10:], start=10):
            if p is not None:
                assert e["detail_seq"][i] == k and r.get_detail_for(r.index[i]).payload == p
                k += 1
            else:
                assert e["detail_seq"][i] == L.NO_DETAIL
    # a time error in a later chunk rejects the whole batch
    w2 = ThreadWriter(session_dir, 1)
    bad = ev.copy()
    bad["timestamp_ns"][700] = 0
    with pytest.raises(AtfV2Error, match="position 700"):
        w2.write_events(bad)
    assert w2.event_count == 0 and os.path.getsize(w2.index_path) == 128
    w2.close()


def test_big_batch_is_a_few_syscalls(session_dir, make_events, monkeypatch):
    calls = []
    real = os.pwritev

    def counting(fd, bufs, offset):
        calls.append(sum(len(memoryview(b).cast("B")) for b in bufs))
        return real(fd, bufs, offset)

    ev = make_events(1_000_000, seed=8)
    with ThreadWriter(session_dir, 0) as w:
        monkeypatch.setattr(W, "_pwritev", counting)
        w.write_events(ev)
        assert len(calls) <= 8 and sum(calls) == 32_000_000 + 64
    with atf2.IndexReader(w.index_path) as r:
        assert len(r) == 1_000_000 and r.verify().crc == "ok"


class _Failing:
    """os.pwritev that fails with ``err`` once ``budget`` bytes have been written.

    The failing call is short (writes what fits) when the budget ends inside
    it; the next call raises. With ``persistent`` every later call raises too,
    else later calls succeed (the rollback freed space).
    """

    def __init__(self, budget, err=errno.ENOSPC, persistent=False):
        self.budget = budget
        self.err = err
        self.persistent = persistent
        self.failed = False

    def __call__(self, fd, bufs, offset):
        if self.failed and not self.persistent:
            return os.pwritev(fd, bufs, offset)
        want = sum(len(memoryview(b).cast("B")) for b in bufs)
        if self.budget <= 0:
            self.failed = True
            raise OSError(self.err, os.strerror(self.err))
        if want > self.budget:
            joined = b"".join(bytes(memoryview(b).cast("B")) for b in bufs)[: self.budget]
            n = os.pwrite(fd, joined, offset)
            self.budget = 0
            return n
        self.budget -= want
        return os.pwritev(fd, bufs, offset)


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO, errno.EFBIG])
@pytest.mark.parametrize("budget", [0, 10, 100, 32 * 64 + 5, 5000])
def test_write_error_rolls_back(session_dir, make_events, monkeypatch, err, budget):
    monkeypatch.setattr(W, "CHUNK_EVENTS", 64)
    ev = make_events(400, seed=9)
    payloads = [b"p" * (i % 13) if i % 3 == 0 else None for i in range(400)]
    w = ThreadWriter(session_dir, 0)
    w.write_events(ev[:100], payloads[:100])
    before = (w.event_count, w.detail_count, os.path.getsize(w.index_path), os.path.getsize(w.detail_path))
    monkeypatch.setattr(W, "_pwritev", _Failing(budget, err))
    with pytest.raises(WriteError) as info:
        w.write_events(ev[100:300], payloads[100:300])
    assert info.value.errno == err and isinstance(info.value, AtfV2Error)
    assert (w.event_count, w.detail_count, os.path.getsize(w.index_path), os.path.getsize(w.detail_path)) == before
    monkeypatch.setattr(W, "_pwritev", os.pwritev)
    w.write_events(ev[300:], payloads[300:])  # the drain keeps going
    w.close()
    keep = list(range(100)) + list(range(300, 400))
    with atf2.ThreadReader(w.thread_dir) as r:
        assert not r.recovered
        v = r.verify()
        assert v["index"].crc == "ok" and v["detail"].crc == "ok"
        assert (r.index.events["timestamp_ns"] == ev["timestamp_ns"][keep]).all()
        got = [r.get_detail_for(e).payload if e.detail_seq != L.NO_DETAIL else None for e in r.index]
        assert got == [payloads[i] for i in keep]


def test_write_error_on_first_detail_batch_removes_detail_file(session_dir, make_events, monkeypatch):
    ev = make_events(10)
    w = ThreadWriter(session_dir, 0)
    monkeypatch.setattr(W, "_pwritev", _Failing(64 + 64 + 10))
    with pytest.raises(WriteError):
        w.write_events(ev, [b"abc"] * 10)
    assert not w.has_detail and not os.path.exists(w.detail_path)
    monkeypatch.setattr(W, "_pwritev", os.pwritev)
    w.close()
    with atf2.ThreadReader(w.thread_dir) as r:
        assert len(r.index) == 0 and r.detail is None


def test_persistent_disk_full_leaves_readable_files(session_dir, make_events, monkeypatch):
    ev = make_events(300, seed=10)
    w = ThreadWriter(session_dir, 0)
    w.write_events(ev[:100], [b"z" * 5] * 100)
    monkeypatch.setattr(W, "_pwritev", _Failing(3000, persistent=True))
    with pytest.raises(WriteError):
        w.write_events(ev[100:], [b"y" * 5] * 200)
    with pytest.raises(WriteError):
        w.finalize()
    monkeypatch.setattr(W, "_pwritev", os.pwritev)
    os.close(w._index_fd)
    os.close(w._detail_fd)
    w._closed = True
    with atf2.ThreadReader(w.thread_dir) as r:  # the footer could not be restored: recovered, exact
        assert len(r.index) == 100 and len(r.detail) == 100 and r.recovered
        assert (r.index.events["timestamp_ns"] == ev["timestamp_ns"][:100]).all()
        assert all(d.payload == b"z" * 5 for d in r.detail)


def test_rlimit_fsize_efbig_then_valid_files(tmp_path):
    """A real size limit: EFBIG (SIGXFSZ ignored), batches dropped, finalize still valid."""
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        import numpy as np
        import atf2
        from atf2.errors import WriteError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20000, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        ev = np.zeros(100, atf2.INDEX_EVENT_DTYPE)
        ev["event_kind"] = 1
        w = atf2.ThreadWriter({str(tmp_path)!r}, 0)
        written, errors = 0, []
        for b in range(20):
            ev["timestamp_ns"] = np.arange(100) + 1000 * b
            try:
                w.write_events(ev)
                written += 100
            except WriteError as exc:
                errors.append(exc.errno)
        w.close()
        print(written, errors[0], len(errors))
        """
    )
    # outside coverage: its data file could not be saved under a 20 kB RLIMIT_FSIZE
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                         env=env_without_coverage())
    assert out.returncode == 0, out.stderr
    written, first_err, n_err = map(int, out.stdout.split())
    assert first_err == errno.EFBIG and n_err > 0 and written == 600  # 64 + 600*32 + 64 <= 20000
    with atf2.ThreadReader(tmp_path / "thread_0") as r:
        assert len(r.index) == written and not r.recovered and r.verify()["index"].crc == "ok"


def test_sigxfsz_is_not_ignored_by_us():
    # the writer does not touch signal dispositions (the session layer does)
    assert signal.getsignal(signal.SIGXFSZ) in (signal.SIG_DFL, signal.SIG_IGN)


def test_fsync_flag(session_dir, make_events, monkeypatch):
    synced = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real(fd))[1])
    with ThreadWriter(session_dir, 0, fsync=True) as w:
        w.write_events(make_events(3), [b"x", None, None])
    assert len(synced) == 2
    synced.clear()
    with ThreadWriter(session_dir, 1) as w:
        w.write_events(make_events(3))
        w.finalize(fsync=True)
    assert len(synced) == 1


def test_crc_kernel_equals_zlib():
    from atf2.kernels import crc

    rng = np.random.default_rng(0)
    for n in (0, 1, 15, 16, 63, 64, 65, 100, 4095, 4096, 4097, 70001):
        data = rng.integers(0, 256, n, dtype=np.uint8)
        for seed in (0, 1, 0xFFFFFFFF, 0xDEADBEEF):
            assert crc.crc32(data, seed) == zlib.crc32(data, seed)
            assert crc.crc32(data.tobytes(), seed) == zlib.crc32(data, seed)
            assert crc.crc32(memoryview(data.tobytes()), seed) == zlib.crc32(data, seed)
            if crc.USE_KERNEL and n:
                assert int(crc.crc32_kernel(data, seed)) == zlib.crc32(data, seed)
    structured = np.zeros(300, dtype=atf2.INDEX_EVENT_DTYPE)
    structured["timestamp_ns"] = np.arange(300) * 12345
    assert crc.crc32(structured.view(np.uint8), 7) == zlib.crc32(structured.tobytes(), 7)


def test_pipelined_writes_in_a_forked_child(session_dir, make_events, monkeypatch):
    """The helper thread pool does not survive fork; a child must get its own."""
    monkeypatch.setattr(W, "CHUNK_EVENTS", 64)
    ev = make_events(1000)
    with ThreadWriter(session_dir, 0) as w:
        w.write_events(ev)  # the parent's pool exists now
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            with ThreadWriter(session_dir, 1) as w2:
                w2.write_events(ev)
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with atf2.ThreadReader(os.path.join(session_dir, "thread_1")) as r:
        assert len(r.index) == 1000 and r.verify()["index"].crc == "ok"
