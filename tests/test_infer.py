"""Tests of arcsub.lm.infer: DFS against brute force, the grid grammar, KV-cache and batching equivalences,
sampling, scoring, PEFT adapters, dtype choice and vLLM request building (without vllm)."""

from __future__ import annotations

import itertools
import logging
import math
import random

import numpy as np
import pytest
import torch

from arcsub.core.candidates import length_batches
from arcsub.core.data import ArcDataError
from arcsub.core.encode import COMPACT_VOCAB, FORMATS, Codec, build_compact_tokenizer, parse_answer
from arcsub.core.grammar import GridConstraint
from arcsub.lm.infer import Candidate, SamplingSettings
from arcsub.lm.infer.torch_engine import TorchEngine
from arcsub.lm.infer.vllm_engine import (
    VLLM_MISSING,
    build_requests,
    candidate_from_completion,
    choose_engine,
    sampling_kwargs,
    score_kwargs,
    vllm_installed,
)
from arcsub.lm.models import LoraSettings, apply_lora, build_model

TOK = build_compact_tokenizer()
CODEC = Codec(TOK)
EOS, NL = CODEC.eos_id, COMPACT_VOCAB["\n"]
FMT = FORMATS["compact"]


def compact_ids(text: str) -> list[int]:
    return [CODEC.bos_id, *CODEC.ids(text).tolist()]


PROMPTS = [
    compact_ids("PI12\n34\nO21\n43\nI5\nO"),
    compact_ids("PI1\nO"),
    compact_ids("PI123\n456\n789\nO321\n"),
]


# ------------------------------------------------------------------------------------ a hand-built LM

HAND_TOKENS = (0, 1, NL, EOS)  # the only tokens the hand-built model ever gives mass to


def hand_logits(seq: tuple[int, ...]) -> list[float]:
    """Next-token logits after the whole sequence `seq`: fixed by hand (a seeded draw per prefix)."""
    rng = random.Random(repr(seq))
    out = [-1e4] * 32
    for t in HAND_TOKENS:
        out[t] = rng.gauss(0.0, 2.0)
    return out


def hand_logprobs(seq: tuple[int, ...]) -> dict[int, float]:
    z = hand_logits(seq)
    m = max(z)
    lse = m + math.log(sum(math.exp(v - m) for v in z))
    return {t: z[t] - lse for t in HAND_TOKENS}


