"""asv: Python detail capture on W2 (detail off / always / flight, VizTracer's argument logging).

``track_*_ns_per_call``: overhead per traced call above the untraced run, in
ns, measured in one run beside its peers; ``track_always_ratio_vs_viztracer``:
ours with every argument persisted / VizTracer with ``log_func_args`` and
``log_func_retval`` (the bar: <= 1). ``time_*``: one W2 run in each mode.
The plain-script version is ``python -m atf2.bench.detail``.
"""

import shutil
import tempfile

from asv_bench.common import size
from atf2.bench import detail as _bench


def _records():
    return size(2000, smoke=300)  # smoke: below 2000, so the plain bench runs quick


class DetailOverhead:
    timeout = 600

    def setup(self):
        _bench._ours(50, "always")  # compile and warm once
        self.rows = {r["name"]: r for r in _bench.run(quick=_records() < 2000)}

    def _row(self, mode):
        return self.rows[f"W2 detail={mode} overhead per call"]

    def track_off_ns_per_call(self):
        return self._row("off")["value"]

    track_off_ns_per_call.unit = "ns"

    def track_always_ns_per_call(self):
        return self._row("always")["value"]

    track_always_ns_per_call.unit = "ns"

    def track_flight_ns_per_call(self):
        return self._row("flight")["value"]

    track_flight_ns_per_call.unit = "ns"

    def track_always_ratio_vs_viztracer(self):
        return self._row("always").get("ratio_to_viztracer", float("nan"))

    track_always_ratio_vs_viztracer.unit = "ratio"

    def track_flight_ratio_vs_viztracer(self):
        return self._row("flight").get("ratio_to_viztracer", float("nan"))

    track_flight_ratio_vs_viztracer.unit = "ratio"


class DetailW2Time:
    params = ["off", "always", "flight"]
    param_names = ["detail"]
    timeout = 300

    def setup(self, mode):
        _bench._ours(50, mode)
        self.root = tempfile.mkdtemp(prefix="atf2-asv-detail-")

    def teardown(self, mode):
        shutil.rmtree(self.root, ignore_errors=True)

    def time_w2_traced(self, mode):
        _bench._ours(_records(), mode)
