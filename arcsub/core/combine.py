"""Putting the symbolic solver's answers (arcsub.solver, written to SOLVER_FILE in a run's folder) beside a
model's attempts in one submission entry.

A program that reproduces every demonstration is right far more often than a model's guess (measured in
docs/experiments/solver.md), so its first answer takes attempt_1 and the model's best guess that differs from
it keeps attempt_2. The solver's second answer is used only when the model has none: the model's top guess
is worth more than a more complex program's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from arcsub.core.data import Grid, grid_or_none, grids_equal

SOLVER_FILE = "solver_answers.json"  # in a run's folder: {task id: {"program": name, "answers": [...]}}


def answers_of(found: dict[str, Any]) -> dict[str, list[list[Any]]]:
    """The answers alone, in the attempts' form (task id -> per test input a list of grids)."""
    return {tid: item["answers"] for tid, item in found.items()}


def combine_entry(solver: Sequence[Any], model: Sequence[Any]) -> list[Grid | None]:
    """[attempt_1, attempt_2] for one test input from the solver's answers and the model's attempts (either
    may be empty; anything that is not a grid counts as missing)."""
    ours = [g for g in map(grid_or_none, solver) if g is not None]
    theirs = [g for g in map(grid_or_none, model) if g is not None]
    if not ours:
        return [*theirs[:2], *[None] * (2 - len(theirs[:2]))]
    first = ours[0]
    second = next((g for g in [*theirs, *ours[1:]] if not grids_equal(g, first)), None)
    return [first, second]


def combine(solver: dict[str, Any], model: dict[str, Any]) -> dict[str, list[list[Grid | None]]]:
    """Every task of either side: per test input, `combine_entry` of the solver's answers and the model's."""
    merged = {}
    for tid in {**model, **solver}:
        ours, theirs = solver.get(tid) or [], model.get(tid) or []
        n = max(len(ours), len(theirs))
        merged[tid] = [
            combine_entry(ours[i] if i < len(ours) else [], theirs[i] if i < len(theirs) else [])
            for i in range(n)
        ]
    return merged
