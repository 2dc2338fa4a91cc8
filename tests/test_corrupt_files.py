"""Crash recovery and corruption: cut files read what is there, bad bytes raise
AtfV2Error (naming the file and the byte offset) and nothing else."""

import os
import shutil
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import atf2
from atf2.errors import AtfV2Error, CorruptFileError


@pytest.fixture
def small_session(tmp_path_factory, make_events, write_session):
    d = tmp_path_factory.mktemp("small") / "session"
    ev = make_events(12, seed=3)
    payloads = [bytes(range(i * 3)) if i % 3 == 0 else None for i in range(12)]
    write_session(d, {0: [(ev[:5], payloads[:5]), (ev[5:], payloads[5:])], 1: [(make_events(4, seed=4), None)]})
    return d


def read_everything(session_dir):
    """Use every read path; return a digest of what was read."""
    out = []
    with atf2.SessionReader(session_dir) as s:
        out.append(s.event_count())
        out.append(s.time_range())
        merged = s.merged()
        out.append(merged.tobytes())
        out.append(sum(len(c) for c in s.merged(chunk_size=3)))
        out.append(len(list(s.merged_iter())))
        for t in s.threads:
            out.append(list(t.index))
            out.append(t.index.take(np.arange(len(t.index))).tobytes())
            for e in t.index:
                d = t.get_detail_for(e)
                if d is not None:
                    out.append(d)
                    out.append(t.get_index_for(d))
            if t.detail is not None:
                out.append(list(t.detail))
                out.extend(t.detail.get_by_index_seq(d.index_seq) for d in t.detail)
            out.append(t.verify())
    return out


def try_read(session_dir):
    try:
        return read_everything(session_dir)
    except AtfV2Error as exc:
        assert str(session_dir) in str(exc)  # names the file
        return exc


# ------------------------------------------------------------- truncation


