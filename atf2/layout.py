"""The ATF v2 binary layout: every byte of the on-disk format, in one place.

This module is the only place in atf2 that spells an offset or a field size.
Everything else reads and writes through the numpy structured dtypes and the
constants defined here. The contract is ``ATF_V2_SPEC.md`` (shipped beside the
project); the tables below mirror it field by field, and the sizes are asserted
at import so a typo cannot silently shift a field.

All structures are packed (numpy structured dtypes have no implicit padding
unless asked for) and little-endian (every field spells ``<``).

File layouts
------------
index.atf::

    offset 0        INDEX_HEADER_DTYPE   64 bytes (placeholder, rewritten at finalize)
    offset 64       INDEX_EVENT_DTYPE    N x 32 bytes
    offset 64+32N   INDEX_FOOTER_DTYPE   64 bytes (written at finalize)

detail.atf::

    offset 0        DETAIL_HEADER_DTYPE        64 bytes
    offset 64       events, back to back: DETAIL_EVENT_HEADER_DTYPE (24 bytes)
                    followed by ``total_length - 24`` payload bytes
    then            DETAIL_FOOTER_DTYPE        64 bytes

Besides the files, this module also owns the in-memory layout shared by the
producers (the capture hook, ``atf2.emit``) and the drain thread: the raw ring
record and the slots of a thread's control block. Those never reach disk, but
they are binary contracts between Numba code and Python code all the same.
"""

from __future__ import annotations

import platform
import sys

import numpy as np


def field_names(dtype: np.dtype) -> tuple[str, ...]:
    """The field names of a structured dtype, in order."""
    if dtype.names is None:
        raise TypeError(f"{dtype} is not a structured dtype")
    return dtype.names


def field_offset(dtype: np.dtype, name: str) -> int:
    """Byte offset of field ``name`` in a structured dtype."""
    if dtype.fields is None:
        raise TypeError(f"{dtype} is not a structured dtype")
    return int(dtype.fields[name][1])


# ---------------------------------------------------------------------------
# Magics, versions, codes
# ---------------------------------------------------------------------------

INDEX_MAGIC = b"ATI2"
INDEX_FOOTER_MAGIC = b"2ITA"
DETAIL_MAGIC = b"ATD2"
DETAIL_FOOTER_MAGIC = b"2DTA"

ENDIAN_LITTLE = 0x01
FORMAT_VERSION = 1

ARCH_X86_64 = 1
ARCH_ARM64 = 2

OS_IOS = 1
OS_ANDROID = 2
OS_MACOS = 3
OS_LINUX = 4
OS_WINDOWS = 5

CLOCK_MACH_CONTINUOUS = 1
CLOCK_QPC = 2
CLOCK_BOOTTIME = 3

#: index header ``flags`` bit 0: the thread has a detail.atf
FLAG_HAS_DETAIL_FILE = 0x1

# Index event kinds
EVENT_CALL = 1
EVENT_RETURN = 2
EVENT_EXCEPTION = 3  #: function left by an exception
EVENT_KIND_NAMES = {EVENT_CALL: "CALL", EVENT_RETURN: "RETURN", EVENT_EXCEPTION: "EXCEPTION"}

# Detail event types (others are reserved by the spec)
DETAIL_FUNCTION_CALL = 3
DETAIL_FUNCTION_RETURN = 4

#: ``detail_seq`` of an index event that has no detail event
NO_DETAIL = 0xFFFFFFFF

# Manifest
MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT_VERSION = "2.1"
MANIFEST_FORMAT_VERSIONS_READ = ("2.0", "2.1")
INDEX_FILE_NAME = "index.atf"
DETAIL_FILE_NAME = "detail.atf"
THREAD_DIR_PREFIX = "thread_"

# ---------------------------------------------------------------------------
# index.atf
# ---------------------------------------------------------------------------

INDEX_HEADER_DTYPE = np.dtype(
    [
        ("magic", "S4"),  # 0   b"ATI2"
        ("endian", "u1"),  # 4   0x01
        ("version", "u1"),  # 5   1
        ("arch", "u1"),  # 6   ARCH_*
        ("os", "u1"),  # 7   OS_*
        ("flags", "<u4"),  # 8   bit 0: has_detail_file
        ("thread_id", "<u4"),  # 12  N of thread_N
        ("clock_type", "u1"),  # 16  CLOCK_*
        ("reserved0", "u1", (3,)),  # 17  0
        ("reserved1", "<u4"),  # 20  0
        ("event_size", "<u4"),  # 24  32
        ("event_count", "<u4"),  # 28  0 until finalize
        ("events_offset", "<u8"),  # 32  64
        ("footer_offset", "<u8"),  # 40  64 until finalize
        ("time_start_ns", "<u8"),  # 48
        ("time_end_ns", "<u8"),  # 56
    ]
)

