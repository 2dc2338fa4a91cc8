"""Sphinx configuration of the atf2 documentation (``python -m sphinx -W docs OUT``)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "_ext"))
sys.path.insert(0, os.path.dirname(HERE))  # atf2 itself, also when not installed

import atf2  # noqa: E402

project = "atf2"
author = "the atf2 authors"
copyright = "the atf2 authors"
release = version = atf2.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "numpydoc",
    "sphinxarg.ext",
    "myst_parser",
    "atf2_docs",  # docs/_ext/atf2_docs.py: format tables generated from atf2.layout
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
root_doc = "index"
html_theme = "alabaster"
html_static_path: list = []

# autodoc: document what the pages name, in source order, with the signatures
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
# numpydoc: our docstrings are prose; no autosummary tables of every member
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks: set = set()

# MyST (only for atf2/PAYLOAD.md, included as is): GitHub-style headings anchors
myst_heading_anchors = 3

# doctest: every example runs in a fresh temporary working directory
doctest_global_setup = """
import os, tempfile
import numpy as np
import atf2
_doc_tmp = tempfile.TemporaryDirectory(prefix="atf2-docs-")
_doc_cwd = os.getcwd()
os.chdir(_doc_tmp.name)
"""
doctest_global_cleanup = """
os.chdir(_doc_cwd)
_doc_tmp.cleanup()
"""
nitpicky = False


def _skip_namedtuple_aliases(app, what, name, obj, skip, options):
    """NamedTuple fields are in the class signature; their generated docstrings only say "Alias for field number N"."""
    if (getattr(obj, "__doc__", None) or "").startswith("Alias for field number"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_namedtuple_aliases)
