"""Training the task-embedding model: pretraining, joint test-time training, or both at once from scratch.

Three modes, one loop (set `mode` in the config):

- pretrain: training tasks (every pair, test pairs with solutions) and RE-ARC pairs, from a preset or a model.
- ttt: continue a pretrained model on the demonstration pairs of all test tasks at once; every test task
  gets a new embedding row (`add_tasks`); full fine-tuning or only the task rows (`trainable: tasks`).
- transductive: from scratch on training tasks, RE-ARC and the test demonstrations together (mdlARC's recipe).

Test outputs are never read for test tasks (taskdata loads their demonstrations only, and refuses a test task
that is also a training task). The run directory is named from the config; checkpoints are atomic, resume is
exact (data is a pure function of (seed, step, rank)), `time_budget` saves and stops so long runs fit in short
calls, and the same command resumes. bf16 autocast on CUDA, flex_attention for packed rows, optional compile.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from arcsub.core.config import added_field, merge_mapping, settings_dict, settings_hash, to_dict
from arcsub.core.data import ArcDataError, write_json_atomic
from arcsub.core.device import BF16_CAPABILITY, capability, pick_dtype
from arcsub.core.encode import build_compact_tokenizer
from arcsub.core.modeldir import count_params, model_finished
from arcsub.taskmodel.data import IGNORE, SOURCES, PairSource, TaskDataSettings, TaskIndex, TaskStepBatches
from arcsub.taskmodel.model import (
    PRESETS,
    ArcTaskForCausalLM,
    load_task_model,
    next_token_losses,
    packed_block_mask,
    preset_config,
    save_task_model,
)
from arcsub.training.muon import build_muon
from arcsub.training.runtime import (
    DdpSettings,
    OptimSettings,
    backward_micro_steps,
    build_optimizer,
    checkpoint_or_stop,
    clear_checkpoints,
    decay_start,
    latest_checkpoint,
    log_record,
    lr_at,
    make_scaler,
    open_log,
    optimizer_step,
    resume,
    scaled_lr,
    setup_distributed,
    step_loader,
    teardown_distributed,
    unwrap,
    weights_saver,
    wrap_for_training,
)


@dataclass
class TaskOptimSettings(OptimSettings):
    """arcsub.training.runtime's optimizer settings with Muon-family options; NorMuon + warmup-stable-decay by default."""

    name: str = "normuon"  # adamw | adamw8bit | muon | normuon (Muon for hidden matrices, AdamW for the rest)
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 200
    schedule: str = "wsd"
    decay_frac: float = 0.2
    min_lr_ratio: float = 0.0
    momentum: float = 0.95  # Muon momentum
    beta2: float = 0.95  # NorMuon's per-row second moment
    ns_steps: int = 5  # Newton-Schulz iterations
    lr_scaling: Literal["none", "sqrt", "linear"] = added_field(default="none")  # lr x world^p under DDP


@dataclass
class TaskTrainConfig:
    """Everything a task-model training run depends on; the run directory is named from it."""

    mode: Literal["pretrain", "ttt", "transductive"] = "pretrain"
    model: str = "base"  # a preset (from scratch) or a task-model directory to continue from
    data: TaskDataSettings = field(default_factory=TaskDataSettings)
    optim: TaskOptimSettings = field(default_factory=TaskOptimSettings)
    trainable: Literal["all", "tasks"] = (
        "all"  # tasks: only the task-embedding table learns (test-time training)
    )
    dropout: float | None = None  # override the model's dropout
    # architecture ablations, for a preset trained from scratch (None: the preset's 3-D positions, task rows on)
    positions: Literal["3d", "1d"] | None = None
    task_embedding: bool | None = None
    steps: int = 1000  # with `seconds`: the most steps the fitted schedule may take
    seconds: float = 0.0  # >0: fit the step count (and so the lr schedule) to this much training time
    rows: int = 4  # packed rows per device and micro-step
    seq_len: int = 8192  # tokens per packed row (a pair is at most 1863)
    grad_accum: int = 1
    dtype: str = "auto"  # auto | bf16 | fp16 | fp32
    attn: Literal["auto", "sdpa", "flex"] = "auto"  # auto: flex on Ampere+ GPUs, sdpa elsewhere (T4, CPU)
    compile: bool = False
    seed: int = 0
    workers: int = 2
    save_every: int = 500
    log_every: int = 10
    time_budget: float = 0.0  # seconds; >0 saves a checkpoint and stops when spent (re-run to resume)
    out_dir: str = "runs"
    name: str = ""  # run directory name; empty: task-<mode>__<model>__<steps>st__<settings hash>
    ddp: DdpSettings = added_field(default_factory=DdpSettings)  # all-reduce settings (several GPUs)


