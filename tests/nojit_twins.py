"""Pure-Python twins of the kernels' ``@intrinsic`` functions, for ``NUMBA_DISABLE_JIT=1``.

With the JIT disabled, ``@njit`` functions run as plain Python (so coverage
sees them, and numpy's bounds checks turn a silent out-of-bounds read into an
``IndexError``), but an ``@intrinsic`` is LLVM code generation and cannot be
called from Python at all. ``nojit_plugin`` puts these twins in the kernel
modules' globals in place of the intrinsics (only in the NUMBA_DISABLE_JIT run
of ``test_kernels_nojit.py``). Each twin computes what the intrinsic's
generated code does, on the same integer addresses.

Raw address loads (``load_u64`` ...) read through ctypes and are not bounds
checked: the kernels using them (merge, CRC) compute their addresses from
array lengths they check themselves.
"""

from __future__ import annotations

import ctypes
import time

import numpy as np

_M64 = (1 << 64) - 1


def load_u64(addr) -> np.uint64:
    """The little-endian u64 at integer address ``addr`` (any alignment)."""
    return np.uint64(ctypes.c_uint64.from_address(int(addr)).value)


def load_u32(addr) -> np.uint32:
    """The little-endian u32 at integer address ``addr``."""
    return np.uint32(ctypes.c_uint32.from_address(int(addr)).value)


def load_u8(addr) -> np.uint8:
    """The byte at integer address ``addr``."""
    return np.uint8(ctypes.c_uint8.from_address(int(addr)).value)


def prefetch_row(words, row) -> None:
    """A prefetch is only a hint: nothing to compute."""


def _clmul_int(a: int, b: int) -> int:
    r = 0
    while b:
        if b & 1:
            r ^= a
        a <<= 1
        b >>= 1
    return r


def clmul(a, b) -> tuple[np.uint64, np.uint64]:
    """The 128-bit carry-less product of two u64: (low, high) (PCLMULQDQ)."""
    r = _clmul_int(int(a), int(b))
    return np.uint64(r & _M64), np.uint64(r >> 64)


def fold_blocks(lanes_addr, data_addr, nblocks, k1, k2) -> None:
    """Fold ``nblocks`` 64-byte blocks at ``data_addr`` into the four 128-bit
    CRC lanes (8 u64: lo, hi of each) at ``lanes_addr``, with the fold-by-4
    constants ``k1`` (low halves) and ``k2`` (high halves)."""
    lanes = (ctypes.c_uint64 * 8).from_address(int(lanes_addr))
    k1, k2 = int(k1), int(k2)
    for b in range(int(nblocks)):
        block = (ctypes.c_uint64 * 8).from_address(int(data_addr) + 64 * b)
        for j in range(4):
            folded = _clmul_int(lanes[2 * j], k1) ^ _clmul_int(lanes[2 * j + 1], k2)
            lanes[2 * j] = (folded & _M64) ^ block[2 * j]
            lanes[2 * j + 1] = (folded >> 64) ^ block[2 * j + 1]


def u64_pointer(addr) -> np.ndarray:
    """The uint64 word at integer address ``addr`` as a one-element array (what
    the kernels run as Python index through it: the session's growth budget)."""
    return np.ctypeslib.as_array((ctypes.c_uint64 * 1).from_address(int(addr)))


def atomic_load(arr, idx) -> np.uint64:
    """``arr[idx]`` (the GIL orders pure-Python reads and writes)."""
    return np.uint64(arr[idx])


def atomic_store(arr, idx, value) -> None:
    """``arr[idx] = value``."""
    arr[idx] = value


def atomic_cas(arr, idx, expected, new) -> np.uint64:
    """Compare-and-swap ``arr[idx]``: returns the old value (== expected on success)."""
    old = np.uint64(arr[idx])
    if old == np.uint64(expected):
        arr[idx] = new
    return old


def read_cycle_counter() -> np.uint64:
    """A monotonic tick count (the intrinsic reads the CPU's cycle counter)."""
    return np.uint64(time.perf_counter_ns())


def clock_gettime(clock_id, timespec_addr) -> int:
    """libc ``clock_gettime(clock_id, struct timespec *)``: fills the two int64 at the address."""
    ns = time.clock_gettime_ns(int(clock_id))
    ts = (ctypes.c_int64 * 2).from_address(int(timespec_addr))
    ts[0], ts[1] = divmod(ns, 1_000_000_000)
    return 0
