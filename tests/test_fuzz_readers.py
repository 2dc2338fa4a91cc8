"""Fuzzed readers: mutated and truncated index, detail and manifest files give
AtfV2Error or a correct read through every entry point (readers, Python
payload decoding, analysis, verify_session, recover_session), never another
exception or a hang; and the Numba kernels, which do not bounds-check for
themselves, survive hostile bytes in a subprocess (a segfault fails the test
instead of killing the run).

``tests/test_corrupt_files.py`` already cuts and damages index/detail bytes
under the readers; this adds manifest mutations (bytes and JSON structure),
Python payloads, analysis, verify and recover, and the kernels on their own.
The long run: ``pytest -m fuzz_long tests/test_fuzz_readers.py``.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import atf2
from atf2.errors import AtfV2Error
from atf2.layout import (
    DETAIL_FUNCTION_CALL,
    DETAIL_FUNCTION_RETURN,
    DETAIL_PAYLOAD_VERSION,
    INDEX_EVENT_DTYPE,
    NO_DETAIL,
)
from atf2.payload import PayloadEncoder
from atf2.writer import DetailBatch

SHORT = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
LONG_EXAMPLES = int(os.environ.get("ATF2_FUZZ_EXAMPLES", "3000"))
FILES = ["manifest.json", "thread_0/index.atf", "thread_0/detail.atf", "thread_1/index.atf", "thread_1/detail.atf"]
HOSTILE_VALUES = [None, True, False, -1, 0, 1, 2**31, 2**32, 2**63, 2**64, 10**40, -(2**70), 0.5, 1e308, float("inf"), "",
                  "..", "../thread_0", "/", "x" * 300, [], [0], {}, {"id": 0}]


def _python_events(n, tid, fids, t0):
    """Nested CALL/RETURN pairs with Python payloads on every CALL and every third RETURN."""
    enc = PayloadEncoder()
    ev = np.zeros(n, INDEX_EVENT_DTYPE)
    ev["timestamp_ns"] = t0 + np.arange(n) * 7
    payloads = []
    stack = []
    for i in range(n):
        if stack and (i % 3 == 2 or len(stack) > 4 or n - i <= len(stack)):
            fid = stack.pop()
            ev[i]["event_kind"] = 2 if i % 11 else 3
            ev[i]["call_depth"] = len(stack)
            ev[i]["function_id"] = fid
            payloads.append(enc.return_(fid, {"i": i, "s": "é" * (i % 4)}, stack[::-1]) if i % 3 == 0 else None)
        else:
            fid = fids[i % len(fids)]
            ev[i]["event_kind"] = 1
            ev[i]["call_depth"] = len(stack)
            ev[i]["function_id"] = fid
            payloads.append(enc.call(fid, [i, 2.5, "abc", b"\x00\xff", None, [1, 2], 10**30], None, stack[::-1]))
            stack.append(fid)
    ev["detail_seq"] = NO_DETAIL
    return ev, payloads


def _batch(ev, payloads):
    batch = DetailBatch.from_payloads(payloads)
    kinds = ev["event_kind"][batch.positions]
    types = np.where(kinds == 1, DETAIL_FUNCTION_CALL, DETAIL_FUNCTION_RETURN).astype(np.uint16)
    return batch._replace(event_type=types, flags=np.full(len(batch.positions), DETAIL_PAYLOAD_VERSION, np.uint16))


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """Two threads of nested calls with Python payloads; a full 2.1 manifest."""
    from conftest import _write_session

    d = tmp_path_factory.mktemp("fuzzbase") / "session"
    fids = [(1 << 32) | k for k in range(3)] + [(2 << 32) | 0]
    ev0, p0 = _python_events(30, 0, fids, 1000)
    ev1, p1 = _python_events(12, 1, fids[::-1], 1003)
    _write_session(
        d,
        {0: [(ev0[:16], _batch(ev0[:16], p0[:16])), (ev0[16:], _batch(ev0[16:], p0[16:]))], 1: [(ev1, _batch(ev1, p1))]},
        time_start_ns=1000, time_end_ns=2000,
        modules=[{"id": 1, "name": "m1", "path": "m1.py"}, {"id": 2, "name": "m2", "path": "m2.py"}],
        symbols=[{"function_id": f, "module_id": f >> 32, "name": f"f{f & 7}", "qualname": f"C.f{f & 7}", "file": "m.py",
                  "line": 3, "params": ["a", "b", "c"]} for f in fids],
        windows=[], detail_payload_version=DETAIL_PAYLOAD_VERSION,
    )
    return d


def exercise(d, out):
    """Every read path over a session directory; returns a digest (or raises)."""
    digest = []
    with atf2.SessionReader(d) as r:
        digest += [r.event_count(), r.time_range(), r.status, r.recovered, r.clock_type]
        merged = r.merged()
        digest.append(merged.tobytes())
        digest.append(sum(len(c) for c in r.merged(chunk_size=5)))
        digest += [r.symbol_name(f) for f in merged["function_id"][:50].tolist()]
        for t in r.threads:
            digest.append(t.index.events.tobytes())
            for e in t.index:
                det = t.get_detail_for(e)
                if det is not None:
                    digest.append((det, det.decoded(), det.args, det.return_value, det.exception, det.stack))
            if t.detail is not None:
                for det in t.detail:
                    digest.append(t.get_index_for(det))
            digest.append(t.verify())
        s = r.summary()
        digest.append(repr(s)[:200])
        digest.append(r.intervals().tobytes())
        r.export_chrome(out)
    return digest


def outcome(fn, *args):
    try:
        return fn(*args)
    except AtfV2Error as exc:
        return exc


def damage_bytes(data, raw):
    """A hypothesis-drawn mutation of a file's bytes."""
    action = data.draw(st.sampled_from(["flip", "set", "cut", "grow", "splice", "zero_run"]))
    if action == "cut":
        return raw[: data.draw(st.integers(0, len(raw)))]
    if action == "grow":
        return raw + data.draw(st.binary(min_size=1, max_size=64))
    if not raw:
        return raw
    pos = data.draw(st.integers(0, len(raw) - 1))
    if action == "flip":
        raw[pos] ^= 1 << data.draw(st.integers(0, 7))
    elif action == "set":
        width = data.draw(st.sampled_from([1, 2, 4, 8]))
        value = data.draw(st.sampled_from([0, 1, 23, 24, 25, 0x7F, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 2**63, 2**64 - 1]))
        chunk = (value & ((1 << (8 * width)) - 1)).to_bytes(width, "little")
        raw[pos : pos + width] = chunk[: len(raw) - pos]
    elif action == "splice":
        raw[pos:pos] = data.draw(st.binary(min_size=1, max_size=40))
    else:
        n = data.draw(st.integers(1, 64))
        raw[pos : pos + n] = bytes(min(n, len(raw) - pos))
    return raw


