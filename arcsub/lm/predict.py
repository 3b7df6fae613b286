"""The inference pipeline: tasks -> augmented prompts -> engine -> parsed, reverted grids -> votes -> attempts.

For every task and test input we show the model K views of the task (augment.views: D8, colour permutations,
demonstration order), generate, parse each answer (invalid ones are kept as null: they count in the
metrics), map it back to the original frame with the view's inverse, and select two attempts. Everything a
run produced is written next to its settings under names that include a settings hash, so runs never
overwrite each other:

    predictions__<model>__<data>__<hash>.json   {task_id: [[{grid, logprob, tokens, view}, ...] per test input]}
    submission__<model>__<data>__<hash>.json    Kaggle's format, fallbacks filled
    run__<model>__<data>__<hash>.json           settings, engine, timings, counts (and scores with --solutions)

Command line (arcsub/cli/lm.py):

    arcsub predict MODEL_DIR CHALLENGES.json -o OUT_DIR [--adapters DIR] [--config C] [key=value ...]
"""

from __future__ import annotations

import logging
import sys
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from arcsub.core.augment import Augmentation, views
from arcsub.core.candidates import SamplingSettings, safe_logprob
from arcsub.core.config import settings_hash, to_dict
from arcsub.core.data import (
    ArcDataError,
    Grid,
    Pair,
    Task,
    grid_to_list,
    read_json,
    task_path,
)
from arcsub.core.device import default_device, pick_dtype
from arcsub.core.encode import FORMATS, PROMPTS, Codec, PromptFormat, build_example, parse_answer
from arcsub.core.runs import (
    Attempts,
    ModelSpec,
    Predictions,
    check_run_inputs,
    data_label,
    model_label,
    run_tasks,
    write_prediction_files,
)
from arcsub.core.select import NEEDS_SCORER, SELECTORS, Scorer, select
from arcsub.lm.infer.base import Engine, adapter_ok

log = logging.getLogger("arcsub.lm.predict")


@dataclass
class PredictConfig:
    """Everything a prediction run depends on (loaded with arcsub.core.config.load_config; hashed into file names)."""

    engine: Literal["auto", "torch", "vllm"] = "auto"
    views: int = 8  # augmented views per test input (identity first, then the rest of D8, then random)
    d8: bool = True
    colours: Literal["keep0", "all", "none"] = "keep0"
    shuffle_train: bool = True
    sampling: SamplingSettings = field(default_factory=SamplingSettings)
    selection: Literal["vote", "likelihood", "vote+likelihood"] = "vote"
    score_views: int = 8  # likelihood selection: augmentations each distinct candidate is re-scored under
    prompt: str = "output-from-examples"
    max_len: int = 8192  # prompt + answer tokens; demonstration pairs are dropped to fit
    seed: int = 0
    tasks_per_batch: int = (
        16  # tasks whose prompts go to the engine together (bigger batches, coarser progress)
    )
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    device: str = "auto"
    gpu_memory_utilization: float = 0.85  # vllm
    max_lora_rank: int = 64  # vllm
    max_loras: int = 8  # vllm: adapters resident on the GPU at once

    def validate(self) -> PredictConfig:
        if self.views < 1:
            raise ArcDataError(f"config: views={self.views} must be at least 1")
        if self.score_views < 1:
            raise ArcDataError(f"config: score_views={self.score_views} must be at least 1")
        if self.tasks_per_batch < 1:
            raise ArcDataError(f"config: tasks_per_batch={self.tasks_per_batch} must be at least 1")
        if self.prompt not in PROMPTS:
            raise ArcDataError(f"config: prompt={self.prompt!r} (known: {', '.join(PROMPTS)})")
        self.sampling.validate()
        return self


# ------------------------------------------------------------------------------------------- model loading


def check_model_spec(model: ModelSpec) -> None:
    """A model folder's config and weights, checked before any work (a preset name or in-memory model passes)."""
    from arcsub.core.modeldir import check_model_dir
    from arcsub.lm.models import PRESETS

    if not isinstance(model, tuple) and (Path(model).exists() or str(model) not in PRESETS):
        check_model_dir(model)


