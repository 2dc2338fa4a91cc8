"""The capture hook's fast path: where it reads the code object, and that nothing in it can fail."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from atf2.kernels import hook
from tests.conftest import env_without_coverage


@pytest.mark.skipif(sys.version_info[:2] not in ((3, 11), (3, 12), (3, 13)), reason="frame fields known for 3.11-3.13 only")
def test_code_object_read_from_frame_fields():
    """On the interpreters whose frame layout is known, the hook reads the code
    object with two loads, and those loads agree with ``f_code`` on frames made
    after the import-time probe (a nested function, a resumed coroutine)."""
    assert hook._CODE_FROM_FIELDS

    def code_at(frame) -> int:
        iframe = ctypes.c_uint64.from_address(id(frame) + hook._F_FRAME).value
        return ctypes.c_uint64.from_address(iframe + hook._CODE_FIELD).value

    def inner():
        return sys._getframe()

    async def coroutine():
        return sys._getframe()

    coro = coroutine()
    try:
        coro.send(None)
    except StopIteration as stop:
        frames = [inner(), stop.value]
    else:  # pragma: no cover - the coroutine has no await
        raise AssertionError("coroutine did not finish")
    # the frames are still referenced: their interpreter frames are their own copies now
    assert [code_at(f) for f in frames] == [id(f.f_code) for f in frames]


_WRAPPER_PROBE = """
import sys, warnings
warnings.simplefilter("ignore")
from atf2.kernels import hook
from tests.conftest import env_without_coverage
for name in ("capture_hook", "capture_hook_c_calls", "floor_hook"):
    asm = getattr(hook, name)._library.get_asm_str()
    wrapper = asm[asm.index("cfunc._ZN"):]
    wrapper = wrapper[: wrapper.index(".Lfunc_end")]
    print(name, "numba_gil_ensure" in wrapper)
"""


def test_hook_wrapper_checks_no_status(tmp_path):
    """Numba's C wrapper around a @cfunc body checks the body's status after each
    call (and reports an error under the GIL) unless the body cannot fail. The
    capture hooks are built so that it cannot (raw pointers, the ring switch
    through the C ABI): their wrappers are as bare as the do-nothing floor's.
    Compiled afresh in a child (an empty Numba cache: cached code has no assembly to show)."""
    out = subprocess.run(
        [sys.executable, "-c", _WRAPPER_PROBE],
        env=env_without_coverage(NUMBA_CACHE_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout.split()
    assert dict(zip(out[::2], out[1::2], strict=True)) == {"capture_hook": "False", "capture_hook_c_calls": "False", "floor_hook": "False"}
