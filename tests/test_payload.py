"""The Python detail payload: round trip of every value kind, hostile objects, bad bytes."""

from __future__ import annotations

import math
import struct
import time
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atf2.errors import AtfV2Error, CorruptFileError
from atf2.layout import (
    DETAIL_PAYLOAD_VERSION,
    EVENT_CALL,
    EVENT_EXCEPTION,
    EVENT_RETURN,
    PAYLOAD_HEADER_SIZE,
)
from atf2.payload import (
    UNBOUND,
    ObjectRepr,
    PayloadEncoder,
    PayloadOptions,
    TruncatedBytes,
    TruncatedStr,
    code_params,
    decode,
    type_name,
)
from atf2.reader import DetailEvent
from atf2.symbols import SymbolTable

V = DETAIL_PAYLOAD_VERSION


def roundtrip(value, **options):
    enc = PayloadEncoder(PayloadOptions(**options))
    return decode(enc.return_(7, value), V).return_value


@pytest.mark.parametrize(
    "value",
    [None, True, False, 0, 1, -1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**200, -(2**200),
     0.0, -0.0, 1.5, float("inf"), float("-inf"), "", "abc", "héllo ✓ 𝄞", "\udc80", b"", b"\x00\xff"],
)
def test_inline_values_round_trip_exactly(value):
    got = roundtrip(value)
    assert type(got) is type(value)
    assert got == value
    if isinstance(value, float):
        assert math.copysign(1, got) == math.copysign(1, value)


def test_nan_round_trips():
    assert math.isnan(roundtrip(float("nan")))


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=40), st.binary(max_size=40)))
@settings(max_examples=200, deadline=None)
def test_round_trip_property(value):
    cap = 24
    got = roundtrip(value, text_cap=cap, bigint_cap=64)
    size = len(value.encode("utf-8", "surrogatepass")) if isinstance(value, str) else len(value) if isinstance(value, bytes) else 0
    if size <= cap:
        assert type(got) is type(value) and got == value
    else:  # kept: a prefix of at most cap bytes, cut on a character boundary
        assert isinstance(got, (TruncatedStr, TruncatedBytes)) and got.original_length == len(value)
        assert value.startswith(got) and len(got) < len(value)
        kept = got.encode("utf-8", "surrogatepass") if isinstance(got, str) else got
        assert cap - 3 <= len(kept) <= cap


def test_huge_str_keeps_first_bytes_and_original_length():
    s = "é" * 1_000_000  # 2 bytes per character: the cut must land on a boundary
    got = roundtrip(s, text_cap=101)
    assert isinstance(got, TruncatedStr)
    assert got == "é" * 50 and got.original_length == 1_000_000


def test_huge_bytes_keeps_first_bytes_and_original_length():
    got = roundtrip(b"ab" * 500_000, text_cap=10)
    assert isinstance(got, TruncatedBytes)
    assert got == b"ababababab" and got.original_length == 1_000_000


def test_int_too_large_is_recorded_by_size_without_str():
    got = roundtrip(1 << 100_000)  # str() of it would be refused past 4300 digits
    assert isinstance(got, ObjectRepr) and got.status == "repr_skipped"
    assert got.type_name == "int" and "100001 bits" in got.text


class Point:
    def __init__(self, x):
        self.x = x

    def __repr__(self):
        return f"Point({self.x})"


class RaisingRepr:
    def __repr__(self):
        raise RuntimeError("no repr for you")


class RaisingReprAndStr(Exception):
    def __str__(self):
        raise ValueError("nope")


class RaisingReprRaisingError:
    def __repr__(self):
        raise RaisingReprAndStr()


class HugeRepr:
    def __repr__(self):
        return "H" * 5_000_000


class SlowRepr:
    calls = 0

    def __repr__(self):
        SlowRepr.calls += 1
        time.sleep(0.02)
        return "slow"


class StrSubclassRepr:
    class S(str):
        def __len__(self):
            raise RuntimeError("hostile len")

    def __repr__(self):
        return self.S("sneaky")


def test_object_is_type_name_and_repr():
    got = roundtrip(Point(3))
    assert got == ObjectRepr(f"{__name__}.Point", "Point(3)", 8, "repr")
    assert not got.truncated