class HandLM(torch.nn.Module):
    """A 'model' whose next-token distribution is hand_logits of the real tokens so far.

    It keeps the token ids themselves in the KV cache (as keys), so a wrong cache crop or padding mask in
    the engine changes its output, exactly as it would for a transformer.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(
        self,
        input_ids,
        attention_mask=None,
        position_ids=None,
        past_key_values=None,
        use_cache=False,
        logits_to_keep=0,
        **kwargs,
    ):
        k = input_ids[:, None, :, None].float()
        full = (
            past_key_values.update(k, k, 0)[0][:, 0, :, 0].long()
            if past_key_values is not None
            else input_ids
        )
        mask = attention_mask if attention_mask is not None else torch.ones_like(full)
        keep = logits_to_keep or input_ids.shape[1]
        total = full.shape[1]
        logits = torch.empty(full.shape[0], keep, 32)
        for b in range(full.shape[0]):
            for j, t in enumerate(range(total - keep, total)):
                seq = tuple(full[b, : t + 1][mask[b, : t + 1].bool()].tolist())
                logits[b, j] = torch.tensor(hand_logits(seq))
        return type("Out", (), {"logits": logits})()


def brute_force(prompt: list[int], threshold: float, max_new: int) -> dict[tuple[int, ...], float]:
    """Every answer (tokens before eos) of probability >= threshold, by enumerating all sequences."""
    found = {}
    body = [t for t in HAND_TOKENS if t != EOS]
    for n in range(max_new):
        for toks in itertools.product(body, repeat=n):
            lp = 0.0
            for i in range(n):
                lp += hand_logprobs(tuple(prompt) + toks[:i])[toks[i]]
            lp += hand_logprobs(tuple(prompt) + toks)[EOS]
            if lp >= math.log(threshold):
                found[toks] = lp
    return found


@pytest.fixture(scope="module")
def hand_engine() -> TorchEngine:
    return TorchEngine(HandLM(), TOK, device="cpu")


@pytest.mark.parametrize("threshold", [0.3, 0.1, 0.03])
def test_dfs_returns_exactly_the_sequences_above_threshold(hand_engine, threshold):
    max_new = 7
    params = SamplingSettings(mode="dfs", dfs_threshold=threshold, max_new_tokens=max_new, constrained=False)
    for prompt in PROMPTS:
        want = brute_force(prompt, threshold, max_new)
        got = hand_engine.generate([prompt], params)[0]
        assert {tuple(c.tokens): c.logprob for c in got}.keys() == want.keys()
        for c in got:
            assert c.logprob == pytest.approx(want[tuple(c.tokens)], abs=1e-4)
            assert c.n_tokens == len(c.tokens) + 1 and c.finished
        assert [c.logprob for c in got] == sorted((c.logprob for c in got), reverse=True)  # best first


def test_dfs_finds_several_answers_somewhere(hand_engine):
    """Guard against a vacuous comparison: the hand-built distribution does branch."""
    params = SamplingSettings(mode="dfs", dfs_threshold=0.03, max_new_tokens=7, constrained=False)
    assert max(len(c) for c in hand_engine.generate(PROMPTS, params)) >= 3


def test_batched_greedy_matches_the_hand_built_argmax_path(hand_engine):
    """Left padding and the cache: the hand-built model sees exactly the real tokens of each row."""
    params = SamplingSettings(mode="greedy", max_new_tokens=6, constrained=False)
    out = hand_engine.generate(PROMPTS, params)
    for prompt, (cand,) in zip(PROMPTS, out, strict=True):
        seq, lp = list(prompt), 0.0
        for _ in range(6):
            probs = hand_logprobs(tuple(seq))
            t = max(probs, key=probs.get)
            lp += probs[t]
            if t == EOS:
                break
            seq.append(t)
        assert cand.tokens == seq[len(prompt) :]
        assert cand.logprob == pytest.approx(lp, abs=1e-4)


# ------------------------------------------------------------------------------------- grid grammar


def _walk(constraint: GridConstraint, rng: np.random.Generator) -> list[int]:
    state, toks = constraint.start(1), []
    while True:
        allowed = constraint.allowed(state)[0].nonzero()[:, 0].tolist()
        assert allowed, "the grammar must always allow some token"
        t = int(rng.choice(allowed))
        if t == EOS:
            return toks
        toks.append(t)
        state = constraint.advance(state, torch.tensor([t]))


def test_grid_constraint_only_allows_grids():
    constraint = GridConstraint.for_codec(CODEC, 32)
    rng = np.random.default_rng(0)
    for _ in range(200):
        toks = _walk(constraint, rng)
        assert _canonical_grid(toks)


def test_grid_constraint_allows_every_grid():
    constraint = GridConstraint.for_codec(CODEC, 32)
    rng = np.random.default_rng(1)
    shapes = [(1, 1), (30, 30), (1, 30), (30, 1), (3, 7)]
    for h, w in shapes:
        grid = rng.integers(0, 10, (h, w))
        toks = CODEC.ids(FMT.encoder.encode(grid)).tolist() + [EOS]
        state = constraint.start(1)
        for t in toks:
            assert constraint.allowed(state)[0, t], f"{h}x{w} grid: token {t} refused"
            state = constraint.advance(state, torch.tensor([t]))


def test_grid_constraint_is_vectorised_over_rows():
    """Rows of one batch keep their own state: a batch step equals each row stepped alone."""
    constraint = GridConstraint.for_codec(CODEC, 32)
    seqs = [CODEC.ids(t).tolist() for t in ("12\n34\n", "1\n", "123\n4")]
    state = constraint.start(3)
    for step in range(max(map(len, seqs))):
        toks = torch.tensor([s[step] if step < len(s) else CODEC.pad_id for s in seqs])  # pad: no change
        state = constraint.advance(state, toks)
    assert state.rows.tolist() == [2, 1, 1] and state.width.tolist() == [2, 1, 3]
    assert state.row_len.tolist() == [0, 0, 1]
    allowed = constraint.allowed(state)
    assert allowed[0, EOS] and not allowed[0, NL]  # right after a newline
    assert allowed[2, 0] and not allowed[2, NL] and not allowed[2, EOS]  # row 2 shorter than the first


@pytest.fixture(scope="module")
def tiny():
    model, tok = build_model("tiny", seed=0)
    return model, tok


@pytest.fixture(scope="module")
def tiny_engine(tiny) -> TorchEngine:
    return TorchEngine(tiny[0], tiny[1], device="cpu")


@pytest.mark.parametrize("mode", ["greedy", "sample"])
def test_constrained_decoding_always_parses_from_a_random_model(tiny_engine, mode):
    params = SamplingSettings(mode=mode, n=3, temperature=1.5, constrained=True)
    for cands in tiny_engine.generate(PROMPTS, params):
        assert len(cands) == (1 if mode == "greedy" else 3)
        for c in cands:
            assert c.finished
            assert parse_answer(c.tokens + [EOS], CODEC, FMT) is not None


def _canonical_grid(tokens: list[int]) -> bool:
    """True when `tokens` are exactly a grid's encoding (the parser alone also accepts blank lines)."""
    grid = parse_answer(tokens + [EOS], CODEC, FMT)
    return grid is not None and CODEC.ids(FMT.encoder.encode(grid)).tolist() == tokens


