"""asv benchmarks for atf2 (``asv run``, see "Benchmarks with asv" in README.md).

One module per area, each owned by the engineer of that area; shared helpers
are in ``asv_bench.common``. asv imports this directory as a package.
"""
