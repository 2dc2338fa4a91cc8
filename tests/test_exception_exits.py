"""Frames left by an exception are EXCEPTION events on every CPython, 3.12 included.

CPython 3.12 calls a C profile function with ``return None`` where 3.11 and
3.13+ pass NULL (``atf2.kernels.exception_exit``); these cases cover each
way the hook tells them apart there (the last instruction; at a yield, the
generator's state), and run unchanged on every version: the expected events
are the same everywhere.
"""

from __future__ import annotations

import asyncio
import ctypes
import sys

import pytest
from test_tracer import main_thread, run_traced, thread_events

from atf2 import exception_exits
from atf2.kernels.exception_exit import NEEDED
from atf2.layout import EVENT_CALL, EVENT_EXCEPTION, EVENT_RETURN
from atf2.tracer import exception_exits_reported


def returns_none():
    return None


def falls_off_the_end():
    pass


def raises():
    raise KeyError("k")


def reraises_from_finally():
    try:
        raises()
    finally:
        returns_none()


def yields_none():
    yield
    yield None


def yields_in_try():
    try:
        yield 1
    finally:
        returns_none()


async def awaits_then_raises():
    await asyncio.sleep(0)  # suspends with None
    raise OSError("late")


def _kinds(reader, name):
    return [kind for kind, _, qualname in thread_events(reader, main_thread(reader)) if qualname == name]


def test_the_probe_finds_what_this_interpreter_needs():
    assert exception_exits_reported()
    flags = exception_exits.hook_flags()
    if NEEDED:  # 3.12: None for an unwind, and the generator state byte located
        assert exception_exits.unwind_reported_as_none()
        assert flags >> 16 != 0
    else:
        assert not exception_exits.unwind_reported_as_none()
        assert flags == 0


def test_the_generator_state_byte_follows_the_generator():
    """The byte 3.12's hook reads (found the same way on 3.11 and 3.13): equal to the
    probe's value while the generator runs, different when created and suspended."""
    state = exception_exits._generator_state_byte()
    if state is None and sys.version_info >= (3, 14):
        pytest.skip("not found on this CPython (only 3.12 needs it)")
    offset, running = state

    def byte(obj):
        return ctypes.c_uint8.from_address(id(obj) + offset).value

    def gen():
        yield byte(me[0])

    me = [gen()]
    assert byte(me[0]) != running
    assert next(me[0]) == running
    assert byte(me[0]) != running


def test_returns_of_none_stay_returns(tmp_path):
    def body():
        returns_none()
        falls_off_the_end()
        return list(yields_none())

    reader, result = run_traced(tmp_path, body)
    assert result == [None, None]
    assert _kinds(reader, "returns_none") == [EVENT_CALL, EVENT_RETURN]
    assert _kinds(reader, "falls_off_the_end") == [EVENT_CALL, EVENT_RETURN]
    # two suspensions with None, then the final return (StopIteration)
    assert _kinds(reader, "yields_none") == [EVENT_CALL, EVENT_RETURN] * 3


def test_raise_and_reraise_are_exceptions(tmp_path):
    def body():
        for f in (raises, reraises_from_finally):
            try:
                f()
            except KeyError:
                pass

    reader, _ = run_traced(tmp_path, body)
    assert _kinds(reader, "raises") == [EVENT_CALL, EVENT_EXCEPTION] * 2
    assert _kinds(reader, "reraises_from_finally") == [EVENT_CALL, EVENT_EXCEPTION]
    assert _kinds(reader, "returns_none") == [EVENT_CALL, EVENT_RETURN]


def test_exceptions_thrown_into_generators(tmp_path):
    def body():
        g = yields_none()
        next(g)
        with pytest.raises(TypeError):
            g.throw(TypeError)  # leaves from the yield it was suspended at
        with pytest.raises(TypeError):
            yields_none().throw(TypeError)  # thrown in before its first instruction
        g = yields_in_try()
        next(g)
        with pytest.raises(ValueError):
            g.throw(ValueError)  # through its finally: a re-raise
        g = yields_in_try()
        next(g)
        g.close()  # GeneratorExit through its finally (every version runs the frame for it)

    reader, _ = run_traced(tmp_path, body)
    # 3.12 reports a throw into a just-created generator too (as CALL, then unwind)
    started = [EVENT_CALL, EVENT_RETURN, EVENT_CALL, EVENT_EXCEPTION]
    assert _kinds(reader, "yields_none") in (started, started + [EVENT_CALL, EVENT_EXCEPTION])
    assert _kinds(reader, "yields_in_try") == [EVENT_CALL, EVENT_RETURN, EVENT_CALL, EVENT_EXCEPTION] * 2


def test_coroutine_suspended_with_none_then_raising(tmp_path):
    def body():
        with pytest.raises(OSError):
            asyncio.run(awaits_then_raises())

    reader, _ = run_traced(tmp_path, body)
    assert _kinds(reader, "awaits_then_raises") == [EVENT_CALL, EVENT_RETURN, EVENT_CALL, EVENT_EXCEPTION]