_NOT_IN_NAME = {"workers", "save_every", "log_every", "time_budget", "out_dir", "name", "ddp"}


def run_name(cfg: TaskTrainConfig) -> str:
    if cfg.name:
        return cfg.name
    from arcsub.core.runs import model_label

    keep_ = {k: v for k, v in settings_dict(cfg).items() if k not in _NOT_IN_NAME}
    model = cfg.model if cfg.model in PRESETS else model_label(cfg.model)
    return f"task-{cfg.mode}__{model}__{cfg.steps}st__{settings_hash(keep_)}"


def check_config(cfg: TaskTrainConfig) -> None:
    """The data and starting point each mode needs, as one-line errors."""
    d, from_scratch = cfg.data, cfg.model in PRESETS
    if cfg.mode == "pretrain" and d.ttt_challenges:
        raise ArcDataError(
            "config: mode=pretrain takes no data.ttt_challenges (use mode=ttt or transductive)"
        )
    if cfg.mode == "pretrain" and not (d.challenges or d.re_arc or d.generated):
        raise ArcDataError("config: mode=pretrain needs data.challenges, data.re_arc and/or data.generated")
    if cfg.mode in ("ttt", "transductive") and not d.ttt_challenges:
        raise ArcDataError(f"config: mode={cfg.mode} needs data.ttt_challenges (the test tasks)")
    if cfg.mode == "ttt" and from_scratch:
        raise ArcDataError("config: mode=ttt continues a pretrained model: set model to its directory")
    if cfg.mode == "transductive" and not from_scratch:
        raise ArcDataError(
            f"config: mode=transductive trains from scratch: model must be a preset ({', '.join(PRESETS)})"
        )
    if cfg.trainable == "tasks" and from_scratch:
        raise ArcDataError("config: trainable=tasks needs a pretrained model")
    if cfg.steps < 1 or cfg.rows < 1 or cfg.grad_accum < 1:
        raise ArcDataError("config: steps, rows and grad_accum must be at least 1")
    if not 0 <= cfg.data.scale <= 1:
        raise ArcDataError("config: data.scale is a chance, in [0, 1]")
    if not 0 <= cfg.data.input_loss <= 1:
        raise ArcDataError("config: data.input_loss is a chance, in [0, 1]")
    if cfg.data.test_input_weight < 0:
        raise ArcDataError("config: data.test_input_weight is a source weight, 0 or more")


def check_same_run(run: Path, cfg: TaskTrainConfig) -> None:
    """Resuming (or skipping) a run directory written with other settings would mix two runs: refuse.

    Only possible with a fixed `name`; hashed names differ whenever the settings do. `seconds` does not count
    once the step count is fitted (plan.json: a resumed run keeps its plan) or before anything is saved (the
    run starts afresh): the competition path fits each call's seconds to the time left, so a rerun of the
    same command asks for slightly other seconds and must still resume. Nor does `steps` once planned: it
    bounds the plan's count (StepPlan shortens the plan with it)."""
    saved = run / "config.json"
    if not saved.exists():
        return
    planned = (run / "plan.json").exists()
    ignore = _NOT_IN_NAME | ({"seconds"} if planned or latest_checkpoint(run) is None else set())
    ignore |= {"steps"} if planned else set()  # a bound on the plan's count: lower, it shortens the run
    old, new = (
        {k: v for k, v in c.items() if k not in ignore}
        for c in (_saved_settings(saved), json.loads(json.dumps(settings_dict(cfg))))
    )
    diff = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))  # a key added since: None
    if diff:
        raise ArcDataError(
            f"{run}: holds a run with other settings ({', '.join(diff)} differ); change `name`"
        )


def _saved_settings(saved: Path) -> dict:
    """A saved config.json as `settings_dict` sees it: keys added to the config since the run was written take
    their defaults (which is how that run behaved), so an older run still matches its config."""
    raw = json.loads(saved.read_text())
    try:
        return json.loads(json.dumps(settings_dict(merge_mapping(TaskTrainConfig(), raw))))
    except ArcDataError:  # a key that no longer exists, or a changed type: compare the raw settings
        return raw


