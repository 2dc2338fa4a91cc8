"""The session's symbol table: function ids for names and code objects.

``function_id = (module_id << 32) | symbol_index``, as the spec says. Modules
get ids in order of first appearance, by module name; symbols get indexes in
order of registration within their module. Registering the same (module,
qualname, file, line) twice returns the same id. The table is shared by every
thread of a session (the tracer registers code objects from its slow path,
``emit`` registers names), so it takes a lock; lookups by key first try the
dict without it (reads of a dict are atomic under the GIL).
"""

from __future__ import annotations

import threading
import types
from dataclasses import dataclass

from .errors import AtfV2Error
from .payload import code_params as _code_params  # issue 5: parameter names

_MAX_INDEX = 0xFFFFFFFF


@dataclass(frozen=True)
class Symbol:
    function_id: int
    module_id: int
    name: str
    qualname: str
    file: str
    line: int
    params: tuple = ()  # parameter names (issue 5: names of a CALL detail payload's values)


class SymbolTable:
    """Thread-safe, append-only map between functions and their ids."""

    def __init__(self) -> None:
        # Re-entrant: under the lock ``register`` calls ``Symbol(...)``, Python
        # code; when the thread is traced with detail capture, that call runs
        # the capture hook, which registers the code object here again.
        self._lock = threading.RLock()
        self._module_ids: dict[str, int] = {}
        self._module_paths: dict[int, str] = {}
        self._module_counts: dict[int, int] = {}
        self._by_key: dict[tuple, int] = {}
        self._by_id: dict[int, Symbol] = {}

    def register(self, name: str, qualname: str | None = None, module: str = "__main__", file: str = "", line: int = 0, params: tuple | None = None) -> int:
        """The id of this function, registering it (and its module) on first sight."""
        if not isinstance(name, str) or not name:
            raise AtfV2Error(f"symbol name must be a non-empty string, not {name!r}")
        qualname = name if qualname is None else qualname
        key = (module, qualname, file, int(line))
        fid = self._by_key.get(key)
        if fid is not None:
            return fid
        with self._lock:
            fid = self._by_key.get(key)
            if fid is not None:
                return fid
            module_id = self._module_ids.get(module)
            if module_id is None:
                module_id = len(self._module_ids)
                if module_id > _MAX_INDEX:
                    raise AtfV2Error("too many modules for 32-bit module ids")
                self._module_ids[module] = module_id
                self._module_paths[module_id] = file
                self._module_counts[module_id] = 0
            elif not self._module_paths[module_id] and file:
                self._module_paths[module_id] = file
            index = self._module_counts[module_id]
            if index > _MAX_INDEX:
                raise AtfV2Error(f"too many symbols in module {module!r} for 32-bit indexes")
            self._module_counts[module_id] = index + 1
            fid = (module_id << 32) | index
            self._by_id[fid] = Symbol(fid, module_id, name, qualname, file, int(line), tuple(params or ()))
            self._by_key[key] = fid
            return fid

    def register_code(self, code: types.CodeType, module: str | None = None) -> int:
        """Register a Python code object (name, qualname, file, first line)."""
        return self.register(
            code.co_name,
            getattr(code, "co_qualname", code.co_name),
            module if module is not None else _module_of_file(code.co_filename),
            code.co_filename,
            code.co_firstlineno,
            _code_params(code),
        )

    def lookup(self, function_id: int) -> Symbol | None:
        return self._by_id.get(int(function_id))

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, function_id: int) -> bool:
        return int(function_id) in self._by_id

    def to_manifest(self) -> tuple[list[dict], list[dict]]:
        """(modules, symbols) in the manifest shapes."""
        with self._lock:
            modules = [
                {"id": mid, "name": name, "path": self._module_paths[mid]} for name, mid in self._module_ids.items()
            ]
            symbols = [
                {
                    "function_id": s.function_id,
                    "module_id": s.module_id,
                    "name": s.name,
                    "qualname": s.qualname,
                    "file": s.file,
                    "line": s.line,
                    "params": list(s.params),
                }
                for s in self._by_id.values()
            ]
        return modules, symbols


def _module_of_file(filename: str) -> str:
    """A module name for a code object's file, without importing anything."""
    import os
    import sys

    path = os.path.abspath(filename) if filename and not filename.startswith("<") else filename
    best = ""
    for root in sys.path:
        root = os.path.abspath(root or ".")
        if path.startswith(root + os.sep) and len(root) > len(best):
            best = root
    if not best:
        return os.path.splitext(os.path.basename(filename))[0] or filename or "<unknown>"
    rel = os.path.splitext(path[len(best) + 1 :])[0]
    parts = rel.split(os.sep)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)
