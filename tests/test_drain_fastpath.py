"""The drain's fused path: take + tick conversion + encoding (+ CRC) in one kernel pass,
written with ThreadWriter.write_encoded. Exactness against the separate kernels
(index_ring_take, convert_ticks, encode_ring_records, zlib.crc32), and end to end."""

import errno
import os
import threading
import zlib

import numpy as np
import pytest
from numba import njit

import atf2
import atf2.drain as D
import atf2.writer as W
from atf2 import layout as L
from atf2 import session as S
from atf2.clock import convert_ticks, ticks
from atf2.errors import AtfV2Error, WriteError
from atf2.kernels.crc import kernel_ok
from atf2.kernels.ring import (
    encode_ring_records,
    index_ring_push,
    index_ring_take,
    index_ring_take_encoded,
    index_ring_take_encoded_crc,
)
from atf2.rings import RingConfig, ThreadChannel
from atf2.writer import ThreadWriter


@njit(nogil=True)
def push_all(ctrl, pool, ts, fid, kd):
    for i in range(ts.shape[0]):
        index_ring_push(ctrl, pool, ts[i], fid[i], kd[i])


def records(n, seed=0):
    """Raw records: mostly increasing ticks, one going back, some explicit-ns ones."""
    rng = np.random.default_rng(seed)
    ts = (np.cumsum(rng.integers(0, 40, n)) + 1000).astype(np.uint64)
    if n > 10:
        ts[n // 3] = 7  # before every anchor: extrapolated, then clamped
    fid = rng.integers(0, 2**40, n).astype(np.uint64)
    kd = rng.integers(1, 4, n).astype(np.uint64) | (rng.integers(0, 2**32, n).astype(np.uint64) << np.uint64(32))
    explicit = rng.random(n) < 0.05
    kd[explicit] |= np.uint64(L.RING_KIND_TIMESTAMP_NS)
    ts[explicit] = rng.integers(0, 2**62, explicit.sum()).astype(np.uint64)
    return ts, fid, kd


def anchors(count):
    t = np.array([500, 3000, 50_000, 90_000, 150_000, 400_000][:count], np.uint64)
    ns = np.array([10**12, 10**12 + 2500, 10**12 + 49_000, 10**12 + 91_000, 10**12 + 140_000, 10**12 + 399_999][:count], np.uint64)
    return t, ns


def channel(cap=64, count=4):
    # a fixed pool (no growth): the producer overruns it where a test says so
    return ThreadChannel(3, RingConfig(ring_capacity=cap, ring_count=count, ring_growth=1), 1, "t")


def separate(ch, limit_n, at, an, n_anchors, last_ts):
    """The old drain path: take, convert, encode."""
    t, f, k = (np.empty(limit_n, np.uint64) for _ in range(3))
    n, start = index_ring_take(ch.ctrl, ch.index_pool, t, f, k)
    n = int(n)
    ns = np.empty(n, np.uint64)
    if n_anchors == 0:
        ns[:] = t[:n]
    else:
        convert_ticks(t[:n], ns, at, an, n_anchors)
    ev = np.empty(n, L.INDEX_EVENT_DTYPE)
    last, clamped = encode_ring_records(n, ns, t, f, k, ch.thread_id, np.uint64(last_ts), ev)
    return int(start), ev, int(last), int(clamped)


def fused(ch, out_n, at, an, n_anchors, last_ts, crc=None, limit=None):
    out = np.zeros(out_n, L.INDEX_EVENT_DTYPE)
    words = out.view(np.uint64).reshape(out_n, 4)
    limit = int(ch.ctrl[L.CTRL_INDEX_WRITE_POS]) if limit is None else limit
    if crc is None:
        n, start, last, clamped = index_ring_take_encoded(ch.ctrl, ch.index_pool, limit, words, ch.thread_id, last_ts, at, an, n_anchors)
        got_crc = None
    else:
        n, start, last, clamped, got_crc = index_ring_take_encoded_crc(
            ch.ctrl, ch.index_pool, limit, words, ch.thread_id, last_ts, at, an, n_anchors, crc
        )
    return int(start), out[: int(n)], int(last), int(clamped), got_crc


def py_convert(raw, at, an):
    """convert_ticks as first written: one float division per event (the reference)."""
    out = []
    for t in raw.tolist():
        seg = max(0, min(len(at) - 2, int(np.searchsorted(at, t, side="right")) - 1))
        t0, t1, n0, n1 = int(at[seg]), int(at[seg + 1]), int(an[seg]), int(an[seg + 1])
        slope = float(n1 - n0) / float(t1 - t0)
        out.append(n0 + int(np.round(float(t - t0) * slope)) if t >= t0 else n0 - int(np.round(float(t0 - t) * slope)))
    return out


@pytest.mark.parametrize("count", [2, 3, 6])
def test_convert_ticks_slope_per_segment_is_exact(count):
    at, an = anchors(count)
    rng = np.random.default_rng(count)
    raw = np.concatenate([np.sort(rng.integers(0, 500_000, 3000)), rng.integers(0, 500_000, 500), at]).astype(np.uint64)
    out = np.empty_like(raw)
    convert_ticks(raw, out, at, an, count)
    assert out.tolist() == py_convert(raw, at, an)
    assert out[-count:].tolist() == an.tolist()  # exact at every anchor


@pytest.mark.parametrize("n_anchors", [0, 1, 2, 6])
@pytest.mark.parametrize("with_crc", [False, True])
@pytest.mark.parametrize("out_n", [1, 2, 3, 64, 100, 1000])
def test_fused_take_equals_separate_kernels(n_anchors, with_crc, out_n):
    if with_crc and not kernel_ok():
        pytest.skip("no PCLMULQDQ CRC kernel on this CPU")
    ts, fid, kd = records(700, seed=out_n)
    at, an = anchors(max(n_anchors, 1))
    a, b = channel(cap=64, count=16), channel(cap=64, count=16)
    for ch in (a, b):
        push_all(ch.ctrl, ch.index_pool, ts, fid, kd)
    last_a = last_b = 10**12 + 100  # clamps the early ones
    crc = 0x1234567
    while True:
        start_b, ev_b, last_b2, clamped_b, got_crc = fused(b, out_n, at, an, n_anchors, last_b, crc if with_crc else None)
        start_a, ev_a, last_a2, clamped_a = separate(a, out_n, at, an, n_anchors, last_a)
        assert (start_b, last_b2, clamped_b) == (start_a, last_a2, clamped_a)
        assert ev_b.tobytes() == ev_a.tobytes()
        if with_crc:
            assert got_crc == zlib.crc32(ev_a.tobytes(), crc)
            crc = got_crc
        assert int(b.ctrl[L.CTRL_INDEX_READ_POS]) == int(a.ctrl[L.CTRL_INDEX_READ_POS])
        last_a, last_b = last_a2, last_b2
        if len(ev_a) == 0:
            break


@pytest.mark.parametrize("with_crc", [False, True])
def test_fused_take_after_drop_oldest_wraps_like_take(with_crc):
    """The producer overran the pool (drop-oldest): both start at the new READ_POS, rows wrap."""
    if with_crc and not kernel_ok():
        pytest.skip("no PCLMULQDQ CRC kernel on this CPU")
    ts, fid, kd = records(1000, seed=5)
    a, b = channel(cap=16, count=4), channel(cap=16, count=4)
    for ch in (a, b):
        push_all(ch.ctrl, ch.index_pool, ts, fid, kd)
    at, an = anchors(3)
    start_a, ev_a, _, _ = separate(a, 64, at, an, 3, 0)
    start_b, ev_b, _, _, got_crc = fused(b, 64, at, an, 3, 0, 0 if with_crc else None)
    assert start_a == start_b > 0 and len(ev_a) == len(ev_b) > 16
    assert ev_a.tobytes() == ev_b.tobytes()
    assert ev_b["function_id"].tolist() == fid[start_b:1000].tolist()
    if with_crc:
        assert got_crc == zlib.crc32(ev_a.tobytes())


def test_fused_take_stops_at_limit_and_resumes():
    ts, fid, kd = records(100, seed=2)
    ch = channel(cap=32, count=8)
    push_all(ch.ctrl, ch.index_pool, ts, fid, kd)
    at, an = anchors(2)
    start, ev, last, _, _ = fused(ch, 64, at, an, 2, 0, limit=40)
    assert start == 0 and len(ev) == 40 and int(ch.ctrl[L.CTRL_INDEX_READ_POS]) == 40
    start, ev2, _, _, _ = fused(ch, 64, at, an, 2, last, limit=40)
    assert start == 40 and len(ev2) == 0
    start, ev3, _, _, _ = fused(ch, 64, at, an, 2, last)
    assert start == 40 and len(ev3) == 60 and int(ch.ctrl[L.CTRL_INDEX_READ_POS]) == 100
    assert np.concatenate([ev["function_id"], ev3["function_id"]]).tolist() == fid.tolist()


# ------------------------------------------------------------------ writer


def encoded(n, t0=1000, tid=0):
    ev = np.zeros(n, L.INDEX_EVENT_DTYPE)
    ev["timestamp_ns"] = t0 + np.arange(n) * 3
    ev["function_id"] = np.arange(n) + 5
    ev["thread_id"] = tid
    ev["event_kind"] = 1 + (np.arange(n) % 2)
    ev["call_depth"] = np.arange(n) % 7
    ev["detail_seq"] = L.NO_DETAIL
    return ev


def write(w, ev):
    w.write_encoded(ev, zlib.crc32(ev.tobytes(), w.index_crc), w.index_crc)


def test_write_encoded_reads_back_and_verifies(tmp_path):
    a, b = encoded(100), encoded(50, t0=5000)
    w = ThreadWriter(tmp_path, 0)
    write(w, a)
    w.write_events(encoded(10, t0=4000))  # mixes with the ordinary batch path
    write(w, b)
    w.close()
    with atf2.ThreadReader(w.thread_dir) as r:
        assert not r.recovered and r.verify()["index"].crc == "ok"
        want = np.concatenate([a, encoded(10, t0=4000), b])
        assert r.index.events.tobytes() == want.tobytes()
        assert r.time_range() == (1000, 5000 + 49 * 3) and r.index.header["time_end_ns"] == 5000 + 49 * 3


def test_write_encoded_refuses_bad_batches(tmp_path):
    w = ThreadWriter(tmp_path, 0)
    write(w, encoded(10, t0=1000))
    size = os.path.getsize(w.index_path)
    back = encoded(10, t0=500)  # older than the previous batch
    with pytest.raises(AtfV2Error, match="must not decrease"):
        write(w, back)
    inside = encoded(10, t0=2000)
    inside["timestamp_ns"][4] = 1
    with pytest.raises(AtfV2Error, match="position 4"):
        write(w, inside)
    good = encoded(10, t0=3000)
    with pytest.raises(AtfV2Error, match="crc_in"):
        w.write_encoded(good, zlib.crc32(good.tobytes()), 0)
    assert os.path.getsize(w.index_path) == size and w.event_count == 10
    w.close()
    with pytest.raises(AtfV2Error):
        write(w, good)


def test_write_encoded_ordered_checks_only_the_first_timestamp(tmp_path):
    """``ordered=True`` (the drain: its kernel clamps timestamps) skips the
    scan of the batch but still refuses one that starts before the file's
    last event; the files are the same as with the full check."""
    paths = []
    for ordered in (False, True):
        w = ThreadWriter(tmp_path / str(ordered), 0)
        for t0 in (1000, 2000):
            ev = encoded(10, t0=t0)
            w.write_encoded(ev, zlib.crc32(ev.tobytes(), w.index_crc), w.index_crc, ordered=ordered)
        back = encoded(10, t0=1500)
        with pytest.raises(AtfV2Error, match="must not decrease"):
            w.write_encoded(back, zlib.crc32(back.tobytes(), w.index_crc), w.index_crc, ordered=ordered)
        w.close()
        paths.append(w.index_path)
    with open(paths[0], "rb") as a, open(paths[1], "rb") as b:
        assert a.read() == b.read()


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO])
def test_write_encoded_rolls_back_on_io_error(tmp_path, monkeypatch, err):
    w = ThreadWriter(tmp_path, 0)
    write(w, encoded(100))
    before = (w.event_count, w.index_crc, os.path.getsize(w.index_path))

    calls = []

    def failing(fd, bufs, offset):  # the batch's write fails after a partial write; the rollback's works
        calls.append(offset)
        if len(calls) > 1:
            return os.pwritev(fd, bufs, offset)
        os.pwrite(fd, b"x" * 100, offset)
        raise OSError(err, os.strerror(err))

    monkeypatch.setattr(W, "_pwritev", failing)
    with pytest.raises(WriteError) as info:
        write(w, encoded(100, t0=10_000))
    assert info.value.errno == err
    assert (w.event_count, w.index_crc, os.path.getsize(w.index_path)) == before
    monkeypatch.setattr(W, "_pwritev", os.pwritev)
    write(w, encoded(20, t0=20_000))
    w.close()
    with atf2.ThreadReader(w.thread_dir) as r:
        assert not r.recovered and r.verify()["index"].crc == "ok" and len(r.index) == 120


