"""CRC-32 (zlib's: IEEE 802.3, reflected), fast.

``crc32(data, value=0)`` returns exactly ``zlib.crc32(data, value)``. On x86_64
CPUs with PCLMULQDQ it runs a Numba kernel that folds 64 bytes per step with
carry-less multiplications (the method of Intel's "Fast CRC Computation for
Generic Polynomials Using PCLMULQDQ", with the constants zlib/Chromium use for
this polynomial), several times faster than zlib's table-driven loop, which
would otherwise be the writer's bottleneck. Elsewhere, for short inputs, or
when Numba is told to compile for another CPU, it is ``zlib.crc32``.
The kernel releases the GIL.
"""

from __future__ import annotations

import os
import platform
import zlib

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

# folding constants for the reflected polynomial 0xEDB88320 (x^n mod P, bit-reflected)
_K1 = np.uint64(0x154442BD4)  # fold by 4 x 128 bits
_K2 = np.uint64(0x1C6E41596)
_K3 = np.uint64(0x1751997D0)  # fold by 128 bits
_K4 = np.uint64(0x0CCAA009E)
_K5 = np.uint64(0x163CD6124)  # 64 -> 32
_P = np.uint64(0x1DB710641)  # the polynomial, with its x^32 term
_MU = np.uint64(0x1F7011641)  # Barrett constant
_M32 = np.uint64(0xFFFFFFFF)
_S32 = np.uint64(32)

#: below this many bytes zlib is as fast as a kernel call
MIN_KERNEL_BYTES = 4096


def _table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xEDB88320 if c & 1 else c >> 1
        table[i] = c
    return table


_TABLE = _table()


@intrinsic
def _clmul(typingctx, a, b):
    """The 128-bit carry-less product of two u64: (low, high)."""
    sig = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        i64 = ir.IntType(64)
        vec = ir.VectorType(i64, 2)
        fnty = ir.FunctionType(vec, [vec, vec, ir.IntType(8)])
        fn = builder.module.declare_intrinsic("llvm.x86.pclmulqdq", fnty=fnty)
        va = builder.insert_element(ir.Constant(vec, None), args[0], ir.Constant(ir.IntType(32), 0))
        vb = builder.insert_element(ir.Constant(vec, None), args[1], ir.Constant(ir.IntType(32), 0))
        r = builder.call(fn, [va, vb, ir.Constant(ir.IntType(8), 0)])
        lo = builder.extract_element(r, ir.Constant(ir.IntType(32), 0))
        hi = builder.extract_element(r, ir.Constant(ir.IntType(32), 1))
        return context.make_tuple(builder, signature.return_type, [lo, hi])

    return sig, codegen


@intrinsic
def _load(typingctx, addr):
    """The little-endian u64 at integer address ``addr`` (any alignment)."""
    sig = types.uint64(types.intp)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.load(ptr, align=1)

    return sig, codegen


@intrinsic
def _load8(typingctx, addr):
    """The byte at integer address ``addr``."""
    sig = types.uint8(types.intp)

    def codegen(context, builder, signature, args):
        return builder.load(builder.inttoptr(args[0], ir.IntType(8).as_pointer()))

    return sig, codegen


@njit(cache=True, nogil=True, inline="always")
def _fold(lo, hi, ka, kb, dlo, dhi):
    al, ah = _clmul(lo, ka)
    bl, bh = _clmul(hi, kb)
    return al ^ bl ^ dlo, ah ^ bh ^ dhi


@njit(cache=True, nogil=True, inline="always")
def fold_finish(x1l, x1h, x2l, x2h, x3l, x3h, x4l, x4h, addr, pos, end):
    """Fold four lanes into one, then the 16-byte blocks in [pos, end); return
    the 32-bit register (not yet inverted)."""
    x1l, x1h = _fold(x1l, x1h, _K3, _K4, x2l, x2h)
    x1l, x1h = _fold(x1l, x1h, _K3, _K4, x3l, x3h)
    x1l, x1h = _fold(x1l, x1h, _K3, _K4, x4l, x4h)
    while end - pos >= 16:
        p = addr + pos
        x1l, x1h = _fold(x1l, x1h, _K3, _K4, _load(p), _load(p + 8))
        pos += 16
    # 128 -> 64 bits
    pl, ph = _clmul(x1l, _K4)
    x1l = x1h ^ pl
    x1h = ph
    # 64 -> 32 bits
    x2l = (x1l >> _S32) | (x1h << _S32)
    x2h = x1h >> _S32
    al, ah = _clmul(x1l & _M32, _K5)
    x1l = al ^ x2l
    x1h = ah ^ x2h
    # Barrett reduction
    bl, _bh = _clmul(x1l & _M32, _MU)
    cl, _ch = _clmul(bl & _M32, _P)
    return ((x1l ^ cl) >> _S32) & _M32


