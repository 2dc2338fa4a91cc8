"""Helpers shared by the asv benchmark modules.

Smoke mode: ``tests/test_asv_suite.py`` runs the whole suite once with
``ATF2_ASV_SMOKE=1`` so that a broken benchmark fails CI. That run only checks
that every benchmark executes, so sizes and durations shrink to tiny values
through these helpers; a real ``asv run`` (variable unset) uses the full ones.

Use at class level, e.g.::

    from asv_bench.common import sizes, size, seconds

    class Merge:
        params = sizes(1_000_000, 10_000_000)   # [2_000] in smoke mode
        def time_x(self, n): run(seconds(2.0))  # 0.05 s in smoke mode

Import classes into a benchmark module under an ``_`` alias: asv scans every
public module-level class for methods named like benchmarks, so a plain
``from atf2.reader import SessionReader`` turns ``SessionReader.time_range``
into a (failing) benchmark.
"""

from __future__ import annotations

import os

#: environment variable that selects smoke mode ("1"; unset or "0": full sizes)
SMOKE_ENV = "ATF2_ASV_SMOKE"
SMOKE = os.environ.get(SMOKE_ENV, "0") not in ("", "0")

#: default smoke sizes: big enough to pass every code path (several drain
#: cycles, more than one merge chunk is not needed), small enough for seconds
SMOKE_EVENTS = 2_000
SMOKE_SECONDS = 0.05


def sizes(*full: int, smoke: int = SMOKE_EVENTS) -> list:
    """Parameter list: ``full`` normally, ``[smoke]`` in smoke mode."""
    return [smoke] if SMOKE else list(full)


def size(full: int, smoke: int = SMOKE_EVENTS) -> int:
    """One size: ``full`` normally, ``smoke`` in smoke mode."""
    return smoke if SMOKE else full


def seconds(full: float, smoke: float = SMOKE_SECONDS) -> float:
    """A duration: ``full`` normally, ``smoke`` in smoke mode."""
    return smoke if SMOKE else full
