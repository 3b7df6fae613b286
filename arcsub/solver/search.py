"""Search for short programs that reproduce every demonstration of a task, and their answers on the tests.

A program is one or two transformations of `arcsub.solver.transforms` (or one odd-one-out crop of
`arcsub.solver.select`, or a fixed window learned by `arcsub.solver.window`), then optionally a colour map
learned from the demonstrations (each colour of the program's output goes to one colour of the expected output,
the same in every demonstration), or one size-keeping step and a learned local rule
(`arcsub.solver.local_rule`) or object rule (`arcsub.solver.object_rule`), or stamps around cells
(`arcsub.solver.stamp`), or a rule over the fewest cell features (`arcsub.solver.feature_rule`).
Programs are tried simple first: one step before two, without a colour map before with one, learned rules last;
the first programs' distinct test answers are the solver's attempts.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from arcsub.core.data import Grid, Task, grids_equal
from arcsub.solver.feature_rule import FeatureRule, fit_feature_rules
from arcsub.solver.local_rule import SHAPES, LocalRule, fit_local_rule
from arcsub.solver.lookup import fit_lookups
from arcsub.solver.object_rule import FEATURES, ObjectRule, fit_object_rule
from arcsub.solver.select import selections
from arcsub.solver.stamp import StampRule, fit_stamp_rule
from arcsub.solver.transforms import Transform, catalogue, colour_steps, completions, moves
from arcsub.solver.window import fit_windows

Outputs = tuple["Grid | None", ...]


@dataclass(frozen=True)
class Program:
    """Steps applied in order, then `colours` (a 10-entry lookup table, -1 for colours the demonstrations never
    showed) when not None, or a learned local or object rule when not None."""

    steps: tuple[Transform, ...]
    colours: tuple[int, ...] | None = None
    rule: LocalRule | ObjectRule | StampRule | FeatureRule | None = None

    @property
    def name(self) -> str:
        text = " | ".join(s.name for s in (*self.steps, *([self.rule] if self.rule else [])))
        if self.colours is not None:
            moved = {i: c for i, c in enumerate(self.colours) if c >= 0 and i != c}
            text += f" | colours {moved}"
        return text

    def run(self, grid: Grid) -> Grid | None:
        """The program's output, or None where a step does not apply or the output holds a colour the
        demonstrations never showed the colour map (its image would be a guess)."""
        for step in self.steps:
            grid = step(grid)
            if grid is None:
                return None
        if self.colours is not None:
            mapped = np.asarray(self.colours)[grid]
            if (mapped < 0).any():
                return None
            grid = mapped.astype(np.uint8)
        return grid if self.rule is None else self.rule(grid)


def fit_colours(outs: Sequence[Grid | None], targets: Sequence[Grid]) -> tuple[int, ...] | None:
    """The one colour map sending every `outs` grid onto its target cell by cell, or None when shapes differ or
    a colour would need two images.

    Colours never seen keep themselves when the map keeps some seen colour other than black (a rule that
    recolours only some colours: 7b6016b9), and map to -1 otherwise (a rule that recolours every colour cannot
    say what a new one becomes: aabf363d), which `Program.run` refuses."""
    table = [-1] * 10
    for out, target in zip(outs, targets, strict=True):
        if out is None or out.shape != target.shape:
            return None
        for src in np.unique(out):
            dst = np.unique(target[out == src])
            if len(dst) != 1 or table[src] not in (-1, int(dst[0])):
                return None
            table[src] = int(dst[0])
    keeps = any(table[c] == c for c in range(1, 10))
    return tuple(c if t < 0 and keeps else t for c, t in enumerate(table))


def explains(outs: Outputs, targets: Sequence[Grid]) -> tuple[bool, tuple[int, ...] | None]:
    """(True, None) when `outs` equal the targets exactly, (True, map) when a colour map makes them equal."""
    if all(
        o is not None and o.shape == t.shape and (o == t).all() for o, t in zip(outs, targets, strict=True)
    ):
        return True, None
    colours = fit_colours(outs, targets)
    return colours is not None, colours


def _key(outs: Outputs) -> tuple:
    return tuple(None if o is None else (o.shape, o.tobytes()) for o in outs)


def _apply(step: Transform, grids: Outputs) -> Outputs:
    return tuple(None if g is None else step(g) for g in grids)


def _fresh(outs: Outputs, seen: set[tuple]) -> bool:
    """True (and `outs` remembered) when the step ran on every grid and no earlier program gave these grids:
    a program whose outputs repeat an earlier one's can only explain what that one did."""
    if any(o is None for o in outs):
        return False
    key = _key(outs)
    if key in seen:
        return False
    seen.add(key)
    return True


