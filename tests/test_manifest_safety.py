"""Manifest safety: whatever a manifest says, readers, verify, recover and the
CLI raise AtfV2Error (or read correctly), never another exception or a hang,
and never open or write a file outside the session directory.

The proof of the last point is an audit: the hostile sessions are used in a
subprocess with ``sys.addaudithook`` recording every ``open`` (and every
rename, removal, directory creation...) after a warm-up on a good session, and
every path touched must lie inside the session directory being used (or the
export output the test asked for). Bait files (valid thread directories) wait
beside and above the session, where ``..`` or an absolute path would lead.
"""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

import atf2
from atf2.errors import AtfV2Error, ManifestError
from atf2.manifest import MAX_MANIFEST_BYTES, read_manifest

#: thread ids that must never become a path
HOSTILE_IDS = [
    "../thread_0", "..", "0/../../thread_0", "/", "thread_0", "0/", "0\x00", " 0", "+0", "00", "٠", "0x0",  # noqa: RUF001 - an Arabic-Indic zero, a digit to int() but not to us
    -1, -(2**64), 1.0, 0.5, 1e300, True, False, None, [0], {"id": 0}, 2**32, 2**64, 10**100,
]
#: the ids also tried as an extra thread beside good ones: the path-like ones
EXTRA_ID_CASES = range(6)
#: absurd values in fields the readers do not need (kept, or refused as ManifestError)
ABSURD_FIELDS = [
    ("threads.0.index_events", 10**30), ("threads.0.detail_events", 2**64), ("threads.0.time_start_ns", 10**40),
    ("threads.0.time_end_ns", 2**64), ("threads.0.os_thread_id", 2**90), ("threads.0.name", "../" * 1000 + "x"),
    ("threads.0.dropped", {"disk_error": 10**50}), ("clock_type", 2**70), ("time_start_ns", 2**64 + 5),
    ("time_end_ns", 10**30), ("pid", 10**50), ("modules.0.id", 2**70), ("modules.0.path", "/etc/passwd"),
    ("symbols.0.function_id", 2**80), ("symbols.0.module_id", 2**70), ("symbols.0.line", 10**30),
    ("symbols.0.file", "../../../../etc/passwd"), ("symbols.0.params", ["a"] * 5 + [None, 7, {"x": 1}]),
    ("symbols.0.params", "not a list"), ("windows", [{"start_ns": 10**40, "end_ns": -1}]),
    ("format_version", "2.1" * 10**5), ("status", "recording"),
]


