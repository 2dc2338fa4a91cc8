"""Index records checked (or encoded) and checksummed in one 256-bit pass.

The writer's hot loop. ``kernels.encode.encode_index_crc`` does the same work
one field and one 64-bit half-lane at a time; LLVM then shuttles every CRC
lane between general and vector registers, and the pass runs at about a third
of what the carry-less multiplier can do. Here the loop over 64-byte blocks
(two records) is written directly in LLVM IR on ``<4 x i64>`` vectors: one
256-bit register holds one 32-byte record, and ``VPCLMULQDQ`` folds both of
its 128-bit CRC lanes at once (the 4 x 128-bit folding of ``kernels.crc``,
same constants, same result).

Two kernels:

* ``check_crc(src, thread_id, prev_ts, crc)``: read-only. Checks that the
  timestamps do not decrease and whether every record already carries
  ``thread_id`` and ``detail_seq == NO_DETAIL`` (an array the writer can put
  on disk as it is, without a copy), and returns the CRC-32 of its bytes.
* ``encode_crc(src, dst, thread_id, prev_ts, crc)``: ``encode_index`` without
  detail links (``thread_id`` set, ``detail_seq = NO_DETAIL``) into ``dst``,
  and the CRC-32 of what it wrote.

Only for x86_64 CPUs with AVX2 and VPCLMULQDQ (``usable()``; checked against
zlib on first use); the writer falls back to ``kernels.encode`` elsewhere.
"""

from __future__ import annotations

import zlib

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from ..layout import INDEX_EVENT_DTYPE, INDEX_EVENT_OFFSETS, INDEX_EVENT_SIZE, NO_DETAIL
from . import crc as _crc
from .crc import _K1, _K2, _M32, fold_finish, table_bytes

#: status of ``check_crc``: every record already encoded for this writer
ENCODED = -1
#: status of ``check_crc``: some record needs encoding (thread_id or detail_seq differ)
NOT_ENCODED = -2

# The IR below reads a record as four little-endian u64 words: the timestamp
# in word 0, thread_id in the low half of word 2, detail_seq in the high half
# of word 3. Asserted here so that a layout change cannot silently break it.
assert INDEX_EVENT_SIZE == 32
assert INDEX_EVENT_OFFSETS["timestamp_ns"] == 0
assert INDEX_EVENT_OFFSETS["thread_id"] == 16
assert INDEX_EVENT_OFFSETS["detail_seq"] == 28

_I64 = ir.IntType(64)
_V4 = ir.VectorType(_I64, 4)
_FIELD_MASK = (0, 0, 0xFFFFFFFF, 0xFFFFFFFF00000000)  # thread_id, detail_seq
_RESULT = types.UniTuple(types.uint64, 10)


def _const_vec(values):
    return ir.Constant(_V4, [ir.Constant(_I64, v) for v in values])


