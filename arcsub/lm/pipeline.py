"""The competition path: baseline submission first, then TTFT + prediction chunk by chunk under a time budget,
the submission rewritten atomically after every chunk. Kaggle's notebook and the local dry-run both run this.

Several GPUs: one worker process per GPU, tasks sharded round-robin; each worker writes its attempts to its own
file and the parent merges them into submission.json, so a crash, an OOM or the clock leaves the best so far.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arcsub.core.config import load_config
from arcsub.core.data import load_tasks, read_json, repo_root, write_json_atomic
from arcsub.core.device import gpu_count
from arcsub.core.runs import (
    WorkerResults,
    finish_run,
    hide_test_outputs,
    merge_attempts,
    run_workers,
    start_run,
)
from arcsub.solver.run import SolverSettings, start_solver, wait_solver

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
    # the symbolic solver (arcsub.solver) on the CPU beside the model: its answer first where a program
    # explains a task
    solver: SolverSettings = field(default_factory=SolverSettings)


def load_pipeline_config(path: str | Path | None, overrides: list[str]) -> PipelineConfig:
    """Defaults, then a YAML/JSON file, then key=value overrides (the Kaggle notebook calls this by name)."""
    return load_config(PipelineConfig, path, overrides)


def run_shard(
    rank: int,
    ids: list[str],
    challenges: str,
    out: str,
    cfg: PipelineConfig,
    deadline: float,
    merge: bool = False,
) -> None:
    """One worker: TTFT + predict chunk by chunk; attempts and predictions saved after every chunk. The one
    in-process shard (`merge`) also merges them into submission.json after every chunk, as run_workers does
    for worker processes, so an interruption keeps every finished chunk."""
    from arcsub.lm.predict import open_engine, predict
    from arcsub.lm.ttft import LoraFitter, run_ttft

    if gpu_count() > 1:
        import torch

        torch.cuda.set_device(rank)
    tasks = load_tasks(challenges)
    model = cfg.model or str(default_model_dir())
    out_p = Path(out)
    adapters = out_p / "adapters"
    # the single shard holds every task of the run, in order
    results = WorkerResults.load(out_p, rank, merge_into={t: tasks[t] for t in ids} if merge else None)
    times_file = out_p / f"times.{rank}.json"
    times = read_json(times_file) if times_file.exists() else {"ttft": 0.0, "predict": 0.0}
    todo = [t for t in ids if t not in results.attempts]
    if not todo:  # a rerun after everything finished: load nothing
        return
    fitter = LoraFitter(model, cfg.ttft, _device(rank)) if cfg.ttft_enabled else None
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
    from arcsub.core.modeldir import check_model_dir

    check_model_dir(model)
    deadline = t_start + cfg.time_budget if cfg.time_budget else float("inf")
    solver = start_solver(tasks, out, cfg.solver)
    ids = list(tasks)
    n_workers = cfg.workers or max(1, gpu_count())
    n_workers = min(n_workers, len(ids))
    shards = [ids[r::n_workers] for r in range(n_workers)]
    if n_workers == 1:
        run_shard(0, shards[0], str(challenges), str(out), cfg, deadline, merge=True)
    else:
        run_workers(run_shard, shards, (str(challenges), str(out), cfg, deadline), out, tasks)
    wait_solver(solver, deadline - time.time())
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
    return finish_run(out, tasks, solutions, summary, t_start)