def programs(
    task: Task, depth: int = 2, deadline: float = math.inf, clock: Callable[[], float] = time.monotonic
) -> Iterator[Program]:
    """Every program of at most `depth` steps that explains all demonstrations, simplest first; past
    `deadline` (by `clock`) no further step is tried."""
    inputs = tuple(p.input for p in task.train) + tuple(p.input for p in task.test)
    targets = [p.output for p in task.train]
    n = len(targets)
    steps = catalogue()
    first: list[tuple[tuple[Transform, ...], Outputs]] = []
    seen: set[tuple] = set()
    for step in [
        *steps,
        *colour_steps(),
        *moves(),
        *selections(),
        *fit_windows(inputs, targets),
        *fit_lookups(inputs, targets),
        *completions(),
    ]:
        if clock() > deadline:
            break
        outs = _apply(step, inputs)
        if _fresh(outs, seen):
            first.append(((step,), outs))
    yield from _explaining(first, targets, n)
    if depth < 2:
        return
    second = []
    for chain, outs in first:
        if chain[0] not in steps or clock() > deadline:  # completions are not composed: slow, rarely chained
            continue
        for step in steps[1:]:
            # the first demonstration decides most pairs: the rest only if its shape fits
            head = step(outs[0])
            if head is None or head.shape != targets[0].shape:
                continue
            more = (head, *_apply(step, outs[1:]))
            if _fresh(more, seen):
                second.append(((*chain, step), more))
    yield from _explaining(second, targets, n)
    yield from _learned_rules(first, inputs, targets, n)


def _learned_rules(
    found: list[tuple[tuple[Transform, ...], Outputs]], inputs: Outputs, targets: list[Grid], n: int
) -> Iterator[Program]:
    """One step that keeps every grid's size (identity, a mirror, a completion), then a learned local rule, then
    a learned object rule, then stamps around cells (`arcsub.solver.stamp`, on the input only), then a rule over
    the fewest cell features (last, so that it only adds answers): after
    every fixed program, since a lookup table fits more than a rule does. Not
    after a crop: a table over a few cropped cells fits by chance (5614dbcf answered wrongly so on the training
    sets)."""
    same_size = [
        (chain, outs)
        for chain, outs in found
        if all(o.shape == i.shape for o, i in zip(outs, inputs, strict=True))
        and all(o.shape == t.shape for o, t in zip(outs[:n], targets, strict=True))
    ]
    for shape in SHAPES:
        for chain, outs in same_size:
            rule = fit_local_rule(list(outs[:n]), targets, shape)
            if rule is not None:
                yield Program(chain, rule=rule)
    for feature in FEATURES:  # then objects recoloured by a property
        for diagonal in (False, True):
            for chain, outs in same_size:
                rule = fit_object_rule(list(outs[:n]), targets, diagonal, feature)
                if rule is not None:
                    yield Program(chain, rule=rule)
    for chain, outs in same_size[:1]:  # stamps around cells, read off the input itself
        stamp = fit_stamp_rule(list(outs[:n]), targets)
        if stamp is not None:
            yield Program(chain, rule=stamp)
    for chain, outs in same_size[:1]:  # the input itself: after other steps it doubled the search's time and
        for rule in fit_feature_rules(list(outs[:n]), targets):  # explained no more on ARC-AGI-1 training
            yield Program(chain, rule=rule)


def _explaining(
    found: list[tuple[tuple[Transform, ...], Outputs]], targets: list[Grid], n: int
) -> Iterator[Program]:
    """Exact programs first, then those that need a colour map."""
    mapped = []
    for chain, outs in found:
        ok, colours = explains(outs[:n], targets)
        if ok and colours is None:
            yield Program(chain)
        elif ok:
            mapped.append(Program(chain, colours))
    yield from mapped


def solve(
    task: Task,
    attempts: int = 2,
    depth: int = 2,
    deadline: float = math.inf,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[str, list[list[Grid]]] | None:
    """The first answering program's name and up to `attempts` distinct answers per test input from the
    simplest explaining programs that answer every test input, or None when there is none."""
    answers: list[list[Grid]] = [[] for _ in task.test]
    first = None
    for program in programs(task, depth, deadline, clock):
        outs = [program.run(pair.input) for pair in task.test]
        if any(o is None for o in outs):  # it cannot answer every test input: the next program may
            continue
        first = first or program.name
        for ours, out in zip(answers, outs, strict=True):
            if len(ours) < attempts and not any(grids_equal(a, out) for a in ours):
                ours.append(out)
        if all(len(a) >= attempts for a in answers):
            break
    return None if first is None else (first, answers)