@njit(cache=True, nogil=True, inline="always")
def table_bytes(s, addr, pos, end):
    """Advance the register ``s`` over the bytes in [pos, end) with the table."""
    for i in range(pos, end):
        s = np.uint64(_TABLE[(s ^ np.uint64(_load8(addr + i))) & np.uint64(0xFF)]) ^ (s >> np.uint64(8))
    return s


@njit(cache=True, nogil=True)
def crc32_kernel(buf, value):
    """zlib.crc32(buf, value) for a uint8 array (PCLMULQDQ folding + table tail)."""
    n = buf.shape[0]
    s = np.uint64(value) ^ _M32  # the register, pre-inverted as zlib does
    base = buf.ctypes.data
    pos = 0
    if n >= 64:
        m = n & ~15
        x1l = _load(base) ^ s
        x1h = _load(base + 8)
        x2l = _load(base + 16)
        x2h = _load(base + 24)
        x3l = _load(base + 32)
        x3h = _load(base + 40)
        x4l = _load(base + 48)
        x4h = _load(base + 56)
        pos = 64
        while m - pos >= 64:
            p = base + pos
            x1l, x1h = _fold(x1l, x1h, _K1, _K2, _load(p), _load(p + 8))
            x2l, x2h = _fold(x2l, x2h, _K1, _K2, _load(p + 16), _load(p + 24))
            x3l, x3h = _fold(x3l, x3h, _K1, _K2, _load(p + 32), _load(p + 40))
            x4l, x4h = _fold(x4l, x4h, _K1, _K2, _load(p + 48), _load(p + 56))
            pos += 64
        s = fold_finish(x1l, x1h, x2l, x2h, x3l, x3h, x4l, x4h, base, pos, m)
        pos = m
    s = table_bytes(s, base, pos, n)
    return (s ^ _M32) & _M32


def _kernel_usable() -> bool:
    if os.environ.get("ATF2_CRC", "").lower() == "zlib":
        return False
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        import llvmlite.binding as llvm
        from numba.core import config

        if config.CPU_NAME not in (None, "host"):
            return False  # compiling for another CPU: it may lack PCLMULQDQ
        if config.CPU_FEATURES is not None:
            return "+pclmul" in config.CPU_FEATURES
        return bool(llvm.get_host_cpu_features().get("pclmul"))
    except Exception:  # noqa: BLE001  # pragma: no cover - any doubt: zlib
        return False


#: True until checked, then "checked" (usable) or False
USE_KERNEL: bool | str = _kernel_usable()


def _self_test() -> bool:
    rng = np.random.default_rng(12345)
    for n in (64, 65, 80, 127, 128, 1000, 4099):
        data = rng.integers(0, 256, n, dtype=np.uint8)
        for seed in (0, 0xFFFFFFFF, 0x12345678):
            if int(crc32_kernel(data, seed)) != zlib.crc32(data.data, seed):
                return False
    return True


def kernel_ok() -> bool:
    """True when the kernels may be used (checked against zlib on first call)."""
    global USE_KERNEL
    if USE_KERNEL is True:
        USE_KERNEL = "checked" if _self_test() else False
    return bool(USE_KERNEL)


def crc32(data, value: int = 0) -> int:
    """``zlib.crc32(data, value)``, through the kernel when it is usable."""
    if USE_KERNEL:
        arr = data if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 1 else None
        if arr is None:
            mv = memoryview(data)
            if mv.nbytes >= MIN_KERNEL_BYTES and mv.c_contiguous:
                arr = np.frombuffer(mv.cast("B") if mv.format != "B" or mv.ndim != 1 else mv, dtype=np.uint8)
        if arr is not None and arr.shape[0] >= MIN_KERNEL_BYTES and arr.flags.c_contiguous and kernel_ok():
            return int(crc32_kernel(arr, value & 0xFFFFFFFF))
    return zlib.crc32(data, value)