def open_engine(model: ModelSpec, cfg: PredictConfig, use_adapters: bool = False) -> tuple[Engine, Any, str]:
    """(engine, tokenizer, format name) for a model directory, a preset name (random weights, for smoke
    runs) or an in-memory (model, tokenizer, format) triple."""
    from arcsub.lm.infer.vllm_engine import choose_engine

    if isinstance(model, tuple):
        if cfg.engine == "vllm":
            raise ArcDataError("engine vllm needs a model directory, not an in-memory model")
        net, tok, fmt = model
        return _torch_engine(net, tok, cfg), tok, fmt
    from arcsub.core.modeldir import check_model_dir
    from arcsub.lm.models import PRESETS, build_model, load_model, load_tokenizer_and_format

    p = Path(model)
    if not p.exists() and str(model) in PRESETS:
        log.warning("model %s: a preset with random weights (smoke run)", model)
        net, tok = build_model(str(model), max_len=cfg.max_len, seed=cfg.seed)
        return _torch_engine(net, tok, cfg), tok, "compact"
    check_model_dir(p)
    if choose_engine(cfg.engine, cfg.sampling.mode) == "vllm":
        from arcsub.lm.infer.vllm_engine import VllmEngine

        tok, fmt = load_tokenizer_and_format(p)
        codec = Codec(tok)
        allowed = [codec.ids(c)[0] for c in "0123456789\n"] + [codec.eos_id] if codec.compact else None
        engine = VllmEngine(
            p,
            tok,
            max_len=cfg.max_len,
            dtype=cfg.dtype,
            seed=cfg.seed,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            enable_lora=use_adapters,
            max_lora_rank=cfg.max_lora_rank,
            max_loras=cfg.max_loras,
            constrained_ids=allowed,
        )
        return engine, tok, fmt
    device = _device(cfg)
    net, tok, fmt = load_model(p, dtype=pick_dtype(cfg.dtype, device), device=device)
    return _torch_engine(net, tok, cfg), tok, fmt


def _device(cfg: PredictConfig):
    return default_device() if cfg.device == "auto" else cfg.device


def _torch_engine(net, tok, cfg: PredictConfig) -> Engine:
    from arcsub.lm.infer.torch_engine import TorchEngine

    device = _device(cfg)
    return TorchEngine(
        net, tok, device=device, dtype=pick_dtype(cfg.dtype, device), batch_tokens=cfg.sampling.batch_tokens
    )


# ---------------------------------------------------------------------------------------------- adapters


def _manifest_ids(obj: Any) -> set[str]:
    """Finished task ids from a manifest: a list of ids, or a mapping with 'finished'/'tasks', or id keys."""
    if isinstance(obj, Mapping):
        for key in ("finished", "tasks", "done"):
            if key in obj:
                return _manifest_ids(obj[key])
        return {str(k) for k in obj}
    if isinstance(obj, list):
        return {str(x) for x in obj}
    raise ArcDataError("adapters manifest.json must list finished task ids")


def find_adapters(adapters_dir: str | Path | None, task_ids: Sequence[str]) -> dict[str, str | None]:
    """The adapter directory of each task (`adapters_dir/<task_id>/`), None where there is none.

    With a manifest.json only the tasks it lists as finished count (a half-written adapter of a job that
    was killed must not be used). Tasks without an adapter run on the base model, with one warning line.
    """
    if adapters_dir is None:
        return dict.fromkeys(task_ids)
    root = Path(adapters_dir)
    if not root.is_dir():
        raise ArcDataError(f"{root}: adapters directory not found")
    manifest = root / "manifest.json"
    try:
        finished = _manifest_ids(read_json(manifest)) if manifest.exists() else None
    except ArcDataError as e:
        raise ArcDataError(f"{manifest}: {e}") from None
    out: dict[str, str | None] = {}
    for tid in task_ids:
        d = task_path(root, tid)
        out[tid] = str(d) if adapter_ok(d) and (finished is None or tid in finished) else None
    missing = [t for t, a in out.items() if a is None]
    if missing:
        log.warning(
            "%s: %d of %d task(s) have no finished adapter (e.g. %s): base model for those",
            root,
            len(missing),
            len(task_ids),
            missing[0],
        )
    return out


# ---------------------------------------------------------------------------------------------- pipeline


@dataclass
class PromptJob:
    """One prompt: a view of one test input of one task."""

    task_id: str
    test_index: int
    view: Augmentation
    ids: list[int]


