"""atf2.layout against the spec's tables, field by field."""

import numpy as np
import pytest

from atf2 import layout as L

# (offset, size, field) straight from ATF_V2_SPEC.md
SPEC_TABLES = {
    "INDEX_HEADER_DTYPE": (64, [
        (0, 4, "magic"), (4, 1, "endian"), (5, 1, "version"), (6, 1, "arch"), (7, 1, "os"),
        (8, 4, "flags"), (12, 4, "thread_id"), (16, 1, "clock_type"), (17, 3, "reserved0"),
        (20, 4, "reserved1"), (24, 4, "event_size"), (28, 4, "event_count"), (32, 8, "events_offset"),
        (40, 8, "footer_offset"), (48, 8, "time_start_ns"), (56, 8, "time_end_ns"),
    ]),
    "INDEX_EVENT_DTYPE": (32, [
        (0, 8, "timestamp_ns"), (8, 8, "function_id"), (16, 4, "thread_id"), (20, 4, "event_kind"),
        (24, 4, "call_depth"), (28, 4, "detail_seq"),
    ]),
    "INDEX_FOOTER_DTYPE": (64, [
        (0, 4, "magic"), (4, 4, "checksum"), (8, 8, "event_count"), (16, 8, "time_start_ns"),
        (24, 8, "time_end_ns"), (32, 8, "bytes_written"), (40, 24, "reserved"),
    ]),
    "DETAIL_HEADER_DTYPE": (64, [
        (0, 4, "magic"), (4, 1, "endian"), (5, 1, "version"), (6, 1, "arch"), (7, 1, "os"),
        (8, 4, "flags"), (12, 4, "thread_id"), (16, 4, "reserved0"), (20, 8, "events_offset"),
        (28, 8, "event_count"), (36, 8, "bytes_length"), (44, 8, "index_seq_start"),
        (52, 8, "index_seq_end"), (60, 4, "reserved1"),
    ]),
    "DETAIL_EVENT_HEADER_DTYPE": (24, [
        (0, 4, "total_length"), (4, 2, "event_type"), (6, 2, "flags"), (8, 4, "index_seq"),
        (12, 4, "thread_id"), (16, 8, "timestamp"),
    ]),
    "DETAIL_FOOTER_DTYPE": (64, [
        (0, 4, "magic"), (4, 4, "checksum"), (8, 8, "event_count"), (16, 8, "bytes_length"),
        (24, 8, "time_start_ns"), (32, 8, "time_end_ns"), (40, 24, "reserved"),
    ]),
}


@pytest.mark.parametrize("name", sorted(SPEC_TABLES))
def test_dtype_matches_spec_table(name):
    dtype = getattr(L, name)
    size, rows = SPEC_TABLES[name]
    assert dtype.itemsize == size
    assert list(dtype.names) == [r[2] for r in rows]
    covered = 0
    for offset, width, field in rows:
        sub, off = dtype.fields[field][:2]
        assert off == offset, field
        assert sub.itemsize == width, field
        assert sub.base.str[0] in "<|", f"{field} is not little-endian"
        covered += width
    assert covered == size  # packed: no padding anywhere


def test_integer_fields_are_unsigned_little_endian():
    for name in SPEC_TABLES:
        dtype = getattr(L, name)
        for field in dtype.names:
            sub = dtype.fields[field][0]
            base = sub.base
            if field != "magic":
                assert base.kind == "u", (name, field)
                assert base.str[0] in "<|", (name, field)


def test_constants():
    assert (L.INDEX_MAGIC, L.INDEX_FOOTER_MAGIC, L.DETAIL_MAGIC, L.DETAIL_FOOTER_MAGIC) == (b"ATI2", b"2ITA", b"ATD2", b"2DTA")
    assert L.NO_DETAIL == 0xFFFFFFFF
    assert (L.EVENT_CALL, L.EVENT_RETURN, L.EVENT_EXCEPTION) == (1, 2, 3)
    assert (L.DETAIL_FUNCTION_CALL, L.DETAIL_FUNCTION_RETURN) == (3, 4)
    assert (L.CLOCK_MACH_CONTINUOUS, L.CLOCK_QPC, L.CLOCK_BOOTTIME) == (1, 2, 3)
    assert (L.ARCH_X86_64, L.ARCH_ARM64) == (1, 2)
    assert (L.OS_IOS, L.OS_ANDROID, L.OS_MACOS, L.OS_LINUX, L.OS_WINDOWS) == (1, 2, 3, 4, 5)
    assert L.FLAG_HAS_DETAIL_FILE == 1
    assert L.ENDIAN_LITTLE == 1 and L.FORMAT_VERSION == 1
    assert L.INDEX_EVENTS_OFFSET == 64 and L.DETAIL_EVENTS_OFFSET == 64


def test_detail_offsets_for_kernels():
    assert (L.OFF_DETAIL_TOTAL_LENGTH, L.OFF_DETAIL_EVENT_TYPE, L.OFF_DETAIL_FLAGS) == (0, 4, 6)
    assert (L.OFF_DETAIL_INDEX_SEQ, L.OFF_DETAIL_THREAD_ID, L.OFF_DETAIL_TIMESTAMP) == (8, 12, 16)


def test_host_codes_are_spec_codes():
    assert L.host_arch() in (L.ARCH_X86_64, L.ARCH_ARM64)
    assert L.host_os() in (L.OS_IOS, L.OS_ANDROID, L.OS_MACOS, L.OS_LINUX, L.OS_WINDOWS)


def test_event_dtype_is_public():
    import atf2

    assert atf2.INDEX_EVENT_DTYPE is L.INDEX_EVENT_DTYPE
    a = np.zeros(3, dtype=atf2.INDEX_EVENT_DTYPE)
    assert a.tobytes() == bytes(96)
