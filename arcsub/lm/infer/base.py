"""One interface for every inference backend: sampling settings, candidates, and the Engine contract.

The pipeline (arcsub.lm.predict) talks only to `Engine`, so the always-available PyTorch backend, the optional
vLLM backend and test doubles are interchangeable. Prompts and answers are token ids; an engine never sees
grids or text, which keeps backends small and makes every one of them testable with hand-built models.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from arcsub.core.candidates import Candidate, SamplingSettings

log = logging.getLogger("arcsub.lm.infer")


AdapterList = Sequence[str | None] | None


class Engine(ABC):
    """A backend that generates answers for token prompts and scores given answers.

    `adapters`, when given, holds one entry per prompt: the directory of a PEFT LoRA adapter to apply for
    that prompt, or None for the base model. A missing adapter directory is a warning, never an error:
    the prompt runs on the base model (a test-time fine-tuning job that crashed must not sink the run).
    """

    name: str = "engine"

    @abstractmethod
    def generate(
        self, prompts: Sequence[Sequence[int]], params: SamplingSettings, adapters: AdapterList = None
    ) -> list[list[Candidate]]:
        """Candidates for each prompt, in prompt order (greedy: 1, sample: n, dfs: all above threshold)."""

    @abstractmethod
    def score(
        self, prompts: Sequence[Sequence[int]], answers: Sequence[Sequence[int]], adapters: AdapterList = None
    ) -> list[float]:
        """Summed log-probability of each answer's tokens given its prompt (teacher forcing)."""


# ---------------------------------------------------------------------------------------------- helpers

_warned_adapters: set[str] = set()


def adapter_ok(path: str | Path) -> bool:
    """True when `path` is a directory holding a PEFT adapter (adapter_config.json)."""
    p = Path(path)
    return p.is_dir() and (p / "adapter_config.json").is_file()


def resolve_adapters(adapters: AdapterList, n: int) -> list[str | None]:
    """One adapter path (or None) per prompt; missing adapter directories warn once and become None."""
    if adapters is None:
        return [None] * n
    if len(adapters) != n:
        raise ValueError(f"{len(adapters)} adapters for {n} prompts")
    out: list[str | None] = []
    for a in adapters:
        if a is None:
            out.append(None)
        elif adapter_ok(a):
            out.append(str(a))
        else:
            if str(a) not in _warned_adapters:
                _warned_adapters.add(str(a))
                log.warning("adapter %s not found (no adapter_config.json): using the base model", a)
            out.append(None)
    return out
