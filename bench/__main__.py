"""Run the benchmark sections: ``python -m bench [--only NAME ...]``.

A section is a module with a ``run() -> None`` that prints its own figures. Add one by appending its name
and module path to ``SECTIONS``; modules are imported only when their section runs.
"""

from __future__ import annotations

import argparse
import importlib
import time

SECTIONS: list[tuple[str, str]] = [
    ("engine", "bench.engine"),
    ("load", "bench.load"),
    ("measures", "bench.measures"),
    ("relay", "bench.relay"),
    ("floor", "bench.floor"),
    ("markdown", "bench.markdown"),
    ("writers", "bench.writers"),
    ("search", "bench.search"),
    ("evaluation", "bench.evaluation"),
]


def main(argv: list[str] | None = None) -> None:
    names = [name for name, _ in SECTIONS]
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--only", nargs="+", choices=names, help="run only these sections")
    args = parser.parse_args(argv)
    for name, module in SECTIONS:
        if args.only and name not in args.only:
            continue
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        importlib.import_module(module).run()
        print(f"({name}: {time.perf_counter() - started:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
