"""The training recipe: setup -> loop -> save. From scratch or from a local checkpoint, LoRA or full, packed
batches, mixed precision, gradient accumulation, exact resume, DDP under torchrun (same command on 1 or N GPUs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from arcsub.core.config import settings_hash, to_dict
from arcsub.core.data import ArcDataError, resolve_path, write_json_atomic
from arcsub.core.encode import Codec
from arcsub.lm.batches import Batch, DataSettings, StepBatches, TaskPool, keep_batch
from arcsub.lm.models import (
    PRESETS,
    LoraSettings,
    apply_lora,
    build_model,
    count_params,
    load_model,
    save_model,
    shrink_vocab,
)


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


@dataclass
class TrainConfig:
    """Everything a training run depends on; the run directory is named from it."""

    model: str = "small"  # a preset name (from scratch) or a local HF model directory
    adapter: str | None = None  # continue training this LoRA adapter (a PEFT directory)
    lora: LoraSettings = field(default_factory=LoraSettings)
    data: DataSettings = field(default_factory=DataSettings)
    optim: OptimSettings = field(default_factory=OptimSettings)
    steps: int = 1000
    rows: int = 4  # packed rows per device and micro-step
    seq_len: int = 8192  # tokens per packed row
    max_len: int = 8192  # longest single example (demonstration pairs dropped to fit)
    grad_accum: int = 1
    dtype: str = "auto"  # auto | bf16 | fp16 | fp32
    attn: str = "sdpa"  # sdpa | flex_attention | eager | flash_attention_2
    compile: bool = False
    seed: int = 0
    workers: int = 2
    save_every: int = 500
    log_every: int = 10
    time_budget: float = 0.0  # seconds; >0 saves a checkpoint and stops when spent (resume by re-running)
    out_dir: str = "runs"
    name: str = ""  # run directory name; empty: <model>__<data>__<settings hash>
    shrink_vocab: bool = False  # local checkpoint: keep only the tokens the prompt format needs
    quant: str = "none"  # none | 4bit (QLoRA via bitsandbytes: local checkpoint, lora.r > 0, CUDA)
    backend: str = "plain"  # plain | unsloth (when installed; otherwise a notice and the plain path)


# fields that do not change what is learnt: left out of the run name so a resumed run finds its directory
_NOT_IN_NAME = {"workers", "save_every", "log_every", "time_budget", "out_dir", "name"}


def run_name(cfg: TrainConfig) -> str:
    if cfg.name:
        return cfg.name
    model = cfg.model if cfg.model in PRESETS else Path(cfg.model).name
    paths = [resolve_path(c) for c in cfg.data.challenges]
    sources = [p.stem.replace("arc-agi_", "").replace("_challenges", "") for p in paths]
    parent = [p.parent.name for p in paths]
    data = "+".join(f"{p}-{s}" for p, s in zip(parent, sources, strict=True)) or "none"
    if cfg.data.re_arc:
        data += "+re-arc"
    keep = {k: v for k, v in to_dict(cfg).items() if k not in _NOT_IN_NAME}
    mode = f"lora{cfg.lora.r}" if cfg.lora.r > 0 else "full"
    return f"{model}__{data}__{mode}-{cfg.steps}st__{settings_hash(keep)}"


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """bf16 where the GPU has it, fp16 on older GPUs (T4), fp32 on CPU."""
    if name != "auto":
        return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[name]
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


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


def packed_logits(model, batch: Batch) -> torch.Tensor:
    """Logits of packed rows; attention stays inside each example (block-diagonal causal mask from the
    restarting position ids). use_cache=False matters: with a cache transformers ignores packing."""
    return model(input_ids=batch.input_ids, position_ids=batch.position_ids, use_cache=False).logits


def token_loss(model, batch: Batch, n_label: int) -> torch.Tensor:
    """Summed next-token cross-entropy over labelled positions, divided by the step's label count."""
    logits = packed_logits(model, batch)
    return F.cross_entropy(
        logits[:, :-1].flatten(0, 1).float(),
        batch.labels[:, 1:].flatten(),
        ignore_index=-100,
        reduction="sum",
    ) / max(1, n_label)


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


