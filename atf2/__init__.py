"""atf2: a Numba-JIT tracer for Python programs, writing the ATF v2 format.

Record with ``trace_session_start`` / ``trace_session_stop`` (or ``atf2 record
script.py``), read with ``SessionReader``. The byte layout lives in
``atf2.layout``; everything a bad file or option can cause is an ``AtfV2Error``.
"""

from .errors import AtfV2Error, CorruptFileError, ManifestError, SessionStateError
from .layout import (
    EVENT_CALL,
    EVENT_EXCEPTION,
    EVENT_RETURN,
    INDEX_EVENT_DTYPE,
    NO_DETAIL,
)

# --- writer and readers (atf2.writer, atf2.reader) ---
from .errors import DanglingLinkError, WriteError
from .reader import (
    MERGED_EVENT_DTYPE,
    DetailEvent,
    DetailReader,
    IndexEvent,
    IndexReader,
    SessionReader,
    ThreadReader,
)
from .writer import DetailBatch, ThreadWriter
# --- sessions (atf2.session) ---
from .detail import mark  # issue 5: flight-recorder trigger
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
# --- tracer (atf2.tracer) ---
# --- analysis (atf2.analysis) ---
from .analysis import INTERVAL_DTYPE, Summary, intervals, summary
from .export import export_chrome
from .recover import recover_session
from .verify import verify_session

__version__ = "0.1.0"
