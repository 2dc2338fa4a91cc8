"""verify_session flags each kind of damage; recover_session makes killed sessions whole."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import atf2
from atf2 import layout as L
from atf2.manifest import read_manifest, write_manifest
from atf2.recover import recover_session
from atf2.verify import verify_session
from atf2.writer import ThreadWriter

FIXTURES = os.path.join(os.path.dirname(__file__), "data", "reference-c-writer")


def make_events(n, t0=1000, thread=0):
    ev = np.zeros(n, atf2.INDEX_EVENT_DTYPE)
    ev["timestamp_ns"] = t0 + np.arange(n, dtype=np.uint64) * 10
    ev["function_id"] = (1 << 32) | (np.arange(n) // 2 % 7)
    ev["event_kind"] = np.where(np.arange(n) % 2 == 0, atf2.EVENT_CALL, atf2.EVENT_RETURN)
    ev["thread_id"] = thread
    return ev


def make_session(root, threads=((0, 40, 3), (1, 30, 0)), status="complete", finalize=True):
    """threads: (id, events, every k-th event has a detail payload (0: none))."""
    root = str(root)
    os.makedirs(root, exist_ok=True)
    entries = []
    writers = []
    for tid, n, every in threads:
        w = ThreadWriter(root, tid, L.CLOCK_BOOTTIME)
        ev = make_events(n, t0=1000 + tid, thread=tid)
        half = n // 2
        for part in (ev[:half], ev[half:]):
            details = [bytes([i % 256]) * (5 + i % 9) if every and i % every == 0 else None for i in range(len(part))]
            w.write_events(part, details if every else None)
        writers.append(w)
        entry = {"id": tid, "name": f"T{tid}", "os_thread_id": 100 + tid}
        if finalize:
            s = w.finalize()
            entry.update(has_detail=s["has_detail"], index_events=s["index_events"], detail_events=s["detail_events"],
                         time_start_ns=s["time_start_ns"], time_end_ns=s["time_end_ns"])
            w.close()
        entries.append(entry)
    write_manifest(root, {"format_version": "2.1", "status": status, "clock_type": L.CLOCK_BOOTTIME, "threads": entries})
    return root, writers


def messages(problems):
    return "\n".join(str(p) for p in problems)


def patch(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def test_clean_session_verifies(tmp_path):
    root, _ = make_session(tmp_path / "s")
    notes = []
    assert verify_session(root, notes) == []
    assert notes == []


@pytest.mark.parametrize("name", ["s1", "s2"])
def test_reference_sessions_verify_with_crc_not_recorded(name):
    notes = []
    assert verify_session(os.path.join(FIXTURES, name), notes) == []
    assert notes and all("not recorded" in n.message for n in notes)


def _index(root, tid=0):
    return os.path.join(root, f"thread_{tid}", "index.atf")


def _detail(root, tid=0):
    return os.path.join(root, f"thread_{tid}", "detail.atf")


def _footer_field(name):
    return L.INDEX_FOOTER_DTYPE.fields[name][1]


DAMAGE = {
    # name: (function(root), expected text, file, expected offset or None)
    "flipped event byte -> CRC": (
        lambda r: patch(_index(r), L.INDEX_EVENTS_OFFSET + 32 * 3 + 9, b"\x77"),
        "CRC-32 mismatch", "index", L.INDEX_EVENTS_OFFSET + 32 * 40 + _footer_field("checksum"),
    ),
    "header count": (
        lambda r: patch(_index(r), L.INDEX_HEADER_DTYPE.fields["event_count"][1], np.uint32(7).tobytes()),
        "header event_count 7", "index", L.INDEX_HEADER_DTYPE.fields["event_count"][1],
    ),
    "time order": (
        lambda r: patch(_index(r), L.INDEX_EVENTS_OFFSET + 32 * 5, np.uint64(1).tobytes()),
        "event 5: timestamp smaller", "index", L.INDEX_EVENTS_OFFSET + 32 * 5,
    ),
    "event thread id": (
        lambda r: patch(_index(r), L.INDEX_EVENTS_OFFSET + 32 * 6 + L.INDEX_EVENT_OFFSETS["thread_id"], np.uint32(9).tobytes()),
        "event 6: event thread_id is not 0", "index", L.INDEX_EVENTS_OFFSET + 32 * 6,
    ),
    "link past the end": (
        lambda r: patch(_index(r), L.INDEX_EVENTS_OFFSET + 32 * 1 + L.INDEX_EVENT_OFFSETS["detail_seq"], np.uint32(500).tobytes()),
        "event 1: detail_seq points past", "index", L.INDEX_EVENTS_OFFSET + 32 * 1,
    ),
    "detail back link": (
        lambda r: patch(_detail(r), L.DETAIL_EVENTS_OFFSET + L.OFF_DETAIL_INDEX_SEQ, np.uint32(1).tobytes()),
        "does not link back", "detail", L.DETAIL_EVENTS_OFFSET,
    ),
    "footer cut": (
        lambda r: os.truncate(_index(r), L.INDEX_EVENTS_OFFSET + 32 * 40 + 10),
        "no footer", "index", None,
    ),
    "partial event": (
        lambda r: os.truncate(_index(r), L.INDEX_EVENTS_OFFSET + 32 * 39 + 10),
        "trailing bytes of a partial event", "index", L.INDEX_EVENTS_OFFSET + 32 * 39,
    ),
    "detail footer count": (
        lambda r: patch(_detail(r), os.path.getsize(_detail(r)) - 64 + L.DETAIL_FOOTER_DTYPE.fields["event_count"][1], np.uint64(99).tobytes()),
        "footer event_count 99", "detail", None,
    ),
    "detail framing": (
        lambda r: patch(_detail(r), L.DETAIL_EVENTS_OFFSET + L.OFF_DETAIL_TOTAL_LENGTH, np.uint32(3).tobytes()),
        "framing broken", "detail", L.DETAIL_EVENTS_OFFSET,
    ),
    "bad magic": (lambda r: patch(_index(r), 0, b"XXXX"), "bad magic", "index", 0),
    "manifest count": (
        lambda r: _edit_manifest(r, lambda m: m["threads"][0].update(index_events=41)),
        "index_events is 41, the files hold 40", "manifest", None,
    ),
    "manifest recording": (
        lambda r: _edit_manifest(r, lambda m: m.update(status="recording")),
        '"recording"', "manifest", None,
    ),
    "manifest has_detail": (
        lambda r: _edit_manifest(r, lambda m: m["threads"][1].update(has_detail=True)),
        "has_detail is True but detail.atf is absent", "manifest", None,
    ),
    "unlisted thread": (
        lambda r: shutil.copytree(os.path.join(r, "thread_1"), os.path.join(r, "thread_7")),
        "not listed in the manifest", "thread_7", None,
    ),
    "missing index": (lambda r: os.unlink(_index(r, 1)), "missing", "thread_1", None),
    "manifest not json": (lambda r: Path(os.path.join(r, "manifest.json")).write_text("{"), "not valid JSON", "manifest", None),
}


def _edit_manifest(root, change):
    with open(os.path.join(root, "manifest.json")) as f:
        m = json.load(f)
    change(m)
    write_manifest(root, m)


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_verify_flags_each_kind_of_damage(tmp_path, kind):
    root, _ = make_session(tmp_path / "s")
    damage, text, where, offset = DAMAGE[kind]
    damage(root)
    problems = verify_session(root)
    hits = [p for p in problems if text in p.message]
    assert hits, messages(problems)
    assert any(where in p.path and (offset is None or p.offset == offset) for p in hits), messages(problems)


def _killed_session(tmp_path):
    """A recorder killed mid-way: placeholder headers, a partial last batch in
    both files, a detail event whose index event never reached disk."""
    root, writers = make_session(tmp_path / "s", status="recording", finalize=False)
    for w in writers:  # the process died: its descriptors just go away
        os.close(w._index_fd)
        if w._detail_fd is not None:
            os.close(w._detail_fd)
        w._closed = True
    ipath, dpath = _index(root), _detail(root)
    # index: drop the last three events (one had a detail: index 38) and the
    # footer, then half an event of a new batch
    with open(ipath, "r+b") as f:
        data = f.read()
    events = data[64 : 64 + 32 * 40]
    with open(ipath, "wb") as f:
        f.write(data[:64] + events[: 32 * 37] + b"\xab" * 20)
    # detail: the detail of index event 38 stays, plus a partial event
    with open(dpath, "ab") as f:
        f.write(b"\x40\x00\x00\x00\x03\x00")
    return root, data[:64] + events[: 32 * 37]


def test_recover_killed_session(tmp_path):
    root, kept_index = _killed_session(tmp_path)
    before = verify_session(root)
    assert any("no footer" in p.message for p in before)
    assert any("recording" in p.message for p in before)
    d_before = Path(_detail(root)).read_bytes()

    report = recover_session(root)
    assert report["changed"] and report["status"] == "recovered"
    assert verify_session(root) == [], messages(verify_session(root))

    m = read_manifest(root)
    assert m["status"] == "recovered" and m["recovered_from_status"] == "recording"
    t0 = {t["id"]: t for t in m["threads"]}[0]
    assert t0["index_events"] == 37 and t0["has_detail"] and t0["detail_events"] == 13
    # every complete index event is unchanged; the partial one is kept aside
    index = Path(_index(root)).read_bytes()
    assert index[64 : 64 + 32 * 37] == kept_index[64:]
    assert Path(_index(root) + ".partial").read_bytes() == b"\xab" * 20
    # detail: the event of index 39 (gone) and the partial bytes are kept aside
    detail = Path(_detail(root)).read_bytes()
    aside = Path(_detail(root) + ".partial").read_bytes()
    cut = len(detail) - 64
    assert detail[:64] != d_before[:64]  # header rewritten with counts
    assert detail[64:cut] + aside == d_before[64:]
    assert aside.endswith(b"\x40\x00\x00\x00\x03\x00") and len(aside) > 64 + 6  # event of index 38, old footer
    log = json.loads(Path(os.path.join(root, "thread_0", "recovered.json")).read_text())
    assert {e["file"] for e in log[0]["moved_aside"]} == {"index.atf", "detail.atf"}

    # idempotent: nothing changes the second time
    snapshot = {p: Path(p).read_bytes() for p in (_index(root), _detail(root), os.path.join(root, "manifest.json"))}
    again = recover_session(root)
    assert not again["changed"]
    assert snapshot == {p: Path(p).read_bytes() for p in snapshot}
    assert not os.path.exists(_index(root) + ".partial.1")


def test_recover_keeps_nothing_lost_byte_count(tmp_path):
    root, _ = _killed_session(tmp_path)
    sizes_before = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs if f.endswith(".atf"))
    recover_session(root)
    # every byte that was in a .atf file is either still there or in a .partial file
    footers = 0
    atf = partial = 0
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            if f.endswith(".atf"):
                atf += os.path.getsize(p)
                footers += 64
            elif ".partial" in f:
                partial += os.path.getsize(p)
    # the old (intact) footers of thread 1 and the detail were replaced in place
    assert atf - footers + partial >= sizes_before - 3 * 64


def test_recover_complete_session_is_a_no_op(tmp_path):
    root, _ = make_session(tmp_path / "s")
    copy = shutil.copytree(os.path.join(FIXTURES, "s2"), tmp_path / "s2")
    for r in (root, str(copy)):
        files = {os.path.join(d, f): Path(os.path.join(d, f)).read_bytes() for d, _, fs in os.walk(r) for f in fs}
        assert recover_session(r)["changed"] is False
        assert files == {os.path.join(d, f): Path(os.path.join(d, f)).read_bytes() for d, _, fs in os.walk(r) for f in fs}


def test_recover_refuses_corruption_without_touching_anything(tmp_path):
    root, _ = make_session(tmp_path / "s", status="recording")
    patch(_index(root, 1), 0, b"JUNK")
    before = Path(_index(root, 0)).read_bytes()
    with pytest.raises(atf2.CorruptFileError) as info:
        recover_session(root)
    assert "thread_1" in str(info.value) and "byte 0" in str(info.value)
    assert Path(_index(root, 0)).read_bytes() == before
    assert read_manifest(root)["status"] == "recording"


def test_recover_rebuilds_unreadable_manifest(tmp_path):
    root, _ = make_session(tmp_path / "s")
    Path(os.path.join(root, "manifest.json")).write_text("{broken")
    recover_session(root)
    m = read_manifest(root)
    assert m["status"] == "recovered" and [t["id"] for t in m["threads"]] == [0, 1]
    assert Path(os.path.join(root, "manifest.json.partial")).read_text() == "{broken"
    assert verify_session(root) == []


def test_recover_abandoned_writer_and_read_back(tmp_path):
    """The writer as a kill leaves it: every batch ended with a footer, but the
    header is still the placeholder and the manifest says "recording"."""
    root, writers = make_session(tmp_path / "s", status="recording", finalize=False)
    for w in writers:
        os.close(w._index_fd)
        if w._detail_fd is not None:
            os.close(w._detail_fd)
        w._closed = True
    problems = verify_session(root)
    assert any("header event_count 0, footer says 40" in p.message for p in problems), messages(problems)
    before = Path(_index(root)).read_bytes()
    recover_session(root)
    assert verify_session(root) == []
    after = Path(_index(root)).read_bytes()
    assert after[64:] == before[64:] and len(after) == len(before)  # only the header changed
    assert not os.path.exists(_index(root) + ".partial")
    with atf2.SessionReader(root) as reader:
        assert reader.status == "recovered" and reader.event_count() == 70
        assert not any(t.recovered for t in reader.threads)
        s = reader.summary()
        assert s.threads["calls"].tolist() == [20, 15]
        assert len(reader.intervals()) == 35
