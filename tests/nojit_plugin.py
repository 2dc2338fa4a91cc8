"""pytest plugin of the NUMBA_DISABLE_JIT run (``test_kernels_nojit.py``): Numba kernels as plain Python.

``NUMBA_DISABLE_JIT=1`` makes ``@njit`` return the Python function itself, so
coverage sees the kernels' lines and branches and numpy's bounds checks turn a
silent out-of-bounds access into an ``IndexError``. Three things differ from
nopython mode, and this plugin (loaded with ``-p nojit_plugin`` before anything
imports atf2) bridges them without touching the kernels:

* record fields: nopython code reads ``events[i].thread_id``; a numpy
  structured array's element (``np.void``) has no attributes. Each kernel is
  wrapped so that structured array arguments arrive as views whose elements
  (``_Record``) read and write their fields as attributes, through to the array.
* intrinsics (raw loads, atomics, PCLMULQDQ, the cycle counter) and the libc
  ``clock_gettime`` external function cannot be called from Python: every
  atf2 module global bound to one is replaced by its twin in ``nojit_twins``.
  The ``@cfunc`` profile hooks (kernels/hook.py, kernels/detail_hook.py)
  cannot run at all without the JIT; they are tested through their effects
  (the recorded sessions) in the compiled run.
* uint64 arithmetic wraps silently in compiled code; numpy warns on scalar
  overflow ("overflow encountered in scalar multiply", the FNV-1a and hash
  kernels rely on it), so that warning alone is ignored in this run.
"""

from __future__ import annotations

import functools
import importlib
import os
import pkgutil

import numba
import numpy as np

import nojit_twins as twins

if not numba.config.DISABLE_JIT:
    raise RuntimeError("nojit_plugin is for runs with NUMBA_DISABLE_JIT=1")


class _Record(np.record):
    """A structured element whose fields come before numpy's own attributes
    (``np.record`` would answer ``.flags`` with the scalar's array flags)."""

    __slots__ = ()

    def __getattribute__(self, name):
        fields = np.void.__getattribute__(self, "dtype").fields
        if fields is not None and name in fields:
            return self.getfield(*fields[name][:2])
        return super().__getattribute__(name)


def _as_records(a):
    if isinstance(a, np.ndarray) and a.dtype.names is not None and a.dtype.type is not _Record:
        return a.view(np.dtype((_Record, a.dtype)))
    return a


def _record_views(func):
    @functools.wraps(func)
    def call(*args, **kwargs):
        return func(*map(_as_records, args), **kwargs)

    call.py_func = func
    return call


_numba_njit = numba.njit


def _njit(*args, **kwargs):
    """``numba.njit`` without the JIT: the function, taking structured arrays as recarrays."""
    if len(args) == 1 and callable(args[0]) and not kwargs:
        return _record_views(args[0])
    return _record_views


numba.njit = _njit
# processes the tests start run compiled, as usual (numba read the variable at import)
os.environ.pop("NUMBA_DISABLE_JIT", None)

_SKIP_MODULES = {"atf2.__main__"}  # runs the CLI when imported


def _import_if_possible(name: str):
    """The module, or None when it cannot be imported without the JIT: the
    @cfunc hooks (kernels/hook.py, kernels/detail_hook.py) and the modules
    importing them compile at import, and a cfunc cannot call plain Python."""
    try:
        return importlib.import_module(name)
    except numba.core.errors.NumbaError:
        return None


def _twin_table() -> dict[int, object]:
    from atf2 import clock
    from atf2.kernels import crc, gather, merge, ring

    pairs = [
        (crc._clmul, twins.clmul),
        (crc._load, twins.load_u64),
        (crc._load8, twins.load_u8),
        (merge._load_u64, twins.load_u64),
        (merge._load_u32, twins.load_u32),
        (gather._prefetch_row, twins.prefetch_row),
        (ring.u64_pointer, twins.u64_pointer),
        (ring.atomic_load, twins.atomic_load),
        (ring.atomic_store, twins.atomic_store),
        (ring.atomic_cas, twins.atomic_cas),
        (ring._fold_blocks, functools.partial(twins.fold_blocks, k1=crc._K1, k2=crc._K2)),
        (clock._read_cycle_counter, twins.read_cycle_counter),
        (clock._clock_gettime, twins.clock_gettime),
    ]
    return {id(intrinsic): twin for intrinsic, twin in pairs}


def _install_twins() -> None:
    import atf2

    names = [info.name for info in pkgutil.walk_packages(atf2.__path__, "atf2.")]
    modules = [atf2, *(_import_if_possible(n) for n in names if n not in _SKIP_MODULES and not n.startswith("atf2.bench"))]
    table = _twin_table()
    for module in filter(None, modules):
        for name, value in list(vars(module).items()):
            twin = table.get(id(value))
            if twin is not None:
                setattr(module, name, twin)


_install_twins()


def pytest_configure(config):
    config.addinivalue_line("filterwarnings", "ignore:overflow encountered in scalar:RuntimeWarning")