def build_model(cfg: TaskTrainConfig, source: PairSource) -> tuple[ArcTaskForCausalLM, TaskIndex]:
    """A fresh preset with one row per task of the data, or a saved model extended with rows for new tasks."""
    torch.manual_seed(cfg.seed)
    if cfg.model in PRESETS:
        index = TaskIndex(source.task_ids)
        arch = {"dropout": cfg.dropout, "positions": cfg.positions, "task_embedding": cfg.task_embedding}
        extra = {k: v for k, v in arch.items() if v is not None}
        return ArcTaskForCausalLM(preset_config(cfg.model, len(index), **extra)), index
    model, index = load_task_model(cfg.model)
    for key in ("positions", "task_embedding"):
        if getattr(cfg, key) is not None and getattr(cfg, key) != getattr(model.config, key):
            raise ArcDataError(f"{cfg.model}: {key}={getattr(model.config, key)}; a trained model keeps it")
    model.add_tasks(len(index.add(source.task_ids)))
    if cfg.dropout is not None:
        model.config.dropout = cfg.dropout
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = cfg.dropout
    return model, index


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of one (seed, step, rank): random draws (dropout) need no RNG state in checkpoints."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1)[0])


def pick_attention(attn: str, device: torch.device) -> str:
    """flex_attention (block-sparse packed rows) where it was tested: CUDA GPUs of compute capability >= 8.0
    (its Triton kernels); elsewhere (T4, CPU) SDPA with dense per-row masks, slower but everywhere."""
    if attn != "auto":
        return attn
    cap = capability(device)
    return "flex" if cap is not None and cap >= BF16_CAPABILITY else "sdpa"


DENSE_ROW = 2048  # tokens per row with dense masks; a pair is at most 1863 tokens, so every pair fits


