"""Inference throughput: the torch engine (batched, KV cache, finished rows dropped) against plain
`model.generate` one prompt at a time, greedy, same model, same prompts; plus DFS time per task.

    python bench/bench_infer.py --preset small --out bench_infer_small.json          # CUDA: 100 tasks x 8 views
    python bench/bench_infer.py --tasks 3 --views 2 --out /tmp/bench_infer.json      # CPU smoke check

Prompts: the first --tasks ARC-AGI-1 evaluation tasks x --views augmented views x test inputs. The baseline
runs on the first --baseline-prompts prompts only (it is slow) and is compared as rates; the greedy tokens of
both are checked for equality on those prompts. A random-weight model is "sharpened" (--sharpen: lm_head
kept on grid tokens only and scaled) so that it writes confident, variable-length grids like a trained model;
pass --model DIR for a real one. DFS runs constrained for a real model; for a random one unconstrained (a
random model's confident path leaves the grid grammar at once, so constrained DFS would measure nothing).
Not a test: run it on the GPU machine and record the numbers.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from arcsub.core.candidates import SamplingSettings
from arcsub.core.data import dataset_files, load_tasks
from arcsub.core.device import pick_dtype
from arcsub.core.encode import COMPACT_VOCAB, FORMATS, Codec
from arcsub.core.grammar import decoding_sdpa_backends
from arcsub.lm.infer.torch_engine import TorchEngine
from arcsub.lm.models import build_model, load_model
from arcsub.lm.predict import PredictConfig, prompt_jobs


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gib(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")


def sharpen(model: torch.nn.Module, factor: float) -> None:
    """Make a random model confident on grid tokens: zero lm_head rows of other tokens, scale the rest."""
    grid = [COMPACT_VOCAB[c] for c in "0123456789\n"] + [COMPACT_VOCAB["<eos>"]]
    with torch.no_grad():
        w = model.lm_head.weight
        keep = torch.zeros(w.shape[0], dtype=torch.bool, device=w.device)
        keep[grid] = True
        w[~keep] = 0
        w[keep] *= factor


def timed(device: torch.device, fn):
    reset_peak(device)
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t, peak_gib(device)


def engine_run(engine: TorchEngine, prompts: list[list[int]], params: SamplingSettings, device) -> dict:
    out, secs, peak = timed(device, lambda: engine.generate(prompts, params))
    tokens = sum(c.n_tokens for cands in out for c in cands)
    return {
        "prompts": len(prompts),
        "seconds": secs,
        "predictions_per_s": len(prompts) / secs,
        "tokens": tokens,
        "tokens_per_s": tokens / secs,
        "peak_gib": peak,
        "finished": sum(c.finished for cands in out for c in cands),
        "_out": out,
    }


def hf_generate_run(model, codec: Codec, prompts: list[list[int]], max_new: int, device) -> dict:
    """The baseline: model.generate(greedy) on one prompt at a time; invalid ids suppressed as our engine does."""
    vocab = model.get_output_embeddings().weight.shape[0]
    suppress = [i for i in range(vocab) if i >= len(codec.tokenizer) or i in (codec.pad_id, codec.bos_id)]
    outs = []

    def run() -> None:
        for p in prompts:
            ids = torch.tensor([p], device=device)
            gen = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=False,
                max_new_tokens=max_new,
                eos_token_id=codec.eos_id,
                pad_token_id=codec.pad_id,
                suppress_tokens=suppress,
            )
            outs.append(gen[0, len(p) :].tolist())

    with (
        torch.inference_mode(),
        decoding_sdpa_backends(device),
    ):  # same attention kernels as the engine: a fair race
        _, secs, peak = timed(device, run)
    tokens = sum(len(o) for o in outs)
    return {
        "prompts": len(prompts),
        "seconds": secs,
        "predictions_per_s": len(prompts) / secs,
        "tokens": tokens,
        "tokens_per_s": tokens / secs,
        "peak_gib": peak,
        "_out": outs,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small", help="model preset (random init) when --model is not given")
    ap.add_argument("--model", help="a model directory instead of a random preset")
    ap.add_argument("--tasks", type=int, default=100)
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--max-len", type=int, default=8192)
    ap.add_argument("--max-new-tokens", type=int, default=931)
    ap.add_argument("--batch-tokens", type=int, default=SamplingSettings.batch_tokens)
    ap.add_argument("--baseline-prompts", type=int, default=16, help="prompts for model.generate (slow)")
    ap.add_argument("--dfs-tasks", type=int, default=10, help="tasks (all views) timed with DFS")
    ap.add_argument(
        "--dfs-budget", type=float, default=60.0, help="seconds per threshold; stops after a task"
    )
    ap.add_argument("--thresholds", type=float, nargs="+", default=[0.1, 0.3])
    ap.add_argument(
        "--sharpen", type=float, default=20.0, help="random models only; 0 keeps raw random weights"
    )
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", required=True, help="JSON results path")
    args = ap.parse_args()

    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    )
    dtype = pick_dtype("auto", device)
    if args.model:
        model, tok, fmt_name = load_model(args.model, dtype=dtype, device=device)
        label = args.model
    else:
        model, tok = build_model(args.preset, max_len=args.max_len, seed=0)
        fmt_name, label = "compact", f"{args.preset} (random init, sharpen {args.sharpen})"
        if args.sharpen:
            sharpen(model, args.sharpen)
    engine = TorchEngine(model, tok, device=device, dtype=dtype, batch_tokens=args.batch_tokens)
    codec, fmt = Codec(tok), FORMATS[fmt_name]

    challenges, _ = dataset_files("arc-agi-1", "evaluation")
    tasks = list(load_tasks(challenges).values())[: args.tasks]
    cfg = PredictConfig(views=args.views, max_len=args.max_len)
    jobs_per_task = [prompt_jobs(t, cfg, codec, fmt) for t in tasks]
    prompts = [j.ids for jobs in jobs_per_task for j in jobs]
    mean_prompt = sum(map(len, prompts)) / len(prompts)

    greedy = SamplingSettings(
        mode="greedy", constrained=False, max_new_tokens=args.max_new_tokens, batch_tokens=args.batch_tokens
    )
    constrained = SamplingSettings(**{**vars(greedy), "constrained": True})
    engine.generate(prompts[:2], SamplingSettings(**{**vars(greedy), "max_new_tokens": 8}))  # warm-up
    results: dict = {
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "dtype": str(dtype).replace("torch.", ""),
        "model": label,
        "tasks": len(tasks),
        "views": args.views,
        "prompts": len(prompts),
        "mean_prompt_tokens": round(mean_prompt, 1),
        "max_new_tokens": args.max_new_tokens,
        "batch_tokens": args.batch_tokens,
    }
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)

    def record(key: str, value) -> None:
        """Keep partial results: the JSON is rewritten after every phase."""
        results[key] = (
            {k: v for k, v in value.items() if not k.startswith("_")} if isinstance(value, dict) else value
        )
        out_path.write_text(json.dumps(results, indent=2))

    print(
        f"{results['device']} {results['dtype']}, model {label}, {len(tasks)} tasks x {args.views} views = "
        f"{len(prompts)} prompts (mean {mean_prompt:.0f} tokens)",
        flush=True,
    )
    print(
        f"{'':40s} {'prompts':>8s} {'pred/s':>9s} {'tok/s':>10s} {'seconds':>8s} {'peak GiB':>9s}", flush=True
    )

    def row(name: str, r: dict) -> None:
        print(
            f"{name:40s} {r['prompts']:8d} {r['predictions_per_s']:9.2f} {r['tokens_per_s']:10.0f} "
            f"{r['seconds']:8.1f} {r['peak_gib']:9.2f}",
            flush=True,
        )

    ours = engine_run(engine, prompts, greedy, device)
    record("torch_engine_greedy", ours)
    row("torch engine, greedy", ours)
    ours_c = engine_run(engine, prompts, constrained, device)
    record("torch_engine_greedy_constrained", ours_c)
    row("torch engine, greedy constrained", ours_c)
    base_prompts = prompts[: args.baseline_prompts]
    ours_same = engine_run(engine, base_prompts, greedy, device)  # the baseline's prompts, batched
    record("torch_engine_greedy_baseline_prompts", ours_same)
    row("torch engine, greedy, baseline prompts", ours_same)
    base = hf_generate_run(engine.model, codec, base_prompts, args.max_new_tokens, device)
    record("hf_generate_one_at_a_time", base)
    row("model.generate, 1 prompt at a time", base)
    same = sum(
        (c[0].tokens + ([codec.eos_id] if c[0].finished else [])) == b
        for c, b in zip(ours_same["_out"], base["_out"], strict=True)
    )
    record("baseline_token_match", f"{same}/{len(base_prompts)}")
    record("speedup_tokens_per_s", ours["tokens_per_s"] / base["tokens_per_s"])
    record("speedup_same_prompts_seconds", base["seconds"] / ours_same["seconds"])
    print(
        f"speed-up: {results['speedup_tokens_per_s']:.1f}x tokens/s (all prompts vs baseline), "
        f"{results['speedup_same_prompts_seconds']:.1f}x wall time on the baseline prompts; "
        f"greedy tokens equal to model.generate on {same}/{len(base_prompts)} prompts",
        flush=True,
    )

    dfs: dict = {}
    record("dfs_constrained", bool(args.model))
    for thr in args.thresholds:
        params = SamplingSettings(
            mode="dfs", dfs_threshold=thr, constrained=bool(args.model), max_new_tokens=args.max_new_tokens
        )
        times, found = [], 0
        reset_peak(device)
        for jobs in jobs_per_task[: args.dfs_tasks]:
            out, secs, _ = timed(
                device, lambda jobs=jobs, params=params: engine.generate([j.ids for j in jobs], params)
            )
            times.append(secs)
            found += sum(len(c) for c in out)
            if sum(times) > args.dfs_budget:
                break
        dfs[str(thr)] = {
            "tasks": len(times),
            "seconds_per_task": sum(times) / max(1, len(times)),
            "max_seconds_per_task": max(times, default=0.0),
            "candidates": found,
            "peak_gib": peak_gib(device),
        }
        record("dfs", dfs)
        r = dfs[str(thr)]
        print(
            f"DFS threshold {thr}: {r['seconds_per_task']:.2f} s/task (max {r['max_seconds_per_task']:.2f}) "
            f"over {r['tasks']} tasks, {r['candidates']} candidates, peak {r['peak_gib']:.2f} GiB",
            flush=True,
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
