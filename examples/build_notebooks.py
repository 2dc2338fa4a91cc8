"""Build the example notebooks from the plain scripts, and execute them in place.

    python examples/build_notebooks.py              # every NN_*.py in examples/
    python examples/build_notebooks.py 01_quickstart.py

The scripts are the source: cells are marked ``# %%`` (code) and
``# %% [markdown]`` (text, every line a ``# `` comment), the "percent" format
that editors such as VS Code and Spyder run cell by cell. Each notebook is
executed from a clean kernel (nbclient) in ``examples/`` and written with its
outputs, so it reads well on a code host. ``tests/test_examples.py`` checks
that every notebook's cells are its script's cells and executes both again.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT_RE = re.compile(r"^\d\d_\w+\.py$")
_MARKER_RE = re.compile(r"^# %%(?: \[(markdown)\])?\s*$")


def example_scripts() -> list:
    """The numbered example scripts, in order."""
    return sorted(p for p in HERE.iterdir() if SCRIPT_RE.match(p.name))


def script_cells(path: str | Path) -> list:
    """``[(cell_type, source)]`` of a percent-format script ("code" or "markdown")."""
    lines = Path(path).read_text().splitlines()
    if not lines or not _MARKER_RE.match(lines[0]):
        raise ValueError(f"{path}: the first line must be a '# %%' cell marker")
    cells = []
    for line in lines:
        m = _MARKER_RE.match(line)
        if m:
            cells.append(("markdown" if m.group(1) else "code", []))
            continue
        kind, body = cells[-1]
        if kind == "markdown":
            if line and not line.startswith("#"):
                raise ValueError(f"{path}: markdown cell line is not a comment: {line!r}")
            line = line[2:] if line.startswith("# ") else line[1:]
        body.append(line)
    return [(kind, "\n".join(body).strip("\n")) for kind, body in cells]


def notebook_for(path: str | Path):
    """An unexecuted notebook with the cells of ``path``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    make = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell}
    nb.cells = [make[kind](source) for kind, source in script_cells(path)]
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"  # stable ids: rebuilding does not churn the diff
    return nb


def execute(nb, cwd: str | Path, timeout: int = 300):
    """Run every cell of ``nb`` from a fresh ``python3`` kernel with ``cwd`` as working directory."""
    from nbclient import NotebookClient

    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    for cell in nb.cells:  # wall-clock stamps would change on every build
        cell.get("metadata", {}).pop("execution", None)
    return nb


def build(script: Path) -> Path:
    import nbformat

    nb = execute(notebook_for(script), HERE)
    out = script.with_suffix(".ipynb")
    nbformat.write(nb, str(out))
    return out


def main(argv: list) -> int:
    scripts = [HERE / name for name in argv] if argv else example_scripts()
    for script in scripts:
        print(f"{script.name} -> {build(script).name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
