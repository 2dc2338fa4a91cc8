"""Instruction counts with valgrind's callgrind: a repeatable cost measure on a shared VM.

Wall and CPU times of a few ns per event drown in this machine's noise (the
cost of a do-nothing profile hook alone swings 4x between reps), and it has
no hardware performance counters. Callgrind counts every instruction each
thread executes, the same on every run whatever the load.

A program run under callgrind (``command``) marks the phases it wants counted
with :func:`dump` (callgrind's ``DUMP_STATS_AT`` client request): callgrind
writes the instructions the calling thread executed since its previous dump
to a file labelled with the phase, and zeroes them; :func:`read_dumps` reads
them back. The request dumps the calling thread only, so every thread to be
counted dumps its own (see ``atf2.bench.overhead``); what a thread runs after
its last dump is written at the program's end.

Client requests are made without valgrind's C headers: their amd64 "magic"
sequence (four ``rol`` of ``rdi`` that add up to 128 bits, then ``xchg rbx,
rbx``) is a few bytes of machine code in an executable page, called through
ctypes. Outside valgrind the sequence changes nothing and returns 0. Other
architectures: :func:`available` is False and the requests do nothing.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass

#: callgrind's client request codes (valgrind/callgrind.h: VG_USERREQ_TOOL_BASE('C','T') + n)
_CT_BASE = (ord("C") << 24) | (ord("T") << 16)
DUMP_STATS_AT = _CT_BASE + 3
START_INSTRUMENTATION = _CT_BASE + 4
#: valgrind core request: how many valgrinds we run under (0 when native)
RUNNING_ON_VALGRIND = 0x1001

#: uint64 request(uint64 *block): rax = block (request code, 5 arguments), rdx = result (default 0)
_AMD64_REQUEST = bytes.fromhex(
    "4889f8"  # mov rax, rdi
    "31d2"  # xor edx, edx
    "48c1c703" "48c1c70d" "48c1c73d" "48c1c733"  # rol rdi, 3 / 13 / 61 / 51: valgrind's preamble
    "4887db"  # xchg rbx, rbx: the request itself
    "4889d0"  # mov rax, rdx
    "c3"  # ret
)

_request: Callable[[int], int] | None = None
_page: mmap.mmap | None = None  # keeps the code alive


def available() -> bool:
    """Can this process make client requests (Linux on amd64)?"""
    return sys.platform.startswith("linux") and platform.machine() in ("x86_64", "AMD64")


def client_request(code: int, *args: int) -> int:
    """Valgrind client request ``code`` with up to 5 integer arguments; 0 when not under valgrind."""
    global _request, _page
    if not available():
        return 0
    if _request is None:
        _page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
        _page.write(_AMD64_REQUEST)
        address = ctypes.addressof(ctypes.c_char.from_buffer(_page))
        _request = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_void_p)(address)
    block = (ctypes.c_uint64 * 6)(code, *args, *([0] * (5 - len(args))))
    return int(_request(ctypes.addressof(block)))


def running_on_valgrind() -> bool:
    return client_request(RUNNING_ON_VALGRIND) > 0


def start_instrumentation() -> None:
    """Start counting (the child runs with ``--instr-atstart=no`` through its imports)."""
    client_request(START_INSTRUMENTATION)


def dump(label: str) -> None:
    """Write the calling thread's instructions since its last dump, labelled ``label`` (then zero them)."""
    text = ctypes.create_string_buffer(label.encode())
    client_request(DUMP_STATS_AT, ctypes.addressof(text))


def valgrind() -> str | None:
    """Path of the valgrind executable, or None."""
    return shutil.which("valgrind")


def command(out_dir: str, argv: list[str]) -> list[str]:
    """The command line running ``argv`` under callgrind, dumps in ``out_dir``.

    Instruction counts only (no cache simulation), one file per thread, counting
    from the first :func:`start_instrumentation` (imports run at valgrind's
    plain, faster speed). ``argv[0]`` must be a real executable, not a shell
    shim (``sys.executable`` is).
    """
    exe = valgrind() or "valgrind"
    return [
        exe,
        "--tool=callgrind",
        "--separate-threads=yes",
        "--cache-sim=no",
        "--instr-atstart=no",
        "--dump-instr=no",
        "--dump-line=no",
        f"--callgrind-out-file={os.path.join(out_dir, 'callgrind.out.%p')}",
        *argv,
    ]


@dataclass(frozen=True)
class ThreadDump:
    """Instructions one thread executed in one phase."""

    part: int  #: the dump's sequence number in the run
    label: str  #: the phase (the label given to :func:`dump`; "" at program termination)
    thread: int  #: valgrind's thread number (1 = the main thread; numbers of ended threads are reused)
    instructions: int


_TRIGGER = re.compile(r"^desc: Trigger: (?:Client Request: (.*)|.*)$")


def parse_dump(text: str, part: int) -> ThreadDump:
    """One callgrind output file (as written with ``--separate-threads=yes``)."""
    label, thread, total = "", 0, None
    for line in text.splitlines():
        if line.startswith("desc: Trigger:"):
            m = _TRIGGER.match(line)
            label = (m.group(1) or "") if m else ""
        elif line.startswith("thread:"):
            thread = int(line.split()[1])
        elif line.startswith(("totals:", "summary:")):
            total = int(line.split()[1])
    if total is None:
        raise ValueError(f"callgrind output of part {part}: no totals line")
    return ThreadDump(part, label, thread, total)


_FILE = re.compile(r"^callgrind\.out\.(\d+)(?:\.(\d+))?-(\d+)$")


def read_dumps(out_dir: str) -> list[ThreadDump]:
    """Every per-thread file in ``out_dir``, in dump order (part, then thread).

    Files are ``callgrind.out.<pid>.<part>-<thread>`` for client-request dumps
    and ``callgrind.out.<pid>-<thread>`` for the last part (program end).
    """
    found = []
    for name in os.listdir(out_dir):
        m = _FILE.match(name)
        if not m:
            continue
        part = int(m.group(2)) if m.group(2) else sys.maxsize
        with open(os.path.join(out_dir, name), encoding="utf-8", errors="replace") as f:
            found.append(parse_dump(f.read(), part))
    return sorted(found, key=lambda d: (d.part, d.thread))