def damage_json(data, text):
    """Replace one node of the manifest's JSON tree with a hostile value, or delete it."""
    doc = json.loads(text)
    paths = []

    def walk(node, path):
        paths.append(path)
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + [i])

    walk(doc, [])
    path = data.draw(st.sampled_from(paths[1:]))
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    if data.draw(st.booleans()) and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(st.sampled_from(HOSTILE_VALUES))
    return json.dumps(doc).encode()


def _is_json(raw):
    try:
        json.loads(bytes(raw))
        return True
    except ValueError:
        return False


def mutate_and_check(base, work, data, files):
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(base, work)
    for _ in range(data.draw(st.integers(1, 3))):
        name = data.draw(st.sampled_from(files))
        p = work / name
        raw = bytearray(p.read_bytes())
        if name == "manifest.json" and _is_json(raw) and data.draw(st.booleans()):
            p.write_bytes(damage_json(data, raw.decode()))
        else:
            p.write_bytes(bytes(damage_bytes(data, raw)))
    out = work.parent / "out.json"
    first = outcome(exercise, work, out)
    if isinstance(first, AtfV2Error) and not str(first).startswith("detail payload"):
        # names the file (a payload decoded from a DetailEvent names its payload offset only: known gap)
        assert str(work) in str(first), first
    problems = atf2.verify_session(work)  # lists problems, never raises on a directory
    assert all(str(work) in p.path for p in problems)
    if not problems and not isinstance(first, AtfV2Error):
        with atf2.SessionReader(work) as r:
            assert r.event_count() == len(r.merged())
    rec = outcome(atf2.recover_session, work)
    if not isinstance(rec, AtfV2Error):
        outcome(exercise, work, out)  # whatever recovery made of it reads or fails cleanly
        assert outcome(atf2.recover_session, work)["changed"] is False  # idempotent


