"""The examples run: every notebook from a clean kernel, every script in a subprocess.

The notebooks are built from the scripts (``examples/build_notebooks.py``):
their cells must be the scripts' cells, and the committed notebooks must
carry their outputs (every code cell executed, the plots as PNG). Each run
happens in a temporary working directory, so the sessions the examples
record land there.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

_spec = importlib.util.spec_from_file_location("build_notebooks", EXAMPLES / "build_notebooks.py")
build_notebooks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build_notebooks)

SCRIPTS = build_notebooks.example_scripts()
IDS = [p.stem for p in SCRIPTS]


def test_the_examples_are_there():
    names = {p.stem for p in SCRIPTS}
    assert {"01_quickstart", "03_analysis"} <= names, names
    assert "02_flight_recorder" in names, names


@pytest.mark.parametrize("script", SCRIPTS, ids=IDS)
def test_notebook_cells_are_the_script_cells(script):
    nb = nbformat.read(str(script.with_suffix(".ipynb")), as_version=4)
    assert [(c.cell_type, c.source) for c in nb.cells] == build_notebooks.script_cells(script), (
        f"{script.name} and its notebook differ: run python examples/build_notebooks.py {script.name}"
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=IDS)
def test_committed_notebook_carries_outputs(script):
    nb = nbformat.read(str(script.with_suffix(".ipynb")), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.execution_count is not None for c in code), "notebook not executed"
    outputs = [o for c in code for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs), "no plot"
    # small enough to read on a code host
    assert script.with_suffix(".ipynb").stat().st_size < 400_000


@pytest.mark.parametrize("script", SCRIPTS, ids=IDS)
def test_notebook_executes(script, tmp_path):
    nb = build_notebooks.notebook_for(script)
    build_notebooks.execute(nb, tmp_path, timeout=120)  # raises CellExecutionError on any error
    assert any("image/png" in o.get("data", {}) for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert list((tmp_path / "atf2_traces").glob("*/manifest.json"))


@pytest.mark.parametrize("script", SCRIPTS, ids=IDS)
def test_script_runs(script, tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip()
    assert list((tmp_path / "atf2_traces").glob("*/*.png")), "the script saves its figure"


def test_script_cells_parse_markdown_and_code(tmp_path):
    p = tmp_path / "99_demo.py"
    p.write_text("# %% [markdown]\n# # Title\n#\n# text\n\n# %%\nx = 1\n\n\n# %%\nprint(x)\n")
    assert build_notebooks.script_cells(p) == [("markdown", "# Title\n\ntext"), ("code", "x = 1"), ("code", "print(x)")]
    p.write_text("x = 1\n")
    with pytest.raises(ValueError):
        build_notebooks.script_cells(p)
