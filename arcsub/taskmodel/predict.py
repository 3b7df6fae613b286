"""Inference for the task-embedding model: views -> batched, grammar-constrained decoding -> revert -> vote.

For every test input we make K views (identity, the rest of D8, then random D8 + colour permutations that
keep 0 and output-only colours, as in training), feed each as [bos] input [sep] with the task's embedding row
and the view's D8 id, and decode the output with a KV cache, many prompts per batch. Only well-formed grids can
be written (infer.torch_engine.GridConstraint). Each answer is mapped back with the view's inverse and the two
attempts are chosen by arcsub.core.select (by default the distinct answers' summed log-probability under several
views, ARChitects' product of experts; or majority vote; answers equal to the test input are left out, as in
mdlARC, since no ARC output equals its input). Files are named from the model, the data and
a hash of the settings, so runs never overwrite each other:

    predictions__<model>__<data>__<hash>.json   {task: [[{grid, logprob, tokens, view}, ...] per test input]}
    submission__<model>__<data>__<hash>.json    Kaggle's format, fallbacks filled
    run__<model>__<data>__<hash>.json           settings, counts, timings (and scores with solutions)
"""

from __future__ import annotations

import logging
import sys
import time
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from tqdm.auto import tqdm

from arcsub.core.augment import Augmentation
from arcsub.core.candidates import Candidate, SamplingSettings, length_batches, safe_logprob
from arcsub.core.config import settings_hash, to_dict
from arcsub.core.data import (
    ArcDataError,
    Task,
    grid_to_list,
    grids_equal,
    resolve_path,
)
from arcsub.core.device import pick_dtype
from arcsub.core.grammar import SYNC_EVERY, GridConstraint, decoding_sdpa_backends
from arcsub.core.memory import halving_on_oom, tokens_that_fit, usable_memory
from arcsub.core.runs import Attempts, Predictions, check_run_inputs, run_tasks, write_prediction_files
from arcsub.core.select import NEEDS_SCORER, Scorer, select
from arcsub.taskmodel.data import (
    EOS,
    NL,
    PAD,
    SEP,
    TaskIndex,
    decode_grid,
    encode_pair,
    free_colours,
    grid_tokens,
    pair_views,
    task_pairs_for_views,
)
from arcsub.taskmodel.model import (
    ArcTaskConfig,
    ArcTaskForCausalLM,
    load_task_model,
    next_output_position,
)

log = logging.getLogger("arcsub.taskmodel.predict")


def _default_sampling() -> SamplingSettings:
    return SamplingSettings(batch_tokens=0)  # 0: sized from the GPU's memory (auto_batch_tokens)


@dataclass
class TaskPredictConfig:
    """Everything a task-model prediction run depends on (hashed into the output file names)."""

    views: int = 32  # views per test input (identity, the other D8 elements, then random D8 + colours)
    d8: bool = True
    colours: bool = True
    # greedy or sample; batch_tokens 0 = auto (from the GPU's memory, at most 1 << 20), or a fixed budget
    sampling: SamplingSettings = field(default_factory=_default_sampling)
    # likelihood: measured best at every view count (docs/experiments/task-model-arc1-eval.md: 0.52 vs 0.48
    # by vote at 32 views); scoring is one teacher-forced pass per distinct answer and scoring view
    selection: Literal["vote", "likelihood", "vote+likelihood"] = "likelihood"
    score_views: int = 8  # likelihood selection: views each distinct answer is re-scored under
    drop_input_copies: bool = True  # leave answers equal to the test input out of the vote
    dtype: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    device: str = "auto"
    seed: int = 0

    def validate(self) -> TaskPredictConfig:
        if self.views < 1 or self.score_views < 1:
            raise ArcDataError("config: views and score_views must be at least 1")
        s = self.sampling.validate()
        if s.mode not in ("greedy", "sample") or s.top_p is not None:
            raise ArcDataError("sampling: task models support mode=greedy or sample (no top_p, no dfs)")
        return self


# ------------------------------------------------------------------------------------------- decoding

COMPACT_AT = 1 / 8  # drop finished rows from a decoding batch once this share of its live rows is done


