"""Full disk: a session whose directory fills up while `atf2 record` traces a
program. The program finishes normally (its output and exit status intact),
the events that did not fit are counted as drops with the disk reason, stop
finalizes what fit (footers, manifest "complete"), and the reader reads it.

Two ways to fill the disk: RLIMIT_FSIZE in the recording process (EFBIG;
SIGXFSZ is ignored by the session), and a real small tmpfs (ENOSPC) when this
machine lets the test mount one (root); that variant is skipped otherwise.
"""

import errno
import json
import os
import resource
import shutil
import subprocess
import sys
import textwrap

import pytest

import atf2
import atf2.errors
import atf2.writer
from atf2 import layout as L

PROGRAM = textwrap.dedent("""
    import sys

    def leaf(i):
        return i * 2

    def middle(i):
        return leaf(i) + leaf(i + 1)

    total = 0
    for i in range(int(sys.argv[1])):
        total += middle(i)
    print("result", total)
    sys.exit(7)
""")


def expected_result(n):
    return sum(2 * i + 2 * (i + 1) for i in range(n))


def record(tmp_path, out_dir, n_iter, preexec_fn=None, extra=()):
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    return subprocess.run(
        [sys.executable, "-m", "atf2", "record", "-o", str(out_dir), *extra, str(script), str(n_iter)],
        capture_output=True, text=True, timeout=300, preexec_fn=preexec_fn, cwd=tmp_path,
    )


def check_full_session(r, d, n_iter, limit_bytes):
    # the program ran to its end, unaware of the full disk
    assert r.returncode == 7, r.stderr[-3000:]
    assert f"result {expected_result(n_iter)}" in r.stdout
    assert "Traceback" not in r.stderr
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    main = manifest["threads"][0]
    # drops counted, with the disk reason, and every recorded event accounted for
    assert main["dropped"]["disk_error"] > 0
    assert main["recorded"] == main["index_events"] + sum(main["dropped"].values())
    assert main["recorded"] >= 6 * n_iter  # 3 calls a loop turn, CALL + RETURN each
    assert main["error"] and ("No space" in main["error"] or "too large" in main["error"].lower() or "EFBIG" in main["error"])
    stats = manifest["stats"]
    assert stats["events_dropped"] == sum(sum(t["dropped"].values()) for t in manifest["threads"])
    # stop finalized what fit: footers present, the reader reads it without recovery
    with atf2.SessionReader(d) as reader:
        assert not reader.recovered
        t = reader.thread(0)
        assert t.index.footer is not None and len(t.index) == main["index_events"] > 0
        assert os.path.getsize(t.index.path) <= limit_bytes
        t.verify()
        names = {reader.symbol_name(f) for f in set(t.index.events["function_id"].tolist())}
        assert {"middle", "leaf"} <= {n.split(".")[-1] for n in names}
    assert atf2.verify_session(d) == []


def test_rlimit_fsize(tmp_path):
    # a drain batch is at most 64Ki events (2 MiB) and is written all or
    # nothing: the limit leaves room for a few batches, not for all of them
    limit = 6 << 20
    n_iter = 150_000  # ~900k events, ~29 MB of index

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    d = tmp_path / "session"
    r = record(tmp_path, d, n_iter, preexec_fn=limit_file_size)
    check_full_session(r, d, n_iter, limit)


