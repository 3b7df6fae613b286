"""Where a task-model training step's time goes, and the batched Muon step against the per-tensor loop.

    python bench/bench_task_step.py --config configs/task-transductive-arc2.yaml data.scale=0.3 --out step.json

Builds the run's model, data and compiled forward as `arcsub task-train` does, then, in alternating rounds
for each optimizer (`loop`: one tensor at a time, the reference; `batched`: stacked Newton-Schulz and foreach
updates, the default), times whole steps between GPU syncs, and the optimizer's part alone (synced around
it). Last, a torch.profiler trace of a few steps: the GPU's busy share of the wall time and the top kernels.
Why: the same recipe ran 30 ms/step on one H100 and 39 ms/step on another; a step whose GPU idles while
Python launches kernels depends on the host's CPU. Not a test: run it on the GPU machine, record the table
in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch

from arcsub.core.config import load_config
from arcsub.core.device import pick_dtype
from arcsub.taskmodel.data import TaskStepBatches
from arcsub.taskmodel.train import (
    SourceLoss,
    TaskTrainConfig,
    row_layout,
    step_loss,
    task_optimizer,
    training_model,
)
from arcsub.training.muon import Muon
from arcsub.training.runtime import (
    Dist,
    backward_micro_steps,
    optimizer_step,
    step_loader,
    wrap_for_training,
)

ONE_PROCESS = Dist(rank=0, local=0, world=1)


def sync() -> None:
    """Wait for the GPU's queue (nothing to wait for on a CPU, where the bench only checks that it runs)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


@dataclasses.dataclass
class Bench:
    """The pieces of one training step, as arcsub.taskmodel.train.train puts them together."""

    cfg: TaskTrainConfig
    model: torch.nn.Module
    fwd: torch.nn.Module
    batches: object
    device: torch.device
    dtype: torch.dtype

    def step(self, opt, timed_optimizer: bool = False) -> tuple[float, float]:
        """One training step; with timed_optimizer the seconds of (forward+backward, optimizer), synced."""
        micro = [next(self.batches) for _ in range(self.cfg.grad_accum)]
        by_source = SourceLoss(self.device)
        loss_of = step_loss(self.fwd, self.model, self.device, sum(b.n_label for b in micro), by_source)
        t0 = time.perf_counter()
        backward_micro_steps(self.fwd, micro, loss_of, ONE_PROCESS, self.device, self.dtype, None)
        if timed_optimizer:
            sync()
        t1 = time.perf_counter()
        optimizer_step(self.model, opt, None, self.cfg.optim.grad_clip, self.cfg.optim.lr)
        if timed_optimizer:
            sync()
        return t1 - t0, time.perf_counter() - t1


def build(cfg: TaskTrainConfig) -> Bench:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model, index, source = training_model(cfg, device)
    rows, seq_len = row_layout(cfg, model.attn_backend)
    data = TaskStepBatches(source, index, cfg.seed, 0, 10**7, 0, rows, seq_len)
    loader = step_loader(data, cfg.workers, device)
    fwd = wrap_for_training(model, ONE_PROCESS, device, cfg.compile, cfg.ddp)
    return Bench(cfg, model, fwd, iter(loader), device, pick_dtype(cfg.dtype, device))


def ms_per_step(bench: Bench, opt, steps: int) -> float:
    """Wall milliseconds per whole step over `steps` steps, synced at both ends (the GPU queue drained)."""
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        bench.step(opt)
    sync()
    return 1000 * (time.perf_counter() - t) / steps


def split_ms(bench: Bench, opt, steps: int) -> dict[str, float]:
    """Median milliseconds of forward+backward and of the optimizer step, each synced (so their sum is more
    than an unsynced step: the overlap of CPU launches with GPU work is gone)."""
    parts = [bench.step(opt, timed_optimizer=True) for _ in range(steps)]
    return {
        "forward_backward_ms": 1000 * statistics.median(p[0] for p in parts),
        "optimizer_ms": 1000 * statistics.median(p[1] for p in parts),
    }


