"""Was a frame left by an exception? For CPython 3.12, whose profile shim says ``return None``.

A C profile function learns that a frame is unwound by an exception from a
``PyTrace_RETURN`` with a NULL argument (3.11; 3.13+). CPython 3.12's legacy
profiling shim (``sys_profile_unwind`` in Python/legacy_tracing.c, fixed for
3.13 by gh-110892) passes ``None`` instead, the same as ``return None``.
On 3.12 the capture hooks ask ``left_by_exception`` about every RETURN whose
argument is ``None``; elsewhere it is the constant False, so their code is
unchanged.

How it tells, with the public C API (3.11+), from the frame's last
instruction (``PyFrame_GetLasti``, read in the code's un-instrumented bytes,
``PyCode_GetCode``: cached by the code object after its first call):

* ``RETURN_VALUE`` / ``RETURN_CONST``: a return (nothing else runs there
  that can raise);
* ``YIELD_VALUE``: a suspension, or an exception thrown into the generator
  at that yield (``gen.throw()``; the generator's implicit StopIteration
  handler re-raises with the original ``lasti``). The generator object
  (``PyFrame_GetGenerator``) tells: its frame state is SUSPENDED at a yield
  and EXECUTING while unwinding. That one byte's offset and value are not
  public; ``atf2.exception_exits`` finds and verifies them at run time and
  passes them in the thread's hook flags (no offset, no flag: such exits
  stay RETURN);
* anything else (a raise, a call that raised, a RERAISE): an exception.

Known miss: an exception raised by another tool's ``sys.monitoring``
callback at a return or yield instruction is recorded as RETURN.
"""

from __future__ import annotations

import dis
import sys

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core.types import ExternalFunction
from numba.extending import intrinsic

#: CTRL_HOOK_FLAGS bit: this interpreter reports exception exits as ``return None`` (3.12)
FLAG_UNWIND_AS_NONE = 4
#: CTRL_HOOK_FLAGS bits 8..15: the generator frame-state byte while it executes (unwinds)
FLAGS_GEN_EXECUTING_SHIFT = 8
#: CTRL_HOOK_FLAGS bits 16..31: offset of that byte in a generator object (0: unknown)
FLAGS_GEN_STATE_OFFSET_SHIFT = 16

#: Only CPython 3.12 needs this (3.11 and 3.13+ pass NULL).
NEEDED = sys.version_info[:2] == (3, 12)

_BYTE = np.uint64(0xFF)
_HALF = np.uint64(0xFFFF)
_ZERO = np.uint64(0)
_FLAG = np.uint64(FLAG_UNWIND_AS_NONE)
_EXEC_SHIFT = np.uint64(FLAGS_GEN_EXECUTING_SHIFT)
_OFFSET_SHIFT = np.uint64(FLAGS_GEN_STATE_OFFSET_SHIFT)
# opcodes of this interpreter (a numba cache is per Python version, so are these)
_RETURN_VALUE = np.uint64(dis.opmap.get("RETURN_VALUE", 256))
_RETURN_CONST = np.uint64(dis.opmap.get("RETURN_CONST", 256))
_YIELD_VALUE = np.uint64(dis.opmap.get("YIELD_VALUE", 256))


@intrinsic
def _none_address(typingctx):
    """The address of ``None`` (``_Py_NoneStruct``, resolved when the code is linked)."""
    sig = types.uint64()

    def codegen(context, builder, signature, args):
        module = builder.module
        gv = module.globals.get("_Py_NoneStruct")
        if gv is None:
            gv = ir.GlobalVariable(module, ir.IntType(8), "_Py_NoneStruct")
            gv.linkage = "external"
        return builder.ptrtoint(gv, ir.IntType(64))

    return sig, codegen


@intrinsic
def pointer_as_int(typingctx, ptr):
    """A pointer as an integer (the capture hooks use it too)."""
    sig = types.uint64(types.voidptr)

    def codegen(context, builder, signature, args):
        return builder.ptrtoint(args[0], ir.IntType(64))

    return sig, codegen


@intrinsic
def _byte_at(typingctx, ptr, offset):
    """The byte at ``ptr + offset``, as uint64."""
    sig = types.uint64(types.voidptr, types.intp)

    def codegen(context, builder, signature, args):
        return builder.zext(builder.load(builder.gep(args[0], [args[1]])), ir.IntType(64))

    return sig, codegen


if NEEDED:
    _PyFrame_GetLasti = ExternalFunction("PyFrame_GetLasti", types.int32(types.voidptr))
    _PyFrame_GetGenerator = ExternalFunction("PyFrame_GetGenerator", types.voidptr(types.voidptr))
    _PyCode_GetCode = ExternalFunction("PyCode_GetCode", types.voidptr(types.voidptr))
    _PyBytes_Size = ExternalFunction("PyBytes_Size", types.int64(types.voidptr))
    _PyBytes_AsString = ExternalFunction("PyBytes_AsString", types.voidptr(types.voidptr))
    _Py_DecRef = ExternalFunction("Py_DecRef", types.void(types.voidptr))
    _PyErr_Clear = ExternalFunction("PyErr_Clear", types.void())

    # inlined, not called: a Numba call returns a status that the hook would
    # pass on, and Numba's C wrapper would then check it after every event
    # (tests/test_hook_fast_path.py); nothing in here can fail
    @njit(inline="always", nogil=True)
    def _unwinding(frame, code, flags):
        """The slow part of ``left_by_exception`` (one RETURN-with-None of a 3.12 frame)."""
        lasti = np.int64(_PyFrame_GetLasti(frame))
        if lasti < 0:  # no instruction run yet: thrown into a just-created generator
            return True
        raw = _PyCode_GetCode(code)
        if pointer_as_int(raw) == _ZERO:
            _PyErr_Clear()
            return False
        op = _BYTE
        if lasti < _PyBytes_Size(raw):
            op = _byte_at(_PyBytes_AsString(raw), np.intp(lasti))
        _Py_DecRef(raw)  # the code object keeps its cached copy
        if op == _RETURN_VALUE or op == _RETURN_CONST:
            return False
        if op != _YIELD_VALUE:
            return True
        offset = np.intp((flags >> _OFFSET_SHIFT) & _HALF)
        if offset == 0:
            return False
        gen = _PyFrame_GetGenerator(frame)
        if pointer_as_int(gen) == _ZERO:
            return False
        state = _byte_at(gen, offset)
        _Py_DecRef(gen)
        return state == ((flags >> _EXEC_SHIFT) & _BYTE)

    @njit(inline="always", nogil=True)
    def left_by_exception(frame, code, arg, flags):
        """True when this PyTrace_RETURN (``arg`` not NULL) is really a frame unwound by an exception."""
        if (flags & _FLAG) == _ZERO or pointer_as_int(arg) != _none_address():
            return False
        return _unwinding(frame, code, flags)

else:

    @njit(inline="always", nogil=True)
    def left_by_exception(frame, code, arg, flags):
        """CPython passes NULL for exception exits here: a non-NULL ``arg`` is a return."""
        return False