def row_layout(cfg: TaskTrainConfig, backend: str) -> tuple[int, int]:
    """(rows, tokens per row) of a micro-step. Dense SDPA masks cost in proportion to the row length (flex skips
    the blocks between pairs), so with sdpa (T4, CPU) long rows become 2048-token rows holding the same tokens:
    by FLOP count ~1.9x less work per step for `base` at 8192 (attention 302M -> 75M FLOP per token beside
    170M for the weights), and masks 16x smaller."""
    if backend != "sdpa" or cfg.seq_len <= DENSE_ROW or cfg.seq_len % DENSE_ROW:
        return cfg.rows, cfg.seq_len
    return cfg.rows * (cfg.seq_len // DENSE_ROW), DENSE_ROW


CALIBRATE = (10, 40)  # steps after a session's start: timed between the two, after compilation
# with a wsd or constant schedule the fit is refreshed every REFIT steps until the decay would start, from the
# time per step since calibration: checkpoint saves and data stalls, which steps 10-40 do not see, count too
# (an H100 pipeline run planned 30 ms/step and averaged 35 ms: training ran 13 % over its seconds without it)
REFIT = 200


def fit_steps(cfg: TaskTrainConfig, step: int, sps: float, elapsed: float, dist, device) -> int:
    """The step count that ends training after about cfg.seconds, from the measured seconds per step.

    Called while the learning rate is still warming up (so no schedule point has been passed), and again by
    `refit`; under DDP the ranks take the smallest count so that they stop together."""
    steps = min(cfg.steps, step + max(1, int((cfg.seconds - elapsed) / max(sps, 1e-9))))
    if dist.world > 1:
        t = torch.tensor(steps, device=device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MIN)
        steps = int(t)
    return steps


def refit(
    cfg: TaskTrainConfig, step: int, total: int, sps: float, elapsed: float, dist, device
) -> int | None:
    """A new step count from the time per step measured so far, or None once the decay has begun (with it the
    schedule would jump). Only wsd and constant schedules hold the lr flat until then, so only they refit."""

    if cfg.optim.schedule not in ("wsd", "constant") or step >= decay_start(total, cfg.optim):
        return None
    new = fit_steps(cfg, step, sps, elapsed, dist, device)  # same on every rank: the decision is too
    return new if step < decay_start(new, cfg.optim) else None


Clock = Callable[[], float]


def _synced_time(device: torch.device, clock: Clock) -> float:
    """The clock once the GPU has finished the queued work, so step timings are not the launch times."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    return clock()


def task_optimizer(model, o: TaskOptimSettings, device: torch.device) -> torch.optim.Optimizer:
    """The run's optimizer: the Muon family (arcsub.training.muon) or the shared AdamW builders."""
    return build_muon(model, o) if o.name in ("muon", "normuon") else build_optimizer(model, o, device)


class StepPlan:
    """How many steps a run takes: cfg.steps, or with `seconds` a count fitted from the time per step measured
    between steps CALIBRATE (inside the warm-up, before any schedule point) and refitted every REFIT steps
    until the decay starts. The count is kept in plan.json, so a resumed run keeps its plan."""

    def __init__(self, cfg: TaskTrainConfig, run: Path, start: int, dist, device, clock: Clock):
        self.cfg, self.file, self.start = cfg, run / "plan.json", start
        self.dist, self.device, self.clock = dist, device, clock
        self.total = self._planned(dist) if self.file.exists() else cfg.steps
        self.calibrate = cfg.seconds > 0 and not self.file.exists()
        self.refitting = False  # set once the first fit is made: a resumed run keeps its plan's count
        if self.calibrate and start + CALIBRATE[1] > cfg.optim.warmup:
            raise ArcDataError(
                f"config: seconds needs optim.warmup >= {CALIBRATE[1]} (the step count is fitted then)"
            )
        self.t_cal = self.t_fit = 0.0
        self.step_fit = start

    def _planned(self, dist) -> int:
        """The saved step count, or `steps` when that is lower: a chained run whose calls run short of time
        is shortened on resume. Only while the resumed step comes before the shortened run's lr decay (wsd:
        its last decay_frac; cosine: the warm-up's end), so the schedule stays what an uninterrupted run of
        that length would follow; later the count that the lr already depends on is kept or refused."""
        plan = json.loads(self.file.read_text())
        if self.cfg.steps >= plan["steps"]:
            return plan["steps"]
        start = decay_start(self.cfg.steps, self.cfg.optim)
        if self.start >= start or self.cfg.steps <= self.start:
            raise ArcDataError(
                f"{self.file}: steps={self.cfg.steps} cannot shorten this run of {plan['steps']} steps at step "
                f"{self.start}: its lr decay would start at step {start}, before the checkpoint"
            )
        if dist.main:
            write_json_atomic(self.file, {**plan, "steps": self.cfg.steps}, indent=2)
            print(
                f"arcsub task-train: plan shortened from {plan['steps']} to {self.cfg.steps} steps "
                f"(lr decay from step {start})",
                flush=True,
            )
        return self.cfg.steps

    def after_step(self, step: int, t0: float) -> bool:
        """Time the step where a fit is due; True when the total changed."""
        if self.calibrate and step == self.start + CALIBRATE[0]:
            self.t_cal = _synced_time(self.device, self.clock)
            return False
        due = (self.calibrate and step == self.start + CALIBRATE[1]) or (
            self.refitting and (step - self.start) % REFIT == 0
        )
        if not due:
            return False
        now = _synced_time(self.device, self.clock)
        if self.calibrate:  # the first fit: the plan is written even when the count stays cfg.steps
            sps = (now - self.t_cal) / (CALIBRATE[1] - CALIBRATE[0])
            new = fit_steps(self.cfg, step, sps, now - t0, self.dist, self.device)
            self.t_fit, self.step_fit, show = now, step, True
        else:
            sps = (now - self.t_fit) / (step - self.step_fit)
            new = refit(self.cfg, step, self.total, sps, now - t0, self.dist, self.device)
            show = new is not None and abs(new - self.total) > 0.01 * self.total
        changed = new is not None and (self.calibrate or new != self.total)
        if changed:
            self.total = new
            if self.dist.main:
                write_json_atomic(self.file, {"steps": self.total, "seconds_per_step": sps}, indent=2)
        if self.dist.main and show:
            print(
                f"arcsub task-train: {sps * 1e3:.0f} ms/step: {self.total} steps fit {self.cfg.seconds:.0f} s"
                + ("" if self.calibrate else f" (refitted at step {step})"),
                flush=True,
            )
        self.calibrate, self.refitting = False, new is not None
        return changed


def training_model(cfg: TaskTrainConfig, device: torch.device):
    """The model as a run trains it (fresh or continued, task rows added, on `device` in train mode, its
    attention backend picked, only the task rows trainable with trainable=tasks), its task index and the data
    source; nothing written (bench/bench_task_step.py times steps of exactly this model)."""
    source = PairSource(cfg.data, max_tokens=cfg.seq_len)
    model, index = build_model(cfg, source)
    model.to(device).train()
    model.attn_backend = pick_attention(cfg.attn, device)
    if cfg.trainable == "tasks":
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("embed_tasks."))
    return model, index, source


