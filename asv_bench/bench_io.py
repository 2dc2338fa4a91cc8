"""asv: ThreadWriter and reader throughput.

``time_*`` time fixed work on 1M- and 10M-event files (parameter ``n``, so the
dashboard shows how cost grows with work; tiny sizes in smoke mode, see
``common.py``); ``track_*``
report the figures of ``python -m atf2.bench.io`` with their same-run
references (raw write, raw mmap scan, heapq), at the issue's full sizes.
"""

import os
import shutil
import tempfile

import numpy as np

from asv_bench.common import SMOKE, size, sizes
from atf2 import IndexReader as _IndexReader
from atf2 import SessionReader as _SessionReader
from atf2 import ThreadWriter as _ThreadWriter
from atf2.bench import io as B
from atf2.kernels.decode import scan_index

SIZES = sizes(1_000_000, 10_000_000, smoke=4_000)


class WriteRead:
    timeout = 600
    params = [SIZES]
    param_names = ["n"]

    def setup(self, n):
        self.n = n
        self.root = tempfile.mkdtemp(prefix="atf2-asv-io-")
        self.events = B.make_events(n)
        with _ThreadWriter(self.root, 0) as w:
            w.write_events(self.events)
        self.path = os.path.join(self.root, "thread_0", "index.atf")
        self.reader = _IndexReader(self.path)
        scan_index(self.reader.events)
        rng = np.random.default_rng(1)
        self.positions = rng.integers(0, n, size(100_000, smoke=1_000))
        self.as_list = self.positions.tolist()

    def teardown(self, n):
        self.reader.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def time_write(self, n):
        d = os.path.join(self.root, "w")
        with _ThreadWriter(d, 0) as w:
            for lo in range(0, n, n // 4):
                w.write_events(self.events[lo : lo + n // 4])
        shutil.rmtree(d)

    def time_open_and_scan(self, n):
        with _IndexReader(self.path) as r:
            scan_index(r.events)

    def time_getitem(self, n):
        get = self.reader.__getitem__
        for i in self.as_list:
            get(i)

    def time_take(self, n):
        self.reader.take(self.positions)


class Merge:
    timeout = 600
    params = [SIZES]
    param_names = ["n"]

    def setup(self, n):
        self.root = tempfile.mkdtemp(prefix="atf2-asv-merge-")
        from atf2.manifest import write_manifest

        for t in range(4):
            with _ThreadWriter(self.root, t) as w:
                w.write_events(B.make_events(n // 4, thread_id=t, seed=10 + t, stride=4))
        write_manifest(self.root, {"format_version": "2.1", "threads": [{"id": t} for t in range(4)]})
        self.session = _SessionReader(self.root)
        self.session.merged(chunk_size=10).__next__()

    def teardown(self, n):
        self.session.close()
        shutil.rmtree(self.root, ignore_errors=True)

    def time_merged_4_threads(self, n):
        self.session.merged()

    def time_merged_4_threads_chunked(self, n):
        for _ in self.session.merged(chunk_size=1 << 16):
            pass


class Figures:
    """The plain-script figures at full size, with their references."""

    timeout = 900
    number = 1
    repeat = 1

    def setup_cache(self):
        return {row["name"]: row for row in B.run(quick=False, events=2_000 if SMOKE else None)}

    def track_write_events_per_s(self, rows):
        return rows["write"]["value"]

    track_write_events_per_s.unit = "events/s"

    def track_write_ratio_vs_raw(self, rows):
        return rows["write"]["ratio_vs_raw"]

    track_write_ratio_vs_raw.unit = "ratio"

    def track_scan_gb_s(self, rows):
        return rows["read_scan"]["value"]

    track_scan_gb_s.unit = "GB/s"

    def track_getitem_us(self, rows):
        return rows["getitem"]["value"]

    track_getitem_us.unit = "us"

    def track_getitem_ratio_vs_raw_unpack(self, rows):
        return rows["getitem"]["ratio_vs_raw_unpack"]

    track_getitem_ratio_vs_raw_unpack.unit = "ratio"

    def track_take_ns_per_event(self, rows):
        return rows["take"]["value"]

    track_take_ns_per_event.unit = "ns"

    def track_merge_events_per_s(self, rows):
        return rows["merge"]["value"]

    track_merge_events_per_s.unit = "events/s"

    def track_merge_ratio_vs_heapq(self, rows):
        return rows["merge"]["ratio_vs_heapq"]

    track_merge_ratio_vs_heapq.unit = "ratio"
