"""Completing a symmetric or periodic picture whose cells of one colour are hidden.

Many ARC tasks paint a rectangle (or scattered cells) of one colour over a pattern that is mirror-, rotation-
or translation-symmetric and ask for the hidden part, as the whole grid or as the hidden rectangle alone.
Here every symmetry of the visible cells is found (mirrors and rotations about any centre, translations), the
hidden cells are filled from their images until none is left, and the answer is refused when a cell stays
hidden: a guess is worse than no answer, because the model's answer then keeps the first attempt.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import numpy as np

from arcsub.core.data import Grid
from arcsub.solver.objects import bbox

MIN_OVERLAP = 0.25  # a symmetry must be checked on at least this share of the grid's cells


def _need(h: int, w: int) -> int:
    """The fewest cells a symmetry of an h x w grid must keep inside, and be checked on."""
    return max(4, int(MIN_OVERLAP * h * w))


def _maps(h: int, w: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Candidate symmetries as (row, column) images of every cell, each possibly outside the grid.

    Mirrors about every horizontal, vertical and diagonal axis, half and quarter turns about every centre, and
    translations (periodicity)."""
    r, c = np.indices((h, w))
    for a in range(2 * h - 1):  # mirror rows about the axis a / 2
        yield a - r, c
    for a in range(2 * w - 1):
        yield r, a - c
    for d in range(-(w - 1), h):  # mirrors about r - c = d and r + c = s
        yield c + d, r - d
    for s in range(h + w - 1):
        yield s - c, s - r
    for p in range(2 * h - 1):  # half turns about (p/2, q/2); quarter turns where p - q is even
        for q in range(2 * w - 1):
            yield p - r, q - c
            if (p - q) % 2 == 0:  # both directions: a quarter turn is not its own inverse
                yield (p - q) // 2 + c, (p + q) // 2 - r
                yield (p + q) // 2 - c, (q - p) // 2 + r
    for dr in range(-(h - 1), h):  # both directions, so a cell fills from either side
        for dc in range(-(w - 1), w):
            if dr or dc:
                yield r + dr, c + dc


@functools.lru_cache(maxsize=64)
def _overlapping_maps(h: int, w: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The candidate symmetries of an h x w grid that keep at least MIN_OVERLAP of its cells inside, as flat
    (source, image) cell indices. Cached by shape: demonstrations and test inputs of a task often share one."""
    need = _need(h, w)
    kept = []
    for rr, cc in _maps(h, w):
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        if inside.sum() >= need:
            kept.append((np.flatnonzero(inside), (rr * w + cc)[inside]))
    return tuple(kept)


def symmetries(grid: Grid, known: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The symmetries that hold on every known cell whose image is known, checked on enough cells, as flat
    (source, image) cell indices."""
    h, w = grid.shape
    need = _need(h, w)
    flat, seen = grid.ravel(), known.ravel()
    found = []
    for src, dst in _overlapping_maps(h, w):
        both = seen[src] & seen[dst]
        if both.sum() >= need and (flat[src[both]] == flat[dst[both]]).all():
            found.append((src, dst))
    return found


def complete(grid: Grid, hidden: int) -> Grid | None:
    """The grid with every cell of colour `hidden` filled from its symmetric images, or None when the colour
    is absent, nothing symmetric covers it, or a cell stays unfilled."""
    unknown = grid == hidden
    if not unknown.any() or unknown.all():
        return None
    out = grid.copy()
    known = ~unknown
    maps = symmetries(grid, known)
    if not maps:
        return None
    flat, hole, seen = out.ravel(), unknown.ravel(), known.ravel()
    while hole.any():
        changed = False
        for src, dst in maps:
            fill = hole[src] & seen[dst]
            if fill.any():
                cells = src[fill]
                flat[cells] = flat[dst[fill]]
                hole[cells] = False
                seen[cells] = True
                changed = True
        if not changed:
            return None
    return out


def complete_hidden_part(grid: Grid, hidden: int) -> Grid | None:
    """Only the filled box that colour `hidden` covered: the tasks that ask for the hidden rectangle."""
    box = bbox(grid == hidden)
    full = complete(grid, hidden)
    if full is None or box is None:
        return None
    r0, c0, r1, c1 = box
    return full[r0:r1, c0:c1]
