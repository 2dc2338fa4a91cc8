"""Per-event overhead of Python detail capture: ``python -m atf2.bench.detail [--quick]``.

Workload W2 (a realistic mix: a JSON round trip of a few thousand records,
dataclasses with small methods, ``sorted`` with a key function, a few
regexes), run in one process:

* untraced;
* traced with ``detail="off"`` (index lane only), ``"always"`` (every event's
  arguments / return value persisted) and ``"flight"`` (captured for every
  event, persisted around a symbol trigger that fires a few times);
* VizTracer with ``log_func_args=True, log_func_retval=True`` (its argument
  logging, kept in memory; saving its file is not timed).

Figures: overhead per function call (ns above the untraced run, divided by the
calls recorded), each with its ratio to VizTracer's (the bar: <= 1, ours not
slower than VizTracer's argument logging). Times are the process's CPU time
(``time.process_time``: our drain thread's work counts, other processes' load
on a shared machine does not), best of ``repeat`` interleaved runs.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import shutil
import tempfile
import time
from dataclasses import dataclass

_clock = time.process_time
_WORD = re.compile(r"[a-z]+")
_NUM = re.compile(r"\d+")


@dataclass
class Item:
    name: str
    price: float
    qty: int

    def total(self) -> float:
        return self.price * self.qty

    def label(self) -> str:
        return f"{self.name}:{self.qty}"


def _make(i: int) -> dict:
    return {"name": f"item{i % 97}x", "price": (i % 13) * 1.25, "qty": i % 7, "tags": ["a", "b", str(i)]}


def _checkpoint(n: int) -> int:
    """Called a few times per run: the flight-mode trigger."""
    return n


def w2(records: int = 2000) -> float:
    """W2: JSON round trip, dataclasses with small methods, sorted with a key, regexes."""
    data = json.loads(json.dumps([_make(i) for i in range(records)]))
    items = [Item(d["name"], d["price"], d["qty"]) for d in data]
    ranked = sorted(items, key=lambda it: (it.total(), it.name))
    words = sum(len(_WORD.findall(it.label())) for it in ranked)
    nums = sum(len(_NUM.findall(it.label())) for it in ranked)
    for k in range(0, records, max(1, records // 4)):
        _checkpoint(k)
    return sum(it.total() for it in ranked) + words + nums


def _untraced(records: int) -> float:
    t0 = _clock()
    w2(records)
    return _clock() - t0


def _ours(records: int, mode: str) -> tuple[float, int]:
    from ..flight import FlightOptions
    from ..session import trace_session_start, trace_session_stop

    d = tempfile.mkdtemp(prefix="atf2-bench-detail-")
    try:
        options = {}
        if mode == "flight":
            options["flight"] = FlightOptions.from_triggers(["symbol=_checkpoint"], 200, 200)
        trace_session_start(d, detail=mode, trace_python=True, overwrite=True, **options)
        t0 = _clock()
        try:
            w2(records)
        finally:
            elapsed = _clock() - t0
            stats = trace_session_stop()
        return elapsed, stats.index.recorded
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _viztracer(records: int) -> tuple[float, int] | None:
    try:
        from viztracer import VizTracer
    except ImportError:
        return None
    tracer = VizTracer(tracer_entries=4_000_000, log_func_args=True, log_func_retval=True, verbose=0)
    tracer.start()
    t0 = _clock()
    w2(records)
    elapsed = _clock() - t0
    tracer.stop()
    entries = len(tracer.data.get("traceEvents", [])) if hasattr(tracer, "data") and tracer.data else 0
    tracer.clear()
    return elapsed, entries


def run(quick: bool = False) -> list:
    records = 300 if quick else 2000
    repeat = 1 if quick else 7
    _ours(50, "always")  # compile and warm everything once
    _ours(50, "flight")
    best: dict[str, float] = {}
    calls: dict[str, float] = {}
    for _ in range(repeat):
        gc.collect()
        best["untraced"] = min(best.get("untraced", 1e9), _untraced(records))
        for mode in ("off", "always", "flight"):
            t, events = _ours(records, mode)
            best[mode] = min(best.get(mode, 1e9), t)
            calls[mode] = events / 2  # a call is a CALL and a RETURN event
        viz = _viztracer(records)
        if viz is not None:
            best["viztracer"] = min(best.get("viztracer", 1e9), viz[0])
    base = best["untraced"]
    n_calls = calls["off"]
    per_call = {m: (best[m] - base) / n_calls * 1e9 for m in best if m != "untraced"}
    viz_ns = per_call.get("viztracer")
    rows = []
    for mode in ("off", "always", "flight"):
        row = {
            "name": f"W2 detail={mode} overhead per call",
            "value": per_call[mode],
            "unit": "ns/call",
            "calls": int(n_calls),
        }
        if viz_ns:
            row["viztracer_args_ns"] = viz_ns
            row["ratio_to_viztracer"] = per_call[mode] / viz_ns
        rows.append(row)
    rows.append({"name": "W2 untraced", "value": base * 1e3, "unit": "ms", "calls": int(n_calls)})
    if viz_ns:
        rows.append({"name": "W2 viztracer log_func_args+retval per call", "value": viz_ns, "unit": "ns/call",
                     "vs_detail_always": per_call["always"] / viz_ns})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m atf2.bench.detail")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    for row in run(quick=args.quick):
        extra = "  ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items() if k not in ("name", "value", "unit"))
        print(f"{row['name']:<45} {row['value']:>12.1f} {row['unit']:<8} {extra}", flush=True)


if __name__ == "__main__":
    main()
