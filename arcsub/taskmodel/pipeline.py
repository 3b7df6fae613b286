"""The competition path with the task-embedding model (docs/task-model.md), beside arcsub.lm.pipeline's in-context
path: a baseline submission at once; then one task model trained on the demonstrations of every test task
together (from scratch with training tasks and RE-ARC: mdlARC's transductive recipe, or continuing a pretrained
task model); then prediction chunk by chunk, each chunk improving submission.json. Training gets a share of
the time budget and fits its schedule to it (`task-train seconds=`); it runs on every GPU through torchrun.

Kaggle: `ARCSUB_PIPELINE=arcsub.taskmodel.pipeline:run_pipeline`. Locally: `arcsub dry-run --pipeline task`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arcsub.core.config import load_config, to_dict
from arcsub.core.data import ArcDataError, Task, load_tasks, resolve_path, task_path, write_json_atomic
from arcsub.core.device import apply_memory_cap, gpu_count
from arcsub.core.memory import free_gpu_memory
from arcsub.core.modeldir import model_finished
from arcsub.core.runs import (
    WorkerResults,
    finish_run,
    hide_test_outputs,
    merge_attempts,
    run_workers,
    start_run,
)
from arcsub.solver.run import SolverSettings, start_solver, wait_solver
from arcsub.taskmodel.data import TaskDataSettings
from arcsub.taskmodel.model import PRESETS
from arcsub.taskmodel.predict import TaskPredictConfig
from arcsub.taskmodel.selftrain import SelfTrainSettings, write_self_train_file
from arcsub.taskmodel.train import TaskTrainConfig
from arcsub.training.runtime import latest_checkpoint

log = logging.getLogger(__name__)

RUN = "task-model"  # the training run's folder inside the output folder
REFINE_RUN = "task-refine"  # the refinement run's folder (refine_share > 0)
SELF_TRAIN_FILE = "self_train_challenges.json"  # the test tasks with the joint model's confident pairs
MIN_REFINE_SECONDS = 20.0  # less is spent compiling and warming up: the joint model is kept
MIN_MEMBER_SECONDS = 30.0  # an ensemble member needs more than its compilation and warm-up: it is left out


def _train_defaults() -> TaskTrainConfig:
    """configs/task-transductive.yaml's recipe, in code so that an installed wheel has it too."""
    return TaskTrainConfig(
        data=TaskDataSettings(
            challenges=["data:arc-agi-1/arc-agi_training_challenges.json"], re_arc="data:re-arc"
        ),
        steps=16000,
        compile=True,
        workers=4,
        save_every=1000,
        log_every=50,
    )


