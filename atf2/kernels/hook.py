"""The capture hook: a Numba ``@cfunc`` that CPython calls on every profile event.

``capture_hook`` has the exact ``Py_tracefunc`` signature
``int (*)(PyObject *obj, PyFrameObject *frame, int what, PyObject *arg)`` and
is installed per thread with ``PyEval_SetProfile(capture_hook, ctrl)``, where
``ctrl`` is the thread's control block (a ``numpy.uint64`` array, slots in
``atf2.layout``). CPython calls it with the GIL held, outside any Python frame
of ours, and passes ``ctrl`` back as ``obj``.

Why reading ``obj`` is safe: ``PyEval_SetProfile`` stores a strong reference
to ``obj`` in the thread state, so the array lives at least as long as the
hook is installed on that thread; a numpy array's ``data`` pointer is the
first field after the object header (``PyArrayObject_fields``, numpy's public
ABI, checked at import below) and never moves for the life of the array (the
control block is never resized). The index pool's address sits in the control
block; its owner (``atf2.rings``) keeps it allocated while ``CTRL_ENABLED`` is
set, and the hook tests that slot first.

Hot path per event (Python CALL / RETURN): code object of the frame, one
probe of the code table (``atf2.kernels.codetable``), the cycle counter, the
depth update and the ring push (``ring.index_ring_push_raw``). No Python
callback, no allocation, no lock, no call. On the first sight of a code
object (the slow path, once per function per session) the hook calls the
tracer's registrar, a Python callable whose address is in the control block;
CPython suspends profiling of the thread while a profile function runs, so
that call is never itself traced.

What it costs is counted, not timed (``python -m atf2.bench.overhead
--instructions``, callgrind): CPython's own share (the floor: any C profile
function, even one that returns at once) is several hundred instructions per
event; the hook adds about 80 (fib) to 125 (a mix with as many C calls as
Python ones) above it. Two things keep it there:

* The code object is read from the frame's fields (``frame->f_frame->f_code``
  on 3.11; ``f_code`` / ``f_executable``, first in the interpreter frame, on
  3.12 and 3.13), found and verified at import (``_probe_code_field``);
  elsewhere, or if the probe disagrees, ``PyFrame_GetCode`` and ``Py_DecRef``
  (two calls, ~20 instructions).
* Nothing in the hook can fail in Numba's eyes: raw pointers instead of array
  views (``carray``), the ring switch called through the C ABI. Otherwise
  Numba's C wrapper checks a status after every call of the hook, C-function
  events included (~15 instructions each).

Events: ``PyTrace_CALL`` -> CALL; ``PyTrace_RETURN`` -> RETURN, or EXCEPTION
when ``arg`` is NULL: CPython reports a frame unwound by an exception as a
RETURN with a NULL argument (3.11: ``exit_unwind`` in ceval.c calls the
profiler with ``PyTrace_RETURN, NULL``; 3.13: ``PY_UNWIND`` in
legacy_tracing.c, ``sys_profile_unwind``, does the same; verified on 3.11.7
and 3.13.0). CPython 3.12's shim passes None there instead: on 3.12 a
RETURN with None goes to ``atf2.kernels.exception_exit.left_by_exception``,
which tells from the frame's last instruction (the constant False elsewhere,
so other versions pay nothing). A generator or
coroutine resumed is a CALL, suspended (yield/await) is a RETURN, as CPython
reports them. C functions (``PyTrace_C_CALL / C_RETURN / C_EXCEPTION``) are
recorded only when ``FLAG_C_CALLS`` is set; ``arg`` is then a
``PyCFunctionObject`` (3.11 and 3.12 bind method descriptors before
reporting) and the key is its ``m_ml`` (the ``PyMethodDef``, static per
builtin), because bound builtin method objects are created per call and their
addresses are reused at once.

``call_depth``: the depth of the event's function in its thread's stack
(bottom frame = 0), kept in ``CTRL_HOOK_DEPTH``; the tracer seeds it with the
real stack depth when it installs the hook, so it stays right through threads
adopted mid-flight, generators and exceptions (every frame left by an
exception gets its own EXCEPTION event). With ``FLAG_END_AT_BOTTOM`` (threads
of ``threading``, whose depth-0 frame is ``Thread._bootstrap``; the main
thread under ``atf2 record``, whose depth-0 frame is the program's
``<module>``), leaving the depth-0 frame ends the thread's Python work: the
hook removes itself, and the thread's teardown (thread-local destructors,
atf2's own exit bookkeeping) is not recorded. Other threads (a C library's,
calling Python back again and again at depth 0) stay hooked.

``capture_hook`` leaves C-function events at once; ``capture_hook_c_calls``
is the variant used when C calls are recorded.

``bootstrap_hook`` is installed (obj = the tracer's adopt callable) on threads
that were already running when tracing started: on its first event in a
thread it asks the tracer to register the thread and install
``capture_hook`` with that thread's control block, then records that event.
"""

