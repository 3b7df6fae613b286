"""`arcsub train | ttft | predict | generate`: the in-context LM family's commands. Their run functions are
"module:function" strings or import inside, so building the parser does not import torch.
"""

from __future__ import annotations

import argparse

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
    from arcsub.lm.predict import add_arguments

    add_arguments(p)


register(
    Command(
        "predict",
        "sample candidates over augmented views, vote, write predictions and submission",
        _add_predict,
        "arcsub.lm.predict:run_cli",
        "Predict every test output of a challenges file: K augmented views per test input (D8, colours,\n"
        "pair order), greedy / sampling / DFS with the torch or vLLM engine (per-task LoRA adapters with\n"
        "--adapters), reverted and voted into attempt_1/attempt_2. Files are named from model, data and settings.",
    )
)


def _add_generate(p: argparse.ArgumentParser) -> None:
    from arcsub.lm.generate import add_arguments

    add_arguments(p)


register(
    Command(
        "generate",
        "sample new inputs for tasks and predict their outputs (Omni-ARC's input generation)",
        _add_generate,
        "arcsub.lm.generate:run_cli",
        "Sample -n new inputs per task from the 'input-from-inputs' prompt (all the task's inputs as context),\n"
        "predict each new input's output with voting over --views, and count valid grids, new inputs and,\n"
        "with --re-arc, inputs RE-ARC also generated (whose predicted output is checked against RE-ARC's).\n"
        "Example: arcsub generate models/arcsub-small arc-agi_training_challenges.json --tasks 5 -n 16\n"
        "         --re-arc ../shared/data/re-arc -o runs/generated.json",
    )
)
