"""Crops chosen by how one candidate differs from the others: the "find the odd one out and cut it out" tasks.

The catalogue's object crops (`arcsub.solver.transforms.crop_object`) rank each object by a property of its
own (area, colours). Many crop tasks instead pick the object that is unlike the rest: the one symmetric shape
(72ca375d), the one shape that occurs once (88a62173), the one object whose colours no other has, the block
holding most of the grid's rarest colour (ae4f1146), or the box of the rarest colour's cells (0b148d64,
c909285e, and 1f85a75f's one shape among ~100 noise cells); likewise the odd square of a grid cut into equal
squares (662c240a, a87f7484). These keys need all candidates at once, and noisy grids hold far more objects
than the catalogue's 40, so they live here, tried alone (not composed: the search's pairs grow with the
square of the catalogue). Written and chosen on ARC-AGI-1 training alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np

from arcsub.core.data import Grid
from arcsub.solver.local_rule import shifted
from arcsub.solver.objects import EIGHT, Obj, background, bbox, label, mask_key
from arcsub.solver.transforms import PANEL_KEYS, Fn, Transform, cells, pick_part, strictly_first

MOST_OBJECTS = 200  # noise: a 30x30 grid sprinkled with single cells (1f85a75f) holds ~100 objects

Key = Callable[[list[Obj], Grid], list[float]]


def mirrored(p: Grid) -> bool:
    """It reads the same mirrored left to right or top to bottom."""
    return bool((p == p[:, ::-1]).all() or (p == p[::-1]).all())


def symmetric(obj: Obj, grid: Grid) -> bool:
    """Its box (every colour inside it) is mirrored."""
    return mirrored(obj.crop(grid))


def colour_set(obj: Obj, grid: Grid) -> tuple[int, ...]:
    """The colours the object is drawn in: two objects alike in colour whatever their shapes."""
    return tuple(np.unique(grid[obj.mask]).tolist())


def rarest_colour(grid: Grid) -> int | None:
    """The non-background colour with strictly the fewest cells, or None on a tie or a one-colour grid."""
    counts = np.bincount(grid.ravel(), minlength=10)
    counts[background(grid)] = 0
    present = [c for c in range(10) if counts[c]]
    if not present:
        return None
    i = strictly_first([-int(counts[c]) for c in present])
    return None if i is None else present[i]


def how_many_alike(values: list) -> list[float]:
    """Minus how many candidates share each one's value: the unique one scores highest (-1)."""
    counts = Counter(values)
    return [-float(counts[v]) for v in values]


def beside_rarest(objs: list[Obj], g: Grid) -> list[float]:
    """Each object's cells of the grid's rarest colour that touch it (8 neighbours) from outside: the object a
    lone mark points at (48d8fb45)."""
    colour = rarest_colour(g)
    if colour is None:
        return [0.0] * len(objs)
    marks = g == colour
    scores = []
    for o in objs:
        near = np.logical_or.reduce([n == 1 for n in shifted(o.mask.astype(np.uint8), EIGHT)])
        scores.append(float((near & marks & ~o.mask).sum()))
    return scores


def rarest_cells(objs: list[Obj], g: Grid) -> list[float]:
    """Each object's cells of the grid's rarest colour: the block that holds most of the marks."""
    colour = rarest_colour(g)
    return [0.0 if colour is None else float((g[o.mask] == colour).sum()) for o in objs]


KEYS: dict[str, Key] = {  # every candidate's score at once: the relations compare candidates
    "symmetric": lambda objs, g: [float(symmetric(o, g)) for o in objs],
    "asymmetric": lambda objs, g: [-float(symmetric(o, g)) for o in objs],
    "unique_shape": lambda objs, g: how_many_alike([o.shape_key for o in objs]),
    "unique_colours": lambda objs, g: how_many_alike([colour_set(o, g) for o in objs]),
    "most_rarest_colour": rarest_cells,
    "commonest_shape": lambda objs, g: [-s for s in how_many_alike([o.shape_key for o in objs])],
    "beside_rarest": beside_rarest,
}


def first_alike(scores: list[float], crops: list[Grid]) -> Grid | None:
    """The crop of the highest score; a tie answers only when every tied crop is the same grid (the shape that
    occurs most, drawn alike each time: 39a8645d)."""
    best = max(scores)
    tied = [c for s, c in zip(scores, crops, strict=True) if s == best]
    return tied[0] if all(c.shape == tied[0].shape and (c == tied[0]).all() for c in tied) else None


def crop_selected(key: str, diagonal: bool, by_colour: bool) -> Fn:
    """The box of the object first by `key` among all objects (no answer on a tie between different crops)."""
    scores = KEYS[key]

    def fn(g: Grid) -> Grid | None:
        objs = label(g, background(g), diagonal, by_colour)
        if len(objs) < 2 or len(objs) > MOST_OBJECTS:
            return None
        return first_alike(scores(objs, g), [o.crop(g) for o in objs])

    return fn


def equal_blocks(g: Grid) -> list[Grid] | None:
    """Square blocks side by side with no separator: a grid n times as tall as wide (or as wide as tall) cut
    into its n squares (662c240a, a87f7484)."""
    h, w = g.shape
    if h > w and h % w == 0:
        return [g[i * w : (i + 1) * w] for i in range(h // w)]
    if w > h and w % h == 0:
        return [g[:, i * h : (i + 1) * h] for i in range(w // h)]
    return None


def any_symmetry(p: Grid) -> bool:
    """Mirrored about either axis or, when square, about either diagonal."""
    square = p.shape[0] == p.shape[1]
    return mirrored(p) or bool(square and ((p == p.T).all() or (p == p[::-1, ::-1].T).all()))


def pattern(p: Grid) -> bytes:
    """Where a block is drawn, whatever its colours: blocks alike in shape but each in its own colour."""
    return mask_key(p != background(p))


BLOCK_KEYS: dict[str, Callable[[Grid, list[Grid]], float]] = {
    **PANEL_KEYS,
    "unique_pattern": lambda p, all_: -sum(pattern(q) == pattern(p) for q in all_),
    "asymmetric": lambda p, all_: -float(any_symmetry(p)),
}


def crop_rarest_colour(g: Grid) -> Grid | None:
    """The box of every cell of the rarest colour, whatever lies inside it."""
    colour = rarest_colour(g)
    box = None if colour is None else bbox(g == colour)
    return None if box is None else g[box[0] : box[2], box[1] : box[3]]


def selections() -> list[Transform]:
    """The odd-one-out crops: each object key over 4- and 8-connected, one- and many-coloured objects, then the
    odd block of a grid cut into equal squares, and the odd panel by the keys the catalogue's panels lack."""
    items: list[tuple[str, Fn]] = [("crop_rarest_colour", crop_rarest_colour)]
    for key in KEYS:
        for diagonal in (False, True):
            for by_colour in (False, True):
                name = f"select_{key}_{'8' if diagonal else '4'}{'_colour' if by_colour else ''}"
                items.append((name, crop_selected(key, diagonal, by_colour)))
    items += [(f"block_{key}", pick_part(equal_blocks, score)) for key, score in BLOCK_KEYS.items()]
    extra = {key: score for key, score in BLOCK_KEYS.items() if key not in PANEL_KEYS}
    items += [(f"panel_{key}", pick_part(cells, score)) for key, score in extra.items()]
    return [Transform(n, f) for n, f in items]
