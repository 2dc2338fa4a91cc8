"""Automatic tracing of Python functions: install the capture hook in every thread.

``start_tracing(session)`` (called by ``trace_session_start(...,
trace_python=True)``) installs ``atf2.kernels.hook.capture_hook`` as the C
profile function of

* the calling thread, at once, with its real stack depth; or, with
  ``current_thread=False``, only inside ``call_traced(function)`` (from the
  function's CALL at depth 0 to its exit: ``atf2 record``'s ``<module>``) or
  from where a running C call returns (``arm_after_return``: a forked child);
* threads already running: ``bootstrap_hook`` is set on each of their thread
  states (3.12+: ``PyEval_SetProfileAllThreads``; 3.11 has no public
  equivalent, so a nopython loop over ``PyThreadState_Next`` calls the
  exported ``_PyEval_SetProfile`` with the GIL held throughout); the first
  event of such a thread registers it and swaps in ``capture_hook``;
* threads started later: ``threading.setprofile`` installs a Python bootstrap
  that runs once per thread, before ``run()``, and does the same.

A thread whose depth-0 frame is left is unhooked by the hook itself: its
teardown (thread-local destructors, the session's exit bookkeeping) is not
the program's. ``stop_tracing()`` removes the hook from every thread, puts back the
``threading`` profile hook and the calling thread's previous profiler
(``sys.getprofile()`` is what it was before), and releases the code objects
kept alive for the code table.

Function ids come from the session's ``SymbolTable``: on the first sight of a
code object the hook calls ``_Tracer._register`` (the slow path, once per
function), which resolves the names, inserts the code table entry and keeps
the code object alive until stop, so a reused address can never alias.
"""

from __future__ import annotations

import ctypes
import functools
import sys
import threading
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from . import exception_exits
from .errors import SessionStateError
from .kernels.codetable import MISSING, new_table, table_insert, table_lookup, table_rehash
from .kernels.hook import (
    FLAG_C_CALLS,
    FLAG_END_AT_BOTTOM,
    PY_TRACE_C_CALL,
    PY_TRACE_C_EXCEPTION,
    PY_TRACE_C_RETURN,
    PY_TRACE_CALL,
    PY_TRACE_RETURN,
    SLOT_FALLBACK_ID,
    SLOT_REGISTRAR,
    SLOT_TABLE_MASK,
    SLOT_TABLE_PTR,
    bootstrap_hook,
    c_function_key,
    capture_hook,
    capture_hook_c_calls,
    first_event_depth,
    install_pending_hook,
    set_profile_other_threads,
)
from .layout import CTRL_HOOK_DEPTH, CTRL_HOOK_FLAGS

__all__ = ["Tracer", "start_tracing", "stop_tracing", "tracing_active"]

_PY312 = sys.version_info >= (3, 12)

_set_profile = ctypes.pythonapi.PyEval_SetProfile
_set_profile.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_set_profile.restype = None
if _PY312:
    _set_profile_all = ctypes.pythonapi.PyEval_SetProfileAllThreads
    _set_profile_all.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    _set_profile_all.restype = None

# the hook called from Python (first event of a thread started later); this
# variant handles every event kind, C calls according to the control block
_call_capture_hook = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.py_object, ctypes.c_int, ctypes.py_object)(
    capture_hook_c_calls.address
)
_EVENT_CODES = {
    "call": PY_TRACE_CALL,
    "return": PY_TRACE_RETURN,
    "c_call": PY_TRACE_C_CALL,
    "c_return": PY_TRACE_C_RETURN,
    "c_exception": PY_TRACE_C_EXCEPTION,
}



def _hook_caller(address: int):
    """A hook at ``address`` callable from Python (issue 5: the detail variant)."""
    return ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.py_object, ctypes.py_object, ctypes.c_int, ctypes.py_object)(address)


