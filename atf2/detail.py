"""Python detail capture for ``detail="always"`` and ``detail="flight"`` sessions.

The detail variant of the capture hook (``atf2.kernels.detail_hook``)
builds the payload of every Python CALL, RETURN and EXCEPTION of a traced
thread in nopython code (``atf2/PAYLOAD.md``: the function id, the first
arguments read from the frame, the return value or the exception, the ids of
up to K callers) and pushes it into the thread's detail arena; the index
lane is the hook's as usual. ``DetailCapture`` is its Python side: the
per-thread blocks it reads, the code-info table, and the callbacks it falls
back to (first sight of a code object, values other than the inline kinds,
exceptions). With ``detail="off"`` none of this is installed and the
index-only hook runs unchanged.

``mark(reason)``: a flight-recorder trigger from the program. When the
session traces Python, the call of ``mark`` is itself the marker event (its
CALL detail carries ``reason`` as its argument); otherwise ``mark`` emits the
same CALL/RETURN pair explicitly.
"""

from __future__ import annotations

import ctypes
import struct
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from .layout import (
    CTRL_DETAIL_RING_BYTES,
    CTRL_HOOK_DETAIL,
    CTRL_INDEX_WRITE_POS,
    DETAIL_CALL_ABSORB_FN,
    DETAIL_CALL_ARGS_FN,
    DETAIL_CALL_EXC_FN,
    DETAIL_CALL_FALSE,
    DETAIL_CALL_FRAME_OFFSET,
    DETAIL_CALL_HEADS,
    DETAIL_CALL_INFO_FN,
    DETAIL_CALL_INFO_MASK,
    DETAIL_CALL_INFO_TABLE,
    DETAIL_CALL_LINES_NAME,
    DETAIL_CALL_LOCALS_OFFSET,
    DETAIL_CALL_NONE,
    DETAIL_CALL_REPR_CAP,
    DETAIL_CALL_SCRATCH,
    DETAIL_CALL_SCRATCH_BYTES,
    DETAIL_CALL_SLOTS,
    DETAIL_CALL_SLOW_FN,
    DETAIL_CALL_SLOW_TICKS,
    DETAIL_CALL_STACK_DEPTH,
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
    DETAIL_CALL_VALUE_FN,
    DETAIL_FUNCTION_CALL,
    DETAIL_INFO_NPARAMS_SHIFT,
    DETAIL_INFO_TRUNCATED,
    DETAIL_PAYLOAD_VERSION,
    DETAIL_TYPE_HEAD_LEN_SHIFT,
    DETAIL_TYPE_PYTHON,
    EVENT_CALL,
    EVENT_RETURN,
    PAYLOAD_TAG_STRUCT,
    PAYLOAD_U32_MAX,
    PAYLOAD_VAL_UNBOUND,
)
from .payload import REPRLIB_TYPES, PayloadEncoder, PayloadOptions, code_params

if TYPE_CHECKING:
    import argparse

    from .flight import FlightOptions
    from .flight_writer import FlightWriter
    from .rings import ThreadChannel
    from .session import Session
    from .symbols import SymbolTable

DETAIL_MODES = ("off", "always", "flight")


def parse_detail_mode(detail: Any) -> tuple[bool, str]:
    """(detail lane allocated at registration, mode) from a session's ``detail`` option.

    "off" (the default): no detail lane; a thread gets one lazily on its
    first explicit ``emit(..., detail=...)``. False: no detail lane at all
    (an explicit detail is refused). "always" / "flight": the lane, Python
    arguments captured. True: the lane for explicit details only, allocated
    for every thread at registration, no Python capture (mode "emit").
    """
    if detail is True:
        return True, "emit"
    if detail is False or detail == "off":
        return False, "off"
    if detail in ("always", "flight"):
        return True, detail
    from .errors import AtfV2Error

    raise AtfV2Error(f"invalid detail={detail!r}: one of 'off', 'always', 'flight' (or a bool)")


# -- where CPython 3.11-3.13 keep a running frame's parameters -----------------

#: Python versions whose frame layout the hook may read (verified at first use by a probe);
#: 3.14 keeps tagged stack references (_PyStackRef) in those slots: not plain object pointers
_FRAME_LAYOUT_VERSIONS = ((3, 11), (3, 12), (3, 13))
_OBJECT_HEAD_SIZE = object.__basicsize__
_TYPE_OFFSET = _OBJECT_HEAD_SIZE - 8  # ob_type: the last word of PyObject_HEAD
_offsets: tuple | None = None


