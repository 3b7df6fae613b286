"""A competition run, the same for both model families: the output folder with its baseline submission written
before any model work, workers that save attempts as tasks finish, the merge into one valid submission.json,
and the end (predictions.json, the score when solutions are given, report.html, summary.json). Also the run
files and labels that name outputs (Attempts, Predictions, score_run, model_label, data_label).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arcsub.core.combine import SOLVER_FILE, answers_of, combine
from arcsub.core.data import ArcDataError, Pair, Task, load_tasks, read_json, write_json_atomic
from arcsub.core.device import peak_gpu_memory_gb
from arcsub.core.submission import build_submission, write_submission

log = logging.getLogger("arcsub.runs")


@dataclass
class WorkerResults:
    """One worker's attempts.<rank>.json and predictions.<rank>.json: read back when a run resumes, rewritten
    (atomically, attempts last: they mark tasks done) whenever tasks finish; merge_attempts joins the workers.

    `merge_into` (the run's tasks) makes every `add` also rewrite out/submission.json: a run's only, in-process
    worker has no parent merging for it (run_workers does that for worker processes), and an interruption
    (the notebook's hard deadline) must keep every finished chunk."""

    attempts_file: Path
    preds_file: Path
    attempts: dict[str, Any]
    predictions: dict[str, Any]
    merge_into: Mapping[str, Task] | None = None

    @classmethod
    def load(cls, out: Path, rank: int, merge_into: Mapping[str, Task] | None = None) -> WorkerResults:
        a, p = out / f"attempts.{rank}.json", out / f"predictions.{rank}.json"
        return cls(a, p, read_json(a) if a.exists() else {}, read_json(p) if p.exists() else {}, merge_into)

    def add(self, predictions: dict[str, Any], attempts: dict[str, Any]) -> None:
        self.predictions.update(predictions)
        self.attempts.update(attempts)
        write_json_atomic(self.preds_file, self.predictions)
        write_json_atomic(self.attempts_file, self.attempts)
        if self.merge_into is not None:
            merge_attempts(self.attempts_file.parent, self.merge_into)


def hide_test_outputs(task: Task) -> Task:
    """The task as a competitor sees it: test outputs removed (they must never reach TTFT or the model)."""
    return Task(task.id, task.train, [dataclasses.replace(p, output=None) for p in task.test], task.meta)


def merge_attempts(out: Path, tasks: dict[str, Task]) -> dict:
    """Merge every worker's attempts into one valid submission and write it atomically; the solver's answers
    (out/solver_answers.json, once the background solver wrote it) go first where a program explains a task.
    Returns the models' attempts alone."""
    attempts: dict[str, Any] = {}
    for f in sorted(out.glob("attempts.*.json")):
        attempts.update(read_json(f))
    solver = out / SOLVER_FILE
    merged = combine(answers_of(read_json(solver)), attempts) if solver.exists() else attempts
    sub = build_submission(tasks, merged)
    write_submission(out / "submission.json", sub)
    return attempts


def start_run(
    challenges: str | Path, out_dir: str | Path, task_ids: list[str] | None
) -> tuple[Path, dict[str, Task]]:
    """The output folder and the run's tasks (all of the file, or the given ids in that order), with the
    baseline submission (or what an earlier, interrupted run finished) written before any model work."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = run_tasks(challenges, task_ids)
    merge_attempts(out, tasks)
    return out, tasks


def run_tasks(challenges: str | Path, task_ids: Sequence[str] | None) -> dict[str, Task]:
    """The tasks a run works on: all of the file, or the given ids in that order (an unknown id: one line)."""
    tasks = load_tasks(challenges)
    missing = [t for t in task_ids or [] if t not in tasks]
    if missing:
        raise ArcDataError(f"{challenges}: task {missing[0]}: not found")
    return tasks if task_ids is None else {t: tasks[t] for t in task_ids}


def finish_run(
    out: Path,
    tasks: dict[str, Task],
    solutions: str | Path | None,
    summary: dict[str, Any],
    t_start: float,
) -> dict[str, Any]:
    """The end of a competition run (either pipeline): merge the workers' predictions.*.json into
    predictions.json, score submission.json against its truth (run_truth: the solutions given, or the test
    outputs written inline in the tasks), render report.html, write summary.json."""
    predictions: dict[str, Any] = {}
    for f in sorted(out.glob("predictions.*.json")):
        predictions.update(read_json(f))
    write_json_atomic(out / "predictions.json", predictions)
    summary.update(seconds=round(time.time() - t_start, 1), score=None, peak_gpu_gb=peak_gpu_memory_gb())
    from arcsub.core.viz import render_html

    report_tasks = tasks
    truth = run_truth(tasks, solutions)
    if truth is not None:
        report_tasks = with_truth(tasks, truth)  # the report shows the truth beside the candidates
        sub = out / "submission.json"
        summary.update(score_against(truth, predictions, read_json(sub), sub))
    # a run that predicted nothing (its time spent before the first chunk) still gets a report of its tasks
    summary["report"] = str(
        render_html(report_tasks, predictions or None, out / "report.html", title=f"arcsub run {out.name}")
    )
    write_json_atomic(out / "summary.json", summary, indent=2)
    return summary


def with_truth(tasks: Mapping[str, Task], truth: Mapping[str, list[Any]]) -> dict[str, Task]:
    """The tasks with their true test outputs filled in (for the report)."""
    return {
        t: Task(
            t, task.train, [Pair(p.input, g) for p, g in zip(task.test, truth[t], strict=True)], task.meta
        )
        for t, task in tasks.items()
    }


def run_workers(target, shards: list[list[str]], args: tuple, out: Path, tasks: dict[str, Task]) -> None:
    """One process per GPU, `target(rank, shard, *args)`, each saving attempts.<rank>.json as it goes; the
    parent merges them into submission.json while they run."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=(r, s, *args)) for r, s in enumerate(shards)]
    for p in procs:
        p.start()
    from multiprocessing.connection import wait

    while any(p.is_alive() for p in procs):
        wait([p.sentinel for p in procs if p.is_alive()], timeout=10)  # wakes when a worker ends, not 10 s on
        merge_attempts(out, tasks)
    for p in procs:
        p.join()
        if p.exitcode:
            log.warning(
                "a worker exited with code %s; its unfinished tasks keep baseline attempts", p.exitcode
            )


def pick_dry_run_tasks(challenges: str | Path, n: int) -> list[str]:
    """The n tasks with the fewest grid cells: a dry-run on 2 CPUs must finish in minutes."""
    if n < 1:
        raise ArcDataError(f"--tasks {n}: must be at least 1")
    tasks = load_tasks(challenges)

    def cells(t: Task) -> int:
        return sum(p.input.size + (p.output.size if p.output is not None else 0) for p in t.train + t.test)

    return sorted(tasks, key=lambda k: (cells(tasks[k]), k))[:n]


def format_summary(summary: dict[str, Any]) -> str:
    from arcsub.core.metrics import format_metrics_table

    lines = [
        f"submission: {summary['submission']} ({summary['predicted']}/{summary['tasks']} tasks predicted, "
        f"{summary['workers']} worker(s))",
        "time per stage: "
        + ", ".join(f"{k} {v:.1f}s" for k, v in summary["stage_seconds"].items())
        + f", total {summary['seconds']:.1f}s",
        f"report: {summary['report']}",
    ]
    if summary.get("metrics"):
        lines += [format_metrics_table(summary["metrics"]), f"Kaggle score: {summary['score']:.4f}"]
    return "\n".join(lines)


def json_summary(summary: dict[str, Any]) -> str:
    return json.dumps(summary, indent=2)


Predictions = dict[str, list[list[dict[str, Any]]]]


Attempts = dict[str, list[list[list[list[int]] | None]]]


ModelSpec = str | Path | tuple[Any, Any, str]


def model_label(model: ModelSpec) -> str:
    """A short name for output files: the model directory (its run directory for <run>/model)."""
    if isinstance(model, tuple):
        return "memory"
    p = Path(model)
    return p.parent.name if p.name in ("model", "adapter") and p.parent.name else p.name


def data_label(challenges: str | Path) -> str:
    """'arc-agi-1-evaluation' for .../arc-agi-1/arc-agi_evaluation_challenges.json."""
    p = Path(challenges)
    stem = p.stem.replace("arc-agi_", "").replace("_challenges", "")
    return f"{p.parent.name}-{stem}" if p.parent.name else stem


def run_truth(tasks: Mapping[str, Task], solutions: str | Path | None) -> dict[str, list[Any]] | None:
    """The true outputs of `tasks` (others in the file are ignored): every task present, one grid per test
    input. From `solutions` (a solutions file, or tasks with inline outputs: load_truth); without it from the
    tasks themselves when they carry every test output inline; else None (the run is not scored)."""
    from arcsub.core.data import inline_solutions, load_truth

    if solutions is None:
        return inline_solutions(tasks)
    truth = load_truth(solutions)
    missing = [t for t in tasks if t not in truth]
    if missing:
        raise ArcDataError(f"{solutions}: task {missing[0]}: no solution ({len(missing)} task(s) missing)")
    for tid, task in tasks.items():
        if len(truth[tid]) != len(task.test):
            n = len(truth[tid])
            raise ArcDataError(f"{solutions}: task {tid}: {n} solution(s) for {len(task.test)} test input(s)")
    return {t: truth[t] for t in tasks}


def check_run_inputs(
    tasks: Mapping[str, Task], solutions: str | Path | None, outputs: Iterable[str | Path | None]
) -> None:
    """What a prediction run reads at its end and the files it writes, checked before any decoding: a
    solutions mismatch or an output path that is a folder must not cost the whole run."""
    from arcsub.core.data import check_output_path

    run_truth(tasks, solutions)
    for out in outputs:
        if out is not None:
            check_output_path(out)


def score_run(
    tasks: Mapping[str, Task],
    predictions: Predictions,
    submission: Mapping[str, Any],
    solutions: str | Path | None,
) -> dict[str, Any]:
    """Kaggle score and candidate metrics of a run against its truth (run_truth: every task must be there),
    and each task's score (score_against); {} for a run with no truth to score against."""
    truth = run_truth(tasks, solutions)
    return {} if truth is None else score_against(truth, predictions, submission)


def write_prediction_files(
    paths: Mapping[str, Path],
    tasks: Mapping[str, Task],
    predictions: Predictions,
    attempts: Attempts,
    submission_path: str | Path | None,
    summary: dict[str, Any],
    solutions: str | Path | None,
) -> dict[str, Any]:
    """The end of a prediction run (either model family): predictions, submission (and its copy at
    submission_path) and the run summary, each written atomically, the summary last so that it names only
    files that exist; returns the summary with the file paths and, with a truth, the scores (score_run)."""
    submission = build_submission(tasks, attempts)
    write_json_atomic(paths["predictions"], predictions)
    write_submission(paths["submission"], submission)
    if submission_path is not None:
        write_submission(submission_path, submission)
    summary = {**summary, "files": {k: str(v) for k, v in paths.items()}}
    summary.update(score_run(tasks, predictions, submission, solutions))
    write_json_atomic(paths["run"], summary, indent=2)
    return summary


def score_against(
    truth: Mapping[str, list[Any]],
    predictions: Predictions,
    submission: Mapping[str, Any],
    submission_path: str | Path | None = None,
) -> dict[str, Any]:
    """score, metrics (METRIC_KEYS, and n: the most candidates of one output, pass_n's n) and task_scores of
    a run against the truth: the one scoring of task-predict's run files and the pipelines' summaries, so they
    read alike. task_scores says which tasks a run solved, so runs compare task by task (bench/task_overlap.py).
    `submission_path` names the submission in error messages."""
    from arcsub.core.metrics import METRIC_KEYS, compute_metrics, score_submission

    metrics = compute_metrics(predictions, truth)
    scored = score_submission(submission, truth, submission_path)
    return {
        "score": scored["score"],
        "metrics": {k: metrics[k] for k in (*METRIC_KEYS, "n")},
        "task_scores": scored["per_task"],
    }
