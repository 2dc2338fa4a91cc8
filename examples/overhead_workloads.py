"""The tracer benchmark's workloads (also used by the tests and the example program).

W1: recursive ``fib(25)``: nothing but Python calls.
W2: a realistic mix: a JSON round trip of a few thousand records,
    dataclasses with small methods, ``sorted`` with a key function, a few
    regular expressions.
W3: W2 in 4 threads at once.

Every workload is deterministic: the same calls in the same numbers on every
run (the completeness test relies on it).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def w1() -> int:
    return fib(25)


@dataclass
class Order:
    order_id: int
    customer: str
    amount: float
    tags: list = field(default_factory=list)

    def total_with_tax(self, rate: float = 0.2) -> float:
        return round(self.amount * (1 + rate), 2)

    def is_large(self) -> bool:
        return self.amount > 500

    def label(self) -> str:
        return f"{self.customer}#{self.order_id}"


_EMAIL = re.compile(r"^[\w.]+@([\w-]+)\.(com|org|net)$")
_WORDS = re.compile(r"[A-Za-z]+")


def make_records(n: int, seed: int = 0) -> list:
    """Deterministic pseudo-random records (a small LCG: no global random state)."""
    state = 12345 + seed
    records = []
    for i in range(n):
        state = (state * 1103515245 + 12345) & 0x7FFFFFFF
        records.append(
            {
                "id": i,
                "customer": f"user{state % 97}",
                "email": f"user{state % 97}@example{state % 3}.{('com', 'org', 'net')[state % 3]}",
                "amount": (state % 100000) / 100.0,
                "note": f"order {i} for item {state % 13} shipped",
            }
        )
    return records


def domain_of(email: str) -> str:
    m = _EMAIL.match(email)
    return m.group(1) if m else ""


def w2(n: int = 3000, seed: int = 0) -> float:
    records = json.loads(json.dumps(make_records(n, seed)))
    orders = [Order(r["id"], r["customer"], r["amount"], _WORDS.findall(r["note"])[:2]) for r in records]
    ranked = sorted(orders, key=lambda o: (o.customer, -o.amount))
    large = [o for o in ranked if o.is_large()]
    domains = {}
    for r in records:
        d = domain_of(r["email"])
        domains[d] = domains.get(d, 0) + 1
    labels = [o.label() for o in ranked]
    taxed = sum(o.total_with_tax() for o in ranked)
    return taxed + len(large) + len(labels) + len(domains)


def w3(threads: int = 4, n: int = 3000) -> float:
    results = [0.0] * threads

    def run(i: int) -> None:
        results[i] = w2(n, seed=i)

    workers = [threading.Thread(target=run, args=(i,), name=f"w3-{i}") for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return sum(results)


WORKLOADS = {"W1": w1, "W2": w2, "W3": w3}
