"""A learned rule over the fewest cell features: each output cell is a function of the input cell's colour and
at most three other features (one neighbour, the first colour along one direction, the colours of its row...).

A full neighbourhood table (`arcsub.solver.local_rule`) must have seen every test neighbourhood whole, so it fails
on a test input whose cells meet new combinations of irrelevant neighbours. Keying the table on only the features
the rule reads generalises: "each cell takes the colour of the cell above it" (a shift), "a black cell between
two marks of one colour in its column turns that colour", "the inside of each filled shape turns blue". Two
features read the cell's object: whether its one-colour piece is the largest or the smallest of its colour ("the
biggest blob turns blue"), and the colour of the smallest one-colour shape whose box holds it ("the gap in each
L-shape's box turns blue"). The subsets are tried smallest first, so the answer comes from the simplest
consistent rule that covers the test input.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from arcsub.core.data import Grid
from arcsub.solver.local_rule import CROSS, NEIGHBOURS, OUTSIDE, far_features, interior, look_up, shifted
from arcsub.solver.objects import background, label

FEATURE_NAMES = (
    "cell",
    *(f"at{dr:+d}{dc:+d}" for dr, dc in NEIGHBOURS),
    *(f"ray{dr:+d}{dc:+d}" for dr, dc in CROSS[1:]),
    "row_colours",
    "column_colours",
    "interior",
    "size_extreme",
    "box_colour",
)
OBJECT_FEATURES = 2  # the last two: read only beside the cell's colour (below)
BITS = 11  # every feature is below 2**11: colours and OUTSIDE below 16, colour sets below 2**10
MOST_FEATURES = 4  # the cell's colour and up to three more; five fitted a wrong rule on ARC-AGI-1 training


def size_extreme(grid: Grid) -> np.ndarray:
    """Per cell, its 4-connected one-colour piece (background pieces too) as the largest of its colour's pieces
    (1), the smallest (2), both (3: the only size) or neither (0). Written for ARC-AGI-1 training's 6455b5f5,
    67385a82, a61f2674 and aedd82e4: the biggest or the lone pieces recoloured."""
    pieces = [(int(grid[p.mask][0]), p) for p in label(grid, -1, False, True)]  # -1: every cell in a piece
    sizes: dict[int, list[int]] = {}
    for colour, p in pieces:
        sizes.setdefault(colour, []).append(p.area)
    out = np.zeros(grid.shape, dtype=np.int64)
    for colour, p in pieces:
        out[p.mask] = (p.area == max(sizes[colour])) + 2 * (p.area == min(sizes[colour]))
    return out


def box_colour(grid: Grid) -> np.ndarray:
    """Per cell, the colour of the smallest 8-connected one-colour shape whose bounding box holds it (OUTSIDE
    where none does): the gaps inside shapes' boxes (3aa6fb7a's L-shapes, 60b61512's broken squares)."""
    out = np.full(grid.shape, OUTSIDE, dtype=np.int64)
    smallest = np.full(grid.shape, grid.size + 1, dtype=np.int64)
    for shape in label(grid, background(grid), True, True):
        r0, c0, r1, c1 = shape.box
        smaller = (r1 - r0) * (c1 - c0) < smallest[r0:r1, c0:c1]
        out[r0:r1, c0:c1][smaller] = grid[shape.mask][0]
        smallest[r0:r1, c0:c1][smaller] = (r1 - r0) * (c1 - c0)
    return out


def features(grid: Grid) -> np.ndarray:
    """One row per cell (reading order), one column per FEATURE_NAMES entry."""
    h, w = grid.shape
    far = far_features(grid, "rays")[1:] + far_features(grid, "lines")[1:]
    near = np.stack([grid, *shifted(grid, NEIGHBOURS), *far, interior(grid)], axis=-1).astype(np.int64)
    return np.concatenate(
        [near, size_extreme(grid)[..., None], box_colour(grid)[..., None]], axis=-1
    ).reshape(h * w, -1)


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


def feature_subsets() -> Iterator[tuple[int, ...]]:
    """The column sets tried, fewest first: the cell's colour alone, with one feature, then with two or three
    neighbourhood features. An object feature is read only with the cell's colour: every rule it made on
    ARC-AGI-1 training was such a pair, and paired with more features it fitted wrong rules on the held-out
    sets (1d_recolor_oe_3; docs/experiments/solver.md)."""
    near = range(1, len(FEATURE_NAMES) - OBJECT_FEATURES)
    yield (0,)
    yield from ((0, c) for c in range(1, len(FEATURE_NAMES)))
    for k in range(2, MOST_FEATURES):
        yield from ((0, *more) for more in itertools.combinations(near, k))


def fit_feature_rules(inputs: list[Grid], targets: list[Grid]) -> Iterator[FeatureRule]:
    """Every consistent rule over the column sets of feature_subsets, fewest features first; none when a shape
    differs."""
    if any(g.shape != t.shape for g, t in zip(inputs, targets, strict=True)):
        return
    table = np.concatenate([features(g) for g in inputs])
    want = np.concatenate([t.ravel() for t in targets]).astype(np.int64)
    for columns in feature_subsets():
        keys = codes(table, columns)
        if consistent(keys, want):
            yield FeatureRule(columns, dict(zip(keys.tolist(), want.tolist(), strict=True)))