# --------------------------------------------------------------- end to end


@njit(nogil=True)
def produce(ctrl, pool, n):
    """Event i: function id i, kind 1/2 alternating, depth i % 1000, clock-stamped."""
    for i in range(n):
        index_ring_push(ctrl, pool, ticks(), np.uint64(i), np.uint64(1 + (i & 1)) | (np.uint64(i % 1000) << np.uint64(32)))


@pytest.mark.parametrize("fused_crc", [True, False])
def test_session_through_fused_path_every_event_exact(tmp_path, monkeypatch, fused_crc):
    """Chunks of the drain (small pool, several chunks per cycle) written exactly, CRC ok, both CRC routes."""
    if not fused_crc:
        monkeypatch.setattr(D, "crc_kernel_ok", lambda: False)
    monkeypatch.setattr(D, "DRAIN_CHUNK", 1000)
    n = 200_000
    sess = S.trace_session_start(tmp_path / "s", ring_capacity=4096, spare_rings=63, flush_interval=0.005)
    assert sess.drain._fused_crc == (fused_crc and kernel_ok())
    try:
        ch = sess.register_current_thread()
        produce(ch.ctrl, ch.index_pool, n)
    finally:
        st = S.trace_session_stop()
    assert st.index.recorded == n and st.index.dropped == 0 and st.index.written == n
    with atf2.SessionReader(tmp_path / "s") as r:
        (t,) = r.thread_ids
        tr = r.thread(t)
        assert tr.verify()["index"].crc == "ok" and not tr.recovered
        ev = tr.index.events.copy()
    assert ev["function_id"].tolist() == list(range(n))
    assert (ev["event_kind"] == 1 + (np.arange(n) & 1)).all() and (ev["call_depth"] == np.arange(n) % 1000).all()
    assert (np.diff(ev["timestamp_ns"].astype(np.int64)) >= 0).all() and (ev["detail_seq"] == L.NO_DETAIL).all()


