"""The competition path: baseline submission first, then TTFT + prediction chunk by chunk under a time budget,
the submission rewritten atomically after every chunk. Kaggle's notebook and the local dry-run both run this.

Several GPUs: one worker process per GPU, tasks sharded round-robin; each worker writes its attempts to its own
file and the parent merges them into submission.json, so a crash, an OOM or the clock leaves the best so far.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arcsub.core.config import load_config
from arcsub.core.data import ArcDataError, Task, load_tasks, read_json, repo_root, write_json_atomic
from arcsub.core.submission import build_submission, write_submission

log = logging.getLogger("arcsub.lm.pipeline")


def default_model_dir() -> Path:
    """The embedded default model shipped in the repo (models/), overridable with $ARCSUB_MODEL."""
    env = os.environ.get("ARCSUB_MODEL")
    return Path(env) if env else repo_root() / "models" / "arcsub-small"


def _predict_config():
    from arcsub.lm.predict import PredictConfig

    return PredictConfig()


def _ttft_config():
    from arcsub.lm.ttft import TTFTConfig

    return TTFTConfig()


@dataclass
class PipelineConfig:
    """One competition run. Sub-configs are the TTFT and predict settings; the budget is split between them."""

    model: str = ""  # model dir; "" = the embedded default
    ttft_enabled: bool = True
    ttft: Any = field(default_factory=_ttft_config)
    predict: Any = field(default_factory=_predict_config)
    time_budget: float = 0.0  # seconds for the whole run; 0 = unlimited
    ttft_share: float = 0.6  # of each chunk's time, the part TTFT may use
    chunk: int = 8  # tasks per chunk (the submission improves after each)
    workers: int = 0  # 0 = one per GPU (1 on CPU)


def load_pipeline_config(path: str | Path | None, overrides: list[str]) -> PipelineConfig:
    """Defaults, then a YAML/JSON file, then key=value overrides (the Kaggle notebook calls this by name)."""
    return load_config(PipelineConfig, path, overrides)


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@dataclass
class WorkerResults:
    """One worker's attempts.<rank>.json and predictions.<rank>.json: read back when a run resumes, rewritten
    (atomically, attempts last: they mark tasks done) whenever tasks finish; merge_attempts joins the workers."""

    attempts_file: Path
    preds_file: Path
    attempts: dict[str, Any]
    predictions: dict[str, Any]

    @classmethod
    def load(cls, out: Path, rank: int) -> WorkerResults:
        a, p = out / f"attempts.{rank}.json", out / f"predictions.{rank}.json"
        return cls(a, p, read_json(a) if a.exists() else {}, read_json(p) if p.exists() else {})

    def add(self, predictions: dict[str, Any], attempts: dict[str, Any]) -> None:
        self.predictions.update(predictions)
        self.attempts.update(attempts)
        write_json_atomic(self.preds_file, self.predictions)
        write_json_atomic(self.attempts_file, self.attempts)


def _run_shard(
    rank: int, ids: list[str], challenges: str, out: str, cfg: PipelineConfig, deadline: float
) -> None:
    """One worker: TTFT + predict chunk by chunk; attempts and predictions saved after every chunk."""
    from arcsub.lm.predict import open_engine, predict
    from arcsub.lm.ttft import _Fitter, run_ttft

    if gpu_count() > 1:
        import torch

        torch.cuda.set_device(rank)
    tasks = load_tasks(challenges)
    model = cfg.model or str(default_model_dir())
    out_p = Path(out)
    adapters = out_p / "adapters"
    results = WorkerResults.load(out_p, rank)
    times_file = out_p / f"times.{rank}.json"
    times = read_json(times_file) if times_file.exists() else {"ttft": 0.0, "predict": 0.0}
    todo = [t for t in ids if t not in results.attempts]
    if not todo:  # a rerun after everything finished: load nothing
        return
    fitter = _Fitter(model, cfg.ttft, _device(rank)) if cfg.ttft_enabled else None
    engine, _, _ = open_engine(model, cfg.predict, use_adapters=cfg.ttft_enabled)
    for start in range(0, len(todo), cfg.chunk):
        chunk = {t: hide_test_outputs(tasks[t]) for t in todo[start : start + cfg.chunk]}
        left = deadline - time.time()
        if left <= 0:
            log.warning(
                "worker %d: time budget spent, %d task(s) keep baseline attempts", rank, len(todo) - start
            )
            break
        share = left * len(chunk) / (len(todo) - start)
        adapters_dir = None
        if fitter is not None and share > 5:
            t0 = time.time()
            ttft_cfg = dataclasses.replace(
                cfg.ttft, time_budget=share * cfg.ttft_share if cfg.time_budget else 0
            )
            run_ttft(model, chunk, adapters, ttft_cfg, progress=False, fitter=fitter)
            adapters_dir = adapters
            times["ttft"] += time.time() - t0
        t0 = time.time()
        preds, att = predict(chunk, model, cfg.predict, adapters_dir, engine, progress=False)
        times["predict"] += time.time() - t0
        results.add(preds, att)
        write_json_atomic(times_file, times)
        log.info("worker %d: %d/%d tasks done", rank, len(results.attempts), len(ids))


def _device(rank: int) -> str:
    return f"cuda:{rank}" if gpu_count() else "cpu"


def hide_test_outputs(task: Task) -> Task:
    """The task as a competitor sees it: test outputs removed (they must never reach TTFT or the model)."""
    return Task(task.id, task.train, [dataclasses.replace(p, output=None) for p in task.test], task.meta)


def merge_attempts(out: Path, tasks: dict[str, Task]) -> dict:
    """Merge every worker's attempts into one valid submission and write it atomically."""
    attempts: dict[str, Any] = {}
    for f in sorted(out.glob("attempts.*.json")):
        attempts.update(read_json(f))
    sub = build_submission(tasks, attempts)
    write_submission(out / "submission.json", sub)
    return attempts