def _scan_codegen(store: bool):
    """IR for the block loop; ``store`` makes it the encoder."""

    def codegen(context, builder, signature, args):
        src, dst, nblocks, s0, tid, last0 = args
        i32 = ir.IntType(32)
        clmul = builder.module.declare_intrinsic(
            "llvm.x86.pclmulqdq.256", fnty=ir.FunctionType(_V4, [_V4, _V4, ir.IntType(8)])
        )
        kv = _const_vec((int(_K1), int(_K2), int(_K1), int(_K2)))
        mask = _const_vec(_FIELD_MASK)
        keep = _const_vec(tuple(~m & 0xFFFFFFFFFFFFFFFF for m in _FIELD_MASK))
        expect = builder.insert_element(
            _const_vec((0, 0, 0, NO_DETAIL << 32)), tid, ir.Constant(i32, 2)
        )
        zero = _const_vec((0, 0, 0, 0))
        vptr = _V4.as_pointer()

        def load(addr_int, offset):
            p = builder.inttoptr(builder.add(addr_int, ir.Constant(_I64, offset)), vptr)
            return builder.load(p, align=1)

        def put(addr_int, offset, value):
            p = builder.inttoptr(builder.add(addr_int, ir.Constant(_I64, offset)), vptr)
            builder.store(value, p, align=1)

        def fold(acc, data):
            lo = builder.call(clmul, [acc, kv, ir.Constant(ir.IntType(8), 0x00)])
            hi = builder.call(clmul, [acc, kv, ir.Constant(ir.IntType(8), 0x11)])
            return builder.xor(builder.xor(lo, hi), data)

        def block(i, last, diff, bad):
            """Load (and encode) block ``i``; return its two records, the new checks."""
            off = builder.mul(i, ir.Constant(_I64, 64))
            a_addr = builder.add(src, off)
            a = load(a_addr, 0)
            b = load(a_addr, 32)
            ta = builder.extract_element(a, ir.Constant(i32, 0))
            tb = builder.extract_element(b, ir.Constant(i32, 0))
            dec = builder.or_(builder.icmp_unsigned("<", ta, last), builder.icmp_unsigned("<", tb, ta))
            bad = builder.or_(bad, builder.zext(dec, _I64))
            if store:
                a = builder.or_(builder.and_(a, keep), expect)
                b = builder.or_(builder.and_(b, keep), expect)
                d_addr = builder.add(dst, off)
                put(d_addr, 0, a)
                put(d_addr, 32, b)
            else:
                diff = builder.or_(diff, builder.and_(builder.xor(a, expect), mask))
                diff = builder.or_(diff, builder.and_(builder.xor(b, expect), mask))
            return a, b, tb, diff, bad

        entry_bad = ir.Constant(_I64, 0)
        a, b, last, diff, bad = block(ir.Constant(_I64, 0), last0, zero, entry_bad)
        # the CRC register is xored into the first 8 bytes (zlib's pre-inversion done by the caller)
        y1 = builder.xor(a, builder.insert_element(zero, s0, ir.Constant(i32, 0)))
        y2 = b

        pre = builder.block
        loop = builder.append_basic_block("wide.loop")
        body = builder.append_basic_block("wide.body")
        done = builder.append_basic_block("wide.done")
        builder.branch(loop)

        builder.position_at_end(loop)
        i_phi = builder.phi(_I64)
        y1_phi = builder.phi(_V4)
        y2_phi = builder.phi(_V4)
        last_phi = builder.phi(_I64)
        diff_phi = builder.phi(_V4)
        bad_phi = builder.phi(_I64)
        i_phi.add_incoming(ir.Constant(_I64, 1), pre)
        y1_phi.add_incoming(y1, pre)
        y2_phi.add_incoming(y2, pre)
        last_phi.add_incoming(last, pre)
        diff_phi.add_incoming(diff, pre)
        bad_phi.add_incoming(bad, pre)
        builder.cbranch(builder.icmp_signed("<", i_phi, nblocks), body, done)

        builder.position_at_end(body)
        a, b, last_n, diff_n, bad_n = block(i_phi, last_phi, diff_phi, bad_phi)
        y1_n = fold(y1_phi, a)
        y2_n = fold(y2_phi, b)
        i_n = builder.add(i_phi, ir.Constant(_I64, 1))
        tail = builder.block
        i_phi.add_incoming(i_n, tail)
        y1_phi.add_incoming(y1_n, tail)
        y2_phi.add_incoming(y2_n, tail)
        last_phi.add_incoming(last_n, tail)
        diff_phi.add_incoming(diff_n, tail)
        bad_phi.add_incoming(bad_n, tail)
        builder.branch(loop)

        builder.position_at_end(done)
        lanes = [builder.extract_element(y1_phi, ir.Constant(i32, k)) for k in range(4)]
        lanes += [builder.extract_element(y2_phi, ir.Constant(i32, k)) for k in range(4)]
        any_diff = ir.Constant(_I64, 0)
        for k in range(4):
            any_diff = builder.or_(any_diff, builder.extract_element(diff_phi, ir.Constant(i32, k)))
        not_encoded = builder.zext(builder.icmp_unsigned("!=", any_diff, ir.Constant(_I64, 0)), _I64)
        return context.make_tuple(builder, signature.return_type, [*lanes, bad_phi, not_encoded])

    return codegen


