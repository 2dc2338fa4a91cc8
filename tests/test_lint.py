"""Lint and typing gates (issue 9): ruff and mypy report no findings.

Both tools come with the ``test`` extra, so a missing tool fails here rather
than skipping. What they check is decided by their configuration
(``[tool.ruff]`` in pyproject.toml, ``[mypy]`` in setup.cfg), not here.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_finds_nothing():
    r = run_tool("ruff", "check", "--no-cache", "--output-format", "concise", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy_finds_nothing():
    r = run_tool("mypy")
    assert r.returncode == 0 and r.stdout.startswith("Success:"), r.stdout + r.stderr