def decode_bytes_per_token(config: ArcTaskConfig, dtype: torch.dtype, prompt_len: int, max_new: int) -> float:
    """Peak GPU bytes per token of a decoding batch's budget, rows x (prompt_len + max_new).

    Counted: the KV cache (layers x 2 x hidden x dtype bytes per token) twice, since dropping finished rows
    copies it; one layer's prefill activations per prompt token (qkv, rotated q/k, attention and residual
    outputs, SwiGLU's gate, up and product: 8 hidden + 3 intermediate) and its logits (bf16/fp16 + fp32);
    and the dense SDPA padding mask, rows x L x L bools and their additive float form, that every path
    decodes with (the cache path has no flex mask; on the T4 path nothing else would take it)."""
    b = dtype.itemsize
    h, inter = config.hidden_size, config.intermediate_size
    kv = config.num_hidden_layers * 2 * h * b
    prefill = (8 * h + 3 * inter) * b + config.vocab_size * (b + 4) + prompt_len * (1 + b)
    return 2 * kv + prefill * prompt_len / (prompt_len + max_new)


def auto_batch_tokens(
    memory_bytes: int | None, config: ArcTaskConfig, dtype: torch.dtype, prompt_len: int, max_new: int
) -> int:
    """The decoding token budget that fits `memory_bytes` (None, a CPU: the 1 << 20 ceiling)."""
    return tokens_that_fit(memory_bytes, decode_bytes_per_token(config, dtype, prompt_len, max_new))


def batch_budget(model: ArcTaskForCausalLM, batch_tokens: int, prompt_len: int, max_new: int) -> int:
    """batch_tokens when set, else the budget that fits this process's free GPU memory now (logged)."""
    if batch_tokens:
        return batch_tokens
    w = model.lm_head.weight
    budget = auto_batch_tokens(usable_memory(w.device), model.config, w.dtype, prompt_len, max_new)
    log.info("batch_tokens auto: %d (prompts up to %d tokens, %d new)", budget, prompt_len, max_new)
    return budget


@torch.no_grad()
def decode(
    model: ArcTaskForCausalLM,
    prompts: Sequence[np.ndarray],
    rows: Sequence[int],
    views: Sequence[int],
    params: SamplingSettings,
    progress: bool = False,
) -> list[list[Candidate]]:
    """Candidates (greedy: 1, sample: n) for each prompt, batched by length under params.batch_tokens (0:
    sized from the GPU's memory); a batch that runs out of memory is split in halves and retried."""
    out: list[list[Candidate]] = [[] for _ in prompts]
    if not prompts:
        return out
    gen = torch.Generator(device=model.lm_head.weight.device).manual_seed(params.seed)
    each = params.n if params.mode == "sample" else 1
    lengths = [len(p) for p in prompts]
    budget = batch_budget(model, params.batch_tokens, max(lengths), params.max_new_tokens)

    def run(idx: Sequence[int]) -> list[Candidate]:
        rep = [i for i in idx for _ in range(each)]
        return decode_batch(
            model, [prompts[i] for i in rep], [rows[i] for i in rep], [views[i] for i in rep], params, gen
        )

    batches = length_batches(lengths, each, params.max_new_tokens, budget)
    for idx in tqdm(batches, desc="decode", unit="batch", disable=not progress, file=sys.stderr):
        rep = [i for i in idx for _ in range(each)]
        for i, c in zip(rep, halving_on_oom(run, idx, "task-model decoding"), strict=True):
            out[i].append(c)
    return out


def _left_pad(seqs: Sequence[np.ndarray], device) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), length), PAD, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, length - len(s) :] = torch.as_tensor(s)
        mask[i, length - len(s) :] = True
    return ids.to(device), mask.to(device)


