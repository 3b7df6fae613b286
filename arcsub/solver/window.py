"""A fixed window cut from every input: the "the answer is always the top-right 3x3" tasks (5bd6f4ac, d10ecb37).

Unlike the catalogue's steps, the window is learned from the demonstrations: its size is the outputs' (the same
in every demonstration), and its place an offset from one corner of the input that matches every output.
Anchoring to a corner lets inputs of different sizes share it. Windows under 4 cells are not tried: a single
cell or a pair at one place matches a few small outputs by chance.
"""

from __future__ import annotations

from collections.abc import Sequence

from arcsub.core.data import Grid
from arcsub.solver.transforms import Fn, Transform

CORNERS = ("top_left", "top_right", "bottom_left", "bottom_right")
FEWEST_CELLS = 4


def window_at(corner: str, dr: int, dc: int, h: int, w: int) -> Fn:
    """The h x w window `dr` rows and `dc` columns in from `corner`, or None where the grid is too small."""

    def fn(g: Grid) -> Grid | None:
        rows, cols = g.shape
        if dr + h > rows or dc + w > cols:
            return None
        r0 = dr if corner.startswith("top") else rows - dr - h
        c0 = dc if corner.endswith("left") else cols - dc - w
        return g[r0 : r0 + h, c0 : c0 + w]

    return fn


def fit_windows(inputs: Sequence[Grid], targets: Sequence[Grid]) -> list[Transform]:
    """Every corner-anchored window that cuts each demonstration's output from its input, corner by corner and
    nearest the corner first; none when the outputs differ in size, are too small, or are the whole input."""
    h, w = targets[0].shape
    if h * w < FEWEST_CELLS or any(t.shape != (h, w) for t in targets):
        return []
    if all(i.shape == (h, w) for i in inputs[: len(targets)]):
        return []
    first = inputs[0]
    found = []
    for corner in CORNERS:
        for dr in range(first.shape[0] - h + 1):
            for dc in range(first.shape[1] - w + 1):
                fn = window_at(corner, dr, dc, h, w)
                pairs = zip(inputs[: len(targets)], targets, strict=True)
                if all((cut := fn(i)) is not None and (cut == t).all() for i, t in pairs):
                    found.append(Transform(f"window_{corner}_{dr}_{dc}", fn))
    return found
