"""A learned local rule: each output cell is a function of the input cell's neighbourhood, read off the
demonstrations as a lookup table.

Many same-size ARC tasks (outlines, recolouring by neighbours, marking corners) are such rules; with what a
cell sees far off (the first colour along each direction, the colours of its row and column) also lines drawn
to marks and boxes filled between them. The table must be
consistent (one output per neighbourhood across every demonstration), and it answers a test input only when
every neighbourhood there was seen in the demonstrations: an unseen one would be a guess.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arcsub.core.data import Grid

OUTSIDE = 10  # the value of cells beyond the border in a neighbourhood

SQUARE = tuple((dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1))
CROSS = ((0, 0), (-1, 0), (1, 0), (0, -1), (0, 1))
NEIGHBOURS = tuple(d for d in SQUARE if d != (0, 0))  # the 8 cells around one
NEAR = {"cross": CROSS, "counts": SQUARE, "square": SQUARE}  # the cells each near shape reads
# tried in this order: "counts" is the cell and how many of each colour its 8 neighbours hold; "rays" the cell and
# the first coloured (non-black) cell seen along each of the 4 directions; "lines" the cell and the sets of colours
# in its row and in its column
SHAPES = (*NEAR, "rays", "lines")


def first_seen(grid: Grid, dr: int, dc: int) -> np.ndarray:
    """For each cell, the first non-black colour strictly beyond it in direction (dr, dc), OUTSIDE if none:
    what lines are drawn to, filled between or stopped by (a cell between two marks of one colour)."""
    turns = {(0, -1): 0, (-1, 0): 1, (0, 1): 2, (1, 0): 3}[(dr, dc)]  # quarter turns that make it leftwards
    g = np.rot90(grid, k=turns)
    seen = np.full(g.shape, OUTSIDE, dtype=np.uint8)
    last = np.full(g.shape[0], OUTSIDE, dtype=np.uint8)
    for c in range(g.shape[1]):
        seen[:, c] = last
        last = np.where(g[:, c] != 0, g[:, c], last)
    return np.rot90(seen, k=-turns)


def shifted(grid: Grid, offsets: tuple[tuple[int, int], ...]) -> list[np.ndarray]:
    """For each offset (dr, dc), the grid of each cell's neighbour there (OUTSIDE beyond the border)."""
    h, w = grid.shape
    padded = np.full((h + 2, w + 2), OUTSIDE, dtype=np.uint8)
    padded[1:-1, 1:-1] = grid
    return [padded[1 + dr : 1 + dr + h, 1 + dc : 1 + dc + w] for dr, dc in offsets]


def interior(grid: Grid) -> np.ndarray:
    """True where all 8 neighbours share the cell's colour (a cell on the border has none beyond it): the inside
    of a filled shape, what filling or recolouring rectangles' insides changes (50cb2852, bb43febb)."""
    return np.logical_and.reduce([n == grid for n in shifted(grid, NEIGHBOURS)])


def neighbourhoods(grid: Grid, shape: str) -> list[bytes]:
    """Each cell's neighbourhood (cells beyond the border as OUTSIDE), in reading order, as hashable bytes."""
    h, w = grid.shape
    parts = shifted(grid, NEAR[shape]) if shape in NEAR else far_features(grid, shape)
    rows = np.stack(parts, axis=-1).reshape(h * w, -1)
    if shape == "counts":  # the centre (index 4 of SQUARE), then a histogram of all 9 cells
        counts = (rows[:, :, None] == np.arange(OUTSIDE + 1)).sum(axis=1)
        rows = np.concatenate([rows[:, 4:5], counts.astype(np.uint8)], axis=1)
    return [r.tobytes() for r in rows]


def far_features(grid: Grid, shape: str) -> list[np.ndarray]:
    """The cell's colour and what it sees far off, one grid-shaped array each: its 4 rays ("rays") or the
    colour sets of its row and column as bit masks ("lines": a cell in a row holding two marks)."""
    if shape == "rays":
        return [grid.astype(np.int32), *(first_seen(grid, *d).astype(np.int32) for d in CROSS[1:])]
    masks = np.where(grid != 0, 1 << grid.astype(np.int32), 0)
    rows = np.bitwise_or.reduce(masks, axis=1, keepdims=True)
    cols = np.bitwise_or.reduce(masks, axis=0, keepdims=True)
    return [grid.astype(np.int32), np.broadcast_to(rows, grid.shape), np.broadcast_to(cols, grid.shape)]


@dataclass(frozen=True, eq=False)
class LocalRule:
    """A fitted rule: the neighbourhood `shape` and the table from neighbourhoods to output colours."""

    shape: str
    table: dict[bytes, int]

    @property
    def name(self) -> str:
        return f"local_{self.shape}"

    def __call__(self, grid: Grid) -> Grid | None:
        return look_up(neighbourhoods(grid, self.shape), self.table, grid.shape)


def look_up(keys: list, table: dict, shape: tuple[int, ...]) -> Grid | None:
    """The output grid of `shape` from each cell's key in `table`, or None where a key was never seen (a guess)."""
    if any(k not in table for k in keys):
        return None
    return np.array([table[k] for k in keys], dtype=np.uint8).reshape(shape)


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
