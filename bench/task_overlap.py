"""Which tasks several scored runs solve, alone and together: how much an ensemble of them could reach.

Each file is a scored run: a `task-predict` run file (run__*.json) or a competition run's summary.json, with
`task_scores` ({task id: fraction of its test outputs solved}). Prints each run's score, the tasks only it
solves, and the oracle union (per task, the best run's score): the ceiling of pooling the runs, since a pooled
prediction can keep at most two attempts per test output. Usage, from the repository root:

    python bench/task_overlap.py OUT/s0/summary.json OUT/s1/summary.json [-o overlap.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from arcsub.core.data import ArcDataError, read_json, write_json_atomic
from arcsub.core.metrics import solved_alone


def task_scores(path: Path) -> dict[str, float]:
    """A run file's per-task scores (one clear error when it has none: an unscored or older run)."""
    scores = read_json(path).get("task_scores")
    if not isinstance(scores, dict):
        raise ArcDataError(f"{path}: no task_scores (a run scored with --solutions, since this tool exists)")
    return {str(t): float(v) for t, v in scores.items()}


def overlap(runs: dict[str, dict[str, float]]) -> dict:
    """Per run: score and the tasks it alone solves; together: the union's score over the tasks all share."""
    shared = sorted(set.intersection(*(set(s) for s in runs.values())))
    if not shared:
        raise ArcDataError("the runs share no task")
    best = {t: max(s[t] for s in runs.values()) for t in shared}
    solved = {name: {t for t in shared if s[t] > 0} for name, s in runs.items()}
    alone = solved_alone(solved)
    out = {"tasks": len(shared), "union_score": sum(best.values()) / len(shared), "runs": {}}
    for name, s in runs.items():
        out["runs"][name] = {
            "score": sum(s[t] for t in shared) / len(shared),
            "solved": len(solved[name]),
            "only_here": alone[name],
        }
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("-o", "--out", type=Path)
    args = p.parse_args(argv)
    try:
        result = overlap({str(f): task_scores(f) for f in args.runs})
    except ArcDataError as e:
        print(f"task_overlap: error: {e}", file=sys.stderr)
        return 2
    for name, r in result["runs"].items():
        print(
            f"{r['score']:.4f}  {r['solved']:>3} tasks solved, {len(r['only_here']):>3} by it alone  {name}"
        )
    print(f"{result['union_score']:.4f}  oracle union over {result['tasks']} tasks")
    if args.out:
        write_json_atomic(args.out, result, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
