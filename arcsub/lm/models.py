"""Models: from-scratch presets built in code, loading local Hugging Face checkpoints, LoRA wrapping, saving.

A model directory is plain Hugging Face format (config.json, model.safetensors, tokenizer files) plus
`arcsub.json`, which records the prompt format and how the model was made, so every later stage knows how
to talk to it. Nothing is ever downloaded: `local_files_only` everywhere, no remote code by default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from arcsub.core.data import ArcDataError
from arcsub.core.encode import FORMATS, build_compact_tokenizer, is_compact
from arcsub.core.modeldir import check_model_dir, load_adapter, quiet_hf_progress, read_model_info

# Shapes for models trained from scratch on the compact vocabulary. vocab_size is padded to 32 for
# tensor-core friendly embedding shapes; the tokenizer uses the first 19 ids.
PRESETS: dict[str, dict[str, Any]] = {
    # < 1M params: CPU tests
    "tiny": dict(
        arch="llama",
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
    ),
    # ~8M params: the size of the embedded default
    "small": dict(
        arch="llama",
        hidden_size=256,
        intermediate_size=1024,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
    ),
    # ~28M params
    "medium": dict(
        arch="llama",
        hidden_size=512,
        intermediate_size=1536,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=8,
    ),
    # Qwen2.5-0.5B's shape with our vocabulary (random init): for timing the Kaggle budget
    "qwen0.5b-shape": dict(
        arch="qwen2",
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
    ),
}
VOCAB_PAD = 32


@dataclass
class LoraSettings:
    """LoRA hyper-parameters; r=0 means full fine-tuning."""

    r: int = 0
    alpha: int = 32
    dropout: float = 0.0
    targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    rslora: bool = False
    dora: bool = False


def preset_config(preset: str, max_len: int = 8192):
    """A transformers config for a named preset (Llama or Qwen2 architecture)."""
    from transformers import LlamaConfig, Qwen2Config

    if preset not in PRESETS:
        raise ArcDataError(f"unknown model preset {preset!r} (known: {', '.join(PRESETS)})")
    spec = dict(PRESETS[preset])
    arch = spec.pop("arch")
    tok = COMPACT_IDS
    common = dict(
        vocab_size=VOCAB_PAD,
        max_position_embeddings=max_len,
        rope_theta=10000.0,
        bos_token_id=tok["bos"],
        eos_token_id=tok["eos"],
        pad_token_id=tok["pad"],
        tie_word_embeddings=False,
        **spec,
    )
    return (LlamaConfig if arch == "llama" else Qwen2Config)(**common)


def _compact_ids() -> dict[str, int]:
    t = build_compact_tokenizer()
    return {"bos": t.bos_token_id, "eos": t.eos_token_id, "pad": t.pad_token_id}


COMPACT_IDS = _compact_ids()


def build_model(preset: str, max_len: int = 8192, seed: int = 0, attn: str = "sdpa"):
    """A randomly initialised model of a preset and the compact tokenizer (seeded: same seed, same weights)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    cfg = preset_config(preset, max_len)
    cfg._attn_implementation = attn
    model = AutoModelForCausalLM.from_config(cfg, attn_implementation=attn)
    return model, build_compact_tokenizer()


def prompt_format_name(path: str | Path, tokenizer) -> str:
    """The prompt format a model expects: recorded in arcsub.json, else compact iff its tokenizer is ours."""
    return read_model_info(path).get("format") or ("compact" if is_compact(tokenizer) else "text")


def check_tokenizer(tokenizer, path: str | Path, fmt: str) -> None:
    """A tokenizer must round-trip the grid alphabet of the prompt format, or the model cannot answer."""
    from arcsub.core.encode import Codec

    codec = Codec(tokenizer)
    probe = FORMATS[fmt].encoder.encode(torch.arange(10).reshape(2, 5).numpy())
    if codec.text(codec.ids(probe)).strip() != probe.strip():
        raise ArcDataError(f"{path}: tokenizer cannot express the grid alphabet of format {fmt!r}")
    if tokenizer.eos_token_id is None:
        raise ArcDataError(f"{path}: tokenizer has no eos token")