def decode_batch(
    model: ArcTaskForCausalLM,
    prompts: Sequence[np.ndarray],
    rows: Sequence[int],
    views: Sequence[int],
    params: SamplingSettings,
    gen: torch.Generator,
) -> list[Candidate]:
    """One prefill over the left-padded prompts, then one token per step for every row until all wrote eos.

    The position of a generated token follows from the previous one (taskmodel.next_output_position, tested
    equal to grid_positions over the output so far), so decoding uses exactly the coordinates training used.
    Kept whole (~70 lines) like the LM engine's decode loop: its per-step state is shared by every step."""
    dev = model.lm_head.weight.device
    ids, mask = _left_pad(prompts, dev)
    task = torch.as_tensor(rows, device=dev)
    view = torch.as_tensor(views, device=dev)
    n, max_new = len(prompts), params.max_new_tokens
    cache = model.new_cache(n, ids.shape[1] + max_new)
    with decoding_sdpa_backends(dev):
        logits = model(ids, task, view, attention_mask=mask, cache=cache).logits[:, -1]
    grammar = GridConstraint(model.config.vocab_size, range(10), NL, EOS, dev) if params.constrained else None
    state = grammar.start(n) if grammar else None
    # full-size results; the live tensors (logits, tok, done, task, view, state, cache) hold the rows still
    # decoding, `slot` maps them to their result rows
    out = torch.full((n, max_new + 1), PAD, dtype=torch.long, device=dev)
    out[:, 0] = SEP
    logprob = torch.zeros(n, device=dev)
    n_tokens = torch.zeros(n, dtype=torch.long, device=dev)
    finished = torch.zeros(n, dtype=torch.bool, device=dev)
    slot = torch.arange(n, device=dev)
    done = torch.zeros(n, dtype=torch.bool, device=dev)
    col = torch.zeros(n, dtype=torch.long, device=dev)  # where the next output token sits in its grid
    row = torch.zeros(n, dtype=torch.long, device=dev)
    seq_pos = mask.sum(-1) - 1  # 1-D positions (ablation): the separator's index after bos
    one_d = model.config.positions == "1d"
    for t in range(max_new):
        logp = logits.float().log_softmax(-1)
        allowed = logp if grammar is None else logp.masked_fill(~grammar.allowed(state), float("-inf"))
        if params.mode == "sample":
            tok = torch.multinomial((allowed / params.temperature).softmax(-1), 1, generator=gen)[:, 0]
        else:
            tok = allowed.argmax(-1)
        tok = torch.where(done, EOS, tok)
        logprob[slot] += torch.where(done, 0.0, logp.gather(1, tok[:, None])[:, 0])
        n_tokens[slot] += (~done).long()
        out[slot, t + 1] = tok
        if grammar:
            state = grammar.advance(state, tok)
        done = done | (tok == EOS)
        finished[slot] = done
        if t == max_new - 1:
            break
        if t % SYNC_EVERY == SYNC_EVERY - 1:  # the only host sync: lets the CPU queue steps ahead of the GPU
            n_done = int(done.sum())
            if n_done == len(done):
                break
            if n_done >= max(1, int(len(done) * COMPACT_AT)):  # drop finished rows from the batch
                keep = (~done).nonzero()[:, 0]
                cache.select(keep)
                slot, tok, done, task, view, col, row, seq_pos = (
                    x[keep] for x in (slot, tok, done, task, view, col, row, seq_pos)
                )
                state = state.select(keep) if state is not None else None
        if one_d:
            seq_pos = seq_pos + 1
            pos = seq_pos[:, None, None]
        else:
            pos, col, row = next_output_position(tok, col, row)
        with decoding_sdpa_backends(dev):
            logits = model(tok[:, None], task, view, grid_pos=pos, cache=cache).logits[:, -1]
    toks, lens, fin, lps = out[:, 1:].tolist(), n_tokens.tolist(), finished.tolist(), logprob.tolist()
    return [Candidate(toks[i][: lens[i] - fin[i]], lps[i], lens[i], fin[i]) for i in range(n)]


@torch.no_grad()
def score_answers(
    model: ArcTaskForCausalLM,
    prompts: Sequence[np.ndarray],
    answers: Sequence[np.ndarray],
    rows: Sequence[int],
    views: Sequence[int],
    batch_tokens: int,
) -> list[float]:
    """Summed log-probability of each answer (output tokens and eos) after its prompt (teacher forcing).

    batch_tokens 0 sizes batches from the GPU's memory as for decoding (a teacher-forced row of prompt +
    answer costs less than a decoded one: no cache); out-of-memory batches are halved and retried."""
    dev = model.lm_head.weight.device
    seqs = [np.concatenate([p, a]) for p, a in zip(prompts, answers, strict=True)]
    scores = [0.0] * len(seqs)
    if not seqs:
        return scores
    budget = batch_budget(model, batch_tokens, max(len(p) for p in prompts), max(len(a) for a in answers))

    def run(idx: Sequence[int]) -> list[float]:
        ids, mask = _left_pad([seqs[i] for i in idx], dev)
        logits = model(
            ids,
            torch.as_tensor([rows[i] for i in idx], device=dev),
            torch.as_tensor([views[i] for i in idx], device=dev),
            attention_mask=mask,
        ).logits
        lp = logits[:, :-1].float().log_softmax(-1).gather(-1, ids[:, 1:, None])[..., 0]
        answer_len = torch.as_tensor([len(answers[i]) for i in idx], device=dev)
        first = ids.shape[1] - answer_len  # index of the first answer token (prompts are left-padded)
        in_answer = torch.arange(1, ids.shape[1], device=dev)[None, :] >= first[:, None]
        return (lp * in_answer).sum(-1).tolist()

    for idx in length_batches([len(s) for s in seqs], 1, 0, budget):
        for i, s in zip(idx, halving_on_oom(run, idx, "task-model scoring"), strict=True):
            scores[i] = s
    return scores


