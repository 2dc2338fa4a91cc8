"""The detail variant of the capture hook: index record plus a detail payload built in nopython code.

``capture_hook_detail`` is installed instead of ``atf2.kernels.hook.capture_hook``
when a session captures Python details (``detail="always"`` / ``"flight"``),
so the index-only hook keeps its hot path untouched. Before recording a
Python CALL, RETURN or EXCEPTION (the index part is the same inlined
``capture``), it builds the event's payload (``atf2/PAYLOAD.md``) in the
thread's scratch buffer and pushes it into the detail arena with
``detail_ring_push`` at the index position the record is about to take.

Why in nopython code: a Python callback per event cost ~4.7 us (frame
locals dict, struct packing, bytes objects); the common values need none of
it. What runs here, per event, through CPython's C API:

* function id: the tracer's code table (the same probe as ``capture``); a
  miss asks the tracer's registrar, as ``capture`` would.
* recorded parameters: a second table (code address -> kept count, declared
  count, truncation flag), filled by ``DetailCapture.code_info`` on the
  first event of a code object.
* caller stack: ``PyFrame_GetBack`` / ``PyFrame_GetCode`` up to K + 1 callers.
* values (CALL: the parameters read from the frame; RETURN: ``arg``):
  exact ``int`` (``PyLong_AsLongLongAndOverflow``), ``float``
  (``PyFloat_AsDouble``), ``bool``, ``None``, exact ``str``
  (``PyUnicode_AsUTF8AndSize``, of a ``PyUnicode_Substring`` when longer
  than the cap) and ``bytes`` are encoded here; every other object (and an
  int beyond 64 bits, a str with lone surrogates) goes to the session's
  ``PayloadEncoder.value`` through ``PyObject_Vectorcall`` (the bounded,
  exception-safe repr path).
* parameters: CPython 3.11 to 3.13 keep them in the first slots of the
  interpreter frame's ``localsplus`` array. No public API of 3.11 reads a
  fast local without building the whole ``f_locals`` dict (``PyFrame_GetVar``
  is 3.12+), so the hook reads those slots at an offset that
  ``atf2.detail`` finds and verifies at import on a probe frame
  (``frame_offsets``), for 3.11 to 3.13 only; elsewhere, or if the probe
  disagrees, ``DETAIL_CALL_LOCALS_OFFSET`` is 0 and the CALL values come
  from ``DetailCapture.call_values`` (Python, ``frame.f_locals``). A slot
  holding a cell (a parameter captured by a closure) is read through
  ``PyCell_Get``.
* EXCEPTION: CPython 3.11 hides the exception from profile functions
  (``call_trace_protected`` fetches it first). ``exception_trace_hook``, a
  C-level trace function installed next to the profile hook in detail modes,
  sees ``PyTrace_EXCEPTION`` (``arg`` = (type, value, traceback)) in every
  frame the exception passes and keeps type and value (strong references)
  with the frame in the detail block; the frame's RETURN-with-NULL then hands
  them to ``PayloadEncoder.exception_value``. A frame's first LINE event
  sets its ``f_trace_lines`` to False (line events were ~0.7 us per call of
  W2); other events return at once; it removes itself once the thread's
  capture is off.
* user code (a repr, a fallback callback) runs between ``_user_code_begins``
  and ``_user_code_ends``: the session's repr watchdog (``atf2.detail``)
  raises ``ReprTimeout`` into a thread stuck there (``interrupt_overdue``).

CPython suspends profiling and tracing while a profile function runs, so
nothing called from here is traced; an exception raised by a callback is
cleared and the event keeps its index record (without detail when nothing
sensible can be written).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core.types import ExternalFunction
from numba.extending import intrinsic

from ..clock import ticks
from ..layout import (
    CTRL_DETAIL_DROPS,
    CTRL_DETAIL_POOL_PTR,
    CTRL_DETAIL_RECORDS,
    CTRL_DETAIL_RING_BYTES,
    CTRL_DETAIL_RING_COUNT,
    CTRL_ENABLED,
    CTRL_HOOK_DEPTH,
    CTRL_HOOK_DETAIL,
    CTRL_HOOK_FLAGS,
    CTRL_INDEX_WRITE_POS,
    CTRL_SLOTS,
    DETAIL_CALL_ABSORB_FN,
    DETAIL_CALL_ARG0,
    DETAIL_CALL_ARGS_FN,
    DETAIL_CALL_CLOSED,
    DETAIL_CALL_EXC_FN,
    DETAIL_CALL_EXC_FRAME,
    DETAIL_CALL_EXC_TYPE,
    DETAIL_CALL_EXC_VALUE,
    DETAIL_CALL_FALSE,
    DETAIL_CALL_FRAME_OFFSET,
    DETAIL_CALL_HEADS,
    DETAIL_CALL_INFO_FN,
    DETAIL_CALL_INFO_MASK,
    DETAIL_CALL_INFO_TABLE,
    DETAIL_CALL_LINES_NAME,
    DETAIL_CALL_LOCALS_OFFSET,
    DETAIL_CALL_NONE,
    DETAIL_CALL_OVERFLOW,
    DETAIL_CALL_REPR_CAP,
    DETAIL_CALL_SCRATCH,
    DETAIL_CALL_SCRATCH_BYTES,
    DETAIL_CALL_SLOTS,
    DETAIL_CALL_SLOW_FN,
    DETAIL_CALL_SLOW_TICKS,
    DETAIL_CALL_STACK_DEPTH,
    DETAIL_CALL_STRLEN,
    DETAIL_CALL_T_BYTES,
    DETAIL_CALL_T_CELL,
    DETAIL_CALL_T_FLOAT,
    DETAIL_CALL_T_INT,
    DETAIL_CALL_T_STR,
    DETAIL_CALL_TEXT_CAP,
    DETAIL_CALL_THREAD_IDENT,
    DETAIL_CALL_TRUE,
    DETAIL_CALL_TYPE_FN,
    DETAIL_CALL_TYPE_MASK,
    DETAIL_CALL_TYPE_OFFSET,
    DETAIL_CALL_TYPE_TABLE,
    DETAIL_CALL_USER_FIRED,
    DETAIL_CALL_USER_START,
    DETAIL_CALL_VALUE_FN,
    DETAIL_FUNCTION_CALL,
    DETAIL_FUNCTION_RETURN,
    DETAIL_INFO_KEPT_MASK,
    DETAIL_INFO_NPARAMS_SHIFT,
    DETAIL_INFO_TRUNCATED,
    DETAIL_PAYLOAD_VERSION,
    DETAIL_TYPE_HEAD_LEN_MASK,
    DETAIL_TYPE_HEAD_LEN_SHIFT,
    DETAIL_TYPE_PYTHON,
    DROP_RING_FULL,
    EVENT_CALL,
    EVENT_EXCEPTION,
    EVENT_RETURN,
    PAYLOAD_F_ARGS_TRUNCATED,
    PAYLOAD_F_STACK_TRUNCATED,
    PAYLOAD_HEADER_SIZE,
    PAYLOAD_STACK_ENTRY_SIZE,
    PAYLOAD_VAL_BYTES,
    PAYLOAD_VAL_FALSE,
    PAYLOAD_VAL_FLOAT,
    PAYLOAD_VAL_INT,
    PAYLOAD_VAL_NONE,
    PAYLOAD_VAL_STR,
    PAYLOAD_VAL_TRUE,
    PAYLOAD_VAL_UNBOUND,
)
from .codetable import MISSING, table_find
from .exception_exit import left_by_exception
from .hook import (
    _OBJECT_HEAD,
    _SIGNATURE,
    PY_TRACE_CALL,
    PY_TRACE_RETURN,
    SLOT_TABLE_MASK,
    SLOT_TABLE_PTR,
    _address,
    _pointer,
    _Py_DecRef,
    _PyErr_Clear,
    _PyErr_Occurred,
    _PyFrame_GetCode,
    _PyLong_AsUnsignedLongLong,
    _register,
    _u64_pointer,
    _word_at,
    adopt_thread,
    capture,
)
from .ring import detail_ring_push

# CPython's trace event codes of an exception and of a new line (Include/cpython/pystate.h)
PY_TRACE_EXCEPTION = 1
PY_TRACE_LINE = 2

_PyObject_Vectorcall = ExternalFunction(
    "PyObject_Vectorcall", types.voidptr(types.voidptr, types.voidptr, types.uint64, types.voidptr)
)
_PyBytes_Size = ExternalFunction("PyBytes_Size", types.int64(types.voidptr))
_PyBytes_AsString = ExternalFunction("PyBytes_AsString", types.voidptr(types.voidptr))
_PyLong_AsLongLongAndOverflow = ExternalFunction("PyLong_AsLongLongAndOverflow", types.int64(types.voidptr, types.voidptr))
_PyFloat_AsDouble = ExternalFunction("PyFloat_AsDouble", types.float64(types.voidptr))
_PyUnicode_GetLength = ExternalFunction("PyUnicode_GetLength", types.int64(types.voidptr))
_PyUnicode_Substring = ExternalFunction("PyUnicode_Substring", types.voidptr(types.voidptr, types.int64, types.int64))
_PyUnicode_AsUTF8AndSize = ExternalFunction("PyUnicode_AsUTF8AndSize", types.voidptr(types.voidptr, types.voidptr))
_PyCell_Get = ExternalFunction("PyCell_Get", types.voidptr(types.voidptr))
_PyFrame_GetBack = ExternalFunction("PyFrame_GetBack", types.voidptr(types.voidptr))
_PyTuple_GetItem = ExternalFunction("PyTuple_GetItem", types.voidptr(types.voidptr, types.int64))
_Py_IncRef = ExternalFunction("Py_IncRef", types.void(types.voidptr))
_PyObject_Repr = ExternalFunction("PyObject_Repr", types.voidptr(types.voidptr))
_PyObject_SetAttr = ExternalFunction("PyObject_SetAttr", types.int32(types.voidptr, types.voidptr, types.voidptr))
_PyThreadState_SetAsyncExc = ExternalFunction("PyThreadState_SetAsyncExc", types.int32(types.uint64, types.voidptr))
_PyEval_SetTrace = ExternalFunction("PyEval_SetTrace", types.void(types.voidptr, types.voidptr))


@intrinsic
def _u8_pointer(typingctx, addr):
    """An integer as a uint8 pointer (for ``numba.carray``)."""
    sig = types.CPointer(types.uint8)(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

    return sig, codegen


@intrinsic
def _double_bits(typingctx, x):
    """The IEEE 754 bits of a float64."""
    sig = types.uint64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


_ZERO = np.uint64(0)
_ONE = np.uint64(1)
_EIGHT = np.uint64(8)
_BYTE = np.uint64(0xFF)
_U32_MAX = np.uint64(0xFFFFFFFF)
_NPARAMS_SHIFT = np.uint64(DETAIL_INFO_NPARAMS_SHIFT)
_KEPT_MASK = np.uint64(DETAIL_INFO_KEPT_MASK)
_INFO_TRUNCATED = np.uint64(DETAIL_INFO_TRUNCATED)
_TYPE_PYTHON = np.uint64(DETAIL_TYPE_PYTHON)
_HEAD_LEN_SHIFT = np.uint64(DETAIL_TYPE_HEAD_LEN_SHIFT)
_HEAD_LEN_MASK = np.uint64(DETAIL_TYPE_HEAD_LEN_MASK)
_HEAD_OFFSET_MASK = np.uint64(0xFFFFFFFF)
#: scratch too small for a value (or a callback failed): the event gets no detail
_FAIL = np.int64(-1)


@njit(inline="always", nogil=True)
def _put_u64(buf, pos, value):
    v = np.uint64(value)
    for k in range(8):
        buf[pos + k] = np.uint8((v >> np.uint64(8 * k)) & _BYTE)


@njit(inline="always", nogil=True)
def _put_u32(buf, pos, value):
    v = np.uint64(value)
    for k in range(4):
        buf[pos + k] = np.uint8((v >> np.uint64(8 * k)) & _BYTE)


@njit(inline="always", nogil=True)
def _call1(fn, block, a0):
    """``fn(a0)`` through vectorcall; arguments laid out in the block."""
    block[DETAIL_CALL_ARG0] = a0
    return _PyObject_Vectorcall(_pointer(fn), _pointer(_address_of_slot(block, DETAIL_CALL_ARG0)), _ONE, _pointer(_ZERO))


@njit(inline="always", nogil=True)
def _user_code_begins(block):
    """What the repr watchdog looks at: user code (a repr, a fallback encoder) runs from now."""
    block[DETAIL_CALL_USER_START] = ticks() | _ONE


@njit(inline="always", nogil=True)
def _user_code_ends(block):
    block[DETAIL_CALL_USER_START] = _ZERO
    if block[DETAIL_CALL_USER_FIRED] != _ZERO:
        # The watchdog raised ReprTimeout in this thread: if the user code
        # returned before it was delivered, it is still pending and must
        # never reach the traced program. A Python call takes it (the eval
        # loop delivers it there). Not PyThreadState_SetAsyncExc(id, NULL):
        # on 3.11 that leaves the interpreter's async-exception signal set.
        block[DETAIL_CALL_USER_FIRED] = _ZERO
        result = _PyObject_Vectorcall(_pointer(block[DETAIL_CALL_ABSORB_FN]), _pointer(_ZERO), _ZERO, _pointer(_ZERO))
        if _address(result) == _ZERO:
            _PyErr_Clear()
        else:
            _Py_DecRef(result)


@njit(inline="always", nogil=True)
def _address_of_slot(block, slot):
    return np.uint64(block.ctypes.data) + np.uint64(8 * slot)


@njit(inline="always", nogil=True)
def _copy_bytes_result(result, buf, pos, cap):
    """Copy a bytes object returned by a callback into ``buf[pos:]``; new position or _FAIL. Releases ``result``."""
    if _address(result) == _ZERO:
        _PyErr_Clear()  # never leave an exception behind: the program must not see it
        return _FAIL
    n = _PyBytes_Size(result)
    if n < 0:
        _PyErr_Clear()
        _Py_DecRef(result)
        return _FAIL
    if pos + n > cap:
        _Py_DecRef(result)
        return _FAIL
    src = carray(_u8_pointer(_address(_PyBytes_AsString(result))), np.intp(n))
    for k in range(n):
        buf[pos + k] = src[k]
    _Py_DecRef(result)
    return pos + n


@njit(inline="always", nogil=True)
def _put_text(buf, pos, cap, tag, src_addr, n, original, limit):
    """tag, u32 original length, u32 kept, kept bytes (``n`` cut to ``limit`` on a UTF-8 boundary unless BYTES)."""
    if pos + 1 > cap:
        return _FAIL
    buf[pos] = np.uint8(tag)
    return _put_text_body(buf, pos + 1, cap, src_addr, n, original, limit, tag != PAYLOAD_VAL_BYTES)


@njit(inline="always", nogil=True)
def _put_text_body(buf, pos, cap, src_addr, n, original, limit, utf8):
    src = carray(_u8_pointer(src_addr), np.intp(n))
    kept = n
    if kept > limit:
        kept = limit
        if utf8:
            while kept > 0 and (src[kept] & np.uint8(0xC0)) == np.uint8(0x80):
                kept -= 1
    if pos + 8 + kept > cap:
        return _FAIL
    _put_u32(buf, pos, min(np.uint64(original), _U32_MAX))
    _put_u32(buf, pos + 4, kept)
    base = pos + 8
    for k in range(kept):
        buf[base + k] = src[k]
    return base + kept


@njit(nogil=True)
def _utf8_text(block, buf, pos, cap, text, limit):
    """The text body of the exact str ``text`` (at most ``limit`` bytes kept); new position, _FAIL, or -2: not encodable here."""
    length = _PyUnicode_GetLength(text)
    src = text
    if length > limit:  # encode only the characters that can be kept
        src = _PyUnicode_Substring(text, 0, limit)
        if _address(src) == _ZERO:
            _PyErr_Clear()
            return np.int64(-2)
    data = _PyUnicode_AsUTF8AndSize(src, _pointer(_address_of_slot(block, DETAIL_CALL_STRLEN)))
    end = np.int64(-2)
    if _address(data) != _ZERO:
        end = _put_text_body(buf, pos, cap, _address(data), np.int64(block[DETAIL_CALL_STRLEN]), length, limit, True)
    else:
        _PyErr_Clear()  # lone surrogates: the encoder's surrogatepass path
    if _address(src) != _address(text):
        _Py_DecRef(src)
    return end


@njit(nogil=True)
def _cached_info(block, mask_slot, table_slot, fn_slot, key, arg):
    """The info word cached under ``key`` in the block's table, else the Python callback's answer for ``arg``.

    The callback (which also fills the table) returns an int; its failure,
    or an int that does not fit, gives MISSING with no error left pending.
    """
    mask = block[mask_slot]
    table = carray(_u64_pointer(block[table_slot]), np.intp(2) * (np.intp(mask) + 1))
    info = table_find(table, mask, key)
    if info != MISSING:
        return info
    result = _call1(block[fn_slot], block, arg)
    if _address(result) == _ZERO:
        _PyErr_Clear()
        return MISSING
    info = _PyLong_AsUnsignedLongLong(result)
    _Py_DecRef(result)
    if info == MISSING and _address(_PyErr_Occurred()) != _ZERO:
        _PyErr_Clear()
    return info


@njit(nogil=True)
def _type_info(block, t, obj):
    return _cached_info(block, DETAIL_CALL_TYPE_MASK, DETAIL_CALL_TYPE_TABLE, DETAIL_CALL_TYPE_FN, t, obj)


@njit(nogil=True)
def _put_object(block, buf, pos, cap, obj, t):
    """OBJECT value from the type's cached head and ``repr(obj)`` (bounded), or -2: let Python encode it."""
    info = _type_info(block, t, _address(obj))
    if info == MISSING or (info & _TYPE_PYTHON) != _ZERO:
        return np.int64(-2)
    start = ticks()
    _user_code_begins(block)
    text = _PyObject_Repr(obj)
    _user_code_ends(block)
    elapsed = ticks() - start
    if _address(text) == _ZERO:
        # repr raised: clear it before calling anything (a call made with an
        # exception pending fails after the fact)
        _PyErr_Clear()
    if elapsed > block[DETAIL_CALL_SLOW_TICKS]:  # recorded once, then skipped (as PayloadEncoder does)
        result = _call1(block[DETAIL_CALL_SLOW_FN], block, t)
        if _address(result) == _ZERO:
            _PyErr_Clear()
        else:
            _Py_DecRef(result)
    if _address(text) == _ZERO:
        # PayloadEncoder.value records REPR_FAILED with the error (or, for a
        # type just found slow, REPR_SKIPPED: an interrupted repr is not run again)
        return np.int64(-2)
    if _word_at(text, np.intp(block[DETAIL_CALL_TYPE_OFFSET])) != block[DETAIL_CALL_T_STR]:
        _Py_DecRef(text)  # a str subclass: Python takes its plain value
        return np.int64(-2)
    head_len = np.int64((info >> _HEAD_LEN_SHIFT) & _HEAD_LEN_MASK)
    if pos + head_len > cap:
        _Py_DecRef(text)
        return _FAIL
    head = carray(_u8_pointer(block[DETAIL_CALL_HEADS] + (info & _HEAD_OFFSET_MASK)), np.intp(head_len))
    for k in range(head_len):
        buf[pos + k] = head[k]
    end = _utf8_text(block, buf, pos + head_len, cap, text, np.int64(block[DETAIL_CALL_REPR_CAP]))
    _Py_DecRef(text)
    return end