def task_views(task: Task, cfg: PredictConfig) -> list[Augmentation]:
    """The task's views, seeded by (seed, task id): the same views whatever the batch or task order."""
    rng = np.random.default_rng([cfg.seed, zlib.crc32(task.id.encode())])
    return views(task, cfg.views, rng, d8=cfg.d8, colours=cfg.colours, shuffle_train=cfg.shuffle_train)


def _hide_outputs(task: Task) -> Task:
    """The task as the model may see it: test outputs removed, whatever was loaded."""
    return Task(task.id, task.train, [Pair(p.input) for p in task.test], dict(task.meta))


def prompt_jobs(task: Task, cfg: PredictConfig, codec: Codec, fmt: PromptFormat) -> list[PromptJob]:
    """The generation prompts of a task: every view x test input that fits max_len (pairs dropped to fit)."""
    jobs = []
    for view in task_views(task, cfg):
        seen = view.apply(task)
        for i in range(len(task.test)):
            ex = build_example(seen, codec, fmt, i, cfg.prompt, cfg.max_len, with_answer=False)
            if ex is not None:
                jobs.append(PromptJob(task.id, i, view, ex.ids.tolist()))
    for i in range(len(task.test)):
        if not any(j.test_index == i for j in jobs):
            log.warning(
                "task %s test %d: no view fits max_len=%d even with one demonstration pair: "
                "no candidates, fallback attempts",
                task.id,
                i,
                cfg.max_len,
            )
    return jobs


def _answer_ids(grid: Grid, codec: Codec, fmt: PromptFormat) -> list[int]:
    return codec.ids(fmt.encoder.encode(grid)).tolist() + [codec.eos_id]


def make_scorer(
    engine: Engine,
    jobs: Sequence[PromptJob],
    adapter: str | None,
    codec: Codec,
    fmt: PromptFormat,
    n_views: int,
) -> Scorer:
    """Product of experts: a grid's score is its summed log-probability under the first n_views views."""
    chosen = list(jobs)[:n_views]

    def score(grids: list[Grid]) -> list[float]:
        prompts = [j.ids for _ in grids for j in chosen]
        answers = [_answer_ids(j.view.apply_grid(g), codec, fmt) for g in grids for j in chosen]
        s = engine.score(prompts, answers, [adapter] * len(prompts))
        m = len(chosen)
        return [float(sum(s[k * m : (k + 1) * m])) for k in range(len(grids))]

    return score


def predict(
    tasks: Mapping[str, Task],
    model: ModelSpec,
    settings: PredictConfig | None = None,
    adapters_dir: str | Path | None = None,
    engine: Engine | None = None,
    progress: bool = True,
    stats: dict[str, Any] | None = None,
) -> tuple[Predictions, Attempts]:
    """Predictions (every candidate) and attempts (top-2 grids per test input, None where missing).

    `model` is a model directory, a preset name, or (model, tokenizer, format name). `engine` replaces the
    engine `model` would get (its tokenizer and format still come from `model`; tests pass doubles here).
    `stats`, if given, receives counts and timings. Longer than most (~85 lines): the batches of all tasks'
    prompts are decoded together and their candidates regrouped by task and test input in one pass.
    """
    from tqdm.auto import tqdm

    cfg = (settings or PredictConfig()).validate()
    t0 = time.time()
    adapters = find_adapters(adapters_dir, list(tasks))
    if engine is None:
        engine, tok, fmt_name = open_engine(model, cfg, use_adapters=any(adapters.values()))
    elif isinstance(model, tuple):
        tok, fmt_name = model[1], model[2]
    else:
        from arcsub.lm.models import load_tokenizer_and_format

        tok, fmt_name = load_tokenizer_and_format(Path(model))
    codec, fmt = Codec(tok), FORMATS[fmt_name]
    if cfg.selection not in SELECTORS:
        raise ArcDataError(f"config: selection={cfg.selection!r} (known: {', '.join(SELECTORS)})")
    predictions: Predictions = {}
    attempts: Attempts = {}
    counts = {"prompts": 0, "candidates": 0, "valid": 0, "generated_tokens": 0}
    ids = list(tasks)
    bar = tqdm(total=len(ids), desc="predict", unit="task", disable=not progress, file=sys.stderr)
    for start in range(0, len(ids), cfg.tasks_per_batch):
        chunk = [_hide_outputs(tasks[t]) for t in ids[start : start + cfg.tasks_per_batch]]
        jobs = [j for task in chunk for j in prompt_jobs(task, cfg, codec, fmt)]
        outs = engine.generate([j.ids for j in jobs], cfg.sampling, [adapters[j.task_id] for j in jobs])
        per_output: dict[tuple[str, int], list[dict[str, Any]]] = {}
        jobs_of: dict[tuple[str, int], list[PromptJob]] = {}
        for job, cands in zip(jobs, outs, strict=True):
            key = (job.task_id, job.test_index)
            jobs_of.setdefault(key, []).append(job)
            for c in cands:
                grid = parse_answer(c.tokens + [codec.eos_id], codec, fmt) if c.finished else None
                grid = job.view.revert_grid(grid)
                per_output.setdefault(key, []).append(
                    {
                        "grid": None if grid is None else grid_to_list(grid),
                        "logprob": safe_logprob(c.logprob),
                        "tokens": int(c.n_tokens),
                        "view": job.view.name,
                    }
                )
                counts["valid"] += grid is not None
                counts["generated_tokens"] += int(c.n_tokens)
        counts["prompts"] += len(jobs)
        for task in chunk:
            preds_t, att_t = [], []
            for i in range(len(task.test)):
                cands = per_output.get((task.id, i), [])
                scorer = None
                if cfg.selection in NEEDS_SCORER:
                    scorer = make_scorer(
                        engine, jobs_of.get((task.id, i), []), adapters[task.id], codec, fmt, cfg.score_views
                    )
                top = select(cands, cfg.selection, scorer)
                preds_t.append(cands)
                att_t.append([None if g is None else grid_to_list(g) for g in top])
                counts["candidates"] += len(cands)
            predictions[task.id] = preds_t
            attempts[task.id] = att_t
        bar.update(len(chunk))
    bar.close()
    if stats is not None:
        stats.update(
            counts,
            seconds=round(time.time() - t0, 3),
            engine=engine.name,
            tasks=len(ids),
            adapters=sum(a is not None for a in adapters.values()),
        )
    return predictions, attempts