from __future__ import annotations

import ctypes
import sys

import numpy as np
from llvmlite import ir
from numba import carray, cfunc, njit, types
from numba.core.types import ExternalFunction
from numba.extending import intrinsic

from ..clock import ticks
from ..layout import (
    CTRL_ENABLED,
    CTRL_HOOK_DEPTH,
    CTRL_HOOK_FLAGS,
    CTRL_HOOK_SCRATCH0,
    CTRL_HOOK_SCRATCH1,
    CTRL_HOOK_SCRATCH2,
    CTRL_HOOK_SCRATCH3,
    CTRL_SLOTS,
    EVENT_CALL,
    EVENT_EXCEPTION,
    EVENT_RETURN,
    RING_DEPTH_SHIFT,
)
from .codetable import MISSING, table_find
from .exception_exit import left_by_exception
from .exception_exit import pointer_as_int as _address
from .ring import index_ring_push_raw
from .ring import u64_pointer as _u64_pointer

# Hook-private control block slots (the four scratch words atf2.layout gives the tracer).
SLOT_TABLE_PTR = CTRL_HOOK_SCRATCH0  #: data address of the code table (uint64[2 * capacity])
SLOT_TABLE_MASK = CTRL_HOOK_SCRATCH1  #: capacity - 1
SLOT_REGISTRAR = CTRL_HOOK_SCRATCH2  #: address of the registrar (a Python callable, kept alive by the tracer)
SLOT_FALLBACK_ID = CTRL_HOOK_SCRATCH3  #: function id recorded when the registrar fails
#: CTRL_HOOK_FLAGS bit: record C function calls too
FLAG_C_CALLS = 1
#: CTRL_HOOK_FLAGS bit: the thread's depth-0 frame is its whole Python work
#: (a threading thread's _bootstrap, atf2 record's <module>): unhook when it is left
FLAG_END_AT_BOTTOM = 2

# CPython's profile event codes (Include/cpython/pystate.h, stable since 2.x)
PY_TRACE_CALL = 0
PY_TRACE_RETURN = 3
PY_TRACE_C_CALL = 4
PY_TRACE_C_EXCEPTION = 5
PY_TRACE_C_RETURN = 6

#: Size of PyObject_HEAD: where the first field of an object struct starts.
#: Derived, not spelled: 16 on regular builds, larger on debug/free-threaded ones.
OBJECT_HEAD_SIZE = object.__basicsize__


def _check_object_layout() -> None:
    """The two struct fields the hook reads sit right after PyObject_HEAD; verify it."""
    probe = np.zeros(1, dtype=np.uint64)
    if ctypes.c_uint64.from_address(id(probe) + OBJECT_HEAD_SIZE).value != probe.ctypes.data:
        raise ImportError("atf2: numpy array data pointer is not where the capture hook reads it")
    method_def = ctypes.c_void_p.from_address(id(len) + OBJECT_HEAD_SIZE).value
    if method_def is None or ctypes.c_char_p.from_address(method_def).value != b"len":
        raise ImportError("atf2: PyCFunctionObject.m_ml is not where the capture hook reads it")


_check_object_layout()


def c_function_key(func) -> int:
    """The code-table key of a C function object: the address of its PyMethodDef."""
    return ctypes.c_void_p.from_address(id(func) + OBJECT_HEAD_SIZE).value or 0


