"""Flight-recorder windows: pre/post roll, clipping to the ring, stop, coalescing, triggers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atf2.errors import AtfV2Error
from atf2.flight import (
    TRIGGER_EXCEPTION,
    TRIGGER_MARK,
    TRIGGER_SYMBOL,
    WINDOW_COMPLETE,
    WINDOW_CUT,
    WINDOW_OPEN,
    FlightOptions,
    Roll,
    compute_windows,
    find_triggers,
    manifest_windows,
    window_mask,
)
from atf2.layout import EVENT_CALL, EVENT_EXCEPTION, EVENT_RETURN


def events(n, step=10, t0=1000):
    ts = t0 + np.arange(n, dtype=np.uint64) * np.uint64(step)
    kinds = np.where(np.arange(n) % 2 == 0, EVENT_CALL, EVENT_RETURN).astype(np.uint32)
    return ts, kinds, np.zeros(n, dtype=np.uint64)


def at(positions, n):
    """Triggers at event positions (symbol triggers on CALLs)."""
    ts, kinds, fids = events(n)
    kinds[list(positions)] = EVENT_CALL
    fids[list(positions)] = 7
    return ts, find_triggers(0, fids, kinds, ts, symbol_ids=[7])


def test_single_window_in_events():
    ts, tr = at([50], 100)
    w = compute_windows(tr, ts, 0, FlightOptions(Roll(5), Roll(3)), held_from=0)
    assert (w.start.tolist(), w.stop.tolist()) == ([45], [54])  # 5 before, the trigger, 3 after
    assert w.state.tolist() == [WINDOW_COMPLETE] and w.clipped.tolist() == [False]
    (entry,) = manifest_windows(w, tr, ts, 0, thread_id=3)
    assert entry["thread_id"] == 3 and entry["trigger_kinds"] == ["symbol"]
    assert (entry["start_index_seq"], entry["end_index_seq"], entry["events"]) == (45, 53, 9)
    assert (entry["start_ns"], entry["end_ns"]) == (int(ts[45]), int(ts[53]))
    assert (entry["pre_roll_events"], entry["post_roll_events"]) == (5, 3)
    assert (entry["pre_roll_ns"], entry["post_roll_ns"]) == (50, 30)
    assert not entry["pre_roll_clipped"] and not entry["post_roll_cut"]


def test_pre_roll_larger_than_the_ring_gets_what_is_held():
    ts, tr = at([50], 100)
    w = compute_windows(tr, ts, 0, FlightOptions(Roll(40), Roll(0)), held_from=30)
    assert (w.start.tolist(), w.stop.tolist()) == ([30], [51])
    assert w.clipped.tolist() == [True]
    (entry,) = manifest_windows(w, tr, ts, 0, 0)
    assert entry["pre_roll_events"] == 20 and entry["pre_roll_clipped"]


def test_pre_roll_before_the_first_event_is_not_a_clip():
    ts, tr = at([3], 20)
    w = compute_windows(tr, ts, 0, FlightOptions(Roll(10), Roll(1)), held_from=0)
    assert (w.start.tolist(), w.stop.tolist(), w.clipped.tolist()) == ([0], [5], [False])


def test_post_roll_cut_short_by_stop():
    ts, tr = at([95], 100)
    w = compute_windows(tr, ts, 0, FlightOptions(Roll(2), Roll(10)), held_from=0, final=True)
    assert (w.start.tolist(), w.stop.tolist(), w.state.tolist()) == ([93], [100], [WINDOW_CUT])
    (entry,) = manifest_windows(w, tr, ts, 0, 0)
    assert entry["post_roll_cut"] and entry["post_roll_events"] == 4


def test_post_roll_past_the_end_stays_open_while_recording():
    ts, tr = at([95], 100)
    w = compute_windows(tr, ts, 0, FlightOptions(Roll(2), Roll(10)), held_from=0, final=False)
    assert w.state.tolist() == [WINDOW_OPEN] and w.stop.tolist() == [100]


def test_triggers_in_quick_succession_coalesce_into_one_window():
    ts, tr = at([40, 41, 43, 47], 100)
    w = compute_windows(tr, ts, 0, FlightOptions(Roll(5), Roll(2)), held_from=0)
    assert (w.start.tolist(), w.stop.tolist()) == ([35], [50])
    assert (w.first.tolist(), w.last.tolist()) == ([0], [3])
    (entry,) = manifest_windows(w, tr, ts, 0, 0)
    assert entry["triggers"] == 4 and entry["pre_roll_events"] == 5 and entry["post_roll_events"] == 2


def test_touching_windows_merge_and_distant_ones_do_not():
    ts, tr = at([10, 16, 60], 100)
    # [8, 13) and [14, 19) are one event apart: separate; [13, 19) touches [8, 13): merged
    w = compute_windows(tr, ts, 0, FlightOptions(Roll(2), Roll(2)), held_from=0)
    assert (w.start.tolist(), w.stop.tolist()) == ([8, 14, 58], [13, 19, 63])
    w = compute_windows(tr, ts, 0, FlightOptions(Roll(3), Roll(2)), held_from=0)
    assert (w.start.tolist(), w.stop.tolist()) == ([7, 57], [19, 63])


def test_rolls_in_time():
    ts, tr = at([50], 100)  # 10 ns between events
    w = compute_windows(tr, ts, 0, FlightOptions(Roll.parse("45ns"), Roll.parse("30ns")), held_from=0)
    # pre: events at >= t-45 -> positions 46..; post: events at <= t+30 -> ..53
    assert (w.start.tolist(), w.stop.tolist()) == ([46], [54])
    w = compute_windows(tr, ts, 0, FlightOptions(Roll.parse("45ns"), Roll.parse("1us")), held_from=0,
                        final=True, stop_ns=int(ts[-1]) + 5)
    assert w.state.tolist() == [WINDOW_CUT] and w.stop.tolist() == [100]
    # the session ran past the post-roll's end, with no event after it: complete
    w = compute_windows(tr, ts, 0, FlightOptions(Roll(0), Roll.parse("1us")), held_from=0,
                        final=True, stop_ns=int(ts[50]) + 2000)
    assert w.state.tolist() == [WINDOW_COMPLETE]


def test_marks_cover_no_event_and_sort_before_the_event_at_their_position():
    ts, kinds, fids = events(30)
    tr = find_triggers(0, fids, kinds, ts, mark_positions=[10], mark_ts=[int(ts[10]) - 3])
    assert (tr.start.tolist(), tr.end.tolist(), tr.kinds.tolist()) == ([10], [10], [TRIGGER_MARK])
    w = compute_windows(tr, ts, 0, FlightOptions(Roll(2), Roll(2)), held_from=0)
    assert (w.start.tolist(), w.stop.tolist()) == ([8], [12])
    (entry,) = manifest_windows(w, tr, ts, 0, 0, reasons={0: "checkpoint"})
    assert entry["trigger_kinds"] == ["mark"] and entry["marks"] == ["checkpoint"]


def test_find_triggers_symbols_at_call_and_exceptions():
    ts, kinds, fids = events(10)
    fids[:] = [1, 1, 2, 2, 3, 3, 1, 1, 2, 2]
    kinds[:] = [EVENT_CALL, EVENT_RETURN, EVENT_CALL, EVENT_EXCEPTION, EVENT_CALL, EVENT_RETURN,
                EVENT_CALL, EVENT_RETURN, EVENT_CALL, EVENT_RETURN]
    tr = find_triggers(100, fids, kinds, ts, symbol_ids=[1], exceptions=True)
    assert tr.start.tolist() == [100, 103, 106]  # CALLs of 1 (not its RETURNs), the EXCEPTION
    assert tr.kinds.tolist() == [TRIGGER_SYMBOL, TRIGGER_EXCEPTION, TRIGGER_SYMBOL]
    assert find_triggers(0, fids, kinds, ts).start.tolist() == []


def test_window_mask_selects_exactly_the_window_positions():
    ts, tr = at([10, 50], 100)
    w = compute_windows(tr, ts, 0, FlightOptions(Roll(2), Roll(1)), held_from=0)
    positions = np.arange(0, 100, 3)
    mask = window_mask(positions, w)
    expected = [(8 <= p < 12) or (48 <= p < 52) for p in positions]
    assert mask.tolist() == expected


def test_no_trigger_no_window():
    ts, kinds, fids = events(50)
    tr = find_triggers(0, fids, kinds, ts, symbol_ids=[99], exceptions=True)
    w = compute_windows(tr, ts, 0, FlightOptions(), held_from=0)
    assert len(w) == 0 and manifest_windows(w, tr, ts, 0, 0) == []
    assert not window_mask(np.arange(50), w).any()


@given(
    n=st.integers(1, 60),
    picks=st.lists(st.integers(0, 59), max_size=8),
    pre=st.integers(0, 12),
    post=st.integers(0, 12),
    held=st.integers(0, 60),
    base=st.integers(0, 1000),
)
@settings(max_examples=150, deadline=None)
def test_windows_match_a_brute_force_reference(n, picks, pre, post, held, base):
    positions = sorted({p for p in picks if p < n})
    ts, kinds, fids = events(n)
    fids[positions] = 7
    kinds[positions] = EVENT_CALL
    held_from = base + min(held, n)
    tr = find_triggers(base, fids, kinds, ts, symbol_ids=[7])
    w = compute_windows(tr, ts, base, FlightOptions(Roll(pre), Roll(post)), held_from=held_from)
    inside = window_mask(base + np.arange(n), w)
    want = np.zeros(n, dtype=bool)
    for p in positions:
        want[max(p - pre, held_from - base, 0): min(p + 1 + post, n)] = True
    assert inside.tolist() == want.tolist()
    # windows are disjoint, sorted and separated by at least one position
    assert all(w.stop[j] < w.start[j + 1] for j in range(len(w) - 1))


def test_roll_parsing_and_options():
    assert Roll.parse("100") == Roll(100, False)
    assert Roll.parse("5ms") == Roll(5_000_000, True)
    assert Roll.parse("250us") == Roll(250_000, True)
    assert Roll.parse("2s") == Roll(2_000_000_000, True)
    assert Roll.parse(7) == Roll(7)
    for bad in ("-1", "5 minutes", "", "1.5ms", -3):
        with pytest.raises(AtfV2Error):
            Roll.parse(bad)
    o = FlightOptions.from_triggers(["symbol=pkg.*.handler", "exception", "mark"], "10", "1ms")
    assert o.symbols == ("pkg.*.handler",) and o.exceptions
    assert o.pre_roll == Roll(10) and o.post_roll == Roll(1_000_000, True)
    assert o.matches_symbol("handler", "pkg.web.handler") and not o.matches_symbol("pkg.web.other")
    assert o.to_manifest()["triggers"] == ["symbol=pkg.*.handler", "exception", "mark"]
    with pytest.raises(AtfV2Error, match="invalid trigger"):
        FlightOptions.from_triggers(["symbols=x"])


def test_manifest_windows_are_validated():
    from atf2.errors import ManifestError
    from atf2.manifest import validate_manifest

    good = {"thread_id": 0, "start_ns": 10, "end_ns": 20, "start_index_seq": 3, "end_index_seq": 7,
            "trigger_kinds": ["symbol", "mark"], "events": 5, "triggers": 2, "marks": ["m"],
            "pre_roll_clipped": False, "post_roll_cut": True}
    base = {"format_version": "2.1", "threads": [{"id": 0}]}
    assert validate_manifest({**base, "windows": [good]})["windows"] == [good]
    bad_cases = [
        ({**good, "start_ns": 30}, r"windows\[0\]\.start_ns 30 is after end_ns"),
        ({**good, "end_index_seq": 1}, r"start_index_seq 3 is after end_index_seq"),
        ({**good, "thread_id": 4}, r"thread_id 4 is not a thread"),
        ({**good, "trigger_kinds": ["timer"]}, r"'timer' is not one of"),
        ({**good, "events": -1}, r"windows\[0\]\.events must be a non-negative int"),
        ({**good, "post_roll_cut": "yes"}, r"post_roll_cut must be bool"),
        ({**good, "marks": [3]}, r"marks\[0\] must be str"),
        ({k: v for k, v in good.items() if k != "end_ns"}, r"has no 'end_ns'"),
        ("window", r"windows\[0\] must be dict"),
    ]
    for window, message in bad_cases:
        with pytest.raises(ManifestError, match=message):
            validate_manifest({**base, "windows": [window]})
