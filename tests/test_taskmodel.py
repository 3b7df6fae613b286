"""The task-embedding model: 3-D grid positions, packing, KV-cache decoding, save/load, growing the task table."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from arcsub.core.candidates import SamplingSettings
from arcsub.core.data import ArcDataError
from arcsub.taskmodel.data import EOS, PAD, SEP, TaskIndex, decode_grid, encode_pair
from arcsub.taskmodel.model import (
    PRESETS,
    ArcTaskConfig,
    ArcTaskForCausalLM,
    grid_positions,
    load_task_model,
    next_output_position,
    preset_config,
    save_task_model,
    sequence_positions,
)
from arcsub.taskmodel.predict import decode_batch, score_answers

INP = np.array([[1, 2, 3], [4, 5, 6]])
OUT = np.array([[7, 8], [9, 0], [1, 2]])
# (x, y, z): bos; input cells and each row's newline (x = the row's width); separator; output grid; eos.
EXPECTED = [
    (0, 0, 0),
    (0, 0, 1), (1, 0, 1), (2, 0, 1), (3, 0, 1),
    (0, 1, 1), (1, 1, 1), (2, 1, 1), (3, 1, 1),
    (0, 0, 2),
    (0, 0, 3), (1, 0, 3), (2, 0, 3),
    (0, 1, 3), (1, 1, 3), (2, 1, 3),
    (0, 2, 3), (1, 2, 3), (2, 2, 3),
    (0, 0, 4),
]  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread for tiny models: on a busy 2-CPU box OpenMP oversubscription makes them 100x slower.

    (The other task-model test modules import this fixture.)"""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _pos(ids) -> list[tuple[int, ...]]:
    return [tuple(p) for p in grid_positions(torch.as_tensor(ids)[None])[0].tolist()]


def tiny(num_tasks: int = 4, seed: int = 0, **arch) -> ArcTaskForCausalLM:
    torch.manual_seed(seed)
    return ArcTaskForCausalLM(preset_config("tiny", num_tasks, **arch)).eval()


def test_grid_positions_of_a_2x3_to_3x2_pair():
    ids = encode_pair(INP, OUT)
    assert ids.tolist() == [16, 1, 2, 3, 10, 4, 5, 6, 10, 12, 7, 8, 10, 9, 0, 10, 1, 2, 10, 17]
    assert _pos(ids) == EXPECTED
    # input cell (r, c) and output cell (r, c) share x and y: the grids are stacked along z
    assert _pos(ids)[1 + 1 * 4 + 1][:2] == _pos(ids)[10 + 1 * 3 + 1][:2] == (1, 1)


def test_grid_positions_restart_in_packed_rows_and_in_the_decoder_buffer():
    ids = encode_pair(INP, OUT)
    other = encode_pair(OUT, INP)
    packed = np.concatenate([ids, other, ids, [PAD, PAD]])
    pos = _pos(packed)
    assert pos[: len(ids)] == EXPECTED
    assert pos[len(ids) + len(other) : 2 * len(ids) + len(other)] == EXPECTED
    assert pos[len(ids) : len(ids) + len(other)] == _pos(other)
    assert pos[-2:] == [(0, 0, 4), (0, 0, 4)]
    # decoding sees only [sep, generated...]: the same output-grid coordinates
    assert _pos(ids[9:]) == EXPECTED[9:]
    # left padding before a prompt changes nothing
    assert _pos(np.concatenate([[PAD] * 3, encode_pair(INP)]))[3:] == EXPECTED[:10]


def test_incremental_output_positions_equal_grid_positions_of_the_whole_stream():
    """The decoder numbers each new token from the last one; it must agree with numbering the whole output."""
    rng = np.random.default_rng(0)
    pairs = [encode_pair(INP, OUT), encode_pair(OUT, INP)]
    streams = [p[list(p).index(SEP) :] for p in pairs]  # [sep, output grid..., eos]
    streams.append(np.concatenate([[streams[0][0]], rng.integers(0, 12, 40), [EOS, EOS]]))  # ragged rows too
    n = max(len(s) for s in streams)
    ids = torch.full((len(streams), n), EOS)
    for i, s in enumerate(streams):
        ids[i, : len(s)] = torch.as_tensor(s)
    col = row = torch.zeros(len(streams), dtype=torch.long)
    whole = grid_positions(ids)
    for t in range(1, n):
        pos, col, row = next_output_position(ids[:, t], col, row)
        assert torch.equal(pos[:, 0], whole[:, t]), t


