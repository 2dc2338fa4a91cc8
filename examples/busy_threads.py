"""A small busy program to record: ``atf2 record examples/busy_threads.py``.

A few seconds of realistic multi-threaded work: an "ingest" thread parses
JSON batches and hands them over a queue to a thread pool that validates them
(dataclasses, regular expressions, one exception raised and caught for each
bad record), sorts and aggregates them, while the main thread walks a
recursive structure. Deterministic: the same calls on every run.

``--scale X`` multiplies the amount of work (default 1.0: about 2-4 s traced
on a small machine); ``--quick`` is a tenth of it.
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

_SKU = re.compile(r"^[A-Z]{3}-\d{4}$")
_WORDS = re.compile(r"\w+")


class InvalidRecord(ValueError):
    pass


@dataclass(frozen=True)
class Item:
    sku: str
    qty: int
    price: float
    note: str

    def value(self) -> float:
        return self.qty * self.price

    def keywords(self) -> list:
        return [w.lower() for w in _WORDS.findall(self.note) if len(w) > 3]


def make_batch(batch_no: int, size: int) -> str:
    rows = []
    for i in range(size):
        k = batch_no * 7919 + i * 104729
        sku = f"{'ABCDEFGH'[k % 8]}{'KLMN'[k % 4]}{'XYZ'[k % 3]}-{k % 10000:04d}"
        if k % 37 == 0:
            sku = sku.lower()  # a bad record: the validator raises, the worker catches
        rows.append({"sku": sku, "qty": 1 + k % 9, "price": (k % 5000) / 100, "note": f"batch {batch_no} row {i} express"})
    return json.dumps(rows)


def validate(row: dict) -> Item:
    if not _SKU.match(row["sku"]):
        raise InvalidRecord(row["sku"])
    return Item(row["sku"], int(row["qty"]), float(row["price"]), row["note"])


def process_batch(text: str) -> dict:
    items, rejected = [], 0
    for row in json.loads(text):
        try:
            items.append(validate(row))
        except InvalidRecord:
            rejected += 1
    items.sort(key=Item.value, reverse=True)
    words = {}
    for item in items[:50]:
        for w in item.keywords():
            words[w] = words.get(w, 0) + 1
    return {"count": len(items), "rejected": rejected, "top": items[0].sku if items else None, "value": sum(i.value() for i in items), "words": len(words)}


def ingest(batches: int, size: int, out: queue.Queue) -> None:
    for b in range(batches):
        out.put(make_batch(b, size))
    out.put(None)


def tree_depth(node) -> int:
    if not isinstance(node, list) or not node:
        return 0
    return 1 + max(tree_depth(child) for child in node)


def build_tree(depth: int, width: int):
    return [] if depth == 0 else [build_tree(depth - 1, width) for _ in range(width)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    scale = args.scale * (0.1 if args.quick else 1.0)
    batches, size = max(2, int(240 * scale)), 400

    pipe: queue.Queue = queue.Queue(maxsize=8)
    producer = threading.Thread(target=ingest, args=(batches, size, pipe), name="ingest")
    producer.start()
    futures = []
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="worker") as pool:
        while (text := pipe.get()) is not None:
            futures.append(pool.submit(process_batch, text))
        depth = tree_depth(build_tree(7, 4))
    producer.join()
    results = [f.result() for f in futures]
    total = sum(r["count"] for r in results)
    rejected = sum(r["rejected"] for r in results)
    print(f"busy_threads: {len(results)} batches, {total} items, {rejected} rejected, tree depth {depth}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