INDEX_EVENT_DTYPE = np.dtype(
    [
        ("timestamp_ns", "<u8"),  # 0   non-decreasing within one thread file
        ("function_id", "<u8"),  # 8   (module_id << 32) | symbol_index
        ("thread_id", "<u4"),  # 16  N
        ("event_kind", "<u4"),  # 20  EVENT_*
        ("call_depth", "<u4"),  # 24
        ("detail_seq", "<u4"),  # 28  position in detail.atf or NO_DETAIL
    ]
)

INDEX_FOOTER_DTYPE = np.dtype(
    [
        ("magic", "S4"),  # 0   b"2ITA"
        ("checksum", "<u4"),  # 4   zlib CRC-32 of the events section; 0 = not recorded
        ("event_count", "<u8"),  # 8   authoritative
        ("time_start_ns", "<u8"),  # 16
        ("time_end_ns", "<u8"),  # 24
        ("bytes_written", "<u8"),  # 32  32 * event_count
        ("reserved", "u1", (24,)),  # 40  0
    ]
)

# ---------------------------------------------------------------------------
# detail.atf
# ---------------------------------------------------------------------------

DETAIL_HEADER_DTYPE = np.dtype(
    [
        ("magic", "S4"),  # 0   b"ATD2"
        ("endian", "u1"),  # 4
        ("version", "u1"),  # 5
        ("arch", "u1"),  # 6
        ("os", "u1"),  # 7
        ("flags", "<u4"),  # 8   0
        ("thread_id", "<u4"),  # 12
        ("reserved0", "<u4"),  # 16
        ("events_offset", "<u8"),  # 20  64 (unaligned: the struct is packed)
        ("event_count", "<u8"),  # 28
        ("bytes_length", "<u8"),  # 36  bytes in the events section
        ("index_seq_start", "<u8"),  # 44
        ("index_seq_end", "<u8"),  # 52
        ("reserved1", "<u4"),  # 60
    ]
)

DETAIL_EVENT_HEADER_DTYPE = np.dtype(
    [
        ("total_length", "<u4"),  # 0   header + payload, >= 24
        ("event_type", "<u2"),  # 4   DETAIL_*
        ("flags", "<u2"),  # 6   event-specific (payload version for Python events)
        ("index_seq", "<u4"),  # 8   backward link into index.atf
        ("thread_id", "<u4"),  # 12
        ("timestamp", "<u8"),  # 16  same as the paired index event
    ]
)

DETAIL_FOOTER_DTYPE = np.dtype(
    [
        ("magic", "S4"),  # 0   b"2DTA"
        ("checksum", "<u4"),  # 4   zlib CRC-32 of the events section; 0 = not recorded
        ("event_count", "<u8"),  # 8
        ("bytes_length", "<u8"),  # 16
        ("time_start_ns", "<u8"),  # 24
        ("time_end_ns", "<u8"),  # 32
        ("reserved", "u1", (24,)),  # 40
    ]
)

INDEX_HEADER_SIZE = INDEX_HEADER_DTYPE.itemsize
INDEX_EVENT_SIZE = INDEX_EVENT_DTYPE.itemsize
INDEX_FOOTER_SIZE = INDEX_FOOTER_DTYPE.itemsize
DETAIL_HEADER_SIZE = DETAIL_HEADER_DTYPE.itemsize
DETAIL_EVENT_HEADER_SIZE = DETAIL_EVENT_HEADER_DTYPE.itemsize
DETAIL_FOOTER_SIZE = DETAIL_FOOTER_DTYPE.itemsize

#: byte offset of the first event in both files
INDEX_EVENTS_OFFSET = INDEX_HEADER_SIZE
DETAIL_EVENTS_OFFSET = DETAIL_HEADER_SIZE

assert INDEX_HEADER_SIZE == 64
assert INDEX_EVENT_SIZE == 32
assert INDEX_FOOTER_SIZE == 64
assert DETAIL_HEADER_SIZE == 64
assert DETAIL_EVENT_HEADER_SIZE == 24
assert DETAIL_FOOTER_SIZE == 64
assert field_offset(DETAIL_HEADER_DTYPE, "events_offset") == 20
assert field_offset(INDEX_HEADER_DTYPE, "clock_type") == 16

