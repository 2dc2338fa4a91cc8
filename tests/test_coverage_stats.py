"""Stats objects as plain data: a lane and a thread as dicts, a session's
thread lookup (and its error for an unknown thread)."""

from __future__ import annotations

import pytest

import atf2
from atf2.stats import LaneStats


def test_lane_as_dict():
    lane = LaneStats(recorded=5, written=4, dropped=1)
    d = lane.as_dict()
    assert (d["recorded"], d["written"], d["dropped"]) == (5, 4, 1) and d["drops"] == lane.drops


def test_session_thread_lookup_and_dicts(tmp_path):
    with atf2.trace_session(tmp_path / "s") as s:
        atf2.emit("f", atf2.EVENT_CALL)
        atf2.emit("f", atf2.EVENT_RETURN)
    st = s.get_stats()
    t = st.thread(st.threads[0].thread_id)
    d = t.as_dict()
    assert d["thread_id"] == t.thread_id and d["index"]["written"] == 2
    with pytest.raises(KeyError):
        st.thread(999)
