"""Seeing frames left by an exception on every CPython: the hook flags that make it so.

CPython 3.11 and 3.13+ call a C profile function with ``PyTrace_RETURN``
and a NULL argument when a frame is unwound by an exception; 3.12 passes
``None`` (``atf2.kernels.exception_exit`` explains why and how the hooks
still tell). What that needs from here, probed once per process with a
throwaway ctypes profile function, outside any tracing:

* ``unwind_reported_as_none()``: does this interpreter pass ``None``?
* the offset and value of a generator's frame-state byte while it unwinds,
  found by comparing the raw bytes of generator objects (created, suspended,
  at a yield, unwinding after ``throw()``) and accepted only if exactly one
  byte behaves as CPython 3.12's ``gi_frame_state`` does in both a generator
  and a coroutine.

``hook_flags()`` packs both into ``CTRL_HOOK_FLAGS`` bits the tracer sets on
every thread it hooks.
"""

from __future__ import annotations

import ctypes
import sys

from .kernels.exception_exit import (
    FLAG_UNWIND_AS_NONE,
    FLAGS_GEN_EXECUTING_SHIFT,
    FLAGS_GEN_STATE_OFFSET_SHIFT,
    NEEDED,
)

__all__ = ["exception_exits_recorded", "hook_flags", "unwind_reported_as_none"]

_PY_TRACE_RETURN = 3

_set_profile = ctypes.pythonapi.PyEval_SetProfile
_set_profile.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
_set_profile.restype = None

_PROFILE_FUNC = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.py_object, ctypes.c_int, ctypes.c_void_p)

_probed: dict = {}


def _with_profile(function, body) -> None:
    """Run ``body()`` with the ctypes profile function ``function`` on this
    thread, then put back what was there (a Python or cProfile profiler)."""
    from .tracer import _restore_profile

    previous = sys.getprofile()
    _set_profile(ctypes.cast(function, ctypes.c_void_p).value, None)
    try:
        body()
    finally:
        _set_profile(None, None)
        _restore_profile(previous)


def unwind_reported_as_none() -> bool:
    """Does this CPython pass ``None`` (not NULL) with the RETURN of a frame left by an exception?"""
    if "none" not in _probed:
        seen = []

        @_PROFILE_FUNC
        def probe(obj, frame, what, arg):
            if what == _PY_TRACE_RETURN and frame.f_code is raiser.__code__:
                seen.append(arg)
            return 0

        def raiser():
            raise ValueError

        def body():
            try:
                raiser()
            except ValueError:
                pass

        _with_profile(probe, body)
        _probed["none"] = bool(seen) and seen[0] == id(None)  # NULL arrives as None, None as its address
    return _probed["none"]


def _generator_state_byte() -> tuple[int, int] | None:
    """(offset, value while unwinding) of the frame-state byte of generators and coroutines, or None."""

    def gen():
        yield

    async def coro():
        await _Suspend()

    snapshots: dict = {}
    objects: dict = {}

    @_PROFILE_FUNC
    def probe(obj, frame, what, arg):
        for name, subject in objects.items():
            if what == _PY_TRACE_RETURN and frame.f_code is subject.code:
                snapshots.setdefault(name, []).append(_raw(subject.obj))
        return 0

    class _Subject:
        def __init__(self, obj, code):
            self.obj, self.code = obj, code

    def body():
        for name, make, code in (("gen", gen, gen.__code__), ("coro", coro, coro.__code__)):
            obj = make()
            objects[name] = _Subject(obj, code)
            snapshots[name + ":created"] = [_raw(obj)]
            obj.send(None)  # to the yield (RETURN snapshot 1)
            snapshots[name + ":suspended"] = [_raw(obj)]
            try:
                obj.throw(KeyError)  # unwinds from the yield (RETURN snapshot 2)
            except KeyError:
                pass

    _with_profile(probe, body)
    found = None
    for name in ("gen", "coro"):
        returns = snapshots.get(name, [])
        if len(returns) != 2:
            return None
        created, suspended = snapshots[name + ":created"][0], snapshots[name + ":suspended"][0]
        at_yield, unwinding = returns
        candidates = {
            (k, unwinding[k])
            for k in range(object.__basicsize__, min(map(len, (created, suspended, at_yield, unwinding))))
            if suspended[k] == at_yield[k] != unwinding[k] != created[k] != at_yield[k]
        }
        found = candidates if found is None else found & candidates
    if found is None or len(found) != 1:
        return None
    return next(iter(found))


class _Suspend:
    """An awaitable that suspends its coroutine once, yielding None."""

    def __await__(self):
        yield


def _raw(obj) -> bytes:
    return ctypes.string_at(id(obj), type(obj).__basicsize__)


def hook_flags() -> int:
    """``CTRL_HOOK_FLAGS`` bits for ``atf2.kernels.exception_exit`` (0 where CPython passes NULL)."""
    if "flags" not in _probed:
        flags = 0
        if NEEDED and unwind_reported_as_none():
            flags = FLAG_UNWIND_AS_NONE
            try:
                state = _generator_state_byte()
            except Exception:  # noqa: BLE001 - a probe of CPython internals: without it, yields only stay RETURN
                state = None
            if state is not None and 0 < state[0] < 1 << 16:
                flags |= (state[0] << FLAGS_GEN_STATE_OFFSET_SHIFT) | (state[1] << FLAGS_GEN_EXECUTING_SHIFT)
        _probed["flags"] = flags
    return _probed["flags"]


def exception_exits_recorded() -> bool:
    """Are frames left by an exception (``gen.throw()`` included) recorded as EXCEPTION here?"""
    if not unwind_reported_as_none():
        return True
    return NEEDED and (hook_flags() >> FLAGS_GEN_STATE_OFFSET_SHIFT) != 0