# Field offsets inside one index event, for kernels that work on raw bytes
# (numba sees an index file as uint8; these are the only spellings).
INDEX_EVENT_OFFSETS = {name: field_offset(INDEX_EVENT_DTYPE, name) for name in field_names(INDEX_EVENT_DTYPE)}
DETAIL_EVENT_OFFSETS = {
    name: field_offset(DETAIL_EVENT_HEADER_DTYPE, name) for name in field_names(DETAIL_EVENT_HEADER_DTYPE)
}
OFF_DETAIL_TOTAL_LENGTH = DETAIL_EVENT_OFFSETS["total_length"]
OFF_DETAIL_EVENT_TYPE = DETAIL_EVENT_OFFSETS["event_type"]
OFF_DETAIL_FLAGS = DETAIL_EVENT_OFFSETS["flags"]
OFF_DETAIL_INDEX_SEQ = DETAIL_EVENT_OFFSETS["index_seq"]
OFF_DETAIL_THREAD_ID = DETAIL_EVENT_OFFSETS["thread_id"]
OFF_DETAIL_TIMESTAMP = DETAIL_EVENT_OFFSETS["timestamp"]

#: largest detail event a reader accepts (a sanity bound on total_length)
DETAIL_EVENT_MAX_SIZE = 1 << 30

# ---------------------------------------------------------------------------
# Host codes
# ---------------------------------------------------------------------------


def host_arch() -> int:
    """ARCH_* code of this machine (x86_64 when unknown, as the spec has no 'other')."""
    machine = platform.machine().lower()
    if machine in ("aarch64", "arm64"):
        return ARCH_ARM64
    return ARCH_X86_64


def host_os() -> int:
    """OS_* code of this machine."""
    if sys.platform.startswith("linux"):
        return OS_ANDROID if hasattr(sys, "getandroidapilevel") else OS_LINUX
    if sys.platform == "darwin":
        return OS_MACOS
    if sys.platform.startswith("win"):
        return OS_WINDOWS
    return OS_LINUX


# ---------------------------------------------------------------------------
# In-memory contracts: ring records and thread control blocks
# ---------------------------------------------------------------------------

#: One raw record in an index-lane ring, as a producer writes it. The drain
#: turns it into an INDEX_EVENT_DTYPE record (timestamp conversion, thread id,
#: detail link). Seen from nopython code as three uint64 words:
#: word 0 = timestamp ticks, word 1 = function id,
#: word 2 = event_kind | (call_depth << 32).
RING_RECORD_DTYPE = np.dtype(
    [
        ("timestamp", "<u8"),  # raw clock ticks (see atf2.clock); converted by the drain
        ("function_id", "<u8"),
        ("event_kind", "<u4"),
        ("call_depth", "<u4"),
    ]
)
RING_RECORD_WORDS = RING_RECORD_DTYPE.itemsize // 8
assert RING_RECORD_DTYPE.itemsize == 24 and RING_RECORD_WORDS == 3

# ---------------------------------------------------------------------------
# Thread control block (issue 3: atf2.rings, atf2.kernels.ring, atf2.drain;
# read and written from nopython code by the capture hook of atf2.tracer)
# ---------------------------------------------------------------------------
#
# Every registered thread owns one ``numpy.uint64`` array of CTRL_SLOTS words
# and its ring map (its control block) and two preallocated pools, one per lane:
#
# * index lane: ``uint64[max_ring_count * ring_capacity, 3]`` (RingConfig), RING_RECORD_DTYPE
#   records seen as 3 words;
# * detail lane: a byte arena of ``detail_ring_count * detail_ring_bytes``
#   bytes holding DETAIL_RING_RECORD_DTYPE headers followed by their payload,
#   each record padded to 8 bytes.
#
# A lane's pool is a circle of rings. Positions are absolute (counted from the
# thread's first record, in records for the index lane and bytes for the
# detail lane) and only ever grow, so "which ring" is ``position // ring_size``;
# where it lies in the pool is ``ring % ring_count`` for the detail lane and
# the ring map below for the index lane (its pool can grow). The producer
# owns WRITE_POS (published after the record is stored), the drain owns
# READ_POS except for one move: when the producer needs its next ring and
# every ring is still waiting for the drain (pool exhausted), it advances
# READ_POS past the oldest ring with a compare-and-swap (drop-oldest) and
# counts the records it discarded. The drain copies
# [READ_POS, WRITE_POS) and then compare-and-swaps READ_POS forward; a failed
# swap means the producer reclaimed part of what it copied, so it discards the
# copy and retries. That swap is the only coordination point: no locks.
#
# Each slot has exactly one writer (P = producer thread, D = drain thread,
# S = set once at registration; CAS = both, through compare-and-swap).

