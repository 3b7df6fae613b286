"""Models: presets, local checkpoints (a tiny Qwen2 with a real BPE tokenizer built here), vocabulary
shrinking (round trip and identical logits), and the optional quantization / unsloth backends."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from arcsub.cli import main
from arcsub.core.data import ArcDataError, Pair, Task, dataset_files
from arcsub.core.encode import COMPACT_VOCAB, FORMATS, Codec, build_example, segments_to_example
from arcsub.core.modeldir import save_model
from arcsub.lm.batches import DataSettings
from arcsub.lm.models import build_model, load_model, preset_config, shrink_vocab
from arcsub.lm.train import TrainConfig, train
from arcsub.training.runtime import OptimSettings

ENGLISH = (
    "The quick brown fox jumps over the lazy dog. Models learn rules from examples; "
    "tokenizers split text into pieces, and some of those pieces are never needed for grids. "
)


def _grid(rng, h=None, w=None):
    h = h or int(rng.integers(1, 31))
    w = w or int(rng.integers(1, 31))
    return rng.integers(0, 10, size=(h, w)).astype(np.uint8)


def _task(rng, n_train=3) -> Task:
    pairs = [
        Pair(_grid(rng, int(rng.integers(1, 9)), int(rng.integers(1, 9))), _grid(rng, 3, 4))
        for _ in range(n_train)
    ]
    return Task("t", pairs, [Pair(_grid(rng, 5, 6), _grid(rng, 2, 7))])


def _bpe_tokenizer(vocab_size: int = 700):
    """A Qwen-like byte-level BPE (no bos, eos = pad = <|endoftext|>, unused chat specials), trained on ARC text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    rng = np.random.default_rng(0)
    f = FORMATS["text"]
    corpus = [ENGLISH * 3]
    for _ in range(60):
        t = _task(rng)
        corpus.append(f.predict + "".join(f.input + f.encoder.encode(p.input) + f.output for p in t.train))
        corpus.append(f.encoder.encode(_grid(rng)))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
    )


def _qwen(vocab: int, tied: bool, seed: int = 0):
    from transformers import Qwen2Config

    torch.manual_seed(seed)
    cfg = Qwen2Config(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=tied,
        eos_token_id=0,
        bos_token_id=None,
    )
    return AutoModelForCausalLM.from_config(cfg, attn_implementation="eager").eval()


def _checkpoint(path: Path, tied: bool = True, tokenizer=None) -> Path:
    """Save a tiny random Qwen2 and its tokenizer like a checkpoint a Kaggle user attaches."""
    tok = tokenizer or _bpe_tokenizer()
    model = _qwen(len(tok), tied)
    model.config.eos_token_id = tok.eos_token_id
    model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("qwen") / "tiny-qwen")


def _arc_cfg(tmp: Path, model: str, **kw) -> TrainConfig:
    c, _ = dataset_files("arc-agi-1", "training")
    if not c.exists():
        pytest.skip(f"ARC data not found: {c}")
    base = TrainConfig(
        model=model,
        data=DataSettings(challenges=[str(c)]),
        steps=2,
        rows=1,
        seq_len=2048,
        max_len=2048,
        workers=0,
        log_every=1,
        save_every=1000,
        out_dir=str(tmp),
        optim=OptimSettings(lr=1e-3, warmup=1),
    )
    return replace(base, **kw)


# ------------------------------------------------------------------------------------------ presets


def test_unknown_preset_is_one_line_error():
    with pytest.raises(ArcDataError, match="unknown model preset 'huge'"):
        preset_config("huge")
    model, tok = build_model("tiny", max_len=64)
    assert model.config.vocab_size == 32 and len(tok) == len(COMPACT_VOCAB)


# ------------------------------------------------------------------------------------ shrink_vocab


