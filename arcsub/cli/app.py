"""The `arcsub` command line: a small registry of subcommands.

Each command is a `Command`: a name, a one-line help, a function that adds its arguments to its parser, and
a function that runs it (``run(args) -> exit code``). `run` may be a "module:function" string, imported only
when that command runs, so heavy modules (torch, vllm) never load for `arcsub score`. To add a command:

    def _add_train(p):                      # arguments only
        p.add_argument("config")

    register(Command("train", "fine-tune a model", _add_train, "arcsub.lm.train:cli_train"))

or, from any module imported by `_COMMAND_MODULES` below, call ``register(...)`` there.

Bad input never prints a traceback: ArcDataError, OSError and argument errors become one line on stderr,
``arcsub: error: <file>: task X: <problem>``, and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from arcsub.core.data import (
    ArcDataError,
    Task,
    load_solutions,
    load_tasks,
    pick_task_ids,
    read_json,
    repo_root,
)

PROG = "arcsub"
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad command-line arguments (exit 2, one line)."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of printing usage and exiting, so errors stay one line."""

    def error(self, message: str) -> NoReturn:
        sub = self.prog.removeprefix(PROG).strip()
        raise UsageError(f"{sub}: {message}" if sub else message)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int] | str
    description: str | None = None  # longer --help text; defaults to `help`

    def resolve(self) -> Callable[[argparse.Namespace], int]:
        if callable(self.run):
            return self.run
        module, _, func = self.run.partition(":")
        return getattr(importlib.import_module(module), func)


COMMANDS: dict[str, Command] = {}

# Modules imported when the parser is built, so commands they `register` appear (keep them light to import).
_COMMAND_MODULES: tuple[str, ...] = ("arcsub.cli.task",)


def register(cmd: Command) -> Command:
    """Add a command to the registry (a later registration under the same name replaces it)."""
    COMMANDS[cmd.name] = cmd
    return cmd


