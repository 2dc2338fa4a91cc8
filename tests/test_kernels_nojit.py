"""The kernel tests again, with the JIT off (``NUMBA_DISABLE_JIT=1``).

Compiled kernels are invisible to coverage; as plain Python their lines and
branches count (the child process is measured like every process the suite
starts: ``patch = subprocess`` in setup.cfg, and the parent combines its
data). numpy's indexing is bounds checked where compiled code is not, so the
run doubles as a bounds check: an out-of-bounds read is an ``IndexError``
here instead of a silently wrong value. ``nojit_plugin`` lets the kernels run
as Python (record fields, pure-Python twins of the intrinsics); the ``@cfunc``
profile hooks cannot, and are tested through their effects (the recorded
sessions) in the compiled run.

The selection: tests that drive the kernels on small data (encode, decode,
CRC, merge, intervals, summary, verify, windows, FNV, the rings; the readers
on corrupt inputs). Pure Python is ~100x slower: big inputs stay out.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).parent

#: test files (relative to tests/) run without the JIT ...
#: (node ids are given relative to the root directory, the child's working
#: directory: --deselect matches them as pytest spells them)
SELECTION = [
    "test_layout.py",
    "test_coverage_kernels.py",  # code table, FNV-1a
    "test_coverage_verify.py",  # verify kernels, one damaged field at a time
    "test_writer.py",  # encode, CRC (>= 4 KiB batches), detail framing
    "test_readers.py",  # decode, merge
    "test_corrupt_files.py",  # decode's bounds checks on hostile bytes
    "test_analysis.py",  # intervals, summary
    "test_export.py",
    "test_verify_recover.py",  # verify
    "test_flight_windows.py",  # windows
    "test_rings.py",  # the ring kernels, producer and drain side
    "test_drain_growth.py",  # the ring map, growth, the growth budget
    "test_cli_query.py::test_summary",
]
#: ... but not these: big inputs (minutes as Python), or what only compiled code can do
DESELECT = [
    "test_writer.py::test_big_batch_is_a_few_syscalls",  # 1M events
    "test_writer.py::test_rlimit_fsize_efbig_then_valid_files",  # a child process (runs compiled)
    "test_rings.py::test_concurrent_producer_and_drain_account_exactly",  # threads racing on millions of events
    "test_rings.py::test_control_block_addresses_work_from_nopython_code",  # its own intrinsic
    "test_drain_growth.py::test_drain_grows_the_pool_of_a_thread_it_lags_behind",  # 400 Ki events through a session
    "test_export.py::test_export_reference_session",  # the C writer's 3 MB session
    "test_verify_recover.py::test_reference_sessions_verify_with_crc_not_recorded[s2]",  # the same
    # many examples or every cut of a file: the same kernel lines thousands of
    # times (the compiled run has them); one pass is what coverage needs
    "test_corrupt_files.py::test_random_damage_only_atf_errors",
    "test_corrupt_files.py::test_cut_at_every_byte",
    "test_analysis.py::test_matches_reference_and_chunking_is_invisible",
    "test_verify_recover.py::test_recover_complete_session_is_a_no_op",
]


def test_kernel_tests_pass_without_the_jit():
    env = dict(os.environ, NUMBA_DISABLE_JIT="1", PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")])))
    run = subprocess.run(
        [
            sys.executable, "-m", "pytest", "-q", "-p", "nojit_plugin", "--no-cov", "-p", "no:cacheprovider",
            "--durations=5", *[f"tests/{s}" for s in SELECTION], *[f"--deselect=tests/{s}" for s in DESELECT],
        ],
        cwd=TESTS.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
