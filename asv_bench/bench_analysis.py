"""asv: analysis over a session on disk (summary, intervals, Chrome export).

The session (4 threads of nested call trees, see ``atf2.bench.analysis``) is
written in ``setup`` to a temporary
directory; timings include reading it back through the mmap readers.
"""

import os
import shutil
import tempfile

from asv_bench.common import sizes
from atf2.analysis import intervals, summary
from atf2.bench.analysis import write_session
from atf2.export import export_chrome
from atf2.reader import (
    SessionReader as _SessionReader,  # underscore: asv would collect SessionReader.time_range as a benchmark
)


class Analysis:
    params = sizes(1_000_000, 10_000_000)
    param_names = ["events"]
    timeout = 600

    def setup(self, n):
        self.tmp = tempfile.mkdtemp(prefix="atf2-asv-analysis-")
        self.reader = _SessionReader(write_session(os.path.join(self.tmp, "s"), n))
        summary(self.reader.threads[0].index.events[:1000])  # compile outside the timing
        intervals(self.reader.threads[0].index.events[:1000])

    def teardown(self, n):
        self.reader.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def time_summary(self, n):
        summary(self.reader)

    def time_intervals(self, n):
        intervals(self.reader)

    def track_summary_rate(self, n):
        import time

        t = time.perf_counter()
        summary(self.reader)
        return self.reader.event_count() / (time.perf_counter() - t) / 1e6

    track_summary_rate.unit = "Mevents/s"

    def track_intervals_rate(self, n):
        import time

        t = time.perf_counter()
        intervals(self.reader)
        return self.reader.event_count() / (time.perf_counter() - t) / 1e6

    track_intervals_rate.unit = "Mevents/s"


class ExportChrome:
    params = sizes(1_000_000)
    param_names = ["events"]
    timeout = 600

    def setup(self, n):
        self.tmp = tempfile.mkdtemp(prefix="atf2-asv-export-")
        self.reader = _SessionReader(write_session(os.path.join(self.tmp, "s"), n))
        self.out = os.path.join(self.tmp, "trace.json")
        export_chrome(self.reader.threads[0].index.events[:100], self.out, progress=False)

    def teardown(self, n):
        self.reader.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def time_export(self, n):
        export_chrome(self.reader, self.out, progress=False)

    def track_export_rate(self, n):
        result = export_chrome(self.reader, self.out, progress=False)
        return result["events"] / result["seconds"]

    track_export_rate.unit = "events/s"

    def track_export_bytes_per_event(self, n):
        result = export_chrome(self.reader, self.out, progress=False)
        return result["bytes"] / result["events"]

    track_export_bytes_per_event.unit = "bytes/event"
