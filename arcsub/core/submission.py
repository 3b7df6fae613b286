"""Kaggle submission files: build (with safe fallbacks), write atomically, validate as Kaggle does, load.

A submission maps every task id of the challenges to a list with one entry per test input, in order:
``{task_id: [{"attempt_1": grid, "attempt_2": grid}, ...]}``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from arcsub.core.data import (
    ArcDataError,
    Grid,
    Task,
    grid_or_none,
    grid_to_list,
    read_json,
    to_grid,
    write_json_atomic,
)

log = logging.getLogger(__name__)

ATTEMPT_KEYS = ("attempt_1", "attempt_2")
FALLBACK_GRID: list[list[int]] = [[0]]


def fallback_attempts(test_input: Grid, attempt_1: Grid | None, attempt_2: Grid | None) -> tuple[Grid, Grid]:
    """Fill missing attempts so every test input has two valid grids.

    Why: Kaggle rejects (scores 0 for) the whole submission when any task, test entry, attempt key or grid is
    missing or malformed, so a crashed or unparsable prediction for one task must not sink the other tasks.

    - attempt_1 falls back to a copy of the test input: it is always a valid grid of a plausible size,
      and for the few tasks whose answer is (nearly) the input it is a free guess.
    - attempt_2 falls back to the test input when attempt_1 holds a real prediction (the identity guess
      still gets its chance), else to the 1x1 grid [[0]] (repeating the input twice would be wasted).
    """
    inp = np.array(test_input, dtype=np.uint8, copy=True)
    a1 = attempt_1 if attempt_1 is not None else inp
    if attempt_2 is not None:
        a2 = attempt_2
    elif attempt_1 is not None:
        a2 = inp
    else:
        a2 = np.array(FALLBACK_GRID, dtype=np.uint8)
    return a1, a2


def build_submission(
    tasks: Mapping[str, Task], attempts: Mapping[str, Sequence[Sequence[Any]]] | None = None
) -> dict[str, list[dict[str, list[list[int]]]]]:
    """Kaggle submission for EVERY task of `tasks` (the challenges), in their order.

    `attempts` maps task id -> one ``[attempt_1, attempt_2]`` per test input (grids as arrays or nested
    lists; None, or anything that is not a valid grid, counts as missing). Missing tasks, test entries and
    attempts get the fallbacks of `fallback_attempts`; attempts for task ids not in `tasks` are dropped.
    """
    attempts = attempts or {}
    extra = [tid for tid in attempts if tid not in tasks]
    if extra:
        log.warning(
            "build_submission: %d task id(s) not in the challenges dropped, e.g. %s", len(extra), extra[0]
        )
    missing = 0
    sub: dict[str, list[dict[str, list[list[int]]]]] = {}
    for tid, task in tasks.items():
        per_test = attempts.get(tid)
        if not isinstance(per_test, Sequence) or isinstance(per_test, str):
            per_test = []
        entries = []
        for i, pair in enumerate(task.test):
            pair_attempts = per_test[i] if i < len(per_test) else None
            if not isinstance(pair_attempts, Sequence) or isinstance(pair_attempts, str):
                pair_attempts = []
            a1 = grid_or_none(pair_attempts[0]) if len(pair_attempts) > 0 else None
            a2 = grid_or_none(pair_attempts[1]) if len(pair_attempts) > 1 else None
            missing += (a1 is None) + (a2 is None)
            g1, g2 = fallback_attempts(pair.input, a1, a2)
            entries.append({"attempt_1": grid_to_list(g1), "attempt_2": grid_to_list(g2)})
        sub[tid] = entries
    if missing:
        log.info("build_submission: %d attempt(s) filled with fallbacks", missing)
    return sub


def write_submission(path: str | os.PathLike, submission: Mapping[str, Any]) -> Path:
    """Write a submission atomically (temp file + rename); grids may be arrays or nested lists."""
    plain = {
        tid: [
            {k: (grid_to_list(v) if isinstance(v, np.ndarray) else v) for k, v in e.items()} for e in entries
        ]
        for tid, entries in submission.items()
    }
    return write_json_atomic(path, plain)


def check_entry(entry: Any, where: str) -> Mapping[str, Any]:
    """One test entry as Kaggle takes it: an object with exactly attempt_1 and attempt_2 (the grids are
    checked by the caller); validate and score share this, so they never disagree about a file."""
    if not isinstance(entry, Mapping):
        raise ArcDataError(f"{where} must be an object with attempt_1 and attempt_2")
    for key in ATTEMPT_KEYS:
        if key not in entry:
            raise ArcDataError(f"{where} has no {key}")
    extra = sorted(str(k) for k in entry if k not in ATTEMPT_KEYS)
    if extra:
        raise ArcDataError(f"{where} has an unknown key {extra[0]!r} (only attempt_1 and attempt_2)")
    return entry


def validate_submission(
    obj: Any, tasks: Mapping[str, Task] | None = None, path: str | os.PathLike | None = None
) -> dict[str, list[dict[str, Grid]]]:
    """Check what Kaggle checks and return the submission with grids as arrays.

    Every task of `tasks` present (and no other), a list per task with one entry per test input, each entry
    an object with both ``attempt_1`` and ``attempt_2``, each a valid grid. Without `tasks` only the shape of
    the file is checked. Raises ArcDataError with one line naming the file, the task and the problem.
    """
    where = str(path) if path is not None else "<submission>"
    if not isinstance(obj, dict):
        raise ArcDataError(f"{where}: a submission must map task ids to lists of attempts")
    if not obj:
        raise ArcDataError(f"{where}: no tasks in the submission")
    if tasks is not None:
        missing = [t for t in tasks if t not in obj]
        extra = [t for t in obj if t not in tasks]
        if missing:
            raise ArcDataError(
                f"{where}: task {missing[0]}: missing from the submission ({len(missing)} task(s) missing)"
            )
        if extra:
            raise ArcDataError(
                f"{where}: task {extra[0]}: not in the challenges ({len(extra)} extra task(s))"
            )
    out: dict[str, list[dict[str, Grid]]] = {}
    for tid, entries in obj.items():
        tw = f"{where}: task {tid}"
        if not isinstance(entries, list) or not entries:
            raise ArcDataError(f"{tw}: expected a non-empty list with one entry per test input")
        if tasks is not None and len(entries) != len(tasks[tid].test):
            raise ArcDataError(f"{tw}: {len(entries)} entries for {len(tasks[tid].test)} test input(s)")
        parsed = []
        for i, entry in enumerate(entries):
            check_entry(entry, f"{tw}: entry[{i}]")
            parsed.append({key: to_grid(entry[key], f"{tw}: entry[{i}] {key}") for key in ATTEMPT_KEYS})
        out[tid] = parsed
    return out


def load_submission(
    path: str | os.PathLike, tasks: Mapping[str, Task] | None = None
) -> dict[str, list[dict[str, Grid]]]:
    """Read and validate a submission file (against `tasks` when given); grids come back as arrays."""
    return validate_submission(read_json(path), tasks, path)