def _prepare(cfg: TaskTrainConfig, run: Path, dist, device: torch.device):
    """training_model, with the run folder's config and index written by the main rank."""
    model, index, source = training_model(cfg, device)
    if dist.main:
        run.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run / "config.json", to_dict(cfg), indent=2)
        index.save(run)
    return model, index, source


class SourceLoss:
    """One step's summed loss and label count per data source (SOURCES), kept on the device and read only
    when the step is logged. Why: the joint run mixes training tasks, RE-ARC and the test tasks'
    demonstrations; a demonstration loss far below the rest says the model memorises the test tasks' few
    pairs (the ARC-AGI-2 plateau, docs/experiments/arc2.md) rather than learning what transfers."""

    def __init__(self, device: torch.device):
        self.loss = torch.zeros(len(SOURCES), device=device)
        self.labels = torch.zeros(len(SOURCES), device=device)

    def reset(self) -> None:
        self.loss.zero_()
        self.labels.zero_()

    def add(self, token_loss: torch.Tensor, labels: torch.Tensor, sources: torch.Tensor) -> None:
        """token_loss: next_token_losses of a batch; labels and sources: the batch's, row by row."""
        target, src = labels[:, 1:].flatten(), sources[:, 1:].flatten()
        self.loss.index_add_(0, src, token_loss.detach())
        self.labels.index_add_(0, src, (target != IGNORE).float())

    def record(self) -> dict[str, float]:
        """Mean loss per label of each source seen this step (a GPU sync: call it at logged steps only)."""
        loss, n = self.loss.tolist(), self.labels.tolist()
        return {name: round(loss[i] / n[i], 5) for i, name in enumerate(SOURCES) if n[i] > 0}


def step_loss(fwd, model, device: torch.device, n_label: int, by_source: SourceLoss):
    """The loss of one packed micro-batch, summed over its labels and divided by the step's label count;
    each token's loss is also added to `by_source`."""

    def loss_of(b) -> torch.Tensor:
        b = b.to(device)
        block_mask = packed_block_mask(b.input_ids) if model.attn_backend == "flex" else None
        logits = fwd(
            input_ids=b.input_ids,
            task_ids=b.task_ids,
            view_ids=b.view_ids,
            packed=True,
            block_mask=block_mask,
        ).logits
        token_loss = next_token_losses(logits, b.labels)
        by_source.add(token_loss, b.labels, b.source_ids)
        return token_loss.sum() / max(1, n_label)

    return loss_of


def _save_final(cfg: TaskTrainConfig, run: Path, model, index: TaskIndex, total: int, n_params: int) -> None:
    info = {"mode": cfg.mode, "base": cfg.model, "steps": total, "params": n_params, "config": to_dict(cfg)}
    save_task_model(unwrap(model).float(), index, run / "model", info)
    clear_checkpoints(run)
    print(f"arcsub task-train: saved {run / 'model'}", flush=True)


