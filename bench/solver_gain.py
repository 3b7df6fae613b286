"""What the symbolic solver adds to scored model runs, without running the models again.

The pipelines put the solver's first answer in attempt_1 and the model's best different guess in attempt_2
(arcsub.core.combine). From a model run's per-task scores and the solver's submission that is known exactly
where the solver's answers are all right (the task scores 1) and where it answers nothing (the model's score);
where its first answer is wrong, the merged task lies between the solver's own score (the model's right answer
was its attempt_2, now dropped) and the solver's plus the model's. Usage, from the repository root:

    arcsub solve CHALLENGES -o OUT/solver.json --solutions SOLUTIONS
    python bench/solver_gain.py OUT/solver.json SOLUTIONS RUN [RUN ...] [-o gain.json]

RUN: a scored run file with task_scores (summary.json or run__*.json). Prints per run the model's score and the
merged score's bounds (equal when every answer of the solver is right), and the tasks the solver adds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from task_overlap import task_scores

from arcsub.core.data import ArcDataError, load_truth, read_json, write_json_atomic
from arcsub.core.metrics import score_submission
from arcsub.solver.run import programs_path


def first_attempt_scores(solver_sub: Path, solutions: Path) -> dict[str, float]:
    """Per task the solver explained (named in its .programs.json), the share of test outputs its attempt_1
    gets right."""
    programs = read_json(programs_path(solver_sub))
    sub = read_json(solver_sub)
    only_first = {t: [{**e, "attempt_2": e["attempt_1"]} for e in sub[t]] for t in programs}
    truth = load_truth(solutions)
    return score_submission(only_first, {t: truth[t] for t in programs}, solver_sub)["per_task"]


def gain(solver: dict[str, float], model: dict[str, float]) -> dict:
    """The model's score and the merged score's bounds over the model run's tasks."""
    missing = [t for t in solver if t not in model]
    if missing:
        raise ArcDataError(f"task {missing[0]}: answered by the solver but not in the run")
    low = {t: solver.get(t, m) for t, m in model.items()}
    high = {t: min(1.0, solver[t] + m) if t in solver else m for t, m in model.items()}
    n = len(model)
    return {
        "tasks": n,
        "model": sum(model.values()) / n,
        "merged_low": sum(low.values()) / n,
        "merged_high": sum(high.values()) / n,
        "added": sorted(t for t, s in solver.items() if s > model[t]),
        "wrong_first": sorted(t for t, s in solver.items() if s < 1),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "solver", type=Path, help="the submission `arcsub solve` wrote (its .programs.json beside)"
    )
    p.add_argument("solutions", type=Path)
    p.add_argument("runs", type=Path, nargs="+")
    p.add_argument("-o", "--out", type=Path)
    a = p.parse_args(argv)
    try:
        solver = first_attempt_scores(a.solver, a.solutions)
        rows = {str(r): gain(solver, task_scores(r)) for r in a.runs}
    except (ArcDataError, OSError) as e:
        print(f"solver_gain: error: {e}", file=sys.stderr)
        return 2
    for name, g in rows.items():
        print(
            f"{name}: model {g['model']:.4f}, with the solver {g['merged_low']:.4f}–{g['merged_high']:.4f}; "
            f"adds {len(g['added'])} task(s) {' '.join(g['added'])}"
        )
    if a.out:
        write_json_atomic(a.out, {"solver_tasks": solver, "runs": rows}, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
