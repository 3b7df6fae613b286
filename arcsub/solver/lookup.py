"""An answer looked up by the whole input: the output is one of the demonstrations' outputs, chosen by the set of
colours the input holds (d4469b4b: the colour names the shape drawn; 6e02f1e3: the colours name a line).

A demonstration's output is read off as the answer for any input with the same key, so the table must be a
function (two demonstrations with one key show one output) that reuses a key (fewer keys than demonstrations:
else nothing shows that the key decides) and shows two outputs at least. An output under FEWEST_CELLS cells
answers only where two demonstrations showed its key: a single cell matches by chance (239be575 was answered
wrongly by the number of objects on ARC-AGI-1 training). The count of coloured cells as a key explained two
ARC-AGI-1 training tasks but answered two of three ARC-AGI-1 evaluation tasks wrongly (8597cfd7, 9110e3c5: counts
repeat by chance among a few demonstrations), so it is out (docs/experiments/solver.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from arcsub.core.data import Grid, grids_equal
from arcsub.solver.objects import background
from arcsub.solver.transforms import Fn, Transform
from arcsub.solver.window import FEWEST_CELLS

Key = Callable[[Grid], object]


def colours(g: Grid) -> tuple[int, ...]:
    """The colours other than the background, in order."""
    bg = background(g)
    return tuple(c for c in np.unique(g).tolist() if c != bg)


KEYS: dict[str, Key] = {"colours": colours}


def look_up_by(key: Key, table: dict[object, Grid]) -> Fn:
    """The table's grid for the input's key, or None for a key it lacks."""
    return lambda g: table.get(key(g))


def fit_table(key: Key, inputs: Sequence[Grid], targets: Sequence[Grid]) -> dict[object, Grid] | None:
    """Key -> output over the demonstrations (tiny outputs only when seen twice), or None when one key shows
    two outputs, no key repeats, or every demonstration shows the same output."""
    keys = [key(g) for g in inputs]
    table: dict[object, Grid] = {}
    for k, target in zip(keys, targets, strict=True):
        if k in table and not grids_equal(table[k], target):
            return None
        table[k] = target
    outputs = list(table.values())
    if len(table) == len(targets) or all(grids_equal(t, outputs[0]) for t in outputs):
        return None
    seen = Counter(keys)
    return {k: t for k, t in table.items() if t.size >= FEWEST_CELLS or seen[k] >= 2}


def fit_lookups(inputs: Sequence[Grid], targets: Sequence[Grid]) -> list[Transform]:
    """A lookup step per key whose table fits the demonstrations (`inputs` may hold the test inputs after them)."""
    found = []
    for name, key in KEYS.items():
        table = fit_table(key, inputs[: len(targets)], targets)
        if table:
            found.append(Transform(f"lookup_{name}", look_up_by(key, table)))
    return found
