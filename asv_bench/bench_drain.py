"""asv: drain throughput, Numba producers -> rings -> drain -> per-thread files.

``DrainThroughput`` runs each configuration once (``setup_cache``) and tracks
its figures at default pool settings: events written per second and dropped
with 20 M events/s offered (the issue's bar: zero drops), what a flooding
producer gets through, the ratio to a raw write of the same bytes in the same
run, and the drain's CPU time per event (robust to a loaded machine: the
rate one core would sustain is 1e9 / that). ``DrainStall`` tracks what a disk
stall at 20 M events/s costs: drops (zero while the pool absorbs it) and the
backlog. ``DrainFixedWork`` times a fixed amount of drained work. The
plain-script version is ``python -m atf2.bench.drain``; its docstring
defines every figure.
"""

import os
import shutil
import tempfile
import threading

import numpy as np

from asv_bench.common import seconds, sizes
from atf2 import session as _S
from atf2.bench.drain import STALL_MS as _STALL_MS
from atf2.bench.drain import TARGET_RATE as _RATE
from atf2.bench.drain import _prefilled_run, _session_run
from atf2.bench.drain import flood as _flood

_MODES = ("paced", "spin", "flood")
_PRODUCERS = sizes(1, 2, smoke=2)  # smoke: the 2-producer path only


class DrainThroughput:
    params = [_PRODUCERS, list(_MODES)]
    param_names = ["producers", "mode"]
    timeout = 900

    def setup_cache(self):
        _session_run("flood", 1, 0.05, 0, {})  # load every kernel once
        runs = {}
        for producers in _PRODUCERS:
            for mode in _MODES:
                rate = 0 if mode == "flood" else _RATE
                runs[f"{mode}-{producers}"] = _session_run(mode, producers, seconds(2.0), rate, {})
        return runs

    def track_written_per_s(self, runs, producers, mode):
        return runs[f"{mode}-{producers}"]["value"]

    track_written_per_s.unit = "events/s"

    def track_dropped(self, runs, producers, mode):
        return runs[f"{mode}-{producers}"]["dropped"]

    track_dropped.unit = "events"

    def track_ratio_vs_raw_write(self, runs, producers, mode):
        return runs[f"{mode}-{producers}"]["ratio_vs_raw"]

    track_ratio_vs_raw_write.unit = "ratio"

    def track_drain_cpu_ns_per_event(self, runs, producers, mode):
        return runs[f"{mode}-{producers}"]["drain_cpu_ns_per_event"]

    track_drain_cpu_ns_per_event.unit = "ns"

    def track_sustained_per_s(self, runs, producers, mode):
        """Events written per second of production (the session's start and stop not counted): the bar's figure."""
        return runs[f"{mode}-{producers}"]["sustained_events_per_s"]

    track_sustained_per_s.unit = "events/s"

    def track_drain_cpu_vs_raw_write_cpu(self, runs, producers, mode):
        """The drain's CPU per event over a raw write's CPU per 32 bytes, same run."""
        return runs[f"{mode}-{producers}"]["drain_cpu_vs_raw_write_cpu"]

    track_drain_cpu_vs_raw_write_cpu.unit = "ratio"

    def track_max_index_rings(self, runs, producers, mode):
        """Index rings of the largest producer pool at the end (16 at defaults: it never had to grow)."""
        return runs[f"{mode}-{producers}"]["max_index_rings"]

    track_max_index_rings.unit = "rings"

    def track_drain_wait_for_cpu_fraction(self, runs, producers, mode):
        """Part of the session the drain thread waited for a core (how loaded the machine was)."""
        return runs[f"{mode}-{producers}"]["drain_wait_for_cpu_fraction"]

    track_drain_wait_for_cpu_fraction.unit = "fraction"


class DrainStall:
    """20 M events/s from one paced producer while the disk stalls (every write
    blocks) for 250, 500 or 750 ms, from 0.5 s into production: the drops
    (the default pool absorbs all three: zero) and the largest backlog."""

    params = [sizes(*_STALL_MS, smoke=_STALL_MS[0])]
    param_names = ["stall_ms"]
    timeout = 600

    def setup_cache(self):
        _session_run("flood", 1, 0.05, 0, {})  # load every kernel once
        return {ms: _session_run("paced", 1, seconds(2.0), _RATE, {}, stall_s=ms / 1000) for ms in self.params[0]}

    def track_dropped(self, runs, stall_ms):
        return runs[stall_ms]["dropped"]

    track_dropped.unit = "events"

    def track_backlog(self, runs, stall_ms):
        """The most index records that waited in a producer's pool."""
        return runs[stall_ms]["index_high_water"]

    track_backlog.unit = "events"


class DrainFixedWork:
    """Time to record and drain 1M and 4M events from one thread without drops (pool large enough)."""

    timeout = 300
    params = [sizes(1 << 20, 4 << 20)]
    param_names = ["n"]

    def setup(self, n):
        self.root = tempfile.mkdtemp(prefix="atf2-asv-drain-")
        _session_run("flood", 1, 0.05, 0, {})

    def teardown(self, n):
        shutil.rmtree(self.root, ignore_errors=True)

    def time_record_and_drain(self, n):
        d = os.path.join(self.root, "s")
        shutil.rmtree(d, ignore_errors=True)
        sess = _S.trace_session_start(d, ring_capacity=1 << 18, spare_rings=15)
        fid = np.uint64(sess.symbols.register("bench"))

        def work():
            ch = sess.register_current_thread()
            _flood(ch.ctrl, ch.index_pool, fid, 0, n)

        t = threading.Thread(target=work)
        t.start()
        t.join()
        st = _S.trace_session_stop()
        assert st.index.written == n, st.index.as_dict()

    def track_drain_only_prefilled_per_s(self, n):
        return _prefilled_run(n)["value"]

    track_drain_only_prefilled_per_s.unit = "events/s"

    def track_drain_only_ratio_vs_raw_write(self, n):
        return _prefilled_run(n)["ratio_vs_raw"]

    track_drain_only_ratio_vs_raw_write.unit = "ratio"
