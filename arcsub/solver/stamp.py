"""A learned stamp: around every cell of some colours a fixed pattern is painted on the background next to it.

ARC's "decorate each marked cell" tasks: a red cell gets yellow corners and a blue one orange sides (0ca9ddb6),
a ring around each cell (dc1df850, 913fb3ed), a small cross of four colours (d364b489). The stencil is read off
the demonstrations: an offset of the 3x3 square belongs to a colour's stencil when every background cell there,
around every cell of that colour, turned one and the same colour, seen at least twice. Painting stops at the
grid's edge, leaves non-background cells alone, and refuses where two stamps paint one cell differently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from arcsub.core.data import Grid
from arcsub.solver.local_rule import NEIGHBOURS
from arcsub.solver.objects import background

MIN_SEEN = 2  # an offset seen once could be another stamp's cell or a coincidence


def around(g: Grid, bg: int) -> list[tuple[int, int, int, int, int]]:
    """(colour, row offset, column offset, row, column) for every background cell next to a non-background one,
    once per such neighbour."""
    h, w = g.shape
    out = []
    for r, c in zip(*np.nonzero(g != bg), strict=True):
        for dr, dc in NEIGHBOURS:
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w and g[rr, cc] == bg:
                out.append((int(g[r, c]), dr, dc, int(rr), int(cc)))
    return out


@dataclass(frozen=True, eq=False)
class StampRule:
    """A fitted rule: for each colour, the (row offset, column offset, colour) painted around its cells."""

    stencils: dict[int, tuple[tuple[int, int, int], ...]]

    @property
    def name(self) -> str:
        return "stamp_" + "_".join(str(c) for c in sorted(self.stencils))

    def __call__(self, grid: Grid) -> Grid | None:
        """The grid with every stamp painted, or None where two stamps clash or nothing is painted."""
        bg = background(grid)
        out = grid.copy()
        painted = np.zeros(grid.shape, dtype=bool)
        paint = {colour: {(dr, dc): x for dr, dc, x in s} for colour, s in self.stencils.items()}
        for colour, dr, dc, r, c in around(grid, bg):
            x = paint.get(colour, {}).get((dr, dc))
            if x is None:
                continue
            if painted[r, c] and out[r, c] != x:
                return None
            out[r, c] = x
            painted[r, c] = True
        return out if painted.any() else None


def fit_stamp_rule(inputs: list[Grid], targets: list[Grid]) -> StampRule | None:
    """The stencils the demonstrations agree on, or None when a shape differs or none is found (the search
    keeps the rule only if it then reproduces every demonstration)."""
    seen: dict[tuple[int, int, int], set[int]] = {}
    count: dict[tuple[int, int, int], int] = {}
    for grid, target in zip(inputs, targets, strict=True):
        if grid.shape != target.shape:
            return None
        bg = background(grid)
        for colour, dr, dc, r, c in around(grid, bg):
            key = (colour, dr, dc)
            seen.setdefault(key, set()).add(-1 if target[r, c] == bg else int(target[r, c]))
            count[key] = count.get(key, 0) + 1
    stencils: dict[int, list[tuple[int, int, int]]] = {}
    for (colour, dr, dc), outs in sorted(seen.items()):
        if len(outs) == 1 and -1 not in outs and count[(colour, dr, dc)] >= MIN_SEEN:
            stencils.setdefault(colour, []).append((dr, dc, next(iter(outs))))
    if not stencils:
        return None
    rule = StampRule({c: tuple(s) for c, s in stencils.items()})
    done = [rule(g) for g in inputs]
    if any(o is None or (o != t).any() for o, t in zip(done, targets, strict=True)):
        return None
    return rule