def test_constrained_dfs_is_the_brute_force_set_restricted_to_grids(hand_engine):
    """Constraints only prune: constrained DFS finds exactly the unconstrained answers that are grids."""
    threshold, max_new = 0.005, 7
    params = SamplingSettings(mode="dfs", dfs_threshold=threshold, max_new_tokens=max_new, constrained=True)
    n_found = 0
    for prompt in PROMPTS:
        want = {t for t in brute_force(prompt, threshold, max_new) if _canonical_grid(list(t))}
        got = hand_engine.generate([prompt], params)[0]
        assert {tuple(c.tokens) for c in got} == want
        n_found += len(got)
    assert n_found >= 2


# --------------------------------------------------------------------------------- cache, batching


def test_greedy_with_kv_cache_equals_full_recompute(tiny, tiny_engine):
    model, _ = tiny
    params = SamplingSettings(mode="greedy", max_new_tokens=40, constrained=False)
    out = tiny_engine.generate(PROMPTS, params)
    valid = torch.arange(32) < len(TOK)
    valid[CODEC.pad_id] = valid[CODEC.bos_id] = False
    with torch.no_grad():
        for prompt, (cand,) in zip(PROMPTS, out, strict=True):
            seq = list(prompt)
            for _ in range(40):
                logits = model(torch.tensor([seq])).logits[0, -1].masked_fill(~valid, float("-inf"))
                t = int(logits.argmax())
                if t == EOS:
                    break
                seq.append(t)
            assert cand.tokens == seq[len(prompt) :]


@pytest.mark.parametrize("constrained", [False, True])
def test_batched_generation_equals_one_at_a_time(tiny_engine, constrained):
    params = SamplingSettings(mode="greedy", max_new_tokens=60, constrained=constrained)
    batched = tiny_engine.generate(PROMPTS, params)
    for prompt, (cand,) in zip(PROMPTS, batched, strict=True):
        (alone,) = tiny_engine.generate([prompt], params)[0]
        assert cand.tokens == alone.tokens
        assert cand.logprob == pytest.approx(alone.logprob, abs=1e-3)