# ---------------------------------------------------------------------------------------- files and runs


@dataclass
class _RunKey:
    """What names a run's files: the settings and the adapters used (the model and data are named apart)."""

    config: PredictConfig
    adapters: str


def output_paths(
    out_dir: str | Path,
    model: ModelSpec,
    challenges: str | Path,
    cfg: PredictConfig,
    adapters_dir: str | Path | None = None,
) -> dict[str, Path]:
    h = settings_hash(_RunKey(cfg, str(Path(adapters_dir).resolve()) if adapters_dir else ""))
    tail = f"{model_label(model)}__{data_label(challenges)}__{h}.json"
    out = Path(out_dir)
    return {k: out / f"{k}__{tail}" for k in ("predictions", "submission", "run")}


def run_predict(
    model: ModelSpec,
    challenges: str | Path,
    out_dir: str | Path,
    settings: PredictConfig | None = None,
    adapters_dir: str | Path | None = None,
    solutions: str | Path | None = None,
    submission_path: str | Path | None = None,
    task_ids: Sequence[str] | None = None,
    engine: Engine | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Predict a challenges file and write predictions, submission and run summary atomically.

    Returns the run summary ({"files": {...}, "stats": {...}, "score": ...}); with `solutions` the
    summary includes the Kaggle score and the candidate metrics.
    """
    cfg = (settings or PredictConfig()).validate()
    if engine is None:
        check_model_spec(model)
    tasks = run_tasks(challenges, task_ids)
    paths = output_paths(out_dir, model, challenges, cfg, adapters_dir)
    check_run_inputs(tasks, solutions, [*paths.values(), submission_path])
    stats: dict[str, Any] = {}
    predictions, attempts = predict(tasks, model, cfg, adapters_dir, engine, progress, stats)
    summary: dict[str, Any] = {
        "model": str(model) if not isinstance(model, tuple) else "memory",
        "challenges": str(challenges),
        "adapters": str(adapters_dir) if adapters_dir else None,
        "config": to_dict(cfg),
        "stats": stats,
    }
    return write_prediction_files(paths, tasks, predictions, attempts, submission_path, summary, solutions)


# ------------------------------------------------------------------------------------------- command line


__all__ = [
    "PredictConfig",
    "predict",
    "run_predict",
    "find_adapters",
    "task_views",
    "make_scorer",
    "prompt_jobs",
    "PromptJob",
    "output_paths",
    "open_engine",
]
