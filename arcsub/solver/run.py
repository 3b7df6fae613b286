"""Running the solver over a challenge file: its answers file, and the background process the pipelines start.

The pipelines start it beside training (`start_solver`), at low priority on the CPU, so it costs the GPU
nothing; it rewrites `solver_answers.json` atomically each time it explains a task, and every later merge of the
submission (`arcsub.core.runs.merge_attempts`, by `arcsub.core.combine`) puts its answers first. A run whose
deadline stops it keeps the answers found so far; DONE_FILE says it finished, so a resumed run starts it again
only when it had not (and it skips the tasks already answered).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from arcsub.core.combine import SOLVER_FILE
from arcsub.core.data import Task, grid_to_list, load_tasks, read_json, write_json_atomic
from arcsub.core.runs import hide_test_outputs
from arcsub.solver.search import solve

log = logging.getLogger(__name__)

DONE_FILE = "solver_answers.done"  # beside SOLVER_FILE once every task was searched


@dataclass
class SolverSettings:
    """The solver inside a pipeline. `seconds_per_task` caps one task's search (big grids make the symmetry
    completions slow); a task over it keeps what the programs tried so far found."""

    enabled: bool = True
    seconds_per_task: float = 20.0
    depth: int = 2


def programs_path(submission: Path) -> Path:
    """Where `arcsub solve` writes the program found per task: beside its submission, `<name>.programs.json`."""
    return submission.with_name(submission.name.removesuffix(".json") + ".programs.json")


def solve_tasks(
    tasks: Mapping[str, Task],
    settings: SolverSettings,
    clock: Callable[[], float] = time.monotonic,
    found: dict[str, Any] | None = None,
    on_found: Callable[[dict[str, Any]], Any] | None = None,
) -> dict[str, Any]:
    """{task id: {"program": name, "answers": [[grid, ...] per test input]}} for the tasks a program explains,
    added to `found` (answers of an earlier, interrupted pass: those tasks are not searched again); `on_found`
    gets the whole dict after each new task, so a process stopped mid-way loses nothing it found.

    A task whose search fails (a bug on an odd grid) is logged and left out: it must not cost the other tasks
    their answers, since the notebook has only this one pass."""
    found = {} if found is None else found
    for tid, task in tasks.items():
        if tid in found:
            continue
        deadline = clock() + settings.seconds_per_task
        try:
            result = solve(task, depth=settings.depth, deadline=deadline, clock=clock)
        except Exception as e:  # any bug in one task's search
            log.warning("solver: task %s failed (%s: %s), left out", tid, type(e).__name__, e)
            continue
        if result is not None:
            program, answers = result
            found[tid] = {"program": program, "answers": [[grid_to_list(g) for g in a] for a in answers]}
            if on_found is not None:
                on_found(found)
    return found


def write_answers(challenges: str | Path, out: str | Path, settings: SolverSettings) -> Path:
    """Solve every task of `challenges`, rewriting out/SOLVER_FILE atomically after each explained task (and
    continuing from the answers already there), then write DONE_FILE."""
    tasks = load_tasks(challenges)
    path = Path(out) / SOLVER_FILE
    earlier = {t: v for t, v in read_json(path).items() if t in tasks} if path.exists() else {}
    t0 = time.monotonic()
    found = solve_tasks(tasks, settings, found=earlier, on_found=lambda f: write_json_atomic(path, f))
    log.info("solver: %d of %d tasks explained in %.0f s", len(found), len(tasks), time.monotonic() - t0)
    write_json_atomic(path, found)
    write_json_atomic(Path(out) / DONE_FILE, {"tasks": len(tasks), "explained": len(found)})
    return path


def start_solver(tasks: Mapping[str, Task], out: Path, settings: SolverSettings) -> subprocess.Popen | None:
    """The solver on the run's tasks (their test outputs hidden) as a background process at low CPU priority;
    None when disabled or when an earlier run of this folder finished it (DONE_FILE)."""
    if not settings.enabled or (out / DONE_FILE).exists():
        return None
    hidden = {t: hide_test_outputs(x).to_json() for t, x in tasks.items()}
    challenges = write_json_atomic(out / "solver_challenges.json", hidden)
    cmd = [
        sys.executable,
        "-m",
        "arcsub.solver",
        str(challenges),
        str(out),
        f"--seconds-per-task={settings.seconds_per_task}",
        f"--depth={settings.depth}",
    ]
    log.info("solver started in the background on %d tasks", len(tasks))
    return subprocess.Popen(cmd)  # no preexec_fn: the notebook's watcher thread runs; the child lowers itself


def lower_priority() -> None:
    """Training's data workers come first on Kaggle's 4 CPU cores (the background process calls this first)."""
    if hasattr(os, "nice"):
        os.nice(10)


def wait_solver(proc: subprocess.Popen | None, seconds: float) -> None:
    """Wait for the background solver at most `seconds`, then stop it: a run's deadline wins."""
    if proc is None:
        return
    try:
        proc.wait(timeout=max(0.0, seconds))
    except subprocess.TimeoutExpired:
        log.warning("solver still running at the deadline: stopped; the answers it wrote so far are kept")
        proc.kill()
        proc.wait()
