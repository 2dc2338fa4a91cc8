"""``reader[i]`` at C speed: one index record -> an ``IndexEvent``, in one native call.

In pure Python, ``reader[i]`` costs a ``struct.unpack_from`` (a tuple of six
ints) and then ``tuple.__new__(IndexEvent, ...)``, which builds a second tuple
of the named-tuple class: on this project's machines the wrap alone cost as
much as the unpack. This module compiles, with Numba, a CPython "fast call"
function (``METH_FASTCALL``) that reads the record's words straight from the
mapped file, allocates the ``IndexEvent`` with ``PyType_GenericAlloc`` (what
``tuple.__new__`` itself uses for a subclass) and fills its six items: one call
from Python, one object allocated, no intermediate tuple.

``read_index_event(addr, count, i)`` is bound to the ``IndexEvent`` class
(its ``self``). ``addr`` is the address of the first record of a buffer of
``count`` records (a live mapping: the caller keeps the buffer alive and passes
``count = 0`` once it is closed), ``i`` a Python int, negatives counting from
the end. It returns the event, or the ``IndexEvent`` class itself when it does
not handle ``i`` (not an int, out of range): the caller then takes its general
path, which raises the right error. It trusts ``addr`` and ``count`` as a
``ctypes`` call would: it is private to ``IndexReader``.

The function is built only where it is known to be right: a JIT (not
``NUMBA_DISABLE_JIT``), a little-endian host (the records are read as
little-endian words), and a self-test at import comparing it with
``struct.unpack_from`` on known records (values, type, hash, reference
counts). Otherwise ``read_index_event`` is ``None`` and the reader keeps its
pure-Python path.
"""

from __future__ import annotations

import ctypes
import struct
import sys
from typing import Any

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, types
from numba.core.types import ExternalFunction
from numba.extending import intrinsic

from ..layout import INDEX_EVENT_DTYPE, field_names, field_offset

#: CPython's METH_FASTCALL flag (Include/methodobject.h; stable ABI since 3.10)
METH_FASTCALL = 0x0080
_WORD = 8
_WORDS_PER_EVENT = INDEX_EVENT_DTYPE.itemsize // _WORD
_FIELD_COUNT = len(field_names(INDEX_EVENT_DTYPE))


def _field_words() -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """For each field, in order: the 8-byte word holding it, its bit shift and its mask.

    Derived from the layout module's dtype, so this module spells no offset.
    """
    words, shifts, masks = [], [], []
    for name in field_names(INDEX_EVENT_DTYPE):
        dt, offset = INDEX_EVENT_DTYPE[name], field_offset(INDEX_EVENT_DTYPE, name)
        if dt.kind != "u" or offset // _WORD != (offset + dt.itemsize - 1) // _WORD:
            raise ImportError(f"atf2: index field {name} is not an unsigned integer inside one 8-byte word")
        words.append(offset // _WORD)
        shifts.append((offset % _WORD) * 8)
        masks.append((1 << (dt.itemsize * 8)) - 1)
    return tuple(words), tuple(shifts), tuple(masks)


_FIELD_WORD, _FIELD_SHIFT, _FIELD_MASK = _field_words()


class _MethodDef(ctypes.Structure):
    """CPython's ``PyMethodDef`` (stable ABI)."""

    _fields_ = (
        ("ml_name", ctypes.c_char_p),
        ("ml_meth", ctypes.c_void_p),
        ("ml_flags", ctypes.c_int),
        ("ml_doc", ctypes.c_char_p),
    )


# --- CPython C API, resolved by the JIT linker in this process (cache-friendly) ---
_voidptr = types.voidptr
_PyLong_AsSsize_t = ExternalFunction("PyLong_AsSsize_t", types.intp(_voidptr))
_PyLong_AsVoidPtr = ExternalFunction("PyLong_AsVoidPtr", _voidptr(_voidptr))
_PyLong_FromUnsignedLongLong = ExternalFunction("PyLong_FromUnsignedLongLong", _voidptr(types.uint64))
_PyType_GenericAlloc = ExternalFunction("PyType_GenericAlloc", _voidptr(_voidptr, types.intp))
_PyTuple_SetItem = ExternalFunction("PyTuple_SetItem", types.int32(_voidptr, types.intp, _voidptr))
_PyErr_Occurred = ExternalFunction("PyErr_Occurred", _voidptr())
_PyErr_Clear = ExternalFunction("PyErr_Clear", types.void())
_Py_IncRef = ExternalFunction("Py_IncRef", types.void(_voidptr))
_Py_DecRef = ExternalFunction("Py_DecRef", types.void(_voidptr))


@intrinsic
def _is_null(typingctx, ptr):
    def codegen(context, builder, signature, args):
        return builder.icmp_unsigned("==", args[0], ir.Constant(args[0].type, None))

    return types.boolean(_voidptr), codegen


@intrinsic
def _null(typingctx):
    def codegen(context, builder, signature, args):
        return ir.Constant(ir.IntType(8).as_pointer(), None)

    return _voidptr(), codegen


@intrinsic
def _u64_pointer(typingctx, ptr):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64).as_pointer())

    return types.CPointer(types.uint64)(_voidptr), codegen


