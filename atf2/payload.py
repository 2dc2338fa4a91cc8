"""The Python detail payload: encode Python values safely, decode them back.

A detail event recorded for a Python event carries, in its payload, the
function id, a shallow stack of caller ids and typed values: the first
arguments on CALL, the return value on RETURN, the exception type and message
on EXCEPTION. Every byte is described in ``atf2/PAYLOAD.md``; the offsets,
tags and struct formats live in ``atf2.layout`` (section "Python detail
payload"). The payload version travels in the detail event's ``flags`` and
in the manifest (``detail_payload_version``).

Capture must never break or hang the traced program, so the encoder only
runs user code through ``repr`` (and ``str`` of an exception), catches what it
raises, bounds what it returns (``reprlib`` limits for containers, a length
cap for everything) and stops calling ``repr`` for a type whose repr was once
slower than a budget. ``int``, ``float``, ``bool``, ``None``, ``str`` and
``bytes`` (exact types only: a subclass may override anything) are copied
without running any user code.
"""

from __future__ import annotations

import reprlib
import struct
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence, Sized
from dataclasses import dataclass
from typing import Any, NamedTuple

from .errors import AtfV2Error, CorruptFileError
from .layout import (
    DETAIL_PAYLOAD_OPAQUE,
    DETAIL_PAYLOAD_VERSION,
    DETAIL_PAYLOAD_VERSIONS_READ,
    EVENT_CALL,
    EVENT_EXCEPTION,
    EVENT_RETURN,
    PAYLOAD_BIGINT_STRUCT,
    PAYLOAD_F_ARGS_TRUNCATED,
    PAYLOAD_F_STACK_TRUNCATED,
    PAYLOAD_FLOAT_STRUCT,
    PAYLOAD_HEADER_STRUCT,
    PAYLOAD_INT_STRUCT,
    PAYLOAD_MAX_STACK,
    PAYLOAD_MAX_VALUES,
    PAYLOAD_STACK_ENTRY_SIZE,
    PAYLOAD_STACK_ENTRY_STRUCT,
    PAYLOAD_TAG_STRUCT,
    PAYLOAD_TEXT_STRUCT,
    PAYLOAD_TYPE_NAME_STRUCT,
    PAYLOAD_U16_MAX,
    PAYLOAD_U32_MAX,
    PAYLOAD_VAL_BIGINT,
    PAYLOAD_VAL_BYTES,
    PAYLOAD_VAL_EXCEPTION,
    PAYLOAD_VAL_FALSE,
    PAYLOAD_VAL_FLOAT,
    PAYLOAD_VAL_INT,
    PAYLOAD_VAL_NAMES,
    PAYLOAD_VAL_NONE,
    PAYLOAD_VAL_OBJECT,
    PAYLOAD_VAL_REPR_FAILED,
    PAYLOAD_VAL_REPR_SKIPPED,
    PAYLOAD_VAL_STR,
    PAYLOAD_VAL_TRUE,
    PAYLOAD_VAL_UNBOUND,
)

_HEADER = struct.Struct(PAYLOAD_HEADER_STRUCT)
_STACK_ENTRY = struct.Struct(PAYLOAD_STACK_ENTRY_STRUCT)
_TAG = struct.Struct(PAYLOAD_TAG_STRUCT)
_INT = struct.Struct(PAYLOAD_INT_STRUCT)
_FLOAT = struct.Struct(PAYLOAD_FLOAT_STRUCT)
_BIGINT = struct.Struct(PAYLOAD_BIGINT_STRUCT)
_TEXT = struct.Struct(PAYLOAD_TEXT_STRUCT)
_TYPE_NAME = struct.Struct(PAYLOAD_TYPE_NAME_STRUCT)

# Tag and body in one pack (the per-event fast paths)
_TAG_INT = struct.Struct(PAYLOAD_TAG_STRUCT + PAYLOAD_INT_STRUCT.lstrip("<"))
_TAG_FLOAT = struct.Struct(PAYLOAD_TAG_STRUCT + PAYLOAD_FLOAT_STRUCT.lstrip("<"))
_TAG_TEXT = struct.Struct(PAYLOAD_TAG_STRUCT + PAYLOAD_TEXT_STRUCT.lstrip("<"))

