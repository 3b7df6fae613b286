"""Objects slid towards an anchor until they meet it: the "move the shape until it touches the block" tasks.

Every object that is not of the anchor colour moves in a straight line (along a row, a column or a diagonal,
whichever points from its box to the anchor's box) until its next step would cover a non-background cell, the
objects nearest the anchor first so that the others pile up behind them (05f2a901: a shape moved to touch the
8 square; a48eeaf7: grey cells pulled straight or diagonally onto the red square), or painted in the anchor's
colour as they join it (4093f84a: cells stuck to the grey band turn grey; a colour map after the plain slide
fits its demonstrations too, but keeps a new test colour as it is). An object that would leave the grid, or a
grid where nothing moves, gives no answer.
"""

from __future__ import annotations

import numpy as np

from arcsub.core.data import Grid
from arcsub.solver.objects import Obj, background, bbox, label

MOST_OBJECTS = 20


def towards(box: tuple[int, int, int, int], target: tuple[int, int, int, int]) -> tuple[int, int]:
    """The unit step (row, column) from `box` to `target`: 0 along an axis where their spans overlap."""
    r0, c0, r1, c1 = box
    t0, u0, t1, u1 = target
    dr = 0 if r0 < t1 and r1 > t0 else (1 if r1 <= t0 else -1)
    dc = 0 if c0 < u1 and c1 > u0 else (1 if c1 <= u0 else -1)
    return dr, dc


def gap(box: tuple[int, int, int, int], target: tuple[int, int, int, int]) -> int:
    """How far apart two boxes are (the larger of the row and column gaps): the order objects move in."""
    return max(box[0] - target[2], target[0] - box[2], box[1] - target[3], target[1] - box[3], 0)


def slide_object(o: Obj, values: Grid, out: Grid, step: tuple[int, int], bg: int) -> int | None:
    """Paint object `o` (its colours from `values`) into `out` moved by `step` as often as it can go without
    covering a non-background cell of `out`; how many steps it moved, or None when it would leave the grid
    first."""
    rows, cols = np.nonzero(o.mask)
    painted = values[rows, cols]
    h, w = out.shape
    k = 0
    while step != (0, 0):
        nr, nc = rows + (k + 1) * step[0], cols + (k + 1) * step[1]
        if nr.min() < 0 or nc.min() < 0 or nr.max() >= h or nc.max() >= w:
            return None
        if (out[nr, nc] != bg).any():
            break
        k += 1
    out[rows + k * step[0], cols + k * step[1]] = painted
    return k


def slide_to(anchor: int, join: bool = False):
    """The step sliding every other object (8-connected, any colours) to the cells of colour `anchor`; `join`:
    the objects take the anchor's colour."""

    def fn(g: Grid) -> Grid | None:
        bg = background(g)
        fixed = g == anchor
        target = bbox(fixed)
        if anchor == bg or target is None:
            return None
        objs = label(np.where(fixed, bg, g).astype(g.dtype), bg, True, False)
        if not objs or len(objs) > MOST_OBJECTS:
            return None
        out = np.where(fixed, g, bg).astype(g.dtype)
        values = np.full_like(g, anchor) if join else g
        moved = 0
        for o in sorted(objs, key=lambda o: gap(o.box, target)):
            k = slide_object(o, values, out, towards(o.box, target), bg)
            if k is None:
                return None
            moved += k
        return out if moved else None

    return fn
