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

from .data import ArcDataError, write_json_atomic
from .encode import FORMATS, build_compact_tokenizer, is_compact

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


def check_model_dir(path: str | Path) -> Path:
    """Fail with one clear line unless `path` is a model directory with a config and weights."""
    p = Path(path)
    if not p.is_dir():
        raise ArcDataError(f"{p}: model directory not found")
    if not (p / "config.json").exists():
        raise ArcDataError(f"{p}: not a model directory (no config.json)")
    weights = list(p.glob("*.safetensors")) + list(p.glob("pytorch_model*.bin"))
    if not weights:
        raise ArcDataError(f"{p}: model directory has no weights (*.safetensors or pytorch_model*.bin)")
    return p


def read_model_info(path: str | Path) -> dict[str, Any]:
    f = Path(path) / "arcsub.json"
    return json.loads(f.read_text()) if f.exists() else {}


def prompt_format_name(path: str | Path, tokenizer) -> str:
    """The prompt format a model expects: recorded in arcsub.json, else compact iff its tokenizer is ours."""
    return read_model_info(path).get("format") or ("compact" if is_compact(tokenizer) else "text")


def check_tokenizer(tokenizer, path: str | Path, fmt: str) -> None:
    """A tokenizer must round-trip the grid alphabet of the prompt format, or the model cannot answer."""
    from .encode import Codec

    codec = Codec(tokenizer)
    probe = FORMATS[fmt].encoder.encode(torch.arange(10).reshape(2, 5).numpy())
    if codec.text(codec.ids(probe)).strip() != probe.strip():
        raise ArcDataError(f"{path}: tokenizer cannot express the grid alphabet of format {fmt!r}")
    if tokenizer.eos_token_id is None:
        raise ArcDataError(f"{path}: tokenizer has no eos token")


def load_tokenizer_and_format(path: str | Path, trust_remote_code: bool = False):
    """A model directory's tokenizer (bos/pad filled in where missing) and the prompt format it expects."""
    from transformers import AutoTokenizer

    p = Path(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            str(p), local_files_only=True, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as e:
        raise ArcDataError(f"{p}: cannot load tokenizer ({str(e).splitlines()[0]})") from None
    if tokenizer.bos_token_id is None and tokenizer.eos_token_id is not None:
        tokenizer.bos_token = tokenizer.eos_token  # Qwen has no bos: reuse eos as the sequence opener
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    fmt = prompt_format_name(p, tokenizer)
    check_tokenizer(tokenizer, p, fmt)
    return tokenizer, fmt


def load_model(
    path: str | Path,
    dtype: torch.dtype | None = None,
    device: str | torch.device = "cpu",
    attn: str = "sdpa",
    trust_remote_code: bool = False,
):
    """Load a local HF causal LM and its tokenizer; returns (model, tokenizer, format name)."""
    from transformers import AutoModelForCausalLM

    p = check_model_dir(path)
    tokenizer, fmt = load_tokenizer_and_format(p, trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            str(p),
            local_files_only=True,
            dtype=dtype or torch.float32,
            attn_implementation=attn,
            trust_remote_code=trust_remote_code,
        )
    except (OSError, ValueError, KeyError) as e:
        raise ArcDataError(f"{p}: cannot build model ({str(e).splitlines()[0]})") from None
    return model.to(device), tokenizer, fmt


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


def save_model(model, tokenizer, path: str | Path, info: dict[str, Any]) -> Path:
    """Save weights (safetensors) + tokenizer + arcsub.json; a LoRA model saves its adapter only."""
    p = Path(path)
    p.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(p), safe_serialization=True)
    tokenizer.save_pretrained(str(p))
    write_json_atomic(p / "arcsub.json", info, indent=2)
    return p


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