@settings(max_examples=40, **SHORT)
@given(data=st.data())
def test_mutated_sessions_give_only_atf_errors(base, tmp_path_factory, data):
    mutate_and_check(base, tmp_path_factory.getbasetemp() / "fuzz_short" / "s", data, FILES)


@settings(max_examples=25, **SHORT)
@given(data=st.data())
def test_mutated_manifests_give_only_atf_errors(base, tmp_path_factory, data):
    mutate_and_check(base, tmp_path_factory.getbasetemp() / "fuzz_manifest" / "s", data, ["manifest.json"])


def test_untouched_base_reads_and_verifies(base, tmp_path):
    digest = exercise(base, tmp_path / "out.json")
    assert digest[0] == 42 and atf2.verify_session(base) == []
    with atf2.SessionReader(base) as r:
        calls = [d for d in (r.thread(0).get_detail_for(e) for e in r.thread(0).index) if d is not None]
        assert calls and calls[0].args[0] == ("a", 0) and calls[0].decoded() is not None


@pytest.mark.fuzz_long
@settings(max_examples=LONG_EXAMPLES, **SHORT)
@given(data=st.data())
def test_long_mutated_sessions(base, tmp_path_factory, data):
    mutate_and_check(base, tmp_path_factory.getbasetemp() / "fuzz_long" / "s", data, FILES)


# ------------------------------------------------------------------ kernels, isolated