CTRL_STATE = 0  #: S/D: CHANNEL_* below
CTRL_ENABLED = 1  #: S/D: 1 while the session accepts this thread's events (the hook may test it)
CTRL_THREAD_ID = 2  #: S: the session-local thread number N
# index lane geometry (S)
CTRL_INDEX_POOL_PTR = 3  #: data address of the index pool (uint64[max rings * capacity, 3])
CTRL_INDEX_RING_CAPACITY = 4  #: records per index ring
CTRL_INDEX_RING_COUNT = 5  #: P: index rings in the pool (1 active + spares; the producer grows it)
# index lane cursors
CTRL_INDEX_WRITE_POS = 6  #: P: absolute records pushed so far (= events recorded)
CTRL_INDEX_ACTIVE_END = 7  #: P: absolute position where the active ring ends (0 before the first push)
CTRL_INDEX_ROW_DELTA = 8  #: P: absolute position - pool row, for the active ring
CTRL_INDEX_ACTIVE_RING = 9  #: P: pool slot of the active ring
CTRL_INDEX_RINGS_SUBMITTED = 10  #: P: full rings handed to the drain
CTRL_INDEX_READ_POS = 11  #: CAS: absolute records consumed (written or dropped)
CTRL_INDEX_WRITTEN = 12  #: D: records encoded and accepted by the writer
CTRL_INDEX_HIGH_WATER = 13  #: P: most records ever waiting in the pool (seen at ring switches)
CTRL_INDEX_DRAIN_HIGH_WATER = 14  #: D: most records the drain found waiting in one cycle
CTRL_INDEX_WM_HIGH = 15  #: S: high watermark, records waiting
CTRL_INDEX_WM_LOW = 16  #: S: low watermark, records waiting (< high: hysteresis)
CTRL_INDEX_WM_STATE = 17  #: CAS: WM_NORMAL / WM_HIGH
CTRL_INDEX_WM_CROSSINGS = 18  #: P: times the lane went from normal to high
# detail lane geometry (S)
CTRL_DETAIL_POOL_PTR = 19  #: data address of the detail arena (0 when detail is off)
CTRL_DETAIL_RING_BYTES = 20  #: bytes per detail ring (multiple of 8)
CTRL_DETAIL_RING_COUNT = 21  #: detail rings in the arena (0 when detail is off)
# detail lane cursors (absolute byte positions)
CTRL_DETAIL_WRITE_POS = 22  #: P
CTRL_DETAIL_ACTIVE_END = 23  #: P
CTRL_DETAIL_ROW_DELTA = 24  #: P
CTRL_DETAIL_ACTIVE_RING = 25  #: P
CTRL_DETAIL_RINGS_SUBMITTED = 26  #: P
CTRL_DETAIL_READ_POS = 27  #: CAS
CTRL_DETAIL_RECORDS = 28  #: P: detail records offered (= detail events recorded)
CTRL_DETAIL_WRITTEN = 29  #: D
CTRL_DETAIL_HIGH_WATER = 30  #: P: most bytes ever waiting
CTRL_DETAIL_BYTES_WRITTEN = 31  #: D: payload bytes accepted by the writer
# hook-private per-thread state (atf2.tracer owns these; atf2 never touches them)
CTRL_HOOK_DEPTH = 32  #: current call depth
CTRL_HOOK_FLAGS = 33
CTRL_HOOK_SCRATCH0 = 34
CTRL_HOOK_SCRATCH1 = 35
CTRL_HOOK_SCRATCH2 = 36
CTRL_HOOK_SCRATCH3 = 37
CTRL_INDEX_RING_COUNT_TARGET = 39  #: S: the most index rings the pool has rows for (the producer grows RING_COUNT toward it, see index_ring_advance)
# drop counters: CTRL_*_DROPS + reason code, DROP_REASON_SLOTS words per lane.
# Reasons counted by the producer and by the drain live in distinct words.
CTRL_INDEX_DROPS = 40
CTRL_DETAIL_DROPS = 48
DROP_REASON_SLOTS = 8
# Index ring map: which rows of the pool hold which ring. Ring L (positions
# [L * capacity, (L + 1) * capacity)) lives in pool slot
# ctrl[CTRL_INDEX_RING_MAP + (L & ctrl[CTRL_INDEX_RING_MAP_MASK])], rows
# [slot * capacity, (slot + 1) * capacity). The map follows the fixed slots
# (the control array is ``ctrl_words(most rings)`` long): one word per ring the
# pool may grow to, rounded up to a power of two. The producer sets a ring's entry at the switch into
# it, before publishing any of its records, so the drain (which reads entries
# only below the WRITE_POS it loaded) always finds it set. A map, rather than
# "slot = L % ring count", lets a pool grow at any ring switch: the waiting
# rings keep their slots, whatever their position, and the new ones take
# fresh slots (see index_ring_advance).
CTRL_INDEX_FRESH_NEXT = 56  #: P: next never-used slot of the pool as it stands
CTRL_INDEX_FRESH_END = 57  #: P: slots in use once the fresh ones are taken (the ring count)
#: S: address of the session's growth budget, one uint64 word shared by every
#: thread: records all index pools together may still grow by (a producer
#: takes its growth out of it with a CAS, a closed channel gives it back);
#: 0: no budget (growth bounded only by RING_COUNT_TARGET)
CTRL_INDEX_GROWTH_BUDGET_PTR = 58
CTRL_INDEX_GROWTH_REFUSED = 59  #: P: times the pool would have grown but the budget had no room
CTRL_INDEX_RING_MAP_MASK = 60  #: S: the ring map's length - 1
CTRL_INDEX_RING_MAP = 64  #: first word of the ring map
#: the control array's fixed slots (all that the capture hooks touch); the ring map follows them
CTRL_SLOTS = CTRL_INDEX_RING_MAP
MAX_INDEX_RINGS = 1024  #: the most index rings a pool may grow to (its ring map's length at most)


