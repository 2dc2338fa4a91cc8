"""Plain-script benchmarks: ``python -m atf2.bench [--quick] [NAME ...]``.

Each module here measures one area and exposes ``run(quick=False)`` returning
rows ``{"name", "value", "unit", ...}`` with a comparison in the same run (a raw
limit or a peer), because this machine is shared and absolute figures drift.
"""

MODULES = ("io", "drain", "overhead", "detail", "analysis", "longrun")