@njit(nogil=True)
def _put_value(block, buf, pos, cap, obj):
    """The typed value of ``obj`` at ``buf[pos:]``; the new position or _FAIL."""
    if pos + 9 > cap:
        return _FAIL
    addr = _address(obj)
    if addr == block[DETAIL_CALL_NONE]:
        buf[pos] = np.uint8(PAYLOAD_VAL_NONE)
        return pos + 1
    if addr == block[DETAIL_CALL_TRUE]:
        buf[pos] = np.uint8(PAYLOAD_VAL_TRUE)
        return pos + 1
    if addr == block[DETAIL_CALL_FALSE]:
        buf[pos] = np.uint8(PAYLOAD_VAL_FALSE)
        return pos + 1
    t = _word_at(obj, np.intp(block[DETAIL_CALL_TYPE_OFFSET]))
    if t == block[DETAIL_CALL_T_INT]:
        block[DETAIL_CALL_OVERFLOW] = _ZERO
        v = _PyLong_AsLongLongAndOverflow(obj, _pointer(_address_of_slot(block, DETAIL_CALL_OVERFLOW)))
        if (block[DETAIL_CALL_OVERFLOW] & _U32_MAX) == _ZERO:  # the int out-parameter: low half of the slot
            buf[pos] = np.uint8(PAYLOAD_VAL_INT)
            _put_u64(buf, pos + 1, v)
            return pos + 9
        if _address(_PyErr_Occurred()) != _ZERO:
            _PyErr_Clear()
    elif t == block[DETAIL_CALL_T_FLOAT]:
        buf[pos] = np.uint8(PAYLOAD_VAL_FLOAT)
        _put_u64(buf, pos + 1, _double_bits(_PyFloat_AsDouble(obj)))
        return pos + 9
    elif t == block[DETAIL_CALL_T_BYTES]:
        n = _PyBytes_Size(obj)
        return _put_text(buf, pos, cap, PAYLOAD_VAL_BYTES, _address(_PyBytes_AsString(obj)), n, n,
                         np.int64(block[DETAIL_CALL_TEXT_CAP]))
    elif t == block[DETAIL_CALL_T_STR]:
        buf[pos] = np.uint8(PAYLOAD_VAL_STR)
        end = _utf8_text(block, buf, pos + 1, cap, obj, np.int64(block[DETAIL_CALL_TEXT_CAP]))
        if end != -2:
            return end
    else:
        end = _put_object(block, buf, pos, cap, obj, t)
        if end != -2:
            return end
    _user_code_begins(block)
    result = _call1(block[DETAIL_CALL_VALUE_FN], block, addr)
    _user_code_ends(block)
    return _copy_bytes_result(result, buf, pos, cap)