#: (hook address, control block address) that install_after_fork installs, then clears
_PENDING = np.zeros(2, dtype=np.uint64)
#: a C callable (no Python frame of its own): installs what Tracer.arm_after_return left in _PENDING
install_after_fork = functools.partial(
    ctypes.PYFUNCTYPE(None, ctypes.c_uint64)(install_pending_hook.address), _PENDING.__array_interface__["data"][0]
)
#: a C callable removing the calling thread's profile function (no Python frame either)
remove_profile = functools.partial(_set_profile, None, None)

_INITIAL_CAPACITY = 4096
_MISSING = int(MISSING)
_lock = threading.Lock()
_active: Tracer | None = None


def _data_address(array: np.ndarray) -> int:
    """``array.ctypes.data``, without building the ctypes helper (several µs per call)."""
    return array.__array_interface__["data"][0]


#: ``first_event_depth`` (nopython, for the bootstrap cfunc) as plain Python,
#: for the threading bootstrap: calling a Numba dispatcher from Python costs µs.
_first_event_depth = first_event_depth.py_func


def _frames_below(frame) -> int:
    n = 0
    frame = frame.f_back
    while frame is not None:
        n += 1
        frame = frame.f_back
    return n


class _CodeTable:
    """The code table of one session: ids stay valid across start/stop of tracing.

    ``pinned`` keeps every object whose address is a key alive for the
    session's life, so no address can be reused by another function.
    """

    def __init__(self):
        self.capacity = _INITIAL_CAPACITY
        self.table = new_table(self.capacity)
        self.address = _data_address(self.table)  # published in every control block
        self.count = 0
        self.pinned: list = []
        self.old_tables: list = []


def _codes_of(session) -> _CodeTable:
    codes = getattr(session, "_atf2_code_table", None)
    if codes is None:
        codes = _CodeTable()
        try:
            session._atf2_code_table = codes
        except AttributeError:  # a session object without a __dict__: one table per run
            pass
    return codes