# ------------------------------------------------------------------------------------------- pipeline


@dataclass
class ViewJob:
    """One prompt: a view of one test input of one task."""

    task_id: str
    test_index: int
    view: Augmentation
    prompt: np.ndarray
    row: int


def task_views(task: Task, cfg: TaskPredictConfig) -> list[Augmentation]:
    """The task's views, seeded by (seed, task id): the same views whatever the batch or task order."""
    rng = np.random.default_rng([cfg.seed, zlib.crc32(task.id.encode())])
    return pair_views(free_colours(task_pairs_for_views(task)), cfg.views, rng, cfg.d8, cfg.colours)


def view_jobs(task: Task, row: int, cfg: TaskPredictConfig) -> list[ViewJob]:
    return [
        ViewJob(task.id, i, v, encode_pair(v.apply_grid(p.input)), row)
        for v in task_views(task, cfg)
        for i, p in enumerate(task.test)
    ]


def poe_scorer(model: ArcTaskForCausalLM, jobs: Sequence[ViewJob], cfg: TaskPredictConfig) -> Scorer:
    """Product of experts: a grid's score is its summed log-probability under the first score_views views."""
    chosen = list(jobs)[: cfg.score_views]

    def score(grids: list) -> list[float]:
        pairs = [(g, j) for g in grids for j in chosen]
        answers = [np.append(grid_tokens(j.view.apply_grid(g)), EOS) for g, j in pairs]
        s = score_answers(
            model,
            [j.prompt for _, j in pairs],
            answers,
            [j.row for _, j in pairs],
            [j.view.d8 for _, j in pairs],
            cfg.sampling.batch_tokens,
        )
        m = len(chosen)
        return [float(sum(s[k * m : (k + 1) * m])) for k in range(len(grids))]

    return score


def ensure_rows(model: ArcTaskForCausalLM, index: TaskIndex, task_ids: Sequence[str]) -> None:
    """Tasks the model never trained on get new rows (the mean task) in memory, with one warning."""
    new = index.add(task_ids)
    if new:
        log.warning(
            "%d task(s) not seen in training (e.g. %s): predicted with the mean task embedding",
            len(new),
            new[0],
        )
        model.add_tasks(len(new))


Member = tuple[ArcTaskForCausalLM, TaskIndex]  # one model of an ensemble, with its own task rows


def sum_scorer(scorers: Sequence[Scorer]) -> Scorer:
    """Product of experts across models: a grid's score is the sum of every member's summed log-probability,
    so an ensemble's candidate wins by being likely under all of its models, not by one model's vote."""

    def score(grids: list) -> list[float]:
        return [float(sum(col)) for col in zip(*(f(grids) for f in scorers), strict=True)]

    return score


def member_candidates(
    member: Member, tasks: Mapping[str, Task], cfg: TaskPredictConfig, progress: bool, counts: dict[str, int]
) -> tuple[dict[tuple[str, int], list[dict[str, Any]]], dict[tuple[str, int], list[ViewJob]]]:
    """One model's candidates per (task, test index), in the original frame, and the view jobs behind them
    (its likelihood scorer re-reads them). `counts` adds up prompts, candidates, valid ones and tokens."""
    model, index = member
    model.eval()
    ensure_rows(model, index, list(tasks))
    jobs = [j for t in tasks.values() for j in view_jobs(t, index.row(t.id), cfg)]
    outs = decode(
        model,
        [j.prompt for j in jobs],
        [j.row for j in jobs],
        [j.view.d8 for j in jobs],
        cfg.sampling,
        progress,
    )
    per_output: dict[tuple[str, int], list[dict[str, Any]]] = {}
    jobs_of: dict[tuple[str, int], list[ViewJob]] = {}
    counts["prompts"] += len(jobs)
    for job, cands in zip(jobs, outs, strict=True):
        key = (job.task_id, job.test_index)
        jobs_of.setdefault(key, []).append(job)
        for c in cands:
            grid = job.view.revert_grid(decode_grid(c.tokens) if c.finished else None)
            per_output.setdefault(key, []).append(
                {
                    "grid": None if grid is None else grid_to_list(grid),
                    "logprob": safe_logprob(c.logprob),
                    "tokens": int(c.n_tokens),
                    "view": job.view.name,
                }
            )
            counts["candidates"] += 1
            counts["valid"] += grid is not None
            counts["generated_tokens"] += int(c.n_tokens)
    return per_output, jobs_of