def test_small_batches_equal_one_big_batch(tiny_engine):
    """Splitting by the token budget (and dropping finished rows) does not change results."""
    params = SamplingSettings(mode="greedy", max_new_tokens=30, constrained=True)
    big = tiny_engine.generate(PROMPTS * 3, params)
    small = tiny_engine.generate(PROMPTS * 3, SamplingSettings(**{**vars(params), "batch_tokens": 80}))
    assert [c[0].tokens for c in big] == [c[0].tokens for c in small]


def test_score_equals_generation_logprob(tiny_engine):
    params = SamplingSettings(mode="sample", n=2, max_new_tokens=50, constrained=True, seed=4)
    out = tiny_engine.generate(PROMPTS, params)
    prompts = [p for p, cands in zip(PROMPTS, out, strict=True) for _ in cands]
    answers = [c.tokens + [EOS] for cands in out for c in cands if c.finished]
    prompts = [p for p, cands in zip(PROMPTS, out, strict=True) for c in cands if c.finished]
    expected = [c.logprob for cands in out for c in cands if c.finished]
    assert expected
    assert tiny_engine.score(prompts, answers) == pytest.approx(expected, abs=1e-3)


def test_sampling_is_seeded_and_top_p_tiny_is_greedy(tiny_engine):
    sample = SamplingSettings(
        mode="sample", n=4, temperature=1.0, max_new_tokens=20, constrained=True, seed=7
    )
    a = tiny_engine.generate(PROMPTS, sample)
    b = tiny_engine.generate(PROMPTS, sample)
    assert [[c.tokens for c in x] for x in a] == [[c.tokens for c in x] for x in b]
    assert len({tuple(c.tokens) for x in a for c in x}) > len(PROMPTS)  # the draws differ
    nucleus = SamplingSettings(**{**vars(sample), "top_p": 1e-6})
    greedy = SamplingSettings(mode="greedy", max_new_tokens=20, constrained=True)
    g = tiny_engine.generate(PROMPTS, greedy)
    for x, (gc,) in zip(tiny_engine.generate(PROMPTS, nucleus), g, strict=True):
        assert all(c.tokens == gc.tokens for c in x)


def test_max_new_tokens_leaves_unfinished_candidates(tiny_engine):
    out = tiny_engine.generate(PROMPTS, SamplingSettings(mode="greedy", max_new_tokens=3, constrained=True))
    for (c,) in out:
        assert c.n_tokens <= 3
        if not c.finished:
            assert len(c.tokens) == c.n_tokens


def test_length_batches_respects_the_budget():
    lengths = [5, 50, 7, 48, 30, 6]
    batches = length_batches(lengths, rows_each=2, extra=10, budget=300)
    assert sorted(i for b in batches for i in b) == list(range(6))
    for b in batches:
        assert len(b) == 1 or len(b) * 2 * (max(lengths[i] for i in b) + 10) <= 300


def test_sampling_settings_are_checked():
    with pytest.raises(ArcDataError, match="dfs_threshold"):
        SamplingSettings(mode="dfs", dfs_threshold=0).validate()
    with pytest.raises(ArcDataError, match="mode"):
        SamplingSettings(mode="beam").validate()  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------- adapters