def budget_spent(budget: float, t0: float, dist: Dist, device: torch.device) -> bool:
    """Whether the time budget is spent; under DDP all ranks agree (any rank out of time stops every rank at
    the same step, else the others would hang in the next collective)."""
    spent = budget > 0 and time.time() - t0 > budget
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
        collate_fn=keep_batch,
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


def check_backend(cfg: TrainConfig) -> str:
    """Validate shrink_vocab / quant / backend (one-line errors); returns the backend to use: "unsloth"
    only when it imports, else a one-line notice on stderr and "plain"."""
    if cfg.quant not in ("none", "4bit"):
        raise ArcDataError(f"config: quant={cfg.quant!r} must be one of ['none', '4bit']")
    if cfg.backend not in ("plain", "unsloth"):
        raise ArcDataError(f"config: backend={cfg.backend!r} must be one of ['plain', 'unsloth']")
    local = cfg.model not in PRESETS
    if cfg.shrink_vocab and not local:
        raise ArcDataError("config: shrink_vocab=true needs model=<a local model directory>, not a preset")
    if cfg.quant == "4bit":
        if not local:
            raise ArcDataError("config: quant=4bit needs model=<a local model directory>, not a preset")
        if cfg.lora.r <= 0 and not cfg.adapter:
            raise ArcDataError("config: quant=4bit trains LoRA adapters only: set lora.r > 0")
        try:
            import bitsandbytes  # noqa: F401
        except Exception:
            ok = False
        else:
            ok = torch.cuda.is_available()
        if not ok:
            raise ArcDataError("quant=4bit needs bitsandbytes and a CUDA GPU: pip install arcsub[bnb]")
    if cfg.backend == "unsloth":
        if not local:
            raise ArcDataError("config: backend=unsloth needs model=<a local model directory>, not a preset")
        try:
            import unsloth  # noqa: F401  (raises without an NVIDIA GPU too)
        except Exception as e:
            why = " ".join(str(e).split())[:120] or type(e).__name__
            print(
                f"arcsub train: backend=unsloth unavailable ({why}); training on the plain path",
                file=sys.stderr,
                flush=True,
            )
            return "plain"
    return cfg.backend


def _load_unsloth(cfg: TrainConfig, dtype: torch.dtype):
    """A local checkpoint through unsloth's FastLanguageModel (4-bit when quant=4bit), LoRA via its
    get_peft_model; our own tokenizer (format checked) drives the prompts."""
    from unsloth import FastLanguageModel

    from arcsub.lm.models import load_tokenizer_and_format

    tok, fmt = load_tokenizer_and_format(cfg.model)
    model, _ = FastLanguageModel.from_pretrained(
        model_name=cfg.model,
        max_seq_length=max(cfg.seq_len, cfg.max_len),
        dtype=dtype if dtype != torch.float32 else None,
        load_in_4bit=cfg.quant == "4bit",
        full_finetuning=cfg.lora.r <= 0 and not cfg.adapter,
        trust_remote_code=False,
        use_exact_model_name=True,
        local_files_only=True,
    )
    if cfg.shrink_vocab:
        model, tok = shrink_vocab(model, tok, fmt)
    if cfg.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, cfg.adapter, is_trainable=True)
    elif cfg.lora.r > 0:
        model = FastLanguageModel.get_peft_model(
            model,
            r=cfg.lora.r,
            target_modules=list(cfg.lora.targets),
            lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout,
            bias="none",
            use_gradient_checkpointing="unsloth",
            random_state=cfg.seed,
            use_rslora=cfg.lora.rslora,
            loftq_config=None,
        )
    return model, tok, fmt


