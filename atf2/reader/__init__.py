"""The ATF v2 read API.

``IndexReader`` (one index.atf), ``DetailReader`` (one detail.atf),
``ThreadReader`` (one thread_N/ directory, links both ways) and
``SessionReader`` (a session directory: manifest, threads, merged order).
Every reader maps its files read-only, is a context manager, and reports a bad
file as an ``AtfV2Error`` naming the file and the byte offset.
"""

from .detail import DetailEvent, DetailReader
from .index import IndexEvent, IndexReader, VerifyResult
from .session import MERGED_EVENT_DTYPE, SessionReader, Symbol
from .thread import ThreadReader

__all__ = [
    "MERGED_EVENT_DTYPE",
    "DetailEvent",
    "DetailReader",
    "IndexEvent",
    "IndexReader",
    "SessionReader",
    "Symbol",
    "ThreadReader",
    "VerifyResult",
]
