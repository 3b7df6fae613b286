"""Running offline on Kaggle: paths, the model and wheel datasets, GPUs, the 12 h budget, the submission.

The submission notebook (kernels/arcsub_submission.py) installs arcsub from the wheel dataset and calls
`main()`; everything else happens here, so the notebook holds no logic and this module is tested on CPU.

What `main()` does, in order:

1. finds the competition's challenges (``/kaggle/input/<competition>/arc-agi_test_challenges.json``) and
   writes a valid baseline ``/kaggle/working/submission.json`` at once (fallback attempts for every task),
   so a crash, a kill or a timeout later still leaves a scorable file;
2. finds the model dataset (a folder with the ``manifest.json`` of tools/build_model_dataset.py), checks
   it against the manifest, detects the GPUs (count, compute capability -> engine and dtype);
3. splits the 12 h limit, less a safety margin and the time already spent, into the pipeline's budget and
   runs ``arcsub.lm.pipeline.run_pipeline`` into ``/kaggle/working`` (it updates submission.json atomically as
   tasks finish); a watcher logs each task as its attempts land, an alarm interrupts the pipeline at the
   hard deadline;
4. when the challenges are the public stand-in (Kaggle's public run of ARC Prize 2024 shows 100 *training*
   tasks; solutions or the same ids sit next to the file) it runs a short self-check on a few tasks with
   their solutions instead of the whole budget;
5. finally merges whatever is on disk with the fallbacks, writes and validates submission.json again.

Every path can be moved with environment variables, so a fake ``/kaggle`` tree works on any machine:

=========================  ==========================================================================
ARCSUB_KAGGLE_ROOT         the /kaggle folder (input/ and working/ below it)
ARCSUB_KAGGLE_INPUT        the input folder (default ROOT/input)
ARCSUB_KAGGLE_WORKING      the working folder, where submission.json goes (default ROOT/working)
ARCSUB_COMPETITION         competition slug (arc-prize-2024 | 2025 | 2026); default: the one found
ARCSUB_CHALLENGES          the challenges file itself
ARCSUB_MODEL_DIR           a model directory (skips the model dataset search)
ARCSUB_TIME_LIMIT          seconds the whole notebook may run (default 43200 = 12 h)
ARCSUB_SAFETY_MARGIN       seconds kept free at the end (default 10% of the limit, at most 45 min)
ARCSUB_T0                  epoch seconds the notebook started (default: this process's start)
ARCSUB_KAGGLE_MODE         auto | full | selfcheck (default auto: selfcheck on the public stand-in)
ARCSUB_SELFCHECK_TASKS     tasks the self-check runs (default 4)
ARCSUB_SELFCHECK_BUDGET    seconds the self-check may take (default 900)
ARCSUB_CONFIG              pipeline config file (YAML/JSON); default: pipeline.yaml of the model dataset
ARCSUB_OVERRIDES           whitespace-separated key=value pipeline config overrides
ARCSUB_RECIPE              key=value settings baked in by tools/build_kernel.py (the task pipeline on ARC-AGI-2:
                           configs/task-pipeline-arc2.yaml), applied before ARCSUB_OVERRIDES when no config
                           file is given (neither ARCSUB_CONFIG nor a model dataset's pipeline.yaml)
ARCSUB_PIPELINE            module:function of the pipeline (default arcsub.lm.pipeline:run_pipeline)
ARCSUB_KAGGLE_STRICT       1: re-raise a pipeline error after the submission is finalised (dry runs)
=========================  ==========================================================================
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import importlib.util
import logging
import os
import shlex
import sys
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arcsub.core.data import ArcDataError, Task, load_tasks, write_json_atomic
from arcsub.core.device import apply_memory_cap
from arcsub.kaggle.competitions import (
    COMPETITIONS,
    DEFAULT_PIPELINE,
    LEGACY_PIPELINES,
    PIPELINES,
    SUBMISSION_FILE,
    find_solutions,
    is_public_standin,
)
from arcsub.kaggle.datasets import find_model_dataset, unpack_folder, use_data_dataset, verify_dataset_files
from arcsub.kaggle.paths import KagglePaths, env_float, env_value, find_challenges, kaggle_paths
from arcsub.kaggle.runtime import (
    BudgetExceeded,
    DeadlineAlarm,
    GpuInfo,
    ProgressWatcher,
    TimeBudget,
    detect_gpus,
    setup_logging,
)
from arcsub.kaggle.submission import finalize_submission, read_attempts, write_baseline

log = logging.getLogger("arcsub.kaggle")


# ------------------------------------------------------------------------------------------------ paths


# ------------------------------------------------------------------------------------- model dataset


# ------------------------------------------------------------------------------------------------- GPUs


# ---------------------------------------------------------------------------------------------- budget


# ------------------------------------------------------------------------------------ public stand-in


# ----------------------------------------------------------------------------------------- submission


# ------------------------------------------------------------------------------------------- pipeline


def load_pipeline(spec: str | None = None) -> tuple[Callable[..., dict], Callable[..., Any]]:
    """(run_pipeline, load_config(path, overrides)) of `spec` ("module:function").

    The config loader is the module's `load_pipeline_config` when it has one (it builds the typed sub-configs),
    else arcsub.core.config.load_config on the module's `PipelineConfig`.
    """
    spec = spec or env_value("ARCSUB_PIPELINE") or DEFAULT_PIPELINE
    spec = PIPELINES.get(spec, spec)
    module, _, func = spec.partition(":")
    module = LEGACY_PIPELINES.get(module, module)
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ArcDataError(f"pipeline {spec}: cannot import {module} ({e})") from None
    run = getattr(mod, func or "run_pipeline", None)
    loader = getattr(mod, "load_pipeline_config", None)
    if loader is None and hasattr(mod, "PipelineConfig"):
        from arcsub.core.config import load_config

        def loader(path, overrides):
            return load_config(mod.PipelineConfig, path, overrides)

    if run is None or loader is None:
        raise ArcDataError(f"pipeline {spec}: {module} has no {func or 'run_pipeline'} or PipelineConfig")
    return run, loader


def apply_runtime(cfg: Any, gpus: GpuInfo) -> Any:
    """Set every `engine` / `dtype` field left at "auto" (in the config and its sub-configs) from the GPUs."""
    if not dataclasses.is_dataclass(cfg):
        return cfg
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "engine" and value == "auto":
            changes[f.name] = gpus.engine
        elif f.name == "dtype" and value == "auto":
            changes[f.name] = gpus.dtype
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            new = apply_runtime(value, gpus)
            if new is not value:
                changes[f.name] = new
    return dataclasses.replace(cfg, **changes) if changes else cfg


def set_field(cfg: Any, dotted: str, value: Any) -> Any:
    """`cfg` with the (dotted, nested) field set; a field the config lacks is logged and left alone."""
    head, _, rest = dotted.partition(".")
    if not dataclasses.is_dataclass(cfg) or head not in {f.name for f in dataclasses.fields(cfg)}:
        log.warning("pipeline config has no field %r: not set", dotted)
        return cfg
    if rest:
        return dataclasses.replace(cfg, **{head: set_field(getattr(cfg, head), rest, value)})
    return dataclasses.replace(cfg, **{head: value})


def _subset_files(
    tasks: Mapping[str, Task], ids: Sequence[str], solutions: Mapping[str, Any] | None, out: Path
) -> tuple[Path, Path | None]:
    ch = write_json_atomic(out / "challenges.json", {t: tasks[t].to_json() for t in ids})
    so = write_json_atomic(out / "solutions.json", {t: solutions[t] for t in ids}) if solutions else None
    return ch, so


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m arcsub.kaggle",
        description="Write the Kaggle submission: baseline, then the pipeline under the time limit.",
    )
    p.add_argument("--competition", choices=sorted(COMPETITIONS), help="default: ARCSUB_COMPETITION or found")
    p.add_argument(
        "--mode", choices=["auto", "full", "selfcheck"], help="default: ARCSUB_KAGGLE_MODE or auto"
    )
    p.add_argument("--model", help="model directory (default: the model dataset, or ARCSUB_MODEL_DIR)")
    p.add_argument("--config", help="pipeline config file (default: ARCSUB_CONFIG or the model dataset's)")
    p.add_argument("--time-limit", type=float, help="seconds (default: ARCSUB_TIME_LIMIT or 12 h)")
    p.add_argument("overrides", nargs="*", help="pipeline config key=value overrides")
    return p.parse_args(list(argv))


@dataclass
class RunPlan:
    """What the pipeline runs on: the whole hidden set into /kaggle/working, or the self-check's few tasks with
    their solutions into a folder of its own."""

    challenges: Path
    solutions: Path | None
    seconds: float
    tasks: dict[str, Task]
    target: Path  # the submission file the pipeline improves
    out: Path


def _start(args: argparse.Namespace, env: dict, budget: TimeBudget, paths: KagglePaths):
    """Step 1, before anything that could fail or take long: the challenges and a baseline submission."""
    import arcsub

    log.info(
        "arcsub %s from %s; python %s",
        arcsub.__version__,
        Path(arcsub.__file__).parent,
        sys.version.split()[0],
    )
    challenges, competition = find_challenges(paths, args.competition, env)
    tasks = load_tasks(challenges)
    paths.working.mkdir(parents=True, exist_ok=True)
    write_baseline(tasks, paths.submission)
    apply_memory_cap()  # ARCSUB_GPU_MEMORY_GB: the emulated T4 / L4 runs
    log.info(
        "baseline submission for %d tasks written to %s (%.1f s after start)",
        len(tasks),
        paths.submission,
        budget.elapsed(),
    )
    summary: dict[str, Any] = {
        "submission": str(paths.submission),
        "tasks": len(tasks),
        "competition": competition,
        "challenges": str(challenges),
        "arcsub_version": arcsub.__version__,
        "arcsub_path": str(Path(arcsub.__file__).parent),
    }
    return challenges, competition, tasks, summary


def _mode(
    args: argparse.Namespace, env: dict, tasks: dict[str, Task], challenges: Path, competition: str
) -> str:
    """full, or selfcheck on Kaggle's public stand-in (auto), or as asked."""
    mode = args.mode or env_value("ARCSUB_KAGGLE_MODE", env, "auto")
    if mode not in ("auto", "full", "selfcheck"):
        raise ArcDataError(f"ARCSUB_KAGGLE_MODE={mode!r} must be auto, full or selfcheck")
    standin, why = is_public_standin(tasks, challenges, competition)
    if mode == "auto":
        mode = "selfcheck" if standin else "full"
    log.info("mode %s (%s)", mode, why)
    return mode


