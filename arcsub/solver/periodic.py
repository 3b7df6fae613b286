"""Continuing a periodic pattern past where the input stops: a strip of repeated rows (or columns) extended to
the grid's edge or onto a larger canvas.

ARC draws a few periods of a pattern (a staircase, a frieze, a repeated motif) and asks for it continued
(d8c310e9 to the right edge, 963e52fc onto a grid twice as wide, 53b68214 down to a square, 017c7c7b one and
a half times as tall). The period is the smallest row step, with the smallest column shift (a staircase moves
sideways as it repeats), that the drawn rows follow; it must be seen repeating over at least two rows and half
a period, so that a pattern drawn once is not continued by guess.
"""

from __future__ import annotations

import numpy as np

from arcsub.core.data import Grid
from arcsub.solver.objects import background, bbox

# the canvas's length along the continued axis, from the input's (h along it, w across), or None
CANVASES = {
    "same": lambda h, w: h,
    "double": lambda h, w: 2 * h,
    "half_more": lambda h, w: None if h % 2 else h * 3 // 2,
    "square": lambda h, w: max(h, w),
}


def shift_columns(rows: Grid, shift: int, bg: int) -> Grid:
    """`rows` moved `shift` columns to the right (left when negative), background coming in."""
    out = np.full_like(rows, bg)
    w = rows.shape[1]
    if shift >= 0:
        out[:, shift:] = rows[:, : w - shift]
    else:
        out[:, :shift] = rows[:, -shift:]
    return out


def find_period(g: Grid, bg: int, end: int) -> tuple[int, int] | None:
    """The smallest row step p, with the smallest column shift s, such that every row of g[:end] from p on is
    the row p above it moved s columns; None when no step is seen over at least max(2, p/2) rows."""
    w = g.shape[1]
    shifts = sorted(range(-(w - 1), w), key=abs)
    for p in range(1, end):
        if end - p < max(2, (p + 1) // 2):
            return None
        for s in shifts:
            if (g[p:end] == shift_columns(g[: end - p], s, bg)).all():
                return p, s
    return None


def continue_rows(g: Grid, length: int) -> Grid | None:
    """Rows after the last non-background row, up to `length` rows, continued from the period of the rows above
    it; None when there is no period or nothing changes."""
    bg = background(g)
    box = bbox(g != bg)
    if box is None or length < g.shape[0]:
        return None
    end = box[2]
    found = find_period(g, bg, end)
    if found is None:
        return None
    p, s = found
    out = np.full((length, g.shape[1]), bg, dtype=g.dtype)
    out[:end] = g[:end]
    for r in range(end, length):
        out[r] = shift_columns(out[r - p : r - p + 1], s, bg)[0]
    return None if out.shape == g.shape and (out == g).all() else out


def continue_pattern(axis: str, canvas: str):
    """The step continuing the pattern down (`axis` "rows") or to the right ("cols") onto `canvas`."""

    def fn(g: Grid) -> Grid | None:
        along = g if axis == "rows" else g.T
        length = CANVASES[canvas](*along.shape)
        out = None if length is None else continue_rows(along, length)
        return out if out is None or axis == "rows" else out.T

    return fn
