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


#: the repository holding this suite: asv always runs the benchmarks of the
#: working tree, while ``atf2`` may be a wheel installed in asv's environment
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def example_module(name: str):
    """Import ``examples/<name>.py`` of the repository (not part of the installed package).

    Registered in ``sys.modules`` as ``atf2_<name>`` (dataclasses look their
    module up there), the name ``atf2.bench.overhead.load_workloads`` uses.
    """
    import importlib.util
    import sys

    path = os.path.join(REPO, "examples", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"atf2_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module
