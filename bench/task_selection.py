"""Views and selection ablation of one task-model prediction run: the Kaggle score with the first k views
(k = 8, 16, 32, ... up to the run's views) under each selection strategy, from the candidates already decoded.

    python bench/task_selection.py OUT/run__<model>__<data>__<hash>.json --solutions S -o table.json
    python bench/task_selection.py RUN --solutions S --score-views 8,16,32 -o table.json   # more experts
    python bench/task_selection.py --plot table.json          # only (re)draw table.png: score against views

Why a separate step: decoding is the expensive part of prediction, and every view count and strategy picks
from the same candidates (a run's first k views are exactly the views a k-view run would make: views are
seeded per task). Likelihood strategies re-score each distinct answer under the run's first `score_views`
views (one forward pass per answer and view, cached across k), so they load the model; vote does not.
`--score-views` tries other numbers of scoring views (product of experts over more augmentations): the rows at
the run's own number keep their names, the others are named with it. A pooled run (`task-predict --ensemble`)
loads every member, takes the first k views of each member and sums the members' scores, as the run did.
Not a test: run it after `arcsub task-predict` on the GPU machine and record the numbers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from arcsub.core.config import from_dict
from arcsub.core.data import Task, grid_to_list, grids_equal, load_tasks, resolve_path, write_json_atomic
from arcsub.core.metrics import TABLE_COLUMNS, format_metrics_table
from arcsub.core.runs import score_run
from arcsub.core.select import NEEDS_SCORER, Scorer, select
from arcsub.core.submission import build_submission
from arcsub.taskmodel.predict import (
    Member,
    TaskPredictConfig,
    ensure_rows,
    poe_scorer,
    predict_device,
    sum_scorer,
    view_jobs,
)


def cached(scorer: Scorer) -> Scorer:
    """Scores of grids seen before are reused: every k re-ranks (mostly) the same distinct answers."""
    memo: dict[tuple, float] = {}

    def score(grids):
        keys = [(np.asarray(g).shape, np.asarray(g, dtype=np.uint8).tobytes()) for g in grids]
        todo = [(k, g) for k, g in zip(keys, grids, strict=True) if k not in memo]
        if todo:
            memo.update(zip([k for k, _ in todo], scorer([g for _, g in todo]), strict=True))
        return [memo[k] for k in keys]

    return score


def first_views(candidates: list[dict[str, Any]], k: int, views: int) -> list[dict[str, Any]]:
    """The candidates of a test output's first k views: of each member, for a pooled run (whose list holds
    member 0's views, then member 1's, ...), so k views of a pool are what a k-view pooled run would make."""
    by_member: dict[int, list[dict[str, Any]]] = {}
    for c in candidates:
        by_member.setdefault(int(c.get("member", 0)), []).append(c)
    return [c for cands in by_member.values() for c in cands[: k * max(1, len(cands) // views)]]


def load_members(run: dict[str, Any], cfg: TaskPredictConfig, task_ids: list[str]) -> list[Member]:
    """The run's model and its ensemble's, on the run's device, with rows for every task."""
    from arcsub.core.device import pick_dtype
    from arcsub.taskmodel.model import load_task_model

    device = predict_device(cfg)
    members = []
    for path in [run["model"], *run.get("ensemble", [])]:
        model, index = load_task_model(path, device, pick_dtype(cfg.dtype, device))
        model.eval()
        ensure_rows(model, index, task_ids)
        members.append((model, index))
    return members


def pool_scorer(members: list[Member], task: Task, test_index: int, cfg: TaskPredictConfig) -> Scorer:
    """Likelihood of a test output's answers as the prediction scored them: each member's product of experts
    over its first cfg.score_views views, summed over members (one member: its own scores)."""
    scorers = [
        poe_scorer(
            model, [j for j in view_jobs(task, index.row(task.id), cfg) if j.test_index == test_index], cfg
        )
        for model, index in members
    ]
    return cached(sum_scorer(scorers))


def plot(table: Path) -> Path:
    """Kaggle score against the number of views, one line per selection strategy, next to the table."""
    from arcsub.core.viz import curves_image, save_png

    series: dict[str, tuple[list[float], list[float]]] = {}
    for r in json.loads(table.read_text())["rows"].values():
        xs, ys = series.setdefault(r.get("label", r["selection"]), ([], []))
        xs.append(r["views"])
        ys.append(r["score"])
    return save_png(curves_image(series, "views", "Kaggle score"), table.with_suffix(".png"))


def selection_plans(strategies: list[str], score_views: list[int], own: int) -> list[tuple[str, int, str]]:
    """(strategy, scoring views, label) to try: vote once (it scores nothing), each likelihood strategy at every
    number of scoring views; labels at the run's own number are the bare strategy, as before this option."""
    plans = []
    for strategy in strategies:
        for s in score_views if strategy in NEEDS_SCORER else [own]:
            plans.append((strategy, s, strategy if s == own else f"{strategy}, {s} scoring views"))
    return plans