def test_peft_adapter_changes_outputs_and_missing_adapter_falls_back(tmp_path, caplog):
    base, tok = build_model("tiny", seed=0)
    tuned = apply_lora(build_model("tiny", seed=0)[0], LoraSettings(r=4, alpha=8))
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(0))
    tuned.save_pretrained(str(tmp_path / "task_a"))
    params = SamplingSettings(mode="greedy", max_new_tokens=40, constrained=False)
    engine = TorchEngine(base, tok, device="cpu")
    prompt = PROMPTS[0]
    missing = str(tmp_path / "no_such_task")
    with caplog.at_level(logging.WARNING, logger="arcsub.lm.infer"):
        adapted, plain, fallback = engine.generate(
            [prompt] * 3, params, [str(tmp_path / "task_a"), None, missing]
        )
    assert any("no_such_task" in r.message for r in caplog.records)
    assert adapted[0].tokens != plain[0].tokens
    assert fallback[0].tokens == plain[0].tokens
    (reference,) = TorchEngine(tuned, tok, device="cpu").generate([prompt], params)[0]
    assert adapted[0].tokens == reference.tokens
    assert adapted[0].logprob == pytest.approx(reference.logprob, abs=1e-3)
    # scoring follows the adapter too, and the base model is untouched after adapter use
    answer = plain[0].tokens + ([EOS] if plain[0].finished else [])
    s_adapted, s_plain = engine.score([prompt, prompt], [answer, answer], [str(tmp_path / "task_a"), None])
    assert s_plain == pytest.approx(plain[0].logprob, abs=1e-3) and s_adapted != pytest.approx(
        s_plain, abs=1e-3
    )


def test_per_task_adapters_decode_in_one_mixed_batch(tmp_path, monkeypatch):
    """Prompts of several tasks, each with its own LoRA (or none), decode together in one batch (PEFT's
    per-row adapter_names) and give exactly what decoding each adapter's prompts alone gives."""
    base, tok = build_model("tiny", seed=0)
    dirs = []
    for k in range(2):
        tuned = apply_lora(build_model("tiny", seed=0)[0], LoraSettings(r=4, alpha=8))
        with torch.no_grad():
            for name, p in tuned.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 0.5, generator=torch.Generator().manual_seed(10 + k))
        tuned.save_pretrained(str(tmp_path / f"task_{k}"))
        dirs.append(str(tmp_path / f"task_{k}"))
    prompts = PROMPTS * 3
    adapters = [dirs[0], dirs[1], None, dirs[1], None, dirs[0], None, dirs[0], dirs[1]]
    params = SamplingSettings(mode="greedy", max_new_tokens=40, constrained=False)
    engine = TorchEngine(base, tok, device="cpu")
    batches = []
    decode = TorchEngine._decode
    monkeypatch.setattr(
        TorchEngine, "_decode", lambda self, p, *a: batches.append(len(p)) or decode(self, p, *a)
    )
    mixed = engine.generate(prompts, params, adapters)
    assert batches == [len(prompts)]  # one batch for all three adapters (base included)
    assert len({tuple(mixed[i][0].tokens) for i in (0, 3, 6)}) > 1  # the adapters do differ (same prompt)
    for path in (dirs[0], dirs[1], None):
        idx = [i for i, a in enumerate(adapters) if a == path]
        alone = TorchEngine(build_model("tiny", seed=0)[0], tok, device="cpu").generate(
            [prompts[i] for i in idx], params, [path] * len(idx)
        )
        for i, (ref,) in zip(idx, alone, strict=True):
            assert mixed[i][0].tokens == ref.tokens
            assert mixed[i][0].logprob == pytest.approx(ref.logprob, abs=1e-3)


# ----------------------------------------------------------------------------------------------- vLLM


def test_vllm_request_building():
    prompts = [[16, 1, 2], [16, 3], [16, 4, 5, 6]]
    reqs, loras = build_requests(prompts, ["/a/task1", None, "/a/task1"])
    assert reqs == [{"prompt_token_ids": p} for p in prompts]
    assert loras[1] is None and loras[0] == loras[2]
    name, int_id, path = loras[0]
    assert int_id >= 1 and path == "/a/task1" and "task1" in name
    _, loras2 = build_requests(prompts, ["/a/x", "/a/y", "/a/x"])
    assert [s[1] for s in loras2] == [1, 2, 1]
    with pytest.raises(ValueError):
        build_requests(prompts, [None])


