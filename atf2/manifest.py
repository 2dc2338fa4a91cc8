"""manifest.json: write it atomically, read it back validated.

The manifest is the one piece of session metadata that is text, so it is also
the one place where a hostile or damaged session could smuggle a path into the
reader. Thread directories are therefore never built from manifest text: the
only path a thread id turns into is ``thread_{int}``, after the id has been
checked to be a non-negative integer (``bool`` is not an integer here).

Shapes read: the original minimal one written by the native drain
(``{"format_version": "2.0", "threads": [{"id": N, "has_detail": b}]}``) and
the "2.1" shape written by the session layer (status, clock, time range,
threads with counts and names, modules, symbols, windows). Unknown keys are
kept as they are; the types of the keys atf2 uses are checked.
"""

from __future__ import annotations

import json
import os
import stat
import threading
from typing import Any, NoReturn, TypeGuard

from .errors import ManifestError
from .layout import (
    MANIFEST_FORMAT_VERSIONS_READ,
    MANIFEST_NAME,
    THREAD_DIR_PREFIX,
)

#: values of the "status" key
STATUS_RECORDING = "recording"
STATUS_COMPLETE = "complete"
STATUS_RECOVERED = "recovered"
STATUSES = (STATUS_RECORDING, STATUS_COMPLETE, STATUS_RECOVERED)

#: thread ids are written as u32 in the file headers
MAX_THREAD_ID = 0xFFFFFFFF

#: a manifest larger than this is refused unread (a million symbols take ~150 MiB)
MAX_MANIFEST_BYTES = 256 << 20