def start_run(
    challenges: str | Path, out_dir: str | Path, task_ids: list[str] | None
) -> tuple[Path, dict[str, Task]]:
    """The output folder and the run's tasks (all of the file, or the given ids in that order), with the
    baseline submission (or what an earlier, interrupted run finished) written before any model work."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tasks = load_tasks(challenges)
    missing = [t for t in task_ids or [] if t not in tasks]
    if missing:
        raise ArcDataError(f"{challenges}: task {missing[0]}: not found")
    tasks = tasks if task_ids is None else {t: tasks[t] for t in task_ids}
    merge_attempts(out, tasks)
    return out, tasks


def run_pipeline(
    challenges: str | Path,
    out_dir: str | Path,
    cfg: PipelineConfig,
    solutions: str | Path | None = None,
    task_ids: list[str] | None = None,
) -> dict[str, Any]:
    """Write out_dir/submission.json at once (baseline attempts), then improve it; returns a summary."""
    t_start = time.time()
    out, tasks = start_run(challenges, out_dir, task_ids)
    model = cfg.model or str(default_model_dir())
    from arcsub.lm.models import check_model_dir

    check_model_dir(model)
    deadline = t_start + cfg.time_budget if cfg.time_budget else float("inf")
    ids = list(tasks)
    n_workers = cfg.workers or max(1, gpu_count())
    n_workers = min(n_workers, len(ids))
    shards = [ids[r::n_workers] for r in range(n_workers)]
    if n_workers == 1:
        _run_shard(0, shards[0], str(challenges), str(out), cfg, deadline)
    else:
        run_workers(_run_shard, shards, (str(challenges), str(out), cfg, deadline), out, tasks)
    attempts = merge_attempts(out, tasks)
    times = {"ttft": 0.0, "predict": 0.0}
    for f in out.glob("times.*.json"):
        for k, v in read_json(f).items():
            times[k] = times.get(k, 0.0) + v
    summary: dict[str, Any] = {
        "submission": str(out / "submission.json"),
        "tasks": len(tasks),
        "predicted": len(attempts),
        "workers": n_workers,
        "stage_seconds": {k: round(v, 1) for k, v in times.items()},
    }
    return finish_run(out, tasks, challenges, solutions, summary, t_start)


def finish_run(
    out: Path,
    tasks: dict[str, Task],
    challenges: str | Path,
    solutions: str | Path | None,
    summary: dict[str, Any],
    t_start: float,
) -> dict[str, Any]:
    """The end of a competition run (either pipeline): merge the workers' predictions.*.json into
    predictions.json, score submission.json when solutions are given, render report.html, write summary.json."""
    predictions: dict[str, Any] = {}
    for f in sorted(out.glob("predictions.*.json")):
        predictions.update(read_json(f))
    write_json_atomic(out / "predictions.json", predictions)
    summary.update(seconds=round(time.time() - t_start, 1), score=None)
    from arcsub.core.viz import render_html

    report_tasks = tasks
    if solutions is not None:
        from arcsub.core.metrics import METRIC_KEYS, compute_metrics, score_submission

        with_outputs = load_tasks(challenges, solutions)  # the report shows the truth beside the candidates
        report_tasks = {t: with_outputs[t] for t in tasks}
        truth = {t: [p.output for p in task.test] for t, task in report_tasks.items()}
        summary["score"] = score_submission(read_json(out / "submission.json"), truth)["score"]
        m = compute_metrics(predictions, truth)
        summary["metrics"] = {k: m[k] for k in (*METRIC_KEYS, "n")}
    summary["report"] = str(
        render_html(report_tasks, predictions, out / "report.html", title=f"arcsub run {out.name}")
    )
    write_json_atomic(out / "summary.json", summary, indent=2)
    return summary


def run_workers(target, shards: list[list[str]], args: tuple, out: Path, tasks: dict[str, Task]) -> None:
    """One process per GPU, `target(rank, shard, *args)`, each saving attempts.<rank>.json as it goes; the
    parent merges them into submission.json while they run."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=target, args=(r, s, *args)) for r, s in enumerate(shards)]
    for p in procs:
        p.start()
    while any(p.is_alive() for p in procs):
        time.sleep(10)
        merge_attempts(out, tasks)
    for p in procs:
        p.join()
        if p.exitcode:
            log.warning(
                "a worker exited with code %s; its unfinished tasks keep baseline attempts", p.exitcode
            )


def pick_dry_run_tasks(challenges: str | Path, n: int) -> list[str]:
    """The n tasks with the fewest grid cells: a dry-run on 2 CPUs must finish in minutes."""
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
