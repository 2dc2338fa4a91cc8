"""``verify_session`` finds each kind of damage, one field at a time.

A small valid session is damaged in exactly one place per case (a header or
footer field, a file cut, the manifest); verify must report that place with
its own message, and the undamaged session verifies clean.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import atf2.layout as L
from atf2.errors import AtfV2Error
from atf2.manifest import manifest_path
from atf2.verify import Problem, verify_session

INDEX = os.path.join("thread_0", "index.atf")
DETAIL = os.path.join("thread_0", "detail.atf")


@pytest.fixture
def session(tmp_path, make_events, write_session):
    ev = make_events(8, thread_id=0)
    details = [b"\x01\x02\x03" if i % 3 == 0 else None for i in range(8)]
    d = write_session(tmp_path / "s", {0: [(ev, details)]})
    with open(manifest_path(d)) as f:
        doc = json.load(f)
    doc["time_start_ns"], doc["time_end_ns"] = int(ev["timestamp_ns"][0]), int(ev["timestamp_ns"][-1])
    with open(manifest_path(d), "w") as f:
        json.dump(doc, f)
    return str(d)


def _patch(session, rel, dtype, field, value, at=None):
    """Set one field of the header (at 0) or of the footer (at its offset) of a file."""
    path = os.path.join(session, rel)
    buf = np.fromfile(path, dtype=np.uint8)
    if at == "footer":
        at = len(buf) - dtype.itemsize
    rec = buf[at or 0 : (at or 0) + dtype.itemsize].view(dtype)
    rec[field] = value
    buf.tofile(path)


def _manifest(session, **changes):
    with open(manifest_path(session)) as f:
        doc = json.load(f)
    for key, value in changes.items():
        if key.startswith("thread_"):
            doc["threads"][0][key[len("thread_") :]] = value
        else:
            doc[key] = value
    with open(manifest_path(session), "w") as f:
        json.dump(doc, f)


def _messages(session):
    return [str(p) for p in verify_session(session)]


def test_the_undamaged_session_verifies_clean(session):
    notes: list[Problem] = []
    assert verify_session(session, notes) == [] and notes == []


IH, IF, DH, DF = L.INDEX_HEADER_DTYPE, L.INDEX_FOOTER_DTYPE, L.DETAIL_HEADER_DTYPE, L.DETAIL_FOOTER_DTYPE

HEADER_AND_FOOTER_CASES = [
    (INDEX, IH, "magic", b"XXXX", None, "bad magic"),
    (INDEX, IH, "endian", 2, None, "endian byte is 2"),
    (INDEX, IH, "version", 99, None, "version 99"),
    (INDEX, IH, "thread_id", 5, None, "header thread_id 5 in the directory of thread 0"),
    (INDEX, IH, "event_size", 31, None, "event_size 31"),
    (INDEX, IH, "events_offset", 8, None, "events_offset 8"),
    (INDEX, IH, "clock_type", 9, None, "but the manifest says"),
    (INDEX, IH, "event_count", 3, None, "header event_count 3, footer says 8"),
    (INDEX, IH, "footer_offset", 64, None, "header footer_offset 64"),
    (INDEX, IH, "time_end_ns", 1, None, "header time_end_ns 1"),
    (INDEX, IH, "flags", 0, None, "has_detail_file flag is 0 but detail.atf exists"),
    (INDEX, IF, "event_count", 2, "footer", "footer event_count 2"),
    (INDEX, IF, "bytes_written", 2, "footer", "footer bytes_written 2"),
    (INDEX, IF, "time_start_ns", 1, "footer", "footer time_start_ns 1"),
    (INDEX, IF, "checksum", 1, "footer", "CRC-32 mismatch"),
    (DETAIL, DH, "magic", b"XXXX", None, "bad magic"),
    (DETAIL, DH, "events_offset", 8, None, "events_offset 8"),
    (DETAIL, DH, "index_seq_start", 5, None, "header index_seq_start 5"),
    (DETAIL, DH, "bytes_length", 5, None, "header bytes_length 5"),
    (DETAIL, DF, "event_count", 9, "footer", "footer event_count 9"),
    (DETAIL, DF, "time_end_ns", 1, "footer", "footer time_end_ns 1"),
    (DETAIL, DF, "checksum", 1, "footer", "CRC-32 mismatch"),
]


@pytest.mark.parametrize(("rel", "dtype", "field", "value", "at", "message"), HEADER_AND_FOOTER_CASES)
def test_one_damaged_field_is_reported(session, rel, dtype, field, value, at, message):
    _patch(session, rel, dtype, field, value, at)
    messages = _messages(session)
    assert any(message in m and rel in m for m in messages), messages


def test_checksum_not_recorded_is_a_note(session):
    _patch(session, INDEX, IF, "checksum", 0, "footer")
    notes: list[Problem] = []
    assert verify_session(session, notes) == []
    assert [n.message for n in notes] == ["CRC-32 not recorded (checksum 0)"] and "at byte" in str(notes[0])


def test_cut_files(session):
    index = os.path.join(session, INDEX)
    with open(index, "r+b") as f:
        f.truncate(os.path.getsize(index) - L.INDEX_FOOTER_SIZE - 5)  # no footer, a partial last event
    messages = _messages(session)
    assert any("no footer" in m and "7 complete events" in m for m in messages)
    assert any("trailing bytes of a partial event" in m for m in messages)
    with open(index, "r+b") as f:
        f.truncate(10)
    assert any("shorter than the" in m for m in _messages(session))
    open(index, "wb").close()  # empty: nothing to map
    assert any("file of 0 bytes" in m for m in _messages(session))
    os.remove(index)
    assert any(m.endswith("index.atf: missing") for m in _messages(session))


def test_cut_detail_file(session):
    detail = os.path.join(session, DETAIL)
    with open(detail, "r+b") as f:
        f.truncate(os.path.getsize(detail) - L.DETAIL_FOOTER_SIZE - 2)
    messages = _messages(session)
    assert any("no footer" in m and DETAIL in m for m in messages)
    assert any("trailing bytes of a partial detail event" in m for m in messages)
    with open(detail, "r+b") as f:
        f.truncate(10)
    assert any("shorter than the" in m and DETAIL in m for m in _messages(session))


def test_bytes_after_the_footer(session):
    with open(os.path.join(session, INDEX), "ab") as f:
        f.write(b"\0" * 3)
    assert any("3 bytes after the footer" in m for m in _messages(session))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"status": "recording"}, 'status is "recording"'),
        ({"thread_has_detail": False}, "has_detail is False but detail.atf exists"),
        ({"thread_index_events": 3}, "index_events is 3, the files hold 8"),
        ({"time_start_ns": 1 << 62}, "is after the first event"),
        ({"time_end_ns": 1}, "is before the last event"),
    ],
)
def test_manifest_disagreements(session, changes, message):
    _manifest(session, **changes)
    assert any(message in m for m in _messages(session))


def test_unlisted_thread_directory_and_unreadable_manifest(session):
    os.mkdir(os.path.join(session, "thread_7"))
    messages = _messages(session)
    assert any("thread_7: thread directory not listed in the manifest" in m for m in messages)
    assert any("thread_7" in m and "index.atf: missing" in m for m in messages)
    with open(manifest_path(session), "w") as f:
        f.write("{")
    messages = _messages(session)
    assert any(m.startswith(manifest_path(session)) for m in messages)


def test_not_a_session_directory(tmp_path):
    with pytest.raises(AtfV2Error, match="not a session directory"):
        verify_session(tmp_path / "none")