@pytest.fixture
def small_tmpfs(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    size = 6 << 20  # as the RLIMIT_FSIZE variant: room for a few batches
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt, size
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_small_tmpfs_fills_up(tmp_path, small_tmpfs):
    mnt, size = small_tmpfs
    n_iter = 150_000
    d = mnt / "session"
    r = record(tmp_path, d, n_iter)
    check_full_session(r, d, n_iter, size)
    # the whole file system was used, not just some of it (less than one
    # batch free, plus the final manifest's reserve, released at stop)
    from atf2.manifest_reserve import MIN_RESERVE_BYTES

    st = os.statvfs(mnt)
    assert st.f_bavail * st.f_frsize < (2 << 20) + MIN_RESERVE_BYTES


FILLING_PROGRAM = textwrap.dedent("""
    import errno, os, sys, time

    def leaf(i):
        return i * 2

    total = 0
    for i in range(20_000):
        total += leaf(i)
    time.sleep(0.3)  # the drain's first cycles create the thread's files and write what came so far
    # something else fills the file system to the last byte
    fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT)
    try:
        while True:
            os.write(fd, b"x" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    os.close(fd)
    for i in range(20_000):
        total += leaf(i)
    print("result", total)
""")


def test_disk_full_to_the_last_byte_at_stop(tmp_path, small_tmpfs):
    """Nothing left on the file system at stop: the program still ends
    normally, the thread files are finalized (the writer keeps a valid footer
    after every batch), and the final manifest fits in the space the session
    held back for it (atf2.manifest_reserve): "complete", read without
    recover, and the reserve is gone."""
    mnt, _size = small_tmpfs
    script = tmp_path / "fill.py"
    script.write_text(FILLING_PROGRAM)
    d = mnt / "session"
    r = subprocess.run([sys.executable, "-m", "atf2", "record", "-o", str(d), str(script), str(mnt / "filler")],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"result {2 * sum(range(20_000)) * 2}" in r.stdout and "Traceback" not in r.stderr
    assert "disk_error" in r.stderr  # the summary line names the drop reason
    st = os.statvfs(mnt)
    # still full: nothing came free at stop but the reserve itself, part of
    # which the final manifest took (less, or none, when the final manifest
    # fits in the blocks of the "recording" one it replaced)
    from atf2.manifest_reserve import MIN_RESERVE_BYTES

    assert st.f_bavail * st.f_frsize <= MIN_RESERVE_BYTES
    assert sorted(os.listdir(d)) == ["manifest.json", "thread_0"]
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    main = manifest["threads"][0]
    assert main["dropped"]["disk_error"] > 0 and main["index_events"] > 0
    with atf2.SessionReader(d) as reader:
        assert not reader.recovered
        t = reader.thread(0)
        assert t.index.footer is not None and len(t.index) == main["index_events"]
        t.verify()
    assert atf2.verify_session(d) == []


def test_clean_stop_leaves_no_reserve_and_recover_removes_a_killed_ones(tmp_path):
    from atf2.manifest_reserve import MANIFEST_RESERVE_NAME, MIN_RESERVE_BYTES

    d = tmp_path / "session"
    atf2.trace_session_start(d, trace_python=False)
    try:
        reserve = d / MANIFEST_RESERVE_NAME
        assert reserve.stat().st_size >= MIN_RESERVE_BYTES
        assert reserve.stat().st_blocks * 512 >= MIN_RESERVE_BYTES  # allocated, not sparse
        atf2.emit("f", L.EVENT_CALL, depth=1)
        atf2.emit("f", L.EVENT_RETURN, depth=1)
        # a killed recorder: the reserve is still there; readers and verify ignore it
        with atf2.SessionReader(d) as reader:
            assert reader.status == "recording"
        assert all(MANIFEST_RESERVE_NAME not in p.path for p in atf2.verify_session(d))
        killed = tmp_path / "killed"
        shutil.copytree(d, killed)
    finally:
        atf2.trace_session_stop()
    assert sorted(os.listdir(d)) == ["manifest.json", "thread_0"]
    from atf2.recover import recover_session

    assert (killed / MANIFEST_RESERVE_NAME).exists()
    recover_session(killed)
    assert not (killed / MANIFEST_RESERVE_NAME).exists()
    assert atf2.verify_session(killed) == []



def _no_space(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_writer_header_failure_leaves_nothing(tmp_path, monkeypatch):
    """The placeholder header cannot be written: no 0-byte index.atf and no
    empty thread directory stay behind, and the error is a WriteError."""
    monkeypatch.setattr(atf2.writer, "_write_all", _no_space)
    with pytest.raises(atf2.errors.WriteError, match="No space"):
        atf2.writer.ThreadWriter(tmp_path, 3)
    assert os.listdir(tmp_path) == []
    # a thread directory that existed before is kept, the file is not
    (tmp_path / "thread_4").mkdir()
    with pytest.raises(atf2.errors.WriteError):
        atf2.writer.ThreadWriter(tmp_path, 4)
    assert os.listdir(tmp_path / "thread_4") == []


def test_thread_whose_files_cannot_be_created(tmp_path, monkeypatch):
    """The disk is full before the drain creates a thread's files: its events
    are disk-error drops, no 0-byte index.atf is left, the manifest does not
    list a thread without a directory, and the session opens and verifies."""
    monkeypatch.setattr(atf2.writer, "_write_all", _no_space)
    d = tmp_path / "session"
    with atf2.trace_session(d, trace_python=False):
        for _ in range(100):
            atf2.emit("f", L.EVENT_CALL, depth=1)
            atf2.emit("f", L.EVENT_RETURN, depth=1)
    assert not list(d.glob("thread_*"))
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["threads"] == []
    (lost,) = manifest["threads_without_files"]
    assert lost["dropped"]["disk_error"] == lost["recorded"] == 200 and "No space" in lost["error"]
    assert manifest["stats"]["events_dropped"] == 200
    with atf2.SessionReader(d) as reader:
        assert reader.thread_ids == [] and not reader.recovered
    assert atf2.verify_session(d) == []