@dataclass
class TaskPipelineConfig:
    """One competition run with a task model. `train.mode/model/name/out_dir` and `data.ttt_challenges` are set
    by the pipeline; `train.seconds` by the budget when there is one."""

    model: str = "base"  # a preset: train from scratch (transductive); a task-model dir: continue it (ttt)
    train: TaskTrainConfig = field(default_factory=_train_defaults)
    predict: TaskPredictConfig = field(default_factory=TaskPredictConfig)
    time_budget: float = 0.0  # seconds for the whole run; 0 = train for train.seconds (or train.steps)
    train_share: float = 0.7  # of the time left after start-up, the part training gets; prediction the rest
    # > 0: prediction keeps at most this many seconds of the budget and training gets the rest, where that is
    # more than train_share gives. Why: a 12-hour budget predicts in minutes (~580 s for 240 tasks on 4xL4 by
    # docs/kaggle.md's conversion), so 30 % of it is hours that training could use; a short budget is unchanged
    predict_cap: float = 0.0
    # > 0: prediction keeps at least this many seconds per test task of a short budget (training keeps at
    # least half of it). Why: a fixed share of a 4-minute budget (48 s at 0.8) is less than 120 ARC-AGI-2 tasks
    # take (41 s for 100 on one H100), and the tasks it cannot reach keep their baseline attempts
    predict_s_per_task: float = 0.0
    gpus: int = 0  # GPUs to train on (torchrun when more than one); 0 = every visible GPU
    chunk: int = 50  # tasks per prediction chunk (submission.json improves after each)
    # also train on the challenge files beside the test file that come with their solutions (Kaggle's
    # competition folder ships the training and evaluation sets: hundreds of solved tasks at no cost)
    beside_data: bool = True
    # ablation of the joint run (CompressARC-style): one model per test task, trained on that task's
    # demonstrations (plus the configured sources), each with 1/N of the time budget; without a budget each
    # trains train.steps, so an equal-steps ablation passes the per-task count (bench/gpu_stages.sh: steps/N).
    # With `model` a trained task-model dir, this is per-task refinement from it (VARC's per-task TTT)
    per_task: bool = False
    # joint refinement (VARC's test-time training from the trained model, for all test tasks at once): this
    # share of the training time (or of train.steps) continues the joint model on the test tasks'
    # demonstrations alone (mode=ttt), with a fresh warm-up and decay at refine_lr
    refine_share: float = 0.0
    refine_lr: float = 3e-4
    # self-training: the refinement also trains on the test inputs the joint model answers confidently
    # (arcsub.taskmodel.selftrain; labelled with self_train.views views, its time taken from the refinement)
    refine_self_train: bool = False
    self_train: SelfTrainSettings = field(default_factory=SelfTrainSettings)
    # an ensemble: this many models with seeds train.seed, +1, ..., trained one after another on all the GPUs,
    # each in its share of the training time (or train.steps), refined alike; prediction pools their
    # candidates (predict_tasks). Why: without data.scale one model stops gaining past ~4e8 tokens
    # (docs/experiments/arc2.md), so a long budget may do better as several models than as one (with it, the
    # 25-minute run still gained, and the ARC-AGI-2 recipe trains one)
    ensemble: int = 1
    # > 0: members of a fixed length instead of equal shares. Each member trains at most this many tokens (the
    # plateau's length; tokens, so it means the same on any GPU count), in all the training time left, and
    # another follows, up to `ensemble`, while the time left is at least what the last one took. So a short
    # budget still trains one model as long as it can, and a long one (Kaggle's 12 h) spends its hours on
    # members of the plateau's length instead of one model far past it
    member_tokens: float = 0.0
    # the symbolic solver (arcsub.solver) on the CPU beside training: where a program explains a task, its
    # answer takes attempt_1 and the model's best different guess attempt_2
    solver: SolverSettings = field(default_factory=SolverSettings)


def load_pipeline_config(path: str | Path | None, overrides: list[str]) -> TaskPipelineConfig:
    """Defaults, then a YAML/JSON file, then key=value overrides (the Kaggle notebook calls this by name)."""
    cfg = load_config(TaskPipelineConfig, path, overrides)
    where = f"{path}: " if path else ""
    if not 0 <= cfg.refine_share < 1 or cfg.refine_lr <= 0:
        raise ArcDataError(f"{where}refine_share must be in [0, 1) and refine_lr above 0")
    if cfg.ensemble < 1:
        raise ArcDataError(f"{where}ensemble must be at least 1 (models)")
    if cfg.predict_cap < 0 or cfg.predict_s_per_task < 0:
        raise ArcDataError(
            f"{where}predict_cap and predict_s_per_task must be 0 (off) or more (seconds kept for prediction)"
        )
    if cfg.member_tokens < 0 or (cfg.member_tokens and cfg.refine_share):
        raise ArcDataError(
            f"{where}member_tokens must be 0 or more, and 0 with refine_share (one or the other)"
        )
    return cfg


BESIDE = ("arc-agi_training_challenges.json", "arc-agi_evaluation_challenges.json")


def solved_files_beside(challenges: Path) -> list[str]:
    """The known challenge files in the test file's folder that have their solutions beside them (never the
    test file itself): on Kaggle, the competition's own training and evaluation sets."""
    test = Path(challenges).resolve()
    found = [test.with_name(name) for name in BESIDE]
    return [
        str(p)
        for p in found
        if p != test and p.exists() and p.with_name(p.name.replace("_challenges", "_solutions")).exists()
    ]


