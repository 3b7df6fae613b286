"""Generate new examples for a task (Omni-ARC's second objective): sample new inputs from the task's inputs
with the 'input-from-inputs' prompt, then predict their outputs with the usual voted prediction.

Reports how many sampled inputs are valid grids and new (not one of the task's inputs); for ARC-AGI-1
training tasks, RE-ARC's generated pairs give ground truth wherever a sampled input equals one of them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from arcsub.core.data import (
    Grid,
    Pair,
    Task,
    grid_to_list,
    grids_equal,
    load_pairs,
    task_path,
    write_json_atomic,
)
from arcsub.core.encode import FORMATS, Codec, build_example, parse_answer


def inputs_task(task: Task) -> Task:
    """Every input of a task (train and test) as context; the prompt asks for one more input."""
    pairs = [Pair(p.input, p.input) for p in task.train + task.test]
    largest = max(pairs, key=lambda p: p.input.size)
    return Task(task.id, pairs, [Pair(largest.input)])


def sample_inputs(
    task: Task, engine, codec: Codec, fmt_name: str, n: int, max_len: int, seed: int
) -> list[Grid | None]:
    """n sampled new inputs (None where the sample is not a valid grid)."""
    from arcsub.core.candidates import SamplingSettings

    fmt = FORMATS[fmt_name]
    ex = build_example(inputs_task(task), codec, fmt, 0, "input-from-inputs", max_len, with_answer=False)
    if ex is None:
        return [None] * n
    params = SamplingSettings(mode="sample", n=n, temperature=1.0, seed=seed)
    (cands,) = engine.generate([ex.ids.tolist()], params)
    return [parse_answer(c.tokens + [codec.eos_id], codec, fmt) if c.finished else None for c in cands]


def judge(new_input: Grid, predicted: Grid | None, reference: list[Pair]) -> bool | None:
    """Whether a predicted output is right, where the reference pairs contain the sampled input (else None)."""
    for p in reference:
        if grids_equal(p.input, new_input):
            return grids_equal(p.output, predicted)
    return None


def generate(
    tasks: dict[str, Task],
    model: str,
    n: int = 8,
    views: int = 8,
    max_len: int = 8192,
    seed: int = 0,
    re_arc: str | Path | None = None,
    save_to: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """For each task: n sampled inputs, their voted outputs, and the counts (valid, new, checkable, correct).

    With `save_to`, the report so far is written there (atomically) after every task: a long run keeps its work."""
    from tqdm.auto import tqdm

    from arcsub.lm.predict import PredictConfig, open_engine, predict

    cfg = PredictConfig(views=views, max_len=max_len, seed=seed)
    engine, tok, fmt_name = open_engine(model, cfg)
    codec = Codec(tok)
    report: dict[str, Any] = {
        "tasks": {},
        "totals": dict.fromkeys(("sampled", "valid", "new", "checkable", "correct"), 0),
    }
    bar = tqdm(tasks.items(), desc="generate", unit="task", disable=not progress, file=sys.stderr)
    for tid, task in bar:
        known = [p.input for p in task.train + task.test]
        sampled = sample_inputs(task, engine, codec, fmt_name, n, max_len, seed)
        valid = [g for g in sampled if g is not None]
        new = [g for g in valid if not any(grids_equal(g, k) for k in known)]
        gen_tasks = {f"{tid}#new{i}": Task(f"{tid}#new{i}", task.train, [Pair(g)]) for i, g in enumerate(new)}
        attempts = {}
        if gen_tasks:  # the engine is passed in, so the model slot of the triple is not used
            _, attempts = predict(gen_tasks, (None, tok, fmt_name), cfg, engine=engine, progress=False)
        ref_file = task_path(re_arc, tid, ".json") if re_arc else None
        reference = load_pairs(ref_file) if ref_file is not None and ref_file.exists() else []
        examples, verdicts = [], []
        for gid, g in zip(gen_tasks, new, strict=True):
            out = attempts[gid][0][0]
            out_grid = None if out is None else np.asarray(out, dtype=np.uint8)
            verdict = judge(g, out_grid, reference)
            verdicts.append(verdict)
            examples.append({"input": grid_to_list(g), "output": out, "correct": verdict})
        counts = {
            "sampled": len(sampled),
            "valid": len(valid),
            "new": len(new),
            "checkable": sum(v is not None for v in verdicts),
            "correct": sum(v is True for v in verdicts),
        }
        report["tasks"][tid] = {"counts": counts, "examples": examples}
        for k, v in counts.items():
            report["totals"][k] += v
        bar.set_postfix({k: report["totals"][k] for k in ("valid", "new", "correct")})
        if save_to is not None:
            write_json_atomic(save_to, report, indent=1)
    return report


__all__ = ["generate", "judge", "inputs_task", "sample_inputs"]
