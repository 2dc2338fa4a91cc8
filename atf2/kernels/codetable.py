"""Code table: object address -> function id, open addressing over one numpy array.

The capture hook identifies a Python function by the address of its code
object (a C function by the address of its ``PyMethodDef``) and needs the
function id in one or two loads. The table is a single ``uint64`` array of
``2 * capacity`` words holding (key, value) pairs side by side, so a hit costs
one multiply, one shift and one cache line. Key 0 marks an empty slot (no
object lives at address 0). Capacity is a power of two and the table is kept
at most half full, so probe chains stay short; it grows by rehashing into a
new array (``table_rehash``), which the Python layer does on the slow path.

Keys are only unique while the objects are alive: the tracer keeps every
object it has inserted alive for the session, so a freed-and-reused address
can never alias a different function.

The hook inlines ``table_find``; the other kernels run from Python.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: returned by ``table_find`` when the key is absent (no function id has all bits set)
MISSING = np.uint64(0xFFFFFFFFFFFFFFFF)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing multiplier (2**64 / phi)


@njit(inline="always", nogil=True)
def table_slot(key, mask):
    """Home slot of ``key``: Fibonacci hashing, top 32 bits of the product.

    Object addresses are 16-byte aligned and clustered; multiplying by the
    golden ratio spreads them over the high bits.
    """
    return np.intp(((key * _GOLDEN) >> np.uint64(32)) & mask)


@njit(inline="always", nogil=True)
def table_find(table, mask, key):
    """The value stored for ``key``, or ``MISSING``."""
    m = np.intp(mask)
    i = table_slot(key, mask)
    while True:
        k = table[2 * i]
        if k == key:
            return table[2 * i + 1]
        if k == 0:
            return MISSING
        i = (i + 1) & m


@njit(cache=True, nogil=True)
def table_lookup(table, mask, key):
    """``table_find`` for Python callers."""
    return table_find(table, np.uint64(mask), np.uint64(key))


@njit(cache=True, nogil=True)
def table_insert(table, mask, key, value):
    """Store ``key -> value`` (replacing an existing value); False if the table is full."""
    key = np.uint64(key)
    m = np.intp(mask)
    i = table_slot(key, np.uint64(mask))
    for _ in range(m + 1):
        k = table[2 * i]
        if k == key or k == 0:
            table[2 * i + 1] = np.uint64(value)
            table[2 * i] = key
            return True
        i = (i + 1) & m
    return False


@njit(cache=True, nogil=True)
def table_rehash(old, new, new_mask):
    """Insert every pair of ``old`` into the empty table ``new``; returns the pair count."""
    n = 0
    m = np.intp(new_mask)
    for j in range(old.shape[0] // 2):
        key = old[2 * j]
        if key == 0:
            continue
        i = table_slot(key, np.uint64(new_mask))
        while new[2 * i] != 0:
            i = (i + 1) & m
        new[2 * i + 1] = old[2 * j + 1]
        new[2 * i] = key
        n += 1
    return n


def new_table(capacity: int) -> np.ndarray:
    """An empty table of ``capacity`` slots (a power of two)."""
    if capacity < 2 or capacity & (capacity - 1):
        raise ValueError(f"code table capacity must be a power of two >= 2, not {capacity}")
    return np.zeros(2 * capacity, dtype=np.uint64)
