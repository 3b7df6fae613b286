"""Views and selection ablation of one task-model prediction run: the Kaggle score with the first k views
(k = 8, 16, 32, ... up to the run's views) under each selection strategy, from the candidates already decoded.

    python bench/task_selection.py OUT/run__<model>__<data>__<hash>.json --solutions S -o table.json
    python bench/task_selection.py --plot table.json          # only (re)draw table.png: score against views

Why a separate step: decoding is the expensive part of prediction, and every view count and strategy picks
from the same candidates (a run's first k views are exactly the views a k-view run would make: views are
seeded per task). Likelihood strategies re-score each distinct answer under the run's first `score_views`
views (one forward pass per answer and view, cached across k), so they load the model; vote does not.
Not a test: run it after `arcsub task-predict` on the GPU machine and record the numbers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from arcsub.core.config import from_dict
from arcsub.core.data import grid_to_list, grids_equal, load_tasks, resolve_path, write_json_atomic
from arcsub.core.metrics import TABLE_COLUMNS, format_metrics_table
from arcsub.core.runs import score_run
from arcsub.core.select import NEEDS_SCORER, select
from arcsub.core.submission import build_submission
from arcsub.taskmodel.predict import TaskPredictConfig, ensure_rows, poe_scorer, predict_device, view_jobs


def cached(scorer):
    """Scores of grids seen before are reused: every k re-ranks (mostly) the same distinct answers."""
    memo: dict[tuple, float] = {}

    def score(grids):
        keys = [(np.asarray(g).shape, np.asarray(g, dtype=np.uint8).tobytes()) for g in grids]
        todo = [(k, g) for k, g in zip(keys, grids, strict=True) if k not in memo]
        if todo:
            memo.update(zip([k for k, _ in todo], scorer([g for _, g in todo]), strict=True))
        return [memo[k] for k in keys]

    return score


def plot(table: Path) -> Path:
    """Kaggle score against the number of views, one line per selection strategy, next to the table."""
    from arcsub.core.viz import curves_image, save_png

    series: dict[str, tuple[list[float], list[float]]] = {}
    for r in json.loads(table.read_text())["rows"].values():
        xs, ys = series.setdefault(r["selection"], ([], []))
        xs.append(r["views"])
        ys.append(r["score"])
    return save_png(curves_image(series, "views", "Kaggle score"), table.with_suffix(".png"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", nargs="?", help="run__*.json written by arcsub task-predict")
    ap.add_argument("--solutions")
    ap.add_argument("--plot", metavar="TABLE", help="only draw TABLE.png from a table this script wrote")
    ap.add_argument(
        "--views", default="8,16,32,64,128", help="view counts to try (those above the run's are skipped)"
    )
    ap.add_argument("--strategies", default="vote,vote+likelihood,likelihood")
    ap.add_argument("-o", "--out", help="JSON table (and a PNG of it beside)")
    args = ap.parse_args()
    if args.plot:
        print(plot(Path(args.plot)))
        return
    if not (args.run and args.solutions and args.out):
        ap.error("RUN, --solutions and -o are needed (or --plot TABLE)")

    run = json.loads(Path(args.run).read_text())
    solutions = resolve_path(args.solutions)
    cfg = from_dict(TaskPredictConfig, run["config"])
    predictions = json.loads(Path(run["files"]["predictions"]).read_text())
    tasks = {t: task for t, task in load_tasks(run["challenges"]).items() if t in predictions}
    strategies = args.strategies.split(",")
    model = index = None
    if any(s in NEEDS_SCORER for s in strategies):
        from arcsub.core.device import pick_dtype
        from arcsub.taskmodel.model import load_task_model

        device = predict_device(cfg)
        model, index = load_task_model(run["model"], device, pick_dtype(cfg.dtype, device))
        model.eval()
        ensure_rows(model, index, list(tasks))
    scorers = {}
    rows = {}
    for k in [int(v) for v in args.views.split(",") if int(v) <= cfg.views]:
        # a run's first k views: each test output's candidates come view by view
        subset = {t: [c[: k * max(1, len(c) // cfg.views)] for c in p] for t, p in predictions.items()}
        for strategy in strategies:
            t0 = time.time()
            attempts = {}
            for task in tasks.values():
                attempts[task.id] = []
                for i, pair in enumerate(task.test):
                    voters = [
                        c
                        for c in subset[task.id][i]
                        if not (cfg.drop_input_copies and grids_equal(c["grid"], pair.input))
                    ]
                    scorer = None
                    if strategy in NEEDS_SCORER:
                        key = (task.id, i)
                        if key not in scorers:
                            jobs = [j for j in view_jobs(task, index.row(task.id), cfg) if j.test_index == i]
                            scorers[key] = cached(poe_scorer(model, jobs, cfg))
                        scorer = scorers[key]
                    top = select(voters, strategy, scorer)
                    attempts[task.id].append([None if g is None else grid_to_list(g) for g in top])
            scored = score_run(tasks, subset, build_submission(tasks, attempts), solutions)
            name = f"{k} views, {strategy}"
            rows[name] = {"views": k, "selection": strategy, "seconds": round(time.time() - t0, 1), **scored}
            print(f"{name}: score {scored['score']:.4f} ({rows[name]['seconds']} s)", flush=True)
            if (
                k == cfg.views and strategy == cfg.selection and "score" in run
            ):  # must reproduce the run itself
                assert abs(scored["score"] - run["score"]) < 1e-9, (scored["score"], run["score"])
    # the Kaggle score is the column that depends on the strategy; the metrics describe the candidate pool
    table = {n: {"score": r["score"], **r["metrics"]} for n, r in rows.items()}
    print(format_metrics_table(table, markdown=True, columns=("score", *TABLE_COLUMNS)))
    write_json_atomic(args.out, {"run": args.run, "rows": rows}, indent=2)
    print(plot(Path(args.out)))


if __name__ == "__main__":
    main()