@pytest.mark.parametrize("tied", [True, False])
def test_shrink_vocab_round_trips_and_keeps_logits(tmp_path, tied):
    path = _checkpoint(tmp_path / "ck", tied=tied)
    model, tok, fmt = load_model(path, attn="eager")
    assert fmt == "text"
    old_vocab = len(tok)
    old_codec = Codec(tok)
    rng = np.random.default_rng(1)
    tasks = [_task(rng, n) for n in (1, 2, 3)] + [
        Task(
            "big", [Pair(_grid(rng, 30, 30), _grid(rng, 30, 30))], [Pair(_grid(rng, 1, 1), _grid(rng, 30, 1))]
        )
    ]
    ref = model
    small, new_tok = shrink_vocab(_qwen(old_vocab, tied), tok, fmt)  # same seed: same weights as `model`
    small.load_state_dict(small.state_dict())  # still a valid module after slicing
    assert len(new_tok) < old_vocab / 2
    assert small.config.vocab_size == len(new_tok) == small.get_input_embeddings().weight.shape[0]
    assert small.get_output_embeddings().weight.shape[0] == len(new_tok)
    if tied:
        assert small.get_output_embeddings().weight is small.get_input_embeddings().weight
    kept = torch.tensor(new_tok.arcsub_shrink["kept_ids"])
    assert new_tok.arcsub_shrink["original_vocab_size"] == old_vocab
    new_codec = Codec(new_tok)
    assert kept[new_codec.eos_id] == old_codec.eos_id and kept[new_codec.bos_id] == old_codec.bos_id
    for t in tasks:
        for prompt in ("output-from-examples", "input-from-inputs"):
            ex_old = build_example(t, old_codec, FORMATS["text"], prompt=prompt, max_len=100_000)
            ex_new = build_example(t, new_codec, FORMATS["text"], prompt=prompt, max_len=100_000)
            # the same tokenization, renumbered; the same text back
            assert ex_old.mask.tolist() == ex_new.mask.tolist()
            np.testing.assert_array_equal(kept[torch.from_numpy(ex_new.ids).long()].numpy(), ex_old.ids)
            text = new_tok.decode(ex_new.ids, skip_special_tokens=True)
            assert text == tok.decode(ex_old.ids, skip_special_tokens=True)
    # any grid text at all, even shapes the probe never produced verbatim, encodes and decodes to itself
    for _ in range(20):
        s = FORMATS["text"].encoder.encode(_grid(rng))
        assert new_codec.text(new_codec.ids(s)) == s
    # logits of the shrunk model = the original's restricted to the kept ids
    ex = segments_to_example(
        [(FORMATS["text"].predict, False), (FORMATS["text"].encoder.encode(_grid(rng, 4, 5)), True)],
        new_codec,
    )
    new_ids = torch.from_numpy(ex.ids).long()[None]
    with torch.no_grad():
        full = ref(input_ids=kept[new_ids]).logits
        cut = small(input_ids=new_ids).logits
    torch.testing.assert_close(cut, full[..., kept], rtol=1e-5, atol=1e-5)


def test_qwen2_shaped_model_keeps_the_compact_tokenizer(tmp_path, monkeypatch):
    """AutoTokenizer maps a qwen2 config to Qwen2Tokenizer, which loses the newline: load_model must not."""
    from arcsub.lm import models

    shape = dict(models.PRESETS["qwen0.5b-shape"], hidden_size=64, intermediate_size=128, num_hidden_layers=2)
    monkeypatch.setitem(models.PRESETS, "qwen-tiny", dict(shape, num_attention_heads=4))
    model, tok = build_model("qwen-tiny")
    save_model(model, tok, tmp_path / "m", {"format": "compact"})
    _, again, fmt = load_model(tmp_path / "m")
    assert fmt == "compact" and again("01\n23", add_special_tokens=False)["input_ids"] == [0, 1, 10, 2, 3]


def test_loading_a_model_draws_no_progress_bar(tmp_path, capfd):
    """Every TTFT and prediction worker loads the model: transformers' 'Loading weights' bar must not reach
    a long run's log, and the caller's own setting for the bars comes back."""
    from transformers.utils import logging as hf_logging

    model, tok = build_model("tiny", max_len=64)
    save_model(model, tok, tmp_path / "m", {"format": "compact"})
    hf_logging.enable_progress_bar()
    capfd.readouterr()
    load_model(tmp_path / "m")
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.is_progress_bar_enabled()


def test_shrunk_tokenizer_saves_and_reloads(tmp_path, qwen_dir):
    model, tok, fmt = load_model(qwen_dir)
    small, new_tok = shrink_vocab(model, tok, fmt)
    small.save_pretrained(tmp_path / "m")
    new_tok.save_pretrained(tmp_path / "m")
    again = AutoTokenizer.from_pretrained(tmp_path / "m", local_files_only=True)
    s = FORMATS["text"].input + FORMATS["text"].encoder.encode(np.arange(12).reshape(3, 4) % 10)
    assert (
        again(s, add_special_tokens=False)["input_ids"] == new_tok(s, add_special_tokens=False)["input_ids"]
    )
    assert again.eos_token == "<|endoftext|>" and len(again) == len(new_tok)


# -------------------------------------------------------------------------------- local checkpoints