# numpy arrays: Numba freezes them into the code as constants
_FIELD_WORD_ARRAY = np.array(_FIELD_WORD, np.int64)
_FIELD_SHIFT_ARRAY = np.array(_FIELD_SHIFT, np.uint64)
_FIELD_MASK_ARRAY = np.array(_FIELD_MASK, np.uint64)

#: METH_FASTCALL: PyObject *(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
_FASTCALL_SIGNATURE = _voidptr(_voidptr, types.CPointer(_voidptr), types.intp)


def _read_index_event(event_class, args, nargs):  # pragma: no cover - native code, tested through IndexReader
    if nargs != 3:
        return _null()  # SystemError "error return without exception set": a private function misused
    count = _PyLong_AsSsize_t(args[1])
    i = _PyLong_AsSsize_t(args[2])
    if (count == -1 or i == -1) and not _is_null(_PyErr_Occurred()):
        # not an int, or too large: the caller's general path says so
        _PyErr_Clear()
        _Py_IncRef(event_class)
        return event_class
    if i < 0:
        i += count
    if i < 0 or i >= count:
        _Py_IncRef(event_class)
        return event_class
    words = carray(_u64_pointer(_PyLong_AsVoidPtr(args[0])), (count * _WORDS_PER_EVENT,))
    event = _PyType_GenericAlloc(event_class, _FIELD_COUNT)
    if _is_null(event):
        return event  # MemoryError is set
    base = i * _WORDS_PER_EVENT
    for k in range(_FIELD_COUNT):
        item = _PyLong_FromUnsignedLongLong((words[base + _FIELD_WORD_ARRAY[k]] >> _FIELD_SHIFT_ARRAY[k]) & _FIELD_MASK_ARRAY[k])
        if _is_null(item):
            _Py_DecRef(event)
            return item  # MemoryError is set
        _PyTuple_SetItem(event, k, item)  # steals the reference; cannot fail on a new tuple
    return event


def _compile() -> int:
    """The native function's address (compiled, or loaded from Numba's cache)."""
    return int(cfunc(_FASTCALL_SIGNATURE, cache=True)(_read_index_event).address)


def _items_owned_by(event: Any) -> bool:
    """Each (uncached) int of ``event`` is referenced by ``event`` alone (and the call's argument)."""
    return all(sys.getrefcount(event[k]) == 2 for k in range(len(event)) if event[k] > 256)


def _self_test(read: Any, event_class: type) -> bool:
    """Compare the native reader with ``struct.unpack_from`` on records that exercise every bit."""
    records = np.zeros(5, dtype=INDEX_EVENT_DTYPE)
    for k, name in enumerate(field_names(INDEX_EVENT_DTYPE)):
        top = np.iinfo(records[name].dtype).max
        records[name] = [0, 1, top, top - k, (top >> 1) + k]
    unpack = struct.Struct("<" + "".join("Q" if records[name].dtype.itemsize == 8 else "I" for name in field_names(records.dtype)))
    if unpack.size != records.itemsize:
        return False
    raw = records.tobytes()
    addr, n = records.ctypes.data, len(records)
    class_refs = sys.getrefcount(event_class)
    for i in range(-n, n):
        got: Any = read(addr, n, i)
        want: Any = tuple.__new__(event_class, unpack.unpack_from(raw, (i % n) * records.itemsize))
        if type(got) is not event_class or got != want or hash(got) != hash(tuple(want)) or sys.getrefcount(got) != 2:
            return False
        if not _items_owned_by(got):
            return False
        del got, want  # (instances of a heap type hold a reference to it)
    not_handled = (n, -n - 1, 1 << 70, "0", 1.0, None)
    if any(read(addr, n, key) is not event_class for key in not_handled) or read(addr, 0, 0) is not event_class:
        return False
    return sys.getrefcount(event_class) == class_refs


def build_index_event_reader(event_class: type) -> Any:
    """``read_index_event`` bound to ``event_class`` (a six-field named tuple), or None where unavailable."""
    from numba.core import config

    if config.DISABLE_JIT or sys.byteorder != "little" or event_class.__basicsize__ != tuple.__basicsize__:
        return None
    try:
        method = _MethodDef(b"read_index_event", _compile(), METH_FASTCALL, None)
        new_function = ctypes.pythonapi.PyCFunction_NewEx
        new_function.restype = ctypes.py_object
        new_function.argtypes = (ctypes.c_void_p, ctypes.py_object, ctypes.py_object)
        read = new_function(ctypes.addressof(method), event_class, None)
    except Exception:  # noqa: BLE001  # pragma: no cover - any doubt: the pure-Python path
        return None
    _KEEP_ALIVE.append(method)  # CPython keeps a pointer to the PyMethodDef for the function's life
    return read if _self_test(read, event_class) else None


_KEEP_ALIVE: list = []
