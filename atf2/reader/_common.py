"""Shared plumbing of the readers: mapping files, struct formats from dtypes."""

from __future__ import annotations

import mmap
import os
import stat
import struct
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import CorruptFileError
from ..layout import field_names

_STRUCT_CODES = {"u1": "B", "u2": "H", "u4": "I", "u8": "Q", "i1": "b", "i2": "h", "i4": "i", "i8": "q"}


def struct_for(dtype: np.dtype) -> struct.Struct:
    """A ``struct.Struct`` reading one record of a flat little-endian dtype.

    Built from the dtype itself, so the layout module stays the only place
    that spells the layout.
    """
    codes = []
    for name in field_names(dtype):
        sub = dtype[name]
        codes.append(_STRUCT_CODES[f"{sub.kind}{sub.itemsize}"])
    st = struct.Struct("<" + "".join(codes))
    assert st.size == dtype.itemsize
    return st


def record_dict(record: np.void) -> dict[str, Any]:
    """A numpy structured scalar as a dict of plain Python values."""
    out = {}
    for name in field_names(record.dtype):
        value = record[name]
        if isinstance(value, np.ndarray):
            value = value.tolist()
        elif isinstance(value, np.generic):
            value = value.item()
        out[name] = value
    return out


class MappedFile:
    """A read-only memory map of a whole file, with its size and a uint8 view."""

    # None once closed (the readers test ``map is None``); typed for the open
    # state, the one every other use sees.
    map: mmap.mmap
    bytes: npt.NDArray[np.uint8]

    def __init__(self, path: str | os.PathLike[str], min_size: int, what: str):
        self.path = os.fspath(path)
        try:
            # O_NONBLOCK: opening a FIFO planted in a session must not block (it is refused below)
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            raise CorruptFileError(f"{what} is missing", self.path) from None
        except OSError as exc:
            raise CorruptFileError(f"cannot open {what}: {exc.strerror or exc}", self.path) from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise CorruptFileError(f"{what} is not a regular file", self.path)
            self.size = st.st_size
            if self.size < min_size:
                raise CorruptFileError(
                    f"truncated header: the file has {self.size} bytes, a {what} header needs {min_size}", self.path, self.size
                )
            try:
                self.map = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            except (OSError, ValueError) as exc:
                raise CorruptFileError(f"cannot map {what}: {exc}", self.path) from None
        finally:
            os.close(fd)
        self.bytes = np.frombuffer(self.map, dtype=np.uint8)

    def array(self, dtype: np.dtype, offset: int, count: int) -> npt.NDArray[Any]:
        """A zero-copy read-only view of ``count`` records at ``offset``."""
        return np.frombuffer(self.map, dtype=dtype, count=count, offset=offset)

    def close(self) -> None:
        self.bytes = None  # type: ignore[assignment]  # closed (see the class body)
        if self.map is not None:
            try:
                self.map.close()
            except BufferError:
                # a caller still holds a zero-copy view; the map is released with it
                pass
            self.map = None  # type: ignore[assignment]  # closed (see the class body)


class HeaderFooterMixin:
    """What the index and detail readers say alike about their header and footer.

    Both keep the parsed header record in ``_header`` and the footer record (or
    None when it is missing or damaged) in ``_footer``.
    """

    _header: Any
    _footer: Any

    @property
    def recovered(self) -> bool:
        """True when the footer is missing or damaged (count taken from the file itself)."""
        return self._footer is None

    @property
    def header(self) -> dict[str, Any]:
        return record_dict(self._header)

    @property
    def footer(self) -> dict[str, Any] | None:
        return None if self._footer is None else record_dict(self._footer)

    @property
    def thread_id(self) -> int:
        return int(self._header["thread_id"])