@njit(nogil=True)
def _function_id(ctrl, frame):
    code = _PyFrame_GetCode(frame)
    _Py_DecRef(code)  # borrowed: the frame holds a reference
    mask = ctrl[SLOT_TABLE_MASK]
    table = carray(_u64_pointer(ctrl[SLOT_TABLE_PTR]), np.intp(2) * (np.intp(mask) + 1))
    fid = table_find(table, mask, _address(code))
    if fid == MISSING:
        fid = _register(ctrl, frame)
    return fid, _address(code)


@njit(nogil=True)
def _put_stack(ctrl, buf, k, cap, frame, below):
    """Up to ``k`` caller ids after the header; (new position, count, STACK_TRUNCATED or 0).

    ``below``: the callers that belong to the trace (the event's call_depth);
    frames under the thread's traced base (``atf2 record``'s runner below the
    program's ``<module>``) are not part of the trace and are left out.
    """
    pos = np.int64(PAYLOAD_HEADER_SIZE)
    n = 0
    flag = 0
    back = _PyFrame_GetBack(frame)
    while _address(back) != _ZERO:
        if n == below:
            _Py_DecRef(back)
            break
        if n == k or pos + PAYLOAD_STACK_ENTRY_SIZE > cap:
            flag = PAYLOAD_F_STACK_TRUNCATED
            _Py_DecRef(back)
            break
        fid, _ = _function_id(ctrl, back)
        _put_u64(buf, pos, fid)
        pos += PAYLOAD_STACK_ENTRY_SIZE
        n += 1
        older = _PyFrame_GetBack(back)
        _Py_DecRef(back)  # the younger frame keeps it alive
        back = older
    return pos, n, flag


