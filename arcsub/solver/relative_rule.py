"""A learned rule that names no colour of the input: each cell keeps its colour or turns one fixed colour,
decided by at most two colour-free features (background or not, inside its shape, how many neighbours share
its colour, on the grid's edge, its piece the largest or smallest of its colour).

The feature rule keys on the cell's own colour, so a test input drawn in colours no demonstration used gets no
answer: "hollow every rectangle" (4347f46a), "grey where a cell is not the background" (9565186b), "mark the
cells whose neighbours all differ" (7f4411dc) are one rule whatever the shapes' colours. Leaving the colour out
of the key lets them carry; the output stays either the cell's own colour or one colour the demonstrations
showed.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from arcsub.core.data import Grid
from arcsub.solver.feature_rule import codes, size_extreme
from arcsub.solver.local_rule import NEIGHBOURS, interior, shifted
from arcsub.solver.objects import background

RELATIVE_NAMES = ("background", "interior", "same4", "same8", "edge", "size_extreme")
MOST_RELATIVE = 2  # three features fitted a wrong rule on ARC-AGI-1 training (6c434453)
KEEP = -1  # a table entry: the cell keeps its colour
SIDES = [i for i, (dr, dc) in enumerate(NEIGHBOURS) if dr == 0 or dc == 0]


def relative_features(grid: Grid) -> np.ndarray:
    """One row per cell (reading order), one column per RELATIVE_NAMES entry."""
    h, w = grid.shape
    same = np.stack([n == grid for n in shifted(grid, NEIGHBOURS)])
    edge = np.ones(grid.shape, dtype=bool)
    edge[1:-1, 1:-1] = False
    columns = [
        grid == background(grid),
        interior(grid),
        same[SIDES].sum(axis=0),
        same.sum(axis=0),
        edge,
        size_extreme(grid),
    ]
    return np.stack(columns, axis=-1).astype(np.int64).reshape(h * w, -1)


@dataclass(frozen=True, eq=False)
class RelativeRule:
    """A fitted rule: the feature columns it reads and the table from their packed values to KEEP or a colour."""

    columns: tuple[int, ...]
    table: dict[int, int]

    @property
    def name(self) -> str:
        return "relative_" + "+".join(RELATIVE_NAMES[c] for c in self.columns)

    def __call__(self, grid: Grid) -> Grid | None:
        keys = codes(relative_features(grid), self.columns).tolist()
        if any(k not in self.table for k in keys):
            return None  # a combination no demonstration showed: a guess
        out = np.array([self.table[k] for k in keys]).reshape(grid.shape)
        return np.where(out == KEEP, grid, out).astype(np.uint8)


def fit_table(keys: np.ndarray, cells: np.ndarray, want: np.ndarray) -> dict[int, int] | None:
    """Per key, KEEP when every such cell kept its colour, else the one colour they all turned; None when a key
    needs both or two colours, or when the table keeps every cell (the identity)."""
    values, group = np.unique(keys, return_inverse=True)
    changed = np.bincount(group, weights=want != cells, minlength=len(values)) > 0
    low = np.full(len(values), 10)
    high = np.full(len(values), -1)
    np.minimum.at(low, group, want)
    np.maximum.at(high, group, want)
    if (changed & (low != high)).any() or not changed.any():
        return None
    return {int(v): int(c) if ch else KEEP for v, c, ch in zip(values, low, changed, strict=True)}


def fit_relative_rules(inputs: list[Grid], targets: list[Grid]) -> Iterator[RelativeRule]:
    """Every consistent rule over one or MOST_RELATIVE features, fewest first; none when a shape differs."""
    if any(g.shape != t.shape for g, t in zip(inputs, targets, strict=True)):
        return
    table = np.concatenate([relative_features(g) for g in inputs])
    cells = np.concatenate([g.ravel() for g in inputs]).astype(np.int64)
    want = np.concatenate([t.ravel() for t in targets]).astype(np.int64)
    for k in range(1, MOST_RELATIVE + 1):
        for columns in itertools.combinations(range(len(RELATIVE_NAMES)), k):
            rule = fit_table(codes(table, columns), cells, want)
            if rule is not None:
                yield RelativeRule(columns, rule)