def _load_base(cfg: TrainConfig, device: torch.device, backend: str = "plain", dtype=torch.float32):
    """(model, tokenizer, format): a fresh preset or a local checkpoint (vocabulary shrunk, 4-bit, through
    unsloth where asked), with LoRA applied or continued."""
    if backend == "unsloth":
        return _load_unsloth(cfg, dtype)
    quantized = cfg.quant == "4bit"
    if cfg.model in PRESETS:
        model, tok = build_model(
            cfg.model, max_len=max(cfg.seq_len, cfg.max_len), seed=cfg.seed, attn=cfg.attn
        )
        fmt = "compact"
    else:
        model, tok, fmt = load_model(
            cfg.model,
            dtype=torch.bfloat16 if quantized else None,
            device=device if quantized else "cpu",
            attn=cfg.attn,
            quant=cfg.quant,
        )
        if cfg.shrink_vocab:
            model, tok = shrink_vocab(model, tok, fmt)
        if quantized:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    if cfg.adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, cfg.adapter, is_trainable=True)
    else:
        model = apply_lora(model, cfg.lora)
    return (model if quantized else model.to(device)), tok, fmt


def _unwrap(model):
    model = getattr(model, "module", model)  # DDP
    return getattr(model, "_orig_mod", model)  # torch.compile


def save_checkpoint(run: Path, model, tok, fmt: str, opt, step: int, cfg: TrainConfig, scaler) -> None:
    """Weights, optimizer and step into checkpoint/, swapped in atomically (never a half-written checkpoint)."""
    tmp, final, old = run / "checkpoint.tmp", run / "checkpoint", run / "checkpoint.old"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(_unwrap(model), tok, tmp, {"format": fmt, "step": step})
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
    model,
    tok,
    fmt: str,
    opt,
    step: int,
    cfg,
    scaler,
    dist: Dist,
    device: torch.device,
    t0: float,
    command: str,
) -> bool:
    """After a step: save a checkpoint every cfg.save_every steps or when the time budget is spent;
    returns True when the loop must stop (budget spent before the last step: rerun to resume)."""
    out_of_time = budget_spent(cfg.time_budget, t0, dist, device)
    if dist.main and (step % cfg.save_every == 0 or out_of_time) and step < cfg.steps:
        save_checkpoint(run, model, tok, fmt, opt, step, cfg, scaler)
    stop = out_of_time and step < cfg.steps
    if stop and dist.main:
        print(
            f"arcsub {command}: time budget spent at step {step}; re-run the same command to resume",
            flush=True,
        )
    return stop


