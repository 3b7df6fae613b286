"""The notebook submission lifecycle: a valid baseline at once, then whatever the pipeline finished merged with
the fallbacks, written and validated again at the end (a crash, an OOM or the clock leaves the best so far).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from arcsub.core.data import ArcDataError, Task, read_json
from arcsub.core.submission import ATTEMPT_KEYS, build_submission, validate_submission, write_submission

log = logging.getLogger("arcsub.kaggle")


def write_baseline(tasks: Mapping[str, Task], path: Path) -> Path:
    """A valid submission with fallback attempts for every task, written atomically."""
    return write_submission(path, build_submission(tasks))


def quiet_baseline(tasks: Mapping[str, Task]) -> dict[str, Any]:
    """The fallback-only submission, without build_submission's log line (used for comparisons)."""
    sub_log = logging.getLogger("arcsub.core.submission")
    level = sub_log.level
    sub_log.setLevel(logging.WARNING)
    try:
        return build_submission(tasks)
    finally:
        sub_log.setLevel(level)


def read_attempts(path: Path, tasks: Mapping[str, Task]) -> dict[str, list[list[Any]]]:
    """Per task, the [attempt_1, attempt_2] pairs of a submission on disk that are well formed (never raises)."""
    try:
        obj = read_json(path)
    except ArcDataError:
        return {}
    if not isinstance(obj, dict):
        return {}
    out: dict[str, list[list[Any]]] = {}
    for tid, task in tasks.items():
        entries = obj.get(tid)
        if isinstance(entries, list) and len(entries) == len(task.test):
            out[tid] = [[e.get(k) for k in ATTEMPT_KEYS] if isinstance(e, dict) else [] for e in entries]
    return out


def finalize_submission(
    tasks: Mapping[str, Task], path: Path, extra: Mapping[str, list[list[Any]]] | None = None
) -> dict[str, Any]:
    """Merge what is on disk (and `extra`, which wins) with fallbacks, write atomically and validate."""
    attempts = read_attempts(path, tasks)
    attempts.update({k: v for k, v in (extra or {}).items() if k in tasks})
    sub = build_submission(tasks, attempts)
    write_submission(path, sub)
    validate_submission(read_json(path), tasks, path)
    baseline = quiet_baseline(tasks)
    changed = sum(sub[t] != baseline[t] for t in tasks)
    return {"path": str(path), "tasks": len(tasks), "predicted": changed}
