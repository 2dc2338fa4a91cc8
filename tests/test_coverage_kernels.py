"""Small direct tests of kernels that the other tests reach only through the
capture hook (the code table) or only on big inputs. They run twice: compiled
here, and as Python in the NUMBA_DISABLE_JIT run (test_kernels_nojit.py)."""

from __future__ import annotations

import numpy as np
import pytest

from atf2.kernels.codetable import MISSING, new_table, table_insert, table_lookup, table_rehash


def test_code_table_insert_lookup_replace_full_and_rehash():
    table = new_table(4)
    mask = 3
    keys = [0x7F00_0010, 0x7F00_0020, 0x7F00_0030, 0x7F00_0040]
    for n, key in enumerate(keys):
        assert table_insert(table, mask, key, 100 + n)
    assert not table_insert(table, mask, 0x7F00_0050, 1)  # full: every slot probed
    assert table_insert(table, mask, keys[1], 7)  # replace in place
    assert [int(table_lookup(table, mask, k)) for k in keys] == [100, 7, 102, 103]
    bigger = new_table(8)
    assert table_rehash(table, bigger, 7) == 4
    assert [int(table_lookup(bigger, 7, k)) for k in keys] == [100, 7, 102, 103]
    assert table_lookup(bigger, 7, 0x7F00_0050) == MISSING  # probes to an empty slot


@pytest.mark.parametrize("capacity", [0, 1, 6])
def test_code_table_capacity_is_a_power_of_two(capacity):
    with pytest.raises(ValueError, match="power of two"):
        new_table(capacity)


def test_code_table_rehash_skips_empty_slots():
    table = new_table(8)
    assert table_insert(table, 7, 0x1000, 1)
    bigger = new_table(16)
    assert table_rehash(table, bigger, 15) == 1 and int(np.count_nonzero(bigger)) == 2


def _fnv1a64_reference(data: bytes, h: int = 0xCBF29CE484222325) -> int:
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def test_fnv1a64_matches_the_definition_and_continues():
    from atf2.kernels.fnv import fnv1a64

    data = bytes(range(256)) * 3
    buf = np.frombuffer(data, dtype=np.uint8)
    assert int(fnv1a64(buf[:0])) == 0xCBF29CE484222325
    assert int(fnv1a64(np.frombuffer(b"a", dtype=np.uint8))) == 0xAF63DC4C8601EC8C  # published test vector
    assert int(fnv1a64(buf)) == _fnv1a64_reference(data)
    assert int(fnv1a64(buf[100:], fnv1a64(buf[:100]))) == _fnv1a64_reference(data)


def _reference_ns(t, anchor_ticks, anchor_ns):
    """Piecewise-linear ticks -> ns, extrapolated from the nearest segment, in exact fractions."""
    from fractions import Fraction

    n = len(anchor_ticks)
    seg = 0
    while seg + 2 < n and anchor_ticks[seg + 1] <= t:
        seg += 1
    t0, n0 = anchor_ticks[seg], anchor_ns[seg]
    slope = Fraction(anchor_ns[seg + 1] - n0, anchor_ticks[seg + 1] - t0)
    return n0 + round(slope * (t - t0))


def test_convert_ticks_between_around_and_back_across_anchors():
    from atf2.clock import convert_ticks

    anchor_ticks = np.array([1_000, 2_000, 5_000, 9_000, 0, 0], dtype=np.uint64)  # spare capacity after 4
    anchor_ns = np.array([10_000, 13_000, 19_000, 21_000, 0, 0], dtype=np.uint64)
    # in order, then going back (binary search), before the first and after the last anchor
    raw = np.array([1_000, 1_500, 2_000, 4_999, 8_000, 9_000, 12_000, 1_200, 6_000, 3_000, 500], dtype=np.uint64)
    out = np.empty_like(raw)
    convert_ticks(raw, out, anchor_ticks, anchor_ns, 4)
    expected = [_reference_ns(int(t), [1_000, 2_000, 5_000, 9_000], [10_000, 13_000, 19_000, 21_000]) for t in raw]
    assert out.tolist() == expected
    assert out[[0, 2, 5]].tolist() == [10_000, 13_000, 21_000]  # every anchor maps exactly


def test_convert_ticks_with_one_anchor_is_a_shift():
    from atf2.clock import convert_ticks

    raw = np.array([100, 250], dtype=np.uint64)
    out = np.empty_like(raw)
    convert_ticks(raw, out, np.array([100], dtype=np.uint64), np.array([7_000], dtype=np.uint64), 1)
    assert out.tolist() == [7_000, 7_150]


def test_tick_converter_anchors_and_thins_its_history():
    from atf2.clock import USE_CYCLE_COUNTER, TickConverter

    conv = TickConverter(capacity=4)
    for _ in range(12):
        conv.anchor()
    ticks, ns, n = conv.anchors()
    if USE_CYCLE_COUNTER:
        assert 2 <= n <= 4 and np.all(np.diff(ticks[:n].astype(np.int64)) > 0) and np.all(np.diff(ns[:n].astype(np.int64)) > 0)
        assert conv.to_ns(int(ticks[n - 1])) == int(ns[n - 1])
        assert conv.as_manifest() == {"source": "cycle_counter", "anchors": n}
    else:  # machines without an invariant TSC: ticks are ns
        assert n == 0 and conv.to_ns(123) == 123