def _resume(run: Path, model, opt, scaler, device) -> int:
    """Load checkpoint/ into model and optimizer; returns the step to continue from (0 if none)."""
    ck = run / "checkpoint"
    if not (ck / "state.json").exists():
        return 0
    from safetensors.torch import load_file

    inner = _unwrap(model)
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


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """Run (or resume) a training run; returns its directory, whose model/ holds the final model."""
    backend = check_backend(cfg)
    dist = setup_distributed()
    device = torch.device(f"cuda:{dist.local}" if torch.cuda.is_available() else "cpu")
    dtype = pick_dtype(cfg.dtype, device)
    torch.manual_seed(cfg.seed)
    run = Path(cfg.out_dir) / run_name(cfg)
    if dist.main:
        run.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run / "config.json", to_dict(cfg), indent=2)

    model, tok, fmt = _load_base(cfg, device, backend, dtype)
    codec = Codec(tok)
    pool = TaskPool(cfg.data)
    opt = build_optimizer(model, cfg.optim, device)
    scaler = make_scaler(dtype)
    start = _resume(run, model, opt, scaler, device)

    fwd = wrap_for_training(model, dist, device, cfg.compile)
    ga = cfg.grad_accum
    batches = StepBatches(
        pool, codec, cfg.seed, start * ga, cfg.steps * ga, dist.rank, cfg.rows, cfg.seq_len, cfg.max_len, fmt
    )
    loader = step_loader(batches, cfg.workers, device)
    n_params = count_params(_unwrap(model))
    if dist.main:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(
            f"arcsub train: {run} | {n_params / 1e6:.1f}M params ({trainable / 1e6:.2f}M trainable) | "
            f"{device} {str(dtype).removeprefix('torch.')} | steps {start}->{cfg.steps}",
            flush=True,
        )
    log = open(run / "log.jsonl", "a") if dist.main else None
    bar = tqdm(
        total=cfg.steps, initial=start, disable=not (progress and dist.main), desc="train", unit="step"
    )
    t0 = time.time()
    window_tokens, window_t = 0, time.time()
    it = iter(loader)
    step = start
    model.train()
    while step < cfg.steps:
        micro = [next(it) for _ in range(ga)]
        n_label = sum(int((b.labels[:, 1:] != -100).sum()) for b in micro)  # counted on the CPU: no GPU sync
        window_tokens += sum(b.useful_tokens for b in micro)
        micro = [b.to(device) for b in micro]
        loss_sum = torch.zeros((), device=device)  # read back only when logging: no GPU sync per step
        for i, b in enumerate(micro):
            sync = i == ga - 1 or dist.world == 1
            ctx = fwd.no_sync() if (dist.world > 1 and not sync) else contextlib.nullcontext()
            with ctx, torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                loss = token_loss(fwd, b, n_label)
            (scaler.scale(loss) if scaler else loss).backward()
            loss_sum += loss.detach()
        lr = cfg.optim.lr * lr_at(step, cfg.optim, cfg.steps)
        gnorm = optimizer_step(model, opt, scaler, cfg.optim.grad_clip, lr)
        step += 1
        bar.update(1)
        if dist.main and (step % cfg.log_every == 0 or step == cfg.steps):
            dt = time.time() - window_t
            tps = window_tokens * dist.world / max(dt, 1e-9)
            rec = {
                "step": step,
                "loss": round(float(loss_sum), 5),
                "lr": lr,
                "grad_norm": float(gnorm),
                "tokens_per_s": round(tps),
                "elapsed_s": round(time.time() - t0, 2),
            }
            log.write(json.dumps(rec) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{rec['loss']:.4f}", tok_s=f"{tps / 1e3:.0f}k")
            window_tokens, window_t = 0, time.time()
        if checkpoint_or_stop(run, model, tok, fmt, opt, step, cfg, scaler, dist, device, t0, "train"):
            break
    bar.close()
    if dist.main and step >= cfg.steps:
        _save_final(run, model, tok, fmt, cfg, n_params, time.time() - t0)
    if log:
        log.close()
    teardown_distributed(dist)
    return run


def _save_final(run: Path, model, tok, fmt: str, cfg: TrainConfig, n_params: int, seconds: float) -> None:
    """model/ holds a plain HF model (LoRA merged) that every later stage loads; adapter/ the LoRA alone."""
    inner = _unwrap(model)
    info = {
        "format": fmt,
        "base": cfg.model,
        "steps": cfg.steps,
        "params": n_params,
        "train_seconds_last_session": round(seconds, 1),
        "config": to_dict(cfg),
    }
    if cfg.shrink_vocab:
        info["shrink_vocab"] = getattr(tok, "arcsub_shrink", True)
    if hasattr(inner, "peft_config"):
        save_model(inner, tok, run / "adapter", info)
        if cfg.quant == "4bit":  # merge into full-precision base weights, not the 4-bit ones
            from peft import PeftModel

            base, base_tok, base_fmt = load_model(cfg.model)
            if cfg.shrink_vocab:
                base, _ = shrink_vocab(base, base_tok, base_fmt)
            inner = PeftModel.from_pretrained(base, str(run / "adapter"))
        inner = inner.merge_and_unload()
    save_model(inner.float(), tok, run / "model", info)
    shutil.rmtree(run / "checkpoint", ignore_errors=True)
    print(f"arcsub train: saved {run / 'model'}", flush=True)


def config_from_cli(config: str | None, overrides: list[str]) -> TrainConfig:
    from arcsub.core.config import load_config

    return load_config(TrainConfig, config, overrides)


__all__ = [
    "TrainConfig",
    "OptimSettings",
    "DataSettings",
    "LoraSettings",
    "train",
    "run_name",
    "lr_at",
    "dataclasses",
]