def _probe_code_field() -> tuple[int, int]:
    """Where a frame's code object sits: (offset of ``f_frame`` in PyFrameObject,
    offset of the code in ``_PyInterpreterFrame``), or (0, 0) to call ``PyFrame_GetCode``.

    Private struct fields, so only where known (3.11: ``f_code`` after four
    pointers; 3.12: ``f_code`` first; 3.13: ``f_executable`` first, the code
    object for every Python frame), and only if they agree with
    ``frame.f_code`` on live frames of three kinds (module-level, function,
    suspended generator). Numba caches compiled code per Python version, and
    the result is frozen into the hook as a constant: it is the same for
    every run of one interpreter.
    """
    field = {(3, 11): 32, (3, 12): 0, (3, 13): 0}.get(sys.version_info[:2])
    if field is None:
        return 0, 0
    f_frame = OBJECT_HEAD_SIZE + 8  # after f_back, on 3.11 to 3.13

    def code_at(frame) -> int:
        iframe = ctypes.c_uint64.from_address(id(frame) + f_frame).value
        return ctypes.c_uint64.from_address(iframe + field).value if iframe else 0

    def gen():
        yield

    suspended = gen()
    next(suspended)
    frames = [sys._getframe(), (lambda: sys._getframe())(), suspended.gi_frame]
    if all(code_at(frame) == id(frame.f_code) for frame in frames):
        return f_frame, field
    return 0, 0


_F_FRAME, _CODE_FIELD = _probe_code_field()
#: read the code object from the frame's fields (two loads) rather than PyFrame_GetCode + Py_DecRef (two calls)
_CODE_FROM_FIELDS = _F_FRAME != 0
_F_FRAME_OFFSET = np.intp(_F_FRAME)
_CODE_FIELD_OFFSET = np.intp(_CODE_FIELD)


# --- CPython C API, resolved by the JIT linker in this process (cache-friendly) ---
_PyFrame_GetCode = ExternalFunction("PyFrame_GetCode", types.voidptr(types.voidptr))
_Py_DecRef = ExternalFunction("Py_DecRef", types.void(types.voidptr))
_PyObject_CallOneArg = ExternalFunction("PyObject_CallOneArg", types.voidptr(types.voidptr, types.voidptr))
_PyLong_AsUnsignedLongLong = ExternalFunction("PyLong_AsUnsignedLongLong", types.uint64(types.voidptr))
_PyErr_Occurred = ExternalFunction("PyErr_Occurred", types.voidptr())
_PyErr_Clear = ExternalFunction("PyErr_Clear", types.void())
_PyEval_SetProfile = ExternalFunction("PyEval_SetProfile", types.void(types.voidptr, types.voidptr))


