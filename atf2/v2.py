"""Compatibility name: ``from atf2.v2 import SessionReader`` etc.

The same objects as the top-level ``atf2`` names (not copies), for code
written against the original ATF v2 Python reader's module path.
"""

from .errors import AtfV2Error, CorruptFileError, ManifestError
from .layout import INDEX_EVENT_DTYPE, NO_DETAIL
from .reader import (
    MERGED_EVENT_DTYPE,
    DetailEvent,
    DetailReader,
    IndexEvent,
    IndexReader,
    SessionReader,
    ThreadReader,
)

__all__ = [
    "INDEX_EVENT_DTYPE",
    "MERGED_EVENT_DTYPE",
    "NO_DETAIL",
    "AtfV2Error",
    "CorruptFileError",
    "DetailEvent",
    "DetailReader",
    "IndexEvent",
    "IndexReader",
    "ManifestError",
    "SessionReader",
    "ThreadReader",
]
