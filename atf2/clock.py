"""Timestamps: a cheap tick counter on the hot path, CLOCK_BOOTTIME ns on disk.

The capture hook runs once per Python call and return, so it cannot afford a
``clock_gettime`` (about 30 ns here, through the vDSO). It reads the CPU's
cycle counter instead (``llvm.readcyclecounter`` = RDTSC on x86_64, about a
third of the cost). The drain converts ticks to CLOCK_BOOTTIME nanoseconds
with ``TickConverter``: it samples a (ticks, ns) anchor pair at every drain
cycle and interpolates linearly between anchors. Each segment has a positive
slope, so the converted values are monotone per thread and exact at every
anchor; between anchors the error is the counter's drift over one flush
interval (sub-microsecond). The counter is invariant and shared by all cores on
the machines we use it on (``constant_tsc`` and ``nonstop_tsc``, which is also
what Linux itself uses as its clocksource). Where no usable cycle counter
exists, ``ticks()`` falls back to ``clock_gettime(CLOCK_BOOTTIME)`` and the map
is the identity.

Both ``ticks()`` (Numba intrinsic) and ``boottime_ns()`` are callable from
nopython code; ``ticks_py()`` is the same counter for plain Python.
"""

from __future__ import annotations

import platform
import threading
import time
from typing import Any

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core.types import ExternalFunction
from numba.extending import intrinsic

CLOCK_BOOTTIME_ID = getattr(time, "CLOCK_BOOTTIME", 7)

# Declared as an external symbol (not a ctypes pointer) so the kernels that
# call it can be cached on disk.
# Any: only nopython code calls it, with numba's own typing.
_clock_gettime: Any = ExternalFunction("clock_gettime", types.int32(types.int32, types.voidptr))


def _has_invariant_tsc() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = f.read(1 << 16)
    except OSError:
        return False
    return "constant_tsc" in flags and "nonstop_tsc" in flags


#: True where ticks() reads the CPU cycle counter; False where ticks are ns.
USE_CYCLE_COUNTER = platform.machine().lower() in ("x86_64", "amd64") and _has_invariant_tsc()


@intrinsic
def _read_cycle_counter(typingctx):
    sig = types.uint64()

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(64), [])
        fn = builder.module.declare_intrinsic("llvm.readcyclecounter", fnty=fnty)
        return builder.call(fn, [])

    return sig, codegen


@njit(cache=True, nogil=True)
def boottime_ns() -> np.uint64:
    """CLOCK_BOOTTIME in ns, from nopython code."""
    buf = np.empty(2, dtype=np.int64)
    _clock_gettime(CLOCK_BOOTTIME_ID, buf.ctypes.data)
    return np.uint64(buf[0] * 1_000_000_000 + buf[1])


if USE_CYCLE_COUNTER:

    @njit(inline="always", nogil=True)
    def ticks() -> np.uint64:
        """The hot-path timestamp: CPU cycle counter."""
        return _read_cycle_counter()

else:  # pragma: no cover - depends on the machine

    @njit(inline="always", nogil=True)
    def ticks() -> np.uint64:
        """The hot-path timestamp: CLOCK_BOOTTIME ns (no usable cycle counter)."""
        return boottime_ns()


@njit(cache=True, nogil=True)
def _ticks_njit() -> np.uint64:
    return ticks()


@njit(cache=True, nogil=True)
def _sample_pair() -> tuple[np.uint64, np.uint64, np.uint64]:
    """(ticks, boottime ns, bracket width in ticks): the tightest of 16 tries."""
    best_width = np.uint64(0xFFFFFFFFFFFFFFFF)
    best_ticks = np.uint64(0)
    best_ns = np.uint64(0)
    for _ in range(16):
        a = ticks()
        ns = boottime_ns()
        b = ticks()
        if b - a < best_width:
            best_width = b - a
            best_ticks = a + (b - a) // np.uint64(2)
            best_ns = ns
    return best_ticks, best_ns, best_width


def ticks_py() -> int:
    """ticks() for plain Python callers (one dispatch, a fraction of a microsecond)."""
    return int(_ticks_njit())


def boottime_ns_py() -> int:
    return time.clock_gettime_ns(CLOCK_BOOTTIME_ID)


_U64_MAX = np.uint64(0xFFFFFFFFFFFFFFFF)


@njit(inline="always", nogil=True)
def find_segment(t, seg, anchor_ticks, n_anchors):
    """The segment (index of its first anchor) that converts tick ``t``, searching from ``seg``.

    Ticks are usually non-decreasing, so walk forward from the last segment;
    fall back to a binary search when one goes back. Needs ``n_anchors >= 2``.
    """
    if t < anchor_ticks[seg]:
        lo, hi = 0, seg
        while lo < hi:
            mid = (lo + hi) // 2
            if anchor_ticks[mid + 1] <= t:
                lo = mid + 1
            else:
                hi = mid
        seg = lo
    while seg + 2 < n_anchors and anchor_ticks[seg + 1] <= t:
        seg += 1
    return seg