# Pre-packed bytes of the body-less tags and of the tag prefixes (the encoder
# builds a payload as a list of bytes and joins it once).
_B_NONE = _TAG.pack(PAYLOAD_VAL_NONE)
_B_FALSE = _TAG.pack(PAYLOAD_VAL_FALSE)
_B_TRUE = _TAG.pack(PAYLOAD_VAL_TRUE)
_B_UNBOUND = _TAG.pack(PAYLOAD_VAL_UNBOUND)
_B_INT = _TAG.pack(PAYLOAD_VAL_INT)
_B_FLOAT = _TAG.pack(PAYLOAD_VAL_FLOAT)

#: type name of an EXCEPTION value whose exception the recorder could not see
EXCEPTION_UNAVAILABLE = "<unavailable>"

_INT64_MIN = -(1 << 63)
_INT64_MAX = (1 << 63) - 1

#: containers whose repr reprlib bounds itself (size and depth), recursion included
REPRLIB_TYPES = _REPRLIB_TYPES = frozenset({list, tuple, dict, set, frozenset, deque})


@dataclass(frozen=True)
class PayloadOptions:
    """Bounds of what one payload holds.

    ``max_args``: arguments recorded on CALL (the first ones, in parameter
    order). ``text_cap``: bytes kept of a str/bytes value. ``repr_cap``:
    characters kept of a repr (and of an exception message). ``stack_depth``:
    caller ids recorded (K). ``slow_repr_ns``: a repr slower than this puts
    its type on the skip list for the rest of the session. ``bigint_cap``:
    bytes kept of an int beyond 64 bits (larger ones are recorded by size).
    ``repr_timeout_ns``: in a traced session, a repr still running after this
    long is interrupted (``ReprTimeout`` raised in it by the session's repr
    watchdog, ``atf2.detail``) and its type skipped from then on.
    """

    max_args: int = 8
    text_cap: int = 128
    repr_cap: int = 256
    stack_depth: int = 4
    slow_repr_ns: int = 2_000_000
    bigint_cap: int = 64
    repr_timeout_ns: int = 1_000_000_000

    def __post_init__(self) -> None:
        for name, low, high in (
            ("max_args", 0, PAYLOAD_MAX_VALUES),
            ("text_cap", 0, PAYLOAD_U32_MAX),
            ("repr_cap", 16, PAYLOAD_U32_MAX),
            ("stack_depth", 0, PAYLOAD_MAX_STACK),
            ("slow_repr_ns", 1, 1 << 62),
            ("bigint_cap", 9, PAYLOAD_U32_MAX),
            ("repr_timeout_ns", 1, 1 << 62),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise AtfV2Error(f"invalid payload option {name}={value!r} (an int in {low}..{high})")


class ReprTimeout(Exception):
    """Raised inside a ``__repr__`` that ran longer than ``PayloadOptions.repr_timeout_ns``."""


# ---------------------------------------------------------------------------
# Decoded values
# ---------------------------------------------------------------------------


class TruncatedStr(str):
    """The first characters of a longer str; ``original_length`` is its full length."""

    original_length: int

    def __new__(cls, prefix: str, original_length: int) -> TruncatedStr:
        self = super().__new__(cls, prefix)
        self.original_length = original_length
        return self

    def __repr__(self) -> str:
        return f"TruncatedStr({str.__repr__(self)}, original_length={self.original_length})"


class TruncatedBytes(bytes):
    """The first bytes of a longer bytes value; ``original_length`` is its full length."""

    original_length: int

    def __new__(cls, prefix: bytes, original_length: int) -> TruncatedBytes:
        self = super().__new__(cls, prefix)
        self.original_length = original_length
        return self

    def __repr__(self) -> str:
        return f"TruncatedBytes({bytes.__repr__(self)}, original_length={self.original_length})"


@dataclass(frozen=True)
class ObjectRepr:
    """A value recorded as its type and text instead of itself.

    ``status``: "repr" (``text`` is the bounded repr), "repr_failed" (repr
    raised; ``text`` is "ErrorType: message"), "repr_skipped" (no repr was
    taken; ``text`` says why: a slow type, an int too large).
    ``original_length``: characters of the full text (saturated at 2**32-1).
    """

    type_name: str
    text: str
    original_length: int
    status: str = "repr"

    @property
    def truncated(self) -> bool:
        return len(self.text) < self.original_length


class _Unbound:
    """Marker of a parameter that had no value in the frame (decoded ``UNBOUND``)."""

    _instance = None

    def __new__(cls) -> _Unbound:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNBOUND"


UNBOUND = _Unbound()


class DecodedPayload(NamedTuple):
    """One decoded Python detail payload.

    ``args``: [(parameter name or None, value)] on CALL, else [].
    ``return_value``: the value on RETURN, else None. ``exception``:
    (type name, message) on EXCEPTION, else None. ``stack``: caller function
    ids, innermost first. ``arg_count``: parameters the function declares.
    """

    version: int
    kind: int
    function_id: int
    args: list
    return_value: Any
    exception: tuple | None
    stack: list
    arg_count: int
    args_truncated: bool
    stack_truncated: bool


# ---------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------


def type_name(obj: Any) -> str:
    """``module.qualname`` of ``type(obj)`` (bare for builtins), never raising."""
    return _class_name_of_type(type(obj))


_ATOMS = frozenset({int, float, bool, type(None)})
_SHORT_TEXT = 64


def _shallow(obj: Any, t: type, depth: int = 1) -> bool:
    """A small builtin container of numbers, short strings and (``depth`` levels of)
    such containers: its builtin repr is short and runs no user code, so it can
    skip reprlib (an order of magnitude slower)."""
    if len(obj) > 16:
        return False
    for v in ((*obj.keys(), *obj.values()) if t is dict else obj):
        tv = type(v)
        if tv in _ATOMS:
            if tv is int and not -(10**18) < v < 10**18:
                return False
        elif tv is str or tv is bytes:
            if len(v) > _SHORT_TEXT:
                return False
        elif not (depth and tv in _REPRLIB_TYPES and _shallow(v, tv, depth - 1)):
            return False
    return True


def _cut_utf8(data: bytes, cap: int) -> bytes:
    """``data[:cap]`` moved back to a UTF-8 character boundary."""
    if len(data) <= cap:
        return data
    cut = cap
    while cut > 0 and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return data[:cut]


def _text(s: str, cap: int) -> bytes:
    """A "text" body of an exact str: original length in characters, at most ``cap`` bytes kept."""
    data = _cut_utf8(s[:cap].encode("utf-8", "surrogatepass"), cap)
    return _TEXT.pack(min(len(s), PAYLOAD_U32_MAX), len(data)) + data


def _type_text(tag: int, tname: str, text: str, cap: int) -> bytes:
    name = _cut_utf8(tname.encode("utf-8", "surrogatepass"), PAYLOAD_U16_MAX)
    return _TAG.pack(tag) + _TYPE_NAME.pack(len(name)) + name + _text(text, cap)


def _safe_str(exc: BaseException) -> str:
    """``str(exc)`` as an exact str, or a note when it fails (user code)."""
    try:
        s = str(exc)
        return s if type(s) is str else str.__str__(s)
    except Exception as err:  # noqa: BLE001 - user __str__ may raise anything; the payload records it
        return f"<str() raised {type_name(err)}>"


class PayloadEncoder:
    """Builds payload bytes; remembers which types have a slow repr.

    One encoder serves a whole session (every thread): the skip list and the
    type-name cache are a set and a dict (updates are atomic under the GIL).
    Called from a profile hook, user code run by ``repr`` is never traced
    (CPython suspends profiling while a profile function runs).
    """

    def __init__(self, options: PayloadOptions | None = None):
        self.options = options or PayloadOptions()
        o = self.options
        r = reprlib.Repr()
        r.maxlevel = 3
        r.maxstring = max(16, min(o.repr_cap, 1 << 16))
        r.maxother = r.maxstring
        r.maxlong = r.maxstring
        self._reprlib = r
        self.slow_types: set = set()
        self._type_prefixes: dict = {}
        self._object_heads: dict = {}  # type -> tag OBJECT + its packed name

    # -- values -------------------------------------------------------------

    def value(self, obj: Any) -> bytes:
        """The typed-value bytes (tag + body) of one Python value."""
        t = type(obj)
        if t is int:
            if _INT64_MIN <= obj <= _INT64_MAX:
                return _TAG_INT.pack(PAYLOAD_VAL_INT, obj)
            return self._bigint(obj)
        if obj is None:
            return _B_NONE
        if t is str:
            cap = self.options.text_cap
            if len(obj) <= cap:
                data = obj.encode("utf-8", "surrogatepass")
                if len(data) <= cap:
                    return _TAG_TEXT.pack(PAYLOAD_VAL_STR, len(obj), len(data)) + data
            return _TAG.pack(PAYLOAD_VAL_STR) + _text(obj, cap)
        if t is bool:
            return _B_TRUE if obj else _B_FALSE
        if t is float:
            return _TAG_FLOAT.pack(PAYLOAD_VAL_FLOAT, obj)
        if t is bytes:
            kept = obj[: self.options.text_cap]
            return _TAG_TEXT.pack(PAYLOAD_VAL_BYTES, min(len(obj), PAYLOAD_U32_MAX), len(kept)) + kept
        return self._object(obj)

    def _bigint(self, obj: int) -> bytes:
        nbytes = obj.bit_length() // 8 + 1  # + sign bit
        if nbytes <= self.options.bigint_cap:
            return _TAG.pack(PAYLOAD_VAL_BIGINT) + _BIGINT.pack(nbytes) + obj.to_bytes(nbytes, "little", signed=True)
        # str(obj) would be quadratic (and refused past 4300 digits): record the size.
        return _type_text(PAYLOAD_VAL_REPR_SKIPPED, "int", f"int of {obj.bit_length()} bits", self.options.repr_cap)

    def _type_prefix(self, t: type, tname: str | None = None) -> bytes:
        """Packed type name of ``t`` (cached per type: names do not change per value)."""
        prefix = self._type_prefixes.get(t)
        if prefix is None:
            name = _cut_utf8((tname or _class_name_of_type(t)).encode("utf-8", "surrogatepass"), PAYLOAD_U16_MAX)
            prefix = _TYPE_NAME.pack(len(name)) + name
            if len(self._type_prefixes) < 4096:
                self._type_prefixes[t] = prefix
        return prefix

    def _object(self, obj: Any) -> bytes:
        t = type(obj)
        cap = self.options.repr_cap
        if t in self.slow_types:
            return _TAG.pack(PAYLOAD_VAL_REPR_SKIPPED) + self._type_prefix(t) + _text("slow repr", cap)
        start = time.perf_counter_ns()
        try:
            text = self._reprlib.repr(obj) if t in _REPRLIB_TYPES and not _shallow(obj, t) else repr(obj)
            if type(text) is not str:  # repr() allows a str subclass: take its plain value
                text = str.__str__(text)
        except Exception as err:  # noqa: BLE001 - user __repr__ may raise anything; the payload records it
            return _TAG.pack(PAYLOAD_VAL_REPR_FAILED) + self._type_prefix(t) + _text(f"{type_name(err)}: {_safe_str(err)}", cap)
        finally:
            if time.perf_counter_ns() - start > self.options.slow_repr_ns:
                self.slow_types.add(t)
        head = self.object_head(t)
        if len(text) <= cap:
            data = text.encode("utf-8", "surrogatepass")
            if len(data) <= cap:
                return head + _TEXT.pack(len(text), len(data)) + data
        return head + _text(text, cap)

    def object_head(self, t: type) -> bytes:
        """Tag OBJECT and the packed type name of ``t`` (cached per type)."""
        head = self._object_heads.get(t)
        if head is None:
            head = _TAG.pack(PAYLOAD_VAL_OBJECT) + self._type_prefix(t)
            if len(self._object_heads) < 4096:
                self._object_heads[t] = head
        return head

    def exception_value(self, exc_type: Any, exc_value: Any) -> bytes:
        """The EXCEPTION value: the exception's type name and its (bounded) message."""
        if exc_type is None and exc_value is None:
            tname = EXCEPTION_UNAVAILABLE  # the hook could not see it (see atf2.detail)
        elif isinstance(exc_type, type):
            tname = type_name(exc_value) if isinstance(exc_value, exc_type) else _class_name(exc_type)
        else:
            tname = type_name(exc_value)
        if isinstance(exc_value, BaseException):
            message = _safe_str(exc_value)
        elif exc_value is None:
            message = ""
        else:  # Python 3.11's profile hook may hand over the value unnormalized
            message = _safe_str(Exception(exc_value)) if type(exc_value) is str else type_name(exc_value)
        return _type_text(PAYLOAD_VAL_EXCEPTION, tname, message, self.options.repr_cap)

    # -- whole payloads -----------------------------------------------------

    def _frame(self, function_id: int, kind: int, values: list, stack: Sequence[int], arg_count: int, flags: int) -> bytes:
        depth = self.options.stack_depth
        if len(stack) > depth:
            stack = stack[:depth]
            flags |= PAYLOAD_F_STACK_TRUNCATED
        parts = [_HEADER.pack(function_id, kind, len(values), len(stack), flags, arg_count)]
        parts.extend(_STACK_ENTRY.pack(fid) for fid in stack)
        parts.extend(values)
        return b"".join(parts)

    def call(self, function_id: int, args: Iterable[Any], arg_count: int | None = None, stack: Sequence[int] = ()) -> bytes:
        """CALL payload: the first ``max_args`` of ``args`` (in parameter order).

        ``arg_count``: parameters the function declares (default: len(args)).
        Use ``UNBOUND`` for a parameter that has no value.
        """
        limit = self.options.max_args
        values = []
        for i, a in enumerate(args):
            if i == limit:
                break
            values.append(_B_UNBOUND if a is UNBOUND else self.value(a))
        if arg_count is None:
            arg_count = len(args) if isinstance(args, Sized) else len(values)
        arg_count = min(int(arg_count), PAYLOAD_U32_MAX)
        flags = PAYLOAD_F_ARGS_TRUNCATED if arg_count > len(values) else 0
        return self._frame(function_id, EVENT_CALL, values, stack, arg_count, flags)

    def return_(self, function_id: int, value: Any, stack: Sequence[int] = ()) -> bytes:
        """RETURN payload: the return value."""
        return self._frame(function_id, EVENT_RETURN, [self.value(value)], stack, 0, 0)

    def exception(self, function_id: int, exc_type: Any, exc_value: Any, stack: Sequence[int] = ()) -> bytes:
        """EXCEPTION payload: the exception's type name and message."""
        return self._frame(function_id, EVENT_EXCEPTION, [self.exception_value(exc_type, exc_value)], stack, 0, 0)


def _class_name_of_type(t: type) -> str:
    """``module.qualname`` of a type (bare for builtins), never raising."""
    try:
        name = type.__getattribute__(t, "__qualname__")
        if type(name) is not str:
            name = t.__name__
    except Exception:  # noqa: BLE001 - a metaclass may make __qualname__ raise anything
        name = t.__name__
    try:
        module = type.__getattribute__(t, "__module__")
    except Exception:  # noqa: BLE001 - a metaclass may make __module__ raise anything
        module = None
    return f"{module}.{name}" if type(module) is str and module != "builtins" else name


def _class_name(cls: type) -> str:
    try:
        module = type.__getattribute__(cls, "__module__")
    except Exception:  # noqa: BLE001 - a metaclass may make __module__ raise anything
        module = None
    name = cls.__name__
    return f"{module}.{name}" if type(module) is str and module != "builtins" else name


# ---------------------------------------------------------------------------
# Decoding
# ---------------------------------------------------------------------------


class _Cursor:
    """Bounds-checked reads over one payload; errors name the payload offset."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = data
        self.pos = 0

    def need(self, n: int, what: str) -> int:
        start = self.pos
        if start + n > len(self.data):
            raise CorruptFileError(
                f"detail payload truncated: {what} needs {n} bytes at payload offset {start}, "
                f"{len(self.data) - start} left",
                offset=start,
            )
        self.pos = start + n
        return start

    def unpack(self, st: struct.Struct, what: str) -> tuple[Any, ...]:
        return st.unpack_from(self.data, self.need(st.size, what))

    def take(self, n: int, what: str) -> bytes:
        start = self.need(n, what)
        return bytes(self.data[start : start + n])


def _read_text(cur: _Cursor, what: str) -> tuple[bytes, int]:
    original, n = cur.unpack(_TEXT, what)
    return cur.take(n, what), original


def _as_str(data: bytes, original: int) -> str:
    s = data.decode("utf-8", "surrogatepass")
    return TruncatedStr(s, original) if len(s) < original else s


def _read_value(cur: _Cursor) -> Any:
    at = cur.pos
    (tag,) = cur.unpack(_TAG, "value tag")
    if tag == PAYLOAD_VAL_NONE:
        return None
    if tag == PAYLOAD_VAL_FALSE:
        return False
    if tag == PAYLOAD_VAL_TRUE:
        return True
    if tag == PAYLOAD_VAL_INT:
        return cur.unpack(_INT, "int")[0]
    if tag == PAYLOAD_VAL_FLOAT:
        return cur.unpack(_FLOAT, "float")[0]
    if tag == PAYLOAD_VAL_UNBOUND:
        return UNBOUND
    if tag == PAYLOAD_VAL_BIGINT:
        (n,) = cur.unpack(_BIGINT, "bigint length")
        return int.from_bytes(cur.take(n, "bigint"), "little", signed=True)
    try:
        if tag == PAYLOAD_VAL_STR:
            return _as_str(*_read_text(cur, "str"))
        if tag == PAYLOAD_VAL_BYTES:
            data, original = _read_text(cur, "bytes")
            return TruncatedBytes(data, original) if len(data) < original else data
        if tag in (PAYLOAD_VAL_OBJECT, PAYLOAD_VAL_REPR_FAILED, PAYLOAD_VAL_REPR_SKIPPED, PAYLOAD_VAL_EXCEPTION):
            (t,) = cur.unpack(_TYPE_NAME, "type name length")
            tname = cur.take(t, "type name").decode("utf-8", "surrogatepass")
            data, original = _read_text(cur, PAYLOAD_VAL_NAMES[tag])
            text = data.decode("utf-8", "surrogatepass")
            if tag == PAYLOAD_VAL_EXCEPTION:
                return (tname, _as_str(data, original))
            status = {PAYLOAD_VAL_OBJECT: "repr", PAYLOAD_VAL_REPR_FAILED: "repr_failed"}.get(tag, "repr_skipped")
            return ObjectRepr(tname, text, original, status)
    except UnicodeDecodeError as err:
        raise CorruptFileError(f"detail payload: invalid UTF-8 in the value at payload offset {at}: {err.reason}", offset=at) from None
    raise CorruptFileError(f"detail payload: unknown value tag {tag} at payload offset {at}", offset=at)


def _params_of(symbols: Any, function_id: int) -> Sequence[str]:
    """Parameter names of ``function_id`` from a SymbolTable, a {fid: symbol} mapping or None."""
    if symbols is None:
        return ()
    if hasattr(symbols, "lookup"):
        sym = symbols.lookup(function_id)
    elif isinstance(symbols, Mapping):
        sym = symbols.get(function_id)
    else:
        return ()
    if sym is None:
        return ()
    params = sym.get("params") if isinstance(sym, Mapping) else getattr(sym, "params", None)
    return params if isinstance(params, (list, tuple)) else ()


def decode(payload: Any, flags: int, symbols: Any = None) -> DecodedPayload:
    """Decode a Python detail payload recorded with detail event ``flags``.

    ``symbols`` (optional): a ``SymbolTable``, or a mapping of function id to a
    manifest symbol dict / ``Symbol``; argument names come from its
    ``params``. Raises ``AtfV2Error`` for an opaque or unknown payload
    version, ``CorruptFileError`` (with the payload offset) for bad bytes.
    """
    version = int(flags)
    if version == DETAIL_PAYLOAD_OPAQUE:
        raise AtfV2Error("detail payload with flags 0 is opaque bytes, not a Python payload")
    if version not in DETAIL_PAYLOAD_VERSIONS_READ:
        raise AtfV2Error(f"detail payload version {version} is not supported (read: {DETAIL_PAYLOAD_VERSIONS_READ})")
    cur = _Cursor(memoryview(payload).cast("B") if not isinstance(payload, bytes) else payload)
    function_id, kind, nvalues, depth, pflags, arg_count = cur.unpack(_HEADER, "payload header")
    if kind not in (EVENT_CALL, EVENT_RETURN, EVENT_EXCEPTION):
        raise CorruptFileError(f"detail payload: unknown event kind {kind} at payload offset 8", offset=8)
    start = cur.need(depth * PAYLOAD_STACK_ENTRY_SIZE, "caller stack")
    stack = [_STACK_ENTRY.unpack_from(cur.data, start + PAYLOAD_STACK_ENTRY_SIZE * i)[0] for i in range(depth)]
    values = [_read_value(cur) for _ in range(nvalues)]
    if cur.pos != len(cur.data):
        raise CorruptFileError(
            f"detail payload: {len(cur.data) - cur.pos} bytes after the last value at payload offset {cur.pos}",
            offset=cur.pos,
        )
    args: list = []
    return_value = None
    exception = None
    if kind == EVENT_CALL:
        params = _params_of(symbols, function_id)
        args = [(params[i] if i < len(params) else None, v) for i, v in enumerate(values)]
    elif kind == EVENT_RETURN:
        return_value = values[0] if values else None
    else:
        exception = values[0] if values and isinstance(values[0], tuple) else None
    return DecodedPayload(
        version, kind, function_id, args, return_value, exception, stack, arg_count,
        bool(pflags & PAYLOAD_F_ARGS_TRUNCATED), bool(pflags & PAYLOAD_F_STACK_TRUNCATED),
    )


# ---------------------------------------------------------------------------
# Parameter names of a code object (recorded by the symbol table)
# ---------------------------------------------------------------------------

_CO_VARARGS = 0x04
_CO_VARKEYWORDS = 0x08


def code_params(code: Any) -> tuple:
    """Parameter names of a code object, in the order a CALL payload records values."""
    n = code.co_argcount + code.co_kwonlyargcount
    n += bool(code.co_flags & _CO_VARARGS) + bool(code.co_flags & _CO_VARKEYWORDS)
    return tuple(code.co_varnames[:n])


class ManifestSymbols:
    """``lookup(function_id)`` over a manifest's ``symbols`` list, indexed on first use."""

    def __init__(self, manifest: Mapping):
        self._manifest = manifest
        self._table: dict | None = None

    def lookup(self, function_id: int) -> Mapping | None:
        if self._table is None:
            self._table = {
                s["function_id"]: s for s in self._manifest.get("symbols", ()) if isinstance(s, Mapping) and "function_id" in s
            }
        return self._table.get(int(function_id))


_default_encoder: PayloadEncoder | None = None


def default_encoder() -> PayloadEncoder:
    """A process-wide encoder with default options."""
    global _default_encoder
    if _default_encoder is None:
        _default_encoder = PayloadEncoder()
    return _default_encoder


__all__ = [
    "DETAIL_PAYLOAD_VERSION",
    "UNBOUND",
    "DecodedPayload",
    "ManifestSymbols",
    "ObjectRepr",
    "PayloadEncoder",
    "PayloadOptions",
    "ReprTimeout",
    "TruncatedBytes",
    "TruncatedStr",
    "code_params",
    "decode",
    "default_encoder",
    "type_name",
]
