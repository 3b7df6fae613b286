"""The training loop's shared runtime, used by both model families' trainers: optimizer settings and the
learning-rate schedule, mixed precision (loss scaling for fp16), the distributed set-up under torchrun, the
time budget, the DataLoader of ready-made steps, and checkpoints that a rerun of the same command resumes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from arcsub.core.config import to_dict
from arcsub.core.data import ArcDataError, write_json_atomic
from arcsub.core.modeldir import save_model

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


def lr_at(step: int, o: OptimSettings, total: int) -> float:
    """Learning-rate multiplier: linear warmup, then cosine / warmup-stable-decay / constant."""
    if step < o.warmup:
        return (step + 1) / max(1, o.warmup)
    if o.schedule == "constant":
        return 1.0
    if o.schedule == "wsd":
        decay_start = int(total * (1 - o.decay_frac))
        if step < decay_start:
            return 1.0
        frac = (step - decay_start) / max(1, total - decay_start)
        return 1.0 - (1.0 - o.min_lr_ratio) * frac
    frac = (step - o.warmup) / max(1, total - o.warmup)
    return o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, frac)))


def set_lr(opt: torch.optim.Optimizer, lr: float) -> float:
    """Set every group's learning rate (the schedule is a pure function of the step: nothing to resume)."""
    for g in opt.param_groups:
        g["lr"] = lr
    return lr


def build_optimizer(model, o: OptimSettings, device: torch.device) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": o.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if o.name == "adamw8bit":
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ArcDataError("optim.name=adamw8bit needs bitsandbytes: pip install arcsub[bnb]") from None
        return bnb.optim.AdamW8bit(groups, lr=o.lr, betas=o.betas)
    if o.name != "adamw":
        raise ArcDataError(f"config: unknown optimizer {o.name!r} (adamw | adamw8bit)")
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
    left early made gloo's teardown hang on the slower one."""
    if dist.world > 1:
        torch.distributed.barrier()
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


def wrap_for_training(model, dist: Dist, device: torch.device, compile_: bool):
    """The module the loop calls: DDP across ranks when launched by torchrun, then torch.compile if asked."""
    fwd = model
    if dist.world > 1:
        fwd = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.local] if device.type == "cuda" else None
        )
    return torch.compile(fwd) if compile_ else fwd


def unwrap(model):
    """The plain module under DDP and torch.compile wrappers (what is saved and loaded)."""
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


def save_checkpoint(run: Path, save_weights: SaveWeights, opt, step: int, cfg, scaler) -> None:
    """Weights (through `save_weights`), optimizer and step into checkpoint/, swapped in atomically (never a
    half-written checkpoint)."""
    tmp, final, old = run / "checkpoint.tmp", run / "checkpoint", run / "checkpoint.old"
    shutil.rmtree(tmp, ignore_errors=True)
    save_weights(tmp)
    torch.save(
        {
            "optimizer": opt.state_dict(),
            "scaler": scaler.state_dict() if scaler else None,
            "torch_rng": torch.get_rng_state(),
        },
        tmp / "trainer_state.pt",
    )
    write_json_atomic(tmp / "state.json", {"step": step, "config": to_dict(cfg)}, indent=2)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


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
    """Load checkpoint/ into model and optimizer; returns the step to continue from (0 if none)."""
    ck = run / "checkpoint"
    if not (ck / "state.json").exists():
        return 0
    from safetensors.torch import load_file

    inner = unwrap(model)
    weights = ck / ("adapter_model.safetensors" if hasattr(inner, "peft_config") else "model.safetensors")
    state = load_file(str(weights), device=str(device))
    if hasattr(inner, "peft_config"):
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(inner, state)
    else:
        inner.load_state_dict(state, strict=False)
    extra = torch.load(ck / "trainer_state.pt", map_location=device, weights_only=False)
    opt.load_state_dict(extra["optimizer"])
    if scaler and extra.get("scaler"):
        scaler.load_state_dict(extra["scaler"])
    torch.set_rng_state(extra["torch_rng"].cpu())
    return int(json.loads((ck / "state.json").read_text())["step"])