@njit(inline="always", nogil=True)
def segment_params(seg, anchor_ticks, anchor_ns, n_anchors):
    """(t0, n0, slope, lo, hi) of segment ``seg``: ticks in [lo, hi) convert on it.

    The first segment also extrapolates below its start, the last one above
    its end; the slope (one float division) is computed here, once per
    segment, not once per event.
    """
    t0 = anchor_ticks[seg]
    n0 = anchor_ns[seg]
    slope = float(anchor_ns[seg + 1] - n0) / float(anchor_ticks[seg + 1] - t0)
    lo = t0 if seg > 0 else np.uint64(0)
    hi = anchor_ticks[seg + 1] if seg + 2 < n_anchors else _U64_MAX
    return t0, n0, slope, lo, hi


@njit(cache=True, nogil=True)
def locate_segment(t, seg, anchor_ticks, anchor_ns, n_anchors):
    """``find_segment`` then ``segment_params``: (seg, t0, n0, slope, lo, hi).

    Not inlined on purpose: converting loops reach it once per segment, and
    keeping it out of line keeps their inner loop small.
    """
    seg = find_segment(t, seg, anchor_ticks, n_anchors)
    t0, n0, slope, lo, hi = segment_params(seg, anchor_ticks, anchor_ns, n_anchors)
    return seg, t0, n0, slope, lo, hi


@njit(inline="always", nogil=True)
def interpolate(t, t0, n0, slope):
    """Tick ``t`` on the segment starting at (t0, n0) with ``slope`` ns per tick.

    ``n0 + round(slope * (t - t0))``, rounding half to even, for ``t`` on
    either side of ``t0``: the offset goes through a signed integer (one
    instruction each way, where an unsigned 64-bit conversion takes a branch
    and several), and IEEE arithmetic and rounding are symmetric in sign, so
    this equals ``n0 - round(slope * (t0 - t))`` below ``t0``. Offsets beyond
    2**63 ticks (centuries) are outside its range.
    """
    d = np.int64(t - t0)  # wraps to the signed offset
    return n0 + np.uint64(np.int64(np.rint(float(d) * slope)))


@njit(cache=True, nogil=True)
def convert_ticks(raw, out, anchor_ticks, anchor_ns, n_anchors):
    """Ticks -> CLOCK_BOOTTIME ns by piecewise-linear interpolation between anchors.

    Anchors are (ticks, ns) pairs sampled by the drain, increasing in both. A
    tick between two anchors is interpolated on that segment; one before the
    first or after the last is extrapolated from the nearest segment. Every
    segment has a positive slope, so the map is monotone: per-thread order is
    kept, and every anchor maps exactly onto the clock.
    """
    if n_anchors == 1:
        for i in range(raw.shape[0]):
            out[i] = anchor_ns[0] + (raw[i] - anchor_ticks[0])  # identity slope
        return
    seg = 0
    t0 = n0 = lo = hi = np.uint64(0)  # lo == hi: the first tick looks its segment up
    slope = 0.0
    for i in range(raw.shape[0]):
        t = raw[i]
        if t < lo or t >= hi:
            seg, t0, n0, slope, lo, hi = locate_segment(t, seg, anchor_ticks, anchor_ns, n_anchors)
        out[i] = interpolate(t, t0, n0, slope)


class TickConverter:
    """Turns hot-path ticks into CLOCK_BOOTTIME ns, exactly at every anchor.

    The drain calls ``anchor()`` at the start of each cycle (every event it
    then converts was stamped before that anchor) and ``convert()`` on the raw
    timestamps. With ``USE_CYCLE_COUNTER`` false, ticks already are ns and the
    map is the identity.
    """

    def __init__(self, capacity: int = 1024):
        self._lock = threading.Lock()
        self._ticks = np.zeros(capacity, dtype=np.uint64)
        self._ns = np.zeros(capacity, dtype=np.uint64)
        self._n = 0
        self.anchor()

    @property
    def identity(self) -> bool:
        return not USE_CYCLE_COUNTER

    def anchor(self) -> None:
        """Sample a new (ticks, ns) pair; cheap (about a microsecond)."""
        if self.identity:
            return
        t, ns, _ = _sample_pair()
        with self._lock:
            if self._n and (t <= self._ticks[self._n - 1] or ns <= self._ns[self._n - 1]):
                return  # too close to the previous anchor to add information
            if self._n == self._ticks.shape[0]:
                # Keep memory bounded on very long sessions: thin out the
                # middle of history (old events are rarely converted late).
                keep = np.r_[0 : self._n : 2]
                self._ticks[: keep.size] = self._ticks[keep]
                self._ns[: keep.size] = self._ns[keep]
                self._n = keep.size
            self._ticks[self._n] = t
            self._ns[self._n] = ns
            self._n += 1

    def anchors(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(anchor ticks, anchor ns, count) for kernels that convert inline (count 0: identity map).

        Only ``anchor()`` changes the arrays, so the thread that anchors (the
        drain) may pass them to a kernel without the lock.
        """
        return self._ticks, self._ns, 0 if self.identity else self._n

    def convert(self, raw: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        raw = np.ascontiguousarray(raw, dtype=np.uint64)
        if out is None:
            out = np.empty_like(raw)
        if self.identity:
            out[:] = raw
            return out
        with self._lock:
            convert_ticks(raw, out, self._ticks, self._ns, self._n)
        return out

    def to_ns(self, t: int) -> int:
        return int(self.convert(np.array([t], dtype=np.uint64))[0])

    def as_manifest(self) -> dict:
        return {
            "source": "cycle_counter" if USE_CYCLE_COUNTER else "clock_boottime",
            "anchors": int(self._n),
        }
