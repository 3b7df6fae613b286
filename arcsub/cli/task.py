"""`arcsub task-train` and `arcsub task-predict`: the task-embedding model's commands.

Kept apart from arcsub.taskmodel.train / arcsub.taskmodel.predict so that building the parser does not import torch: the
run functions are "module:function" strings, imported only when the command runs.
"""

from __future__ import annotations

import argparse

from arcsub.cli.app import Command, register
from arcsub.core.config import add_config_arguments


def _add_train(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_predict(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="task-model directory (a run's model/ folder)")
    p.add_argument("challenges", help="challenges JSON (Kaggle format), a task file or a folder of tasks")
    p.add_argument(
        "-o", "--out", dest="out_dir", required=True, metavar="OUT_DIR", help="folder for the outputs"
    )
    p.add_argument(
        "--solutions",
        metavar="S",
        help="solutions JSON: print the metrics table and the Kaggle score (without it: the test outputs "
        "written inline in the tasks, where every task has them)",
    )
    p.add_argument(
        "--submission", metavar="PATH", help="also write the submission here (e.g. submission.json)"
    )
    p.add_argument("--tasks", metavar="IDS", help="comma-separated task ids, or N for the first N tasks")
    p.add_argument(
        "--ensemble",
        metavar="MODEL",
        action="append",
        default=[],
        help="another task-model directory (repeatable): its candidates join MODEL's, likelihood sums both",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(p)


def _run_train(args: argparse.Namespace) -> int:
    """`arcsub task-train --config C [key=value ...]`."""
    from arcsub.core.config import load_config
    from arcsub.taskmodel.train import TaskTrainConfig, train

    cfg = load_config(TaskTrainConfig, args.config, list(args.overrides))
    run = train(cfg, progress=not args.quiet)
    print(f"run: {run}")
    return 0


def _run_predict(args: argparse.Namespace) -> int:
    """`arcsub task-predict MODEL_DIR CHALLENGES -o OUT_DIR [--solutions S] [--ensemble MODEL ...] [key=value ...]`."""
    from arcsub.core.config import load_config
    from arcsub.core.data import load_tasks, pick_task_ids
    from arcsub.core.metrics import format_metrics_table
    from arcsub.taskmodel.predict import TaskPredictConfig, run_task_predict

    cfg = load_config(TaskPredictConfig, args.config, list(args.overrides))
    ids = pick_task_ids(args.tasks, list(load_tasks(args.challenges))) if args.tasks else None
    s = run_task_predict(
        args.model,
        args.challenges,
        args.out_dir,
        cfg,
        args.solutions,
        ids,
        args.submission,
        progress=not args.quiet,
        ensemble=args.ensemble,
    )
    st = s["stats"]
    print(
        f"predicted {st['tasks']} task(s): {st['candidates']} candidate(s), {st['valid']} valid, "
        f"on {st['device']} in {st['seconds']:.1f}s"
    )
    for key, path in s["files"].items():
        print(f"{key}: {path}")
    if "score" in s:
        print(format_metrics_table(s["metrics"]))
        print(f"Kaggle score {s['score']:.4f} ({s['score']:.1%}) over {st['tasks']} task(s)")
    return 0


register(
    Command(
        "task-train",
        "train the task-embedding model (pretrain / test-time training / transductive)",
        _add_train,
        _run_train,
        "Train the task-embedding transformer (one pair per sequence, a learned embedding per task, 3-D grid\n"
        "rotary positions). mode=pretrain: training tasks + RE-ARC; mode=ttt: continue a pretrained model on the\n"
        "demonstrations of all test tasks at once; mode=transductive: both from scratch. The run directory is\n"
        "named from the config; re-running the same command resumes (time_budget=S stops and saves in time).",
    )
)
register(
    Command(
        "task-predict",
        "predict a challenges file with a task-embedding model",
        _add_predict,
        _run_predict,
        "Decode every test input under K augmented views with the task's embedding (greedy or sampled, grid\n"
        "grammar enforced), revert the views, vote two attempts, and write predictions, submission and run files\n"
        "named from the model, the data and a settings hash. With --solutions, print the metrics table and the\n"
        "Kaggle score. --ensemble MODEL (repeatable) pools the candidates of more models (e.g. other seeds).",
    )
)