def test_sequence_positions_count_from_each_bos_and_the_ablations_change_the_model():
    ids = encode_pair(INP, OUT)
    packed = torch.as_tensor(np.concatenate([[PAD, PAD], ids, ids[:5]]))
    pos = sequence_positions(packed)[..., 0].tolist()
    assert pos == [0, 0] + list(range(len(ids))) + list(range(5))
    x = torch.as_tensor(ids)[None]
    with torch.no_grad():
        grid, flat = tiny(positions="3d")(x, 1, 0).logits, tiny(positions="1d")(x, 1, 0).logits
        blind = tiny(task_embedding=False)
        assert not torch.allclose(grid, flat)  # same weights (same seed), other rotary coordinates
        assert torch.equal(
            blind(x, 1, 0).logits, blind(x, 3, 0).logits
        )  # no task row: the task id is ignored
    with pytest.raises(ArcDataError, match="positions"):
        preset_config("tiny", 2, positions="2d")


def test_packed_rows_equal_separate_sequences():
    model = tiny()
    a, b = encode_pair(INP, OUT), encode_pair(OUT[:2], INP[:, :2])
    row = torch.as_tensor(np.concatenate([a, b]))[None]
    tasks = torch.as_tensor([1] * len(a) + [3] * len(b))[None]
    views = torch.as_tensor([0] * len(a) + [5] * len(b))[None]
    with torch.no_grad():
        packed = model(row, tasks, views, packed=True).logits[0]
        alone_a = model(torch.as_tensor(a)[None], 1, 0).logits[0]
        alone_b = model(torch.as_tensor(b)[None], 3, 5).logits[0]
        unpacked = model(row, tasks, views).logits[0]  # plain causal: b would see a
    torch.testing.assert_close(packed[: len(a)], alone_a, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed[len(a) :], alone_b, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(unpacked[len(a) :], alone_b, atol=1e-3)
    # the task and view embeddings matter
    with torch.no_grad():
        assert not torch.allclose(model(torch.as_tensor(a)[None], 2, 0).logits[0], alone_a, atol=1e-4)
        assert not torch.allclose(model(torch.as_tensor(a)[None], 1, 3).logits[0], alone_a, atol=1e-4)


def test_save_load_round_trip_with_auto_classes(tmp_path):
    model = tiny(num_tasks=5)
    index = TaskIndex(["a", "b", "c", "d", "e"])
    save_task_model(model, index, tmp_path / "m", {"note": "test"})
    assert AutoConfig.from_pretrained(str(tmp_path / "m")).model_type == "arcsub-task"
    loaded = AutoModelForCausalLM.from_pretrained(str(tmp_path / "m"), local_files_only=True).eval()
    assert isinstance(loaded, ArcTaskForCausalLM) and loaded.config.num_tasks == 5
    assert (tmp_path / "m" / "model.safetensors").exists()
    ids = torch.as_tensor(np.stack([encode_pair(INP, OUT)] * 2))
    with torch.no_grad():
        assert torch.equal(
            model(ids, torch.tensor([4, 0]), 2).logits, loaded(ids, torch.tensor([4, 0]), 2).logits
        )
    again, idx = load_task_model(tmp_path / "m")
    assert idx.rows == index.rows and again.config.num_tasks == 5


def test_saving_and_loading_draw_no_progress_bars_and_keep_the_setting(tmp_path, capfd):
    """A checkpoint every ~30 s must not put transformers' tqdm bars into a long run's log; the caller's own
    setting for them comes back afterwards."""
    from transformers.utils import logging as hf_logging

    hf_logging.enable_progress_bar()
    save_task_model(tiny(num_tasks=2), TaskIndex(["a", "b"]), tmp_path / "m", {})
    load_task_model(tmp_path / "m")
    err = capfd.readouterr().err
    assert "Writing model shards" not in err and "Loading weights" not in err
    assert hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    load_task_model(tmp_path / "m")
    assert not hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()


def test_add_tasks_keeps_old_rows_and_outputs(tmp_path):
    model = tiny(num_tasks=3)
    ids = torch.as_tensor(encode_pair(INP, OUT))[None]
    old = model.embed_tasks.weight.detach().clone()
    with torch.no_grad():
        before = model(ids, 2, 1).logits
    rows = model.add_tasks(2)
    assert list(rows) == [3, 4] and model.config.num_tasks == 5 and model.embed_tasks.num_embeddings == 5
    assert torch.equal(model.embed_tasks.weight[:3], old)
    torch.testing.assert_close(model.embed_tasks.weight[3], old.mean(0))
    with torch.no_grad():
        assert torch.equal(model(ids, 2, 1).logits, before)
        model(ids, 4, 1)  # a new row is usable
    save_task_model(model, TaskIndex(list("abcde")), tmp_path / "m", {})
    loaded, _ = load_task_model(tmp_path / "m")
    assert torch.equal(loaded.embed_tasks.weight, model.embed_tasks.weight)


@pytest.mark.parametrize("positions", ["3d", "1d"])
def test_kv_cache_decoding_equals_full_recomputation(positions):
    """Greedy decoding with the cache (left-padded batch) picks the argmax of a full forward at every step,
    and its log-probability is what teacher forcing over the whole sequence gives (both position kinds)."""
    model = tiny(num_tasks=3, seed=1, positions=positions)
    with torch.no_grad():
        model.lm_head.weight[EOS] = 0.0  # rarely the argmax: rows run for many cached steps
    prompts = [encode_pair(INP), encode_pair(np.arange(12).reshape(3, 4) % 10), encode_pair(OUT)]
    rows, views = [0, 2, 1], [0, 6, 3]
    params = SamplingSettings(max_new_tokens=16, constrained=False)
    gen = torch.Generator().manual_seed(0)
    cands = decode_batch(model, prompts, rows, views, params, gen)
    assert max(c.n_tokens for c in cands) >= 10
    for p, r, v, c in zip(prompts, rows, views, cands, strict=True):
        toks = c.tokens + ([EOS] if c.finished else [])
        assert len(toks) == c.n_tokens > 0
        full = torch.as_tensor(np.concatenate([p, toks]))[None]
        with torch.no_grad():
            logits = model(full, r, v).logits[0]
        steps = logits[len(p) - 1 : len(p) - 1 + len(toks)]
        assert steps.argmax(-1).tolist() == toks
        lp = steps.log_softmax(-1).gather(-1, torch.as_tensor(toks)[:, None]).sum().item()
        assert c.logprob == pytest.approx(lp, abs=1e-3)
        if c.finished:  # scoring the answer by teacher forcing agrees
            [s] = score_answers(model, [p], [np.asarray(toks)], [r], [v], 1 << 16)
            assert s == pytest.approx(lp, abs=1e-3)


@pytest.mark.parametrize("positions", ["3d", "1d"])
def test_dropping_finished_rows_changes_no_answer(monkeypatch, positions):
    """Rows that finish early leave the decoding batch (KV cache included); the answers of every row, early or
    late, are those of a batch that keeps all rows to the end."""
    from arcsub.taskmodel import predict as taskpredict
    from arcsub.taskmodel.model import KVCache

    model = tiny(num_tasks=4, seed=4, positions=positions)
    with torch.no_grad():
        model.lm_head.weight[EOS] *= 4.0  # some rows end early, others run on
    grids = [INP, OUT, np.arange(12).reshape(3, 4) % 10, np.eye(4, dtype=int) * 3, np.ones((2, 5), int) * 7]
    prompts = [encode_pair(g) for g in grids] * 2
    rows, views = [0, 1, 2, 3, 1, 2, 3, 0, 1, 2], [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]
    params = SamplingSettings(max_new_tokens=40)
    calls = []
    select = KVCache.select
    monkeypatch.setattr(KVCache, "select", lambda self, r: (calls.append(len(r)), select(self, r)))
    compacted = decode_batch(model, prompts, rows, views, params, torch.Generator())
    monkeypatch.setattr(taskpredict, "COMPACT_AT", 2.0)  # never compact
    full = decode_batch(model, prompts, rows, views, params, torch.Generator())
    assert calls and len({c.n_tokens for c in full}) > 1  # rows did leave, at different lengths
    for a, b in zip(compacted, full, strict=True):
        assert (a.tokens, a.n_tokens, a.finished) == (b.tokens, b.n_tokens, b.finished)
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)