def attempts_for(
    tasks: dict[str, Task],
    subset: dict[str, list[list[dict[str, Any]]]],
    strategy: str,
    scorer_of: Any,
    drop_input_copies: bool,
) -> dict[str, list[list[Any]]]:
    """Each test output's two attempts under one strategy (scorer_of(task, i) gives its likelihood scorer)."""
    attempts: dict[str, list[list[Any]]] = {}
    for task in tasks.values():
        attempts[task.id] = []
        for i, pair in enumerate(task.test):
            voters = [
                c
                for c in subset[task.id][i]
                if not (drop_input_copies and grids_equal(c["grid"], pair.input))
            ]
            scorer = scorer_of(task, i) if strategy in NEEDS_SCORER else None
            top = select(voters, strategy, scorer)
            attempts[task.id].append([None if g is None else grid_to_list(g) for g in top])
    return attempts


def differing_outputs(kept: dict[str, Any], submission: dict[str, Any]) -> int:
    """Test outputs whose attempts differ between the run's own submission and the table's rebuild at the run's
    settings. On the CPU (fp32) this is 0, or the table's other rows are not what those settings give; on a GPU
    a few near ties may flip (bf16 scores of the same answers in other batch compositions), which must not cost
    the table: it is counted and kept with it."""
    diff = 0
    for task_id, entries in submission.items():
        theirs = kept.get(task_id, [])
        diff += sum(i >= len(theirs) or entry != theirs[i] for i, entry in enumerate(entries))
    return diff


def reproduction(run: dict[str, Any], submission: dict[str, Any]) -> dict[str, int]:
    """How far the rebuild at the run's own views and selection is from the run's submission (printed)."""
    kept = json.loads(Path(run["files"]["submission"]).read_text())
    outputs = sum(len(entries) for entries in submission.values())
    diff = differing_outputs(kept, submission)
    if diff:
        print(
            f"task_selection: {run['files']['submission']}: {diff} of {outputs} test outputs pick other attempts "
            "at the run's own settings (bf16 scores in other batches can flip near ties): counted in the table",
            flush=True,
        )
    return {"outputs": outputs, "differing": diff}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", nargs="?", help="run__*.json written by arcsub task-predict")
    ap.add_argument("--solutions")
    ap.add_argument("--plot", metavar="TABLE", help="only draw TABLE.png from a table this script wrote")
    ap.add_argument(
        "--views", default="8,16,32,64,128", help="view counts to try (those above the run's are skipped)"
    )
    ap.add_argument("--strategies", default="vote,vote+likelihood,likelihood")
    ap.add_argument(
        "--score-views", help="scoring views for likelihood strategies, e.g. 8,16,32 (default: the run's)"
    )
    ap.add_argument("-o", "--out", help="JSON table (and a PNG of it beside)")
    args = ap.parse_args(argv)
    if not args.plot and not (args.run and args.solutions and args.out):
        ap.error("RUN, --solutions and -o are needed (or --plot TABLE)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.plot:
        print(plot(Path(args.plot)))
        return
    run = json.loads(Path(args.run).read_text())
    solutions = resolve_path(args.solutions)
    cfg = from_dict(TaskPredictConfig, run["config"])
    predictions = json.loads(Path(run["files"]["predictions"]).read_text())
    tasks = {t: task for t, task in load_tasks(run["challenges"]).items() if t in predictions}
    score_views = [int(v) for v in args.score_views.split(",")] if args.score_views else [cfg.score_views]
    plans = selection_plans(args.strategies.split(","), score_views, cfg.score_views)
    members = load_members(run, cfg, list(tasks)) if any(s in NEEDS_SCORER for s, _, _ in plans) else []
    scorers: dict[tuple[str, int, int], Scorer] = {}

    def scorer_of(s: int):
        def get(task: Task, i: int) -> Scorer:
            if (task.id, i, s) not in scorers:
                scorers[(task.id, i, s)] = pool_scorer(
                    members, task, i, dataclasses.replace(cfg, score_views=s)
                )
            return scorers[(task.id, i, s)]

        return get

    rows, reproduced = {}, None
    for k in [int(v) for v in args.views.split(",") if int(v) <= cfg.views]:
        subset = {t: [first_views(c, k, cfg.views) for c in p] for t, p in predictions.items()}
        for strategy, s, label in plans:
            t0 = time.time()
            attempts = attempts_for(tasks, subset, strategy, scorer_of(s), cfg.drop_input_copies)
            submission = build_submission(tasks, attempts)
            scored = score_run(tasks, subset, submission, solutions)
            name = f"{k} views, {label}"
            rows[name] = {
                "views": k,
                "selection": strategy,
                "score_views": s,
                "label": label,
                "seconds": round(time.time() - t0, 1),
                **scored,
            }
            print(f"{name}: score {scored['score']:.4f} ({rows[name]['seconds']} s)", flush=True)
            if k == cfg.views and label == cfg.selection:
                reproduced = reproduction(run, submission)
    # the Kaggle score is the column that depends on the strategy; the metrics describe the candidate pool
    table = {n: {"score": r["score"], **r["metrics"]} for n, r in rows.items()}
    print(format_metrics_table(table, markdown=True, columns=("score", *TABLE_COLUMNS)))
    write_json_atomic(args.out, {"run": args.run, "reproduced": reproduced, "rows": rows}, indent=2)
    print(plot(Path(args.out)))


if __name__ == "__main__":
    main()
