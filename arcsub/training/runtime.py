"""The training loop's shared runtime, used by both model families' trainers: optimizer settings and the
learning-rate schedule, mixed precision (loss scaling for fp16), the distributed set-up under torchrun, the
time budget, the DataLoader of ready-made steps, and checkpoints that a rerun of the same command resumes.
"""

from __future__ import annotations

import contextlib
import errno
import importlib.util
import json
import math
import os
import pickle
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from arcsub.core.config import to_dict
from arcsub.core.data import (
    ArcDataError,
    is_complete,
    save_dir_atomic,
    write_bytes_atomic,
    write_json_atomic,
)
from arcsub.core.modeldir import check_safetensors, save_model

SaveWeights = Callable[[Path], None]  # writes the model's files into a folder (a checkpoint's or model/)


def weights_saver(model, tok, fmt: str, step: int) -> SaveWeights:
    """What a checkpoint stores of a run: the model (or its LoRA adapter) and tokenizer, as save_model writes."""
    return lambda folder: save_model(unwrap(model), tok, folder, {"format": fmt, "step": step})


def _pass_through(batch):
    """DataLoader collate for ready-made batches (batch_size=None): pass through unchanged."""
    return batch


@dataclass
class OptimSettings:
    name: str = "adamw"  # adamw | adamw8bit (bitsandbytes)
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.95)
    warmup: int = 100
    schedule: str = "cosine"  # cosine | wsd (warmup-stable-decay) | constant
    decay_frac: float = 0.2  # wsd: share of steps spent decaying
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0


def decay_start(total: int, o: OptimSettings) -> int:
    """The first step whose lr depends on `total`: wsd decays over the last decay_frac, constant never does,
    cosine from the end of the warm-up. Before it a run's step count may change without a jump in the lr."""
    if o.schedule == "wsd":
        return int(total * (1 - o.decay_frac))
    return total if o.schedule == "constant" else o.warmup


def lr_at(step: int, o: OptimSettings, total: int) -> float:
    """Learning-rate multiplier: linear warmup, then cosine / warmup-stable-decay / constant."""
    if step < o.warmup:
        return (step + 1) / max(1, o.warmup)
    if o.schedule == "constant":
        return 1.0
    if o.schedule == "wsd":
        start = decay_start(total, o)
        if step < start:
            return 1.0
        frac = (step - start) / max(1, total - start)
        return 1.0 - (1.0 - o.min_lr_ratio) * frac
    frac = (step - o.warmup) / max(1, total - o.warmup)
    return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> float:
    """Set every group's learning rate (the schedule is a pure function of the step: nothing to resume)."""
    for g in opt.param_groups:
        g["lr"] = lr
    return lr


def check_optimizer(name: str, key: str = "optim.name") -> None:
    """One-line errors for an optimizer name, before a run makes its folders: unknown, or adamw8bit without
    bitsandbytes."""
    if name not in ("adamw", "adamw8bit"):
        raise ArcDataError(f"config: unknown optimizer {key}={name!r} (adamw | adamw8bit)")
    if name == "adamw8bit" and importlib.util.find_spec("bitsandbytes") is None:
        raise ArcDataError(f"{key}=adamw8bit needs bitsandbytes: pip install arcsub[bnb]")


