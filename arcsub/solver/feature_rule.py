"""A learned rule over the fewest cell features: each output cell is a function of the input cell's colour and
at most three other features (one neighbour, the first colour along one direction, the colours of its row...).

A full neighbourhood table (`arcsub.solver.local_rule`) must have seen every test neighbourhood whole, so it fails
on a test input whose cells meet new combinations of irrelevant neighbours. Keying the table on only the features
the rule reads generalises: "each cell takes the colour of the cell above it" (a shift), "a black cell between
two marks of one colour in its column turns that colour". The subsets are tried smallest first, so the answer
comes from the simplest consistent rule that covers the test input.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from arcsub.core.data import Grid
from arcsub.solver.local_rule import CROSS, NEIGHBOURS, far_features, look_up, shifted

FEATURE_NAMES = (
    "cell",
    *(f"at{dr:+d}{dc:+d}" for dr, dc in NEIGHBOURS),
    *(f"ray{dr:+d}{dc:+d}" for dr, dc in CROSS[1:]),
    "row_colours",
    "column_colours",
)
BITS = 11  # every feature is below 2**11: colours and OUTSIDE below 16, colour sets below 2**10
MOST_FEATURES = 4  # the cell's colour and up to three more; five fitted a wrong rule on ARC-AGI-1 training


def features(grid: Grid) -> np.ndarray:
    """One row per cell (reading order), one column per FEATURE_NAMES entry."""
    h, w = grid.shape
    far = far_features(grid, "rays")[1:] + far_features(grid, "lines")[1:]
    return np.stack([grid, *shifted(grid, NEIGHBOURS), *far], axis=-1).reshape(h * w, -1).astype(np.int64)


def codes(table: np.ndarray, columns: tuple[int, ...]) -> np.ndarray:
    """Each row's chosen features packed into one integer, the table's key."""
    out = np.zeros(len(table), dtype=np.int64)
    for c in columns:
        out = (out << BITS) | table[:, c]
    return out


def consistent(keys: np.ndarray, targets: np.ndarray) -> bool:
    """True when every key meets one target colour only."""
    return len(np.unique(keys)) == len(np.unique((keys << 4) | targets))


@dataclass(frozen=True, eq=False)
class FeatureRule:
    """A fitted rule: the feature columns it reads and the table from their packed values to output colours."""

    columns: tuple[int, ...]
    table: dict[int, int]

    @property
    def name(self) -> str:
        return "local_" + "+".join(FEATURE_NAMES[c] for c in self.columns)

    def __call__(self, grid: Grid) -> Grid | None:
        return look_up(codes(features(grid), self.columns).tolist(), self.table, grid.shape)


def fit_feature_rules(inputs: list[Grid], targets: list[Grid]) -> Iterator[FeatureRule]:
    """Every consistent rule over the cell's colour and up to MOST_FEATURES - 1 more features, fewest first;
    none when a shape differs."""
    if any(g.shape != t.shape for g, t in zip(inputs, targets, strict=True)):
        return
    table = np.concatenate([features(g) for g in inputs])
    want = np.concatenate([t.ravel() for t in targets]).astype(np.int64)
    for k in range(MOST_FEATURES):
        for more in itertools.combinations(range(1, len(FEATURE_NAMES)), k):
            columns = (0, *more)
            keys = codes(table, columns)
            if consistent(keys, want):
                yield FeatureRule(columns, dict(zip(keys.tolist(), want.tolist(), strict=True)))