def ctrl_words(max_index_rings: int) -> int:
    """Length of the control array of a thread whose index pool may grow to ``max_index_rings`` rings."""
    return CTRL_INDEX_RING_MAP + (1 << (max(1, max_index_rings) - 1).bit_length())

# Drop reason codes (per lane: recorded = written + sum of drops, exactly)
DROP_RING_FULL = 1  #: record can never fit one ring (a detail payload bigger than a detail ring)
DROP_POOL_EXHAUSTED = 2  #: every ring was waiting for the drain: oldest ring reclaimed (index,
#                           detail) by the producer, its unwritten records counted here
DROP_ENCODER_LAG = 3  #: pushed after the drain's final pass over a closing thread (never encoded)
DROP_DISK_ERROR = 4  #: encoded but the writer failed (WriteError: ENOSPC, EIO, EFBIG, ...)
DROP_PAIR_LOST = 5  #: detail whose paired index event was dropped, so it has nothing to link to
DROP_REASON_NAMES = {
    DROP_RING_FULL: "ring_full",
    DROP_POOL_EXHAUSTED: "pool_exhausted",
    DROP_ENCODER_LAG: "encoder_lag",
    DROP_DISK_ERROR: "disk_error",
    DROP_PAIR_LOST: "pair_lost",
}
assert max(DROP_REASON_NAMES) < DROP_REASON_SLOTS
assert CTRL_INDEX_DROPS + DROP_REASON_SLOTS <= CTRL_DETAIL_DROPS
assert CTRL_DETAIL_DROPS + DROP_REASON_SLOTS <= CTRL_INDEX_FRESH_NEXT
assert MAX_INDEX_RINGS & (MAX_INDEX_RINGS - 1) == 0 and ctrl_words(MAX_INDEX_RINGS) == CTRL_INDEX_RING_MAP + MAX_INDEX_RINGS

# CTRL_STATE values
CHANNEL_ACTIVE = 0  #: thread registered, drained every cycle
CHANNEL_EXITED = 1  #: the thread ended (or the tracer said so): drain it once more and finalize
CHANNEL_CLOSED = 2  #: finalized; pools released, counters final

# CTRL_*_WM_STATE values
WM_NORMAL = 0
WM_HIGH = 1

#: Bit of the ring record's event_kind word: the timestamp word already holds
#: CLOCK_BOOTTIME ns (``emit_batch(timestamps_ns=...)``), not raw ticks.
RING_KIND_TIMESTAMP_NS = 1 << 31
#: the ring record's third word: event_kind | (call_depth << RING_DEPTH_SHIFT)
RING_DEPTH_SHIFT = 32
RING_KIND_MASK = 0xFFFFFFFF

