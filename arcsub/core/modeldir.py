"""A model directory, the hand-off between training, test-time training, prediction and the Kaggle datasets:
Hugging Face files (config.json, safetensors weights, tokenizer) plus arcsub.json with what arcsub needs to
know (prompt format, steps, settings). Both model families save and check their folders here.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from arcsub.core.data import ArcDataError, is_complete, save_dir_atomic, write_json_atomic

HUB_ENV = "ARCSUB_ALLOW_HUB"  # =1: a model or adapter name that is not a local folder may be downloaded


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
    for f in weights:
        if f.suffix == ".safetensors":
            check_safetensors(f)
    return p


def check_safetensors(path: str | Path) -> Path:
    """Refuse (one line) a safetensors file whose header is not what the format says: garbage, truncated or
    empty, so a bad file exits 2 before a model is built rather than deep inside the loader."""
    f = Path(path)
    size = f.stat().st_size
    with open(f, "rb") as fh:
        head = fh.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if n < 2 or 8 + n > size:
            raise ArcDataError(f"{f}: not a safetensors file (bad header length)")
        try:
            header = json.loads(fh.read(n))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            raise ArcDataError(f"{f}: not a safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise ArcDataError(f"{f}: not a safetensors file (header is not a mapping)")
    ends = [
        t["data_offsets"][1]
        for k, t in header.items()
        if k != "__metadata__" and isinstance(t, dict) and isinstance(t.get("data_offsets"), list)
    ]
    if len(ends) != len(header) - ("__metadata__" in header) or 8 + n + max(ends, default=0) > size:
        raise ArcDataError(f"{f}: truncated or corrupt safetensors file")
    return f


def check_adapter_dir(path: str | Path) -> Path:
    """Fail with one line unless `path` is a local PEFT adapter folder with a readable weights file."""
    p = Path(path)
    if not p.is_dir():
        hint = f" (a hub id needs {HUB_ENV}=1)" if not hub_allowed() else ""
        raise ArcDataError(f"{p}: adapter directory not found{hint}")
    if not (p / "adapter_config.json").exists():
        raise ArcDataError(f"{p}: not a LoRA adapter (no adapter_config.json)")
    weights = p / "adapter_model.safetensors"
    if weights.exists():
        check_safetensors(weights)
    return p


def hub_allowed() -> bool:
    """Whether a name that is not a local folder may be fetched from a hub: only when the user says so
    ($ARCSUB_ALLOW_HUB=1); offline otherwise, so nothing reaches for the network at run time by accident."""
    return os.environ.get(HUB_ENV) == "1"


def local_only(name: str | Path) -> dict[str, bool]:
    """from_pretrained keyword arguments: local_files_only unless `name` is not a local folder and the hub
    is allowed (then the user named a hub id on purpose)."""
    return {"local_files_only": Path(name).exists() or not hub_allowed()}


def load_adapter(model, adapter: str | Path, trainable: bool = False):
    """A PEFT adapter on `model`, local-only unless the hub is allowed (a local folder is checked first)."""
    from peft import PeftModel

    if Path(adapter).exists() or not hub_allowed():
        check_adapter_dir(adapter)
    return PeftModel.from_pretrained(model, str(adapter), is_trainable=trainable, **local_only(adapter))


def model_finished(path: str | Path) -> bool:
    """Whether a run's model/ is a finished save: the completion marker (written last, folder renamed into
    place), or a folder saved before markers existed that holds arcsub.json (its last file) and whole weights."""
    p = Path(path)
    if is_complete(p):
        return True
    if not (p / "arcsub.json").exists():
        return False
    try:
        check_model_dir(p)
    except ArcDataError:
        return False
    return True


def read_model_info(path: str | Path) -> dict[str, Any]:
    f = Path(path) / "arcsub.json"
    return json.loads(f.read_text()) if f.exists() else {}


def save_model(
    model, tokenizer, path: str | Path, info: dict[str, Any], extra: Callable[[Path], Any] | None = None
) -> Path:
    """Save weights (safetensors) + tokenizer + arcsub.json (+ `extra(folder)`'s files); a LoRA model saves
    its adapter only. Written into a temp folder and renamed (save_dir_atomic): a kill or a full disk never
    leaves a model folder that looks finished."""

    def write(folder: Path) -> None:
        with quiet_hf_progress():
            model.save_pretrained(str(folder), safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(str(folder))
        if extra is not None:
            extra(folder)
        write_json_atomic(folder / "arcsub.json", info, indent=2)

    return save_dir_atomic(path, write)


@contextlib.contextmanager
def quiet_hf_progress() -> Iterator[None]:
    """transformers' tqdm bars off for the block. Why: it draws one for every save and load of a model folder
    ('Writing model shards', 'Loading weights'), so a long run's log got three lines of bars per checkpoint
    (~40 checkpoints in a 26-minute task-model run) between the lines that say what happened."""
    from transformers.utils import logging as hf_logging

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())