def warn(message: str) -> None:
    print(f"{PROG}: warning: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    for mod in _COMMAND_MODULES:
        importlib.import_module(mod)
    parser = _Parser(
        prog=PROG,
        description="ARC Prize: train, test-time fine-tune and sample models; validate and score Kaggle files, "
        "compute metrics, draw tasks; run the competition path locally (dry-run).",
        epilog="Run 'arcsub COMMAND --help' for the arguments of a command. Bad input exits 2 with one line.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for cmd in COMMANDS.values():
        p = sub.add_parser(
            cmd.name,
            help=cmd.help,
            description=cmd.description or cmd.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        cmd.add_arguments(p)
        p.set_defaults(_command=cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `arcsub` command line; returns the exit code (0 ok, 1 failed check, 2 bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help / --version
            return int(e.code or 0) if not isinstance(e.code, str) else EXIT_USAGE
        return int(args._command.resolve()(args) or 0)
    except UsageError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
    except ArcDataError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
    except OSError as e:
        where = e.filename if e.filename is not None else type(e).__name__
        print(f"{PROG}: error: {where}: {e.strerror or e}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not bad input: still one line unless asked for the traceback
        if os.environ.get("ARCSUB_DEBUG"):
            raise
        msg = " ".join(str(e).split())
        print(
            f"{PROG}: internal error: {type(e).__name__}: {msg} (ARCSUB_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return EXIT_FAIL
    return EXIT_USAGE


def _dump(obj: Any) -> None:
    print(json.dumps(obj, indent=None, sort_keys=False))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


# ---------------------------------------------------------------- score


def _add_score(p: argparse.ArgumentParser) -> None:
    p.add_argument("submission", help="Kaggle submission JSON: {task_id: [{attempt_1, attempt_2}, ...]}")
    p.add_argument("solutions", help="Kaggle solutions JSON: {task_id: [grid, ...]}")
    p.add_argument(
        "--json", action="store_true", help="print one JSON object (score, tasks, test_outputs, ...)"
    )
    p.add_argument(
        "--per-task", action="store_true", help="also list each task's score (text) / include it (--json)"
    )


def _run_score(args: argparse.Namespace) -> int:
    from arcsub.core.metrics import score_submission

    solutions = load_solutions(args.solutions)
    res = score_submission(read_json(args.submission), solutions, args.submission)
    for w in res["warnings"]:
        warn(w)
    if args.json:
        if not args.per_task:
            res.pop("per_task")
        res.pop("warnings")
        _dump(res)
    else:
        print(
            f"score {res['score']:.4f} ({res['score']:.1%}) over {_plural(res['tasks'], 'task')}; "
            f"{res['solved_outputs']}/{res['test_outputs']} test outputs solved"
        )
        if args.per_task:
            for tid, s in res["per_task"].items():
                print(f"{tid}\t{s:.3f}")
    return EXIT_OK


register(
    Command(
        "score",
        "Kaggle score of a submission against solutions",
        _add_score,
        _run_score,
        "Kaggle score of SUBMISSION: per task the fraction of test outputs whose attempt_1 or attempt_2 is\n"
        "exactly right, averaged over the tasks of SOLUTIONS. A task missing from the submission scores 0\n"
        "and is named in a warning on stderr; an invalid attempt is simply wrong.",
    )
)


# ---------------------------------------------------------------- metrics


def _add_metrics(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "predictions",
        help="predictions JSON: {task_id: [[candidate, ...] per test input]}, candidate a grid, "
        "null or {grid, logprob, tokens, view}",
    )
    p.add_argument("solutions", help="Kaggle solutions JSON: {task_id: [grid, ...]}")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown")
    p.add_argument("--per-task", action="store_true", help="include per-task metrics in the --json output")


def _run_metrics(args: argparse.Namespace) -> int:
    from arcsub.core.metrics import compute_metrics, format_metrics_table, load_predictions

    preds = load_predictions(args.predictions)
    res = compute_metrics(preds, load_solutions(args.solutions), args.predictions)
    for w in res["warnings"]:
        warn(w)
    if args.json:
        if not args.per_task:
            res.pop("per_task")
        res.pop("warnings")
        _dump(res)
    else:
        print(format_metrics_table(res, markdown=args.markdown))
        print(
            f"{_plural(res['tasks'], 'task')}, {_plural(res['test_outputs'], 'test output')}, "
            f"up to {_plural(res['n'], 'candidate')} per output; vote_1 {res['vote_1']:.1%}"
        )
    return EXIT_OK


register(
    Command(
        "metrics",
        "accuracy / pixel / size / pass_n / voting metrics of sampled predictions",
        _add_metrics,
        _run_metrics,
        "Metrics of a predictions file (ironbar arc24's definitions) against solutions. Per test output\n"
        "over its N candidates: accuracy (fraction exactly right), correct_pixels, correct_size, pass_n (any\n"
        "right), vote_1/vote_2 (one of the 1/2 most frequent valid candidates right), unanswered (fraction\n"
        "unparsable); averaged over a task's outputs, then over tasks. Tasks missing from the predictions\n"
        "count as all-zero and are named in a warning on stderr.",
    )
)


# ---------------------------------------------------------------- validate


def detect_kind(obj: Any) -> str:
    """'task', 'challenges', 'solutions', 'submission' or 'predictions', from the JSON's shape.

    Looks for the first decisive evidence over all tasks: a task object (challenges), an object with
    attempt_ keys (submission), a number at depth 3 (solutions: [grid] -> row -> cell), a null, object or
    list at depth 3 (predictions: [[candidate]] -> candidate -> row).
    """
    if isinstance(obj, dict) and "train" in obj and "test" in obj:
        return "task"
    if not isinstance(obj, dict) or not obj:
        raise ArcDataError(
            "not a non-empty mapping of task ids (challenges, solutions, submission or predictions)"
        )
    for value in obj.values():
        if isinstance(value, dict):
            return "challenges"
        if not isinstance(value, list):
            continue
        for item in value:
            if isinstance(item, dict):
                if any(str(k).startswith("attempt_") for k in item):
                    return "submission"
                continue
            if not isinstance(item, list):
                continue
            for x in item:
                if x is None or isinstance(x, dict):
                    return "predictions"
                if isinstance(x, list) and x:
                    return "predictions" if isinstance(x[0], list | dict) or x[0] is None else "solutions"
    raise ArcDataError("cannot tell whether this is a challenges, solutions, submission or predictions file")


def _add_validate(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "file", help="a challenges, solutions, submission or predictions JSON file (kind detected)"
    )
    p.add_argument(
        "--challenges", metavar="C", help="challenges file that FILE must match (same ids and counts)"
    )


def _run_validate(args: argparse.Namespace) -> int:
    from arcsub.core.metrics import normalize_predictions
    from arcsub.core.submission import validate_submission

    path = args.file
    obj = read_json(path)
    try:
        kind = detect_kind(obj)
    except ArcDataError as e:
        raise ArcDataError(f"{path}: {e}") from None
    ref: dict[str, Task] | None = load_tasks(args.challenges) if args.challenges else None
    against = f", matches {args.challenges}" if ref is not None else ""
    if kind in ("task", "challenges"):
        tasks = load_tasks(path)
        if ref is not None:
            missing = [t for t in ref if t not in tasks]
            extra = [t for t in tasks if t not in ref]
            if missing or extra:
                tid, what = (missing[0], "missing") if missing else (extra[0], "not in the challenges")
                raise ArcDataError(f"{path}: task {tid}: {what} ({len(missing)} missing, {len(extra)} extra)")
            for t in ref:
                if len(tasks[t].test) != len(ref[t].test):
                    raise ArcDataError(
                        f"{path}: task {t}: {len(tasks[t].test)} test inputs, {len(ref[t].test)} expected"
                    )
        n_out = sum(len(t.test) for t in tasks.values())
        print(f"OK: {path}: {kind}, {_plural(len(tasks), 'task')}, {_plural(n_out, 'test input')}{against}")
    elif kind == "solutions":
        sols = load_solutions(path, ref)
        n_out = sum(len(v) for v in sols.values())
        print(
            f"OK: {path}: solutions, {_plural(len(sols), 'task')}, {_plural(n_out, 'test output')}{against}"
        )
    elif kind == "submission":
        sub = validate_submission(obj, ref, path)
        n_out = sum(len(v) for v in sub.values())
        print(
            f"OK: {path}: submission, {_plural(len(sub), 'task')}, {_plural(n_out, 'test output')}{against}"
        )
    elif kind == "predictions":
        preds = normalize_predictions(obj, path)
        if ref is not None:
            for tid, per_test in preds.items():
                if tid not in ref:
                    raise ArcDataError(f"{path}: task {tid}: not in the challenges")
                if len(per_test) != len(ref[tid].test):
                    raise ArcDataError(
                        f"{path}: task {tid}: {len(per_test)} candidate lists for {len(ref[tid].test)} test inputs"
                    )
        n_c = sum(len(c) for v in preds.values() for c in v)
        n_bad = sum(c is None for v in preds.values() for cs in v for c in cs)
        print(
            f"OK: {path}: predictions, {_plural(len(preds), 'task')}, {_plural(n_c, 'candidate')} "
            f"({n_bad} invalid){against}"
        )
    else:
        raise ArcDataError(f"{path}: cannot tell what kind of file this is")
    return EXIT_OK


register(
    Command(
        "validate",
        "check a challenges / solutions / submission / predictions file",
        _add_validate,
        _run_validate,
        "Detect whether FILE is a challenges (or single task), solutions, submission or predictions file and\n"
        "validate it: grids 1x1 to 30x30 of colours 0-9, every train pair with an output, every test input;\n"
        "a submission as Kaggle checks it (every task, one entry per test input, attempt_1 and attempt_2).\n"
        "With --challenges C the task ids and test counts must match C. Prints one OK line, or exits 2\n"
        "with the reason.",
    )
)


# ---------------------------------------------------------------- show


def _add_show(p: argparse.ArgumentParser) -> None:
    p.add_argument("tasks", help="challenges JSON (or single-task file / folder of task files)")
    p.add_argument("--task", metavar="ID", help="task id to draw, or 'all' for an HTML report of every task")
    p.add_argument("--solutions", metavar="S", help="solutions JSON, to show the true test outputs")
    p.add_argument("--predictions", metavar="P", help="predictions JSON, candidates drawn next to the truth")
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="OUT.png (one task) or OUT.html (report)"
    )
    p.add_argument(
        "--max-candidates", type=int, default=4, metavar="K", help="distinct candidates shown per test input"
    )


def _run_show(args: argparse.Namespace) -> int:
    from arcsub.core.metrics import load_predictions
    from arcsub.core.viz import render_html, render_task_png

    out = Path(args.output)
    as_html = out.suffix.lower() in (".html", ".htm")
    if args.task is None and not as_html:
        raise UsageError("show: --task ID is required for a PNG (or give -o OUT.html for a report)")
    if args.task == "all" and not as_html:
        raise UsageError("show: --task all writes an HTML report; give -o OUT.html")
    if not as_html and out.suffix.lower() != ".png":
        raise UsageError(f"show: {out}: output must end in .png or .html")
    if args.max_candidates < 0:
        raise UsageError("show: --max-candidates must be >= 0")
    tasks = load_tasks(args.tasks, args.solutions)
    preds = load_predictions(args.predictions) if args.predictions else None
    if args.task not in (None, "all") and args.task not in tasks:
        raise ArcDataError(f"{args.tasks}: task {args.task}: not found")
    if preds is not None:
        for tid, per_test in preds.items():
            if tid in tasks and len(per_test) != len(tasks[tid].test):
                n = len(tasks[tid].test)
                raise ArcDataError(
                    f"{args.predictions}: task {tid}: {len(per_test)} candidate lists for {n} test inputs"
                )
        unknown = [t for t in preds if t not in tasks]
        if unknown:
            warn(
                f"{args.predictions}: {len(unknown)} task(s) not in {args.tasks} not shown, e.g. {unknown[0]}"
            )
    if as_html:
        render_html(tasks, preds, out, max_candidates=args.max_candidates)
    else:
        task = tasks[args.task]
        if preds is not None and task.id not in preds:
            warn(f"{args.predictions}: task {task.id}: no predictions, drawing the task alone")
        render_task_png(task, out, preds, max_candidates=args.max_candidates)
    print(f"wrote {out}")
    return EXIT_OK


register(
    Command(
        "show",
        "draw a task (PNG) or a predictions report (HTML)",
        _add_show,
        _run_show,
        "Draw one task to OUT.png: each train pair, each test input with its true output (with --solutions)\n"
        "and the most voted candidates of --predictions, wrong cells crossed out. With --task all, or -o\n"
        "ending in .html, write an HTML report of the whole predictions file (every task when no predictions\n"
        "are given): summary metrics, then per task the test input, truth and top candidates with counts.",
    )
)


def _add_plot(p: argparse.ArgumentParser) -> None:
    p.add_argument("logs", nargs="+", help="JSONL training logs (runs/<run>/log.jsonl)")
    p.add_argument("-o", "--output", required=True, metavar="OUT.png")
    p.add_argument("--x", default="step", help="x key (default %(default)s; e.g. elapsed_s)")
    p.add_argument("--y", default="loss", help="y key (default %(default)s; e.g. tokens_per_s, lr)")
    p.add_argument(
        "--label", action="append", help="a curve's name, once per log (default: each log's run folder)"
    )
    p.add_argument("--log-y", action="store_true", help="logarithmic y axis")


def _run_plot(args: argparse.Namespace) -> int:
    from arcsub.core.viz import render_curves_png

    out = Path(args.output)
    if out.suffix.lower() != ".png":
        raise UsageError(f"plot: {out}: output must end in .png")
    for log_file in args.logs:
        if not Path(log_file).is_file():
            raise ArcDataError(f"{log_file}: file not found")
    render_curves_png(args.logs, out, args.x, args.y, args.label, args.log_y)
    print(f"wrote {out}")
    return EXIT_OK


register(
    Command(
        "plot",
        "draw training curves (loss, tokens/s, ...) of JSONL logs as a PNG",
        _add_plot,
        _run_plot,
        "Example: arcsub plot runs/a/log.jsonl runs/b/log.jsonl --label a --label b --log-y -o loss.png",
    )
)


# ---------------------------------------------------------------- train / ttft / predict / dry-run


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """--config FILE plus key=value overrides, which may also follow the options."""
    p.add_argument("--config", metavar="FILE", help="YAML/JSON config (defaults otherwise)")
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config overrides, e.g. steps=200 lora.r=16"
    )
    parse = p.parse_known_args

    def parse_known_args(args=None, namespace=None):
        ns, extra = parse(args, namespace)
        trailing = [a for a in extra if "=" in a and not a.startswith("-")]
        if trailing:
            ns.overrides = [*(getattr(ns, "overrides", None) or []), *trailing]
        return ns, [a for a in extra if a not in trailing]

    p.parse_known_args = parse_known_args  # type: ignore[method-assign]


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
    from arcsub.lm.models import check_model_dir
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


def _add_dry_run(p: argparse.ArgumentParser) -> None:
    from arcsub.core.data import dataset_files

    c, s = dataset_files("arc-agi-1", "evaluation")
    p.add_argument("--challenges", default=str(c), help="challenges JSON (default: ARC-AGI-1 evaluation)")
    p.add_argument("--solutions", default=None, help="solutions JSON (default: the challenges' sibling)")
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
        default="in-context",
        help="in-context: the embedded model + per-task TTFT (default); task: train a task-embedding model on "
        "the tasks' demonstrations, then predict (docs/task-model.md)",
    )
    add_config_arguments(p)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _run_dry_run(args: argparse.Namespace) -> int:
    import importlib

    from arcsub.core.data import load_tasks, pick_task_ids
    from arcsub.lm.pipeline import default_model_dir, format_summary, json_summary, pick_dry_run_tasks

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
    challenges = Path(args.challenges)
    solutions = args.solutions
    if solutions is None:
        sib = challenges.with_name(challenges.name.replace("_challenges", "_solutions"))
        solutions = str(sib) if sib.exists() and sib != challenges else None
    if args.first or not args.tasks.isdigit():
        ids = pick_task_ids(args.tasks, list(load_tasks(challenges)))
    else:
        ids = pick_dry_run_tasks(challenges, int(args.tasks))
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
        "The competition path on this machine: baseline submission first, then test-time fine-tuning and\n"
        "prediction with voting on N tasks (default: the 4 smallest ARC-AGI-1 evaluation tasks) with the\n"
        "embedded default model, then the score, the metric table and the time per stage.\n"
        "Example: arcsub dry-run --tasks 8 ttft.steps=50 predict.views=16",
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
