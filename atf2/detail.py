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

import struct

from .layout import (
    PAYLOAD_F_ARGS_TRUNCATED,
    PAYLOAD_F_STACK_TRUNCATED,
    PAYLOAD_HEADER_STRUCT,
    PAYLOAD_MAX_STACK,
    PAYLOAD_STACK_ENTRY_STRUCT,
    PAYLOAD_TAG_STRUCT,
    PAYLOAD_VAL_UNBOUND,
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
        self._info: dict = {}  # code object -> (function id, recorded parameter names, declared count, flag)
        self._pending: dict = {}  # id(frame) of a running call -> its caller stack (reused at RETURN)
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

    def _stack(self, frame, fid: int) -> tuple:
        """(packed caller ids, how many, STACK_TRUNCATED flag or 0, chain) of a frame being called.

        ``chain``: the frame's own id then up to K + 1 callers' (K + 1: to tell
        truncation). Taken from the calling frame's chain when that call is
        running under capture (one dict lookup), else by walking ``f_back``.
        """
        k = self._k
        parent = self._pending.get(id(frame.f_back))
        if parent is not None:
            chain = ((fid,) + parent[3])[: k + 2]
        else:
            fids = [fid]
            f = frame.f_back
            get = self._fids.get
            while f is not None and len(fids) < k + 2:
                code = f.f_code
                caller = get(code)
                fids.append(caller if caller is not None else self._fid(code, f))
                f = f.f_back
            chain = tuple(fids)
        callers = chain[1 : k + 1]
        return _STACK_STRUCTS[len(callers)].pack(*callers), len(callers), PAYLOAD_F_STACK_TRUNCATED if len(chain) > k + 1 else 0, chain

    def _code_info(self, code, frame) -> tuple:
        names = code_params(code)
        kept = names[: self._max_args]
        info = (self._fid(code, frame), kept, len(names), PAYLOAD_F_ARGS_TRUNCATED if len(kept) < len(names) else 0)
        self._info[code] = info
        return info

    def _capture(self, frame, kind, value):
        """(frame, EVENT_*, return value or None) -> payload bytes; called by the hook.

        The hot path of detail capture: one cached lookup per code object,
        the caller ids computed at CALL and reused at the matching RETURN, one
        struct pack for the header, the encoder's fast paths for the values.
        """
        code = frame.f_code
        info = self._info.get(code)
        if info is None:
            info = self._code_info(code, frame)
        fid, names, nparams, aflag = info
        value_of = self.encoder.value
        if kind == EVENT_CALL:
            stack = self._pending[id(frame)] = self._stack(frame, fid)
            if names:
                local = frame.f_locals
                values = b"".join([_UNBOUND_BYTES if v is _MISSING else value_of(v) for v in map(local.get, names, _MISSINGS)])
            else:
                values = b""
            return _HEADER.pack(fid, EVENT_CALL, len(names), stack[1], aflag | stack[2], nparams) + stack[0] + values
        stack = self._pending.pop(id(frame), None)
        if stack is None:  # a call that started before capture did
            stack = self._stack(frame, fid)
        if kind == EVENT_RETURN:
            return _HEADER.pack(fid, EVENT_RETURN, 1, stack[1], stack[2], 0) + stack[0] + value_of(value)
        # EXCEPTION: CPython stashes the exception away while a profile
        # function runs (3.11 call_trace_protected), so neither the hook nor
        # Python can see it: recorded as type "<unavailable>".
        return _HEADER.pack(fid, EVENT_EXCEPTION, 1, stack[1], stack[2], 0) + stack[0] + self.encoder.exception_value(None, None)


_HEADER = struct.Struct(PAYLOAD_HEADER_STRUCT)
_STACK_STRUCTS = [struct.Struct("<" + PAYLOAD_STACK_ENTRY_STRUCT.lstrip("<") * k) for k in range(PAYLOAD_MAX_STACK + 1)]
_UNBOUND_BYTES = struct.pack(PAYLOAD_TAG_STRUCT, PAYLOAD_VAL_UNBOUND)


_MISSING = object()
_MISSINGS = [_MISSING] * 256  # map(local.get, names, _MISSINGS): a default per name


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
