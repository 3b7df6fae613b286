"""A learned local rule: each output cell is a function of the input cell's neighbourhood, read off the
demonstrations as a lookup table.

Many same-size ARC tasks (outlines, recolouring by neighbours, marking corners) are such rules. The table must be
consistent (one output per neighbourhood across every demonstration), and it answers a test input only when
every neighbourhood there was seen in the demonstrations: an unseen one would be a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arcsub.core.data import Grid

OUTSIDE = 10  # the value of cells beyond the border in a neighbourhood

SQUARE = tuple((dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1))
SHAPES = {  # tried in this order: "counts" is the cell and how many of each colour its 8 neighbours hold
    "cross": ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)),
    "counts": SQUARE,
    "square": SQUARE,
}


def neighbourhoods(grid: Grid, shape: str) -> list[bytes]:
    """Each cell's neighbourhood (cells beyond the border as OUTSIDE), in reading order, as hashable bytes."""
    h, w = grid.shape
    padded = np.full((h + 2, w + 2), OUTSIDE, dtype=np.uint8)
    padded[1:-1, 1:-1] = grid
    stack = np.stack([padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w] for dr, dc in SHAPES[shape]], axis=-1)
    rows = stack.reshape(h * w, -1)
    if shape == "counts":  # the centre (index 4 of SQUARE), then a histogram of all 9 cells
        counts = (rows[:, :, None] == np.arange(OUTSIDE + 1)).sum(axis=1)
        rows = np.concatenate([rows[:, 4:5], counts.astype(np.uint8)], axis=1)
    return [r.tobytes() for r in rows]


@dataclass(frozen=True, eq=False)
class LocalRule:
    """A fitted rule: the neighbourhood `shape` and the table from neighbourhoods to output colours."""

    shape: str
    table: dict[bytes, int]

    @property
    def name(self) -> str:
        return f"local_{self.shape}"

    def __call__(self, grid: Grid) -> Grid | None:
        keys = neighbourhoods(grid, self.shape)
        if any(k not in self.table for k in keys):
            return None
        return np.array([self.table[k] for k in keys], dtype=np.uint8).reshape(grid.shape)


def fit_local_rule(inputs: list[Grid], targets: list[Grid], shape: str) -> LocalRule | None:
    """The lookup table from `shape` neighbourhoods of `inputs` to the target cells, or None when a shape
    differs or one neighbourhood needs two outputs."""
    table: dict[bytes, int] = {}
    for grid, target in zip(inputs, targets, strict=True):
        if grid.shape != target.shape:
            return None
        for key, out in zip(neighbourhoods(grid, shape), target.ravel().tolist(), strict=True):
            if table.setdefault(key, out) != out:
                return None
    return LocalRule(shape, table)
