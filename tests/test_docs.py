"""The documentation site builds with warnings as errors, and its examples run.

``docs/`` is a Sphinx project: the HTML build (``-W --keep-going``: any
warning fails, and every warning is listed) and the doctest builder (every
``.. doctest::`` example of every page is executed, a real recording among
them) run as two subprocesses side by side, each in a temporary directory.

The format and option tables of the docs are generated from the code by
``docs/_ext/atf2_docs.py``; the last test shows that a page whose table
disagrees with ``atf2.layout`` or with a signature fails the build.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import env_without_coverage

DOCS = Path(__file__).resolve().parent.parent / "docs"


# The docs' examples run as a user runs atf2, outside coverage
# (env_without_coverage): under coverage's tracer the detail capture cannot see
# exception values (``<unavailable>``, see PAYLOAD.md), and measuring Sphinx
# itself would only make the build slower.


def _sphinx(builder: str, source: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", builder,
           "-d", str(out / "doctrees"), str(source), str(out / builder)]
    env = env_without_coverage()
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    output, _ = proc.communicate(timeout=300)
    return proc.returncode, output


def test_docs_build_without_warnings_and_examples_pass(tmp_path):
    html = _sphinx("html", DOCS, tmp_path / "h")
    doctest = _sphinx("doctest", DOCS, tmp_path / "d")
    (html_status, html_out), (doctest_status, doctest_out) = _finish(html), _finish(doctest)
    assert html_status == 0, f"sphinx -b html -W failed:\n{html_out}"
    report = (tmp_path / "d" / "doctest" / "output.txt").read_text()
    assert doctest_status == 0, f"sphinx -b doctest failed:\n{doctest_out}\n{report}"
    assert " 0 failures in tests" in report, report
    for page in ("index", "getting_started", "recorder", "detail", "payload", "cli", "api", "format", "benchmarks"):
        assert (tmp_path / "h" / "html" / f"{page}.html").is_file(), page
    # every page with examples ran them (a page whose doctests were skipped would not be listed)
    for page in ("getting_started", "recorder", "detail", "cli", "api", "format", "benchmarks"):
        assert f"Document: {page}\n" in report, f"no doctest ran in {page}.rst"


def test_generated_tables_fail_the_build_when_the_page_disagrees_with_the_code(tmp_path):
    """A field or option named on a page but absent from the code (or the reverse) is a build error."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "conf.py").write_text(f"import sys\nsys.path.insert(0, {str(DOCS / '_ext')!r})\nextensions = ['atf2_docs']\n")
    (src / "index.rst").write_text(textwrap.dedent("""\
        Drift
        =====

        .. atf2-struct:: INDEX_FOOTER_DTYPE

           magic: magic
           checksum: crc
           event_count: count
           time_start_ns: first
           time_end_ns: last
           bytes_written: bytes
           padding: a field the layout does not have (it calls it reserved)

        .. atf2-params:: atf2.payload.PayloadOptions

           max_args: a
           text_cap: b
           repr_cap: c
           stack_depth: d
           slow_repr_ns: e
           bigint_cap: f

        .. atf2-codes:: EVENT_KIND_NAMES

           CALL: in
           RETURN: out
           EXCEPTION: out by an exception
        """))
    status, output = _finish(_sphinx("html", src, tmp_path / "out"))
    assert status != 0
    assert "INDEX_FOOTER_DTYPE: the page and the code disagree: not described: ['reserved']; not in the code: ['padding']" in output
    assert "atf2.payload.PayloadOptions: the page and the code disagree: not described: ['repr_timeout_ns']" in output
    assert "EVENT_KIND_NAMES" not in output  # the table that agrees builds


def _markdown_table(text: str, header: str) -> list[list[str]]:
    """Rows (cells stripped) of the Markdown table whose header line starts with ``header``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_payload_page_tables_match_the_layout():
    """atf2/PAYLOAD.md (the docs' payload page, included as is) is typed by hand: its tables must match atf2.layout."""
    from atf2 import layout

    text = (DOCS.parent / "atf2" / "PAYLOAD.md").read_text()
    header = [(int(off), int(size), field) for off, size, field, _ in _markdown_table(text, "| off | size | field |")]
    dtype = layout.PAYLOAD_HEADER_DTYPE
    assert header == [(dtype.fields[n][1], dtype.fields[n][0].itemsize, n) for n in dtype.names]
    tags = [(int(tag), name) for tag, name, *_ in _markdown_table(text, "| tag | name |")]
    assert tags == [(code, name.upper()) for code, name in sorted(layout.PAYLOAD_VAL_NAMES.items())]