def test_raising_repr_is_a_failure_marker():
    got = roundtrip(RaisingRepr())
    assert got.status == "repr_failed"
    assert got.type_name.endswith("RaisingRepr")
    assert got.text == "RuntimeError: no repr for you"


def test_repr_raising_an_exception_whose_str_raises():
    got = roundtrip(RaisingReprRaisingError())
    assert got.status == "repr_failed"
    assert got.text.startswith(f"{__name__}.RaisingReprAndStr: <str() raised ValueError")


def test_huge_repr_is_bounded():
    got = roundtrip(HugeRepr(), repr_cap=40)
    assert got.status == "repr" and got.text == "H" * 40
    assert got.truncated and got.original_length == 5_000_000


def test_slow_repr_type_is_skipped_after_its_first_slow_call():
    enc = PayloadEncoder(PayloadOptions(slow_repr_ns=1_000_000))
    SlowRepr.calls = 0
    first = decode(enc.return_(1, SlowRepr()), V).return_value
    assert first.status == "repr" and first.text == "slow"
    for _ in range(5):
        later = decode(enc.return_(1, SlowRepr()), V).return_value
        assert later.status == "repr_skipped" and later.text == "slow repr"
    assert SlowRepr.calls == 1
    assert SlowRepr in enc.slow_types


def test_repr_returning_a_hostile_str_subclass():
    got = roundtrip(StrSubclassRepr())
    assert got.status == "repr" and got.text == "sneaky"


def test_recursive_containers_are_bounded():
    lst = [1, 2]
    lst.append(lst)
    d = {"k": None}
    d["k"] = d
    for value in (lst, d, deque([lst]), (lst, d)):
        got = roundtrip(value)
        assert got.status == "repr" and "..." in got.text and len(got.text) < 300


def test_big_container_repr_is_bounded_quickly():
    got = roundtrip(list(range(1_000_000)))
    assert got.type_name == "list" and got.text.endswith("...]") and len(got.text) < 100


def test_container_with_raising_element_repr_does_not_fail():
    got = roundtrip([RaisingRepr()])
    assert got.status == "repr" and "RaisingRepr" in got.text


def test_subclasses_of_inline_types_go_through_repr():
    class MyInt(int):
        def __repr__(self):
            return "MyInt!"

    got = roundtrip(MyInt(5))
    assert isinstance(got, ObjectRepr) and got.text == "MyInt!"


def test_type_name_of_hostile_class():
    class Meta(type):
        def __getattribute__(cls, name):
            raise RuntimeError("hostile")

    class Weird(metaclass=Meta):
        __module__ = 42  # not a str

    assert type_name(Weird()) == "test_type_name_of_hostile_class.<locals>.Weird"


def test_call_payload_args_with_names_from_symbols():
    def f(a, b, *rest, key=None, **kw):
        pass

    table = SymbolTable()
    fid = table.register_code(f.__code__)
    enc = PayloadEncoder()
    p = enc.call(fid, [1, "two", (3,), UNBOUND, {}], arg_count=5, stack=[11, 12])
    d = decode(p, V, table)
    assert d.kind == EVENT_CALL and d.function_id == fid
    assert code_params(f.__code__) == ("a", "b", "key", "rest", "kw")
    assert [name for name, _ in d.args] == ["a", "b", "key", "rest", "kw"]
    assert d.args[0][1] == 1 and d.args[1][1] == "two" and d.args[3][1] is UNBOUND
    assert d.stack == [11, 12] and not d.stack_truncated and not d.args_truncated
    # the manifest shape carries the same names
    _, symbols = table.to_manifest()
    d2 = decode(p, V, {s["function_id"]: s for s in symbols})
    assert d2.args == d.args
    # without symbols: no names
    assert [name for name, _ in decode(p, V).args] == [None] * 5


def test_call_payload_keeps_first_max_args_and_k_callers():
    enc = PayloadEncoder(PayloadOptions(max_args=8, stack_depth=3))
    d = decode(enc.call(1, list(range(12)), stack=list(range(100, 110))), V)
    assert [v for _, v in d.args] == list(range(8))
    assert d.arg_count == 12 and d.args_truncated
    assert d.stack == [100, 101, 102] and d.stack_truncated