#: Header of one record in a detail arena (in memory only, 8-byte aligned;
#: the payload follows, then padding to 8 bytes). Seen from nopython code as
#: two uint64 words: word 0 = index_pos, word 1 = total_length |
#: (event_type << 32) | (flags << 48).
DETAIL_RING_RECORD_DTYPE = np.dtype(
    [
        ("index_pos", "<u8"),  # absolute index-lane position of the paired index event
        ("total_length", "<u4"),  # header + payload bytes (unpadded); 0 = skip to the ring's end
        ("event_type", "<u2"),  # DETAIL_*
        ("flags", "<u2"),
    ]
)
DETAIL_RING_HEADER_SIZE = DETAIL_RING_RECORD_DTYPE.itemsize
DETAIL_RING_ALIGN = 8
DETAIL_RING_TYPE_SHIFT = 32
DETAIL_RING_FLAGS_SHIFT = 48
assert DETAIL_RING_HEADER_SIZE == 16
assert field_offset(DETAIL_RING_RECORD_DTYPE, "total_length") == 8
assert field_offset(DETAIL_RING_RECORD_DTYPE, "event_type") == 8 + DETAIL_RING_TYPE_SHIFT // 8
assert field_offset(DETAIL_RING_RECORD_DTYPE, "flags") == 8 + DETAIL_RING_FLAGS_SHIFT // 8

# ---------------------------------------------------------------------------
# Python detail payload (issue 5: atf2.payload; every byte in atf2/PAYLOAD.md)
# ---------------------------------------------------------------------------
#
# The payload of a detail event recorded for a Python event. Its version is
# the detail event's ``flags`` (0 = an opaque payload, e.g. ``emit(detail=)``)
# and the manifest key ``detail_payload_version``. Layout:
#
#     PAYLOAD_HEADER_DTYPE                      16 bytes
#     stack_depth x u64 caller function ids     innermost caller first
#     value_count x typed value                 tag byte + body (below)
#
# The struct formats beside the dtypes are the same bytes, for the codec's
# ``struct`` calls (asserted equal below).

#: the payload version this atf2 writes (the detail event's ``flags``)
DETAIL_PAYLOAD_VERSION = 1
#: payload versions this atf2 decodes
DETAIL_PAYLOAD_VERSIONS_READ = (1,)
#: ``flags`` of a detail event whose payload is opaque bytes
DETAIL_PAYLOAD_OPAQUE = 0
MANIFEST_DETAIL_PAYLOAD_VERSION_KEY = "detail_payload_version"

PAYLOAD_HEADER_DTYPE = np.dtype(
    [
        ("function_id", "<u8"),  # 0   the event's function (same as the index event)
        ("kind", "u1"),  # 8   EVENT_* of the paired index event
        ("value_count", "u1"),  # 9   typed values after the stack (args / 1 / 1)
        ("stack_depth", "u1"),  # 10  caller ids after the header
        ("flags", "u1"),  # 11  PAYLOAD_F_*
        ("arg_count", "<u4"),  # 12  CALL: parameters the function declares; else 0
    ]
)
PAYLOAD_HEADER_STRUCT = "<QBBBBI"
PAYLOAD_HEADER_SIZE = PAYLOAD_HEADER_DTYPE.itemsize
PAYLOAD_STACK_ENTRY_STRUCT = "<Q"
PAYLOAD_STACK_ENTRY_SIZE = 8

PAYLOAD_F_ARGS_TRUNCATED = 0x01  #: the function declares more parameters than were recorded
PAYLOAD_F_STACK_TRUNCATED = 0x02  #: there were more callers than recorded
PAYLOAD_MAX_VALUES = 0xFF  #: value_count is one byte
PAYLOAD_MAX_STACK = 0xFF  #: stack_depth is one byte

