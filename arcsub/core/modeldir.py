"""A model directory, the hand-off between training, test-time training, prediction and the Kaggle datasets:
Hugging Face files (config.json, safetensors weights, tokenizer) plus arcsub.json with what arcsub needs to
know (prompt format, steps, settings). Both model families save and check their folders here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from arcsub.core.data import ArcDataError, write_json_atomic


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