def _pipeline_config(args: argparse.Namespace, env: dict, paths: KagglePaths, gpus: GpuInfo):
    """Step 2: the pipeline and its config (file, baked-in recipe, overrides, the attached model, the GPUs)."""
    run_pipeline, load_cfg = load_pipeline(env_value("ARCSUB_PIPELINE", env))
    config = args.config or env_value("ARCSUB_CONFIG", env)
    overrides = [*shlex.split(env_value("ARCSUB_OVERRIDES", env, "")), *args.overrides]
    cfg = load_cfg(config, [*recipe_overrides(config, env), *overrides])
    attached = args.model or env_value("ARCSUB_MODEL_DIR", env)
    if trains_from_scratch(cfg) and not attached and not shipped_task_model(paths):
        log.info("model: preset %r trained from scratch in this run (no task model attached)", cfg.model)
    else:
        model_dir, adapters, ds_config = resolve_model(args.model, paths, env)
        if config is None and ds_config is not None:
            cfg = load_cfg(ds_config, overrides)
        cfg = set_field(cfg, "model", str(model_dir))
        if adapters is not None:  # a trained LoRA that TTFT starts from
            cfg = set_field(cfg, "ttft.adapter", str(adapters))
    use_data_dataset(paths, env)
    return run_pipeline, apply_runtime(cfg, gpus)