class Tracer:
    """The state of one tracing run: code table, pinned objects, adopted threads."""

    def __init__(self, session, c_calls: bool = False, ignore_threads=()):
        self.session = session
        self.symbols = session.symbols
        self.c_calls = bool(c_calls)
        self.ignored = set(ignore_threads)
        self.codes = _codes_of(session)
        self.active = False
        self.threads_adopted = 0
        self._lock = threading.RLock()
        self._ctrls: list = []  # control blocks holding the table's address
        self._fallback_id = self.symbols.register("<unknown>", "<unknown>", "<atf2>", "", 0)
        # what the hooks need to tell exception exits on 3.12 (probed once, before any hook is ours)
        self._exit_flags = exception_exits.hook_flags()
        # Bound methods are created per attribute access: keep one of each alive,
        # since the hook holds their raw addresses.
        self._registrar = self._register
        self._adopter = self._adopt
        # the profile functions installed before ours, restored at stop
        self._prev_profile: Callable[..., Any] | None = None
        self._prev_threading_profile: Callable[..., Any] | None = None
        self._deferred_thread: int | None = None  # started with current_thread=False (call_traced)
        # issue 5: sessions capturing Python details install the detail variant of the hook
        self.detail = getattr(session, "detail_capture", None)
        # issue 5: the detail bootstrap hook records the adopting event with its detail too
        self._bootstrap_address = bootstrap_hook.address if self.detail is None else self.detail.bootstrap_address
        if self.detail is not None:
            self.hook_address = self.detail.hook_address
            self._call_hook = _hook_caller(self.hook_address)
        else:  # C-function events cost nothing unless recorded: two hook variants
            self.hook_address = capture_hook_c_calls.address if self.c_calls else capture_hook.address
            self._call_hook = _call_capture_hook

    # ----------------------------------------------------------- slow paths
    def _register(self, subject) -> int:  # pragma: no cover - a hook callback (see setup.cfg)
        """First sight of a function (called by the hook): its function id.

        Lock discipline (this runs inside other threads' profile callbacks):
        foreign locks (the symbol table's) are taken outside ours, and nothing
        under ours can compile or block, so no thread can wait on us while
        holding something we need.
        """
        if isinstance(subject, types.FrameType):
            obj = subject.f_code
            key = id(obj)
        else:
            obj = subject
            key = c_function_key(subject)
        fid = int(table_lookup(self.codes.table, self.codes.capacity - 1, key))
        if fid != _MISSING:
            return fid
        if isinstance(subject, types.FrameType):
            module = subject.f_globals.get("__name__")
            fid = self.symbols.register_code(obj, module if isinstance(module, str) else None)
        else:
            fid = self.symbols.register(*_c_function_names(subject))
        with self._lock:
            if int(table_lookup(self.codes.table, self.codes.capacity - 1, key)) == _MISSING:
                self._insert(key, fid)
                self.codes.pinned.append(obj)
        return fid

    def _insert(self, key: int, fid: int) -> None:  # pragma: no cover - a hook callback (see setup.cfg)
        if 2 * (self.codes.count + 1) > self.codes.capacity:
            capacity = self.codes.capacity * 2
            table = new_table(capacity)
            table_rehash(self.codes.table, table, capacity - 1)
            self.codes.old_tables.append(self.codes.table)  # a hook never holds it across the swap, but be safe
            self.codes.table, self.codes.capacity = table, capacity
            self.codes.address = _data_address(table)
            for ctrl in self._ctrls:
                self._publish_table(ctrl)
        table_insert(self.codes.table, self.codes.capacity - 1, key, fid)
        self.codes.count += 1

    def _publish_table(self, ctrl) -> None:
        ctrl[SLOT_TABLE_PTR] = self.codes.address
        ctrl[SLOT_TABLE_MASK] = self.codes.capacity - 1

    def _prepare(self, ctrl, depth: int, end_at_bottom: bool = False) -> None:
        """Fill the hook's slots of a thread's control block.

        ``end_at_bottom``: leaving the frame at depth 0 ends the thread's
        Python work; the hook unhooks the thread there (FLAG_END_AT_BOTTOM).
        """
        self._publish_table(ctrl)
        ctrl[SLOT_REGISTRAR] = id(self._registrar)
        ctrl[SLOT_FALLBACK_ID] = self._fallback_id
        ctrl[CTRL_HOOK_FLAGS] = (
            (FLAG_C_CALLS if self.c_calls else 0) | (FLAG_END_AT_BOTTOM if end_at_bottom else 0) | self._exit_flags
        )
        ctrl[CTRL_HOOK_DEPTH] = depth
        if self.detail is not None:  # issue 5
            self.detail.prepare(ctrl)
        self._ctrls.append(ctrl)

    def _adopt_ctrl(self, frame):  # pragma: no cover - a hook callback (see setup.cfg)
        """Register the calling thread and install the capture hook on it.

        Returns its control block (CTRL_HOOK_DEPTH = frames below ``frame``),
        or None when this thread is not to be traced (then its profile
        function is removed). The session's own threads leave here without
        taking any lock: they may be holding the session's.

        This runs on the new thread before its first event is recorded, once
        per thread: it is the traced thread's whole fixed cost (with
        registration), so it stays lean (no ``ndarray.ctypes``, no Numba
        dispatch from Python: each costs microseconds).
        """
        if not self.active or threading.get_ident() in self.ignored or _internal_thread():
            _set_profile(None, None)
            return None
        ctrl = self.session.register_current_thread().ctrl
        depth = _frames_below(frame)
        with self._lock:
            if not self.active:  # stopped meanwhile: stay unhooked
                _set_profile(None, None)
                return None
            self._prepare(ctrl, depth, end_at_bottom=_started_by_threading())
            _set_profile(self.hook_address, id(ctrl))
            self.threads_adopted += 1
            return ctrl

    def _adopt(self, frame) -> int:  # pragma: no cover - a hook callback (see setup.cfg)
        """``_adopt_ctrl`` for the bootstrap cfunc: the control block's address, 0 if not traced."""
        ctrl = self._adopt_ctrl(frame)
        return 0 if ctrl is None else _data_address(ctrl)

    def _thread_start_hook(self, frame, event, arg):  # pragma: no cover - a hook callback (see setup.cfg)
        """threading.setprofile bootstrap: runs once, on a new thread's first event."""
        ctrl = self._adopt_ctrl(frame)
        if ctrl is None:
            return None
        what = _EVENT_CODES.get(event)
        if what is None:
            return None
        ctrl[CTRL_HOOK_DEPTH] = _first_event_depth(int(ctrl[CTRL_HOOK_DEPTH]), what, self.c_calls)
        self._call_hook(ctrl, frame, what, arg)
        return None

    # ------------------------------------------------------------ lifecycle
    def start(self, current_thread: bool = True) -> None:
        """Hook every thread; the calling one now, or (``current_thread=False``)
        only for the call given to ``call_traced`` later."""
        _warm_up()  # compile (or load) every kernel now: never under our lock, never in a hook
        self._prev_profile = sys.getprofile()
        self._prev_threading_profile = threading.getprofile() if hasattr(threading, "getprofile") else None
        channel = self.session.register_current_thread()
        with self._lock:
            self.active = True
            threading.setprofile(self._thread_start_hook)
            if _PY312:
                _set_profile_all(self._bootstrap_address, id(self._adopter))
                # that was every thread, this one too: off it at once (no event
                # comes between two ctypes calls), it is installed below or later
                _set_profile(None, None)
            else:
                set_profile_other_threads(self._bootstrap_address, id(self._adopter))
            self.threads_adopted += 1
            if current_thread:
                self._install_current(channel.ctrl)
            else:
                self._deferred_thread = threading.get_ident()

    def call_traced(self, function):
        """Call ``function()`` (a Python function) with the calling thread traced
        from its CALL to its RETURN or EXCEPTION, and nothing else of this thread.

        For ``atf2 record``: the program's ``<module>`` is the thread's first
        and last event, at call_depth 0, without the runner's frames around it.
        ``function`` must be a plain Python function: calling it is no C call,
        so even with C calls recorded no event precedes its CALL or follows
        its exit. Only for the thread that started tracing with
        ``current_thread=False``.
        """
        if threading.get_ident() != self._deferred_thread:
            raise SessionStateError("call_traced: this thread was not left to call_traced at start")
        ctrl = self.session.register_current_thread().ctrl
        with self._lock:
            if not self.active:
                raise SessionStateError("call_traced: tracing is stopped")
            self._prepare(ctrl, 0, end_at_bottom=True)  # the documented base: the program's <module> is at depth 0
        _set_profile(self.hook_address, id(ctrl))
        try:
            return function()
        finally:
            _set_profile(None, None)
            if self.detail is not None and sys.gettrace() is ctrl:  # the detail variant's exception hook
                sys.settrace(None)

    def arm_after_return(self, caller) -> None:
        """Trace this (deferred) thread from the first event after the C call
        that is running now returns to the Python frame ``caller``.

        For a forked child (``atf2.runner``): called in an at-fork callback,
        inside ``os.fork()``; ``install_after_fork``, a C callable registered
        after it, installs the hook, so nothing of atf2 is recorded.
        """
        if threading.get_ident() != self._deferred_thread:
            raise SessionStateError("arm_after_return: this thread was not left to it at start")
        ctrl = self.session.register_current_thread().ctrl
        # the next Python event is at caller's depth + 1 (a CALL) or leaves caller
        # (a RETURN: the hook decrements first); with C calls, the C call's own
        # C_RETURN comes first, one level above caller
        depth = _frames_below(caller) + 1 + (1 if self.c_calls else 0)
        with self._lock:
            if not self.active:
                return
            self._prepare(ctrl, depth)
            _PENDING[0] = self.hook_address
            _PENDING[1] = id(ctrl)

    def _install_current(self, ctrl) -> None:
        # The next event on this thread is the RETURN of this very frame.
        self._prepare(ctrl, _frames_below(sys._getframe()) + 1)
        _set_profile(self.hook_address, id(ctrl))

    def stop(self) -> None:
        _set_profile(None, None)  # this thread first: nothing below is traced
        with self._lock:
            self.active = False
            threading.setprofile(self._prev_threading_profile)
            if _PY312:
                _set_profile_all(None, None)
            else:
                set_profile_other_threads(0, 0)
        _restore_profile(self._prev_profile)
        if self.detail is not None:  # issue 5: the exception trace hook of this thread, held exceptions
            self.detail.close()
        self._ctrls.clear()

    @property
    def functions_seen(self) -> int:
        return self.codes.count