# Value tags (one byte) and bodies
PAYLOAD_TAG_STRUCT = "<B"
PAYLOAD_VAL_NONE = 0  #: no body
PAYLOAD_VAL_FALSE = 1  #: no body
PAYLOAD_VAL_TRUE = 2  #: no body
PAYLOAD_VAL_INT = 3  #: body PAYLOAD_INT_STRUCT: signed 64-bit
PAYLOAD_VAL_FLOAT = 4  #: body PAYLOAD_FLOAT_STRUCT: IEEE 754 binary64
PAYLOAD_VAL_STR = 5  #: body: text (UTF-8, surrogatepass; original length in characters)
PAYLOAD_VAL_BYTES = 6  #: body: text (raw bytes; original length in bytes)
PAYLOAD_VAL_BIGINT = 7  #: body PAYLOAD_BIGINT_STRUCT length n, then n bytes two's complement LE
PAYLOAD_VAL_OBJECT = 8  #: body: type name, then text (the bounded repr)
PAYLOAD_VAL_REPR_FAILED = 9  #: body: type name, then text ("ErrorType: message" of what repr raised)
PAYLOAD_VAL_REPR_SKIPPED = 10  #: body: type name, then text (why no repr was taken)
PAYLOAD_VAL_EXCEPTION = 11  #: body: type name (of the exception), then text (its message)
PAYLOAD_VAL_UNBOUND = 12  #: no body: the parameter had no value in the frame
PAYLOAD_VAL_NAMES = {
    PAYLOAD_VAL_NONE: "none",
    PAYLOAD_VAL_FALSE: "false",
    PAYLOAD_VAL_TRUE: "true",
    PAYLOAD_VAL_INT: "int",
    PAYLOAD_VAL_FLOAT: "float",
    PAYLOAD_VAL_STR: "str",
    PAYLOAD_VAL_BYTES: "bytes",
    PAYLOAD_VAL_BIGINT: "bigint",
    PAYLOAD_VAL_OBJECT: "object",
    PAYLOAD_VAL_REPR_FAILED: "repr_failed",
    PAYLOAD_VAL_REPR_SKIPPED: "repr_skipped",
    PAYLOAD_VAL_EXCEPTION: "exception",
    PAYLOAD_VAL_UNBOUND: "unbound",
}
PAYLOAD_INT_STRUCT = "<q"
PAYLOAD_FLOAT_STRUCT = "<d"
PAYLOAD_BIGINT_STRUCT = "<I"
#: a "text": original length (u32, saturated), stored byte count n (u32), then n bytes
PAYLOAD_TEXT_STRUCT = "<II"
#: a "type name": byte count t (u16), then t bytes UTF-8 (``module.qualname``; builtins bare)
PAYLOAD_TYPE_NAME_STRUCT = "<H"
PAYLOAD_U32_MAX = 0xFFFFFFFF
PAYLOAD_U16_MAX = 0xFFFF

assert PAYLOAD_HEADER_SIZE == 16
assert field_offset(PAYLOAD_HEADER_DTYPE, "arg_count") == 12


def _payload_struct_sizes_agree() -> bool:
    import struct

    return (
        struct.calcsize(PAYLOAD_HEADER_STRUCT) == PAYLOAD_HEADER_SIZE
        and struct.calcsize(PAYLOAD_STACK_ENTRY_STRUCT) == PAYLOAD_STACK_ENTRY_SIZE
        and struct.calcsize(PAYLOAD_TEXT_STRUCT) == 8
    )


assert _payload_struct_sizes_agree()