def _word(address: int) -> int:
    return ctypes.c_uint64.from_address(address).value


def _probe_frame(a: object, b: object, c: object) -> tuple[int, int]:
    return _find_locals(sys._getframe(), a, b, c)


def _find_locals(frame: types.FrameType, a: object, b: object, c: object) -> tuple[int, int]:
    """(offset of the interpreter-frame pointer in a frame object, offset of its
    argument slots), or (0, 0) when this interpreter does not match the layout.

    PyFrameObject is PyObject_HEAD, f_back, f_frame in 3.11 to 3.13 (private
    struct, Include/internal/pycore_frame.h); the interpreter frame's
    ``localsplus`` array starts with the parameters in ``co_varnames`` order.
    Rather than spelling the 3.11 (64) and 3.12/3.13 (72) offsets of
    ``localsplus``, find three known argument objects in a running frame.
    """
    frame_offset = _OBJECT_HEAD_SIZE + 8
    iframe = _word(id(frame) + frame_offset)
    if iframe == 0:
        return 0, 0
    for offset in range(16, 160, 8):
        if _word(iframe + offset) == id(a) and _word(iframe + offset + 8) == id(b) and _word(iframe + offset + 16) == id(c):
            return frame_offset, offset
    return 0, 0


def frame_offsets() -> tuple[int, int]:
    """(frame offset, locals offset) for the hook, (0, 0) to read parameters through Python."""
    global _offsets
    if _offsets is None:
        found = (0, 0)
        if sys.version_info[:2] in _FRAME_LAYOUT_VERSIONS and _word(id(1.5) + _TYPE_OFFSET) == id(float):
            probes = (object(), object(), object())
            found = _probe_frame(*probes)
            # a second, independent probe: the offsets must agree
            if found != _probe_frame(object(), object(), object()):
                found = (0, 0)
        _offsets = found
    return _offsets


