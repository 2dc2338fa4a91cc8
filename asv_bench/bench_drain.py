"""asv: drain throughput, Numba producers -> rings -> drain -> per-thread files.

``track_*`` report events per second written and the fraction dropped at
default pool settings; ``time_*`` time a fixed amount of drained work. The
plain-script version with the raw-write comparison is ``python -m
atf2.bench.drain``.
"""

import os
import shutil
import tempfile
import threading

import numpy as np

from asv_bench.common import seconds, size, sizes
from atf2 import session as S
from atf2.bench.drain import TARGET_RATE, _prefilled_run, _session_run, flood


class DrainThroughput:
    params = sizes(1, 2, smoke=2)  # smoke: the 2-producer path only
    param_names = ["producers"]
    timeout = 300

    def setup(self, producers):
        _session_run("flood", 1, 0.05, 0, {})  # load every kernel once

    def track_paced_20M_written_per_s(self, producers):
        return _session_run("paced", producers, seconds(2.0), TARGET_RATE, {})["value"]

    track_paced_20M_written_per_s.unit = "events/s"

    def track_paced_20M_drop_fraction(self, producers):
        return _session_run("paced", producers, seconds(2.0), TARGET_RATE, {})["drop_fraction"]

    track_paced_20M_drop_fraction.unit = "fraction"

    def track_flood_written_per_s(self, producers):
        return _session_run("flood", producers, seconds(2.0), 0, {})["value"]

    track_flood_written_per_s.unit = "events/s"

    def track_flood_ratio_vs_raw_write(self, producers):
        return _session_run("flood", producers, seconds(2.0), 0, {})["ratio_vs_raw"]

    track_flood_ratio_vs_raw_write.unit = "ratio"


class DrainFixedWork:
    """Time to record and drain 4M events from one thread without drops (pool large enough)."""

    timeout = 300

    def setup(self):
        self.root = tempfile.mkdtemp(prefix="atf2-asv-drain-")
        _session_run("flood", 1, 0.05, 0, {})

    def teardown(self):
        shutil.rmtree(self.root, ignore_errors=True)

    def time_record_and_drain_4M(self):
        d = os.path.join(self.root, "s")
        shutil.rmtree(d, ignore_errors=True)
        sess = S.trace_session_start(d, ring_capacity=1 << 18, spare_rings=15)
        fid = np.uint64(sess.symbols.register("bench"))

        def work():
            ch = sess.register_current_thread()
            flood(ch.ctrl, ch.index_pool, fid, 0, size(4 << 20))

        t = threading.Thread(target=work)
        t.start()
        t.join()
        st = S.trace_session_stop()
        assert st.index.written == size(4 << 20), st.index.as_dict()

    def track_drain_only_prefilled_per_s(self):
        return _prefilled_run(size(4 << 20))["value"]

    track_drain_only_prefilled_per_s.unit = "events/s"

    def track_drain_only_ratio_vs_raw_write(self):
        return _prefilled_run(size(4 << 20))["ratio_vs_raw"]

    track_drain_only_ratio_vs_raw_write.unit = "ratio"
