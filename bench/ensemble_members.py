"""What each member of a pooled (ensemble) prediction contributes: the metrics of every member's own candidates
beside the pool's, from one predictions file, without a model or a GPU.

A pooled run (`arcsub task-predict --ensemble`, or the task pipeline with `ensemble=K`) marks each candidate
with its `member`. Its Kaggle score comes from likelihood selection over the pool, which needs the models; this
tool asks the questions the file alone can answer: did a member put a right answer among its own views
(pass_n), would its own vote have kept it (vote_2), and how much of the pool's pass_n comes from one member
only. Several single-model predictions files are pooled here as members, in the order given (member K is the
K-th file): what pooling those models would reach by vote, before anyone trains and pools them on a GPU.
Usage, from the repository root:

    python bench/ensemble_members.py RUN/predictions.json --solutions S [-o m.json]
    python bench/ensemble_members.py S0/predictions.json S1/predictions.json --solutions S

Rows: `member K` (its candidates alone), `pool` (all of them, as the pooled selection saw them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from arcsub.core.data import ArcDataError, read_json, write_json_atomic
from arcsub.core.metrics import compute_metrics, format_metrics_table, solved_alone


def member_ids(predictions: dict[str, Any]) -> list[int]:
    """The members named in a pooled predictions file (one clear error for a single model's file)."""
    found = {c["member"] for outs in predictions.values() for cands in outs for c in cands if "member" in c}
    if not found:
        raise ArcDataError("no candidate carries a 'member': not a pooled (ensemble) prediction")
    return sorted(found)


def pool_files(files: list[dict[str, Any]]) -> dict[str, Any]:
    """Single-model predictions pooled as one ensemble's: file K's candidates become member K's, for the tasks
    every file has (candidates in file order, as a pooled run lists them)."""
    shared = set.intersection(*(set(f) for f in files))
    if not shared:
        raise ArcDataError("the predictions files share no task")
    return {
        t: [
            [{**c, "member": k} for k, f in enumerate(files) for c in f[t][i]]
            for i in range(len(files[0][t]))
        ]
        for t in sorted(shared)
    }


def only_member(predictions: dict[str, Any], k: int) -> dict[str, Any]:
    """The predictions as member k alone made them: every test output keeps only k's candidates."""
    return {
        t: [[c for c in cands if c.get("member") == k] for cands in outs] for t, outs in predictions.items()
    }


def member_table(predictions: dict[str, Any], solutions: dict[str, Any]) -> dict[str, Any]:
    """Metrics per member and for the pool, plus the tasks whose pass_n only one member reaches."""
    missing = sorted(set(predictions) - set(solutions))
    if missing:
        raise ArcDataError(f"{len(missing)} predicted task(s) not in the solutions, e.g. {missing[0]}")
    truth = {t: solutions[t] for t in predictions}
    rows: dict[str, Any] = {}
    hits: dict[str, set[str]] = {}
    for k in member_ids(predictions):
        m = compute_metrics(only_member(predictions, k), truth)
        hits[f"member {k}"] = {t for t, v in m["per_task"].items() if v["pass_n"] > 0}
        rows[f"member {k}"] = m
    rows["pool"] = compute_metrics(predictions, truth)
    return {"tasks": len(truth), "rows": rows, "pass_n_only_in": solved_alone(hits)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = "one pooled predictions file, or several single-model ones to pool (.json, .json.xz or .json.gz)"
    p.add_argument("predictions", type=Path, nargs="+", help=what)
    p.add_argument("--solutions", type=Path, required=True)
    p.add_argument("-o", "--out", type=Path)
    args = p.parse_args(argv)
    try:
        files = [read_json(f) for f in args.predictions]
        result = member_table(files[0] if len(files) == 1 else pool_files(files), read_json(args.solutions))
    except ArcDataError as e:
        print(f"ensemble_members: error: {e}", file=sys.stderr)
        return 2
    print(format_metrics_table(result["rows"], markdown=True))
    for name, ids in result["pass_n_only_in"].items():
        print(f"{name}: right among its own views alone in {len(ids)} task(s) {' '.join(ids)}")
    if args.out:
        keep = {n: {k: v for k, v in m.items() if k != "per_task"} for n, m in result["rows"].items()}
        write_json_atomic(args.out, {**result, "rows": keep}, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
