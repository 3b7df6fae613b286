"""What a decoder returns and how it is asked: sampling settings, candidates (grid, log-probability, tokens),
and the batching helpers both model families decode with.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

from arcsub.core.data import ArcDataError

SamplingMode = Literal["greedy", "sample", "dfs"]

# Longest compact answer: 30 rows of 30 digits and a newline, then eos.
MAX_ANSWER_TOKENS = 30 * 31 + 1


@dataclass
class SamplingSettings:
    """How answers are drawn.

    mode: "greedy" (one answer per prompt), "sample" (n answers at `temperature`, optional nucleus `top_p`),
    "dfs" (ARChitects: every answer whose probability is at least `dfs_threshold`, best first).
    constrained: restrict the compact tokenizer's output to well-formed grids (digits, equal-length rows).
    batch_tokens: memory budget of one batch, counted as rows x (prompt + max_new_tokens) tokens; 0 = auto:
    the task model sizes it from the GPU's free memory (arcsub.core.memory), the LM engine takes 262_144.
    """

    mode: SamplingMode = "greedy"
    n: int = 1
    temperature: float = 1.0
    top_p: float | None = None
    dfs_threshold: float = 0.1
    max_new_tokens: int = MAX_ANSWER_TOKENS
    constrained: bool = True
    batch_tokens: int = 262_144
    seed: int = 0

    def validate(self) -> SamplingSettings:
        """Raise a one-line ArcDataError for values no engine can honour; returns self for chaining."""
        if self.mode not in ("greedy", "sample", "dfs"):
            raise ArcDataError(f"sampling: mode={self.mode!r} must be greedy, sample or dfs")
        if self.n < 1:
            raise ArcDataError(f"sampling: n={self.n} must be at least 1")
        if self.mode == "sample" and not self.temperature > 0:
            raise ArcDataError(f"sampling: temperature={self.temperature} must be > 0 for mode=sample")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ArcDataError(f"sampling: top_p={self.top_p} must be in (0, 1]")
        if not 0 < self.dfs_threshold <= 1:
            raise ArcDataError(f"sampling: dfs_threshold={self.dfs_threshold} must be in (0, 1]")
        if self.max_new_tokens < 1:
            raise ArcDataError(f"sampling: max_new_tokens={self.max_new_tokens} must be at least 1")
        if self.batch_tokens < 0:
            raise ArcDataError(f"sampling: batch_tokens={self.batch_tokens} must be 0 (auto) or more")
        return self


@dataclass
class Candidate:
    """One generated answer.

    tokens: the generated ids without the final eos. logprob: the model's summed log-probability of the
    generated tokens (eos included) at temperature 1, before any constraint mask, so it equals what
    `Engine.score` returns for the same answer. n_tokens: tokens generated (eos included), the compute paid.
    finished: False when max_new_tokens ran out before eos; such an answer is not a valid grid.
    """

    tokens: list[int]
    logprob: float
    n_tokens: int
    finished: bool = True


K = TypeVar("K", bound=Hashable)


def group_indices(keys: Iterable[K]) -> dict[K, list[int]]:
    """Indices grouped by key, groups in order of first appearance (so batches follow the input order)."""
    groups: dict[K, list[int]] = {}
    for i, k in enumerate(keys):
        groups.setdefault(k, []).append(i)
    return groups


def length_batches(lengths: Sequence[int], rows_each: int, extra: int, budget: int) -> list[list[int]]:
    """Split indices, sorted by length, into batches whose padded size fits the token budget.

    A batch of prompts with longest prompt L costs rows x (L + extra) tokens, rows = prompts x rows_each.
    Sorting by length keeps padding small; a prompt larger than the budget still gets a batch of its own.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:  # ascending, so lengths[i] is the longest of the batch so far
        if cur and (len(cur) + 1) * rows_each * (lengths[i] + extra) > budget:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def safe_logprob(x: float | None) -> float:
    """A log-probability as a JSON-safe float: None/NaN become -inf's stand-in (-1e30)."""
    if x is None or math.isnan(x):
        return -1e30
    return max(float(x), -1e30)