def train_config(
    cfg: TaskPipelineConfig, test_file: Path, out: Path, seconds: float, beside: Path | None = None
) -> TaskTrainConfig:
    """The task-train config of this run: test tasks' demonstrations in, the solved files `beside` the
    original test file added (cfg.beside_data), training sources that are missing here (a Kaggle machine
    without the training data) left out with a warning, the schedule fitted to `seconds` when it is > 0."""
    from_scratch = cfg.model in PRESETS
    d = cfg.train.data
    challenges = [c for c in d.challenges if _exists(c)]
    if cfg.beside_data and beside is not None:
        have = {resolve_path(c).resolve() for c in challenges}
        extra = [f for f in solved_files_beside(beside) if Path(f) not in have]
        if extra:
            log.info("training also on %s (solved, beside the test file)", ", ".join(extra))
        challenges += extra
    re_arc = d.re_arc if d.re_arc and _exists(d.re_arc) else None
    generated = [g for g in d.generated if _exists(g)]
    for missing in (
        [c for c in d.challenges if c not in challenges]
        + ([d.re_arc] if d.re_arc and not re_arc else [])
        + [g for g in d.generated if g not in generated]
    ):
        log.warning("training source %s not found: left out", missing)
    data = dataclasses.replace(
        d,
        challenges=challenges,
        re_arc=re_arc,
        generated=generated,
        ttt_challenges=[str(test_file)],
        exclude_test_tasks=True,
    )
    tc = dataclasses.replace(
        cfg.train,
        mode="transductive" if from_scratch else "ttt",
        model=cfg.model,
        data=data,
        out_dir=str(out),
        name=RUN,
    )
    if not gpu_count():
        tc = dataclasses.replace(tc, compile=False)  # compiling on a CPU costs more than it saves
    if seconds > 0:
        return fit_to_seconds(tc, seconds, overrun_bound(cfg))
    return share_of(tc, cfg.train, 1 - cfg.refine_share) if cfg.refine_share > 0 else tc


def share_of(tc: TaskTrainConfig, whole: TaskTrainConfig, frac: float) -> TaskTrainConfig:
    """tc with `frac` of whole's training (its seconds when it is fitted to time, else its steps): the joint
    and refinement runs split a run that has no time budget."""
    if whole.seconds > 0:
        return dataclasses.replace(tc, seconds=whole.seconds * frac)
    return dataclasses.replace(tc, steps=max(1, round(whole.steps * frac)))


def training_seconds(cfg: TaskPipelineConfig, elapsed: float, tasks: int) -> float:
    """The seconds training gets of a run of `tasks` test tasks that has spent `elapsed` already (start-up):
    train_share of the budget, or all but predict_cap where that is more, or less where prediction needs
    predict_s_per_task for each task (down to half the budget); 0 without a budget (train.seconds or
    train.steps). `tasks` has no default: a caller that forgot it would keep no prediction time."""
    if not cfg.time_budget:
        return 0.0
    share = cfg.time_budget * cfg.train_share
    if cfg.predict_cap:
        share = max(share, cfg.time_budget - cfg.predict_cap)
    if cfg.predict_s_per_task:
        needed = cfg.time_budget - tasks * cfg.predict_s_per_task
        share = min(share, max(needed, cfg.time_budget / 2))
    return share - elapsed


def overrun_bound(cfg: TaskPipelineConfig) -> float:
    """How far past its fitted seconds a training run's hard stop (the joint run's, a refinement's) may lie:
    half of predict_cap, since the usual 20 % (+120 s) of a 10-hour run is more than the capped prediction
    time; unbounded without the cap."""
    return cfg.predict_cap / 2 if cfg.predict_cap else math.inf


def fit_to_seconds(tc: TaskTrainConfig, seconds: float, most_over: float = math.inf) -> TaskTrainConfig:
    """tc with its schedule fitted to `seconds` of training: the step count is fitted at step 40, inside the
    warm-up; time_budget is the hard stop behind it, 20 % (+120 s) later but at most `most_over` seconds."""
    return dataclasses.replace(
        tc,
        seconds=seconds,
        steps=max(tc.steps, 10**7),
        time_budget=min(seconds * 1.2 + 120, seconds + most_over),
        optim=dataclasses.replace(tc.optim, warmup=max(tc.optim.warmup, 40)),
    )


