"""The solver's search time with and without its cache of labelled grids, in one process on the same tasks.

`arcsub.solver.objects.label` keeps the objects of recent grids (`labelled`, an LRU cache), since one search
labels the same grid many times. The baseline runs the same search with a cache of size 0. Both passes must find
the same program for every task; the table in docs/benchmarks.md comes from this script. Usage, from the
repository root:

    python bench/solver_speed.py data:arc-agi-1/arc-agi_training_challenges.json [--tasks N] [-o speed.json]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time

from arcsub.core.data import ArcDataError, load_tasks, write_json_atomic
from arcsub.solver import objects
from arcsub.solver.search import solve


def timed_pass(tasks: dict, cache: int) -> tuple[float, dict[str, str | None]]:
    """Seconds to solve every task with a label cache of `cache` grids, and the program found per task."""
    objects.labelled = functools.lru_cache(maxsize=cache)(objects.labelled.__wrapped__)
    start = time.perf_counter()
    found = {tid: (r[0] if (r := solve(task)) else None) for tid, task in tasks.items()}
    return time.perf_counter() - start, found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("challenges")
    parser.add_argument("--tasks", type=int, default=0, help="the first N tasks (0: all)")
    parser.add_argument(
        "--cache", type=int, default=1024, help="the cached pass's size (the package's default)"
    )
    parser.add_argument("-o", "--out", default=None)
    args = parser.parse_args(argv)
    try:
        tasks = load_tasks(args.challenges)
    except ArcDataError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.tasks:
        tasks = dict(list(tasks.items())[: args.tasks])
    timed_pass(dict(list(tasks.items())[:1]), 0)  # warm-up: imports and first calls count in neither pass
    base_s, base = timed_pass(tasks, 0)
    cached_s, cached = timed_pass(tasks, args.cache)
    result = {
        "tasks": len(tasks),
        "uncached_s": round(base_s, 1),
        "cached_s": round(cached_s, 1),
        "speedup": round(base_s / cached_s, 2),
        "same_programs": base == cached,
        "explained": sum(p is not None for p in cached.values()),
    }
    print(json.dumps(result))
    if args.out:
        write_json_atomic(args.out, result)
    return 0 if result["same_programs"] else 1


if __name__ == "__main__":
    sys.exit(main())
