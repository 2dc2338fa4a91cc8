"""FNV-1a 64 over bytes (the hash the reference fixtures' expected.json uses)."""

from __future__ import annotations

import numpy as np
from numba import njit

FNV64_OFFSET = 0xCBF29CE484222325
FNV64_PRIME = 0x100000001B3


@njit(cache=True, nogil=True)
def fnv1a64(buf, h=np.uint64(FNV64_OFFSET)):
    """FNV-1a 64 of a ``uint8`` array, continuing from ``h``."""
    h = np.uint64(h)
    prime = np.uint64(FNV64_PRIME)
    for i in range(buf.shape[0]):
        h = (h ^ np.uint64(buf[i])) * prime
    return h