@intrinsic
def _pointer(typingctx, addr):
    """An integer as a void pointer."""
    sig = types.voidptr(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

    return sig, codegen


@intrinsic
def _word_at(typingctx, ptr, offset):
    """The 8-byte word at ``ptr + offset`` (a pointer field of a C struct)."""
    sig = types.uint64(types.voidptr, types.intp)

    def codegen(context, builder, signature, args):
        p = builder.gep(args[0], [args[1]])
        return builder.load(builder.bitcast(p, ir.IntType(64).as_pointer()))

    return sig, codegen


_OBJECT_HEAD = np.intp(OBJECT_HEAD_SIZE)
_CALL = np.uint64(EVENT_CALL)
_RETURN = np.uint64(EVENT_RETURN)
_EXCEPTION = np.uint64(EVENT_EXCEPTION)
_DEPTH_SHIFT = np.uint64(RING_DEPTH_SHIFT)
_ONE = np.uint64(1)
_TWO = np.uint64(2)
_ZERO = np.uint64(0)
_FLAG_C_CALLS = np.uint64(FLAG_C_CALLS)
_FLAG_END_AT_BOTTOM = np.uint64(FLAG_END_AT_BOTTOM)


@njit(inline="always", nogil=True)
def _register(ctrl, subject):
    """Slow path: first sight of a function. Ask the registrar for its id."""
    result = _PyObject_CallOneArg(_pointer(ctrl[SLOT_REGISTRAR]), subject)
    if _address(result) == _ZERO:
        _PyErr_Clear()  # never leave an exception behind: the program must not see it
        return ctrl[SLOT_FALLBACK_ID]
    fid = _PyLong_AsUnsignedLongLong(result)
    _Py_DecRef(result)
    if fid == MISSING and _address(_PyErr_Occurred()) != _ZERO:
        _PyErr_Clear()
        return ctrl[SLOT_FALLBACK_ID]
    return fid


@njit(inline="always", nogil=True)
def capture(ctrl_addr, frame, what, arg):
    """Record one profile event into the thread whose control block is at ``ctrl_addr``.

    Raw pointers, no arrays: building an array view (``carray``) is an
    operation Numba's C wrapper must assume can fail, so it would check a
    status after every call of the hook.
    """
    ctrl = _u64_pointer(ctrl_addr)
    if ctrl[CTRL_ENABLED] == _ZERO:
        return 0
    if what == PY_TRACE_CALL or what == PY_TRACE_RETURN:
        if _CODE_FROM_FIELDS:  # frame->f_frame->f_code (see _probe_code_field)
            key = _word_at(_pointer(_word_at(frame, _F_FRAME_OFFSET)), _CODE_FIELD_OFFSET)
            code = _pointer(key)
        else:
            code = _PyFrame_GetCode(frame)
            _Py_DecRef(code)  # borrowed: the executing frame holds a reference
            key = _address(code)
        subject = frame
        if what == PY_TRACE_CALL:
            kind = _CALL
        elif _address(arg) == _ZERO or left_by_exception(frame, code, arg, ctrl[CTRL_HOOK_FLAGS]):  # 3.12: see there
            kind = _EXCEPTION
        else:
            kind = _RETURN
    elif what >= PY_TRACE_C_CALL and what <= PY_TRACE_C_RETURN:
        if (ctrl[CTRL_HOOK_FLAGS] & _FLAG_C_CALLS) == _ZERO or _address(arg) == _ZERO:
            return 0
        key = _word_at(arg, _OBJECT_HEAD)  # PyCFunctionObject.m_ml
        subject = arg
        if what == PY_TRACE_C_CALL:
            kind = _CALL
        elif what == PY_TRACE_C_RETURN:
            kind = _RETURN
        else:
            kind = _EXCEPTION
    else:
        return 0
    fid = table_find(_u64_pointer(ctrl[SLOT_TABLE_PTR]), ctrl[SLOT_TABLE_MASK], key)
    if fid == MISSING:
        fid = _register(ctrl, subject)
    ts = ticks()
    depth = ctrl[CTRL_HOOK_DEPTH]
    if kind == _CALL:
        ctrl[CTRL_HOOK_DEPTH] = depth + _ONE
    else:
        if depth > _ZERO:  # a RETURN whose CALL came before tracing started, at the bottom
            depth -= _ONE
        ctrl[CTRL_HOOK_DEPTH] = depth
    index_ring_push_raw(ctrl_addr, ctrl, ts, fid, kind | (depth << _DEPTH_SHIFT))
    if depth == _ZERO and what == PY_TRACE_RETURN and (ctrl[CTRL_HOOK_FLAGS] & _FLAG_END_AT_BOTTOM) != _ZERO:
        # The thread's bottom frame is gone: what Python still runs on this
        # thread is its teardown (thread-local destructors, among them the
        # session's exit sentinel), not the program. Unhook it (last: the
        # thread state's reference to ctrl goes, the session keeps its own).
        _PyEval_SetProfile(_pointer(_ZERO), _pointer(_ZERO))
    return 0


@njit(inline="always", nogil=True)
def first_event_depth(frames_below, what, c_calls):
    """CTRL_HOOK_DEPTH to seed before the first event of a thread, from the
    number of Python frames below the event's ``frame``.

    CALL: the new frame is at ``frames_below``. RETURN: it is leaving from
    there (the hook decrements first). C events: the C function sits one
    above its calling ``frame``; when C calls are not recorded (``c_calls``
    false) the hook ignores the event, so the seed is what the next Python
    event needs (a CALL above ``frame`` or ``frame``'s RETURN). A thread's
    first event is often a C one: the C_RETURN of ``time.sleep`` in a thread
    running when tracing starts, of ``sys.setprofile`` on 3.12+.
    """
    if what == PY_TRACE_CALL:
        return frames_below
    if what == PY_TRACE_RETURN or what == PY_TRACE_C_CALL or not c_calls:
        return frames_below + _ONE
    return frames_below + _TWO


_SIGNATURE = types.int32(types.voidptr, types.voidptr, types.int32, types.voidptr)


@cfunc(_SIGNATURE, nopython=True, cache=True)
def capture_hook(obj, frame, what, arg):
    """Py_tracefunc for Python functions only; ``obj`` is the thread's control block array.

    CPython calls a profiler for C function calls too, often several per
    Python call: this variant leaves on those at once, before touching any
    memory (the C-calls variant below pays a few loads for each).
    """
    if what != PY_TRACE_CALL and what != PY_TRACE_RETURN:
        return 0
    return capture(_word_at(obj, _OBJECT_HEAD), frame, what, arg)


@cfunc(_SIGNATURE, nopython=True, cache=True)
def capture_hook_c_calls(obj, frame, what, arg):
    """Py_tracefunc recording C function calls as well (when FLAG_C_CALLS is set)."""
    return capture(_word_at(obj, _OBJECT_HEAD), frame, what, arg)


@njit(nogil=True)
def adopt_thread(adopt, frame, what):
    """A bootstrap hook's work: ask the tracer's ``adopt`` callable to take this thread.

    ``adopt(frame)`` registers the current thread, installs its capture hook
    and returns the address of its control block with CTRL_HOOK_DEPTH = frames
    below ``frame``, or 0 to leave this thread alone. Returns that address
    (0 on refusal or error, with no exception left behind) after fixing the
    depth for the event being reported.
    """
    result = _PyObject_CallOneArg(adopt, frame)
    if _address(result) == _ZERO:
        _PyErr_Clear()
        return _ZERO
    ctrl_addr = _PyLong_AsUnsignedLongLong(result)
    _Py_DecRef(result)
    if ctrl_addr == MISSING and _address(_PyErr_Occurred()) != _ZERO:
        _PyErr_Clear()
        return _ZERO
    if ctrl_addr == _ZERO:
        return _ZERO
    ctrl = carray(_u64_pointer(ctrl_addr), CTRL_SLOTS)
    ctrl[CTRL_HOOK_DEPTH] = first_event_depth(ctrl[CTRL_HOOK_DEPTH], what, (ctrl[CTRL_HOOK_FLAGS] & _FLAG_C_CALLS) != _ZERO)
    return ctrl_addr


@cfunc(_SIGNATURE, nopython=True, cache=True)
def bootstrap_hook(obj, frame, what, arg):
    """Py_tracefunc for threads not yet adopted; ``obj`` is the tracer's adopt callable."""
    ctrl_addr = adopt_thread(obj, frame, what)
    if ctrl_addr == _ZERO:
        return 0
    return capture(ctrl_addr, frame, what, arg)


@cfunc(types.void(types.uint64), nopython=True, cache=True)
def install_pending_hook(pending_addr):
    """``PyEval_SetProfile(func, obj)`` with the two words at ``pending_addr``
    (then cleared), if set. Called through ctypes (``atf2.tracer``), so no
    Python frame of atf2 is left to return through once the hook is on."""
    pending = carray(_u64_pointer(pending_addr), 2)
    if pending[0] != _ZERO:
        _PyEval_SetProfile(_pointer(pending[0]), _pointer(pending[1]))
        pending[0] = _ZERO
        pending[1] = _ZERO


@cfunc(_SIGNATURE, nopython=True, cache=True)
def floor_hook(obj, frame, what, arg):
    """A hook that does nothing: what CPython charges any C-level profiler (benchmarks)."""
    return 0


# --- every other thread's profile function (Python 3.11) ---------------------
# 3.12+ has PyEval_SetProfileAllThreads. On 3.11 the same loop runs here, in
# nopython code holding the GIL from start to end, so no thread state can be
# freed while the loop holds its pointer (a ctypes loop would let the GIL go
# between calls). Compiled on first use only, so 3.12+ never links these.
_PyInterpreterState_Get = ExternalFunction("PyInterpreterState_Get", types.voidptr())
_PyInterpreterState_ThreadHead = ExternalFunction("PyInterpreterState_ThreadHead", types.voidptr(types.voidptr))
_PyThreadState_Next = ExternalFunction("PyThreadState_Next", types.voidptr(types.voidptr))
_PyThreadState_Get = ExternalFunction("PyThreadState_Get", types.voidptr())
_PyEval_SetProfile_tstate = ExternalFunction(
    "_PyEval_SetProfile", types.int32(types.voidptr, types.voidptr, types.voidptr)
)


@njit(cache=True)
def set_profile_other_threads(func_addr, obj_addr):
    """``_PyEval_SetProfile(tstate, func, obj)`` on every thread but the caller's; returns how many."""
    current = _address(_PyThreadState_Get())
    tstate = _PyInterpreterState_ThreadHead(_PyInterpreterState_Get())
    n = 0
    while _address(tstate) != _ZERO:
        if _address(tstate) != current:
            if _PyEval_SetProfile_tstate(tstate, _pointer(np.uint64(func_addr)), _pointer(np.uint64(obj_addr))) != 0:
                _PyErr_Clear()
            else:
                n += 1
        tstate = _PyThreadState_Next(tstate)
    return n