def _warm_up() -> None:
    """Compile or load the kernels the slow paths call, with the argument types they use.

    A thread compiling with Numba holds Numba's global compiler lock; if our
    registrar needed a compilation while another traced thread held that lock
    and waited for us, both would wait forever.
    """
    table = new_table(2)
    table_insert(table, 1, 16, 1)
    table_lookup(table, 1, 16)
    table_rehash(table, new_table(4), 3)
    # .compile() takes Numba's lock even when the work is done: ask only once
    # (a forked child may inherit that lock held by a thread that no longer exists).
    if not _PY312 and not set_profile_other_threads.signatures:
        set_profile_other_threads.compile("(int64, int64)")


def _c_function_names(func) -> tuple[str, str, str, str, int]:
    """(name, qualname, module, file, line) of a builtin function or method."""
    name = getattr(func, "__name__", None) or "<builtin>"
    qualname = getattr(func, "__qualname__", None) or name
    module = getattr(func, "__module__", None)
    if not isinstance(module, str):
        owner = getattr(func, "__self__", None)
        owner_type = owner if isinstance(owner, type) else type(owner)
        module = getattr(owner_type, "__module__", None) or "builtins"
    return name, qualname, module, "", 0


def _restore_profile(previous) -> None:
    """Put back the calling thread's profiler as it was at start."""
    if previous is None:
        return
    enable = getattr(previous, "enable", None)
    if type(previous).__module__ in ("_lsprof", "cProfile") and callable(enable):
        enable()  # cProfile is a C-level profiler: sys.getprofile() gave its object
    else:
        sys.setprofile(previous)


