"""Test-time fine-tuning: small LoRAs fitted on each test task's own demonstrations, under a time budget.

Each task's data is its leave-one-out tasks (every demonstration pair in turn is the target, the others the
examples), freshly augmented every step. Per-task mode saves `adapters/<task_id>/` (PEFT, safetensors) the
moment a task finishes and records it in `adapters/manifest.json`, so a rerun skips finished tasks. Group
mode fits one LoRA on all tasks together (ARChitects) and saves the merged model as `adapters/model/`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from arcsub.core.augment import leave_one_out
from arcsub.core.data import ArcDataError, Task, save_dir_atomic, task_path, write_json_atomic
from arcsub.core.device import pick_dtype
from arcsub.core.encode import Codec
from arcsub.core.modeldir import load_adapter, model_finished, save_model
from arcsub.lm.batches import DataSettings, TaskPool, make_batch
from arcsub.lm.models import LoraSettings, apply_lora, check_quant, load_model, merge_into_full_precision
from arcsub.lm.train import token_loss
from arcsub.training.runtime import (
    OptimSettings,
    build_optimizer,
    check_optimizer,
    lr_at,
    make_scaler,
    optimizer_step,
)


@dataclass
class TTFTConfig:
    """Test-time fine-tuning settings (ironbar's defaults: a few hundred steps, small LoRA, lr ~1e-4)."""

    mode: str = "per-task"  # per-task | group
    lora: LoraSettings = field(default_factory=lambda: LoraSettings(r=16, alpha=32))
    adapter: str | None = None  # start from this trained LoRA instead of a fresh one (ironbar: better)
    steps: int = 100  # per task (per-task) or in all (group); fewer when the budget runs short
    seq_len: int = 4096  # tokens per step (several leave-one-out examples packed)
    max_len: int = 4096
    lr: float = 4e-4
    warmup: int = 5
    seconds_per_task: float = 0.0  # 0 = no limit; else a task stops (and still saves) when spent
    time_budget: float = 0.0  # 0 = no limit; whole run: later tasks get what earlier ones left
    seed: int = 0
    dtype: str = "auto"
    # 4bit: the base as bitsandbytes NF4 (QLoRA: a 7-8B base fits a 15 GB T4); the adapters it saves are
    # applied to the full-precision base at prediction, as QLoRA adapters usually are. CUDA only.
    quant: str = "none"  # none | 4bit
    optim: str = "adamw"  # adamw | adamw8bit (bitsandbytes: ~4x smaller optimizer state)
    workers: int = 1  # per-task mode: processes, tasks sharded round-robin; 0 = one per GPU
    data: DataSettings = field(default_factory=lambda: DataSettings(swap_prob=0.0))


def loo_tasks(task: Task) -> list[Task]:
    """The leave-one-out tasks of a task's demonstrations; a single-pair task trains on itself (input->output)."""
    if len(task.train) < 2:
        return [Task(task.id, list(task.train), list(task.train))]
    return [leave_one_out(task, i) for i in range(len(task.train))]


def read_manifest(out: Path) -> dict:
    """Finished tasks: manifest.json merged with the per-worker manifest.<rank>.json of a multi-GPU run."""
    tasks: dict = {}
    for f in sorted(out.glob("manifest*.json")):
        tasks.update(json.loads(f.read_text()).get("tasks", {}))
    return {"tasks": tasks}


class LoraFitter:
    """One base model wrapped once with a LoRA; reset to the initial adapter weights before every task."""

    def __init__(self, model_dir: str | Path, cfg: TTFTConfig, device: str | torch.device):
        self.cfg, self.device = cfg, torch.device(device)
        self.dtype = pick_dtype(cfg.dtype, self.device)
        check_quant(cfg.quant, "ttft")
        quantized = cfg.quant == "4bit"
        model, self.tok, self.fmt = load_model(
            model_dir, dtype=torch.bfloat16 if quantized else None, device=device, quant=cfg.quant
        )
        if quantized:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        if cfg.adapter:
            model = load_adapter(model, cfg.adapter, trainable=True)
        else:
            model = apply_lora(model, cfg.lora)
        if not hasattr(model, "peft_config"):
            raise ArcDataError("ttft: lora.r must be > 0 (test-time fine-tuning saves LoRA adapters)")
        self.model = model if quantized else model.to(device)  # NF4 weights are placed at load
        self.codec = Codec(self.tok)
        self.initial = {k: v.detach().clone() for k, v in model.named_parameters() if v.requires_grad}

    def reset(self) -> None:
        with torch.no_grad():
            for k, v in self.model.named_parameters():
                if k in self.initial:
                    v.copy_(self.initial[k])

    def fit(self, tasks: list[Task], steps: int, seconds: float, seed: int) -> dict:
        """Train on the leave-one-out tasks of `tasks` for `steps` steps or `seconds`, whichever ends first."""
        c = self.cfg
        pool = TaskPool(c.data, [t for task in tasks for t in loo_tasks(task)])
        optim = OptimSettings(name=c.optim, lr=c.lr, warmup=c.warmup, weight_decay=0.0, schedule="cosine")
        opt = build_optimizer(self.model, optim, self.device)
        scaler = make_scaler(self.dtype)
        self.model.train()
        t0, losses, step = time.time(), [], 0
        for step in range(steps):
            if seconds and time.time() - t0 > seconds:
                break
            batch = make_batch(pool, self.codec, seed, step, 0, 1, c.seq_len, c.max_len, self.fmt).to(
                self.device
            )
            n_label = int((batch.labels[:, 1:] != -100).sum())
            if n_label == 0:
                continue
            with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
                loss = token_loss(self.model, batch, n_label)
            (scaler.scale(loss) if scaler else loss).backward()
            optimizer_step(self.model, opt, scaler, 1.0, c.lr * lr_at(step, optim, steps))
            losses.append(float(loss.detach()))
        else:
            step = steps
        return {
            "steps": step,
            "loss_first": losses[0] if losses else None,
            "loss_last": float(np.mean(losses[-5:])) if losses else None,
            "seconds": round(time.time() - t0, 2),
        }


def run_ttft(
    model_dir: str | Path,
    tasks: dict[str, Task],
    out_dir: str | Path,
    cfg: TTFTConfig,
    device: str | torch.device | None = None,
    progress: bool = True,
    fitter: LoraFitter | None = None,
    manifest_name: str = "manifest.json",
) -> Path:
    """Fit adapters for `tasks` (test outputs are never used) into out_dir; returns out_dir.

    `fitter` reuses a loaded model across calls (the pipeline calls this once per chunk of tasks)."""
    check_quant(cfg.quant, "ttft")  # before any folder is made
    check_optimizer(cfg.optim, "optim")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    manifest = read_manifest(out)
    todo = [t for tid, t in tasks.items() if tid not in manifest["tasks"]]
    if cfg.mode == "group":
        return _run_group(model_dir, list(tasks.values()), out, cfg, dev)
    if cfg.mode != "per-task":
        raise ArcDataError(f"config: ttft mode {cfg.mode!r} (per-task | group)")
    if not todo:
        return out
    n_workers = cfg.workers or max(1, torch.cuda.device_count())
    if n_workers > 1 and fitter is None and len(todo) > 1:
        return _run_workers(model_dir, {t.id: t for t in todo}, out, cfg, min(n_workers, len(todo)))
    fitter = fitter or LoraFitter(model_dir, cfg, dev)
    fitter.cfg = cfg
    t_start = time.time()
    bar = tqdm(todo, desc="ttft", unit="task", disable=not progress)
    for i, task in enumerate(bar):
        seconds = cfg.seconds_per_task
        if cfg.time_budget:
            left = cfg.time_budget - (time.time() - t_start)
            share = max(0.0, left) / (len(todo) - i)
            seconds = min(seconds, share) if seconds else share
        fitter.reset()
        stats = fitter.fit([task], cfg.steps, seconds, cfg.seed)
        save_dir_atomic(task_path(out, task.id), partial(_save_adapter, fitter.model))
        manifest["tasks"][task.id] = stats
        write_json_atomic(out / manifest_name, manifest, indent=1)
        bar.set_postfix(task=task.id, loss=f"{stats['loss_last'] or 0:.3f}", s=stats["seconds"])
    return out


def _save_adapter(model, folder: Path) -> None:
    model.save_pretrained(str(folder), safe_serialization=True)


def _worker(rank: int, model_dir, tasks: dict[str, Task], out: Path, cfg: TTFTConfig) -> None:
    device = f"cuda:{rank}" if torch.cuda.device_count() > rank else "cpu"
    run_ttft(model_dir, tasks, out, cfg, device, progress=False, manifest_name=f"manifest.{rank}.json")


def _run_workers(model_dir, tasks: dict[str, Task], out: Path, cfg: TTFTConfig, n: int) -> Path:
    """One process per GPU, tasks round-robin; each worker keeps its own manifest, merged at the end."""
    import dataclasses
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    ids = list(tasks)
    one = dataclasses.replace(cfg, workers=1)
    procs = [
        ctx.Process(target=_worker, args=(r, model_dir, {t: tasks[t] for t in ids[r::n]}, out, one))
        for r in range(n)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    write_json_atomic(out / "manifest.json", read_manifest(out), indent=1)
    failed = [r for r, p in enumerate(procs) if p.exitcode]
    if failed:
        raise ArcDataError(f"ttft: worker(s) {failed} failed; rerun to finish the remaining tasks")
    return out


def _run_group(model_dir, tasks: list[Task], out: Path, cfg: TTFTConfig, dev: torch.device) -> Path:
    """One LoRA on all tasks together, merged into a full model at out/model (no adapters needed later)."""
    if model_finished(out / "model"):
        return out
    fitter = LoraFitter(model_dir, cfg, dev)
    stats = fitter.fit(tasks, cfg.steps, cfg.time_budget, cfg.seed)
    if cfg.quant == "4bit":
        save_dir_atomic(out / "adapter", partial(_save_adapter, fitter.model))
        merged = merge_into_full_precision(model_dir, out / "adapter")
    else:
        merged = fitter.model.merge_and_unload()
    save_model(
        merged.float(),
        fitter.tok,
        out / "model",
        {"format": fitter.fmt, "ttft": stats, "base": str(model_dir)},
    )
    write_json_atomic(
        out / "manifest.json", {"mode": "group", "tasks": {t.id: stats for t in tasks}}, indent=1
    )
    return out
