"""Connected objects of a grid and the background colour: what the object transforms select and crop.

Pure numpy and a flood fill over at most 900 cells, so no SciPy is needed on Kaggle's offline image.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from arcsub.core.data import Grid

FOUR = ((1, 0), (-1, 0), (0, 1), (0, -1))
EIGHT = (*FOUR, (1, 1), (1, -1), (-1, 1), (-1, -1))


def background(grid: Grid) -> int:
    """The most common colour (ties to the lowest): ARC's background is 0 in most tasks but not all."""
    return int(np.bincount(grid.ravel(), minlength=10).argmax())


@dataclass(frozen=True)
class Obj:
    """One connected object: its cells' mask over the whole grid and its bounding box (r0, c0, r1, c1)."""

    mask: np.ndarray
    box: tuple[int, int, int, int]

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def crop(self, grid: Grid) -> Grid:
        """The grid inside the box, every colour kept (holes and neighbours included)."""
        r0, c0, r1, c1 = self.box
        return grid[r0:r1, c0:c1]

    def colours(self, grid: Grid) -> int:
        return len(np.unique(grid[self.mask]))

    @property
    def shape_key(self) -> bytes:
        """Its cells within its box, wherever it lies: two objects alike in shape share it."""
        r0, c0, r1, c1 = self.box
        return mask_key(self.mask[r0:r1, c0:c1])


def mask_key(mask: np.ndarray) -> bytes:
    """A boolean picture as hashable bytes, its size included (two masks of one packing but other sizes differ)."""
    return bytes(mask.shape) + np.packbits(mask).tobytes()


def label(grid: Grid, bg: int, diagonal: bool, by_colour: bool) -> list[Obj]:
    """Connected non-background components, in reading order of their first cell.

    `by_colour`: a component holds one colour; otherwise any non-background cells touching form one object.
    One search labels the same grid many times over (each object key, selection and rule asks again: on ARC-AGI-1
    training 5 calls in 6 repeat an earlier one), so recent grids' objects are kept; their masks are read-only.
    """
    g = np.ascontiguousarray(grid)
    return list(labelled(g.shape, g.tobytes(), g.dtype.str, int(bg), diagonal, by_colour))


@functools.lru_cache(maxsize=1024)  # +14 MB peak on ARC-AGI-1 training; a noise grid of 200 cells ~180 KB
def labelled(
    shape: tuple[int, ...], data: bytes, dtype: str, bg: int, diagonal: bool, by_colour: bool
) -> tuple[Obj, ...]:
    """label's result for a grid given as its bytes (hashable), computed once per distinct grid."""
    objs = flood_fill(np.frombuffer(data, dtype=dtype).reshape(shape), bg, diagonal, by_colour)
    for o in objs:
        o.mask.flags.writeable = False
    return tuple(objs)


def flood_fill(grid: Grid, bg: int, diagonal: bool, by_colour: bool) -> list[Obj]:
    """The components themselves (label's uncached work)."""
    h, w = grid.shape
    seen = grid == bg
    steps = EIGHT if diagonal else FOUR
    objs = []
    for r0 in range(h):
        for c0 in range(w):
            if seen[r0, c0]:
                continue
            colour = grid[r0, c0]
            mask = np.zeros_like(seen)
            stack = [(r0, c0)]
            seen[r0, c0] = True
            while stack:
                r, c = stack.pop()
                mask[r, c] = True
                for dr, dc in steps:
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < h and 0 <= cc < w and not seen[rr, cc]:
                        if by_colour and grid[rr, cc] != colour:
                            continue
                        seen[rr, cc] = True
                        stack.append((rr, cc))
            rows, cols = np.nonzero(mask)
            objs.append(
                Obj(mask, (int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1))
            )
    return objs


def enclosed(mask: np.ndarray) -> list[Obj]:
    """The 4-connected regions of `mask`'s True cells that touch no edge: the holes of shapes, when `mask` is
    the background (or what lies outside one shape, within its box)."""
    h, w = mask.shape
    regions = label(mask.astype(np.uint8), 0, False, True)
    return [o for o in regions if o.box[0] > 0 and o.box[1] > 0 and o.box[2] < h and o.box[3] < w]


def bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """The bounding box of the True cells, or None when there are none."""
    rows, cols = np.nonzero(mask)
    if not len(rows):
        return None
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1
