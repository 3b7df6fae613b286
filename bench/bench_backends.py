"""The optional backends against arcsub's plain path on the 0.5B shape: 8-bit AdamW (bitsandbytes), 4-bit
QLoRA (bitsandbytes NF4) and unsloth's FastLanguageModel, for `arcsub train` and for per-task TTFT.

    python bench/bench_backends.py --out bench_backends.json [--steps 40] [--variants a,b,...]

The qwen0.5b-shape preset (random weights) is saved once as a local checkpoint, the way a Kaggle user attaches
one; every variant then trains it on the same ARC-AGI-1 training data with the same seed, each in its own
process (peak memory is the variant's own; a backend that fails to import or crashes costs only its row).
A row holds useful (non-padding) tokens/s, peak GPU memory and the loss after the steps, or the exact error.
Not a test: run it on the GPU machine, record the table in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_train import data_settings

from arcsub.core.data import dataset_files, load_tasks, write_json_atomic
from arcsub.core.modeldir import save_model
from arcsub.lm.models import LoraSettings, build_model
from arcsub.lm.train import TrainConfig, train
from arcsub.lm.ttft import LoraFitter, TTFTConfig
from arcsub.training.runtime import OptimSettings

# name: (kind, settings); train rows change one thing against `full-adamw` / `lora` / `ttft`
VARIANTS: dict[str, tuple[str, dict]] = {
    "full-adamw": ("train", {"lora_r": 0}),
    "full-adamw8bit": ("train", {"lora_r": 0, "optim": "adamw8bit"}),
    "lora": ("train", {"lora_r": 16}),
    "qlora-4bit": ("train", {"lora_r": 16, "quant": "4bit"}),
    "unsloth-lora": ("train", {"lora_r": 16, "backend": "unsloth"}),
    "unsloth-qlora-4bit": ("train", {"lora_r": 16, "backend": "unsloth", "quant": "4bit"}),
    "ttft": ("ttft", {}),
    "ttft-adamw8bit": ("ttft", {"optim": "adamw8bit"}),
    "ttft-qlora-4bit": ("ttft", {"quant": "4bit"}),
}


def make_checkpoint(folder: Path, preset: str) -> Path:
    """The preset (the 0.5B shape) with the compact tokenizer, saved like an attached HF checkpoint."""
    model, tok = build_model(preset, max_len=8192, seed=0)
    return save_model(model, tok, folder, {"format": "compact"})


def run_train(model_dir: Path, steps: int, s: dict) -> dict:
    out = tempfile.mkdtemp()
    cfg = TrainConfig(
        model=str(model_dir),
        data=data_settings(),
        steps=steps,
        rows=2,
        seq_len=4096,
        max_len=4096,
        dtype="bf16",
        workers=2,
        log_every=5,
        save_every=10**9,
        out_dir=out,
        quant=s.get("quant", "none"),
        backend=s.get("backend", "plain"),
        optim=OptimSettings(name=s.get("optim", "adamw"), lr=2e-4, warmup=5),
    )
    cfg.lora = LoraSettings(r=s["lora_r"], alpha=2 * s["lora_r"]) if s["lora_r"] else LoraSettings(r=0)
    run = train(cfg, progress=False)
    recs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if '"loss"' in x]
    return {
        "useful_tokens_per_s": round(float(np.median([r["tokens_per_s"] for r in recs[1:] or recs]))),
        "loss_first": round(recs[0]["loss"], 4),
        "loss_last": round(recs[-1]["loss"], 4),
    }


def run_ttft(model_dir: Path, steps: int, s: dict) -> dict:
    """LoraFitter on 4 ARC-AGI-1 evaluation tasks (demonstrations only), `steps` steps each."""
    challenges, _ = dataset_files("arc-agi-1", "evaluation")
    tasks = load_tasks(challenges)
    ids = sorted(tasks)[:4]
    cfg = TTFTConfig(steps=steps, seq_len=4096, max_len=4096, dtype="bf16", **s)
    fitter = LoraFitter(model_dir, cfg, "cuda" if torch.cuda.is_available() else "cpu")
    stats, t0 = [], time.time()
    for t in ids:
        fitter.reset()
        stats.append(fitter.fit([tasks[t]], steps, 0.0, 0))
    return {
        "seconds_per_task": round((time.time() - t0) / len(ids), 2),
        "loss_first": round(float(np.mean([x["loss_first"] for x in stats])), 4),
        "loss_last": round(float(np.mean([x["loss_last"] for x in stats])), 4),
    }


def one_variant(name: str, model_dir: Path, steps: int) -> dict:
    kind, settings = VARIANTS[name]
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    row = (run_train if kind == "train" else run_ttft)(model_dir, steps, settings)
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan")
    row.update(seconds=round(time.time() - t0, 1), peak_mem_gb=round(peak, 2))
    return row


def in_subprocess(name: str, model_dir: Path, steps: int, timeout: float) -> dict:
    """One variant in a fresh process; its last stdout line is the row, else the error's last line."""
    cmd = [sys.executable, __file__, "--one", name, "--model", str(model_dir), "--steps", str(steps)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    notice = [ln for ln in p.stderr.splitlines() if "unavailable" in ln]
    if p.returncode == 0 and p.stdout.strip():
        row = json.loads(p.stdout.strip().splitlines()[-1])
        if notice:  # backend=unsloth fell back to the plain path: not an unsloth number
            row["error"] = notice[-1].strip()
        return row
    tail = [ln for ln in p.stderr.splitlines() if ln.strip()]
    return {"error": (tail[-1] if tail else f"exit {p.returncode}")[:300]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench_backends.json"))
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--preset", default="qwen0.5b-shape", help="model shape (tiny: a CPU smoke run)")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--timeout", type=float, default=150.0, help="seconds per variant")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_variant(args.one, args.model, args.steps)), flush=True)
        return
    names = [v for v in args.variants.split(",") if v]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        sys.exit(f"bench_backends: unknown variant(s) {unknown} (known: {', '.join(VARIANTS)})")
    versions = {}
    for mod in ("torch", "transformers", "peft", "bitsandbytes", "unsloth", "unsloth_zoo", "trl"):
        try:
            versions[mod] = importlib.metadata.version(mod)
        except Exception as e:  # not installed: the rows say what that costs
            versions[mod] = f"missing ({type(e).__name__})"
    model_dir = make_checkpoint(Path(tempfile.mkdtemp()) / args.preset, args.preset)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    result = {"device": device, "preset": args.preset, "steps": args.steps, "versions": versions}
    rows = {}
    for name in names:
        rows[name] = in_subprocess(name, model_dir, args.steps, args.timeout)
        print(f"{name:20s} {json.dumps(rows[name])}", flush=True)
        # after every row: a run cut off at its limit keeps what it measured
        write_json_atomic(args.out, {**result, "rows": rows}, indent=1)


if __name__ == "__main__":
    main()