def start_tracing(session, c_calls: bool | None = None, ignore_threads=(), current_thread: bool = True) -> Tracer:
    """Trace every Python function call of every thread into ``session``.

    ``c_calls``: also record calls of C functions (builtins), as their own
    function ids (default: the session's ``trace_c_calls`` option, else off).
    ``ignore_threads``: thread idents never to trace (the session's own threads).
    ``current_thread=False``: the calling thread is traced only inside
    ``call_traced(function)`` (``atf2 record``'s runner), other threads as usual.
    """
    global _active
    with _lock:
        if _active is not None:
            raise SessionStateError("Python tracing is already active")
        if c_calls is None:
            c_calls = bool(getattr(session, "options", {}).get("trace_c_calls", False))
        ignored = set(ignore_threads) | _session_threads(session)
        tracer = Tracer(session, c_calls=c_calls, ignore_threads=ignored)
        _active = tracer
    try:
        tracer.start(current_thread=current_thread)
    except BaseException:
        with _lock:
            _active = None
        tracer.stop()
        raise
    return tracer


def call_traced(function):
    """``function()``, traced on this thread if tracing was started here with
    ``current_thread=False`` (see ``Tracer.call_traced``), else a plain call."""
    tracer = _active
    if tracer is None or tracer._deferred_thread != threading.get_ident():
        return function()
    return tracer.call_traced(function)


def arm_after_return(caller) -> bool:
    """``Tracer.arm_after_return`` of the active tracer if this thread was left
    to it at start (``current_thread=False``); False otherwise."""
    tracer = _active
    if tracer is None or tracer._deferred_thread != threading.get_ident():
        return False
    tracer.arm_after_return(caller)
    return True


def stop_tracing() -> Tracer | None:
    """Remove the hook from every thread; returns the stopped tracer (None if none was active)."""
    global _active
    with _lock:
        tracer, _active = _active, None
    if tracer is not None:
        tracer.stop()
    return tracer


#: Threads of atf2 itself (the drain and its helpers) are named with this
#: prefix; they are never traced, whenever they start.
INTERNAL_THREAD_PREFIX = "atf2-"