def test_vllm_sampling_arguments():
    greedy = sampling_kwargs(SamplingSettings(mode="greedy", n=5, max_new_tokens=100), eos_id=17)
    assert greedy["n"] == 1 and greedy["temperature"] == 0.0 and greedy["max_tokens"] == 100
    assert greedy["stop_token_ids"] == [17] and greedy["logprobs"] == 0
    sample = sampling_kwargs(SamplingSettings(mode="sample", n=8, temperature=0.7, top_p=0.9), 17, [0, 1, 17])
    assert sample["n"] == 8 and sample["temperature"] == 0.7 and sample["top_p"] == 0.9
    assert sample["allowed_token_ids"] == [0, 1, 17]
    with pytest.raises(ArcDataError, match="dfs"):
        sampling_kwargs(SamplingSettings(mode="dfs"), 17)
    assert score_kwargs()["prompt_logprobs"] == 0 and score_kwargs()["max_tokens"] == 1


def test_vllm_completion_to_candidate():
    c = candidate_from_completion([3, 4, 10, 17], -2.5, 17, "stop")
    assert c == Candidate([3, 4, 10], -2.5, 4, True)
    c = candidate_from_completion([3, 4, 10], -2.5, 17, "stop")  # stop token left out of token_ids
    assert c.tokens == [3, 4, 10] and c.n_tokens == 4 and c.finished
    assert not candidate_from_completion([3, 3], None, 17, "length").finished


def test_engine_choice():
    assert choose_engine("torch") == "torch"
    assert choose_engine("auto", installed=False, capability=(9, 0)) == "torch"
    assert choose_engine("auto", installed=True, capability=(7, 5)) == "torch"
    assert choose_engine("auto", installed=True, capability=None) == "torch"
    assert choose_engine("auto", "dfs", installed=True, capability=(9, 0)) == "torch"
    assert choose_engine("auto", installed=True, capability=(8, 0)) == "vllm"
    assert choose_engine("vllm", installed=True, capability=(9, 0)) == "vllm"
    with pytest.raises(
        ArcDataError, match="vllm is not installed: pip install arcsub\\[vllm\\] or use --engine torch"
    ):
        choose_engine("vllm", installed=False)
    with pytest.raises(ArcDataError, match="dfs"):
        choose_engine("vllm", "dfs", installed=True, capability=(9, 0))


@pytest.mark.skipif(
    vllm_installed(), reason="vllm is installed here: the missing-vllm message cannot be shown"
)
def test_vllm_engine_without_vllm_is_one_clear_line(tmp_path):
    from arcsub.lm.infer.vllm_engine import VllmEngine

    with pytest.raises(ArcDataError) as e:
        VllmEngine(tmp_path, TOK)
    assert str(e.value) == VLLM_MISSING


def test_growing_cache_is_used_and_behaves_like_concatenation(tiny):
    from transformers import DynamicCache

    from arcsub.lm.infer.torch_engine import GrowingLayer, new_cache

    model, _ = tiny
    grown, plain = new_cache(model.config, reserve=2), DynamicCache()
    rng = torch.Generator().manual_seed(0)
    for n in (5, 1, 1, 1):  # outgrows the reserve once
        k, v = torch.randn(3, 2, n, 4, generator=rng), torch.randn(3, 2, n, 4, generator=rng)
        (gk, gv), (pk, pv) = grown.update(k, v, 0), plain.update(k, v, 0)
        assert torch.equal(gk, pk) and torch.equal(gv, pv)
    assert isinstance(grown.layers[0], GrowingLayer)
    for c in (grown, plain):
        c.crop(-2)
        c.batch_select_indices(torch.tensor([2, 0]))
        c.batch_repeat_interleave(2)
    assert grown.get_seq_length() == plain.get_seq_length() == 6
    assert torch.equal(grown.layers[0].keys, plain.layers[0].keys)
    assert torch.equal(grown.layers[0].values, plain.layers[0].values)