def has_compact_vocab(tokenizer_json: Path) -> bool:
    """Whether a tokenizer.json holds arcsub's compact grid vocabulary (read without building a tokenizer)."""
    from arcsub.core.encode import COMPACT_VOCAB

    try:
        vocab = json.loads(tokenizer_json.read_text())["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return vocab == dict(COMPACT_VOCAB)


def load_tokenizer_and_format(path: str | Path, trust_remote_code: bool = False):
    """A model directory's tokenizer (bos/pad filled in where missing) and the prompt format it expects."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    p = Path(path)
    # Our compact tokenizer loads through the generic class: AutoTokenizer would pick the architecture's own
    # (Qwen2Tokenizer for a qwen2 config), whose byte-level pre-tokenizer drops the newline token.
    loader = PreTrainedTokenizerFast if has_compact_vocab(p / "tokenizer.json") else AutoTokenizer
    try:
        tokenizer = loader.from_pretrained(str(p), local_files_only=True, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise ArcDataError(f"{p}: cannot load tokenizer ({str(e).splitlines()[0]})") from None
    if tokenizer.bos_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.bos_token = tokenizer.eos_token  # Qwen has no bos: reuse eos as the sequence opener
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    fmt = prompt_format_name(p, tokenizer)
    check_tokenizer(tokenizer, p, fmt)
    return tokenizer, fmt


QUANTS = ("none", "4bit")


def check_quant(quant: str, where: str = "config", runtime: bool = True) -> None:
    """One-line errors for a quant setting: an unknown value, or (runtime) 4bit without bitsandbytes or a CUDA
    GPU (bitsandbytes' NF4 kernels run on CUDA only; arcsub train and TTFT share this check). runtime=False
    checks the value only, so a caller can report its own setting errors before the missing library."""
    if quant not in QUANTS:
        raise ArcDataError(f"{where}: quant={quant!r} must be one of {list(QUANTS)}")
    if quant == "none" or not runtime:
        return
    try:
        import bitsandbytes  # noqa: F401
    except Exception:
        ok = False
    else:
        ok = torch.cuda.is_available()
    if not ok:
        raise ArcDataError(f"{where}: quant=4bit needs bitsandbytes and a CUDA GPU: pip install arcsub[bnb]")


def load_model(
    path: str | Path,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    attn: str = "sdpa",
    trust_remote_code: bool = False,
    quant: str = "none",
):
    """Load a local HF causal LM and its tokenizer; returns (model, tokenizer, format name).

    quant="4bit" loads the weights as bitsandbytes NF4 (bf16 compute) straight onto `device` (QLoRA)."""
    from transformers import AutoModelForCausalLM

    p = check_model_dir(path)
    tokenizer, fmt = load_tokenizer_and_format(p, trust_remote_code)
    extra: dict[str, Any] = {}
    if quant == "4bit":
        from transformers import BitsAndBytesConfig

        extra["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
        extra["device_map"] = {"": torch.device(device).index or 0}
    try:
        with quiet_hf_progress():  # one bar per worker and per TTFT process otherwise
            model = AutoModelForCausalLM.from_pretrained(
                str(p),
                local_files_only=True,
                dtype=dtype or torch.float32,
                attn_implementation=attn,
                trust_remote_code=trust_remote_code,
                **extra,
            )
    except (OSError, ValueError, KeyError) as e:
        raise ArcDataError(f"{p}: cannot build model ({str(e).splitlines()[0]})") from None
    return (model if quant == "4bit" else model.to(device)), tokenizer, fmt


# ------------------------------------------------------------------------------ vocabulary shrinking


def _format_probe_texts(fmt_name: str) -> list[str]:
    """Every kind of text the prompt format tokenizes (one string per segment, as segments_to_example
    tokenizes them): the markers alone, and for every grid shape 1x1..30x30 the grid alone and wrapped
    in its input/output markers; then every character of all of them on its own."""
    import numpy as np

    from arcsub.core.data import MAX_SIDE

    f = FORMATS[fmt_name]
    enc = f.encoder
    texts = [f.predict, f.generate, f.input, f.output, f.input + f.output]
    for h in range(1, MAX_SIDE + 1):
        for w in range(1, MAX_SIDE + 1):
            g = (np.arange(h * w).reshape(h, w) * 7 + h * 3 + w) % 10
            grid = enc.encode(g)
            texts += [grid, f.input + grid + f.output, f.input + grid]
    texts += sorted(set("".join(texts)) | set("0123456789\n "))
    return texts


def _needed_token_ids(tokenizer, fmt_name: str) -> set[int]:
    """Token ids the prompt format can produce with this tokenizer, plus its special tokens."""
    texts = _format_probe_texts(fmt_name)
    keep: set[int] = set()
    for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        keep.update(ids)
    for t in (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id, tokenizer.unk_token_id):
        if t is not None:
            keep.add(int(t))
    return keep


def _remap_ids(value, old_to_new: dict[int, int]):
    """Token id(s) in a config (int, list or None) mapped to the new vocabulary; dropped ids vanish."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        out = [old_to_new[int(v)] for v in value if int(v) in old_to_new]
        return out or None
    return old_to_new.get(int(value))


def _shrunk_tokenizer(tokenizer, keep: set[int]):
    """A new fast tokenizer over the kept tokens only, renumbered 0..n-1 in their original order.

    BPE: the kept set is closed under the merges that build its tokens (so text the format emits
    tokenizes exactly as before), and only merges among kept tokens survive, so any text made of kept
    characters still tokenizes (and decodes) to itself. WordLevel / WordPiece: the vocabulary is filtered.
    One function (~90 lines): every branch edits the same tokenizer JSON and its id map.
    """
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    if not getattr(tokenizer, "is_fast", False):
        raise ArcDataError("shrink_vocab needs a fast (tokenizers-backed) tokenizer")
    state = json.loads(tokenizer.backend_tokenizer.to_str())
    model = state["model"]
    kind = model.get("type")
    if kind not in ("BPE", "WordLevel", "WordPiece"):
        raise ArcDataError(f"shrink_vocab supports BPE, WordLevel and WordPiece tokenizers, not {kind}")
    id_to_tok = {i: t for t, i in model["vocab"].items()}
    for a in state.get("added_tokens") or []:
        id_to_tok[a["id"]] = a["content"]
    tok_to_id = {t: i for i, t in id_to_tok.items()}
    keep = set(keep)
    if model.get("unk_token") in tok_to_id:
        keep.add(tok_to_id[model["unk_token"]])

    def specials(node):
        if isinstance(node, dict):
            if "special_tokens" in node and isinstance(node["special_tokens"], dict):
                for spec in node["special_tokens"].values():
                    yield from spec.get("ids", [])
            for v in node.values():
                yield from specials(v)
        elif isinstance(node, list):
            for v in node:
                yield from specials(v)

    keep.update(int(i) for i in specials(state.get("post_processor")))
    if kind == "BPE":
        merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        made_by: dict[str, list[tuple[str, str]]] = {}
        for a, b in merges:
            made_by.setdefault(a + b, []).append((a, b))
        todo = [id_to_tok[i] for i in keep]
        kept_toks = set(todo)
        while todo:
            t = todo.pop()
            for pair in made_by.get(t, ()):
                for part in pair:
                    if part not in kept_toks and part in tok_to_id:
                        kept_toks.add(part)
                        todo.append(part)
        keep = {tok_to_id[t] for t in kept_toks}
    old_ids = sorted(keep)
    old_to_new = {o: n for n, o in enumerate(old_ids)}
    model["vocab"] = {t: old_to_new[i] for t, i in model["vocab"].items() if i in old_to_new}
    if kind == "BPE":
        names = set(model["vocab"])
        kept_merges = [(a, b) for a, b in merges if a in names and b in names and a + b in names]
        as_str = model["merges"] and isinstance(model["merges"][0], str)
        model["merges"] = [f"{a} {b}" if as_str else [a, b] for a, b in kept_merges]
    state["added_tokens"] = [
        dict(a, id=old_to_new[a["id"]]) for a in state.get("added_tokens") or [] if a["id"] in old_to_new
    ]

    def remap_specials(node):
        if isinstance(node, dict):
            if "special_tokens" in node and isinstance(node["special_tokens"], dict):
                for spec in node["special_tokens"].values():
                    spec["ids"] = [old_to_new[int(i)] for i in spec.get("ids", [])]
            for v in node.values():
                remap_specials(v)
        elif isinstance(node, list):
            for v in node:
                remap_specials(v)

    remap_specials(state.get("post_processor"))
    backend = Tokenizer.from_str(json.dumps(state))
    named = {
        k: getattr(tokenizer, k)
        for k in ("bos_token", "eos_token", "pad_token", "unk_token")
        if getattr(tokenizer, k, None) is not None and getattr(tokenizer, k + "_id", None) in old_to_new
    }
    new = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        clean_up_tokenization_spaces=getattr(tokenizer, "clean_up_tokenization_spaces", False),
        **{k: str(v) for k, v in named.items()},
    )
    new.model_max_length = tokenizer.model_max_length
    return new, old_ids, old_to_new


def shrink_vocab(model, tokenizer, fmt_name: str):
    """Cut a pretrained model's vocabulary to the tokens the prompt format needs (the ARChitects' trick):
    input embedding and lm_head rows sliced (tied embeddings stay tied), a renumbered tokenizer that
    encodes and decodes every prompt of the format exactly as before. Returns (model, tokenizer); the
    new tokenizer's `arcsub_shrink` holds {"original_vocab_size", "kept_ids"} (original ids, new order)."""
    if fmt_name not in FORMATS:
        raise ArcDataError(f"unknown prompt format {fmt_name!r} (known: {', '.join(FORMATS)})")
    new_tok, old_ids, old_to_new = _shrunk_tokenizer(tokenizer, _needed_token_ids(tokenizer, fmt_name))
    emb = model.get_input_embeddings()
    head = model.get_output_embeddings()
    tied = head is not None and head.weight is emb.weight
    idx = torch.tensor(old_ids, dtype=torch.long, device=emb.weight.device)
    original = emb.weight.shape[0]
    pad = getattr(emb, "padding_idx", None)
    new_emb = torch.nn.Embedding(
        len(old_ids),
        emb.weight.shape[1],
        padding_idx=old_to_new.get(int(pad)) if pad is not None else None,
        device=emb.weight.device,
        dtype=emb.weight.dtype,
    )
    with torch.no_grad():
        new_emb.weight.copy_(emb.weight[idx])
    model.set_input_embeddings(new_emb)
    if head is not None:
        new_head = torch.nn.Linear(
            head.weight.shape[1],
            len(old_ids),
            bias=head.bias is not None,
            device=head.weight.device,
            dtype=head.weight.dtype,
        )
        with torch.no_grad():
            if tied:
                new_head.weight = new_emb.weight
            else:
                new_head.weight.copy_(head.weight[idx.to(head.weight.device)])
            if head.bias is not None:
                new_head.bias.copy_(head.bias[idx.to(head.bias.device)])
        model.set_output_embeddings(new_head)
    cfgs = [
        model.config,
        getattr(model.config, "text_config", None),
        getattr(model, "generation_config", None),
    ]
    for c in cfgs:
        if c is None:
            continue
        if hasattr(c, "vocab_size") and c is not getattr(model, "generation_config", None):
            c.vocab_size = len(old_ids)
        for key in ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id"):
            if getattr(c, key, None) is not None:
                setattr(c, key, _remap_ids(getattr(c, key), old_to_new))
    new_tok.arcsub_shrink = {"original_vocab_size": int(original), "kept_ids": [int(i) for i in old_ids]}
    return model, new_tok


def apply_lora(model, lora: LoraSettings):
    """Wrap a model with a fresh LoRA adapter (PEFT); r=0 leaves it for full fine-tuning."""
    if lora.r <= 0:
        return model
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.targets),
        use_rslora=lora.rslora,
        use_dora=lora.dora,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, cfg)


def merge_into_full_precision(base_dir: str | Path, adapter_dir: str | Path, shrink: bool = False):
    """A LoRA trained on a 4-bit base (QLoRA) merged into the base's full-precision weights, reloaded from
    disk: merging into the NF4 weights would round the merged model to 4 bits (arcsub train and group TTFT)."""
    base, tok, fmt = load_model(base_dir)
    if shrink:
        base, _ = shrink_vocab(base, tok, fmt)
    return load_adapter(base, adapter_dir).merge_and_unload()