def test_tokenizer_without_grid_alphabet_is_rejected(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(["<unk>", "<eos>", *"abcdefghijklmnopqrstuvwxyz"])}
    t = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    t.pre_tokenizer = pre_tokenizers.Whitespace()
    tok = PreTrainedTokenizerFast(tokenizer_object=t, eos_token="<eos>", unk_token="<unk>")
    path = _checkpoint(tmp_path / "letters", tokenizer=tok)
    with pytest.raises(ArcDataError, match="cannot express the grid alphabet"):
        load_model(path)


# ------------------------------------------------------------------------------- optional backends


@pytest.mark.skipif(
    importlib.util.find_spec("bitsandbytes") is not None and torch.cuda.is_available(),
    reason="bitsandbytes and a GPU are present",
)
def test_quant_4bit_without_bitsandbytes_is_one_line_error(tmp_path, qwen_dir, capsys):
    rc = main(["train", f"model={qwen_dir}", "quant=4bit", "lora.r=8", f"out_dir={tmp_path}", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err
    assert "quant=4bit needs bitsandbytes and a CUDA GPU" in err
    assert not any(tmp_path.iterdir())  # failed before making a run directory


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None, reason="bitsandbytes is installed")
def test_ttft_quant_and_8bit_optimizer_without_bitsandbytes_are_one_line_errors(tmp_path, qwen_dir, capsys):
    """QLoRA TTFT (quant=4bit) and 8-bit AdamW need bitsandbytes: one line, exit 2, no adapters folder."""
    c, _ = dataset_files("arc-agi-1", "evaluation")
    if not c.exists():
        pytest.skip(f"ARC data not found: {c}")
    for arg, msg in [
        ("quant=4bit", "quant=4bit needs bitsandbytes and a CUDA GPU"),
        ("optim=adamw8bit", "optim=adamw8bit needs bitsandbytes"),
        ("optim=sgd", "unknown optimizer optim='sgd'"),
        ("quant=8bit", "quant='8bit'"),
    ]:
        out = tmp_path / arg.replace("=", "-")
        rc = main(["ttft", str(qwen_dir), str(c), "-o", str(out), "--tasks", "1", arg, "--quiet"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and msg in err and "\n" not in err, (arg, err)
        assert not out.exists()


def test_quant_combos_are_checked(tmp_path, qwen_dir, capsys):
    for args, msg in [
        (["model=tiny", "quant=4bit", "lora.r=8"], "local model directory"),
        ([f"model={qwen_dir}", "quant=4bit", "lora.r=0"], "lora.r > 0"),
        ([f"model={qwen_dir}", "quant=8bit"], "quant='8bit'"),
        ([f"model={qwen_dir}", "backend=fast"], "backend='fast'"),
        ([f"model={qwen_dir}", "optim.name=lion"], "unknown optimizer optim.name='lion'"),
        (["model=tiny", "shrink_vocab=true"], "shrink_vocab"),
    ]:
        rc = main(["train", *args, f"out_dir={tmp_path}", "--quiet"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and msg in err and "\n" not in err, (args, err)


@pytest.mark.skipif(importlib.util.find_spec("unsloth") is not None, reason="unsloth is installed")
def test_unsloth_missing_falls_back_to_plain_training(tmp_path, qwen_dir, capsys):
    run = train(
        _arc_cfg(tmp_path, str(qwen_dir), backend="unsloth", lora=replace(TrainConfig().lora, r=4)),
        progress=False,
    )
    err = capsys.readouterr().err
    assert "backend=unsloth" in err and "plain" in err
    assert (run / "model" / "model.safetensors").exists() and (run / "adapter").is_dir()
    assert len((run / "log.jsonl").read_text().splitlines()) == 2


def test_train_with_shrink_vocab_saves_a_small_model(tmp_path, qwen_dir):
    run = train(_arc_cfg(tmp_path, str(qwen_dir), shrink_vocab=True), progress=False)
    model = AutoModelForCausalLM.from_pretrained(run / "model", local_files_only=True)
    tok = AutoTokenizer.from_pretrained(run / "model", local_files_only=True)
    original = len(AutoTokenizer.from_pretrained(qwen_dir, local_files_only=True))
    assert len(tok) == model.config.vocab_size < original / 2
    assert model.get_input_embeddings().weight.shape[0] == len(tok)
    info = json.loads((run / "model" / "arcsub.json").read_text())
    assert info["format"] == "text" and info["shrink_vocab"]["original_vocab_size"] == original
    assert len(info["shrink_vocab"]["kept_ids"]) == len(tok)
    # later stages load it through the same path, format and all
    m2, t2, fmt = load_model(run / "model")
    assert fmt == "text" and len(t2) == len(tok)