KERNEL_SCRIPT = r"""
import sys, zlib
import numpy as np
from atf2.errors import AtfV2Error
from atf2.layout import INDEX_EVENT_DTYPE, NO_DETAIL
from atf2.kernels.decode import scan_detail, check_detail, check_index, scan_index
from atf2.kernels import verify as kv
from atf2.kernels.merge import merge_chunk, merge_inputs
from atf2.kernels.crc import crc32
from atf2.reader.session import MERGED_EVENT_DTYPE
from atf2 import analysis, payload

seed, rounds = int(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(seed)


def hostile_u32(n):
    pool = np.array([0, 1, 23, 24, 25, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF], np.uint32)
    return np.where(rng.random(n) < 0.5, rng.choice(pool, n), rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32))


def hostile_events(n):
    ev = np.zeros(n, INDEX_EVENT_DTYPE)
    raw = rng.integers(0, 256, n * 32, dtype=np.uint8)
    ev = raw.view(INDEX_EVENT_DTYPE).copy()
    if rng.random() < 0.5:  # plausible-looking: few kinds, mostly sorted times, hostile depths/links
        ev["event_kind"] = rng.integers(0, 5, n)
        ev["timestamp_ns"] = np.sort(ev["timestamp_ns"]) if rng.random() < 0.7 else ev["timestamp_ns"]
        ev["call_depth"] = hostile_u32(n)
        ev["detail_seq"] = np.where(rng.random(n) < 0.5, NO_DETAIL, hostile_u32(n))
        ev["function_id"] = rng.integers(0, 4, n).astype(np.uint64) << np.uint64(32) | rng.integers(0, 3, n).astype(np.uint64)
    return ev


for r in range(rounds):
    size = int(rng.choice([0, 1, 23, 24, 63, 64, 65, 87, 88, 100, 1000, 5000]))
    buf = rng.integers(0, 256, size, dtype=np.uint8)
    # sprinkle plausible and hostile lengths at record starts
    for pos in range(64, max(size - 4, 64), int(rng.integers(20, 80))):
        buf[pos:pos + 4] = np.frombuffer(np.uint32(rng.choice([0, 23, 24, 25, 48, 0xFFFFFFFF, size - pos, size - pos + 1])).tobytes(), np.uint8)[: max(0, min(4, size - pos))]
    start = int(rng.choice([0, 64, size, size + 10]))
    end = int(rng.choice([size, size + 100, size - 1, 0, 64]))
    for strict in (True, False):
        offs, seqs, count, err, where, stop = scan_detail(buf, start, end, strict, int(rng.choice([0, 1, 16, 1 << 20])))
        assert len(offs) == count and (count == 0 or (offs.min() >= 0 and offs.max() + 24 <= size)), (offs, size)
    hostile_offs = np.concatenate([offs, rng.integers(-100, size + 100, 5)]).astype(np.int64)
    check_detail(buf, hostile_offs, int(rng.integers(0, 3)), int(rng.choice([-1, 0, 5, 2**40])))
    n = int(rng.choice([0, 1, 2, 17, 300]))
    ev = hostile_events(n)
    check_index(ev, int(rng.integers(0, 3)), int(rng.choice([-1, 0, 3, 2**40])))
    scan_index(ev)
    kv.dangling_links(ev, int(rng.choice([0, 1, 5, 2**33])))
    kv.check_index_events(ev, int(rng.integers(0, 3)), buf, offs.astype(np.int64))
    kv.check_detail_events(buf, hostile_offs[(hostile_offs >= 0) & (hostile_offs + 24 <= size)], int(rng.integers(0, 3)), ev)
    assert crc32(buf) == zlib.crc32(buf.tobytes())
    # merge: several threads, hostile (unsorted, duplicate, extreme) timestamps
    arrays = [hostile_events(int(rng.integers(0, 50))) for _ in range(int(rng.integers(1, 6)))]
    total = sum(len(a) for a in arrays)
    addrs, lens = merge_inputs(arrays)
    heads = np.zeros(len(arrays), np.int64)
    got = 0
    while got < total:
        out = np.empty(int(rng.integers(1, 40)), MERGED_EVENT_DTYPE)
        k = merge_chunk(addrs, lens, heads, out)
        assert 0 < k <= len(out)
        got += k
    assert got == total and (heads == lens).all()
    # analysis over hostile events (kinds, depths, links, times in any order)
    merged = np.concatenate(arrays) if arrays else hostile_events(0)
    for source in (merged, ev):
        try:
            analysis.intervals(source, chunk_size=int(rng.choice([1, 7, 1 << 16])))
            analysis.summary(source)
        except AtfV2Error:
            pass
    # Python payload decoder over random and damaged payloads
    enc = payload.PayloadEncoder()
    good = enc.call(5, [1, "x", b"y", 2.0, None, [1]], None, [1, 2])
    for data in (bytes(buf[:200]), good[: int(rng.integers(0, len(good) + 1))], bytes(x ^ int(rng.integers(0, 256)) if rng.random() < 0.05 else x for x in good)):
        for flags in (1, 0, 2, 0xFFFF):
            try:
                payload.decode(data, flags, {5: {"params": [["a"], None, "ab", [1, None]][int(rng.integers(0, 4))]}})
            except AtfV2Error:
                pass
print("survived", rounds)
"""


def run_kernels(seed, rounds, timeout):
    r = subprocess.run([sys.executable, "-c", KERNEL_SCRIPT, str(seed), str(rounds)], capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"kernels on hostile input: exit {r.returncode} (negative = killed by a signal)\n{r.stderr[-4000:]}"
    assert f"survived {rounds}" in r.stdout


def test_kernels_on_hostile_input_in_a_subprocess():
    run_kernels(seed=8, rounds=100, timeout=240)


@pytest.mark.fuzz_long
@pytest.mark.parametrize("seed", range(4))
def test_kernels_on_hostile_input_long(seed):
    run_kernels(seed=100 + seed, rounds=5000, timeout=1800)



def test_analysis_of_timestamps_above_2_63():
    """Regression: a damaged file's timestamp >= 2**63 raised OverflowError in
    analysis (the pairing state is int64; close_open got a Python int)."""
    from atf2 import analysis

    ev = np.zeros(3, INDEX_EVENT_DTYPE)
    ev["timestamp_ns"] = [2**63 - 5, 2**63 + 7, 2**64 - 1]
    ev["event_kind"] = [1, 1, 2]  # the outer call stays open: closed at the last timestamp
    ev["call_depth"] = [0, 1, 1]
    ev["function_id"] = [1, 2, 2]
    iv = analysis.intervals(ev)
    assert sorted(iv["end_ns"].tolist()) == [2**64 - 1, 2**64 - 1]
    assert iv["start_ns"].min() == 2**63 - 5
    assert analysis.summary(ev) is not None