def refine_config(
    cfg: TaskPipelineConfig,
    joint: TaskTrainConfig,
    model_dir: Path,
    seconds: float,
    test_tasks: Path | None = None,
) -> TaskTrainConfig:
    """The refinement run: the joint model continued on the test tasks' demonstrations alone (no training
    tasks, RE-ARC or generated pairs; `test_tasks`: a challenges file with confident pairs added), at
    refine_lr, for `seconds` (0: refine_share of the configured run).

    Why: VARC gains most from test-time training that starts from its trained model; the joint run spends
    most of its samples on training tasks, so its last steps are not specialised to the test tasks."""
    ttt = [str(test_tasks)] if test_tasks else joint.data.ttt_challenges
    data = dataclasses.replace(joint.data, challenges=[], re_arc=None, generated=[], ttt_challenges=ttt)
    tc = dataclasses.replace(
        joint,
        mode="ttt",
        model=str(model_dir),
        data=data,
        name=REFINE_RUN + member_suffix(joint),
        optim=dataclasses.replace(joint.optim, lr=cfg.refine_lr),
    )
    if seconds > 0:  # its hard stop bounded as the joint run's is (predict_cap), so a long one cannot overrun
        return fit_to_seconds(tc, seconds, overrun_bound(cfg))
    return share_of(tc, cfg.train, cfg.refine_share)


def member_suffix(tc: TaskTrainConfig) -> str:
    """The run name's suffix, which names a member's refinement and self-training file: empty for the first
    (or only) model, "-K" for ensemble member K."""
    return tc.name.removeprefix(RUN)


def member_steps(cfg: TaskPipelineConfig, gpus: int) -> int:
    """The step count of a fixed-length member: member_tokens over what one step trains on `gpus` GPUs (rows
    x seq_len x grad_accum on each)."""
    t = cfg.train
    return max(1, math.ceil(cfg.member_tokens / (t.rows * t.seq_len * t.grad_accum * gpus)))


def member_pipeline(cfg: TaskPipelineConfig, k: int, gpus: int = 1) -> TaskPipelineConfig:
    """The pipeline settings of ensemble member k: the next seed, and 1/ensemble of train.steps and
    train.seconds, or with member_tokens its step count on `gpus` GPUs and all of train.seconds (the time
    budget's share is given by the caller)."""
    n, t = cfg.ensemble, cfg.train
    if cfg.member_tokens:
        steps = member_steps(cfg, gpus)
        return dataclasses.replace(cfg, train=dataclasses.replace(t, seed=t.seed + k, steps=steps))
    share = dataclasses.replace(t, seed=t.seed + k, steps=max(1, round(t.steps / n)), seconds=t.seconds / n)
    return dataclasses.replace(cfg, train=share)


def member_end(cfg: TaskPipelineConfig, t0: float, seconds: float, k: int) -> float:
    """The epoch time by which member k must be trained: its equal share's end, or with member_tokens the end
    of all the training time (its step count bounds it); 0 without a time budget."""
    if not seconds:
        return 0.0
    return t0 + seconds if cfg.member_tokens else t0 + seconds * (k + 1) / cfg.ensemble


def skip_member(cfg: TaskPipelineConfig, k: int, left: float, last: float) -> str:
    """Why member k (with `left` seconds of training time; the member before it took `last`) is not trained,
    or "" to train it. Equal shares: one left under MIN_MEMBER_SECONDS gives its time to the next (the last
    always trains); member_tokens: the members end once the time left is less than the last one took."""
    if cfg.member_tokens:
        return f"{left:.0f} s left, the last member took {last:.0f} s: {k} member(s)" if left < last else ""
    if left < MIN_MEMBER_SECONDS and k < cfg.ensemble - 1:
        return f"{left:.0f} s left for ensemble member {k}: skipped, its time goes to the next"
    return ""