class DetailCapture:
    """Per-session state of the detail hook: code-info table, fallback callables, per-thread blocks.

    The hook (``atf2.kernels.detail_hook``) builds payloads itself; Python is
    called only for the first event of each code object (``code_info``), for
    values it does not encode inline (``PayloadEncoder.value``), for exceptions
    (``PayloadEncoder.exception_value``), and for CALL values when the frame
    layout is unknown (``call_values``).
    """

    def __init__(self, symbols: SymbolTable, options: PayloadOptions | None = None) -> None:
        from .kernels.detail_hook import bootstrap_hook_detail, capture_hook_detail, exception_trace_hook

        self.symbols = symbols
        self.encoder = PayloadEncoder(options)
        self.hook_address = capture_hook_detail.address
        self.bootstrap_address = bootstrap_hook_detail.address
        self.trace_address = exception_trace_hook.address
        self.frame_offset, self.locals_offset = frame_offsets()
        # Bound methods are created per attribute access: the blocks hold raw
        # addresses, so keep one of each alive for the session.
        self._value_fn = self.encoder.value
        self._exception_fn = self.encoder.exception_value
        self._info_fn = self.code_info
        self._args_fn = self.call_values
        self._type_fn = self.type_info
        self._slow_fn = self.slow_repr
        self._lock = threading.RLock()
        self._codes = _Table(1024)  # code address -> DETAIL_INFO_* word
        self._types = _Table(256)  # type address -> DETAIL_TYPE_* word
        self._heads = np.zeros(_HEADS_BYTES, dtype=np.uint8)  # OBJECT tag + packed type name, per type
        self._heads_used = 0
        rate = _ticks_per_ns()
        self._slow_ticks = int(self.encoder.options.slow_repr_ns * rate)
        self.watchdog = ReprWatchdog(int(self.encoder.options.repr_timeout_ns * rate))
        self.watchdog.warm_up()
        from .kernels.detail_hook import close_blocks

        close_blocks(np.zeros(0, dtype=np.uint64))  # compiled (or loaded) now, not at stop
        self._pinned: list = []  # code objects and types whose addresses are table keys
        self._names: dict = {}  # code object -> recorded parameter names (call_values)
        self._blocks: list = []  # per-thread blocks and scratch buffers, alive while the session is
        self._traced: list = []  # control blocks given to the exception trace hook (its obj)
        self._max_args = self.encoder.options.max_args

    # -- per thread ------------------------------------------------------------

    def prepare(self, ctrl: np.ndarray) -> None:
        """Give a thread's control block its detail block (tracer, in that thread).

        Also installs the exception trace hook on the calling thread, unless
        a trace function (a debugger, coverage) is already there: that one
        is left alone, and the thread's EXCEPTION payloads say "<unavailable>".
        """
        scratch = np.zeros(max(4096, int(ctrl[CTRL_DETAIL_RING_BYTES])), dtype=np.uint8)
        block = np.zeros(DETAIL_CALL_SLOTS, dtype=np.uint64)
        block[DETAIL_CALL_NONE] = id(None)
        block[DETAIL_CALL_TRUE] = id(True)
        block[DETAIL_CALL_FALSE] = id(False)
        block[DETAIL_CALL_T_INT] = id(int)
        block[DETAIL_CALL_T_FLOAT] = id(float)
        block[DETAIL_CALL_T_STR] = id(str)
        block[DETAIL_CALL_T_BYTES] = id(bytes)
        block[DETAIL_CALL_T_CELL] = id(_CELL_TYPE)
        block[DETAIL_CALL_VALUE_FN] = id(self._value_fn)
        block[DETAIL_CALL_INFO_FN] = id(self._info_fn)
        block[DETAIL_CALL_ARGS_FN] = id(self._args_fn)
        block[DETAIL_CALL_EXC_FN] = id(self._exception_fn)
        block[DETAIL_CALL_SCRATCH] = scratch.ctypes.data
        block[DETAIL_CALL_SCRATCH_BYTES] = scratch.size
        block[DETAIL_CALL_LOCALS_OFFSET] = self.locals_offset
        block[DETAIL_CALL_FRAME_OFFSET] = self.frame_offset
        block[DETAIL_CALL_TEXT_CAP] = self.encoder.options.text_cap
        block[DETAIL_CALL_STACK_DEPTH] = self.encoder.options.stack_depth
        block[DETAIL_CALL_TYPE_OFFSET] = _TYPE_OFFSET
        block[DETAIL_CALL_LINES_NAME] = id(_F_TRACE_LINES)
        block[DETAIL_CALL_TYPE_FN] = id(self._type_fn)
        block[DETAIL_CALL_SLOW_FN] = id(self._slow_fn)
        block[DETAIL_CALL_HEADS] = self._heads.ctypes.data
        block[DETAIL_CALL_REPR_CAP] = self.encoder.options.repr_cap
        block[DETAIL_CALL_SLOW_TICKS] = self._slow_ticks
        block[DETAIL_CALL_THREAD_IDENT] = threading.get_ident()  # prepare runs in the thread itself
        block[DETAIL_CALL_ABSORB_FN] = id(_absorb_timeout)
        with self._lock:
            self._publish(block)
            self._blocks.append((block, scratch))
            self.watchdog.watch(block)
        ctrl[CTRL_HOOK_DETAIL] = block.ctypes.data
        if sys.gettrace() is None:
            _set_trace(self.trace_address, ctrl)
            self._traced.append(ctrl)

    def release(self, ctrl: np.ndarray) -> None:
        ctrl[CTRL_HOOK_DETAIL] = 0

    def close(self) -> None:
        """Tracing stopped (the tracer, in the stopping thread): remove the exception
        trace hook from this thread and drop the exceptions the blocks still hold.

        Other threads' trace hooks remove themselves at their next event once
        their capture is off (``exception_trace_hook``).
        """
        current = sys.gettrace()
        if isinstance(current, np.ndarray) and any(current is ctrl for ctrl in self._traced):
            sys.settrace(None)
        self._traced.clear()
        self.watchdog.stop()
        from .kernels.detail_hook import close_blocks

        with self._lock:
            close_blocks(np.array([block.ctypes.data for block, _ in self._blocks], dtype=np.uint64))

    def _publish(self, block: npt.NDArray[np.uint64]) -> None:
        block[DETAIL_CALL_INFO_TABLE] = self._codes.array.ctypes.data
        block[DETAIL_CALL_INFO_MASK] = self._codes.capacity - 1
        block[DETAIL_CALL_TYPE_TABLE] = self._types.array.ctypes.data
        block[DETAIL_CALL_TYPE_MASK] = self._types.capacity - 1

    def _insert(self, table: _Table, key: int, value: int, pin: object) -> None:  # pragma: no cover - hook callback
        """Add to one of the hook's tables (under the lock); a grown table is published to every block."""
        if table.insert(key, value):
            for block, _ in self._blocks:
                self._publish(block)
        self._pinned.append(pin)

    # -- callbacks of the hook -------------------------------------------------

    def code_info(self, frame: types.FrameType) -> int:  # pragma: no cover - a hook callback (see setup.cfg)
        """First event of a code object: its recorded parameters, packed for the hook's table."""
        code = frame.f_code
        names = code_params(code)
        kept = names[: self._max_args]
        info = len(kept) | (DETAIL_INFO_TRUNCATED if len(kept) < len(names) else 0)
        info |= min(len(names), PAYLOAD_U32_MAX) << DETAIL_INFO_NPARAMS_SHIFT
        self._names[code] = kept
        with self._lock:
            self._insert(self._codes, id(code), info, code)
        return info

    def type_info(self, obj: object) -> int:  # pragma: no cover - a hook callback (see setup.cfg)
        """First value of a type the hook does not encode inline: its OBJECT head, or "use PayloadEncoder.value".

        Builtin containers go to the encoder (its reprlib bounds for big or
        deep ones), as do types on the slow-repr skip list.
        """
        t = type(obj)
        info = DETAIL_TYPE_PYTHON
        if t not in REPRLIB_TYPES and t not in self.encoder.slow_types:
            head = self.encoder.object_head(t)
            with self._lock:
                start = self._heads_used
                if start + len(head) <= self._heads.size:
                    self._heads[start : start + len(head)] = np.frombuffer(head, dtype=np.uint8)
                    self._heads_used = start + len(head)
                    info = start | (len(head) << DETAIL_TYPE_HEAD_LEN_SHIFT)
        with self._lock:
            self._insert(self._types, id(t), info, t)
        return info

    def slow_repr(self, t: type) -> None:  # pragma: no cover - a hook callback (see setup.cfg)
        """The hook timed a repr of type ``t`` above ``slow_repr_ns``: skip its repr from now on."""
        self.encoder.slow_types.add(t)
        with self._lock:
            self._insert(self._types, id(t), DETAIL_TYPE_PYTHON, t)

    def call_values(self, frame: types.FrameType) -> bytes:  # pragma: no cover - a hook callback (see setup.cfg)
        """CALL values read through ``frame.f_locals`` (when the hook cannot read the frame itself)."""
        names = self._names.get(frame.f_code)
        if names is None:
            names = code_params(frame.f_code)[: self._max_args]
        if not names:
            return b""
        value_of = self.encoder.value
        local = frame.f_locals
        return b"".join([_UNBOUND_BYTES if v is _MISSING else value_of(v) for v in map(local.get, names, _MISSINGS)])


