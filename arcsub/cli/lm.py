"""`arcsub train | ttft | predict | generate`: the in-context LM family's commands. Their run functions are
"module:function" strings or import inside, so building the parser does not import torch.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from arcsub.lm.predict import PredictConfig

from arcsub.cli.app import EXIT_OK, Command, register
from arcsub.core.config import add_config_arguments
from arcsub.core.data import load_tasks, pick_task_ids

# ---------------------------------------------------------------- train / ttft / predict / dry-run


def _run_train(args: argparse.Namespace) -> int:
    from arcsub.core.config import load_config
    from arcsub.lm.train import TrainConfig, train

    run = train(load_config(TrainConfig, args.config, args.overrides), progress=not args.quiet)
    print(f"run: {run}")
    return EXIT_OK


def _add_train(p: argparse.ArgumentParser) -> None:
    add_config_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")


register(
    Command(
        "train",
        "train a model from scratch or fine-tune a local checkpoint (LoRA or full)",
        _add_train,
        _run_train,
        "Train on ARC tasks written as text. model=<preset> (tiny, small, medium, qwen0.5b-shape) trains from\n"
        "scratch with the compact grid tokenizer; model=<dir> fine-tunes a local Hugging Face checkpoint.\n"
        "The run directory runs/<model>__<data>__<settings> holds log.jsonl, checkpoint/ (resumed automatically\n"
        "when the same command runs again) and model/. Multi-GPU: torchrun --nproc-per-node N -m arcsub.cli train.\n"
        "Example: arcsub train --config configs/train-small.yaml steps=2000 lora.r=0",
    )
)


def _add_ttft(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="base model directory")
    p.add_argument("challenges", help="challenges JSON (only the demonstration pairs are used)")
    p.add_argument("-o", "--out", required=True, help="adapters folder (resumed when it exists)")
    p.add_argument("--tasks", metavar="IDS", help="comma-separated task ids, or N for the first N")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(p)


def _run_ttft(args: argparse.Namespace) -> int:
    from arcsub.core.config import load_config
    from arcsub.core.modeldir import check_model_dir
    from arcsub.lm.ttft import TTFTConfig, run_ttft

    cfg = load_config(TTFTConfig, args.config, args.overrides)
    check_model_dir(args.model)
    tasks = load_tasks(args.challenges)
    ids = pick_task_ids(args.tasks, list(tasks)) or list(tasks)
    out = run_ttft(args.model, {t: tasks[t] for t in ids}, args.out, cfg, progress=not args.quiet)
    print(f"adapters: {out}")
    return EXIT_OK


register(
    Command(
        "ttft",
        "test-time fine-tune LoRA adapters on each task's demonstrations",
        _add_ttft,
        _run_ttft,
        "Fit a small LoRA per task on its leave-one-out demonstration tasks (mode=per-task), or one LoRA on\n"
        "all tasks merged into OUT/model (mode=group). Finished tasks are saved at once and skipped on rerun.\n"
        "Example: arcsub ttft models/arcsub-small tasks.json -o runs/adapters steps=100 seconds_per_task=30",
    )
)


def _add_predict(p: argparse.ArgumentParser) -> None:
    """Arguments of `arcsub predict` (argparse only: importing this module does not import torch)."""
    p.add_argument(
        "model", help="model directory (HF format + arcsub.json), or a preset name for a smoke run"
    )
    p.add_argument("challenges", help="challenges JSON (Kaggle format), a task file or a folder of tasks")
    p.add_argument(
        "-o", "--out", dest="out_dir", required=True, metavar="OUT_DIR", help="folder for the outputs"
    )
    p.add_argument(
        "--adapters", metavar="DIR", help="per-task LoRA adapters: DIR/<task_id>/ (+ manifest.json)"
    )
    p.add_argument("--engine", choices=("auto", "torch", "vllm"), help="override the config's engine")
    p.add_argument(
        "--solutions",
        metavar="S",
        help="solutions JSON: print the score and metrics (default: inline test outputs)",
    )
    p.add_argument("--submission", metavar="PATH", help="also write the submission here")
    p.add_argument("--tasks", metavar="IDS", help="comma-separated task ids, or N for the first N tasks")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_arguments(p)


def _predict_config(args: argparse.Namespace) -> PredictConfig:
    from arcsub.core.config import load_config
    from arcsub.lm.predict import PredictConfig

    cfg = load_config(PredictConfig, args.config, list(args.overrides))
    if args.engine:
        cfg = dataclasses.replace(cfg, engine=args.engine)
    return cfg.validate()


def _run_predict(args: argparse.Namespace) -> int:
    """`arcsub predict`: run, print where the files went (and the score with --solutions); exit code 0."""
    from arcsub.core.data import load_tasks, pick_task_ids
    from arcsub.lm.predict import run_predict

    cfg = _predict_config(args)
    summary = run_predict(
        args.model,
        args.challenges,
        args.out_dir,
        cfg,
        args.adapters,
        args.solutions,
        args.submission,
        pick_task_ids(args.tasks, list(load_tasks(args.challenges))) if args.tasks else None,
        progress=not args.quiet,
    )
    s = summary["stats"]
    print(
        f"predicted {s['tasks']} task(s), {s['candidates']} candidate(s) ({s['valid']} valid) "
        f"with {s['engine']} in {s['seconds']:.1f}s"
    )
    for key, path in summary["files"].items():
        print(f"{key}: {path}")
    if "score" in summary:
        m = summary["metrics"]
        print(
            f"score {summary['score']:.4f}; vote_2 {m['vote_2']:.1%}, pass_n {m['pass_n']:.1%}, "
            f"accuracy {m['accuracy']:.1%}"
        )
    return 0


register(
    Command(
        "predict",
        "sample candidates over augmented views, vote, write predictions and submission",
        _add_predict,
        _run_predict,
        "Predict every test output of a challenges file: K augmented views per test input (D8, colours,\n"
        "pair order), greedy / sampling / DFS with the torch or vLLM engine (per-task LoRA adapters with\n"
        "--adapters), reverted and voted into attempt_1/attempt_2. Files are named from model, data and settings.",
    )
)


def _add_generate(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model directory")
    p.add_argument("challenges", help="challenges JSON")
    p.add_argument("--tasks", default="1", help="N (the first N tasks) or comma-separated ids")
    p.add_argument("-n", type=int, default=8, help="inputs to sample per task")
    p.add_argument("--views", type=int, default=8, help="augmented views voted for each new input's output")
    p.add_argument("--re-arc", default=None, help="RE-ARC tasks folder: ground truth for matching inputs")
    p.add_argument(
        "-o", "--out", required=True, help="output JSON (examples and counts), updated after each task"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_generate(args: argparse.Namespace) -> int:
    """`arcsub generate`: every argument checked (model, data, counts, folders, output) before the model loads."""
    from arcsub.core.data import ArcDataError, check_output_path, load_tasks, pick_task_ids
    from arcsub.core.modeldir import check_model_dir
    from arcsub.lm.generate import generate

    if args.n < 1 or args.views < 1:
        raise ArcDataError(f"generate: -n {args.n} and --views {args.views} must be at least 1")
    check_output_path(args.out)
    check_model_dir(args.model)
    tasks = load_tasks(args.challenges)
    ids = pick_task_ids(args.tasks, list(tasks)) or list(tasks)
    re_arc = args.re_arc
    if re_arc and not Path(re_arc).is_dir():
        raise ArcDataError(f"{re_arc}: RE-ARC folder not found")
    if re_arc and (Path(re_arc) / "tasks").is_dir():
        re_arc = str(Path(re_arc) / "tasks")
    report = generate(
        {t: tasks[t] for t in ids},
        args.model,
        args.n,
        args.views,
        re_arc=re_arc,
        save_to=args.out,
        progress=not args.quiet,
    )
    t = report["totals"]
    print(
        f"sampled {t['sampled']} inputs: {t['valid']} valid grids, {t['new']} new; "
        f"{t['checkable']} checkable against RE-ARC, {t['correct']} with the right output -> {args.out}"
    )
    return 0


register(
    Command(
        "generate",
        "sample new inputs for tasks and predict their outputs (Omni-ARC's input generation)",
        _add_generate,
        _run_generate,
        "Sample -n new inputs per task from the 'input-from-inputs' prompt (all the task's inputs as context),\n"
        "predict each new input's output with voting over --views, and count valid grids, new inputs and,\n"
        "with --re-arc, inputs RE-ARC also generated (whose predicted output is checked against RE-ARC's).\n"
        "Example: arcsub generate models/arcsub-small arc-agi_training_challenges.json --tasks 5 -n 16\n"
        "         --re-arc ../shared/data/re-arc -o runs/generated.json",
    )
)
