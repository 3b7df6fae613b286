"""The training recipe on the tiny preset and real tasks: loss falls, resume is exact, LoRA and full
fine-tuning save and reload with plain transformers, packing keeps examples apart."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from arcsub.core.config import apply_override, load_config
from arcsub.core.data import ArcDataError, dataset_files
from arcsub.core.encode import Codec, build_compact_tokenizer, build_example
from arcsub.lm.batches import DataSettings, TaskPool, make_batch, pack
from arcsub.lm.models import LoraSettings, build_model, load_model
from arcsub.lm.train import TrainConfig, packed_logits, run_name, train
from arcsub.training.runtime import OptimSettings, lr_at


def _cfg(tmp, **kw) -> TrainConfig:
    c, _ = dataset_files("arc-agi-1", "training")
    if not c.exists():
        pytest.skip(f"ARC data not found: {c}")
    base = TrainConfig(
        model="tiny",
        data=DataSettings(challenges=[str(c)]),
        steps=12,
        rows=2,
        seq_len=1024,
        max_len=1024,
        workers=0,
        log_every=1,
        save_every=1000,
        out_dir=str(tmp),
        optim=OptimSettings(lr=3e-3, warmup=2),
    )
    return replace(base, **kw)


def _losses(run) -> list[float]:
    return [json.loads(x)["loss"] for x in (run / "log.jsonl").read_text().splitlines()]


def test_loss_falls_on_real_tasks(tmp_path):
    # a handful of tasks, seen again and again: the loss must fall clearly within a few dozen steps
    c, _ = dataset_files("arc-agi-1", "training")
    run = train(
        _cfg(
            tmp_path,
            steps=30,
            data=DataSettings(challenges=[str(c)], d8=False, colours="none", swap_prob=0.0),
        ),
        progress=False,
    )
    losses = _losses(run)
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:3])
    assert (run / "model" / "model.safetensors").exists()


def test_resume_gives_the_same_next_losses(tmp_path):
    full = train(_cfg(tmp_path / "a", steps=8), progress=False)
    # stop after 4 steps through the time budget path, then resume with the same command
    cfg = _cfg(tmp_path / "b", steps=8, save_every=4)
    run = train(replace(cfg, time_budget=1e-9), progress=False)  # stops after the first step, saves
    assert (run / "checkpoint" / "state.json").exists()
    first = json.loads((run / "checkpoint" / "state.json").read_text())["step"]
    resumed = train(cfg, progress=False)
    assert resumed == run
    a, b = _losses(full), _losses(resumed)
    assert len(b) == 8 and first == 1
    np.testing.assert_allclose(a, b, rtol=1e-4)


def test_full_and_lora_models_reload_with_plain_transformers(tmp_path):
    run = train(_cfg(tmp_path / "full", steps=3), progress=False)
    model = AutoModelForCausalLM.from_pretrained(run / "model", local_files_only=True)
    tok = AutoTokenizer.from_pretrained(run / "model", local_files_only=True)
    assert tok.eos_token == "<eos>" and model.config.num_hidden_layers == 2
    lora = train(
        _cfg(tmp_path / "lora", model=str(run / "model"), steps=3, lora=LoraSettings(r=4, alpha=8)),
        progress=False,
    )
    assert (lora / "adapter" / "adapter_model.safetensors").exists()
    merged, _, fmt = load_model(lora / "model")
    assert fmt == "compact"
    base = AutoModelForCausalLM.from_pretrained(run / "model", local_files_only=True)
    ids = torch.tensor([[16, 13, 11, 1, 2, 10, 12]])
    with torch.no_grad():
        assert not torch.allclose(merged(ids).logits, base(ids).logits)  # the LoRA changed the weights
    from peft import PeftModel

    peft = PeftModel.from_pretrained(base, lora / "adapter")
    with torch.no_grad():
        torch.testing.assert_close(peft(ids).logits, merged(ids).logits, rtol=1e-4, atol=1e-4)


def test_packing_keeps_examples_apart(arc1_train):
    codec = Codec(build_compact_tokenizer())
    tasks = list(arc1_train.values())[:6]
    exs = [build_example(t, codec, max_len=2048) for t in tasks]
    exs = [e for e in exs if e is not None][:3]
    batch = pack(exs, 1, sum(len(e) for e in exs) + 5, codec.pad_id)
    assert batch.n_examples == 3
    starts = np.flatnonzero(batch.position_ids[0].numpy() == 0)[:3]
    for s, e in zip(starts, exs, strict=True):
        assert batch.labels[0, s] == -100  # no loss from one example into the next
        assert (batch.input_ids[0, s : s + len(e)].numpy() == e.ids).all()
    # attention: each example's logits are the same alone as packed together
    model, _ = build_model("tiny")
    model.eval()
    with torch.no_grad():
        packed = packed_logits(model, batch)[0]
        for s, e in zip(starts, exs, strict=True):
            alone = model(input_ids=torch.tensor(e.ids[None].astype(np.int64))).logits[0]
            torch.testing.assert_close(packed[s : s + len(e)], alone, rtol=1e-4, atol=1e-4)


def test_batches_are_a_function_of_seed_and_step(arc1_train):
    c, _ = dataset_files("arc-agi-1", "training")
    pool = TaskPool(DataSettings(challenges=[str(c)]))
    codec = Codec(build_compact_tokenizer())
    a = make_batch(pool, codec, 0, 5, 0, 2, 2048, 2048, "compact")
    b = make_batch(pool, codec, 0, 5, 0, 2, 2048, 2048, "compact")
    c2 = make_batch(pool, codec, 0, 6, 0, 2, 2048, 2048, "compact")
    assert torch.equal(a.input_ids, b.input_ids) and not torch.equal(a.input_ids, c2.input_ids)
    assert a.useful_tokens > 0.8 * a.input_ids.numel()  # packing leaves little padding


def test_re_arc_pool(data_root):
    pool = TaskPool(DataSettings(re_arc=str(data_root / "re-arc"), re_arc_weight=1.0, re_arc_pairs=(2, 3)))
    task = pool.sample_task(np.random.default_rng(0))
    assert task.id.startswith("re-arc:") and 2 <= len(task.train) <= 3 and task.has_solutions


def test_schedules():
    o = OptimSettings(warmup=10, schedule="cosine", min_lr_ratio=0.1)
    assert lr_at(0, o, 100) == pytest.approx(0.1) and lr_at(10, o, 100) == pytest.approx(1.0)
    assert lr_at(99, o, 100) == pytest.approx(0.1, abs=1e-3)
    w = OptimSettings(warmup=10, schedule="wsd", decay_frac=0.2, min_lr_ratio=0.0)
    assert lr_at(50, w, 100) == 1.0 and lr_at(90, w, 100) == pytest.approx(0.5)


def test_config_errors_and_run_names(tmp_path):
    cfg = TrainConfig()
    assert apply_override(cfg, "lora.r=8").lora.r == 8
    with pytest.raises(ArcDataError, match="unknown key lora.rank"):
        apply_override(cfg, "lora.rank=8")
    with pytest.raises(ArcDataError, match="must be a int"):
        apply_override(cfg, "steps=many")
    f = tmp_path / "c.yaml"
    f.write_text("steps: 5\nbogus: 1\n")
    with pytest.raises(ArcDataError, match="unknown key bogus"):
        load_config(TrainConfig, f)
    a, b = run_name(cfg), run_name(apply_override(cfg, "optim.lr=0.01"))
    assert (
        a != b and run_name(apply_override(cfg, "workers=7")) == a
    )  # only what changes learning names a run


def test_model_dir_errors(tmp_path):
    with pytest.raises(ArcDataError, match="model directory not found"):
        load_model(tmp_path / "nope")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ArcDataError, match="no weights"):
        load_model(tmp_path)
