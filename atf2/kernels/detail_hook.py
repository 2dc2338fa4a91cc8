"""The detail variant of the capture hook: index record plus a Python-built detail.

``capture_hook_detail`` is installed instead of ``atf2.kernels.hook.capture_hook``
when a session captures Python details (``detail="always"`` / ``"flight"``),
so the index-only hook keeps its hot path untouched. Before recording a
Python CALL or RETURN (the index part is the same inlined ``capture``), it
calls the thread's detail callable ``(frame, kind, value)`` through
``PyObject_Vectorcall`` with arguments laid out in the thread's detail call
block (slots ``DETAIL_CALL_*`` in ``atf2.layout``; its address is
``CTRL_HOOK_DETAIL``). The callable returns the payload bytes (or None to
record no detail); the hook copies them into the detail arena with
``detail_ring_push`` at the index position the record is about to take, as
``emit_one_detail`` does. CPython suspends profiling while a profile function
runs, so nothing the callable does is traced; an exception it raises is
cleared and the event is recorded without detail.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core.types import ExternalFunction
from numba.extending import intrinsic

from ..layout import (
    CTRL_DETAIL_POOL_PTR,
    CTRL_DETAIL_RING_BYTES,
    CTRL_DETAIL_RING_COUNT,
    CTRL_ENABLED,
    CTRL_HOOK_DETAIL,
    CTRL_INDEX_WRITE_POS,
    CTRL_SLOTS,
    DETAIL_CALL_CALLABLE,
    DETAIL_CALL_FRAME,
    DETAIL_CALL_KIND,
    DETAIL_CALL_KIND_OBJS,
    DETAIL_CALL_NONE,
    DETAIL_CALL_SLOTS,
    DETAIL_CALL_VALUE,
    DETAIL_FUNCTION_CALL,
    DETAIL_FUNCTION_RETURN,
    DETAIL_PAYLOAD_VERSION,
)
from .hook import (
    PY_TRACE_CALL,
    PY_TRACE_RETURN,
    _OBJECT_HEAD,
    _Py_DecRef,
    _PyErr_Clear,
    _SIGNATURE,
    _address,
    _pointer,
    _u64_pointer,
    _word_at,
    capture,
)
from .ring import detail_ring_push

_PyObject_Vectorcall = ExternalFunction(
    "PyObject_Vectorcall", types.voidptr(types.voidptr, types.voidptr, types.uint64, types.voidptr)
)
_PyBytes_Size = ExternalFunction("PyBytes_Size", types.int64(types.voidptr))
_PyBytes_AsString = ExternalFunction("PyBytes_AsString", types.voidptr(types.voidptr))


@intrinsic
def _u8_pointer(typingctx, addr):
    """An integer as a uint8 pointer (for ``numba.carray``)."""
    sig = types.CPointer(types.uint8)(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

    return sig, codegen


_ZERO = np.uint64(0)
_THREE = np.uint64(3)
_EIGHT = np.uint64(8)


@njit(inline="always", nogil=True)
def _capture_detail(ctrl, block_addr, frame, what, arg):
    """Ask the thread's callable for this event's payload and push it into the detail arena."""
    block = carray(_u64_pointer(block_addr), DETAIL_CALL_SLOTS)
    none = block[DETAIL_CALL_NONE]
    if what == PY_TRACE_CALL:
        kind = 0
        value = none
    elif _address(arg) == _ZERO:
        kind = 2  # EXCEPTION: CPython passes no value (the exception is stashed away meanwhile)
        value = none
    else:
        kind = 1
        value = _address(arg)
    block[DETAIL_CALL_FRAME] = _address(frame)
    block[DETAIL_CALL_KIND] = block[DETAIL_CALL_KIND_OBJS + kind]
    block[DETAIL_CALL_VALUE] = value
    result = _PyObject_Vectorcall(_pointer(block[DETAIL_CALL_CALLABLE]), _pointer(block_addr), _THREE, _pointer(_ZERO))
    if _address(result) == _ZERO:
        _PyErr_Clear()  # never leave an exception behind: the program must not see it
        return
    if _address(result) != none:
        n = _PyBytes_Size(result)
        pool = ctrl[CTRL_DETAIL_POOL_PTR]
        if n < 0:
            _PyErr_Clear()
        elif pool != _ZERO and ctrl[CTRL_DETAIL_RING_COUNT] != _ZERO:
            total = ctrl[CTRL_DETAIL_RING_BYTES] * ctrl[CTRL_DETAIL_RING_COUNT]
            dwords = carray(_u64_pointer(pool), np.intp(total // _EIGHT))
            dbytes = carray(_u8_pointer(pool), np.intp(total))
            payload = carray(_u8_pointer(_address(_PyBytes_AsString(result))), np.intp(n))
            event_type = DETAIL_FUNCTION_CALL if kind == 0 else DETAIL_FUNCTION_RETURN
            detail_ring_push(ctrl, dwords, dbytes, ctrl[CTRL_INDEX_WRITE_POS], event_type,
                             DETAIL_PAYLOAD_VERSION, payload, 0, n)
    _Py_DecRef(result)


@cfunc(_SIGNATURE, nopython=True, cache=True)
def capture_hook_detail(obj, frame, what, arg):
    """Py_tracefunc; ``obj`` is the thread's control block array (as for capture_hook)."""
    ctrl_addr = _word_at(obj, _OBJECT_HEAD)
    ctrl = carray(_u64_pointer(ctrl_addr), CTRL_SLOTS)
    if ctrl[CTRL_ENABLED] != _ZERO and (what == PY_TRACE_CALL or what == PY_TRACE_RETURN):
        block = ctrl[CTRL_HOOK_DETAIL]
        if block != _ZERO:
            _capture_detail(ctrl, block, frame, what, arg)
    return capture(ctrl_addr, frame, what, arg)