def predict_tasks(
    model: ArcTaskForCausalLM,
    index: TaskIndex,
    tasks: Mapping[str, Task],
    cfg: TaskPredictConfig | None = None,
    progress: bool = True,
    stats: dict[str, Any] | None = None,
    ensemble: Sequence[Member] = (),
) -> tuple[Predictions, Attempts]:
    """Predictions (every candidate, in the original frame) and attempts (top-2 grids per test input).

    `ensemble`: more models (e.g. other seeds) decode the same views; their candidates join the first model's
    (each marked with its "member") and likelihood sums every member's scores. Only test inputs are read: a
    test output in `tasks` (from a file with solutions inline) is never used."""
    cfg = (cfg or TaskPredictConfig()).validate()
    t0 = time.time()
    members = [(model, index), *ensemble]
    counts = {"prompts": 0, "candidates": 0, "valid": 0, "generated_tokens": 0}
    made = [member_candidates(m, tasks, cfg, progress, counts) for m in members]
    predictions: Predictions = {}
    attempts: Attempts = {}
    for task in tasks.values():
        predictions[task.id], attempts[task.id] = [], []
        for i, pair in enumerate(task.test):
            cands = [
                {**c, "member": k} if len(members) > 1 else c
                for k, (per_output, _) in enumerate(made)
                for c in per_output.get((task.id, i), [])
            ]
            voters = [c for c in cands if not (cfg.drop_input_copies and grids_equal(c["grid"], pair.input))]
            scorer = None
            if cfg.selection in NEEDS_SCORER:
                scorers = [
                    poe_scorer(m, jobs[(task.id, i)], cfg)
                    for (m, _), (_, jobs) in zip(members, made, strict=True)
                ]
                scorer = sum_scorer(scorers)
            top = select(voters, cfg.selection, scorer)
            predictions[task.id].append(cands)
            attempts[task.id].append([None if g is None else grid_to_list(g) for g in top])
    if stats is not None:
        stats.update(counts, tasks=len(tasks), seconds=round(time.time() - t0, 3))
    return predictions, attempts


# ------------------------------------------------------------------------------------------ files, runs


def output_paths(
    out_dir: str | Path,
    model_dir: str | Path,
    challenges: str | Path,
    cfg: TaskPredictConfig,
    task_ids: Sequence[str] | None = None,
    ensemble: Sequence[str | Path] = (),
) -> dict[str, Path]:
    from arcsub.core.runs import data_label, model_label

    key = {"config": to_dict(cfg), "model": str(Path(model_dir).resolve()), "tasks": list(task_ids or [])}
    if ensemble:  # only then: a single model's file names stay what they were
        key["ensemble"] = [str(Path(m).resolve()) for m in ensemble]
    tail = f"{model_label(model_dir)}__{data_label(challenges)}__{settings_hash(key)}.json"
    return {k: Path(out_dir) / f"{k}__{tail}" for k in ("predictions", "submission", "run")}


def predict_device(cfg: TaskPredictConfig) -> torch.device:
    if cfg.device != "auto":
        return torch.device(cfg.device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def run_task_predict(
    model_dir: str | Path,
    challenges: str | Path,
    out_dir: str | Path,
    cfg: TaskPredictConfig | None = None,
    solutions: str | Path | None = None,
    task_ids: Sequence[str] | None = None,
    submission_path: str | Path | None = None,
    progress: bool = True,
    ensemble: Sequence[str | Path] = (),
) -> dict[str, Any]:
    """Predict a challenges file with a task model (and the `ensemble` models beside it: their candidates are
    pooled, predict_tasks); write predictions, submission and a run summary.

    With `solutions`, the summary holds the Kaggle score, the candidate metrics and each task's score."""
    cfg = (cfg or TaskPredictConfig()).validate()
    challenges = resolve_path(challenges)
    solutions = None if solutions is None else resolve_path(solutions)
    tasks = run_tasks(challenges, task_ids)
    paths = output_paths(out_dir, model_dir, challenges, cfg, task_ids, ensemble)
    check_run_inputs(tasks, solutions, [*paths.values(), submission_path])
    device = predict_device(cfg)
    dtype = pick_dtype(cfg.dtype, device)
    (model, index), *others = [load_task_model(m, device, dtype) for m in (model_dir, *ensemble)]
    stats: dict[str, Any] = {"device": str(device)}
    predictions, attempts = predict_tasks(model, index, tasks, cfg, progress, stats, others)
    summary: dict[str, Any] = {
        "model": str(model_dir),
        **({"ensemble": [str(m) for m in ensemble]} if ensemble else {}),
        "challenges": str(challenges),
        "config": to_dict(cfg),
        "stats": stats,
    }
    return write_prediction_files(paths, tasks, predictions, attempts, submission_path, summary, solutions)
