# %% [markdown]
# # atf2 quickstart: record a multi-threaded program
#
# atf2 records every Python call, return and exception of every thread into
# per-thread ring buffers (the per-event hook is a Numba `@cfunc`); a drain
# thread streams them to disk in the ATF v2 format. This example records a
# small program with three worker threads, inspects the session, draws a
# per-thread timeline and lists the functions that took the most time.
#
# Plain-script version: `python examples/01_quickstart.py` (figures are saved
# as PNG files next to the session).

# %%
import threading
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import atf2

SESSION = Path("atf2_traces") / "quickstart"

# %% [markdown]
# ## The program
#
# Each worker parses lines of numbers, scores them and, now and then, computes
# a small Fibonacci number recursively; between batches it sleeps a little, as
# if waiting for input.

# %%
def parse(line):
    return [int(field) for field in line.split(",")]


def score(values):
    total = 0
    for v in values:
        total += v * v
    return total


def fib(n):
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def worker(lines, results):
    for i, line in enumerate(lines):
        results.append(score(parse(line)))
        if i % 20 == 0:
            results.append(fib(12))
        if i % 50 == 49:
            time.sleep(0.002)


def run_program(threads=3, lines_per_thread=150):
    lines = [",".join(str((i * 7 + j) % 100) for j in range(12)) for i in range(lines_per_thread)]
    results = [[] for _ in range(threads)]
    workers = [
        threading.Thread(target=worker, args=(lines, results[t]), name=f"worker-{t}")
        for t in range(threads)
    ]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return sum(len(r) for r in results)


# %% [markdown]
# ## Record
#
# `trace_session(dir, trace_python=True)` traces every thread, including the
# ones started inside the block. `overwrite=True` replaces a previous run.

# %%
with atf2.trace_session(SESSION, overwrite=True, trace_python=True):
    run_program()

stats = atf2.trace_session_get_stats()
print(f"recorded {stats.events_recorded} events, written {stats.events_written}, dropped {stats.events_dropped}")
print(f"{len(stats.threads)} threads, {stats.bytes_written / 1024:.0f} KiB on disk in {SESSION}/")

# %% [markdown]
# ## Inspect the session
#
# `SessionReader` maps every thread's `index.atf` as a zero-copy numpy
# array. The manifest names the threads and the functions.

# %%
session = atf2.SessionReader(SESSION)
print(session)
start_ns, end_ns = session.time_range()
print(f"status {session.status}, {session.event_count()} events over {(end_ns - start_ns) / 1e6:.1f} ms")
for entry in session.manifest["threads"]:
    print(f"  thread {entry['id']}: {entry['name']:<12} {entry['index_events']:>6} events")

worker_0 = next(t["id"] for t in session.manifest["threads"] if t["name"] == "worker-0")
events = session.thread(worker_0).index.events
print(events.dtype.names)
for e in events[:6]:
    kind = {atf2.EVENT_CALL: "call", atf2.EVENT_RETURN: "return", atf2.EVENT_EXCEPTION: "exception"}[int(e["event_kind"])]
    print(f"  {kind:<9} depth {int(e['call_depth']):>2}  {session.symbol_name(e['function_id'])}")

# %% [markdown]
# ## Per-thread timeline
#
# `intervals()` pairs every CALL with its RETURN (per thread, by a Numba
# kernel). Drawing the calls of the program's own functions (module
# `__main__`) at their call depth gives one small icicle per thread. Only one
# thread runs Python at a time (the GIL): the workers take turns.

# %%
iv = session.intervals()
mine = sorted(
    fid for fid in set(iv["function_id"].tolist())
    if session.symbol(fid).module == "__main__" and "<" not in session.symbol_name(fid)  # no comprehensions
)
iv = iv[np.isin(iv["function_id"], mine)]
colors = {fid: plt.cm.tab10(i) for i, fid in enumerate(mine)}

fig, ax = plt.subplots(figsize=(9, 3.2), dpi=80)
lanes = sorted(set(iv["thread"].tolist()))
for lane, thread in enumerate(lanes):
    rows = iv[iv["thread"] == thread]
    level = np.minimum(rows["depth"] - rows["depth"].min(), 4)
    for fid in mine:
        for lvl in range(5):
            s = rows[(rows["function_id"] == fid) & (level == lvl)]
            if len(s):
                spans = np.column_stack([(s["start_ns"] - start_ns) / 1e6, (s["end_ns"] - s["start_ns"]) / 1e6])
                ax.broken_barh(spans, (lane + 0.05 + 0.18 * lvl, 0.16), color=colors[fid], label=session.symbol_name(fid))
ax.set_yticks([lane + 0.45 for lane in range(len(lanes))])
ax.set_yticklabels([session.manifest["threads"][t]["name"] for t in lanes])
ax.set_xlabel("ms since the first event")
handles = {h.get_label(): h for h in ax.get_legend_handles_labels()[0]}
ax.legend(handles.values(), handles.keys(), loc="upper left", bbox_to_anchor=(1, 1), fontsize=8)
ax.set_title("calls per thread (deeper calls drawn higher)")
fig.tight_layout()
fig.savefig(SESSION / "timeline.png")

# %% [markdown]
# ## Top functions
#
# `summary()` gives calls, inclusive time (with callees) and exclusive time
# (without) per function, overall and per thread. Inclusive time counts each
# outermost call of a recursive function once. Time a thread spends waiting
# for the GIL or in C code that is not traced (`time.sleep`) counts for the
# Python function that was running.

# %%
top = session.summary(sort="excl_total_ns", top=8).functions
print(f"{'function':<34}{'calls':>8}{'inclusive ms':>14}{'exclusive ms':>14}")
for row in top:
    print(
        f"{session.symbol_name(row['function_id'])[:33]:<34}{row['calls']:>8}"
        f"{row['incl_total_ns'] / 1e6:>14.2f}{row['excl_total_ns'] / 1e6:>14.2f}"
    )

# %% [markdown]
# The same from the command line: `atf2 summary atf2_traces/quickstart`.
# Record any script with `atf2 record -o DIR script.py`.

# %%
session.close()