def _set(data, dotted, value):
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    last = keys[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


@pytest.fixture(scope="module")
def base_session(tmp_path_factory):
    """A good session: two threads, details, symbols and modules in the manifest."""
    from conftest import _make_events, _write_session

    d = tmp_path_factory.mktemp("base") / "session"
    ev0 = _make_events(40, thread_id=0, seed=1, kinds=[1, 2] * 20)
    ev1 = _make_events(10, thread_id=1, seed=2, kinds=[1, 2] * 5)
    details = [bytes([i]) * i if i % 4 == 0 else None for i in range(40)]
    fids = sorted(set(ev0["function_id"].tolist()) | set(ev1["function_id"].tolist()))
    _write_session(
        d, {0: [(ev0[:20], details[:20]), (ev0[20:], details[20:])], 1: [(ev1, None)]},
        modules=[{"id": k, "name": f"mod{k}", "path": f"/src/mod{k}.py"} for k in range(4)],
        symbols=[{"function_id": f, "module_id": f >> 32, "name": f"f{f & 0xFFFF}", "file": "x.py", "line": 1, "params": ["a"]}
                 for f in fids],
    )
    return d


def _plant_bait(root, base):
    """Valid thread directories (and a whole session) where a path escape would find them."""
    for where in (root / "thread_0", root.parent / "thread_0", root / "bait" / "thread_0"):
        if not where.exists():
            shutil.copytree(base / "thread_0", where)
    shutil.copytree(base, root / "bait" / "session", dirs_exist_ok=True)


def _cases(base, root):
    """name -> session directory holding one hostile manifest (built here, used by the audit)."""
    good = json.loads((base / "manifest.json").read_text())
    cases = {}

    def make(name, manifest=None, raw=None, setup=None):
        d = root / name / "session"
        shutil.copytree(base, d)
        if raw is not None:
            (d / "manifest.json").write_bytes(raw)
        elif manifest is not None:
            (d / "manifest.json").write_text(json.dumps(manifest))
        if setup is not None:
            setup(d)
        cases[name] = d

    for i, bad in enumerate(HOSTILE_IDS):
        m = json.loads(json.dumps(good))
        m["threads"][0]["id"] = bad
        make(f"id{i}", m)
        if i in EXTRA_ID_CASES:
            m = json.loads(json.dumps(good))  # the same id as an extra thread
            m["threads"].append({"id": bad, "has_detail": True})
            make(f"extra_id{i}", m)
    for i, (field, value) in enumerate(ABSURD_FIELDS):
        m = json.loads(json.dumps(good))
        _set(m, field, value)
        make(f"absurd{i}", m)
    make("abs_path_id", raw=json.dumps({"threads": [{"id": str(root / "bait" / "thread_0")}]}).encode())
    make("deep_nesting", raw=b'{"threads": [], "x": ' + b"[" * 200_000 + b"]" * 200_000 + b"}")
    make("deep_list", raw=b"[" * 200_000)
    make("not_utf8", raw=b'{"threads": [], "name": "\xff\xfe"}')
    make("nan", raw=b'{"threads": [{"id": NaN}], "clock_type": Infinity}')
    make("dup_keys", raw=b'{"threads": [{"id": 0, "id": "../thread_0"}]}')
    make("huge_manifest", setup=lambda d: os.truncate(d / "manifest.json", MAX_MANIFEST_BYTES + 1))
    make("manifest_dir", setup=lambda d: (os.unlink(d / "manifest.json"), os.mkdir(d / "manifest.json")))
    make("manifest_fifo", setup=lambda d: (os.unlink(d / "manifest.json"), os.mkfifo(d / "manifest.json")))
    make("index_fifo", setup=lambda d: (os.unlink(d / "thread_1" / "index.atf"), os.mkfifo(d / "thread_1" / "index.atf")))
    make("detail_fifo", setup=lambda d: (os.unlink(d / "thread_0" / "detail.atf"), os.mkfifo(d / "thread_0" / "detail.atf")))
    return cases


#: what the audited subprocess runs on each case: every entry point that takes a session directory
AUDIT_SCRIPT = r"""
import json, os, shutil, sys, traceback
os.environ["ATF2_DEBUG"] = "1"  # the CLI re-raises internal errors instead of exit 3
import atf2, atf2.cli, atf2.analysis, atf2.export
from atf2.errors import AtfV2Error

cases = json.loads(sys.argv[1])
warm = sys.argv[2]
out_dir = sys.argv[3]


def read_all(d):
    with atf2.SessionReader(d) as r:
        r.event_count(); r.time_range(); r.clock_type; r.recovered
        merged = r.merged()
        [r.symbol_name(f) for f in set(merged["function_id"].tolist())]
        [r.symbol(f) for f in set(merged["function_id"].tolist())]
        for t in r.threads:
            list(t.index)
            if t.detail is not None:
                for e in t.detail:
                    e.decoded(); t.get_index_for(e)
            for e in t.index:
                t.get_detail_for(e)
            t.verify()
        r.summary(); r.intervals()
        r.export_chrome(os.path.join(out_dir, "api.json"))


def cli(*argv):
    import contextlib, io
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()) as err:
        status = atf2.cli.main(list(argv))
    if status == 2:  # a one-line AtfV2Error message on stderr
        raise AtfV2Error(err.getvalue().strip())
    if status not in (0, 1):
        raise RuntimeError(f"exit status {status}: {err.getvalue()[-500:]}")
    return status


def ops(d):
    return {
        "read": lambda: read_all(d),
        "verify": lambda: atf2.verify_session(d),
        "info": lambda: cli("info", d), "info_json": lambda: cli("info", "--json", d),
        "dump": lambda: cli("dump", d), "summary": lambda: cli("summary", d),
        "export": lambda: cli("export", "-o", os.path.join(out_dir, "cli.json"), d),
        "cli_verify": lambda: cli("verify", d),
        "recover": lambda: atf2.recover_session(d),  # last: it may rewrite the session
        "read_after_recover": lambda: read_all(d),
    }


# warm-up on a good session: imports, numba caches, lazy modules
for name, fn in ops(warm).items():
    fn()

events = []
WATCH = {"open", "os.rename", "os.replace", "os.remove", "os.unlink", "os.rmdir", "os.mkdir", "os.truncate",
         "os.chmod", "os.chown", "os.link", "os.symlink", "os.utime", "shutil.rmtree", "shutil.copyfile",
         "shutil.move", "os.listdir", "os.scandir", "os.mkfifo", "os.mknod"}


def hook(event, args):
    if event in WATCH:
        two = event in ("os.rename", "os.replace", "os.link", "os.symlink", "shutil.copyfile", "shutil.move")
        paths = [a for a in args[: 2 if two else 1] if isinstance(a, (str, bytes, os.PathLike))]
        mode = args[1] if event == "open" and len(args) > 1 else None
        flags = args[2] if event == "open" and len(args) > 2 else None
        events.append((event, [os.fsdecode(p) for p in paths], mode, flags))


sys.addaudithook(hook)
results = {}
for name, d in cases.items():
    res = {}
    for op, fn in ops(d).items():
        events.clear()
        try:
            fn()
            outcome = "ok"
        except AtfV2Error as exc:
            outcome = "AtfV2Error: " + str(exc)[:200]
        except BaseException as exc:
            outcome = "BAD " + type(exc).__name__ + ": " + "".join(traceback.format_exception(exc))[-1500:]
        touched = []
        for event, paths, mode, flags in events:
            for p in paths:
                touched.append([event, os.path.realpath(p), mode, flags])
        res[op] = {"outcome": outcome, "touched": touched}
    results[name] = res
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def audit(base_session, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    _plant_bait(root, base_session)
    cases = _cases(base_session, root / "cases")
    warm = root / "warm" / "session"
    shutil.copytree(base_session, warm)
    out_dir = root / "out"
    out_dir.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", AUDIT_SCRIPT, json.dumps({k: str(v) for k, v in cases.items()}), str(warm), str(out_dir)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {"root": root, "cases": cases, "out": out_dir, "results": json.loads(proc.stdout.strip().splitlines()[-1])}


def _is_code(path):
    return path.endswith((".py", ".pyc", ".so", ".nbi", ".nbc")) or "/__pycache__/" in path


def _case_names():
    n_ids, n_absurd = len(HOSTILE_IDS), len(ABSURD_FIELDS)
    return ([f"id{i}" for i in range(n_ids)] + [f"extra_id{i}" for i in EXTRA_ID_CASES] + [f"absurd{i}" for i in range(n_absurd)]
            + ["abs_path_id", "deep_nesting", "deep_list", "not_utf8", "nan", "dup_keys", "huge_manifest", "manifest_dir",
               "manifest_fifo", "index_fifo", "detail_fifo"])


@pytest.mark.parametrize("case", _case_names())
def test_only_atf_errors_and_nothing_touched_outside(audit, case):
    session = os.path.realpath(audit["cases"][case])
    out = os.path.realpath(audit["out"])
    results = audit["results"][case]
    for op, res in results.items():
        assert not res["outcome"].startswith("BAD"), f"{case} {op}: {res['outcome']}"
        for event, path, mode, flags in res["touched"]:
            inside = path == session or path.startswith(session + os.sep)
            output = path.startswith(out + os.sep)
            if inside or (output and (op == "export" or op.startswith("read"))):
                continue
            reading_code = event == "open" and _is_code(path) and (mode is None or "w" not in str(mode)) and not (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)
            assert reading_code, f"{case} {op}: {event} {path} (mode {mode}, flags {flags}) is outside {session}"


@pytest.mark.parametrize("i", range(len(HOSTILE_IDS)))
def test_hostile_thread_ids_are_manifest_errors(audit, i):
    for prefix in ("id", "extra_id") if i in EXTRA_ID_CASES else ("id",):
        res = audit["results"][f"{prefix}{i}"]
        for op in ("read", "info", "dump", "summary", "export"):
            assert res[op]["outcome"].startswith("AtfV2Error"), (HOSTILE_IDS[i], op, res[op]["outcome"])
            assert "manifest.json" in res[op]["outcome"] and ".id" in res[op]["outcome"], res[op]["outcome"]
        # recovery does not trust the manifest either: it moves it aside and rebuilds it from the files
        assert res["recover"]["outcome"] == "ok" and res["read_after_recover"]["outcome"] == "ok"
        d = audit["cases"][f"{prefix}{i}"]
        rebuilt = json.loads((d / "manifest.json").read_text())
        assert sorted(t["id"] for t in rebuilt["threads"]) == [0, 1] and rebuilt["status"] == "recovered"
        assert (d / "manifest.json.partial").exists()
    # the bait was never recovered, renamed or rewritten
    bait = audit["root"] / "thread_0"
    assert sorted(p.name for p in bait.iterdir()) == ["detail.atf", "index.atf"]


def test_absurd_sizes_read_or_refused(audit):
    for i, (field, _value) in enumerate(ABSURD_FIELDS):
        res = audit["results"][f"absurd{i}"]
        outcome = res["read"]["outcome"]
        assert outcome == "ok" or outcome.startswith("AtfV2Error"), (field, outcome)
    for name, what in [("huge_manifest", "limit"), ("deep_nesting", "nested too deeply"), ("deep_list", "nested too deeply"),
                       ("not_utf8", "JSON"), ("manifest_dir", "not a regular file"), ("manifest_fifo", "not a regular file"),
                       ("index_fifo", "not a regular file"), ("detail_fifo", "not a regular file")]:
        outcome = audit["results"][name]["read"]["outcome"]
        assert outcome.startswith("AtfV2Error") and what in outcome, (name, outcome)


def test_manifest_size_limit_reads_nothing(tmp_path):
    """A sparse manifest just above the limit is refused from its size, before any read."""
    (tmp_path / "manifest.json").write_bytes(b"")
    os.truncate(tmp_path / "manifest.json", MAX_MANIFEST_BYTES + 1)
    with pytest.raises(ManifestError, match="limit") as info:
        read_manifest(tmp_path)
    assert info.value.path == str(tmp_path / "manifest.json")


def test_fifo_manifest_does_not_block(tmp_path):
    """Regression: open() of a FIFO named manifest.json waited for a writer forever."""
    code = textwrap.dedent(f"""
        import os, atf2
        os.mkfifo({str(tmp_path / 'manifest.json')!r})
        os.makedirs({str(tmp_path / 'thread_0')!r})
        os.mkfifo({str(tmp_path / 'thread_0' / 'index.atf')!r})
        for f in (lambda: atf2.SessionReader({str(tmp_path)!r}), lambda: atf2.IndexReader({str(tmp_path / 'thread_0' / 'index.atf')!r})):
            try:
                f()
            except atf2.AtfV2Error as e:
                print("refused:", e)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("refused:") == 2 and "not a regular file" in r.stdout


def test_thread_dir_is_built_only_from_an_int(tmp_path):
    from atf2.manifest import thread_dir

    assert thread_dir(tmp_path, 7) == os.path.join(str(tmp_path), "thread_7")
    for bad in ("7", "../7", 7.0, True, -7, 2**32):
        with pytest.raises(ManifestError):
            thread_dir(tmp_path, bad)
    with pytest.raises(AtfV2Error):
        atf2.SessionReader(tmp_path / "no" / ".." / "nothing")


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_non_json_numbers_are_refused_and_recover_rebuilds(base_session, tmp_path, constant):
    """Regression (found by the fuzzer): Python's json reads NaN/Infinity where
    the manifest does not check types (symbols[].params); recover_session then
    failed with ValueError writing it back (write_manifest allows no NaN)."""
    d = tmp_path / "s"
    shutil.copytree(base_session, d)
    m = json.loads((d / "manifest.json").read_text())
    m["symbols"][0]["params"] = "@@"
    (d / "manifest.json").write_text(json.dumps(m).replace('"@@"', constant))
    with pytest.raises(ManifestError, match="not valid JSON"):
        atf2.SessionReader(d)
    assert atf2.recover_session(d)["status"] == "recovered"
    with atf2.SessionReader(d) as r:
        assert r.event_count() == 50
    assert atf2.verify_session(d) == []


@pytest.mark.parametrize("params", [[[]], [{"a": 1}], [1.5], "ab", {"0": "a"}])
def test_symbol_params_must_be_names(base_session, tmp_path, params):
    """Regression (found by the fuzzer): a list in symbols[].params became an
    argument name, and export_chrome failed with TypeError (unhashable key)."""
    d = tmp_path / "s"
    shutil.copytree(base_session, d)
    m = json.loads((d / "manifest.json").read_text())
    m["symbols"][0]["params"] = params
    (d / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match=r"symbols\[0\]\.params"):
        atf2.SessionReader(d)
