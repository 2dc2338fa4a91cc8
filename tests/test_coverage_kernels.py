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