def test_exception_payload():
    enc = PayloadEncoder(PayloadOptions(repr_cap=20))
    try:
        raise KeyError("missing-" + "x" * 100)
    except KeyError as exc:
        d = decode(enc.exception(9, type(exc), exc, stack=[1]), V)
    assert d.kind == EVENT_EXCEPTION and d.args == [] and d.return_value is None
    tname, message = d.exception
    assert tname == "KeyError"
    assert isinstance(message, TruncatedStr) and message.startswith("'missing-")
    d = decode(enc.exception(9, RaisingReprAndStr, RaisingReprAndStr()), V)
    assert d.exception[0].endswith("RaisingReprAndStr") and d.exception[1].startswith("<str() raised")
    d = decode(enc.exception(9, ValueError, "unnormalized"), V)
    assert d.exception == ("ValueError", "unnormalized")


def test_return_payload():
    d = decode(PayloadEncoder().return_(4, 42, stack=[5]), V)
    assert d.kind == EVENT_RETURN and d.return_value == 42 and d.stack == [5] and d.exception is None


def test_decode_rejects_opaque_and_unknown_versions():
    p = PayloadEncoder().return_(1, 1)
    with pytest.raises(AtfV2Error, match="opaque"):
        decode(p, 0)
    with pytest.raises(AtfV2Error, match="version 99"):
        decode(p, 99)


def test_decode_reports_truncation_and_garbage_with_offsets():
    p = PayloadEncoder().call(1, ["hello", 2.0])
    for cut in range(len(p)):
        with pytest.raises(CorruptFileError):
            decode(p[:cut], V)
    with pytest.raises(CorruptFileError, match="after the last value"):
        decode(p + b"\x00", V)
    bad_tag = bytearray(PayloadEncoder().return_(1, None))
    bad_tag[PAYLOAD_HEADER_SIZE] = 200
    with pytest.raises(CorruptFileError, match=f"unknown value tag 200 at payload offset {PAYLOAD_HEADER_SIZE}") as err:
        decode(bytes(bad_tag), V)
    assert err.value.offset == PAYLOAD_HEADER_SIZE
    bad_kind = bytearray(p)
    bad_kind[8] = 9
    with pytest.raises(CorruptFileError, match="event kind 9"):
        decode(bytes(bad_kind), V)
    # a length field pointing past the end
    bad_len = bytearray(PayloadEncoder().return_(1, "abc"))
    struct.pack_into("<I", bad_len, PAYLOAD_HEADER_SIZE + 1 + 4, 1_000_000)
    with pytest.raises(CorruptFileError, match="truncated"):
        decode(bytes(bad_len), V)


def test_decode_accepts_numpy_and_memoryview_payloads():
    import numpy as np

    p = PayloadEncoder().return_(3, "x")
    assert decode(np.frombuffer(p, dtype=np.uint8), V).return_value == "x"
    assert decode(memoryview(p), V).return_value == "x"


def test_options_are_validated():
    with pytest.raises(AtfV2Error, match="max_args"):
        PayloadOptions(max_args=300)
    with pytest.raises(AtfV2Error, match="stack_depth"):
        PayloadOptions(stack_depth=-1)


def test_detail_event_decodes_with_session_symbol_names(tmp_path):
    import numpy as np

    from atf2.layout import INDEX_EVENT_DTYPE, NO_DETAIL
    from atf2.manifest import write_manifest
    from atf2.reader import SessionReader
    from atf2.writer import DetailBatch, ThreadWriter

    def target(alpha, beta=2):
        return alpha

    table = SymbolTable()
    fid = table.register_code(target.__code__)
    enc = PayloadEncoder()
    events = np.zeros(3, dtype=INDEX_EVENT_DTYPE)
    events["timestamp_ns"] = [10, 20, 30]
    events["function_id"] = fid
    events["event_kind"] = [EVENT_CALL, EVENT_RETURN, EVENT_CALL]
    events["detail_seq"] = NO_DETAIL
    payloads = [enc.call(fid, ["a", 2], stack=[99]), enc.return_(fid, "a"), b"opaque bytes"]
    with ThreadWriter(tmp_path, 0) as w:
        w.write_events(events, DetailBatch.from_payloads(payloads, flags=[V, V, 0]))
        w.finalize()
    modules, symbols = table.to_manifest()
    write_manifest(tmp_path, {"format_version": "2.1", "status": "complete", "threads": [{"id": 0, "has_detail": True}],
                              "modules": modules, "symbols": symbols, "detail_payload_version": V})
    with SessionReader(tmp_path) as s:
        detail = s.thread(0).detail
        call, ret, opaque = detail[0], detail[1], detail[2]
        assert call.args == [("alpha", "a"), ("beta", 2)] and call.stack == [99]
        assert ret.return_value == "a" and ret.exception is None and ret.args == []
        assert opaque.args is None and opaque.decoded() is None
        # the same event without session symbols: values, no names
        assert DetailEvent(*call).args == [(None, "a"), (None, 2)]


