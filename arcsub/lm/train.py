"""The training recipe: setup -> loop -> save. From scratch or from a local checkpoint, LoRA or full, packed
batches, mixed precision, gradient accumulation, exact resume, DDP under torchrun (same command on 1 or N GPUs).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from arcsub.core.config import settings_hash, to_dict
from arcsub.core.data import ArcDataError, resolve_path, write_json_atomic
from arcsub.core.device import pick_dtype
from arcsub.core.encode import Codec
from arcsub.core.modeldir import (
    check_adapter_dir,
    check_model_dir,
    count_params,
    hub_allowed,
    load_adapter,
    model_finished,
    save_model,
)
from arcsub.lm.batches import Batch, DataSettings, StepBatches, TaskPool
from arcsub.lm.models import (
    PRESETS,
    LoraSettings,
    apply_lora,
    build_model,
    check_quant,
    load_model,
    merge_into_full_precision,
    shrink_vocab,
)
from arcsub.training.runtime import (
    OptimSettings,
    backward_micro_steps,
    build_optimizer,
    check_optimizer,
    checkpoint_or_stop,
    clear_checkpoints,
    log_record,
    lr_at,
    make_scaler,
    open_log,
    optimizer_step,
    resume,
    setup_distributed,
    step_loader,
    teardown_distributed,
    unwrap,
    weights_saver,
    wrap_for_training,
)


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


def check_backend(cfg: TrainConfig) -> str:
    """Validate shrink_vocab / quant / backend (one-line errors); returns the backend to use: "unsloth"
    only when it imports, else a one-line notice on stderr and "plain"."""
    check_quant(cfg.quant, runtime=False)  # the library check comes after the setting checks below
    check_optimizer(cfg.optim.name)
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
        check_quant(cfg.quant)
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


def check_sources(cfg: TrainConfig) -> None:
    """The model and adapter folders, checked before anything is built (a bad weights file is one line)."""
    if cfg.model not in PRESETS:
        check_model_dir(cfg.model)
    if cfg.adapter and (Path(cfg.adapter).exists() or not hub_allowed()):
        check_adapter_dir(cfg.adapter)


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
        model = load_adapter(model, cfg.adapter, trainable=True)
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
        model = load_adapter(model, cfg.adapter, trainable=True)
    else:
        model = apply_lora(model, cfg.lora)
    return (model if quantized else model.to(device)), tok, fmt


def train(cfg: TrainConfig, progress: bool = True) -> Path:
    """Run (or resume) a training run; returns its directory, whose model/ holds the final model.

    Set-up, loop and save stay in one function on purpose (~75 lines): the order of a step's parts (batch of
    (seed, step, rank), backward, optimizer step, log, checkpoint) is what makes a resumed run equal to an
    uninterrupted one, and it reads best in one place; the parts themselves are training.runtime's."""
    backend = check_backend(cfg)
    check_sources(cfg)
    run = Path(cfg.out_dir) / run_name(cfg)
    if model_finished(run / "model"):  # a rerun of a finished run: nothing to do, and model/ is kept
        print(f"arcsub train: {run / 'model'} already finished", flush=True)
        return run
    dist = setup_distributed()
    device = torch.device(f"cuda:{dist.local}" if torch.cuda.is_available() else "cpu")
    dtype = pick_dtype(cfg.dtype, device)
    torch.manual_seed(cfg.seed)
    if dist.main:
        run.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run / "config.json", to_dict(cfg), indent=2)

    model, tok, fmt = _load_base(cfg, device, backend, dtype)
    codec = Codec(tok)
    pool = TaskPool(cfg.data)
    opt = build_optimizer(model, cfg.optim, device)
    scaler = make_scaler(dtype)
    start = resume(run, model, opt, scaler, device)

    fwd = wrap_for_training(model, dist, device, cfg.compile)
    ga = cfg.grad_accum
    batches = StepBatches(
        pool, codec, cfg.seed, start * ga, cfg.steps * ga, dist.rank, cfg.rows, cfg.seq_len, cfg.max_len, fmt
    )
    loader = step_loader(batches, cfg.workers, device)
    n_params = count_params(unwrap(model))
    if dist.main:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        print(
            f"arcsub train: {run} | {n_params / 1e6:.1f}M params ({trainable / 1e6:.2f}M trainable) | "
            f"{device} {str(dtype).removeprefix('torch.')} | steps {start}->{cfg.steps}",
            flush=True,
        )
    log = open_log(run, start) if dist.main else None
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
        loss_sum = backward_micro_steps(
            fwd, micro, lambda b, n=n_label: token_loss(fwd, b.to(device), n), dist, device, dtype, scaler
        )
        lr = cfg.optim.lr * lr_at(step, cfg.optim, cfg.steps)
        gnorm = optimizer_step(model, opt, scaler, cfg.optim.grad_clip, lr)
        step += 1
        bar.update(1)
        if dist.main and (step % cfg.log_every == 0 or step == cfg.steps):
            tps = window_tokens * dist.world / max(time.time() - window_t, 1e-9)
            rec = log_record(step, loss_sum, lr, gnorm, tps, time.time() - t0)
            log.write(json.dumps(rec) + "\n")
            log.flush()
            bar.set_postfix(loss=f"{rec['loss']:.4f}", tok_s=f"{tps / 1e3:.0f}k")
            window_tokens, window_t = 0, time.time()
        if checkpoint_or_stop(
            run, weights_saver(model, tok, fmt, step), opt, step, cfg, scaler, dist, device, t0, "train"
        ):
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
    inner = unwrap(model)
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
        if cfg.quant == "4bit":
            inner = merge_into_full_precision(cfg.model, run / "adapter", cfg.shrink_vocab)
        else:
            inner = inner.merge_and_unload()
    save_model(inner.float(), tok, run / "model", info)
    clear_checkpoints(run)
    print(f"arcsub train: saved {run / 'model'}", flush=True)