@njit(nogil=True)
def _code_info(block, code_addr, frame):
    return _cached_info(block, DETAIL_CALL_INFO_MASK, DETAIL_CALL_INFO_TABLE, DETAIL_CALL_INFO_FN, code_addr, _address(frame))


@njit(nogil=True)
def _put_call_values(block, buf, pos, cap, frame, kept):
    offset = block[DETAIL_CALL_LOCALS_OFFSET]
    if offset == _ZERO:
        _user_code_begins(block)
        result = _call1(block[DETAIL_CALL_ARGS_FN], block, _address(frame))
        _user_code_ends(block)
        return _copy_bytes_result(result, buf, pos, cap)
    iframe = _word_at(frame, np.intp(block[DETAIL_CALL_FRAME_OFFSET]))
    for i in range(kept):
        obj = _word_at(_pointer(iframe), np.intp(offset) + np.intp(8 * i))
        if obj == _ZERO:
            if pos + 1 > cap:
                return _FAIL
            buf[pos] = np.uint8(PAYLOAD_VAL_UNBOUND)
            pos += 1
        elif _word_at(_pointer(obj), np.intp(block[DETAIL_CALL_TYPE_OFFSET])) == block[DETAIL_CALL_T_CELL]:
            content = _PyCell_Get(_pointer(obj))  # new reference, NULL when empty
            if _address(content) == _ZERO:
                if pos + 1 > cap:
                    return _FAIL
                buf[pos] = np.uint8(PAYLOAD_VAL_UNBOUND)
                pos += 1
            else:
                pos = _put_value(block, buf, pos, cap, content)
                _Py_DecRef(content)
        else:
            pos = _put_value(block, buf, pos, cap, _pointer(obj))
        if pos < 0:
            return _FAIL
    return pos


