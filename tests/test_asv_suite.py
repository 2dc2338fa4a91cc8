"""The asv suite runs: every benchmark once, quick, against the installed atf2.

``asv run --python=same --quick --dry-run`` with ``ATF2_ASV_SMOKE=1`` (tiny
sizes, see ``asv_bench/common.py``) in a copy of ``asv.conf.json`` whose
results, environments and machine file live in a temporary directory, so the
run leaves nothing behind. asv exits with status 2 when a benchmark fails and
1 when the suite cannot be imported; either fails the test, which also names
the failed benchmarks; a benchmark that skips itself (its setup raises
NotImplementedError, e.g. without viztracer) fails it too, since the test
extra installs everything. A second test proves the checks catch both.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "asv_bench"
MACHINE = "atf2-smoke"
# "[ 7.14%] ··· bench_x.X.time_y      1/2 failed" / "... failed"
_FAILED_RE = re.compile(r"···\s+(\S+)\s+(?:\d+/\d+\s+)?failed\s*$", re.M)
# a benchmark whose setup raises NotImplementedError (e.g. viztracer missing)
_SKIPPED_RE = re.compile(r"asv: skipped: (.*)$", re.M)


def _asv(args: list, cwd: Path, home: Path, timeout: float) -> subprocess.CompletedProcess:
    env = dict(os.environ, HOME=str(home), ATF2_ASV_SMOKE="1")
    return subprocess.run(
        [sys.executable, "-m", "asv", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def run_suite(benchmark_dir: Path, tmp: Path, timeout: float = 600) -> tuple[int, str, list]:
    """Run the suite in ``benchmark_dir`` once; returns (exit status, output, discovered names)."""
    conf = json.loads((ROOT / "asv.conf.json").read_text())
    conf.update(
        repo=str(ROOT),
        benchmark_dir=str(benchmark_dir),
        env_dir=str(tmp / "env"),
        results_dir=str(tmp / "results"),
        html_dir=str(tmp / "html"),
    )
    config = tmp / "asv.conf.json"
    config.write_text(json.dumps(conf))
    home = tmp / "home"
    home.mkdir()
    machine = _asv(["machine", "--yes", "--machine", MACHINE, "--config", str(config)], tmp, home, 60)
    assert machine.returncode == 0, machine.stdout + machine.stderr
    # forkserver: the suite is imported once and forked per benchmark (half
    # the time of a fresh interpreter per benchmark, which real runs keep)
    proc = _asv(
        ["run", "--config", str(config), "--python=same", "--quick", "--dry-run", "--show-stderr",
         "--launch-method", "forkserver", "--machine", MACHINE],
        tmp, home, timeout,
    )
    listing = tmp / "results" / "benchmarks.json"
    names = sorted(k for k in json.loads(listing.read_text()) if k != "version") if listing.exists() else []
    return proc.returncode, proc.stdout + proc.stderr, names


def test_every_asv_benchmark_runs(tmp_path):
    status, output, names = run_suite(BENCH_DIR, tmp_path)
    failed = _FAILED_RE.findall(output)
    assert status == 0 and not failed, f"asv exit status {status}, failed: {failed}\n{output[-20000:]}"
    # with the test extra installed every benchmark can run: none may skip itself
    assert not _SKIPPED_RE.findall(output), f"skipped: {sorted(set(_SKIPPED_RE.findall(output)))}"
    # every benchmark module contributed benchmarks (none was skipped on import)
    modules = sorted(p.stem for p in BENCH_DIR.glob("bench_*.py"))
    assert modules, "no asv benchmark modules"
    covered = {name.split(".")[0] for name in names}
    assert set(modules) <= covered, f"modules without benchmarks: {sorted(set(modules) - covered)}"
    assert f"Running {len(names)} total benchmarks" in output


def test_a_failing_benchmark_fails_the_check(tmp_path):
    suite = tmp_path / "asv_bench"
    suite.mkdir()
    (suite / "__init__.py").write_text("")
    (suite / "bench_broken.py").write_text(
        "class Broken:\n"
        "    params = [1, 2]\n"
        "    def time_fine(self, n):\n"
        "        pass\n"
        "    def track_raises(self, n):\n"
        "        if n == 2:\n"
        "            raise ValueError('broken benchmark')\n"
        "        return 1.0\n"
        "class Unavailable:\n"
        "    def setup(self):\n"
        "        raise NotImplementedError('missing dependency')\n"
        "    def track_nothing(self):\n"
        "        return 1.0\n"
    )
    status, output, names = run_suite(suite, tmp_path, timeout=120)
    assert names == ["bench_broken.Broken.time_fine", "bench_broken.Broken.track_raises", "bench_broken.Unavailable.track_nothing"]
    assert status == 2, output
    assert _FAILED_RE.findall(output) == ["bench_broken.Broken.track_raises"], output
    assert "broken benchmark" in output
    assert _SKIPPED_RE.findall(output) == ["NotImplementedError('missing dependency')"], output


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