def build_optimizer(model, o: OptimSettings, device: torch.device) -> torch.optim.Optimizer:
    check_optimizer(o.name)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if o.name == "adamw8bit":
        import bitsandbytes as bnb

        return bnb.optim.AdamW8bit(groups, lr=o.lr, betas=o.betas)
    return torch.optim.AdamW(groups, lr=o.lr, betas=o.betas, fused=device.type == "cuda")


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """DDP when launched by torchrun (WORLD_SIZE > 1): NCCL on GPUs, gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Dist(dist.get_rank(), world, local)


def teardown_distributed(dist: Dist) -> None:
    """Wait for every rank (rank 0 may still be saving the model), then leave the process group: a rank that
    left early made gloo's teardown hang on the slower one. Under gloo (CPU) the group is left to the
    process's exit: destroy_process_group itself hung once after the barrier (rank 1 gone, rank 0 waiting),
    and nothing follows it in this process."""
    if dist.world > 1:
        torch.distributed.barrier()
        if torch.distributed.get_backend() != "gloo":
            torch.distributed.destroy_process_group()


def make_scaler(dtype: torch.dtype) -> torch.amp.GradScaler | None:
    """Loss scaling for fp16 (T4 has no bf16); None for bf16 and fp32."""
    return torch.amp.GradScaler("cuda") if dtype == torch.float16 else None


def optimizer_step(model, opt, scaler, grad_clip: float, lr: float) -> torch.Tensor:
    """One update: set the lr, unscale (fp16), clip, step, zero the grads. Returns the gradient norm as a
    tensor (read it only when logging: no GPU sync per step)."""
    set_lr(opt, lr)
    if scaler:
        scaler.unscale_(opt)
    params = [p for p in model.parameters() if p.requires_grad]
    gnorm = torch.nn.utils.clip_grad_norm_(params, grad_clip) if grad_clip else torch.zeros(())
    if scaler:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    opt.zero_grad(set_to_none=True)
    return gnorm


def backward_micro_steps(
    fwd, micro: list, loss_of: Callable, dist: Dist, device, dtype, scaler
) -> torch.Tensor:
    """Forward and backward of one step's micro-batches: gradients all-reduced only on the last (no_sync before
    it), autocast in `dtype`, loss scaling for fp16. Returns the summed loss as a tensor, read back only when
    logging (no GPU sync per step). `loss_of(batch)` moves the batch to the device and returns its loss."""
    loss_sum = torch.zeros((), device=device)
    for i, b in enumerate(micro):
        ctx = fwd.no_sync() if dist.world > 1 and i < len(micro) - 1 else contextlib.nullcontext()
        with ctx, torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = loss_of(b)
        (scaler.scale(loss) if scaler else loss).backward()
        loss_sum += loss.detach()
    return loss_sum


def log_record(
    step: int, loss_sum: torch.Tensor, lr: float, gnorm, tokens_per_s: float, elapsed_s: float
) -> dict:
    """One line of a run's log.jsonl (both trainers write the same keys; `arcsub plot` reads them)."""
    return {
        "step": step,
        "loss": round(float(loss_sum), 5),
        "lr": lr,
        "grad_norm": float(gnorm),
        "tokens_per_s": round(tokens_per_s),
        "elapsed_s": round(elapsed_s, 2),
    }


def budget_spent(
    budget: float, t0: float, dist: Dist, device: torch.device, now: float | None = None
) -> bool:
    """Whether the time budget is spent; under DDP all ranks agree (any rank out of time stops every rank at
    the same step, else the others would hang in the next collective). `now` (default: time.time()) lets a
    caller with its own clock (taskmodel.train's, replaced in tests) measure against the same t0."""
    spent = budget > 0 and (time.time() if now is None else now) - t0 > budget
    if dist.world > 1 and budget > 0:
        flag = torch.tensor(int(spent), device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        spent = bool(flag)
    return spent


def step_loader(batches, workers: int, device: torch.device) -> torch.utils.data.DataLoader:
    """The training loop's batches (already whole steps, built by `workers` processes), pinned for CUDA."""
    return torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        num_workers=workers,
        collate_fn=_pass_through,
        pin_memory=device.type == "cuda",
        prefetch_factor=4 if workers else None,
    )


@dataclass
class DdpSettings:
    """DistributedDataParallel's gradient all-reduce: for a small model, launch and all-reduce latency, not
    compute, bound the step (29M task model: 1.1M tok/s on one H200, 1.29M on four at a fixed global batch),
    so bucket size and graph reuse are worth measuring."""

    bucket_mb: int = 25  # gradients per all-reduce bucket (torch's default 25)
    gradient_as_bucket_view: bool = False  # grads alias the buckets: one copy less per step
    static_graph: bool = False  # the same parameters get gradients every step: DDP may skip re-checking


def ddp_kwargs(ddp: DdpSettings) -> dict:
    return {
        "bucket_cap_mb": ddp.bucket_mb,
        "gradient_as_bucket_view": ddp.gradient_as_bucket_view,
        "static_graph": ddp.static_graph,
    }


def wrap_for_training(
    model, dist: Dist, device: torch.device, compile_: bool, ddp: DdpSettings | None = None
):
    """The module the loop calls: DDP across ranks when launched by torchrun, then torch.compile if asked."""
    fwd = model
    if dist.world > 1:
        fwd = torch.nn.parallel.DistributedDataParallel(
            model,
            device_ids=[dist.local] if device.type == "cuda" else None,
            **ddp_kwargs(ddp or DdpSettings()),
        )
    return torch.compile(fwd) if compile_ else fwd


LR_SCALING = {"none": 0.0, "sqrt": 0.5, "linear": 1.0}  # exponent of the global batch's growth


def scaled_lr(lr: float, scaling: str, world: int) -> float:
    """The learning rate for `world` ranks that each keep their rows (the global batch grows `world`-fold):
    lr x world^p with p = 0 (none), 1/2 (sqrt: keeps the update's noise scale, the usual rule for Adam-type
    and Muon-type optimizers) or 1 (linear, SGD's rule). Warm-up stays in steps, so it spans world-fold the
    tokens: the larger batch gets the same number of careful first updates."""
    if scaling not in LR_SCALING:
        raise ArcDataError(f"config: optim.lr_scaling={scaling!r} must be one of {list(LR_SCALING)}")
    return lr * world ** LR_SCALING[scaling]