@njit(nogil=True)
def _take_exception(block, frame):
    """(type, value) the trace hook saw for ``frame`` (strong references, the caller releases), or (0, 0)."""
    t = block[DETAIL_CALL_EXC_TYPE]
    v = block[DETAIL_CALL_EXC_VALUE]
    match = block[DETAIL_CALL_EXC_FRAME] == _address(frame)
    block[DETAIL_CALL_EXC_FRAME] = _ZERO
    block[DETAIL_CALL_EXC_TYPE] = _ZERO
    block[DETAIL_CALL_EXC_VALUE] = _ZERO
    if not match:
        if t != _ZERO:
            _Py_DecRef(_pointer(t))
        if v != _ZERO:
            _Py_DecRef(_pointer(v))
        return _ZERO, _ZERO
    return t, v


@njit(nogil=True)
def _put_exception(block, buf, pos, cap, frame):
    t, v = _take_exception(block, frame)
    none = block[DETAIL_CALL_NONE]
    block[DETAIL_CALL_ARG0] = t if t != _ZERO else none
    block[DETAIL_CALL_ARG0 + 1] = v if v != _ZERO else none
    _user_code_begins(block)  # str(exception)
    result = _PyObject_Vectorcall(_pointer(block[DETAIL_CALL_EXC_FN]), _pointer(_address_of_slot(block, DETAIL_CALL_ARG0)),
                                  np.uint64(2), _pointer(_ZERO))
    _user_code_ends(block)
    if t != _ZERO:
        _Py_DecRef(_pointer(t))
    if v != _ZERO:
        _Py_DecRef(_pointer(v))
    return _copy_bytes_result(result, buf, pos, cap)