def test_examples_of_the_spec_page_are_byte_exact():
    """The three examples of atf2/PAYLOAD.md."""
    e = PayloadEncoder()
    fid, caller = 0x0000000100000003, 0x0000000100000001
    assert e.call(fid, [7, "hi"], stack=[caller]).hex(" ") == (
        "03 00 00 00 01 00 00 00 01 02 01 00 02 00 00 00 01 00 00 00 01 00 00 00 "
        "03 07 00 00 00 00 00 00 00 05 02 00 00 00 02 00 00 00 68 69"
    )
    assert e.return_(fid, [1, 2], stack=[caller]).hex(" ") == (
        "03 00 00 00 01 00 00 00 02 01 01 00 00 00 00 00 01 00 00 00 01 00 00 00 "
        "08 04 00 6c 69 73 74 06 00 00 00 06 00 00 00 5b 31 2c 20 32 5d"
    )
    assert e.exception(fid, ValueError, ValueError("bad")).hex(" ") == (
        "03 00 00 00 01 00 00 00 03 01 00 00 00 00 00 00 "
        "0b 0a 00 56 61 6c 75 65 45 72 72 6f 72 03 00 00 00 03 00 00 00 62 61 64"
    )


def test_small_shallow_containers_keep_their_exact_repr():
    for value in ({"name": "x", "tags": ["a", "b", "3"]}, (1.5, "abc"), [None, True, 2], {1, 2}):
        got = roundtrip(value)
        assert got.status == "repr" and got.text == repr(value)
    deep = [[[[1]]]]  # deeper than the shallow check: reprlib's bounded form
    assert roundtrip(deep).text == "[[[[...]]]]"


# ---------------------------------------------------------------------------
# The detail hook's own encoder (nopython, atf2.kernels.detail_hook) writes the
# same bytes as PayloadEncoder for every value kind
# ---------------------------------------------------------------------------


class _Plain:
    def __repr__(self):
        return "Plain<é>"


class _RaisingRepr:
    def __repr__(self):
        raise RuntimeError("no repr")


class _StrSub(str):
    pass


class _IntSub(int):
    pass


class _SubRepr:
    def __repr__(self):
        return _StrSub("sub-repr")


class _SurrogateRepr:
    def __repr__(self):
        return "a\ud800b"


class _SlowRepr:
    def __repr__(self):
        time.sleep(0.004)
        return "slow"


def _hook_probe(v):
    return v


def _hook_many(a, b, c, d, e, f, g, h, i, j=10):
    return a


def _hook_star(x, *args, k=1, **kw):
    return x


def _hook_closure(x):
    def inner():
        return x

    return inner()


def _hook_gen(x):
    del x
    yield 1
    yield 2


def _hook_deep(n):
    return _hook_deep(n - 1) if n else 0


HOOK_VALUES = [
    0, -1, 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**700, 1.5, -0.0, float("inf"), float("nan"),
    True, False, None, "", "abc", "é" * 10, "x" * 200, "é" * 100, "€" * 50, "a\ud800b",
    b"", b"\x00\xff" * 100, bytearray(b"ab"), [1, 2], (1, "a"), {"a": 1}, {3}, list(range(1000)),
    _Plain(), _RaisingRepr(), _StrSub("sub"), _IntSub(5), _SubRepr(), _SurrogateRepr(), 2.5j,
]