def test_session_with_details_mixes_both_paths(tmp_path):
    """Chunks with details go through write_events, the others through write_encoded: links still right."""
    with atf2.trace_session(tmp_path / "s") as s:
        for i in range(300):
            atf2.emit("f", L.EVENT_CALL, detail=(b"d%d" % i) if i % 50 == 0 else None, depth=1)
            if i % 100 == 99:
                s.drain.wake.set()
    with atf2.SessionReader(tmp_path / "s") as r:
        (t,) = r.thread_ids
        tr = r.thread(t)
        assert tr.verify()["index"].crc == "ok" and tr.verify()["detail"].crc == "ok"
        linked = [i for i, e in enumerate(tr.index) if e.detail_seq != L.NO_DETAIL]
        assert linked == list(range(0, 300, 50))
        assert [tr.get_detail_for(tr.index[i]).payload for i in linked] == [b"d%d" % i for i in linked]


@pytest.mark.parametrize("fused_crc", [True, False])
def test_write_behind_failed_chunk_costs_only_itself(tmp_path, monkeypatch, fused_crc):
    """Chunks are encoded ahead of their write: when one write fails, the next (encoded
    with the CRC the failed one would have left) is checksummed again and written."""
    if not fused_crc:
        monkeypatch.setattr(D, "crc_kernel_ok", lambda: False)
    monkeypatch.setattr(D, "DRAIN_CHUNK", 1000)
    n = 20_500
    sess = S.trace_session_start(tmp_path / "s", ring_capacity=1024, spare_rings=31, flush_interval=60)
    calls = []

    def flaky(fd, bufs, offset):
        calls.append(offset)
        if len(calls) == 4:  # header/footer of the new file, then chunks: fail the third chunk
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.pwritev(fd, bufs, offset)

    try:
        ch = sess.register_current_thread()
        produce(ch.ctrl, ch.index_pool, n)
        monkeypatch.setattr(W, "_pwritev", flaky)
    finally:
        st = S.trace_session_stop()
    monkeypatch.setattr(W, "_pwritev", os.pwritev)
    assert st.index.recorded == n and st.index.written + st.index.dropped == n
    assert st.index.dropped == 1000 and st.index.drops["disk_error"] == 1000
    with atf2.SessionReader(tmp_path / "s") as r:
        (t,) = r.thread_ids
        tr = r.thread(t)
        assert tr.verify()["index"].crc == "ok" and not tr.recovered
        fids = tr.index.events["function_id"].tolist()
    lost = sorted(set(range(n)) - set(fids))
    assert len(lost) == 1000 and lost == list(range(lost[0], lost[0] + 1000)) and fids == sorted(fids)


