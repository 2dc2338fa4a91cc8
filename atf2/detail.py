"""Python detail capture for ``detail="always"`` and ``detail="flight"`` sessions.

``DetailCapture`` is what the detail variant of the capture hook
(``atf2.kernels.detail_hook``) calls on every Python CALL and RETURN of a
traced thread: it turns the frame into a payload (``atf2.payload``): the
function id, the first arguments read from the frame, the return value, the
ids of up to K callers. The hook pushes the bytes into the thread's detail
arena; the index lane is the hook's as usual. With ``detail="off"`` none of
this is installed and the index-only hook runs unchanged.

``mark(reason)``: a flight-recorder trigger from the program. When the
session traces Python, the call of ``mark`` is itself the marker event (its
CALL detail carries ``reason`` as its argument); otherwise ``mark`` emits the
same CALL/RETURN pair explicitly.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .layout import (
    CTRL_HOOK_DETAIL,
    CTRL_INDEX_WRITE_POS,
    DETAIL_CALL_CALLABLE,
    DETAIL_CALL_KIND_OBJS,
    DETAIL_CALL_NONE,
    DETAIL_CALL_SLOTS,
    DETAIL_FUNCTION_CALL,
    DETAIL_PAYLOAD_VERSION,
    EVENT_CALL,
    EVENT_EXCEPTION,
    EVENT_RETURN,
)
from .payload import UNBOUND, PayloadEncoder, PayloadOptions, code_params

DETAIL_MODES = ("off", "always", "flight")


def parse_detail_mode(detail: Any) -> "tuple[bool, str]":
    """(detail lane on, mode) from a session's ``detail`` option.

    "off" / False: no detail lane. "always" / "flight": the lane, Python
    arguments captured. True (the historical default): the lane for explicit
    ``emit(detail=...)`` only, no Python capture (mode "emit").
    """
    if detail is True:
        return True, "emit"
    if detail is False or detail == "off":
        return False, "off"
    if detail in ("always", "flight"):
        return True, detail
    from .errors import AtfV2Error

    raise AtfV2Error(f"invalid detail={detail!r}: one of 'off', 'always', 'flight' (or a bool)")


class DetailCapture:
    """Builds the payload of each traced Python event; one per session."""

    def __init__(self, symbols, options: Optional[PayloadOptions] = None):
        from .kernels.detail_hook import capture_hook_detail

        self.symbols = symbols
        self.encoder = PayloadEncoder(options)
        self.hook_address = capture_hook_detail.address
        self._fids: dict = {}  # code object -> function id (code objects pinned while tracing)
        self._params: dict = {}  # code object -> parameter names
        self._callback = self._capture  # one bound method, kept alive: its address is in the blocks
        self._blocks: list = []  # per-thread call blocks, alive while the session is
        self._k = self.encoder.options.stack_depth
        self._max_args = self.encoder.options.max_args

    def prepare(self, ctrl: np.ndarray) -> None:
        """Give a thread's control block its detail call block (tracer, per thread)."""
        block = np.zeros(DETAIL_CALL_SLOTS, dtype=np.uint64)
        for i, kind in enumerate((EVENT_CALL, EVENT_RETURN, EVENT_EXCEPTION)):
            block[DETAIL_CALL_KIND_OBJS + i] = id(kind)  # small ints: cached, never freed
        block[DETAIL_CALL_NONE] = id(None)
        block[DETAIL_CALL_CALLABLE] = id(self._callback)
        self._blocks.append(block)
        ctrl[CTRL_HOOK_DETAIL] = block.ctypes.data

    def release(self, ctrl: np.ndarray) -> None:
        ctrl[CTRL_HOOK_DETAIL] = 0

    def _fid(self, code, frame) -> int:
        fid = self._fids.get(code)
        if fid is None:
            module = frame.f_globals.get("__name__")  # the tracer's rule: same key, same id
            fid = self.symbols.register_code(code, module if isinstance(module, str) else None)
            self._fids[code] = fid
        return fid

    def _capture(self, frame, kind, value):
        """(frame, EVENT_*, return value or None) -> payload bytes; called by the hook."""
        enc = self.encoder
        if enc.in_repr:
            return None
        code = frame.f_code
        fid = self._fid(code, frame)
        stack = []
        f = frame.f_back
        while f is not None and len(stack) < self._k + 1:  # one more: tells "truncated"
            stack.append(self._fid(f.f_code, f))
            f = f.f_back
        if kind == EVENT_CALL:
            names = self._params.get(code)
            if names is None:
                names = self._params[code] = code_params(code)
            if names:
                local = frame.f_locals
                args = [local.get(n, UNBOUND) for n in names[: self._max_args]]
            else:
                args = []
            return enc.call(fid, args, len(names), stack)
        if kind == EVENT_RETURN:
            return enc.return_(fid, value, stack)
        # EXCEPTION: CPython stashes the exception away while a profile
        # function runs (3.11 call_trace_protected), so neither the hook nor
        # Python can see it: recorded as type "<unavailable>".
        return enc.exception(fid, None, None, stack)


def _tracing() -> bool:
    from .tracer import tracing_active

    return tracing_active()


def mark_function_id(session) -> int:
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


def symbol_matcher(session, options) -> "Any":
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


def make_flight_writer(session, channel):
    """The FlightWriter that stands between ``channel``'s drain and its ThreadWriter."""
    from .flight_writer import FlightWriter

    options = session.flight_options
    return FlightWriter(
        channel.writer, channel.ctrl, channel.thread_id, options, symbol_matcher(session, options),
        {mark_function_id(session)}, session.config.detail_pool_bytes,
    )


def session_windows(session) -> list:
    """The manifest ``windows`` of a session: every finished window of every thread, by start time."""
    from .flight_writer import FlightWriter

    windows = []
    for ch in session._snapshot():
        if isinstance(ch.writer, FlightWriter):
            windows.extend(ch.writer.windows)
    return sorted(windows, key=lambda w: (w["start_ns"], w["thread_id"]))


# -- `atf2 record` flags ---------------------------------------------------------


def add_record_arguments(parser) -> None:
    """--detail MODE, --trigger ..., --pre-roll N[unit], --post-roll N[unit] (atf2 record)."""
    parser.add_argument("--detail", choices=DETAIL_MODES, default="off",
                        help="Python argument/return capture: off (default), always, or flight (kept only around triggers)")
    parser.add_argument("--trigger", action="append", default=[], metavar="SPEC",
                        help="flight mode trigger: symbol=PATTERN (fnmatch, at CALL), exception, or mark; repeatable")
    parser.add_argument("--pre-roll", default="1000", metavar="N[ms]",
                        help="flight mode: events (N) or time (Nms, Nus, Ns) kept before a trigger (default 1000)")
    parser.add_argument("--post-roll", default="1000", metavar="N[ms]",
                        help="flight mode: events or time kept after a trigger (default 1000)")


def record_session_options(args) -> dict:
    """Session options from the flags of ``add_record_arguments``."""
    from .errors import AtfV2Error
    from .flight import FlightOptions

    mode = getattr(args, "detail", "off")
    if mode != "flight":
        if getattr(args, "trigger", None):
            raise AtfV2Error("--trigger needs --detail flight")
        return {"detail": mode}
    return {"detail": mode, "flight": FlightOptions.from_triggers(args.trigger, args.pre_roll, args.post_roll)}
