"""`arcsub dry-run`: the competition path on this machine, either pipeline, writing and scoring a submission."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from arcsub.cli.app import EXIT_OK, Command, register
from arcsub.core.config import add_config_arguments
from arcsub.core.data import repo_root


def _add_dry_run(p: argparse.ArgumentParser) -> None:
    from arcsub.core.data import dataset_files

    c, s = dataset_files("arc-agi-1", "evaluation")
    p.add_argument(
        "--challenges",
        default=str(c),
        help="challenges JSON or a 'data:' path like data:arc-agi-2/arc-agi_evaluation_challenges.json "
        "(default: ARC-AGI-1 evaluation)",
    )
    p.add_argument(
        "--solutions",
        default=None,
        help="solutions JSON (default: the challenges' sibling, else test outputs written inline in the tasks)",
    )
    p.add_argument("--tasks", default="4", help="N (the N smallest tasks) or comma-separated task ids")
    p.add_argument(
        "--first", action="store_true", help="with --tasks N: the first N tasks of the file, not the smallest"
    )
    p.add_argument(
        "-o", "--out", default=None, help="output folder (default: runs/dry-run__<model>__<data>__<n>)"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--pipeline",
        choices=["in-context", "task"],
        default="task",
        help="task (default, the stronger path): train a task-embedding model on the tasks' demonstrations, "
        "then predict (docs/task-model.md); in-context: the embedded LM + per-task TTFT",
    )
    add_config_arguments(p)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _run_dry_run(args: argparse.Namespace) -> int:
    import importlib

    from arcsub.core.data import load_tasks, pick_task_ids, resolve_path, subset
    from arcsub.core.runs import check_run_inputs, format_summary, json_summary, pick_dry_run_tasks
    from arcsub.lm.pipeline import default_model_dir

    module, cpu_config = {
        "in-context": ("arcsub.lm.pipeline", "dry-run-cpu.yaml"),
        "task": ("arcsub.taskmodel.pipeline", "task-dry-run-cpu.yaml"),
    }[args.pipeline]
    pipeline = importlib.import_module(module)
    config = args.config
    if config is None and not _has_cuda():
        config = str(repo_root() / "configs" / cpu_config)
        print(f"no GPU: using {config} (small budgets)", file=sys.stderr)
    cfg = pipeline.load_pipeline_config(config, args.overrides)
    challenges = resolve_path(args.challenges)  # 'data:arc-agi-2/...' as in the configs
    solutions = args.solutions
    if solutions is None:
        sib = challenges.with_name(challenges.name.replace("_challenges", "_solutions"))
        solutions = str(sib) if sib.exists() and sib != challenges else None
    if args.first or not args.tasks.isdigit():
        ids = pick_task_ids(args.tasks, list(load_tasks(challenges)))
    else:
        ids = pick_dry_run_tasks(challenges, int(args.tasks))
    check_run_inputs(subset(load_tasks(challenges), ids), solutions, [])  # before any training
    model = Path(cfg.model or default_model_dir())
    data = challenges.stem.replace("arc-agi_", "").replace("_challenges", "")
    out = args.out or f"runs/dry-run__{model.name}__{challenges.parent.name}-{data}__{len(ids)}tasks"
    summary = pipeline.run_pipeline(challenges, out, cfg, solutions, ids)
    print(json_summary(summary) if args.json else format_summary(summary))
    return EXIT_OK


register(
    Command(
        "dry-run",
        "run the Kaggle path locally (train or TTFT, predict, vote) on a few tasks and score it",
        _add_dry_run,
        _run_dry_run,
        "The competition path on this machine on N tasks (default: the 4 smallest ARC-AGI-1 evaluation\n"
        "tasks): baseline submission first; then, by default (--pipeline task), a task-embedding model trained\n"
        "on the tasks' demonstrations predicts with voting over views (--pipeline in-context: the embedded LM,\n"
        "per-task TTFT). Prints the score, the metric table, the time per stage and the report.html path.\n"
        "Without a GPU it uses configs/task-dry-run-cpu.yaml (about a minute of training).\n"
        "Example: arcsub dry-run --tasks 8 train.seconds=120 predict.views=16",
    )
)