def train_members(
    cfg: TaskPipelineConfig, test_file: Path, out: Path, seconds: float, beside: Path, gpus: int
) -> tuple[list[Path], dict[str, float]]:
    """The run's models (one, or cfg.ensemble in turn), each trained then refined; with `seconds` member k
    ends by member_end, so one that overruns takes from the next member, never from prediction, and
    skip_member says which members are left out. A later member that fails (an out-of-memory, a crashed
    rank) ends the ensemble with one warning: the hours of the members before it are not thrown away; only
    the first member's failure is the run's. Returns the models and the seconds of training and refinement."""
    t0 = time.time()
    models: list[Path] = []
    stages = {"train": 0.0}
    last = 0.0  # the seconds the last member took
    for k in range(cfg.ensemble):
        until = member_end(cfg, t0, seconds, k)
        left = until - time.time() if seconds else 0.0
        why = skip_member(cfg, k, left, last) if seconds and models else ""
        if why and cfg.member_tokens:
            log.info("ensemble: %s", why)
            break
        if why:
            log.warning("%s", why)
            continue
        try:
            model_dir, last = train_member(cfg, k, test_file, out, (left, until), beside, gpus, stages)
        except Exception as e:  # any failure of a later member: keep the members trained
            if not models:
                raise
            log.warning(
                "ensemble: member %d failed (%s: %s): predicting with the %d member(s) trained",
                k,
                type(e).__name__,
                str(e).splitlines()[0] if str(e) else "",
                len(models),
            )
            free_gpu_memory()
            break
        models.append(model_dir)
    return models, stages


def train_member(
    cfg: TaskPipelineConfig,
    k: int,
    test_file: Path,
    out: Path,
    window: tuple[float, float],
    beside: Path,
    gpus: int,
    stages: dict[str, float],
) -> tuple[Path, float]:
    """Train (and refine) ensemble member k in its window (seconds left, the epoch time it must end by);
    adds its seconds to `stages`, returns its model and the seconds its training took."""
    left, until = window
    member = member_pipeline(cfg, k, gpus)
    joint = train_config(member, test_file, out, left * (1 - cfg.refine_share), beside)
    # fitted to the time left, a fixed-length member keeps its step count as the bound of that fit
    bound = {"steps": member.train.steps} if cfg.member_tokens else {}
    joint = dataclasses.replace(joint, name=RUN + (f"-{k}" if k else ""), **bound)
    t = time.time()
    model_dir = train_task_model(joint, gpus)
    took = time.time() - t
    stages["train"] += took
    if cfg.refine_share > 0:
        t = time.time()
        model_dir = refine(member, joint, model_dir, gpus, until)
        stages["refine"] = stages.get("refine", 0.0) + time.time() - t
    return model_dir, took


def _exists(path: str) -> bool:
    try:
        return resolve_path(path).exists()
    except ArcDataError:
        return False