@intrinsic
def _check_blocks(typingctx, src, dst, nblocks, s0, tid, last):
    """Fold ``nblocks`` (>= 1) 64-byte blocks at address ``src``; check, don't store.

    Returns the eight CRC lane words, ``bad`` (1 if a timestamp decreased,
    starting from ``last``) and ``not_encoded`` (1 if some record's thread_id
    or detail_seq is not ``tid`` / NO_DETAIL).
    """
    sig = _RESULT(types.intp, types.intp, types.intp, types.uint64, types.uint64, types.uint64)
    return sig, _scan_codegen(store=False)


@intrinsic
def _encode_blocks(typingctx, src, dst, nblocks, s0, tid, last):
    """As ``_check_blocks``, but writes the encoded blocks to ``dst`` and folds those."""
    sig = _RESULT(types.intp, types.intp, types.intp, types.uint64, types.uint64, types.uint64)
    return sig, _scan_codegen(store=True)


@njit(cache=True, nogil=True)
def _first_decrease(src, prev_ts):
    last = np.uint64(prev_ts)
    for i in range(src.shape[0]):
        t = src[i].timestamp_ns
        if t < last:
            return i
        last = t
    return -1


@njit(cache=True, nogil=True)
def _finish(lanes, s, addr, n):
    """The CRC from the block loop's lanes, folding in a trailing odd record."""
    nbytes = n * INDEX_EVENT_SIZE
    if n >= 2:
        s = fold_finish(lanes[0], lanes[1], lanes[2], lanes[3], lanes[4], lanes[5], lanes[6], lanes[7], addr, (n // 2) * 64, nbytes)
        s = table_bytes(s, addr, nbytes & ~15, nbytes)
    else:
        s = table_bytes(s, addr, 0, nbytes)
    return (s ^ _M32) & _M32


@njit(cache=True, nogil=True)
def check_crc(src, thread_id, prev_ts, crc):
    """Check ``src`` (INDEX_EVENT_DTYPE, contiguous) as it is; return ``(status, crc)``.

    ``status``: the position of the first timestamp that decreases (from
    ``prev_ts``), else ``NOT_ENCODED`` if some record's ``thread_id`` is not
    ``thread_id`` or its ``detail_seq`` not NO_DETAIL, else ``ENCODED``; the
    CRC (``zlib.crc32(src bytes, crc)``) is meaningful only for ``ENCODED``.
    """
    n = src.shape[0]
    if n == 0:
        return ENCODED, np.uint64(crc)
    addr = src.ctypes.data
    s = np.uint64(crc) ^ _M32
    tid = np.uint64(thread_id)
    bad = np.uint64(0)
    not_encoded = np.uint64(0)
    nb = n // 2
    lanes = (s, s, s, s, s, s, s, s)
    last = np.uint64(prev_ts)
    if nb:
        r = _check_blocks(addr, 0, nb, s, tid, last)
        lanes = r[:8]
        bad = r[8]
        not_encoded = r[9]
        last = src[2 * nb - 1].timestamp_ns
    if n & 1:
        rec = src[n - 1]
        if rec.timestamp_ns < last:
            bad = np.uint64(1)
        if np.uint64(rec.thread_id) != tid or rec.detail_seq != np.uint32(NO_DETAIL):
            not_encoded = np.uint64(1)
    if bad:
        return _first_decrease(src, prev_ts), np.uint64(0)
    if not_encoded:
        return NOT_ENCODED, np.uint64(0)
    return ENCODED, _finish(lanes, s, addr, n)


@njit(cache=True, nogil=True)
def encode_crc(src, dst, thread_id, prev_ts, crc):
    """Encode ``src`` into ``dst[:len(src)]`` without detail links; return ``(bad, crc)``.

    As ``kernels.encode.encode_index_crc`` with no detail positions: ``bad``
    is the first decreasing timestamp (-1 if none; ``dst`` and the CRC are
    then meaningless) and the CRC is ``zlib.crc32(encoded bytes, crc)``.
    """
    n = src.shape[0]
    if n == 0:
        return -1, np.uint64(crc)
    addr = dst.ctypes.data
    s = np.uint64(crc) ^ _M32
    tid = np.uint64(thread_id)
    bad = np.uint64(0)
    nb = n // 2
    lanes = (s, s, s, s, s, s, s, s)
    last = np.uint64(prev_ts)
    if nb:
        r = _encode_blocks(src.ctypes.data, addr, nb, s, tid, last)
        lanes = r[:8]
        bad = r[8]
        last = src[2 * nb - 1].timestamp_ns
    if n & 1:
        rec = src[n - 1]
        if rec.timestamp_ns < last:
            bad = np.uint64(1)
        out = dst[n - 1]
        out.timestamp_ns = rec.timestamp_ns
        out.function_id = rec.function_id
        out.thread_id = np.uint32(thread_id)
        out.event_kind = rec.event_kind
        out.call_depth = rec.call_depth
        out.detail_seq = np.uint32(NO_DETAIL)
    if bad:
        return _first_decrease(src, prev_ts), np.uint64(0)
    return -1, _finish(lanes, s, addr, n)


def _cpu_has_wide() -> bool:
    if not _crc.USE_KERNEL:
        return False
    try:
        import llvmlite.binding as llvm
        from numba.core import config

        if config.DISABLE_JIT or config.CPU_NAME not in (None, "host"):
            return False  # intrinsics need the JIT; another target CPU may lack the instructions
        if config.CPU_FEATURES is not None:
            feats = config.CPU_FEATURES
            return "+vpclmulqdq" in feats and "+avx2" in feats
        host = llvm.get_host_cpu_features()
        return bool(host.get("vpclmulqdq") and host.get("avx2"))
    except Exception:  # noqa: BLE001  # pragma: no cover - any doubt: the narrow kernels
        return False


_state: bool | str = _cpu_has_wide()


def _self_test() -> bool:
    rng = np.random.default_rng(2024)
    for n in (1, 2, 3, 4, 5, 63, 64, 65, 1000, 1001):
        ev = np.zeros(n, dtype=INDEX_EVENT_DTYPE)
        ev["timestamp_ns"] = np.cumsum(rng.integers(0, 1000, n, dtype=np.uint64))
        ev["function_id"] = rng.integers(0, 1 << 63, n, dtype=np.uint64)
        ev["thread_id"] = 7
        ev["event_kind"] = rng.integers(1, 4, n, dtype=np.uint32)
        ev["call_depth"] = rng.integers(0, 1 << 32, n, dtype=np.uint32)
        ev["detail_seq"] = NO_DETAIL
        for seed in (0, 0xFFFFFFFF, 0x12345678):
            want = zlib.crc32(ev.tobytes(), seed)
            status, got = check_crc(ev, 7, 0, seed)
            if status != ENCODED or int(got) != want:
                return False
            out = np.empty(n, dtype=INDEX_EVENT_DTYPE)
            src = ev.copy()
            src["thread_id"] = 1
            src["detail_seq"] = 0
            bad, got = encode_crc(src, out, 7, 0, seed)
            if bad != -1 or int(got) != want or out.tobytes() != ev.tobytes():
                return False
        if check_crc(ev, 8, 0, 0)[0] != NOT_ENCODED:
            return False
    return True


def usable() -> bool:
    """True when these kernels may be used on this CPU (checked against zlib on first call)."""
    global _state
    if _state is True:
        try:
            _state = "checked" if _self_test() else False
        except Exception:  # noqa: BLE001  # pragma: no cover - a compiler that cannot emit the loop: the narrow kernels
            _state = False
    return bool(_state)
