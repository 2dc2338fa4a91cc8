"""asv: tracing overhead of atf2.tracer vs the floor and VizTracer (see atf2.bench.overhead)."""

import os
import shutil
import tempfile

from asv_bench.common import (  # workloads from the repository: atf2 may be an installed wheel
    example_module,
    seconds,
    size,
)
from atf2.bench import overhead

#: untraced seconds per timed sample (see atf2.bench.overhead: per-event costs must dominate)
_TARGET_S = seconds(0.3, smoke=0.0)


def _make(workload):
    workloads = example_module("overhead_workloads")
    return lambda inner, settle=None: overhead.workload(workloads, workload, inner=inner, settle=settle)


def _inner(workload) -> int:
    return overhead.calibrate_inner(_make(workload), _TARGET_S)


class TracerOverhead:
    """Time of each workload untraced, under the floor hook, atf2, and VizTracer."""

    params = (["W1", "W2", "W3"], ["untraced", "floor", "atf2", "viztracer"])
    param_names = ["workload", "tracer"]
    timeout = 600
    number = 1
    repeat = 7

    def setup(self, workload, tracer):
        # Same samples as the script: the workload repeated so a sample lasts >= 0.3 s untraced.
        self.fn = overhead.workload(example_module("overhead_workloads"), workload, inner=_inner(workload))
        self.session = None
        self.workdir = None
        if tracer == "viztracer":
            try:
                import viztracer  # noqa: F401
            except ImportError:
                raise NotImplementedError("viztracer is not installed (bench extra)") from None
        if tracer == "atf2":
            from atf2.session import trace_session_start

            self.workdir = tempfile.mkdtemp(prefix="atf2_asv_")
            self.session = trace_session_start(os.path.join(self.workdir, "s"), trace_python=False)
            self.fn = overhead.workload(
                example_module("overhead_workloads"), workload, inner=_inner(workload), settle=overhead.settle_for(self.session)
            )
        self.fn()  # warm up

    def teardown(self, workload, tracer):
        if self.session is not None:
            from atf2.session import trace_session_stop

            trace_session_stop()
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def time_workload(self, workload, tracer):
        if tracer == "untraced":
            overhead.run_untraced(self.fn)
        elif tracer == "floor":
            overhead.run_floor(self.fn)
        elif tracer == "atf2":
            overhead.run_ours(self.fn, self.session)
        else:
            overhead.run_viztracer(self.fn, entries=4_000_000)


class OverheadRatio:
    """Our per-event overhead above the floor / VizTracer's (bar: <= 0.8), paired median of 5 interleaved reps."""

    params = ["W1", "W2", "W3"]
    param_names = ["workload"]
    timeout = 900
    unit = "ratio"

    def setup(self, workload):
        try:
            import viztracer  # noqa: F401
        except ImportError:
            raise NotImplementedError("viztracer is not installed (bench extra)") from None

    def track_ratio_vs_viztracer(self, workload):
        workdir = tempfile.mkdtemp(prefix="atf2_asv_")
        try:
            return overhead.measure(workload, _make(workload), reps=size(5, smoke=1), workdir=workdir, target_s=_TARGET_S)["ratio_paired"]
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    def track_drops(self, workload):
        workdir = tempfile.mkdtemp(prefix="atf2_asv_")
        try:
            return overhead.measure(workload, _make(workload), reps=size(2, smoke=1), workdir=workdir, target_s=_TARGET_S)["drops"]
        finally:
            shutil.rmtree(workdir, ignore_errors=True)

    track_drops.unit = "events"