@njit(nogil=True)
def capture_detail(ctrl, block_addr, frame, what, arg):
    """Build this event's payload and push it into the detail arena (before its index record)."""
    block = carray(_u64_pointer(block_addr), DETAIL_CALL_SLOTS)
    if ctrl[CTRL_DETAIL_POOL_PTR] == _ZERO or ctrl[CTRL_DETAIL_RING_COUNT] == _ZERO:
        return
    cap = np.int64(block[DETAIL_CALL_SCRATCH_BYTES])
    buf = carray(_u8_pointer(block[DETAIL_CALL_SCRATCH]), np.intp(cap))
    fid, code_addr = _function_id(ctrl, frame)
    below = ctrl[CTRL_HOOK_DEPTH]  # the event's call_depth (a RETURN's frame is one below)
    if what != PY_TRACE_CALL and below > _ZERO:
        below -= _ONE
    pos, depth, flags = _put_stack(ctrl, buf, np.int64(block[DETAIL_CALL_STACK_DEPTH]), cap, frame, np.int64(below))
    arg_count = _ZERO
    if what == PY_TRACE_CALL:
        kind = EVENT_CALL
        info = _code_info(block, code_addr, frame)
        if info == MISSING:
            return
        count = np.int64(info & _KEPT_MASK)
        arg_count = info >> _NPARAMS_SHIFT
        if info & _INFO_TRUNCATED:
            flags |= PAYLOAD_F_ARGS_TRUNCATED
        pos = _put_call_values(block, buf, pos, cap, frame, count)
    elif _address(arg) != _ZERO and not left_by_exception(frame, _pointer(code_addr), arg, ctrl[CTRL_HOOK_FLAGS]):
        kind = EVENT_RETURN
        count = 1
        pos = _put_value(block, buf, pos, cap, arg)
    else:
        kind = EVENT_EXCEPTION
        count = 1
        pos = _put_exception(block, buf, pos, cap, frame)
    if pos < 0:  # no room (or a callback failed): counted like a payload that fits no ring
        ctrl[CTRL_DETAIL_RECORDS] += _ONE
        ctrl[CTRL_DETAIL_DROPS + DROP_RING_FULL] += _ONE
        return
    _put_u64(buf, 0, fid)
    buf[8] = np.uint8(kind)
    buf[9] = np.uint8(count)
    buf[10] = np.uint8(depth)
    buf[11] = np.uint8(flags)
    _put_u32(buf, 12, arg_count)
    total = ctrl[CTRL_DETAIL_RING_BYTES] * ctrl[CTRL_DETAIL_RING_COUNT]
    pool = ctrl[CTRL_DETAIL_POOL_PTR]
    dwords = carray(_u64_pointer(pool), np.intp(total // _EIGHT))
    dbytes = carray(_u8_pointer(pool), np.intp(total))
    event_type = DETAIL_FUNCTION_CALL if kind == EVENT_CALL else DETAIL_FUNCTION_RETURN
    detail_ring_push(ctrl, dwords, dbytes, ctrl[CTRL_INDEX_WRITE_POS], event_type, DETAIL_PAYLOAD_VERSION, buf, 0, pos)


@njit(inline="always", nogil=True)
def _capture_with_detail(ctrl_addr, frame, what, arg):
    ctrl = carray(_u64_pointer(ctrl_addr), CTRL_SLOTS)
    if ctrl[CTRL_ENABLED] != _ZERO and (what == PY_TRACE_CALL or what == PY_TRACE_RETURN):
        block = ctrl[CTRL_HOOK_DETAIL]
        if block != _ZERO:
            capture_detail(ctrl, block, frame, what, arg)
    return capture(ctrl_addr, frame, what, arg)


@cfunc(_SIGNATURE, nopython=True, cache=True)
def capture_hook_detail(obj, frame, what, arg):
    """Py_tracefunc (profile); ``obj`` is the thread's control block array (as for capture_hook)."""
    return _capture_with_detail(_word_at(obj, _OBJECT_HEAD), frame, what, arg)


@cfunc(_SIGNATURE, nopython=True, cache=True)
def bootstrap_hook_detail(obj, frame, what, arg):
    """``atf2.kernels.hook.bootstrap_hook`` for detail sessions: the adopting event gets its detail too."""
    ctrl_addr = adopt_thread(obj, frame, what)
    if ctrl_addr == _ZERO:
        return 0
    return _capture_with_detail(ctrl_addr, frame, what, arg)


@cfunc(_SIGNATURE, nopython=True, cache=True)
def exception_trace_hook(obj, frame, what, arg):
    """Py_tracefunc (trace) of detail sessions: keeps the exception of each PyTrace_EXCEPTION.

    ``obj`` is the thread's control block. Once the thread's capture is off,
    it uninstalls itself at its next event; a LINE event sets the frame's
    ``f_trace_lines`` to False (so a frame costs one line event, not one per
    line); every other event returns at once.
    """
    ctrl = carray(_u64_pointer(_word_at(obj, _OBJECT_HEAD)), CTRL_SLOTS)
    block_addr = ctrl[CTRL_HOOK_DETAIL]
    if ctrl[CTRL_ENABLED] == _ZERO or block_addr == _ZERO:
        _PyEval_SetTrace(_pointer(_ZERO), _pointer(_ZERO))  # capture is over on this thread
        return 0
    block = carray(_u64_pointer(block_addr), DETAIL_CALL_SLOTS)
    if block[DETAIL_CALL_CLOSED] != _ZERO:
        _PyEval_SetTrace(_pointer(_ZERO), _pointer(_ZERO))  # tracing stopped
        return 0
    if what == PY_TRACE_LINE:
        # Line events are of no use here and cost a call each: mute them for
        # this frame (its first line is the only one that reaches us).
        if _PyObject_SetAttr(frame, _pointer(block[DETAIL_CALL_LINES_NAME]), _pointer(block[DETAIL_CALL_FALSE])) != 0:
            _PyErr_Clear()
        return 0
    if what != PY_TRACE_EXCEPTION:
        return 0
    t = _PyTuple_GetItem(arg, 0)
    v = _PyTuple_GetItem(arg, 1)
    if _address(t) == _ZERO or _address(v) == _ZERO:
        _PyErr_Clear()
        return 0
    _Py_IncRef(t)
    _Py_IncRef(v)
    old_t = block[DETAIL_CALL_EXC_TYPE]
    old_v = block[DETAIL_CALL_EXC_VALUE]
    block[DETAIL_CALL_EXC_FRAME] = _address(frame)
    block[DETAIL_CALL_EXC_TYPE] = _address(t)
    block[DETAIL_CALL_EXC_VALUE] = _address(v)
    if old_t != _ZERO:
        _Py_DecRef(_pointer(old_t))
    if old_v != _ZERO:
        _Py_DecRef(_pointer(old_v))
    return 0


@njit(cache=True)
def interrupt_overdue(blocks, now, budget, exc):
    """The repr watchdog's check (with the GIL held throughout, so no hooked
    thread moves meanwhile): raise ``exc`` in every thread whose hook has been
    running user code for more than ``budget`` ticks; returns how many."""
    n = 0
    for k in range(blocks.shape[0]):
        block = carray(_u64_pointer(blocks[k]), DETAIL_CALL_SLOTS)
        start = block[DETAIL_CALL_USER_START]
        if start != _ZERO and block[DETAIL_CALL_USER_FIRED] == _ZERO and now > start and now - start > budget:
            block[DETAIL_CALL_USER_FIRED] = _ONE
            if _PyThreadState_SetAsyncExc(block[DETAIL_CALL_THREAD_IDENT], _pointer(exc)) > 0:
                n += 1
    return n


@njit(cache=True)
def close_blocks(blocks):
    """Tracing stopped: mark every detail block closed and release the exceptions
    they hold, in one call with the GIL held (a thread's trace hook cannot swap
    one meanwhile)."""
    for k in range(blocks.shape[0]):
        block = carray(_u64_pointer(blocks[k]), DETAIL_CALL_SLOTS)
        block[DETAIL_CALL_CLOSED] = _ONE
        for slot in (DETAIL_CALL_EXC_TYPE, DETAIL_CALL_EXC_VALUE):
            held = block[slot]
            block[slot] = _ZERO
            if held != _ZERO:
                _Py_DecRef(_pointer(held))
        block[DETAIL_CALL_EXC_FRAME] = _ZERO