def train(cfg: TaskTrainConfig, progress: bool = True, clock: Clock = time.time) -> Path:
    """Run (or resume) a task-model training run; returns its directory, whose model/ holds the result.

    `clock` times everything that depends on time (the `seconds` fit and refits, time_budget, the log's
    rates): tests pass a fake one that advances per step, so their step counts do not depend on machine load.
    The loop stays in one function on purpose (~70 lines): the order of a step's parts is what makes a
    resumed run equal to an uninterrupted one; the parts are StepPlan's and training.runtime's."""
    check_config(cfg)
    run = Path(cfg.out_dir) / run_name(cfg)
    check_same_run(run, cfg)
    if model_finished(run / "model"):
        print(f"arcsub task-train: {run / 'model'} already finished", flush=True)
        return run
    dist = setup_distributed()
    device = torch.device(f"cuda:{dist.local}" if torch.cuda.is_available() else "cpu")
    dtype = pick_dtype(cfg.dtype, device)
    model, index, source = _prepare(cfg, run, dist, device)
    tok = build_compact_tokenizer()
    opt = task_optimizer(model, cfg.optim, device)
    scaler = make_scaler(dtype)
    start = resume(run, model, opt, scaler, device)
    plan = StepPlan(cfg, run, start, dist, device, clock)
    fwd = wrap_for_training(model, dist, device, cfg.compile, cfg.ddp)
    base_lr = scaled_lr(cfg.optim.lr, cfg.optim.lr_scaling, dist.world)
    ga = cfg.grad_accum
    rows, seq_len = row_layout(cfg, model.attn_backend)
    batches = TaskStepBatches(source, index, cfg.seed, start * ga, cfg.steps * ga, dist.rank, rows, seq_len)
    loader = step_loader(batches, cfg.workers, device)
    n_params = count_params(model)
    if dist.main:
        layout = (rows, seq_len)
        _announce(
            cfg,
            run,
            plan,
            n_params,
            len(index),
            f"{device} {str(dtype).removeprefix('torch.')}",
            model.attn_backend,
            layout,
            dist.world,
        )
    log = open_log(run, start) if dist.main else None
    bar = tqdm(
        total=plan.total, initial=start, disable=not (progress and dist.main), desc="task-train", unit="step"
    )
    t0 = window_t = clock()
    window_tokens, window_step, step, it = 0, start, start, iter(loader)
    by_source = SourceLoss(device)
    while step < plan.total:
        micro = [next(it) for _ in range(ga)]
        torch.manual_seed(step_seed(cfg.seed, step, dist.rank))  # dropout: resumable, on CPU and CUDA alike
        window_tokens += sum(int((b.input_ids != model.config.pad_token_id).sum()) for b in micro)
        by_source.reset()
        loss_of = step_loss(fwd, model, device, sum(b.n_label for b in micro), by_source)
        loss_sum = backward_micro_steps(fwd, micro, loss_of, dist, device, dtype, scaler)
        lr = base_lr * lr_at(step, cfg.optim, plan.total)
        gnorm = optimizer_step(model, opt, scaler, cfg.optim.grad_clip, lr)
        step += 1
        bar.update(1)
        if plan.after_step(step, t0):
            bar.total = plan.total
        if dist.main and (step % cfg.log_every == 0 or step == plan.total):
            now = clock()
            # timed over the last window only, so compilation in the first one does not skew the eta
            seconds_per_step = (now - window_t) / max(1, step - window_step)
            tps = window_tokens * dist.world / max(now - window_t, 1e-9)
            rec = log_record(step, loss_sum, lr, gnorm, tps, now - t0)
            rec["eta_s"] = round((plan.total - step) * seconds_per_step)
            rec["loss_by_source"] = by_source.record()
            log.write(json.dumps(rec) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{rec['loss']:.4f}", tok_s=f"{rec['tokens_per_s'] / 1e3:.0f}k")
            window_tokens, window_t, window_step = 0, now, step
        state = dataclasses.replace(cfg, steps=plan.total)
        saver = weights_saver(model, tok, "task", step)
        if checkpoint_or_stop(run, saver, opt, step, state, scaler, dist, device, t0, "task-train", clock()):
            break
    bar.close()
    if dist.main and step >= plan.total:
        _save_final(cfg, run, model, index, plan.total, n_params)
    if log:
        log.close()
    teardown_distributed(dist)
    return run


def _announce(cfg, run, plan: StepPlan, n_params, n_tasks, where: str, attn, layout, world: int) -> None:
    """The run's one-line summary (and what differs from the config: scaled lr, dense-attention rows)."""
    lr = scaled_lr(cfg.optim.lr, cfg.optim.lr_scaling, world)
    if lr != cfg.optim.lr:
        print(
            f"arcsub task-train: lr {cfg.optim.lr:g} x {world} ranks ({cfg.optim.lr_scaling}): {lr:g}",
            flush=True,
        )
    if layout != (cfg.rows, cfg.seq_len):
        print(
            f"arcsub task-train: dense attention: {layout[0]} rows of {layout[1]} tokens per step", flush=True
        )
    print(
        f"arcsub task-train: {run} | {cfg.mode} | {n_params / 1e6:.1f}M params, {n_tasks} tasks | "
        f"{where} {attn} | steps {plan.start}->{plan.total}"
        + (f" (fitted to {cfg.seconds:.0f} s at step {plan.start + CALIBRATE[1]})" if plan.calibrate else ""),
        flush=True,
    )
