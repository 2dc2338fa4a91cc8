"""Reader paths the reader tests leave out: a thread's two files that
disagree, links that point at nothing, files that are not regular files, a
map closed under a live view, and the symbol table's limits."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

import atf2
from atf2.errors import AtfV2Error, CorruptFileError, DanglingLinkError
from atf2.reader._common import MappedFile
from atf2.symbols import SymbolTable


def _thread(tmp_path, make_events, tid=0, n=6, details=True):
    ev = make_events(n, thread_id=tid)
    d = tmp_path / f"w{tid}"
    d.mkdir()
    with atf2.ThreadWriter(d, tid) as w:
        w.write_events(ev, [b"\x01\x02" if details and i % 2 == 0 else None for i in range(n)])
        w.finalize()
    return d / f"thread_{tid}"


def test_thread_reader_links_and_repr(tmp_path, make_events):
    with atf2.ThreadReader(_thread(tmp_path, make_events)) as t:
        assert repr(t) == "<ThreadReader thread_0: 6 events, 3 details>"
        assert t.has_detail and not t.recovered and t.event_count() == len(t) == 6 and t.detail_count() == 3
        first = t.index[0]
        detail = t.get_detail_for(first)
        assert detail is not None and t.get_index_for(detail) == first
        assert t.get_detail_for(t.index[1]) is None  # no link
        assert t.get_detail_for({"detail_seq": 0}) == detail  # a mapping works too
        with pytest.raises(DanglingLinkError, match="index holds 6 events"):
            t.get_index_for({"index_seq": 6})
    with atf2.ThreadReader(_thread(tmp_path, make_events, tid=1, details=False)) as t:
        assert repr(t) == "<ThreadReader thread_1: 6 events>" and t.detail_count() == 0
        assert set(t.verify()) == {"index"}
        with pytest.raises(DanglingLinkError, match="has no detail file"):
            t.get_detail_for({"detail_seq": 3})
        with pytest.raises(DanglingLinkError):
            t.get_index_for({"index_seq": -1})


def test_thread_files_that_disagree(tmp_path, make_events):
    a = _thread(tmp_path, make_events, tid=0)
    b = _thread(tmp_path, make_events, tid=1)
    with pytest.raises(CorruptFileError, match="the session says 5"):
        atf2.ThreadReader(a, thread_id=5)
    shutil.copy(b / "detail.atf", a / "detail.atf")  # thread 1's detail file in thread 0's directory
    with pytest.raises(CorruptFileError, match="the header says thread 1, the index file says 0"):
        atf2.ThreadReader(a)
    os.remove(a / "detail.atf")
    with pytest.raises(CorruptFileError, match=r"detail\.atf is missing"):
        atf2.ThreadReader(a)


def test_mapped_file_refuses_what_is_not_a_regular_file(tmp_path):
    with pytest.raises(CorruptFileError, match="is missing"):
        MappedFile(tmp_path / "none", 8, "index file")
    with pytest.raises(CorruptFileError, match="not a regular file"):
        MappedFile(tmp_path, 8, "index file")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(CorruptFileError, match="not a regular file"):
        MappedFile(fifo, 8, "index file")
    link = tmp_path / "loop"
    os.symlink(link, link)  # ELOOP: an error other than "missing"
    with pytest.raises(CorruptFileError, match="cannot open index file"):
        MappedFile(link, 8, "index file")


def test_mapped_file_closed_while_a_view_is_alive(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(bytes(range(16)))
    m = MappedFile(p, 8, "file")
    view = m.array(np.dtype("<u8"), 0, 2)
    m.close()  # the view keeps the map: no BufferError out of close
    assert m.map is None and m.bytes is None and view[0] == 0x0706050403020100
    m.close()  # twice is fine


def test_symbol_table_names_modules_and_lookups():
    table = SymbolTable()
    with pytest.raises(AtfV2Error, match="non-empty string"):
        table.register("")
    fid = table.register("f", module="m")  # the module's path is not known yet
    assert table.register("g", module="m", file="/m.py") == fid + 1  # ... and is learned here
    assert table.register("f", module="m") == fid and len(table) == 2 and fid in table
    modules, symbols = table.to_manifest()
    assert modules == [{"id": 0, "name": "m", "path": "/m.py"}] and [s["name"] for s in symbols] == ["f", "g"]
    assert table.lookup(fid).qualname == "f" and table.lookup(12345) is None


def test_opaque_detail_events_have_no_decoded_fields(tmp_path, make_events):
    with atf2.ThreadReader(_thread(tmp_path, make_events)) as t:
        d = t.detail.get(0)
        assert d.flags == 0 and d.decoded() is None
        assert d.args is None and d.return_value is None and d.exception is None and d.stack is None
        assert bytes(t.detail.payload_view(0)) == b"\x01\x02"
        with pytest.raises(DanglingLinkError):
            t.detail.payload_view(3)
        assert repr(t.detail).endswith("thread 0: 3 events>") and repr(t.index).endswith("thread 0: 6 events>")


def _cut_footer(path, footer_size, extra=0):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) - footer_size - extra)


def test_recovered_files_time_range_and_repr(tmp_path, make_events):
    d = _thread(tmp_path, make_events)
    _cut_footer(d / "index.atf", atf2.layout.INDEX_FOOTER_SIZE)
    _cut_footer(d / "detail.atf", atf2.layout.DETAIL_FOOTER_SIZE)
    with atf2.ThreadReader(d) as t:
        assert t.recovered and repr(t.index).endswith("recovered>") and repr(t.detail).endswith("recovered>")
        ev = t.index.events
        assert t.index.time_range() == (int(ev["timestamp_ns"][0]), int(ev["timestamp_ns"][-1]))
        assert t.detail.time_range() == (t.detail[0].timestamp, t.detail[2].timestamp)


def test_recovered_empty_files_time_range(tmp_path):
    d = tmp_path / "w"
    d.mkdir()
    with atf2.ThreadWriter(d, 0) as w:
        w.write_events(np.zeros(0, dtype=atf2.INDEX_EVENT_DTYPE), [])
        w.finalize()
    _cut_footer(d / "thread_0" / "index.atf", atf2.layout.INDEX_FOOTER_SIZE)
    with atf2.IndexReader(d / "thread_0" / "index.atf") as r:
        assert r.recovered and len(r) == 0 and r.time_range() == (0, 0)


def test_take_needs_integer_indices(tmp_path, make_events):
    with atf2.ThreadReader(_thread(tmp_path, make_events)) as t:
        assert len(t.index.take([])) == 0  # an empty list is float64 to numpy, and fine
        with pytest.raises(TypeError, match="indices must be integers"):
            t.index.take([1.5])