def _started_by_threading() -> bool:
    """Is the calling thread a ``threading.Thread`` started by ``start()`` (its
    depth-0 frame is ``Thread._bootstrap``), not the main thread nor a foreign one?"""
    thread = threading.current_thread()
    return thread is not threading.main_thread() and not isinstance(thread, getattr(threading, "_DummyThread", ()))


def _internal_thread() -> bool:
    return threading.current_thread().name.startswith(INTERNAL_THREAD_PREFIX)


def _session_threads(session) -> set:
    """Idents of the session's own threads (its drain), which must never be traced."""
    internal = getattr(session, "internal_thread_ids", None)
    if callable(internal):
        return set(internal())
    drain_thread = getattr(getattr(session, "drain", None), "_thread", None)
    ident = getattr(drain_thread, "ident", None)
    return {ident} if ident is not None else set()


def tracing_active() -> bool:
    return _active is not None


def _after_fork_in_child() -> None:
    """The child of a fork inherits the hook on the forking thread: remove it.

    The parent's session and rings are not the child's (``atf2 record``
    starts a fresh session for the child); the control blocks and tables stay
    referenced until the tracer object goes away, so nothing dangles.
    """
    global _active
    if _active is not None:
        _set_profile(None, None)
        _active.active = False
        threading.setprofile(_active._prev_threading_profile)
        _active = None


if hasattr(sys.modules["os"], "register_at_fork"):
    import os

    os.register_at_fork(after_in_child=_after_fork_in_child)



def measure_event_cost_ns(events: int = 60000, repeat: int = 5) -> float:
    """What one traced event costs this process, in ns (hook + CPython's profiling), best of ``repeat``.

    Runs a small recursive workload untraced and with ``capture_hook`` writing
    into a private ring (no session, no files), outside any active tracing.
    Used by ``atf2 record`` to estimate the overhead a recording added.
    Timed in this thread's CPU time, so other processes' load does not count.
    """
    import time

    from .rings import RingConfig, ThreadChannel
    from .symbols import SymbolTable

    if _active is not None:
        raise SessionStateError("cannot calibrate while tracing is active")

    def recurse(n):
        return 0 if n == 0 else recurse(n - 1) + 1

    depth = 50
    rounds = max(1, events // (2 * (depth + 1)))
    channel = ThreadChannel(0, RingConfig(ring_capacity=1 << 14, ring_count=2, detail=False), 0, "calibration")

    class _Private:  # the two things Tracer needs of a session
        symbols = SymbolTable()

        @staticmethod
        def register_current_thread():
            return channel

    tracer = Tracer(_Private())
    tracer.active = True
    previous = sys.getprofile()
    best_plain = best_traced = float("inf")
    try:
        for _ in range(repeat):
            t0 = time.thread_time_ns()
            for _ in range(rounds):
                recurse(depth)
            best_plain = min(best_plain, time.thread_time_ns() - t0)
            tracer._ctrls.clear()
            # the real depth of recurse's frames: a RETURN at depth 0 unhooks the thread
            tracer._prepare(channel.ctrl, _frames_below(sys._getframe()) + 1)
            _set_profile(capture_hook.address, id(channel.ctrl))
            t0 = time.thread_time_ns()
            for _ in range(rounds):
                recurse(depth)
            elapsed = time.thread_time_ns() - t0
            _set_profile(None, None)
            best_traced = min(best_traced, elapsed)
    finally:
        _set_profile(None, None)
        _restore_profile(previous)
    return max(0.0, (best_traced - best_plain) / (rounds * 2 * (depth + 1)))


def exception_exits_reported() -> bool:
    """Are frames left by an exception recorded as EXCEPTION on this CPython?

    3.11 and 3.13+ tell a profile function so (RETURN with a NULL argument);
    3.12 says ``return None`` and the hooks work it out
    (``atf2.kernels.exception_exit``) once ``atf2.exception_exits`` has found
    the generator state it needs. Probed once, outside any tracing.
    """
    return exception_exits.exception_exits_recorded()