def _run_plan(
    mode: str,
    env: dict,
    tasks: dict[str, Task],
    challenges: Path,
    paths: KagglePaths,
    budget: TimeBudget,
    workers: int,
) -> RunPlan:
    """Step 3's inputs: the self-check's subset with its solutions and budget, or every task and what is left."""
    if mode != "selfcheck":
        log.info("budget: %s", budget.describe(len(tasks), workers))
        return RunPlan(challenges, None, budget.remaining(), tasks, paths.submission, paths.working)
    ids = sorted(tasks)[: max(1, int(env_float("ARCSUB_SELFCHECK_TASKS", 4, env)))]
    sub_dir = paths.working / "arcsub-selfcheck"
    ch, so = _subset_files(tasks, ids, find_solutions(ids, challenges), sub_dir)
    seconds = min(env_float("ARCSUB_SELFCHECK_BUDGET", 900.0, env), budget.remaining())
    log.info(
        "self-check on %d task(s) %s, %.0f s, %s",
        len(ids),
        ", ".join(ids),
        seconds,
        "with solutions" if so else "no solutions found: not scored",
    )
    return RunPlan(ch, so, seconds, {t: tasks[t] for t in ids}, sub_dir / SUBMISSION_FILE, sub_dir)


def _finish(tasks, paths: KagglePaths, extra, summary: dict, budget: TimeBudget) -> None:
    """Step 5, whatever happened: a valid submission for every task, and the run's summary file."""
    final = finalize_submission(tasks, paths.submission, extra)
    summary.update(predicted=final["predicted"], seconds=round(budget.elapsed(), 1))
    log.info(
        "final submission %s: %d/%d tasks with predictions, %.0f s after start",
        paths.submission,
        final["predicted"],
        len(tasks),
        budget.elapsed(),
    )
    write_json_atomic(paths.working / "arcsub-kaggle-summary.json", summary, indent=2)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The notebook's entry point; returns a summary dict (also logged). Never leaves an invalid submission.

    `argv` defaults to no arguments (not sys.argv: inside a notebook that holds the kernel's arguments).
    """
    args = _parse_args(argv or [])
    setup_logging()
    env = dict(os.environ)
    if args.time_limit is not None:
        env["ARCSUB_TIME_LIMIT"] = str(args.time_limit)
    budget = TimeBudget.from_env(env)
    paths = kaggle_paths(env)
    challenges, competition, tasks, summary = _start(args, env, budget, paths)
    watcher: ProgressWatcher | None = None
    error: BaseException | None = None
    extra: dict[str, list[list[Any]]] = {}
    try:
        mode = summary["mode"] = _mode(args, env, tasks, challenges, competition)
        gpus = detect_gpus()
        log.info("GPUs: %s", gpus.describe())
        run_pipeline, cfg = _pipeline_config(args, env, paths, gpus)
        plan = _run_plan(
            mode, env, tasks, challenges, paths, budget, getattr(cfg, "workers", 0) or max(1, gpus.count)
        )
        if plan.seconds < 1:
            raise BudgetExceeded(f"no time left for the pipeline ({budget.elapsed():.0f} s spent)")
        cfg = set_field(cfg, "time_budget", float(plan.seconds))
        watcher = ProgressWatcher(plan.target, plan.tasks, budget)
        watcher.start()
        t_run = time.time()
        with DeadlineAlarm(budget.hard_deadline - time.time()):
            result = run_pipeline(plan.challenges, plan.out, cfg, solutions=plan.solutions)
        result = result if isinstance(result, dict) else {}
        summary.update(
            pipeline_seconds=round(time.time() - t_run, 1),
            score=result.get("score"),
            stage_seconds=result.get("stage_seconds"),
            peak_gpu_gb=result.get("peak_gpu_gb"),
        )
        if mode == "selfcheck":
            extra = read_attempts(plan.target, plan.tasks)
            log.info("self-check score %s", summary["score"])
    except BudgetExceeded as e:
        log.error("%s: pipeline interrupted, keeping the tasks it finished", e)
        summary["interrupted"] = True
    except Exception as e:  # the submission must survive any failure of the pipeline
        error = e
        log.error("pipeline failed: %s: %s\n%s", type(e).__name__, e, traceback.format_exc())
        summary["error"] = f"{type(e).__name__}: {e}"
    finally:
        if watcher is not None:
            summary["task_seconds"] = watcher.stop()
        _finish(tasks, paths, extra, summary, budget)
    if error is not None and env_value("ARCSUB_KAGGLE_STRICT", env) == "1":
        raise error
    return summary


def recipe_overrides(config: str | None, env: Mapping[str, str] | None = None) -> list[str]:
    """The baked-in recipe (ARCSUB_RECIPE) as overrides, or none when a config file is given: a file is a
    whole recipe of its own, and the recipe's keys would silently win over it."""
    return [] if config else shlex.split(env_value("ARCSUB_RECIPE", env, ""))


def trains_from_scratch(cfg: Any) -> bool:
    """The task-model pipeline with a preset as its model trains from scratch: it needs no model dataset."""
    from arcsub.taskmodel.model import PRESETS
    from arcsub.taskmodel.pipeline import TaskPipelineConfig

    return isinstance(cfg, TaskPipelineConfig) and cfg.model in PRESETS


def shipped_task_model(paths: KagglePaths) -> bool:
    """An attached model dataset holds a task model (pretrained offline, say on training tasks + RE-ARC): the
    task pipeline then continues it on the hidden tasks (mode ttt) instead of training a preset from scratch.
    Pretraining first, then joint TTT beat the all-in-one run at equal compute
    (docs/experiments/task-model-ablations.md), and the pretraining half costs no notebook time."""
    from arcsub.taskmodel.data import TaskIndex

    try:
        model_dir = find_model_dataset(paths).model_dir
    except ArcDataError:
        return False
    if (model_dir / TaskIndex.FILE).exists():
        log.info("model: the task model of the model dataset (%s), continued on the hidden tasks", model_dir)
        return True
    return False


def resolve_model(
    model: str | None, paths: KagglePaths, env: Mapping[str, str]
) -> tuple[Path, Path | None, Path | None]:
    """(model dir, adapters dir or None, the dataset's pipeline config or None), checked."""
    from arcsub.core.modeldir import check_model_dir

    explicit = model or env_value("ARCSUB_MODEL_DIR", env)
    if explicit:
        log.info("model %s (given)", explicit)
        return check_model_dir(explicit), None, None
    ds = find_model_dataset(paths)
    full = env_value("ARCSUB_VERIFY_SHA256", env) == "1"
    adapters = ds.adapters_dir
    moved: dict[str, Path] = {}
    if adapters is not None and not adapters.is_dir():
        adapters = unpack_folder(adapters, paths.working / "arcsub-adapters")
        moved[ds.manifest["adapters_dir"]] = adapters
    n = verify_dataset_files(ds.root, ds.manifest, full=full, moved=moved)
    model_dir = check_model_dir(ds.model_dir)
    log.info(
        "model dataset %s: %d files verified (%s), model %s, settings %s",
        ds.root,
        n,
        "sha256" if full else "sizes",
        ds.manifest.get("name", model_dir.name),
        ds.manifest.get("settings", {}),
    )
    config = ds.pipeline_config if ds.pipeline_config is not None and ds.pipeline_config.is_file() else None
    return model_dir, adapters, config
