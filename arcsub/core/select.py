"""Choosing the two attempts from many candidates: voting, likelihood (product of experts), or both.

Why several strategies: majority voting over augmented views (ironbar) is free and robust, but with few views
ties are common and a confident wrong answer can win; ARChitects' product of experts re-scores every
distinct candidate under several augmentations and sums the log-probabilities, which rewards answers that
are right in every frame. "vote+likelihood" keeps the vote and uses likelihood only to order equal counts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from arcsub.core.data import ArcDataError, Grid

# Scores a list of distinct grids (in the original frame); higher is better. Only "likelihood" strategies call it.
Scorer = Callable[[list[Grid]], list[float]]


@dataclass
class Group:
    """Identical candidates grouped: the grid, how many times it came, their log-probabilities, first index."""

    grid: Grid
    votes: int
    logprob_sum: float
    first: int
    score: float = 0.0

    @property
    def mean_logprob(self) -> float:
        return self.logprob_sum / self.votes


def _finite(x: Any) -> float:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return -math.inf
    return v if not math.isnan(v) else -math.inf


def group_candidates(candidates: Sequence[Mapping[str, Any]]) -> list[Group]:
    """Distinct valid grids in order of first appearance; invalid (None) candidates are left out."""
    groups: dict[tuple[tuple[int, ...], bytes], Group] = {}
    for i, c in enumerate(candidates):
        if c.get("grid") is None:
            continue
        g = np.ascontiguousarray(np.asarray(c["grid"], dtype=np.uint8))
        key = (g.shape, g.tobytes())
        lp = _finite(c.get("logprob", 0.0))
        if key in groups:
            groups[key].votes += 1
            groups[key].logprob_sum += lp
        else:
            groups[key] = Group(g, 1, lp, i)
    return list(groups.values())


def _scored(groups: list[Group], scorer: Scorer | None) -> list[Group]:
    if scorer is None:
        raise ArcDataError(
            "selection: a likelihood strategy needs a scorer (an engine to re-score candidates)"
        )
    if len(groups) > 1:  # one candidate needs no ranking: skip the forward passes
        for g, s in zip(groups, scorer([g.grid for g in groups]), strict=True):
            g.score = _finite(s)
    return groups


def rank_vote(groups: list[Group], scorer: Scorer | None = None) -> list[Group]:
    """Most votes first; ties by higher mean log-probability, then by first appearance."""
    return sorted(groups, key=lambda g: (-g.votes, -g.mean_logprob, g.first))


def rank_likelihood(groups: list[Group], scorer: Scorer | None = None) -> list[Group]:
    """Highest summed log-probability over the scoring augmentations first; ties by first appearance."""
    return sorted(_scored(groups, scorer), key=lambda g: (-g.score, g.first))


def rank_vote_likelihood(groups: list[Group], scorer: Scorer | None = None) -> list[Group]:
    """Most votes first; ties by summed likelihood, then by first appearance."""
    return sorted(_scored(groups, scorer), key=lambda g: (-g.votes, -g.score, g.first))


SELECTORS: dict[str, Callable[[list[Group], Scorer | None], list[Group]]] = {
    "vote": rank_vote,
    "likelihood": rank_likelihood,
    "vote+likelihood": rank_vote_likelihood,
}
NEEDS_SCORER = frozenset({"likelihood", "vote+likelihood"})


def rank(
    candidates: Sequence[Mapping[str, Any]], strategy: str = "vote", scorer: Scorer | None = None
) -> list[Group]:
    if strategy not in SELECTORS:
        raise ArcDataError(f"selection: unknown strategy {strategy!r} (known: {', '.join(SELECTORS)})")
    return SELECTORS[strategy](group_candidates(candidates), scorer)


def select(
    candidates: Sequence[Mapping[str, Any]], strategy: str = "vote", scorer: Scorer | None = None, k: int = 2
) -> list[Grid | None]:
    """The top-k grids for one test output, padded with None (the submission builder fills fallbacks).

    `candidates` are predictions-file entries: {"grid": grid | None, "logprob": float, "tokens": int, "view": str}.
    """
    top: list[Grid | None] = [g.grid for g in rank(candidates, strategy, scorer)[:k]]
    return top + [None] * (k - len(top))