class _Staging:
    """A writer that stages batches itself (like FlightWriter): only write_events may reach it."""

    def __init__(self, writer):
        self.writer = writer
        self.batches = []

    def __getattr__(self, name):
        return getattr(self.writer, name)

    def write_events(self, events, details=None):
        self.batches.append(events["function_id"].copy())
        self.writer.write_events(events, details)


def test_wrapping_writer_gets_write_events_only(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "DRAIN_CHUNK", 1000)
    config = RingConfig(ring_capacity=1024, ring_count=8)
    ch = ThreadChannel(0, config, 1, "t")
    ch.writer = _Staging(ThreadWriter(tmp_path, 0))
    drain = D.Drain(config, lambda: [ch], 60, lambda: None)
    produce(ch.ctrl, ch.index_pool, 2500)
    drain.cycle()
    produce(ch.ctrl, ch.index_pool, 10)
    drain.cycle(final=True)
    assert [len(b) for b in ch.writer.batches] == [1000, 1000, 500, 10]
    assert int(ch.ctrl[L.CTRL_INDEX_WRITTEN]) == 2510
    with atf2.ThreadReader(tmp_path / "thread_0") as r:
        assert r.verify()["index"].crc == "ok" and len(r.index) == 2510


def test_stop_leaves_no_drain_thread(tmp_path):
    before = {t.name for t in threading.enumerate()}
    with atf2.trace_session(tmp_path / "s", flush_interval=0.005) as s:
        fid = s.symbols.register("f")
        atf2.emit_batch(np.full(5000, fid, np.uint64), np.ones(5000, np.uint32))
    names = {t.name for t in threading.enumerate()} - before
    assert not [n for n in names if n.startswith("atf2-drain")], names


