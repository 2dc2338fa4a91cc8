# %% [markdown]
# # Flight recorder: arguments around an exception
#
# With `detail="flight"` atf2 records every call in the index lane as usual,
# and also captures each call's arguments and return value in memory; only
# the captures inside *windows* around triggers reach the disk. A trigger is
# a function left by an exception, a call of a function whose name matches a
# pattern (`symbol=PATTERN`), or an explicit `atf2.mark(reason)`. Each window
# keeps `pre_roll` events before the trigger and `post_roll` after it.
#
# Plain-script version: `python examples/02_flight_recorder.py`.

# %%
import json
from pathlib import Path

import matplotlib.pyplot as plt

import atf2
from atf2.payload import ObjectRepr

SESSION = Path("atf2_traces") / "flight"

# %% [markdown]
# ## The program
#
# Orders carry prices as text. One of them holds a price that does not parse:
# `parse_price` raises `ValueError`, `process` catches it, notes it with
# `atf2.mark`, and goes on.

# %%
def parse_price(text):
    return float(text.strip().lstrip("$"))


def order_total(order):
    total = 0.0
    for price in order["prices"]:
        total += parse_price(price)
    return round(total, 2)


def process(orders):
    totals = {}
    for order in orders:
        try:
            totals[order["id"]] = order_total(order)
        except ValueError as exc:
            atf2.mark(f"order {order['id']}: {exc}")
    return totals


orders = [{"id": i, "prices": [f"${i}.50", " $3 "]} for i in range(300)]
orders[120]["prices"].append("n/a")

# %% [markdown]
# ## Arm the trigger and record
#
# Triggers: any exception (marks always trigger). Keep 8 events before and 6
# after each trigger.

# %%
with atf2.trace_session(
    SESSION, overwrite=True, trace_python=True, detail="flight",
    flight={"triggers": ["exception"], "pre_roll": 8, "post_roll": 6},
):
    totals = process(orders)

print(f"{len(totals)} orders totalled")
session = atf2.SessionReader(SESSION)
for thread in session.threads:
    print(f"thread {thread.thread_id}: {thread.event_count()} index events, {thread.detail_count()} with captured details")

# %% [markdown]
# ## The windows
#
# The manifest lists every window: its thread, its range of index events,
# what triggered it, how much pre- and post-roll it kept. Triggers close to
# each other share one window: here the exception leaves `parse_price` and
# `order_total` (two triggers; `process` catches it), and the mark follows.

# %%
windows = session.manifest["windows"]
for w in windows:
    print(
        f"thread {w['thread_id']}  events {w['start_index_seq']}..{w['end_index_seq']} ({w['events']})  "
        f"{w['triggers']} triggers ({', '.join(w['trigger_kinds'])})  "
        f"pre-roll {w['pre_roll_events']}  post-roll {w['post_roll_events']}"
    )
    for reason in w.get("marks", []):
        print(f"    mark: {reason}")

# %% [markdown]
# Every event is in the index; only the windows have details. The plot shows
# the call depth over the whole run, with the window shaded.

# %%
w = next(w for w in windows if "mark" in w["trigger_kinds"])  # the window of our exception
main = session.thread(w["thread_id"])
events = main.index.events
fig, ax = plt.subplots(figsize=(9, 2.4), dpi=80)
ax.plot(events["call_depth"], lw=0.6, color="0.4")
for other in windows:
    if other["thread_id"] == w["thread_id"]:
        ax.axvspan(other["start_index_seq"], other["end_index_seq"] + 1, color="tab:red", alpha=0.3, lw=0)
ax.set_xlabel("index event")
ax.set_ylabel("call depth")
ax.set_title("the whole run is indexed; details persist only in the window (red)")
fig.tight_layout()
fig.savefig(SESSION / "windows.png")

# %% [markdown]
# ## Around the exception
#
# Each index event in the window links to its detail event (`detail_seq`):
# the arguments at CALL, the return value at RETURN, the exception's type and
# message at EXCEPTION. Values are recorded as their bounded `repr`, or as
# their type when a repr could be slow.

# %%
def show(value):
    """A captured value: its repr, or what was recorded instead (type and why)."""
    if isinstance(value, ObjectRepr):
        return value.text if value.status == "repr" else f"<{value.type_name}: {value.text}>"
    return repr(value)


def describe(event, detail, name):
    if event.event_kind == atf2.EVENT_CALL:
        return f"call {name}({', '.join(f'{k}={show(v)}' for k, v in detail.args or [])})"
    if event.event_kind == atf2.EVENT_RETURN:
        return f"return {name} -> {show(detail.return_value)}"
    kind, message = detail.exception or ("?", "")
    return f"EXCEPTION leaves {name}: {kind} {message}".rstrip()


window = events[w["start_index_seq"] : w["end_index_seq"] + 1]
base_depth = int(window["call_depth"].min())
hidden = 0
for seq in range(w["start_index_seq"], w["end_index_seq"] + 1):
    event = main.index[seq]
    symbol = session.symbol(event.function_id)
    if symbol.module != "__main__" and symbol.name != "mark":
        hidden += 1  # calls made inside atf2.mark itself
        continue
    detail = main.get_detail_for(event)
    print(f"{seq:6}  {'  ' * (event.call_depth - base_depth)}{describe(event, detail, symbol.qualname)}")
print(f"({hidden} events of calls made inside atf2.mark not shown)")

# %% [markdown]
# The same windows from the command line: `atf2 info atf2_traces/flight`, and
# `atf2 record --detail flight --trigger exception --pre-roll 8 --post-roll 6 script.py`
# records a script this way.

# %%
print(json.dumps(session.manifest["options"]["flight"]))
session.close()
