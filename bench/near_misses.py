"""How far a prediction's best candidates are from the right answers: per test output, the fewest wrong cells
among the candidates of the right size, bucketed, and split by whether the test input is larger than every
demonstration input (ARC-AGI-2 asks that of about half its test inputs).

Why: pass_n says whether some view got an output exactly right; it cannot say whether the others were near
misses (one or two cells off: more views, sampling or a refinement could convert them) or far off (the rule
was not learned). Reads a predictions file (`.json`, or `.json.xz` as kept in docs/experiments), its
challenges and the solutions; no model, no GPU. Usage, from the repository root:

    python bench/near_misses.py RUN/predictions.json --challenges C --solutions S [-o near.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from arcsub.core.data import ArcDataError, Task, load_tasks, read_json, write_json_atomic

BUCKETS = ((0, 0), (1, 3), (4, 9), (10, None))  # wrong cells of the best right-size candidate, inclusive


def fewest_wrong(candidates: list[dict[str, Any]], truth: np.ndarray) -> int | None:
    """The fewest cells a candidate of the truth's size gets wrong; None when no candidate has that size."""
    wrong = [
        int((np.asarray(c["grid"]) != truth).sum())
        for c in candidates
        if c.get("grid") is not None and np.asarray(c["grid"]).shape == truth.shape
    ]
    return min(wrong) if wrong else None


def bucket_name(lo: int, hi: int | None) -> str:
    return f"{lo}" if lo == hi else f"{lo}+" if hi is None else f"{lo}-{hi}"


def histogram(wrong: list[int | None]) -> dict[str, int]:
    """Outputs per bucket of wrong cells, and those with no candidate of the right size."""
    out = {"wrong size": sum(w is None for w in wrong)}
    for lo, hi in BUCKETS:
        out[bucket_name(lo, hi)] = sum(w is not None and lo <= w and (hi is None or w <= hi) for w in wrong)
    return out


def larger_than_demos(task: Task, index: int) -> bool:
    """The test input has more cells than every demonstration input: the rule must carry to a larger grid."""
    return task.test[index].input.size > max(p.input.size for p in task.train)


def near_misses(predictions: dict[str, Any], tasks: dict[str, Task]) -> dict[str, Any]:
    """Histograms over all test outputs and over the two groups of larger_than_demos."""
    missing = sorted(set(predictions) - set(tasks))
    if missing:
        raise ArcDataError(f"predictions name tasks the challenges lack: {', '.join(missing[:5])}")
    groups: dict[str, list[int | None]] = {"all": [], "larger test input": [], "other": []}
    for task_id, outputs in predictions.items():
        task = tasks[task_id]
        for i, candidates in enumerate(outputs):
            truth = task.test[i].output
            if truth is None:
                raise ArcDataError(f"{task_id}: test output {i} has no solution")
            w = fewest_wrong(candidates, truth)
            groups["all"].append(w)
            groups["larger test input" if larger_than_demos(task, i) else "other"].append(w)
    return {name: {"outputs": len(ws), **histogram(ws)} for name, ws in groups.items()}


def markdown(result: dict[str, Any]) -> str:
    cols = ["outputs", "wrong size", *(bucket_name(lo, hi) for lo, hi in BUCKETS)]
    lines = ["| test outputs | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    lines += [f"| {name} | " + " | ".join(str(r[c]) for c in cols) + " |" for name, r in result.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("predictions", type=Path)
    ap.add_argument("--challenges", required=True)
    ap.add_argument("--solutions", required=True)
    ap.add_argument("-o", "--out", type=Path)
    args = ap.parse_args(argv)
    try:
        result = near_misses(read_json(args.predictions), load_tasks(args.challenges, args.solutions))
    except ArcDataError as e:
        print(f"near_misses: error: {e}", file=sys.stderr)
        return 2
    print("wrong cells of the best candidate of the right size, per test output:")
    print(markdown(result))
    if args.out:
        write_json_atomic(args.out, result, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