class ReprWatchdog:
    """One thread per session that bounds the user code the detail hook runs (reprs).

    The hook stamps ``DETAIL_CALL_USER_START`` before a repr (or a fallback
    into ``PayloadEncoder``) and clears it after. Every ``period`` seconds
    this thread raises ``ReprTimeout`` (``PyThreadState_SetAsyncExc``) in
    each thread whose stamp is older than the budget; the repr fails, the
    hook records the event (its type then skipped as slow), and cancels the
    exception if it was not delivered yet, so it never reaches the program.
    Limits: the exception is delivered when the repr runs Python bytecode; a
    repr blocked in C (``time.sleep``, a lock, a C loop) is only interrupted
    when that call returns. The thread is named ``atf2-...`` so the tracer
    never traces it.
    """

    def __init__(self, budget_ticks: int, period: float = 0.05):
        self.budget = max(1, int(budget_ticks))
        self.period = period
        self.interrupts = 0
        self._addresses = np.zeros(0, dtype=np.uint64)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, block: np.ndarray) -> None:
        """Watch a thread's detail block (its owner keeps it alive); starts the thread once."""
        self._addresses = np.append(self._addresses, np.uint64(block.ctypes.data))
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="atf2-repr-watchdog", daemon=True)
            self._thread.start()

    def warm_up(self) -> None:
        """Compile (or load) the check now, not in the watchdog thread while a repr hangs."""
        from .kernels.detail_hook import interrupt_overdue
        from .payload import ReprTimeout

        interrupt_overdue(np.zeros(0, dtype=np.uint64), np.uint64(0), np.uint64(1), np.uint64(id(ReprTimeout)))

    def _run(self) -> None:
        from .clock import ticks_py
        from .kernels.detail_hook import interrupt_overdue
        from .payload import ReprTimeout

        while not self._stop.wait(self.period):
            self.interrupts += int(interrupt_overdue(self._addresses, np.uint64(ticks_py()), np.uint64(self.budget), np.uint64(id(ReprTimeout))))

    def stop(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()


def _absorb_timeout() -> None:  # pragma: no cover - a hook callback (see setup.cfg)
    """Take a ReprTimeout the watchdog raised in this thread after its repr had returned."""
    from .payload import ReprTimeout

    for _ in range(2):
        try:
            for _ in range(2):  # backward jumps: where the eval loop delivers it
                pass
        except ReprTimeout:
            return


class _Table:
    """One of the hook's lookup tables (``atf2.kernels.codetable``), grown by rehashing."""

    def __init__(self, capacity: int):
        from .kernels.codetable import new_table

        self.capacity = capacity
        self.array = new_table(capacity)
        self.count = 0
        self.retired: list = []  # replaced arrays: a hook may still be reading one

    def insert(self, key: int, value: int) -> bool:  # pragma: no cover - a hook callback (see setup.cfg)
        """Store ``key -> value``; True when the array was replaced (publish it)."""
        from .kernels.codetable import new_table, table_insert, table_lookup, table_rehash

        grew = False
        if int(table_lookup(self.array, self.capacity - 1, key)) == _MISSING_WORD:
            if 2 * (self.count + 1) > self.capacity:
                capacity = self.capacity * 2
                array = new_table(capacity)
                table_rehash(self.array, array, capacity - 1)
                self.retired.append(self.array)
                self.array, self.capacity = array, capacity
                grew = True
            self.count += 1
        table_insert(self.array, self.capacity - 1, key, value)
        return grew


_MISSING_WORD = 0xFFFFFFFFFFFFFFFF
#: bytes for the OBJECT heads (tag + type name) of the types seen by a session; later types go to Python
_HEADS_BYTES = 1 << 20


def _ticks_per_ns() -> float:
    """The hook's clock rate (``atf2.clock.ticks``), measured over a millisecond or two."""
    from .clock import ticks_py

    t0, n0 = ticks_py(), time.perf_counter_ns()
    time.sleep(0.002)
    t1, n1 = ticks_py(), time.perf_counter_ns()
    return max(1e-3, (t1 - t0) / max(1, n1 - n0))


def _cell_type() -> type:
    x = 0

    def inner() -> int:
        return x

    assert inner.__closure__ is not None  # it closes over x
    return type(inner.__closure__[0])


_CELL_TYPE = _cell_type()
_set_trace_c = ctypes.pythonapi.PyEval_SetTrace
_set_trace_c.argtypes = (ctypes.c_void_p, ctypes.py_object)
_set_trace_c.restype = None


def _set_trace(address: int, obj: object) -> None:
    _set_trace_c(address, obj)


_F_TRACE_LINES = sys.intern("f_trace_lines")
_UNBOUND_BYTES = struct.pack(PAYLOAD_TAG_STRUCT, PAYLOAD_VAL_UNBOUND)


_MISSING = object()
_MISSINGS = [_MISSING] * 256  # map(local.get, names, _MISSINGS): a default per name


def _tracing() -> bool:
    from .tracer import tracing_active

    return tracing_active()


def mark_function_id(session: Session) -> int:
    """The function id of ``mark`` in ``session`` (the same the tracer gives its code)."""
    return session.symbols.register_code(mark.__code__, __name__)


def mark(reason: str = "") -> None:
    """Open a flight-recorder window here (``detail="flight"``); a no-op without a session.

    With Python tracing on, this call is itself the marker event (its CALL
    detail holds ``reason``); otherwise a CALL/RETURN pair of this function
    is emitted, with ``reason`` in the CALL's detail when the session has a
    detail lane.
    """
    from .session import active_session

    session = active_session()
    if session is None or _tracing():
        return
    fid = mark_function_id(session)
    ch = session._channel()
    if ch is None:
        return
    from .kernels.ring import detail_ring_push, emit_one, make_kind_depth

    if ch.has_detail_lane:
        # Not session.emit(detail=...): that records an opaque payload (flags 0).
        payload = np.frombuffer(PayloadEncoder().call(fid, [reason], 1), dtype=np.uint8)
        detail_ring_push(ch.ctrl, ch.detail_words, ch.detail_bytes, ch.ctrl[CTRL_INDEX_WRITE_POS],
                         DETAIL_FUNCTION_CALL, DETAIL_PAYLOAD_VERSION, payload, 0, len(payload))
    emit_one(ch.ctrl, ch.index_pool, np.uint64(fid), make_kind_depth(EVENT_CALL, 0))
    emit_one(ch.ctrl, ch.index_pool, np.uint64(fid), make_kind_depth(EVENT_RETURN, 0))


# -- session glue (flight mode) -------------------------------------------------


def symbol_matcher(session: Session, options: FlightOptions) -> Callable[[int], bool]:
    """fid -> whether its CALL is a symbol trigger (qualname, name or module.qualname matches)."""
    symbols = session.symbols

    def matches(fid: int) -> bool:
        s = symbols.lookup(fid)
        if s is None:
            return False
        modules = {mid: name for name, mid in list(symbols._module_ids.items())}
        module = modules.get(s.module_id)
        return options.matches_symbol(s.qualname, s.name, f"{module}.{s.qualname}" if module else None)

    return matches


def make_flight_writer(session: Session, channel: ThreadChannel) -> FlightWriter:
    """The FlightWriter that stands between ``channel``'s drain and its ThreadWriter."""
    from .flight_writer import FlightWriter

    options = session.flight_options
    assert options is not None  # only flight-mode sessions make flight writers
    writer = channel.writer
    assert writer is not None and not isinstance(writer, FlightWriter)  # the ThreadWriter just opened
    return FlightWriter(
        writer, channel.ctrl, channel.thread_id, options, symbol_matcher(session, options),
        {mark_function_id(session)}, session.config.detail_pool_bytes,
    )


def session_windows(session: Session) -> list[dict[str, Any]]:
    """The manifest ``windows`` of a session: every finished window of every thread, by start time."""
    from .flight_writer import FlightWriter

    windows = []
    for ch in session._snapshot():
        if isinstance(ch.writer, FlightWriter):
            windows.extend(ch.writer.windows)
    return sorted(windows, key=lambda w: (w["start_ns"], w["thread_id"]))


# -- `atf2 record` flags ---------------------------------------------------------


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    """--detail MODE, --trigger ..., --pre-roll N[unit], --post-roll N[unit] (atf2 record)."""
    parser.add_argument("--detail", choices=DETAIL_MODES, default="off",
                        help="Python argument/return capture: off (default), always, or flight (kept only around triggers)")
    parser.add_argument("--trigger", action="append", default=[], metavar="SPEC",
                        help="flight mode trigger: symbol=PATTERN (fnmatch, at CALL), exception, or mark; repeatable")
    parser.add_argument("--pre-roll", default="1000", metavar="N[ms]",
                        help="flight mode: events (N) or time (Nms, Nus, Ns) kept before a trigger (default 1000)")
    parser.add_argument("--post-roll", default="1000", metavar="N[ms]",
                        help="flight mode: events or time kept after a trigger (default 1000)")


def record_session_options(args: argparse.Namespace) -> dict[str, Any]:
    """Session options from the flags of ``add_record_arguments``.

    Plain JSON values (``flight`` as the keyword arguments of
    ``FlightOptions.from_triggers``, checked here), so the same options also
    reach ``atf2 record``'s multiprocessing children through the environment.
    """
    from .errors import AtfV2Error
    from .flight import FlightOptions

    mode = getattr(args, "detail", "off")
    if mode != "flight":
        if getattr(args, "trigger", None):
            raise AtfV2Error("--trigger needs --detail flight")
        return {"detail": mode}
    flight = {"triggers": list(args.trigger), "pre_roll": args.pre_roll, "post_roll": args.post_roll}
    FlightOptions.from_triggers(**flight)  # bad flags fail here, not in each child
    return {"detail": mode, "flight": flight}
