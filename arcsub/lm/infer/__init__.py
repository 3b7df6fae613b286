"""Inference engines behind one interface (`Engine`): PyTorch (always there) and vLLM (optional extra).

Importing this package is light: torch and vllm load only when an engine class is first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from arcsub.core.candidates import Candidate, SamplingSettings
from arcsub.lm.infer.base import Engine, adapter_ok, resolve_adapters

if TYPE_CHECKING:
    from arcsub.core.grammar import GridConstraint
    from arcsub.lm.infer.torch_engine import TorchEngine
    from arcsub.lm.infer.vllm_engine import VllmEngine

_LAZY = {
    "TorchEngine": "torch_engine",
    "GridConstraint": "torch_engine",
    "VllmEngine": "vllm_engine",
    "choose_engine": "vllm_engine",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Candidate",
    "Engine",
    "SamplingSettings",
    "adapter_ok",
    "resolve_adapters",
    "TorchEngine",
    "GridConstraint",
    "VllmEngine",
    "choose_engine",
]
