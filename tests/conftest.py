"""Shared test fixtures: event factories, a session writer, the reference sessions.

Keep this file small; add fixtures for other areas at its end.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import atf2
from atf2.manifest import write_manifest

#: sessions written by the original native C writer (copied from the project's
#: shared fixtures so that a fresh clone carries them)
REFERENCE_DIR = Path(os.environ.get("ATF2_REFERENCE_FIXTURES", Path(__file__).parent / "data" / "reference-c-writer"))

#: Coverage's subprocess measurement (``patch = subprocess``) starts in every
#: Python child whose environment has one of these.
COVERAGE_ENV = ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG")


def env_without_coverage(**extra: str) -> dict[str, str]:
    """This process's environment for a child that coverage must not measure.

    For children that are SIGKILLed on purpose or run under a tiny
    RLIMIT_FSIZE (either leaves a corrupt coverage data file that the final
    combine warns about), and for children whose behaviour a second tracer
    would change.
    """
    env = {k: v for k, v in os.environ.items() if k not in COVERAGE_ENV}
    env.update(extra)
    return env


def _make_events(n, thread_id=0, t0=1_000, step=10, seed=0, kinds=None):
    """n INDEX_EVENT_DTYPE events with non-decreasing timestamps (steps 0..2*step)."""
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, dtype=atf2.INDEX_EVENT_DTYPE)
    ev["timestamp_ns"] = t0 + np.cumsum(rng.integers(0, 2 * step + 1, n)).astype(np.uint64)
    ev["function_id"] = (rng.integers(0, 4, n).astype(np.uint64) << np.uint64(32)) | rng.integers(0, 1000, n).astype(np.uint64)
    ev["thread_id"] = thread_id
    ev["event_kind"] = kinds if kinds is not None else rng.integers(1, 4, n)
    ev["call_depth"] = rng.integers(0, 64, n)
    ev["detail_seq"] = atf2.NO_DETAIL
    return ev


@pytest.fixture
def make_events():
    """``make_events(n, thread_id=0, t0=1000, step=10, seed=0, kinds=None)``."""
    return _make_events


def _write_session(session_dir, threads, status="complete", **manifest_extra):
    """Write a session: ``threads`` maps thread id -> list of ``(events, details)`` batches."""
    session_dir = Path(session_dir)
    session_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for tid, batches in threads.items():
        with atf2.ThreadWriter(session_dir, tid) as w:
            for events, details in batches:
                w.write_events(events, details)
            s = w.finalize()
        entries.append(
            {
                "id": tid,
                "has_detail": s["has_detail"],
                "index_events": s["index_events"],
                "detail_events": s["detail_events"],
                "time_start_ns": s["time_start_ns"],
                "time_end_ns": s["time_end_ns"],
                "os_thread_id": 1000 + tid,
                "name": f"T{tid}",
            }
        )
    data = {"format_version": "2.1", "status": status, "clock_type": atf2.layout.CLOCK_BOOTTIME, "threads": entries}
    data.update(manifest_extra)
    write_manifest(session_dir, data)
    return session_dir


@pytest.fixture
def write_session():
    """``write_session(dir, {tid: [(events, details), ...]}, status="complete", **manifest_extra)``."""
    return _write_session


@pytest.fixture
def session_dir(tmp_path):
    d = tmp_path / "session"
    d.mkdir()
    return d


# CI must be reproducible: a property test that finds a new counterexample
# should fail a developer's run (where hypothesis explores freely and keeps
# its example database), not a submission's. CI sets CI=true, which selects a
# derandomized profile.
from hypothesis import settings as _hypothesis_settings  # noqa: E402

_hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    _hypothesis_settings.load_profile("ci")


@pytest.fixture(autouse=True)
def no_session_left():
    """A test that fails mid-session must not leave its session active for the next test."""
    yield
    from atf2 import session as session_mod

    s = session_mod.active_session()
    if s is not None:
        s.stop()


def pytest_configure(config):
    """The coverage floor (``fail_under`` in setup.cfg) holds for the whole suite only.

    A run of some tests (paths, ``-k``, ``-m``, ``--lf``) still measures and
    reports coverage, but is not failed for covering less than all of them.
    """
    cov = config.pluginmanager.getplugin("_cov")
    if cov is None or cov.options.cov_fail_under is None:
        return
    whole_suite = (
        config.args_source == pytest.Config.ArgsSource.TESTPATHS
        and not config.option.keyword
        and config.option.markexpr == "not fuzz_long"
        and not config.getoption("lf", False)
        and not config.getoption("deselect", None)
    )
    if not whole_suite:
        cov.options.cov_fail_under = None
