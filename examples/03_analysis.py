# %% [markdown]
# # Analysing a session: merge, intervals, inclusive time, Perfetto
#
# This example records a small multi-threaded "server", then
#
# 1. merges the threads' events into one globally ordered stream,
# 2. pairs calls and returns into intervals,
# 3. draws an icicle (an upside-down flame graph) of inclusive time,
# 4. exports the session for the Perfetto UI.
#
# Plain-script version: `python examples/03_analysis.py`.

# %%
import json
import threading
from collections import defaultdict
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import atf2

SESSION = Path("atf2_traces") / "analysis"

# %% [markdown]
# ## Record a workload
#
# Two threads serve requests: each request is authenticated, queries a fake
# database (rows are parsed one by one) and renders a page (every field is
# escaped).

# %%
def authenticate(user):
    return sum(ord(c) for c in user) % 7 != 0


def parse_row(i):
    return {"id": i, "name": f"item-{i}", "price": i * 1.25}


def query(n_rows):
    return [parse_row(i) for i in range(n_rows)]


def escape(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;")


def render(rows):
    return "".join(f"<li>{escape(r['name'])}: {escape(r['price'])}</li>" for r in rows)


def handle(user, n_rows):
    if not authenticate(user):
        return ""
    return render(query(n_rows))


def serve(requests):
    return sum(len(handle(user, n_rows)) for user, n_rows in requests)


requests = [(f"user{i}", 5 + (i * 13) % 40) for i in range(240)]
servers = [threading.Thread(target=serve, args=(requests[k::2],), name=f"server-{k}") for k in range(2)]

with atf2.trace_session(SESSION, overwrite=True, trace_python=True):
    for t in servers:
        t.start()
    for t in servers:
        t.join()

session = atf2.SessionReader(SESSION)
print(session)

# %% [markdown]
# ## Merge the threads
#
# Each thread has its own `index.atf`, in its own time order. `merged()`
# interleaves them in global timestamp order (a Numba k-way merge); the
# `thread` column says where each event came from. For sessions larger than
# memory, `merged(chunk_size=...)` yields the same stream in pieces.

# %%
merged = session.merged()
assert np.all(np.diff(merged["timestamp_ns"].astype(np.int64)) >= 0)
kinds = {atf2.EVENT_CALL: "call", atf2.EVENT_RETURN: "return", atf2.EVENT_EXCEPTION: "exception"}
t0 = int(merged["timestamp_ns"][0])
thread = merged["thread"]
switches = np.flatnonzero(thread[:-1] != thread[1:])
print(f"{len(merged)} events, the running thread changes {len(switches)} times")
between_servers = switches[(thread[switches] > 0) & (thread[switches + 1] > 0)]  # thread 0 is the main thread
around = between_servers[len(between_servers) // 2] if len(between_servers) else switches[len(switches) // 2]
for e in merged[around - 3 : around + 4]:
    print(
        f"{(int(e['timestamp_ns']) - t0) / 1e3:10.1f} us  thread {e['thread']}  "
        f"{'  ' * min(int(e['call_depth']), 8)}{kinds[int(e['event_kind'])]} {session.symbol_name(e['function_id'])}"
    )

# %% [markdown]
# ## Intervals
#
# `intervals()` pairs every CALL with its RETURN (or EXCEPTION) per thread:
# start, end, exclusive time, depth, and flags for calls cut by the edges of
# the trace (`FLAG_UNCLOSED`, `FLAG_UNOPENED`) or recursive ones.

# %%
from atf2.analysis import FLAG_RECURSIVE, FLAG_UNCLOSED, FLAG_UNOPENED

iv = session.intervals()
duration = iv["end_ns"] - iv["start_ns"]
print(f"{len(iv)} intervals; {np.count_nonzero(iv['flags'] & (FLAG_UNCLOSED | FLAG_UNOPENED))} cut by the trace edges, "
      f"{np.count_nonzero(iv['flags'] & FLAG_RECURSIVE)} recursive")
name_of = {fid: session.symbol_name(fid) for fid in set(iv["function_id"].tolist())}
handle_ids = [fid for fid, name in name_of.items() if name == "handle"]
calls = iv[np.isin(iv["function_id"], handle_ids)]
d = (calls["end_ns"] - calls["start_ns"]) / 1e3
print(f"handle(): {len(calls)} calls, median {np.median(d):.0f} us, p90 {np.percentile(d, 90):.0f} us, max {d.max():.0f} us")
slowest = calls[np.argsort(calls["start_ns"] - calls["end_ns"])[:3]]
for c in slowest:
    print(f"  thread {c['thread']}: {(int(c['end_ns']) - int(c['start_ns'])) / 1e3:.0f} us, of which {c['exclusive_ns'] / 1e3:.0f} us in handle itself")

# %% [markdown]
# ## Inclusive time as an icicle chart
#
# Nesting the intervals by depth gives each call its stack; summing durations
# per stack, over both threads, gives the call tree of `serve()` with its
# inclusive time. Each bar is as wide as the time spent in that function
# when called from the stack above it. Comprehensions and generator
# expressions are folded into the function that contains them.
#
# Only one thread runs Python at a time (the GIL): the time a server waits for
# it counts for the call it was in, so the two servers' times add up to more
# than the wall-clock time.

# %%
def call_tree(iv, root_name):
    """{stack (tuple of names) starting at root_name: inclusive ns}, summed over threads."""
    tree = defaultdict(int)
    for thread in np.unique(iv["thread"]):
        rows = iv[iv["thread"] == thread]
        rows = rows[np.lexsort((rows["depth"], rows["start_ns"]))]  # parents before children
        stack = []  # (depth, path)
        for start, end, fid, depth in zip(rows["start_ns"].tolist(), rows["end_ns"].tolist(),
                                          rows["function_id"].tolist(), rows["depth"].tolist(), strict=True):
            while stack and stack[-1][0] >= depth:
                stack.pop()
            name = name_of[fid]
            parent = stack[-1][1] if stack else None
            if "<locals>.<" in name:  # a comprehension: part of its parent
                path = parent
            else:
                path = parent + (name,) if parent else ((name,) if name == root_name else None)
                if path is not None:
                    tree[path] += end - start
            stack.append((depth, path))
    return tree


def icicle(ax, tree, max_depth=6):
    colors = {}
    def place(path, x0):
        width = tree[path]
        level = len(path) - 1
        name = path[-1]
        color = colors.setdefault(name, plt.cm.tab20(len(colors) % 20))
        ax.barh(level, width / 1e6, left=x0 / 1e6, height=0.92, color=color, edgecolor="white", linewidth=0.5)
        if width > 0.06 * total and level < max_depth:
            ax.text((x0 + width / 2) / 1e6, level, name, ha="center", va="center", fontsize=8, clip_on=True)
        x = x0
        for child in sorted(p for p in tree if len(p) == len(path) + 1 and p[:-1] == path):
            if len(child) <= max_depth:
                place(child, x)
            x += tree[child]
    roots = [p for p in tree if len(p) == 1]
    total = sum(tree[p] for p in roots)
    x = 0
    for root in roots:
        place(root, x)
        x += tree[root]
    ax.invert_yaxis()
    ax.set_yticks([])
    ax.set_xlabel("inclusive time, ms (both threads)")


tree = call_tree(iv, "serve")
fig, ax = plt.subplots(figsize=(9, 3), dpi=80)
icicle(ax, tree)
ax.set_title("serve(): where the time goes")
fig.tight_layout()
fig.savefig(SESSION / "icicle.png")

# %%
for path, ns in sorted(tree.items(), key=lambda kv: -kv[1])[:8]:
    print(f"{ns / 1e6:8.2f} ms  {' > '.join(path)}")

# %% [markdown]
# ## Export for Perfetto
#
# `export_chrome()` writes the Chrome Trace Event Format: one complete event
# per call, with exact nanoseconds, and thread names. Open the file in
# <https://ui.perfetto.dev> ("Open trace file") or `chrome://tracing`.
# From the command line: `atf2 export atf2_traces/analysis --format chrome -o trace.json`.

# %%
result = session.export_chrome(SESSION / "trace.json")
print(f"{result['intervals']} calls from {result['events']} events, {result['bytes'] / 1024:.0f} KiB, "
      f"{result['seconds'] * 1e3:.0f} ms")
trace = json.loads((SESSION / "trace.json").read_text())
events = trace["traceEvents"] if isinstance(trace, dict) else trace
print(json.dumps([e for e in events if e.get("ph") == "M"][:2]))
print(json.dumps(next(e for e in events if e.get("ph") == "X" and e.get("name", "").endswith("handle"))))

# %%
session.close()