def test_constrained_decoding_writes_grids_only():
    """Even a random model sampled hot writes only well-formed grids (or runs out of tokens)."""
    model = tiny(num_tasks=1, seed=2)
    params = SamplingSettings(mode="sample", temperature=3.0, max_new_tokens=120)
    cands = decode_batch(
        model, [encode_pair(INP)] * 6, [0] * 6, [0] * 6, params, torch.Generator().manual_seed(3)
    )
    assert any(c.finished for c in cands)
    for c in cands:
        assert set(c.tokens) <= set(range(11))  # digits and newline; eos only at the end
        assert (decode_grid(c.tokens) is not None) == c.finished
    free = SamplingSettings(mode="sample", temperature=3.0, max_new_tokens=120, constrained=False)
    wild = decode_batch(
        model, [encode_pair(INP)] * 6, [0] * 6, [0] * 6, free, torch.Generator().manual_seed(3)
    )
    assert any(not set(c.tokens) <= set(range(11)) for c in wild)  # the constraint is what did it


def test_presets_have_the_documented_sizes():
    with torch.device("meta"):
        sizes = {
            p: sum(x.numel() for x in ArcTaskForCausalLM(preset_config(p, 1000)).parameters())
            for p in PRESETS
        }
    assert sizes["tiny"] < 1e6 and 7e6 < sizes["small"] < 10e6
    assert 26e6 < sizes["base"] < 31e6 and 70e6 < sizes["large"] < 80e6
    assert ArcTaskConfig().model_type == "arcsub-task"