def test_bench_bar_verdict():
    """The drain benchmark's verdict on the issue's bar (>= 20M events/s, zero drops)."""
    from atf2.bench.drain import TARGET_RATE, bar_met

    def row(name, dropped=0, offered=TARGET_RATE, sustained=TARGET_RATE):
        return {"name": name, "dropped": dropped, "offered_events_per_s": offered, "sustained_events_per_s": sustained}

    assert bar_met(row("drain_paced_20M_1p", offered=0.995 * TARGET_RATE, sustained=0.995 * TARGET_RATE))
    assert not bar_met(row("drain_paced_20M_1p", dropped=1))
    assert not bar_met(row("drain_paced_spin_20M_1p", offered=0.9 * TARGET_RATE))  # the producer lost its pace
    assert bar_met(row("drain_flood_1p", sustained=25e6)) and not bar_met(row("drain_flood_1p", sustained=19e6))
    assert not bar_met(row("drain_flood_1p", sustained=25e6, dropped=5))
    assert bar_met(row("drain_only_prefilled")) is None


def test_bench_summary_prints_the_verdict_per_row(monkeypatch, capsys):
    """``python -m atf2.bench.drain --repeat N``: rows per run, best/median, drops and the bar's verdict."""
    from atf2.bench import drain as bench

    runs = iter([0, 3])

    def fake_run(quick=False):
        dropped = next(runs)
        common = {"unit": "events/s", "ratio_vs_raw": 0.5, "loadavg": 1.0, "drain_cpu_ns_per_event": 20.0, "drain_cpu_vs_raw_write_cpu": 1.5}
        return [
            {"name": "drain_paced_20M_1p", "value": 2e7, "dropped": dropped, "offered_events_per_s": 2e7, "sustained_events_per_s": 2e7, **common},
            {"name": "drain_only_prefilled", "value": 6e7, "dropped": 0, **common},
            {"name": "drain_stall_500ms_20M_1p", "value": 2e7, "dropped": 2 * dropped, "index_high_water": 8_300_000, **common},
        ]

    monkeypatch.setattr(bench, "run", fake_run)
    bench.main(["--repeat", "2"])
    out = capsys.readouterr().out
    assert "drops per run [0, 3]" in out and "drain CPU median 20.0 ns/event (1.50x the raw write's)" in out
    assert "drain_paced_20M_1p       met in 1 of 2 runs: 20.00M/s dropped 0, 20.00M/s dropped 3" in out
    assert "drain_only_prefilled     met" not in out
    assert "drain_stall_500ms_20M_1p absorbed in 1 of 2 runs: dropped 0 backlog 8.30M, dropped 6 backlog 8.30M" in out
    assert "drain_stall_500ms_20M_1p met" not in out  # not the bar's row


def test_bench_write_stall_blocks_writes_only_in_its_window(tmp_path, monkeypatch):
    """The stall rows' stand-in for a disk that stops taking writes: a write
    in the window sleeps until its end, one outside does not; the real write
    is back afterwards."""
    from atf2 import writer
    from atf2.bench import drain as bench

    clock = [100.0]
    slept = []
    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    monkeypatch.setattr(bench.time, "sleep", slept.append)
    real = writer._pwritev
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        with bench._WriteStall(0.25) as stall:
            assert writer._pwritev is stall
            assert writer._pwritev(fd, [b"ab"], 0) == 2 and slept == []  # no window yet
            stall.begin_at(101.0)
            for now, data, offset in ((100.5, b"cd", 2), (101.1, b"ef", 4), (101.25, b"gh", 6)):
                clock[0] = now
                assert writer._pwritev(fd, [data], offset) == 2
        assert writer._pwritev is real
    finally:
        os.close(fd)
    assert slept == [pytest.approx(0.15)]  # only the write at 101.1, until 101.25
    assert (tmp_path / "f").read_bytes() == b"abcdefgh"