def _record_always(tmp_path, program):
    from atf2.reader import SessionReader
    from atf2.session import trace_session_start, trace_session_stop

    trace_session_start(tmp_path / "s", detail="always", trace_python=True)
    try:
        program()
    finally:
        trace_session_stop()
    reader = SessionReader(tmp_path / "s")
    return reader, reader.thread(0)


def _details_of(reader, thread, name, kind):
    out = []
    for i in range(len(thread.index)):
        ev = thread.index[i]
        if ev.event_kind == kind and reader.symbol_name(ev.function_id).split(".")[-1] == name:
            out.append(thread.get_detail_for(ev))
    return out


def _values_part(detail):
    d = detail.decoded()
    return bytes(detail.payload)[PAYLOAD_HEADER_SIZE + 8 * len(d.stack):]


def test_hook_encodes_every_value_kind_like_the_python_encoder(tmp_path):
    def program():
        for v in HOOK_VALUES:
            _hook_probe(v)

    reader, t = _record_always(tmp_path, program)
    with reader:
        calls = _details_of(reader, t, "_hook_probe", EVENT_CALL)
        rets = _details_of(reader, t, "_hook_probe", EVENT_RETURN)
        assert len(calls) == len(rets) == len(HOOK_VALUES)
        enc = PayloadEncoder()
        for v, c, r in zip(HOOK_VALUES, calls, rets, strict=True):
            want = enc.value(v)
            assert _values_part(c) == want, v
            assert _values_part(r) == want, v
            d = c.decoded()
            assert d.args[0][0] == "v" and d.arg_count == 1 and not d.args_truncated
            assert reader.symbol_name(d.stack[0]).endswith("program")
        assert calls[HOOK_VALUES.index(2**63 - 1)].args == [("v", 2**63 - 1)]
        assert calls[HOOK_VALUES.index("é" * 100)].args[0][1] == TruncatedStr("é" * 64, 100)
        assert calls[HOOK_VALUES.index("a\ud800b")].args[0][1] == "a\ud800b"
        failed = calls[[type(v) for v in HOOK_VALUES].index(_RaisingRepr)].args[0][1]
        assert failed.status == "repr_failed" and "RuntimeError: no repr" in failed.text


def test_hook_parameters_cells_varargs_unbound_truncation_and_stack(tmp_path):
    def program():
        _hook_many(*range(9))
        _hook_star(1, 2, 3, k="kw", z=4)
        _hook_closure("cell")
        list(_hook_gen(5))
        _hook_deep(6)

    reader, t = _record_always(tmp_path, program)
    with reader:
        many = _details_of(reader, t, "_hook_many", EVENT_CALL)[0]
        d = many.decoded()
        assert [v for _, v in d.args] == list(range(8)) and d.arg_count == 10 and d.args_truncated
        assert [n for n, _ in d.args] == list("abcdefgh")
        star = _details_of(reader, t, "_hook_star", EVENT_CALL)[0]
        assert [(n, getattr(v, "text", v)) for n, v in star.args] == [("x", 1), ("k", "kw"), ("args", "(2, 3)"), ("kw", "{'z': 4}")]
        assert _details_of(reader, t, "_hook_closure", EVENT_CALL)[0].args == [("x", "cell")]
        gen_calls = _details_of(reader, t, "_hook_gen", EVENT_CALL)
        assert gen_calls[0].args == [("x", 5)] and all(c.args == [("x", UNBOUND)] for c in gen_calls[1:])
        deep = _details_of(reader, t, "_hook_deep", EVENT_CALL)
        innermost = deep[-1].decoded()
        assert [reader.symbol_name(f).split(".")[-1] for f in innermost.stack] == ["_hook_deep"] * 4
        assert innermost.stack_truncated


def test_hook_slow_repr_is_recorded_once_then_skipped(tmp_path):
    slow = _SlowRepr()

    def program():
        for _ in range(3):
            _hook_probe(slow)

    reader, t = _record_always(tmp_path, program)
    with reader:
        values = [c.args[0][1] for c in _details_of(reader, t, "_hook_probe", EVENT_CALL)]
        assert values[0] == ObjectRepr(type_name(slow), "slow", 4, "repr")
        assert all(v.status == "repr_skipped" and v.text == "slow repr" for v in values[1:])