# Python detail capture (issue 5: atf2.kernels.detail_hook, atf2.detail): the
# detail variant of the capture hook builds each Python CALL/RETURN/EXCEPTION
# payload in nopython code; the per-thread "detail block" (a uint64 array
# whose address sits in a free slot of the thread control block, 0 = no
# detail capture on this thread) holds what it needs: the addresses of the
# types it encodes inline, of the Python callables it falls back to, of its
# scratch buffer and code-info table, and the options. S: set by atf2.detail
# before the hook is installed; H: written by the hooks.
CTRL_HOOK_DETAIL = 38  #: S: address of the thread's detail block, 0 when detail capture is off
DETAIL_CALL_ARG0 = 0  #: H: vectorcall argument 0 of a fallback callable
DETAIL_CALL_ARG1 = 1  #: H: vectorcall argument 1
DETAIL_CALL_NONE = 2  #: S: address of None
DETAIL_CALL_TRUE = 3  #: S: address of True
DETAIL_CALL_FALSE = 4  #: S: address of False
DETAIL_CALL_T_INT = 5  #: S: address of the type int (exact type checks: subclasses go to Python)
DETAIL_CALL_T_FLOAT = 6  #: S: address of float
DETAIL_CALL_T_STR = 7  #: S: address of str
DETAIL_CALL_T_BYTES = 8  #: S: address of bytes
DETAIL_CALL_T_CELL = 9  #: S: address of the cell type (a parameter captured by a closure)
DETAIL_CALL_VALUE_FN = 10  #: S: callable value(obj) -> bytes (tag + body) for every other object
DETAIL_CALL_INFO_FN = 11  #: S: callable code_info(frame) -> int (inserts into the code-info table)
DETAIL_CALL_ARGS_FN = 12  #: S: callable call_values(frame) -> bytes (CALL values when the frame's locals cannot be read)
DETAIL_CALL_EXC_FN = 13  #: S: callable exception_value(type, value) -> bytes
DETAIL_CALL_INFO_TABLE = 14  #: S: data address of the code-info table (atf2.kernels.codetable layout)
DETAIL_CALL_INFO_MASK = 15  #: S: its capacity - 1
DETAIL_CALL_SCRATCH = 16  #: S: data address of the thread's payload scratch buffer
DETAIL_CALL_SCRATCH_BYTES = 17  #: S: its size
DETAIL_CALL_LOCALS_OFFSET = 18  #: S: offset of the argument slots in CPython's frame struct (0: read them through Python)
DETAIL_CALL_FRAME_OFFSET = 19  #: S: offset of the interpreter-frame pointer in a frame object
DETAIL_CALL_TEXT_CAP = 20  #: S: PayloadOptions.text_cap
DETAIL_CALL_STACK_DEPTH = 21  #: S: PayloadOptions.stack_depth (K)
DETAIL_CALL_TYPE_OFFSET = 22  #: S: offset of ob_type in an object
DETAIL_CALL_OVERFLOW = 23  #: H: out-parameter of PyLong_AsLongLongAndOverflow
DETAIL_CALL_STRLEN = 24  #: H: out-parameter of PyUnicode_AsUTF8AndSize
DETAIL_CALL_EXC_FRAME = 25  #: H: frame of the last exception seen by the trace hook (0: none)
DETAIL_CALL_EXC_TYPE = 26  #: H: its type (a strong reference while set)
DETAIL_CALL_EXC_VALUE = 27  #: H: its value (a strong reference while set)
DETAIL_CALL_LINES_NAME = 28  #: S: address of the interned str "f_trace_lines"
DETAIL_CALL_TYPE_TABLE = 29  #: S: data address of the type table (type address -> DETAIL_TYPE_* word)
DETAIL_CALL_TYPE_MASK = 30  #: S: its capacity - 1
DETAIL_CALL_TYPE_FN = 31  #: S: callable type_info(obj) -> int (inserts into the type table)
DETAIL_CALL_HEADS = 32  #: S: data address of the packed OBJECT tag + type names (offsets in DETAIL_TYPE_*)
DETAIL_CALL_REPR_CAP = 33  #: S: PayloadOptions.repr_cap
DETAIL_CALL_SLOW_TICKS = 34  #: S: PayloadOptions.slow_repr_ns in ticks
DETAIL_CALL_SLOW_FN = 35  #: S: callable slow_repr(type): puts a type on the encoder's skip list
DETAIL_CALL_USER_START = 36  #: H: ticks (| 1) when the hook began running user code (a repr), 0 when not
DETAIL_CALL_USER_FIRED = 37  #: W: the repr watchdog interrupted that user code (atf2.detail.ReprWatchdog)
DETAIL_CALL_THREAD_IDENT = 38  #: S: the thread's ident (PyThreadState_SetAsyncExc)
DETAIL_CALL_ABSORB_FN = 39  #: S: callable absorb(): takes a ReprTimeout still pending for the thread
DETAIL_CALL_CLOSED = 40  #: S: tracing stopped: the trace hook keeps nothing more and removes itself
DETAIL_CALL_SLOTS = 41
#: type table value: offset (bits 0-31) and length (bits 32-47) of the type's OBJECT head, or DETAIL_TYPE_PYTHON
DETAIL_TYPE_HEAD_LEN_SHIFT = 32
DETAIL_TYPE_HEAD_LEN_MASK = 0xFFFF
DETAIL_TYPE_PYTHON = 1 << 48  #: values of this type are encoded by PayloadEncoder.value (containers, slow reprs)
#: code-info table value: kept argument count (bits 0-7), ARGS_TRUNCATED (bit 8), declared parameters (bits 32-63)
DETAIL_INFO_KEPT_MASK = 0xFF
DETAIL_INFO_TRUNCATED = 0x100
DETAIL_INFO_NPARAMS_SHIFT = 32
assert CTRL_HOOK_SCRATCH3 < CTRL_HOOK_DETAIL < CTRL_INDEX_DROPS
assert CTRL_HOOK_DETAIL < CTRL_INDEX_RING_COUNT_TARGET < CTRL_INDEX_DROPS

#: detail drop reason (flight mode): captured, but outside every window, so not persisted
DROP_OUTSIDE_WINDOW = 6
DROP_REASON_NAMES[DROP_OUTSIDE_WINDOW] = "outside_window"
assert max(DROP_REASON_NAMES) < DROP_REASON_SLOTS
