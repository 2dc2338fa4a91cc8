"""Run the plain-script benchmarks and print one line per figure."""

from __future__ import annotations

import argparse
import importlib
import json

from . import MODULES


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m atf2.bench")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"benchmark modules, of {', '.join(MODULES)} (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    unknown = sorted(set(args.names) - set(MODULES))
    if unknown:
        parser.error(f"unknown benchmark module(s): {', '.join(unknown)}; known: {', '.join(MODULES)}")
    rows = []
    for name in args.names or MODULES:
        module = importlib.import_module(f"{__package__}.{name}")
        for row in module.run(quick=args.quick):
            row.setdefault("module", name)
            rows.append(row)
            if not args.json:
                extra = {k: v for k, v in row.items() if k not in ("name", "value", "unit", "module")}
                extras = "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items())
                print(f"{name:>9} | {row['name']:<40} {row['value']:>14.4g} {row['unit']:<10} {extras}", flush=True)
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