def unwrap(model):
    """The plain module under DDP and torch.compile wrappers (what is saved and loaded)."""
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


def save_checkpoint(run: Path, save_weights: SaveWeights, opt, step: int, cfg, scaler) -> None:
    """Weights (through `save_weights`), optimizer and step into checkpoint/, swapped in by save_dir_atomic:
    a kill at any point leaves a complete checkpoint/ or a complete .checkpoint.old/ (resume takes the newest
    complete one); a full disk is one OSError line naming the file, with the temp folder removed."""

    def write(folder: Path) -> None:
        save_weights(folder)
        state = {
            "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict() if scaler else None,
            "torch_rng": torch.get_rng_state(),
        }
        target = folder / "trainer_state.pt"
        try:
            torch.save(state, target)
        except RuntimeError as e:  # torch's zip writer reports a full disk as a RuntimeError
            raise OSError(
                errno.EIO, f"write failed (disk full?): {' '.join(str(e).split())[:120]}", str(target)
            ) from None
        write_json_atomic(folder / "state.json", {"step": step, "config": to_dict(cfg)}, indent=2)

    save_dir_atomic(run / "checkpoint", write)


def checkpoint_candidates(run: Path) -> list[Path]:
    """Where a checkpoint may be, newest first: checkpoint/, then the one a save was replacing (a kill between
    the two renames leaves only it), and the name older versions used for it."""
    return [run / "checkpoint", run / ".checkpoint.old", run / "checkpoint.old"]


def latest_checkpoint(run: Path) -> Path | None:
    """The newest complete checkpoint of a run (completion marker, or state.json: written last before markers
    existed), or None."""
    for ck in checkpoint_candidates(run):
        if is_complete(ck) or (ck / "state.json").is_file():
            return ck
    return None


def clear_checkpoints(run: Path) -> None:
    """Remove every checkpoint folder once the final model is saved."""
    for ck in [*checkpoint_candidates(run), run / ".checkpoint.tmp", run / "checkpoint.tmp"]:
        shutil.rmtree(ck, ignore_errors=True)


def open_log(run: Path, start: int):
    """log.jsonl for appending, with every record past `start` dropped first: steps logged after the
    checkpoint a run resumes from are logged again, and would otherwise appear twice."""
    path = run / "log.jsonl"
    if path.exists():
        kept = [line for line in path.read_text().splitlines(keepends=True) if _log_step(line) <= start]
        write_bytes_atomic(path, "".join(kept).encode())
    return open(path, "a")


def _log_step(line: str) -> float:
    try:
        rec = json.loads(line)
    except ValueError:
        return math.inf  # a line cut by a kill: dropped
    return rec.get("step", 0) if isinstance(rec, dict) and isinstance(rec.get("step", 0), int) else 0


def checkpoint_or_stop(
    run: Path,
    save_weights: SaveWeights,
    opt,
    step: int,
    cfg,
    scaler,
    dist: Dist,
    device: torch.device,
    t0: float,
    command: str,
    now: float | None = None,
) -> bool:
    """After a step: save a checkpoint every cfg.save_every steps or when the time budget is spent;
    returns True when the loop must stop (budget spent before the last step: rerun to resume)."""
    out_of_time = budget_spent(cfg.time_budget, t0, dist, device, now)
    if dist.main and (step % cfg.save_every == 0 or out_of_time) and step < cfg.steps:
        save_checkpoint(run, save_weights, opt, step, cfg, scaler)
    stop = out_of_time and step < cfg.steps
    if stop and dist.main:
        print(
            f"arcsub {command}: time budget spent at step {step}; re-run the same command to resume",
            flush=True,
        )
    return stop


def resume(run: Path, model, opt, scaler, device) -> int:
    """Load the newest complete checkpoint into model and optimizer; returns the step to continue from (0 if
    none). trainer_state.pt is read with weights_only=True: a planted run folder cannot run code."""
    ck = latest_checkpoint(run)
    if ck is None:
        return 0
    from safetensors.torch import load_file

    inner = unwrap(model)
    weights = ck / ("adapter_model.safetensors" if hasattr(inner, "peft_config") else "model.safetensors")
    state = load_file(str(check_safetensors(weights)), device=str(device))
    if hasattr(inner, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(inner, state)
    else:
        inner.load_state_dict(state, strict=False)
    try:
        extra = torch.load(ck / "trainer_state.pt", map_location=device, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError) as e:
        why = " ".join(str(e).split())[:120]
        raise ArcDataError(f"{ck / 'trainer_state.pt'}: not a loadable trainer state ({why})") from None
    opt.load_state_dict(extra["optimizer"])
    if scaler and extra.get("scaler"):
        scaler.load_state_dict(extra["scaler"])
    torch.set_rng_state(extra["torch_rng"].cpu())
    return int(json.loads((ck / "state.json").read_text())["step"])
