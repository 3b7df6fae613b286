"""The catalogue of whole-grid transformations the search composes.

Each is a named function Grid -> Grid, or None where it does not apply (a block that is not uniform, an object
that is absent), so a program that cannot run on some input is simply not kept. The catalogue is ordered
roughly from simple to specific: the search prefers earlier programs when several explain the demonstrations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from arcsub.core.augment import d8_apply
from arcsub.core.data import MAX_SIDE, Grid
from arcsub.solver.objects import Obj, background, bbox, enclosed, label
from arcsub.solver.periodic import CANVASES, continue_pattern
from arcsub.solver.slide import slide_to
from arcsub.solver.symmetry import complete, complete_hidden_part

Fn = Callable[[Grid], "Grid | None"]


@dataclass(frozen=True)
class Transform:
    """A named step; its output counts only as a valid ARC grid (2-D, non-empty, at most 30 a side)."""

    name: str
    fn: Fn

    def __call__(self, grid: Grid) -> Grid | None:
        out = self.fn(grid)
        if out is None or out.ndim != 2 or not out.size or max(out.shape) > MAX_SIDE:
            return None
        return out


D8_NAMES = {
    "rot90": 1,
    "rot180": 2,
    "rot270": 3,
    "flip_rows": 5,
    "flip_cols": 7,
    "transpose": 4,
    "antitranspose": 6,
}
GEOMETRY: dict[str, Fn] = {
    name: partial(d8_apply, k=k) for name, k in D8_NAMES.items()
}  # the augmentations' D8


def crop_content(grid: Grid) -> Grid | None:
    """The box around every non-background cell."""
    box = bbox(grid != background(grid))
    return None if box is None else grid[box[0] : box[2], box[1] : box[3]]


def upscale(k: int) -> Fn:
    return lambda g: np.kron(g, np.ones((k, k), dtype=g.dtype))


def downscale(k: int) -> Fn:
    """Every k x k block to its colour; only where every block is one colour."""

    def fn(g: Grid) -> Grid | None:
        h, w = g.shape
        if h % k or w % k:
            return None
        small = g[::k, ::k]
        return small if (np.kron(small, np.ones((k, k), dtype=g.dtype)) == g).all() else None

    return fn


def dedupe_lines(g: Grid) -> Grid:
    """Runs of equal adjacent rows and columns collapsed to one: a stretched picture to its pattern."""
    rows = [0] + [i for i in range(1, g.shape[0]) if (g[i] != g[i - 1]).any()]
    g = g[rows]
    cols = [0] + [j for j in range(1, g.shape[1]) if (g[:, j] != g[:, j - 1]).any()]
    return g[:, cols]


def self_kron(inverse: bool) -> Fn:
    """The grid placed in every cell where it is not black (or, `inverse`, where it is), black elsewhere: the
    fractal of 007bbfb7. Black, not the commonest colour, as in `overlay`."""

    def fn(g: Grid) -> Grid:
        where = (g == 0) if inverse else (g != 0)
        return np.kron(where.astype(g.dtype), g)

    return fn


def tile(rows: int, cols: int) -> Fn:
    return lambda g: np.tile(g, (rows, cols))


def mirror_tile(layout: str) -> Fn:
    """The grid beside or above its mirror image, or the four-way kaleidoscope, in either order."""

    def fn(g: Grid) -> Grid:
        lr, ud = np.fliplr(g), np.flipud(g)
        if layout == "right":
            return np.hstack([g, lr])
        if layout == "left":
            return np.hstack([lr, g])
        if layout == "down":
            return np.vstack([g, ud])
        if layout == "up":
            return np.vstack([ud, g])
        top = np.hstack([g, lr])
        four = np.vstack([top, np.flipud(top)])
        return four if layout == "four" else np.rot90(four, 2)

    return fn


def halves(g: Grid) -> tuple[Grid, Grid] | None:
    """The two halves of a grid split by a one-colour line through its middle (or, without one, in two equal
    halves), side by side if the grid is wider, else stacked."""
    h, w = g.shape
    if w >= h:
        if w % 2 and len(np.unique(g[:, w // 2])) == 1:
            return g[:, : w // 2], g[:, w // 2 + 1 :]
        return (g[:, : w // 2], g[:, w // 2 :]) if w % 2 == 0 else None
    if h % 2 and len(np.unique(g[h // 2])) == 1:
        return g[: h // 2], g[h // 2 + 1 :]
    return (g[: h // 2], g[h // 2 :]) if h % 2 == 0 else None


def overlay(op: str) -> Fn:
    """A boolean operation on the non-zero cells of the two halves, as a 0/1 grid (the colour map of the
    search paints it). Zero, not the commonest colour: in these tasks "off" is black even where "on" wins."""

    def fn(g: Grid) -> Grid | None:
        parts = halves(g)
        if parts is None:
            return None
        a, b = parts
        if a.shape != b.shape:
            return None
        ma, mb = a != 0, b != 0
        out = {"and": ma & mb, "or": ma | mb, "xor": ma ^ mb, "nor": ~(ma | mb), "left_only": ma & ~mb}[op]
        return out.astype(np.uint8)

    return fn


def half(which: int) -> Fn:
    def fn(g: Grid) -> Grid | None:
        parts = halves(g)
        return None if parts is None else parts[which]

    return fn


OBJECT_KEYS: dict[str, Callable[[Obj, Grid], float]] = {
    "largest": lambda o, g: o.area,
    "smallest": lambda o, g: -o.area,
    "widest_box": lambda o, g: (o.box[2] - o.box[0]) * (o.box[3] - o.box[1]),
    "most_colours": lambda o, g: o.colours(g),
}


def strictly_first(scores: list[float]) -> int | None:
    """The index of the one highest score, or None on a tie: a selector that cannot tell two candidates apart
    gives no answer rather than a guess."""
    best = max(scores)
    return None if scores.count(best) > 1 else scores.index(best)


def crop_object(key: str, diagonal: bool, by_colour: bool) -> Fn:
    """The box of the one object that is strictly first by `key` (no answer on a tie)."""
    score = OBJECT_KEYS[key]

    def fn(g: Grid) -> Grid | None:
        objs = label(g, background(g), diagonal, by_colour)
        if not objs or len(objs) > 40:
            return None
        i = strictly_first([score(o, g) for o in objs])
        return None if i is None else objs[i].crop(g)

    return fn


def keep_colour_mask(g: Grid) -> Grid:
    """Non-background cells as 1, the rest 0: a shape whose colours the colour map chooses."""
    return (g != background(g)).astype(np.uint8)


def fill_enclosed(colour: int) -> Fn:
    """Background cells that cannot reach the border through background painted `colour`: the holes of
    shapes, a frequent ARC rule."""

    def fn(g: Grid) -> Grid | None:
        regions = enclosed(g == background(g))
        if not regions:
            return None
        holes = np.logical_or.reduce([o.mask for o in regions])
        out = g.copy()
        out[holes] = colour
        return out

    return fn


def symmetrize(kind: str) -> Fn:
    """The grid overlaid with its mirror image(s), non-background cells winning: a half-drawn symmetric shape
    made whole. No answer where two different colours meet."""

    def fn(g: Grid) -> Grid | None:
        images = {
            "rows": [np.flipud(g)],
            "cols": [np.fliplr(g)],
            "both": [np.flipud(g), np.fliplr(g), np.rot90(g, 2)],
        }
        out = g.copy()
        bg = background(g)
        for im in images[kind]:
            clash = (out != bg) & (im != bg) & (out != im)
            if clash.any():
                return None
            out = np.where(out == bg, im, out)
        return out

    return fn


def crop_colour(colour: int, inner: bool) -> Fn:
    """The box of every cell of `colour` (inside its one-cell frame when `inner`): a region marked or framed
    by one colour."""

    def fn(g: Grid) -> Grid | None:
        box = bbox(g == colour)
        if box is None:
            return None
        r0, c0, r1, c1 = box
        if inner:
            r0, c0, r1, c1 = r0 + 1, c0 + 1, r1 - 1, c1 - 1
            if r1 <= r0 or c1 <= c0:
                return None
        return g[r0:r1, c0:c1]

    return fn


def cells(g: Grid) -> list[Grid] | None:
    """The sub-grids between full rows and columns of one non-background colour (a grid of panels), in reading
    order; None without such separators."""
    bg = background(g)
    rows = [i for i in range(g.shape[0]) if len(set(g[i])) == 1 and g[i, 0] != bg]
    cols = [j for j in range(g.shape[1]) if len(set(g[:, j])) == 1 and g[0, j] != bg]
    if not rows and not cols:
        return None
    r_cuts = [-1, *rows, g.shape[0]]
    c_cuts = [-1, *cols, g.shape[1]]
    panels = [
        g[a + 1 : b, c + 1 : d]
        for a, b in zip(r_cuts, r_cuts[1:], strict=False)
        for c, d in zip(c_cuts, c_cuts[1:], strict=False)
        if b - a > 1 and d - c > 1
    ]
    return panels if len(panels) > 1 else None


PANEL_KEYS: dict[str, Callable[[Grid, list[Grid]], float]] = {
    "unique": lambda p, all_: -sum(q.shape == p.shape and (q == p).all() for q in all_),
    "most_cells": lambda p, all_: (p != background(p)).sum() if p.size else 0,
    "fewest_cells": lambda p, all_: -(p != background(p)).sum() if p.size else 0,
    "most_colours": lambda p, all_: len(np.unique(p)),
}


def pick_part(split: Callable[[Grid], list[Grid] | None], score: Callable[[Grid, list[Grid]], float]) -> Fn:
    """The one part of the grid (`split` cuts it into parts, or gives None) that is strictly first by `score`
    among its parts (no answer on a tie): panels here, equal squares in `arcsub.solver.select`."""

    def fn(g: Grid) -> Grid | None:
        parts = split(g)
        if parts is None:
            return None
        i = strictly_first([score(p, parts) for p in parts])
        return None if i is None else parts[i]

    return fn


def pick_panel(key: str) -> Fn:
    """The one panel that is strictly first by `key` (no answer on a tie)."""
    return pick_part(cells, PANEL_KEYS[key])


def keep_object(key: str) -> Fn:
    """The grid with only the object strictly first by `key` left (multicolour, 8-connected), the rest
    background: noise removal."""
    score = OBJECT_KEYS[key]

    def fn(g: Grid) -> Grid | None:
        bg = background(g)
        objs = label(g, bg, True, False)
        if len(objs) < 2 or len(objs) > 40:
            return None
        i = strictly_first([score(o, g) for o in objs])
        return None if i is None else np.where(objs[i].mask, g, bg).astype(g.dtype)

    return fn


def gravity(direction: str) -> Fn:
    """Every non-background cell slid as far as it goes towards one side, in its order: loose cells falling."""
    turns = {"down": 0, "right": 1, "up": 2, "left": 3}[direction]

    def fn(g: Grid) -> Grid:
        bg = background(g)
        r = np.rot90(g, turns)  # the side to fall towards becomes the bottom
        out = np.full_like(r, bg)
        for j in range(r.shape[1]):
            col = r[:, j][r[:, j] != bg]
            if len(col):
                out[-len(col) :, j] = col
        return np.rot90(out, -turns)

    return fn


def connect() -> Fn:
    """Background cells between two cells of one colour in a row or a column painted that colour: lines drawn
    between matching marks. Not in other colours: with a colour map after it, that form explained aabf363d's
    demonstrations by chance."""

    def fn(g: Grid) -> Grid | None:
        bg = background(g)
        out = g.copy()
        for grid, view in ((g, out), (g.T, out.T)):
            for i, row in enumerate(grid):
                for c in set(row.tolist()) - {bg}:
                    idx = np.flatnonzero(row == c)
                    for a, b in zip(idx, idx[1:], strict=False):
                        gap = row[a + 1 : b]
                        if len(gap) and (gap == bg).all():
                            view[i, a + 1 : b] = c
        return None if (out == g).all() else out

    return fn


def colour_by_count(most: bool) -> Fn:
    """The 1x1 grid of the commonest (or rarest) non-background colour; no answer on a tie."""

    def fn(g: Grid) -> Grid | None:
        counts = np.bincount(g.ravel(), minlength=10)
        counts[background(g)] = 0
        present = [c for c, n in enumerate(counts.tolist()) if n]
        if not present:
            return None
        i = strictly_first([counts[c] if most else -counts[c] for c in present])
        return None if i is None else np.array([[present[i]]], dtype=g.dtype)

    return fn


def fill_hidden(hidden: int, part: bool) -> Fn:
    return lambda g: (complete_hidden_part if part else complete)(g, hidden)


def catalogue() -> list[Transform]:
    """Every transformation, simple first."""
    items: list[tuple[str, Fn]] = [("identity", lambda g: g), *GEOMETRY.items()]
    items += [("crop_content", crop_content), ("dedupe_lines", dedupe_lines), ("mask", keep_colour_mask)]
    items += [(f"upscale{k}", upscale(k)) for k in (2, 3, 4, 5)]
    items += [(f"downscale{k}", downscale(k)) for k in (2, 3, 4, 5)]
    items += [("self_kron", self_kron(False)), ("self_kron_inverse", self_kron(True))]
    items += [(f"tile{r}x{c}", tile(r, c)) for r, c in ((1, 2), (2, 1), (2, 2), (3, 3), (1, 3), (3, 1))]
    items += [
        (f"mirror_{lay}", mirror_tile(lay)) for lay in ("right", "left", "down", "up", "four", "four_rot")
    ]
    items += [(f"half{i}", half(i)) for i in (0, 1)]
    items += [(f"overlay_{op}", overlay(op)) for op in ("and", "or", "xor", "nor", "left_only")]
    for key in OBJECT_KEYS:
        for diagonal in (False, True):
            for by_colour in (False, True):
                name = f"object_{key}_{'8' if diagonal else '4'}{'_colour' if by_colour else ''}"
                items.append((name, crop_object(key, diagonal, by_colour)))
    items += [(f"symmetrize_{k}", symmetrize(k)) for k in ("rows", "cols", "both")]
    items += [(f"panel_{k}", pick_panel(k)) for k in PANEL_KEYS]
    items += [(f"keep_{k}", keep_object(k)) for k in ("largest", "smallest")]
    items += [(f"gravity_{d}", gravity(d)) for d in ("down", "up", "left", "right")]
    items += [("connect", connect()), ("commonest_colour", colour_by_count(True))]
    items += [("rarest_colour", colour_by_count(False))]
    return [Transform(n, f) for n, f in items]


def colour_steps() -> list[Transform]:
    """Steps with a colour parameter (ten each): tried alone, like the completions, to keep the pairs few."""
    items: list[tuple[str, Fn]] = []
    items += [(f"fill_enclosed_{c}", fill_enclosed(c)) for c in range(10)]
    items += [(f"crop_colour_{c}", crop_colour(c, False)) for c in range(10)]
    items += [(f"crop_inside_{c}", crop_colour(c, True)) for c in range(10)]
    return [Transform(n, f) for n, f in items]


def moves() -> list[Transform]:
    """Patterns continued onto a canvas (`arcsub.solver.periodic`) and objects slid to an anchor colour
    (`arcsub.solver.slide`): tried alone, like the colour steps, since they explained no pair on ARC-AGI-1
    training that a single step did not."""
    items: list[tuple[str, Fn]] = [
        (f"continue_{axis}_{canvas}", continue_pattern(axis, canvas))
        for axis in ("rows", "cols")
        for canvas in CANVASES
    ]
    items += [(f"slide_to_{c}", slide_to(c)) for c in range(10)]
    items += [(f"slide_into_{c}", slide_to(c, join=True)) for c in range(10)]
    return [Transform(n, f) for n, f in items]


def completions() -> list[Transform]:
    """Symmetry completions for each hidden colour: slow enough that the search tries them alone, not in
    compositions."""
    return [
        Transform(f"complete{'_part' if part else ''}_{c}", fill_hidden(c, part))
        for part in (False, True)
        for c in range(10)
    ]
