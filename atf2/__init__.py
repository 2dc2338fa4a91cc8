"""atf2: a Numba-JIT tracer for Python programs, writing the ATF v2 format.

Record with ``trace_session_start`` / ``trace_session_stop`` (or ``atf2 record
script.py``), read with ``SessionReader``. The byte layout lives in
``atf2.layout``; everything a bad file or option can cause is an ``AtfV2Error``.
"""

from .analysis import INTERVAL_DTYPE, Summary, intervals, summary
from .detail import mark  # issue 5: flight-recorder trigger
from .errors import (
    AtfV2Error,
    CorruptFileError,
    DanglingLinkError,
    ManifestError,
    SessionStateError,
    WriteError,
)
from .export import export_chrome
from .layout import (
    EVENT_CALL,
    EVENT_EXCEPTION,
    EVENT_RETURN,
    INDEX_EVENT_DTYPE,
    NO_DETAIL,
)
from .reader import (
    MERGED_EVENT_DTYPE,
    DetailEvent,
    DetailReader,
    IndexEvent,
    IndexReader,
    SessionReader,
    ThreadReader,
)
from .recover import recover_session
from .session import (
    Session,
    emit,
    emit_batch,
    trace_session,
    trace_session_get_stats,
    trace_session_start,
    trace_session_stop,
)
from .stats import SessionStats
from .symbols import SymbolTable
from .verify import verify_session
from .writer import DetailBatch, ThreadWriter

# The public API, grouped by topic (ruff's RUF022 would sort it flat; the
# grouping is the documentation).
__all__ = [  # noqa: RUF022
    # errors (atf2.errors)
    "AtfV2Error",
    "CorruptFileError",
    "DanglingLinkError",
    "ManifestError",
    "SessionStateError",
    "WriteError",
    # the format (atf2.layout)
    "EVENT_CALL",
    "EVENT_EXCEPTION",
    "EVENT_RETURN",
    "INDEX_EVENT_DTYPE",
    "NO_DETAIL",
    # writer and readers (atf2.writer, atf2.reader)
    "DetailBatch",
    "ThreadWriter",
    "MERGED_EVENT_DTYPE",
    "DetailEvent",
    "DetailReader",
    "IndexEvent",
    "IndexReader",
    "SessionReader",
    "ThreadReader",
    # sessions (atf2.session, atf2.detail, atf2.stats, atf2.symbols)
    "Session",
    "emit",
    "emit_batch",
    "mark",
    "trace_session",
    "trace_session_get_stats",
    "trace_session_start",
    "trace_session_stop",
    "SessionStats",
    "SymbolTable",
    # analysis, export, verify, recover
    "INTERVAL_DTYPE",
    "Summary",
    "intervals",
    "summary",
    "export_chrome",
    "verify_session",
    "recover_session",
    "__version__",
]

__version__ = "0.1.0"
