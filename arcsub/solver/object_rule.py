"""A learned object rule: every object is recoloured by one of its properties (its size, its shape, its size
rank, whether it touches the border, how many holes it encloses), read off the demonstrations as a lookup table.

ARC's "colour each shape by how big it is" tasks. The demonstrations must show each object turned wholly into
one colour, the same colour for the same property everywhere, and the background unchanged; a test object
whose property no demonstration showed gets no answer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from arcsub.core.data import Grid
from arcsub.solver.objects import Obj, background, enclosed, label

Feature = Callable[[Obj, list[Obj], Grid], object]


def _rank(o: Obj, objs: list[Obj], g: Grid) -> int:
    return sorted({p.area for p in objs}, reverse=True).index(o.area)


def _shape(o: Obj, objs: list[Obj], g: Grid) -> bytes:
    return o.shape_key


def _touches_border(o: Obj, objs: list[Obj], g: Grid) -> bool:
    r0, c0, r1, c1 = o.box
    return r0 == 0 or c0 == 0 or r1 == g.shape[0] or c1 == g.shape[1]


def _holes(o: Obj, objs: list[Obj], g: Grid) -> int:
    """How many enclosed regions the object's cells surround (4-connected cells of anything else that do not
    reach the edge of its box)."""
    r0, c0, r1, c1 = o.box
    return len(enclosed(~o.mask[r0:r1, c0:c1]))


FEATURES: dict[str, Feature] = {  # tried in this order
    "area": lambda o, objs, g: o.area,
    "size_rank": _rank,
    "shape": _shape,
    "border": _touches_border,
    "holes": _holes,
}


@dataclass(frozen=True, eq=False)
class ObjectRule:
    """A fitted rule: the objects' connectivity, the property, and the table from property to colour."""

    diagonal: bool
    feature: str
    table: dict[object, int]

    @property
    def name(self) -> str:
        return f"recolour_by_{self.feature}_{'8' if self.diagonal else '4'}"

    def __call__(self, grid: Grid) -> Grid | None:
        objs = objects(grid, self.diagonal)
        if objs is None:
            return None
        out = grid.copy()
        for o in objs:
            key = FEATURES[self.feature](o, objs, grid)
            if key not in self.table:
                return None
            out[o.mask] = self.table[key]
        return out


def objects(grid: Grid, diagonal: bool) -> list[Obj] | None:
    """One-colour objects on the background; None when there are none or too many to be a rule's objects."""
    objs = label(grid, background(grid), diagonal, True)
    return objs if 0 < len(objs) <= 30 else None


def fit_object_rule(
    inputs: list[Grid], targets: list[Grid], diagonal: bool, feature: str
) -> ObjectRule | None:
    """The table from each input object's `feature` to the one colour its cells have in the target, or None
    when a shape differs, a cell outside the objects changes, an object is not one colour in the target, or
    one property needs two colours."""
    table: dict[object, int] = {}
    for grid, target in zip(inputs, targets, strict=True):
        objs = objects(grid, diagonal)
        if objs is None or grid.shape != target.shape:
            return None
        inside = np.zeros(grid.shape, dtype=bool)
        for o in objs:
            inside |= o.mask
            colours = np.unique(target[o.mask])
            key = FEATURES[feature](o, objs, grid)
            if len(colours) != 1 or table.setdefault(key, int(colours[0])) != int(colours[0]):
                return None
        if (grid[~inside] != target[~inside]).any():
            return None
    if len(set(table.values())) < 2:
        return None  # every object the same colour: a colour map's job, not this rule's
    return ObjectRule(diagonal, feature, table)
