"""`arcsub score | metrics | validate | show | plot`: the commands that read Kaggle files and run files
(no model, no torch).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from arcsub.cli.app import EXIT_OK, Command, UsageError, register, warn
from arcsub.core.data import ArcDataError, Task, load_solutions, load_tasks, load_truth, read_json


def _dump(obj: Any) -> None:
    print(json.dumps(obj, indent=None, sort_keys=False))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _warned_json(res: dict[str, Any], args: argparse.Namespace) -> bool:
    """Warnings go to stderr in either form; with --json print the result (per-task entries only with
    --per-task) and say so, else the caller prints its text form."""
    for w in res["warnings"]:
        warn(w)
    if not args.json:
        return False
    if not args.per_task:
        res.pop("per_task")
    res.pop("warnings")
    _dump(res)
    return True


# ---------------------------------------------------------------- score


def _add_score(p: argparse.ArgumentParser) -> None:
    p.add_argument("submission", help="Kaggle submission JSON: {task_id: [{attempt_1, attempt_2}, ...]}")
    p.add_argument(
        "solutions",
        help="Kaggle solutions JSON ({task_id: [grid, ...]}), or tasks with their test outputs inline "
        "(a task file, a challenges-form file or a folder of task files)",
    )
    p.add_argument(
        "--json", action="store_true", help="print one JSON object (score, tasks, test_outputs, ...)"
    )
    p.add_argument(
        "--per-task", action="store_true", help="also list each task's score (text) / include it (--json)"
    )


def _run_score(args: argparse.Namespace) -> int:
    from arcsub.core.metrics import score_submission

    solutions = load_truth(args.solutions)
    res = score_submission(read_json(args.submission), solutions, args.submission)
    if not _warned_json(res, args):
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
    p.add_argument(
        "solutions",
        help="Kaggle solutions JSON ({task_id: [grid, ...]}), or tasks with their test outputs inline "
        "(a task file, a challenges-form file or a folder of task files)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--markdown", action="store_true", help="print the table as markdown")
    p.add_argument("--per-task", action="store_true", help="include per-task metrics in the --json output")


def _run_metrics(args: argparse.Namespace) -> int:
    from arcsub.core.metrics import compute_metrics, format_metrics_table, load_predictions

    preds = load_predictions(args.predictions)
    res = compute_metrics(preds, load_truth(args.solutions), args.predictions)
    if not _warned_json(res, args):
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
        "file",
        help="a challenges, solutions, submission or predictions JSON file (kind detected), or a folder of task "
        "files",
    )
    p.add_argument(
        "--challenges", metavar="C", help="challenges file that FILE must match (same ids and counts)"
    )


def _run_validate(args: argparse.Namespace) -> int:
    from arcsub.core.metrics import normalize_predictions
    from arcsub.core.submission import validate_submission

    path = args.file
    obj = None if Path(path).is_dir() else read_json(path)
    try:
        kind = "task folder" if obj is None else detect_kind(obj)
    except ArcDataError as e:
        raise ArcDataError(f"{path}: {e}") from None
    ref: dict[str, Task] | None = load_tasks(args.challenges) if args.challenges else None
    against = f", matches {args.challenges}" if ref is not None else ""
    if kind in ("task", "challenges", "task folder"):
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
