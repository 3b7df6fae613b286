"""Training throughput: `arcsub train` (packed, bf16, optional compile / flex attention) against a plain
`transformers.Trainer` with dynamic padding, same model shape, same data, same device, one process.

    python bench/bench_train.py --preset small --out bench_train_small.json

Prints a table (useful = non-padding tokens/s, MFU against the H100's 989 TFLOP/s bf16 dense peak, peak memory).
Not a test: run it on the GPU machine and record the numbers in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from arcsub.core.data import dataset_files
from arcsub.core.encode import Codec, build_compact_tokenizer
from arcsub.lm.batches import DataSettings, TaskPool, sample_example
from arcsub.lm.models import build_model, preset_config
from arcsub.lm.train import TrainConfig, train
from arcsub.training.runtime import OptimSettings

PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "T4": 65e12}


def peak_flops() -> float:
    name = torch.cuda.get_device_name() if torch.cuda.is_available() else ""
    return next((v for k, v in PEAK_FLOPS.items() if k in name), float("nan"))


def flops_per_token(preset: str, ctx: float) -> float:
    """6 x (non-embedding params) + attention (12 x layers x hidden x mean context), PaLM's MFU convention."""
    c = preset_config(preset)
    model, _ = build_model(preset)
    n = sum(p.numel() for n_, p in model.named_parameters() if "embed" not in n_)
    return 6 * n + 12 * c.num_hidden_layers * c.hidden_size * ctx


def data_settings() -> DataSettings:
    c, _ = dataset_files("arc-agi-1", "training")
    return DataSettings(challenges=[str(c)])


def baseline_trainer(preset: str, batch: int, steps: int, max_len: int) -> dict:
    """Plain transformers.Trainer, dynamic padding to the longest example of each batch, bf16."""
    from transformers import Trainer, TrainerCallback, TrainingArguments

    codec = Codec(build_compact_tokenizer())
    pool = TaskPool(data_settings())
    rng = np.random.default_rng(0)
    rows = []
    while len(rows) < batch * steps:
        ex = sample_example(pool, codec, rng, max_len, "compact")
        if ex is not None:
            rows.append({"input_ids": ex.ids.tolist(), "labels": np.where(ex.mask, ex.ids, -100).tolist()})
    model, tok = build_model(preset, max_len=max_len)

    def collate(items):
        L = max(len(i["input_ids"]) for i in items)
        ids = torch.full((len(items), L), tok.pad_token_id)
        lab = torch.full((len(items), L), -100)
        att = torch.zeros((len(items), L), dtype=torch.long)
        for k, i in enumerate(items):
            n = len(i["input_ids"])
            ids[k, :n], lab[k, :n], att[k, :n] = torch.tensor(i["input_ids"]), torch.tensor(i["labels"]), 1
        return {"input_ids": ids, "labels": lab, "attention_mask": att}

    class Clock(TrainerCallback):
        t = None

        def on_step_end(self, args, state, control, **kw):
            if state.global_step == 5:
                torch.cuda.synchronize()
                Clock.t = time.time()

    out = tempfile.mkdtemp()
    args = TrainingArguments(
        out,
        per_device_train_batch_size=batch,
        max_steps=steps,
        bf16=True,
        logging_steps=50,
        save_strategy="no",
        report_to=[],
        dataloader_num_workers=2,
        learning_rate=1e-3,
        remove_unused_columns=False,
    )
    torch.cuda.reset_peak_memory_stats()
    Trainer(model=model, args=args, train_dataset=rows, data_collator=collate, callbacks=[Clock()]).train()
    torch.cuda.synchronize()
    dt = time.time() - Clock.t
    useful = sum(len(r["input_ids"]) for r in rows[5 * batch :])
    shutil.rmtree(out, ignore_errors=True)
    ctx = float(np.mean([len(r["input_ids"]) for r in rows])) / 2
    return {"tokens_per_s": useful / dt, "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30, "ctx": ctx}


def arcsub_train(preset: str, rows: int, seq_len: int, steps: int, attn: str, compile_: bool) -> dict:
    out = tempfile.mkdtemp()
    cfg = TrainConfig(
        model=preset,
        data=data_settings(),
        steps=steps,
        rows=rows,
        seq_len=seq_len,
        max_len=seq_len,
        attn=attn,
        compile=compile_,
        workers=4,
        log_every=10,
        save_every=10**9,
        out_dir=out,
        optim=OptimSettings(warmup=10),
    )
    torch.cuda.reset_peak_memory_stats()
    run = train(cfg, progress=False)
    recs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    tps = float(np.median([r["tokens_per_s"] for r in recs[2:]]))
    shutil.rmtree(out, ignore_errors=True)
    return {
        "tokens_per_s": tps,
        "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30,
        "final_loss": recs[-1]["loss"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--baseline-batch", type=int, default=8)
    ap.add_argument("--baseline-steps", type=int, default=60)
    ap.add_argument("--rows", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--variants", default="sdpa,flex_attention+compile")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    results = {"device": torch.cuda.get_device_name(), "preset": a.preset, "torch": torch.__version__}
    base = baseline_trainer(a.preset, a.baseline_batch, a.baseline_steps, a.seq_len)
    fpt = flops_per_token(a.preset, base["ctx"])
    base["mfu"] = base["tokens_per_s"] * fpt / peak_flops()
    results["trainer"] = base
    for v in a.variants.split(","):
        attn, _, comp = v.partition("+")
        try:
            r = arcsub_train(a.preset, a.rows, a.seq_len, a.steps, attn, comp == "compile")
            r["mfu"] = r["tokens_per_s"] * fpt / peak_flops()
            r["speedup"] = r["tokens_per_s"] / base["tokens_per_s"]
        except Exception as e:  # a variant that does not run here is reported, not fatal
            r = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"}
        results[f"arcsub[{v}]"] = r
    print(f"\n{results['device']} | preset {a.preset} | {fpt / 1e6:.1f} MFLOP/token")
    print(f"{'variant':34s} {'useful tok/s':>13s} {'MFU':>6s} {'x base':>7s} {'peak GB':>8s}")
    for k, r in results.items():
        if isinstance(r, dict) and "tokens_per_s" in r:
            print(
                f"{k:34s} {r['tokens_per_s']:13,.0f} {r['mfu']:6.1%} {r.get('speedup', 1):7.2f} "
                f"{r['peak_mem_gb']:8.1f}"
            )
        elif isinstance(r, dict):
            print(f"{k:34s} {r['error']}")
    if a.out:
        Path(a.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