def profile(bench: Bench, opt, steps: int, top: int = 12) -> dict:
    """GPU busy share (kernel time over wall time) and the top kernels by GPU time over `steps` steps."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    sync()
    t = time.perf_counter()
    gpu = [ProfilerActivity.CUDA] if torch.cuda.is_available() else []
    with torch_profile(activities=[ProfilerActivity.CPU, *gpu]) as prof:
        for _ in range(steps):
            bench.step(opt)
        sync()
    wall = time.perf_counter() - t
    # the GPU-side rows of annotated ranges (Optimizer.step#Muon.step) span gaps as well: kernels only
    kernels = [
        e
        for e in prof.key_averages()
        if e.device_type.name == "CUDA" and not getattr(e, "is_user_annotation", False)
    ]
    gpu_s = sum(e.self_device_time_total for e in kernels) / 1e6
    kernels.sort(key=lambda e: e.self_device_time_total, reverse=True)
    return {
        "wall_ms_per_step": 1000 * wall / steps,
        "gpu_kernel_ms_per_step": 1000 * gpu_s / steps,
        "gpu_busy": gpu_s / wall,
        "top_kernels": [
            {
                "name": e.key[:90],
                "ms_per_step": e.self_device_time_total / 1e3 / steps,
                "calls": e.count // steps,
            }
            for e in kernels[:top]
        ],
        "kernel_launches_per_step": sum(e.count for e in kernels) // steps,
    }


def optimizers(bench: Bench) -> dict[str, torch.optim.Optimizer]:
    """The two Muon steps on the bench's model: the per-tensor loop (the reference) and the batched default."""
    opts = {k: task_optimizer(bench.model, bench.cfg.optim, bench.device) for k in ("loop", "batched")}
    if not isinstance(opts["loop"], Muon):  # the run's own choice of optimizer, not a copy of its rule
        raise SystemExit(
            f"bench_task_step: optim.name={bench.cfg.optim.name!r}: the bench times the Muon family"
        )
    opts["loop"].batched = False
    return opts


def measure(cfg: TaskTrainConfig, warmup: int, steps: int, rounds: int, profile_steps: int) -> dict:
    """Both optimizers' timings on one model in one process: `warmup` steps, then `rounds` alternating rounds
    of `steps` whole steps (the order flips each round), then each one's synced split and profile."""
    bench = build(cfg)
    opts = optimizers(bench)
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    res: dict = {"device": name, "torch": torch.__version__}
    t = time.perf_counter()
    for opt in opts.values():
        for _ in range(warmup // 2):
            bench.step(opt)
    res["warmup_s"] = time.perf_counter() - t
    times: dict[str, list[float]] = {k: [] for k in opts}
    for r in range(rounds):
        for k, opt in opts.items() if r % 2 == 0 else reversed(opts.items()):
            times[k].append(ms_per_step(bench, opt, steps))
    for k, opt in opts.items():
        res[k] = {"ms_per_step_rounds": times[k], "ms_per_step": statistics.median(times[k])}
        res[k].update(split_ms(bench, opt, max(1, steps // 4)))
        res[k]["profile"] = profile(bench, opt, profile_steps)
    res["speedup"] = res["loop"]["ms_per_step"] / res["batched"]["ms_per_step"]
    return res


def print_table(res: dict, title: str) -> None:
    print(f"\n{res['device']} | {title}")
    print(
        f"{'optimizer':10s} {'ms/step':>8s} {'fwd+bwd ms':>11s} {'optim ms':>9s} {'GPU busy':>9s} {'launches':>9s}"
    )
    for k in ("loop", "batched"):
        r, p = res[k], res[k]["profile"]
        print(
            f"{k:10s} {r['ms_per_step']:8.1f} {r['forward_backward_ms']:11.1f} {r['optimizer_ms']:9.1f} "
            f"{p['gpu_busy']:9.0%} {p['kernel_launches_per_step']:9d}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="configs/task-transductive-arc2.yaml")
    ap.add_argument("overrides", nargs="*", help="key=value settings, as for arcsub task-train")
    ap.add_argument("--warmup", type=int, default=60, help="steps before timing (compilation, loader)")
    ap.add_argument("--steps", type=int, default=100, help="steps per timed round")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds of loop and batched")
    ap.add_argument("--profile-steps", type=int, default=5)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    cfg = load_config(TaskTrainConfig, a.config, a.overrides)
    res = {"config": a.config, "overrides": a.overrides}
    res.update(measure(cfg, a.warmup, a.steps, a.rounds, a.profile_steps))
    print(json.dumps(res, indent=1))
    print_table(res, f"{a.config} {' '.join(a.overrides)}")
    if a.out:
        Path(a.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