def _stderr_fd() -> int | None:
    """Our stderr's file descriptor for a child's output (the caller's stdout stays clean); None where stderr
    has none (then the child inherits stdout)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):
        return None


def hung_rank_limit(time_budget: float) -> float | None:
    """Seconds to wait for torchrun before killing it as hung (a hung rank must not eat the run): training's
    own hard stop, plus half of it for start-up and saving but at most 10 minutes, plus 5. The cap on the
    extra time matters on long runs: 1.5x of a 10-hour hard stop would wait past Kaggle's deadline, where
    the last checkpoint could still have been predicted from. None without a hard stop."""
    if not time_budget:
        return None
    return time_budget + min(0.5 * time_budget, 600) + 300


def train_task_model(tc: TaskTrainConfig, gpus: int) -> Path:
    """Run (or resume, or skip when finished) the training; returns a loadable task-model directory: the
    final model, or the last checkpoint of a run that the budget stopped early."""
    from arcsub.taskmodel.train import train

    out = Path(tc.out_dir)
    if gpus > 1:
        cfg_file = write_json_atomic(out / f"{tc.name}-train.json", to_dict(tc), indent=2)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"]
        cmd += ["-m", "arcsub.cli", "task-train", "--config", str(cfg_file), "--quiet"]
        log.info("training on %d GPUs: %s", gpus, " ".join(cmd))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(cmd, env=env, stdout=_stderr_fd(), start_new_session=True)
        limit = hung_rank_limit(tc.time_budget)
        try:
            rc = proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its ranks
            rc = proc.wait()
        if rc:
            log.warning("task-train exited with code %d", rc)
    else:
        with contextlib.redirect_stdout(sys.stderr):  # stdout is the caller's (e.g. dry-run --json)
            train(tc, progress=False)
    run = out / tc.name
    if model_finished(run / "model"):
        return run / "model"
    ck = latest_checkpoint(run)
    if ck is not None and (ck / "config.json").exists() and (run / "task_index.json").exists():
        shutil.copy(run / "task_index.json", ck / "task_index.json")
        log.warning("training stopped early: predicting with its last checkpoint")
        return ck
    raise ArcDataError(f"{run}: training left no model and no checkpoint")


def predict_shard(
    rank: int,
    ids: list[str],
    model_dirs: list[str],
    test_file: str,
    out: str,
    cfg: TaskPipelineConfig,
    deadline: float,
    merge: bool = False,
    clock: Callable[[], float] = time.time,
) -> None:
    """One worker (GPU `rank`): predict its tasks not yet in attempts.<rank>.json chunk by chunk, saving
    attempts and predictions after each chunk. Workers leave the merge into submission.json to the caller
    (run_workers); the one in-process shard (`merge`) merges after every chunk itself, so an interruption
    (the notebook's hard deadline) keeps every finished chunk. A chunk that the last one's seconds per task
    say cannot finish before `deadline` (by `clock`) is not started: per task, so that a short last chunk is
    not judged by a full one's time."""
    import torch

    apply_memory_cap()  # a spawned worker does not pass through the entry points

    from arcsub.core.device import pick_dtype
    from arcsub.taskmodel.model import load_task_model
    from arcsub.taskmodel.predict import predict_device, predict_tasks

    if gpu_count() > 1:
        torch.cuda.set_device(rank)
    tasks = load_tasks(test_file)
    out_p = Path(out)
    results = WorkerResults.load(out_p, rank, merge_into=tasks if merge else None)
    todo = [t for t in ids if t not in results.attempts]
    if not todo:
        return
    device = predict_device(cfg.predict)
    dtype = pick_dtype(cfg.predict.dtype, device)
    (model, index), *others = [load_task_model(m, device, dtype) for m in model_dirs]
    per_task_s = 0.0
    for start in range(0, len(todo), cfg.chunk):
        chunk = {t: tasks[t] for t in todo[start : start + cfg.chunk]}
        if clock() + per_task_s * len(chunk) > deadline:
            log.warning(
                "worker %d: time budget spent, %d task(s) keep baseline attempts", rank, len(todo) - start
            )
            break
        t_chunk = clock()
        preds, att = predict_tasks(model, index, chunk, cfg.predict, progress=False, ensemble=others)
        results.add(preds, att)
        per_task_s = (clock() - t_chunk) / len(chunk)
        log.info("worker %d: predicted %d/%d tasks", rank, len(results.attempts), len(ids))


def run_pipeline(
    challenges: str | Path,
    out_dir: str | Path,
    cfg: TaskPipelineConfig,
    solutions: str | Path | None = None,
    task_ids: list[str] | None = None,
) -> dict[str, Any]:
    """Write out_dir/submission.json at once (baseline attempts), train, then improve it; returns a summary."""
    t_start = time.time()
    out, tasks = start_run(challenges, out_dir, task_ids)
    if cfg.per_task:
        return _run_per_task(challenges, out, tasks, cfg, solutions, t_start)
    # the test tasks as training sees them: demonstrations and test inputs, never a test output
    test_file = write_json_atomic(
        out / "test_challenges.json", {t: hide_test_outputs(x).to_json() for t, x in tasks.items()}
    )
    deadline = t_start + cfg.time_budget if cfg.time_budget else float("inf")
    seconds = training_seconds(cfg, time.time() - t_start, len(tasks))
    if cfg.time_budget and seconds < 10:
        raise ArcDataError(f"time_budget={cfg.time_budget:g}: too little time to train a task model")
    gpus = cfg.gpus or max(1, gpu_count())
    solver = start_solver(tasks, out, cfg.solver)
    t0 = time.time()
    models, stages = train_members(cfg, test_file, out, seconds, resolve_path(challenges), gpus)
    ids = list(tasks)
    shards = [ids[r::gpus] for r in range(min(gpus, len(ids)))]
    args = ([str(m) for m in models], str(test_file), str(out), cfg, deadline)
    if len(shards) == 1:
        predict_shard(0, shards[0], *args, merge=True)
    else:
        run_workers(predict_shard, shards, args, out, tasks)
    wait_solver(solver, deadline - time.time())
    attempts = merge_attempts(out, tasks)
    summary: dict[str, Any] = {
        "submission": str(out / "submission.json"),
        "tasks": len(tasks),
        "predicted": len(attempts),
        "workers": len(shards),
        "model": str(models[0]),
        **({"ensemble": [str(m) for m in models[1:]]} if len(models) > 1 else {}),
        "stage_seconds": {k: round(v, 1) for k, v in stages.items()},
    }
    summary["stage_seconds"]["predict"] = round(time.time() - t0 - sum(stages.values()), 1)
    return finish_run(out, tasks, solutions, summary, t_start)


def refine(cfg: TaskPipelineConfig, joint: TaskTrainConfig, model_dir: Path, gpus: int, until: float) -> Path:
    """The refined model (trained until the epoch time `until`; 0: no budget), or the joint one where the
    budget leaves too little time (a joint run that overran its share, or a budget too small to compile and
    warm up again)."""

    def left() -> float:
        return until - time.time() if until else 0.0

    if until and left() < MIN_REFINE_SECONDS:
        return _keep_joint(model_dir, left())
    test_tasks = None
    if cfg.refine_self_train:
        test_file = Path(joint.data.ttt_challenges[0])
        test_tasks = write_self_train_file(
            model_dir,
            test_file,
            Path(joint.out_dir) / SELF_TRAIN_FILE.replace(".json", member_suffix(joint) + ".json"),
            cfg.self_train,
            cfg.predict,
        )
        if until and left() < MIN_REFINE_SECONDS:
            return _keep_joint(model_dir, left())
    return train_task_model(refine_config(cfg, joint, model_dir, left(), test_tasks), gpus)


def _keep_joint(model_dir: Path, seconds: float) -> Path:
    log.warning(
        "%.0f s left for refinement (< %.0f): predicting with the joint model", seconds, MIN_REFINE_SECONDS
    )
    return model_dir


def _run_per_task(
    challenges: str | Path,
    out: Path,
    tasks: dict[str, Task],
    cfg: TaskPipelineConfig,
    solutions: str | Path | None,
    t_start: float,
) -> dict[str, Any]:
    """The per-task ablation: the joint pipeline on each task alone (out/per-task/<id>), in turn on one GPU;
    submission.json improves after every task, and a task finished by an earlier run is not redone."""
    results = WorkerResults.load(out, 0, merge_into=tasks)
    one = dataclasses.replace(cfg, per_task=False, gpus=1)
    todo = [t for t in tasks if t not in results.attempts]
    for i, tid in enumerate(todo):
        left = cfg.time_budget - (time.time() - t_start) if cfg.time_budget else 0.0
        if cfg.time_budget and left < 20 * (len(todo) - i):  # a task model needs ~10 s of training at least
            log.warning("time budget spent: %d task(s) keep baseline attempts", len(todo) - i)
            break
        sub = dataclasses.replace(one, time_budget=left / (len(todo) - i) if cfg.time_budget else 0.0)
        task_out = task_path(out / "per-task", tid)
        run_pipeline(challenges, task_out, sub, task_ids=[tid])
        task_results = WorkerResults.load(task_out, 0)
        results.add(task_results.predictions, task_results.attempts)
    summary: dict[str, Any] = {
        "submission": str(out / "submission.json"),
        "tasks": len(tasks),
        "predicted": sum(t in results.attempts for t in tasks),
        "workers": 1,
        "model": str(out / "per-task"),
        "stage_seconds": {"per_task": round(time.time() - t_start, 1)},
    }
    return finish_run(out, tasks, solutions, summary, t_start)