@pytest.mark.parametrize("which", ["index", "detail"])
def test_cut_at_every_byte(small_session, tmp_path, which):
    src = small_session / "thread_0" / f"{which}.atf"
    full = src.read_bytes()
    with atf2.ThreadReader(small_session / "thread_0") as t:
        index_all = list(t.index)
        detail_all = list(t.detail)
    work = tmp_path / "cut"
    for cut in range(len(full) + 1):
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(small_session, work)
        (work / "thread_0" / f"{which}.atf").write_bytes(full[:cut])
        try:
            t = atf2.ThreadReader(work / "thread_0", 0)
        except AtfV2Error as exc:
            assert cut < 64 and "truncated header" in str(exc) and str(work) in str(exc)
            continue
        with t:
            assert cut >= 64
            idx = list(t.index)
            det = list(t.detail) if t.detail is not None else []
            if which == "index":
                assert idx == index_all[: len(idx)] and det == detail_all
                assert len(idx) == (len(index_all) if cut == len(full) else min((cut - 64) // 32, len(index_all)))
                assert t.index.recovered == (cut != len(full))
            else:
                assert idx == index_all and det == detail_all[: len(det)]
                assert t.detail.recovered == (cut != len(full))
                for e in idx:  # links into the lost part are reported, not crashed on
                    try:
                        t.get_detail_for(e)
                    except AtfV2Error:
                        assert e.detail_seq >= len(det)


def test_session_cut_everywhere_reads_or_fails_cleanly(small_session, tmp_path):
    for name in ("thread_0/index.atf", "thread_0/detail.atf", "thread_1/index.atf", "manifest.json"):
        full = (small_session / name).read_bytes()
        for cut in sorted({0, 1, 10, 63, 64, 65, 80, 96, len(full) // 2, len(full) - 64, len(full) - 1}):
            if cut < 0 or cut > len(full):
                continue
            work = tmp_path / f"w{name.replace('/', '_')}{cut}"
            shutil.copytree(small_session, work)
            (work / name).write_bytes(full[:cut])
            try_read(work)


# --------------------------------------------------------------- bad bytes


def patch(path, offset, fmt, value):
    data = bytearray(path.read_bytes())
    struct.pack_into(fmt, data, offset, value)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "offset,fmt,value,what",
    [
        (0, "<4s", b"ATX2", "magic"),
        (4, "<B", 2, "endian"),
        (5, "<B", 9, "version"),
        (24, "<I", 16, "event_size"),
        (32, "<Q", 128, "events_offset"),
    ],
)
def test_bad_index_header(small_session, offset, fmt, value, what):
    p = small_session / "thread_0" / "index.atf"
    patch(p, offset, fmt, value)
    with pytest.raises(CorruptFileError, match=what) as info:
        atf2.IndexReader(p)
    assert info.value.path == str(p) and info.value.offset == offset
    assert f"at byte {offset}" in str(info.value)
    with pytest.raises(AtfV2Error):
        atf2.SessionReader(small_session)


@pytest.mark.parametrize(
    "offset,fmt,value,what",
    [(0, "<4s", b"ATI2", "magic"), (4, "<B", 0, "endian"), (5, "<B", 2, "version"), (20, "<Q", 65, "events_offset")],
)
def test_bad_detail_header(small_session, offset, fmt, value, what):
    p = small_session / "thread_0" / "detail.atf"
    patch(p, offset, fmt, value)
    with pytest.raises(CorruptFileError, match=what) as info:
        atf2.DetailReader(p)
    assert info.value.offset == offset


@pytest.mark.parametrize("length", [0, 1, 23, 10**6, 0xFFFFFFFF])
def test_bad_detail_lengths(small_session, length):
    p = small_session / "thread_0" / "detail.atf"
    with atf2.DetailReader(p) as r:
        second = int(r.offsets[1])
    patch(p, second, "<I", length)
    with pytest.raises(CorruptFileError) as info:
        atf2.DetailReader(p)
    assert info.value.offset == second and "total_length" in str(info.value)


def test_bad_detail_lengths_without_footer(small_session):
    p = small_session / "thread_0" / "detail.atf"
    data = bytearray(p.read_bytes()[:-64])
    struct.pack_into("<I", data, 64, 3)  # first event says 3 bytes
    p.write_bytes(bytes(data))
    with pytest.raises(CorruptFileError, match="total_length"):
        atf2.DetailReader(p)


def test_detail_index_seq_must_increase(small_session):
    p = small_session / "thread_0" / "detail.atf"
    with atf2.DetailReader(p) as r:
        off = int(r.offsets[2])
        prev = int(r.index_seqs[1])
    patch(p, off + 8, "<I", prev)
    with pytest.raises(CorruptFileError, match="index_seq"):
        atf2.DetailReader(p)


def test_detail_footer_count_mismatch(small_session):
    p = small_session / "thread_0" / "detail.atf"
    size = p.stat().st_size
    patch(p, size - 64 + 8, "<Q", 99)
    with pytest.raises(CorruptFileError, match="footer"):
        atf2.DetailReader(p)


def test_links_past_the_end(small_session):
    p = small_session / "thread_0" / "index.atf"
    patch(p, 64 + 28, "<I", 1000)  # event 0's detail_seq
    with atf2.ThreadReader(p.parent) as t:
        with pytest.raises(CorruptFileError, match="does not exist"):
            t.get_detail_for(t.index[0])
        with pytest.raises(CorruptFileError, match="CRC"):  # the CRC sees it first
            t.verify()
    q = small_session / "thread_0" / "detail.atf"
    with atf2.DetailReader(q) as r:
        last = int(r.offsets[-1])
    patch(q, last + 8, "<I", 5000)  # last detail's index_seq
    with atf2.ThreadReader(p.parent) as t, pytest.raises(CorruptFileError, match="index event 5000"):
        t.get_index_for(t.detail.get(len(t.detail) - 1))


def test_verify_catches_event_damage(small_session):
    p = small_session / "thread_1" / "index.atf"
    for offset, fmt, value, what in [(64 + 32 + 16, "<I", 7, "thread_id"), (64 + 32 + 20, "<I", 9, "event_kind"), (64 + 32, "<Q", 0, "back in time")]:
        original = p.read_bytes()
        patch(p, offset, fmt, value)
        with atf2.IndexReader(p) as r, pytest.raises(CorruptFileError, match="CRC"):
            r.verify()
        data = bytearray(p.read_bytes())
        import zlib

        struct.pack_into("<I", data, len(data) - 60, zlib.crc32(bytes(data[64:-64])))
        p.write_bytes(bytes(data))
        with atf2.IndexReader(p) as r, pytest.raises(CorruptFileError, match=what):
            r.verify()
        p.write_bytes(original)


def test_detail_file_flagged_but_missing(small_session):
    os.unlink(small_session / "thread_0" / "detail.atf")
    with pytest.raises(AtfV2Error, match="detail"):
        atf2.SessionReader(small_session)
    with pytest.raises(CorruptFileError, match="detail"):
        atf2.ThreadReader(small_session / "thread_0")


def test_not_a_file(tmp_path):
    with pytest.raises(CorruptFileError, match="missing"):
        atf2.IndexReader(tmp_path / "nope.atf")
    with pytest.raises(CorruptFileError):
        atf2.IndexReader(tmp_path)  # a directory
    (tmp_path / "empty.atf").write_bytes(b"")
    with pytest.raises(CorruptFileError, match="truncated"):
        atf2.DetailReader(tmp_path / "empty.atf")


# ------------------------------------------------------------------ fuzzing


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_damage_only_atf_errors(small_session, tmp_path_factory, data):
    work = tmp_path_factory.mktemp("fuzz") / "s"
    shutil.copytree(small_session, work)
    for _ in range(data.draw(st.integers(1, 4))):
        name = data.draw(st.sampled_from(["thread_0/index.atf", "thread_0/detail.atf", "thread_1/index.atf"]))
        p = work / name
        raw = bytearray(p.read_bytes())
        action = data.draw(st.sampled_from(["flip", "set", "cut", "grow"]))
        if action == "cut":
            raw = raw[: data.draw(st.integers(0, len(raw)))]
        elif action == "grow":
            raw += data.draw(st.binary(min_size=1, max_size=100))
        elif raw:
            pos = data.draw(st.integers(0, len(raw) - 1))
            if action == "flip":
                raw[pos] ^= 1 << data.draw(st.integers(0, 7))
            else:
                width = data.draw(st.sampled_from([1, 2, 4, 8]))
                value = data.draw(st.sampled_from([0, 1, 23, 24, 0x7F, 0xFF, 0xFFFFFFFF, 2**63, 2**64 - 1]))
                chunk = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
                raw[pos : pos + width] = chunk[: len(raw) - pos]
        p.write_bytes(bytes(raw))
    try_read(work)


def test_detail_footer_damaged_reads_as_recovered(small_session):
    p = small_session / "thread_0" / "detail.atf"
    with atf2.DetailReader(p) as r:
        expect = list(r)
    for offset in (0, 1, 3, 16, 17):  # magic or length of the footer damaged (a wrong count is corruption)
        data = bytearray(p.read_bytes())
        data[len(data) - 64 + offset] ^= 0x40
        q = p.with_name("d.atf")
        q.write_bytes(bytes(data))
        with atf2.DetailReader(q) as r:
            assert r.recovered and list(r) == expect