def is_int(value: Any) -> TypeGuard[int]:
    """True for a JSON/Python integer; ``bool`` does not count."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_thread_id(value: Any, path: str | os.PathLike[str] | None = None) -> int:
    """Return ``value`` as a thread number, or raise ``ManifestError``.

    A thread number is a non-negative integer that fits the u32 header field.
    numpy integers are accepted; bools, floats and strings are not.
    """
    if not is_int(value):
        try:
            import numpy as np

            if isinstance(value, np.integer):
                value = int(value)
        except ImportError:  # pragma: no cover - numpy is a dependency
            pass
    if not is_int(value) or value < 0 or value > MAX_THREAD_ID:
        raise ManifestError(f"thread id must be an integer in 0..{MAX_THREAD_ID}, not {value!r}", path)
    return int(value)


def manifest_path(session_dir: str | os.PathLike[str]) -> str:
    return os.path.join(os.fspath(session_dir), MANIFEST_NAME)


def thread_dir(session_dir: str | os.PathLike[str], thread_id: int) -> str:
    """The directory of thread ``thread_id``: ``<session_dir>/thread_<N>``."""
    return os.path.join(os.fspath(session_dir), f"{THREAD_DIR_PREFIX}{check_thread_id(thread_id)}")


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_manifest(session_dir: str | os.PathLike[str], data: dict, *, fsync: bool = True, compact: bool = False) -> str:
    """Write ``data`` as ``<session_dir>/manifest.json`` atomically; return the path.

    ``compact``: no indentation (the json module's C encoder, ~10x faster:
    for the frequent crash-recovery rewrites of a session with many threads).

    The text goes to a temporary file in the same directory, which is fsynced
    and renamed over the manifest, then the directory is fsynced: a reader sees
    either the old manifest or the new one, never a mix, even after a crash.
    """
    session_dir = os.fspath(session_dir)
    path = manifest_path(session_dir)
    text = (json.dumps(data, allow_nan=False, separators=(",", ":")) if compact else json.dumps(data, indent=1, allow_nan=False)) + "\n"
    tmp = f"{path}.tmp.{os.getpid()}.{threading.get_ident()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        view = memoryview(text.encode("utf-8"))
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    os.close(fd)
    os.replace(tmp, path)
    if fsync:
        _fsync_dir(session_dir)
    return path


def _fail(path: str, message: str) -> ManifestError:
    return ManifestError(message, path)


_CHECKS = {
    "int": is_int,
    "uint": lambda v: is_int(v) and v >= 0,
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "list": lambda v: isinstance(v, list),
    "dict": lambda v: isinstance(v, dict),
    "str|null": lambda v: v is None or isinstance(v, str),
    "uint|null": lambda v: v is None or (is_int(v) and v >= 0),
}


def _check_type(path: str, where: str, value: Any, kind: str) -> None:
    if not _CHECKS[kind](value):
        raise _fail(path, f"{where} must be {kind.replace('uint', 'a non-negative int')}, not {value!r}")


#: optional keys of a thread entry and their types
_THREAD_KEYS = {
    "has_detail": "bool",
    "index_events": "uint",
    "detail_events": "uint",
    "time_start_ns": "uint",
    "time_end_ns": "uint",
    "os_thread_id": "uint|null",
    "name": "str|null",
    "dropped": "dict",
}
_TOP_KEYS = {
    "status": "str",
    "clock_type": "uint",
    "time_start_ns": "uint",
    "time_end_ns": "uint",
    "modules": "list",
    "symbols": "list",
    "windows": "list",
}

#: issue 5: keys of a flight-recorder window entry (``windows``) and their types; the first six are required
_WINDOW_KEYS = {
    "thread_id": "uint",
    "start_ns": "uint",
    "end_ns": "uint",
    "start_index_seq": "uint",
    "end_index_seq": "uint",
    "trigger_kinds": "list",
    "events": "uint",
    "triggers": "uint",
    "trigger_ns": "uint",
    "pre_roll_events": "uint",
    "pre_roll_ns": "uint",
    "post_roll_events": "uint",
    "post_roll_ns": "uint",
    "pre_roll_clipped": "bool",
    "post_roll_cut": "bool",
    "marks": "list",
}
_WINDOW_REQUIRED = tuple(_WINDOW_KEYS)[:6]
_WINDOW_TRIGGER_KINDS = ("symbol", "exception", "mark")


def _check_windows(path: str, windows: list, thread_ids: set) -> None:
    """issue 5: every window entry well typed, ordered (start <= end), on a listed thread."""
    for i, w in enumerate(windows):
        where = f"windows[{i}]"
        _check_type(path, where, w, "dict")
        for key in _WINDOW_REQUIRED:
            if key not in w:
                raise _fail(path, f"{where} has no {key!r}")
        for key, kind in _WINDOW_KEYS.items():
            if key in w:
                _check_type(path, f"{where}.{key}", w[key], kind)
        if w["thread_id"] not in thread_ids:
            raise _fail(path, f"{where}.thread_id {w['thread_id']} is not a thread of the session")
        for first, last in (("start_ns", "end_ns"), ("start_index_seq", "end_index_seq")):
            if w[first] > w[last]:
                raise _fail(path, f"{where}.{first} {w[first]} is after {last} {w[last]}")
        for kind in w["trigger_kinds"]:
            if kind not in _WINDOW_TRIGGER_KINDS:
                raise _fail(path, f"{where}.trigger_kinds: {kind!r} is not one of {', '.join(_WINDOW_TRIGGER_KINDS)}")
        for j, reason in enumerate(w.get("marks", ())):
            _check_type(path, f"{where}.marks[{j}]", reason, "str")


def _symbol_ok(symbol: Any) -> bool:
    if type(symbol) is not dict:
        return False
    fid = symbol.get("function_id")
    if not (is_int(fid) and fid >= 0):
        return False
    get = symbol.get
    for key in ("name", "qualname", "file"):
        v = get(key)
        if v is not None and type(v) is not str:
            return False
    for key in ("module_id", "line"):
        v = get(key)
        if v is not None and not (is_int(v) and v >= 0):
            return False
    if "params" in symbol:
        params = symbol["params"]
        if type(params) is not list or not all(p is None or type(p) is str for p in params):
            return False
    return True


def validate_manifest(data: Any, path: str = MANIFEST_NAME) -> dict:
    """Check the shape of a parsed manifest; return it with defaults filled in.

    Defaults: ``format_version`` "2.0" when absent, ``status`` "complete" when
    absent (the native writer only wrote finished sessions), ``has_detail``
    absent means "look for the file". Raises ``ManifestError``.
    """
    if not isinstance(data, dict):
        raise _fail(path, f"the manifest must be a JSON object, not {type(data).__name__}")
    data = dict(data)
    version = data.setdefault("format_version", "2.0")
    if version not in MANIFEST_FORMAT_VERSIONS_READ:
        raise _fail(path, f"unsupported format_version {version!r} (read: {', '.join(MANIFEST_FORMAT_VERSIONS_READ)})")
    data.setdefault("status", STATUS_COMPLETE)
    for key, kind in _TOP_KEYS.items():
        if key in data:
            _check_type(path, key, data[key], kind)
    if data["status"] not in STATUSES:
        raise _fail(path, f"status must be one of {', '.join(STATUSES)}, not {data['status']!r}")
    if "threads" not in data:
        raise _fail(path, "the manifest has no 'threads' list")
    _check_type(path, "threads", data["threads"], "list")
    seen = set()
    threads = []
    for i, entry in enumerate(data["threads"]):
        where = f"threads[{i}]"
        _check_type(path, where, entry, "dict")
        if "id" not in entry:
            raise _fail(path, f"{where} has no 'id'")
        tid = entry["id"]
        if not is_int(tid) or tid < 0 or tid > MAX_THREAD_ID:
            raise _fail(path, f"{where}.id must be an integer in 0..{MAX_THREAD_ID}, not {tid!r}")
        if tid in seen:
            raise _fail(path, f"{where}.id {tid} appears twice")
        seen.add(tid)
        for key, kind in _THREAD_KEYS.items():
            if key in entry:
                _check_type(path, f"{where}.{key}", entry[key], kind)
        if "dropped" in entry:
            for reason, count in entry["dropped"].items():
                _check_type(path, f"{where}.dropped[{reason!r}]", count, "uint")
        threads.append(dict(entry))
    data["threads"] = threads
    _check_windows(path, data.get("windows", ()), seen)  # issue 5
    for i, module in enumerate(data.get("modules", ())):
        _check_type(path, f"modules[{i}]", module, "dict")
        if "id" in module:
            _check_type(path, f"modules[{i}].id", module["id"], "uint")
    for i, symbol in enumerate(data.get("symbols", ())):
        if _symbol_ok(symbol):  # the common case, checked without building messages
            continue
        _check_type(path, f"symbols[{i}]", symbol, "dict")
        if "function_id" not in symbol:
            raise _fail(path, f"symbols[{i}] has no 'function_id'")
        _check_type(path, f"symbols[{i}].function_id", symbol["function_id"], "uint")
        for key in ("name", "qualname", "file"):
            if key in symbol:
                _check_type(path, f"symbols[{i}].{key}", symbol[key], "str|null")
        for key in ("module_id", "line"):
            if key in symbol:
                _check_type(path, f"symbols[{i}].{key}", symbol[key], "uint|null")
        if "params" in symbol:  # argument names of decoded detail payloads: they become dict keys
            _check_type(path, f"symbols[{i}].params", symbol["params"], "list")
            for j, name in enumerate(symbol["params"]):
                _check_type(path, f"symbols[{i}].params[{j}]", name, "str|null")
    return data


def _reject_constant(name: str) -> NoReturn:
    # NaN / Infinity / -Infinity: Python's json reads them, JSON does not have
    # them, and write_manifest (allow_nan=False) could not write them back
    raise ValueError(f"{name} is not a JSON value")


def read_manifest(session_dir: str | os.PathLike[str]) -> dict:
    """Read and validate ``<session_dir>/manifest.json``; raise ``ManifestError``."""
    path = manifest_path(session_dir)
    try:
        # O_NONBLOCK: a FIFO planted as manifest.json must not block the open
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise _fail(path, "missing: not an ATF v2 session directory") from None
    except OSError as exc:
        raise _fail(path, f"cannot be read: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _fail(path, "not a regular file")
        if st.st_size > MAX_MANIFEST_BYTES:
            raise _fail(path, f"{st.st_size} bytes, above the {MAX_MANIFEST_BYTES}-byte limit of a manifest")
        with os.fdopen(os.dup(fd), "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise _fail(path, f"cannot be read: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_MANIFEST_BYTES:
        raise _fail(path, f"grew above the {MAX_MANIFEST_BYTES}-byte limit of a manifest while read")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise _fail(path, f"not valid JSON: {exc}") from None
    except RecursionError:  # json nests recursively: "[[[[..." deeper than the stack
        raise _fail(path, "not valid JSON: nested too deeply") from None
    return validate_manifest(data, path)
