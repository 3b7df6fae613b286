"""Metrics of sampled predictions (ironbar arc24's definitions) and the Kaggle score of a submission.

A predictions file maps task id -> one list of candidates per test input, in order. A candidate is a grid
(nested list), null (the model's answer could not be parsed), or the richer object
``{"grid": grid|null, "logprob": float, "tokens": int, "view": str}``. A test entry may also be a Kaggle-style
object ``{"attempt_1": grid, "attempt_2": grid, ...}`` (its values are the candidates, in order), so a
submission file can be read as predictions too.

Per test output, over its N candidates (invalid ones count in N and score 0):

- accuracy: fraction of candidates exactly right
- correct_size: fraction with the right shape
- correct_pixels: mean over candidates of the fraction of pixels right (0 for a wrong shape)
- unanswered: fraction of invalid candidates
- pass_n: 1 if any candidate is right
- vote_1 / vote_2: 1 if one of the 1 / 2 most frequent valid candidates is right (identical grids grouped,
  ties broken by first appearance)

Each metric is averaged over a task's test outputs, then over tasks (each task weighs the same).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from arcsub.core.data import ArcDataError, Grid, Task, grid_or_none, read_json, to_grid
from arcsub.core.submission import check_entry

METRIC_KEYS = ("accuracy", "correct_pixels", "correct_size", "pass_n", "vote_1", "vote_2", "unanswered")
TABLE_COLUMNS = ("accuracy", "correct_pixels", "correct_size", "pass_n", "vote_2", "unanswered")
ATTEMPT_KEYS = ("attempt_1", "attempt_2")
_MAX_NAMED = 10

Candidates = list[Grid | None]
Predictions = dict[str, list[Candidates]]


# ---------------------------------------------------------------- reading predictions


def normalize_candidate(obj: Any) -> Grid | None:
    """A candidate as a uint8 grid, or None when it is null or not a valid grid (never raises)."""
    return grid_or_none(obj.get("grid") if isinstance(obj, Mapping) else obj)


RICH_FIELDS = {
    "logprob": (int, float),
    "tokens": (int,),
    "view": (str,),
}  # a rich candidate's optional fields


def check_rich_candidate(obj: Any, where: str) -> None:
    """A rich candidate's logprob / tokens / view, when present and not null, must have their types: they
    rank candidates, so "high" for a logprob is a broken file (one line), not a silent 0."""
    if not isinstance(obj, Mapping) or "grid" not in obj:
        return
    for key, types_ in RICH_FIELDS.items():
        v = obj.get(key)
        if v is not None and (isinstance(v, bool) or not isinstance(v, types_)):
            raise ArcDataError(f"{where}: {key}={v!r} must be a {types_[0].__name__}")


def _candidate_list(obj: Any, where: str) -> Candidates:
    if isinstance(obj, Mapping):  # {"attempt_1": grid, ...}
        return [normalize_candidate(v) for v in obj.values()]
    if isinstance(obj, list):
        for j, c in enumerate(obj):
            check_rich_candidate(c, f"{where}: candidate[{j}]")
        return [normalize_candidate(c) for c in obj]
    raise ArcDataError(f"{where}: expected a list of candidate grids")


def normalize_predictions(obj: Any, path: str | os.PathLike | None = None) -> Predictions:
    """Validate the structure of a predictions mapping and normalize every candidate to a grid or None.

    The structure (a mapping of task ids to lists of candidate lists) must be right, else ArcDataError;
    a candidate that is not a valid grid becomes None and counts as unanswered.
    """
    where = str(path) if path is not None else "<predictions>"
    if not isinstance(obj, Mapping):
        raise ArcDataError(f"{where}: predictions must map task ids to lists of candidates per test input")
    if not obj:
        raise ArcDataError(f"{where}: no tasks in the predictions")
    out: Predictions = {}
    for tid, per_test in obj.items():
        tw = f"{where}: task {tid}"
        if not isinstance(per_test, list):
            raise ArcDataError(f"{tw}: expected a list with one list of candidates per test input")
        out[str(tid)] = [_candidate_list(c, f"{tw}: test[{i}]") for i, c in enumerate(per_test)]
    return out


def load_predictions(path: str | os.PathLike) -> Predictions:
    """Read a predictions file (plain or rich candidates, or a submission) as {task_id: [[grid|None]]}."""
    return normalize_predictions(read_json(path), path)


def _truths(solutions: Mapping[str, Any], path: str | os.PathLike | None = None) -> dict[str, list[Grid]]:
    """Solutions as {task_id: [grid]}, from a solutions mapping or a mapping of Tasks with known outputs."""
    out = {}
    for tid, v in solutions.items():
        if isinstance(v, Task):
            if not v.has_solutions:
                raise ArcDataError(f"{path or '<tasks>'}: task {tid}: test outputs unknown (no solutions)")
            out[tid] = [p.output for p in v.test]
        else:
            out[tid] = [
                to_grid(g, f"{path or '<solutions>'}: task {tid}: solution[{i}]") for i, g in enumerate(v)
            ]
    return out


def _name_some(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_MAX_NAMED])
    return shown + (f", ... ({len(ids) - _MAX_NAMED} more)" if len(ids) > _MAX_NAMED else "")


# ---------------------------------------------------------------- candidate metrics


def _key(g: Grid) -> tuple[tuple[int, ...], bytes]:
    g = np.ascontiguousarray(g, dtype=np.uint8)
    return g.shape, g.tobytes()


def group_candidates(candidates: Sequence[Grid | None]) -> list[tuple[Grid, int]]:
    """Distinct valid candidates with their counts, most frequent first; ties keep first appearance."""
    groups: dict[tuple, list] = {}
    for c in candidates:
        if c is None:
            continue
        k = _key(c)
        if k in groups:
            groups[k][1] += 1
        else:
            groups[k] = [np.asarray(c, dtype=np.uint8), 1]
    ordered = sorted(groups.values(), key=lambda gc: -gc[1])  # stable: first appearance wins ties
    return [(g, n) for g, n in ordered]


def vote(candidates: Sequence[Grid | None], k: int = 2) -> list[Grid]:
    """The `k` most frequent valid candidates (identical grids grouped, ties broken by first appearance)."""
    return [g for g, _ in group_candidates(candidates)[:k]]


def _same(a: Grid | None, b: Grid) -> bool:
    return a is not None and a.shape == b.shape and bool((a == b).all())


def output_metrics(truth: Grid, candidates: Sequence[Grid | None]) -> dict[str, float]:
    """The metrics of one test output over its candidates (None = invalid); no candidates = unanswered."""
    truth = np.asarray(truth)
    n = len(candidates)
    m = dict.fromkeys(METRIC_KEYS, 0.0)
    if n == 0:
        m["unanswered"] = 1.0
        return m
    for c in candidates:
        if c is None:
            m["unanswered"] += 1 / n
            continue
        if c.shape != truth.shape:
            continue
        m["correct_size"] += 1 / n
        m["correct_pixels"] += float(np.mean(c == truth)) / n
        if bool((c == truth).all()):
            m["accuracy"] += 1 / n
            m["pass_n"] = 1.0
    top = vote(candidates, 2)
    m["vote_1"] = float(any(_same(g, truth) for g in top[:1]))
    m["vote_2"] = float(any(_same(g, truth) for g in top[:2]))
    return m


def _mean(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) if rows else 0.0 for k in METRIC_KEYS}


def compute_metrics(
    predictions: Mapping[str, Any], solutions: Mapping[str, Any], path: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Metrics of a predictions mapping (raw or normalized) against solutions ({id: [grid]} or {id: Task}).

    Returns the averaged METRIC_KEYS plus ``n`` (most candidates seen for one test output), ``tasks``,
    ``test_outputs``, ``per_task`` ({id: metrics}), ``missing`` (ids without predictions, scored all-zero
    with unanswered 1) and ``warnings`` (one-line strings).
    """
    where = str(path) if path is not None else "<predictions>"
    preds = normalize_predictions(predictions, path)
    truths = _truths(solutions)
    per_task: dict[str, dict[str, float]] = {}
    missing: list[str] = []
    n_max = 0
    outputs = 0
    for tid, outs in truths.items():
        outputs += len(outs)
        if tid not in preds:
            missing.append(tid)
            per_task[tid] = _mean([output_metrics(t, []) for t in outs])
            continue
        cands = preds[tid]
        if len(cands) != len(outs):
            raise ArcDataError(
                f"{where}: task {tid}: {len(cands)} candidate list(s) for {len(outs)} test output(s)"
            )
        n_max = max([n_max, *(len(c) for c in cands)])
        per_task[tid] = _mean([output_metrics(t, c) for t, c in zip(outs, cands, strict=True)])
    warnings = []
    if missing:
        warnings.append(
            f"{where}: {len(missing)} task(s) missing from the predictions scored 0: {_name_some(missing)}"
        )
    extra = [t for t in preds if t not in truths]
    if extra:
        warnings.append(f"{where}: {len(extra)} task(s) not in the solutions ignored: {_name_some(extra)}")
    result: dict[str, Any] = _mean(list(per_task.values()))
    result.update(
        n=n_max,
        tasks=len(truths),
        test_outputs=outputs,
        per_task=per_task,
        missing=missing,
        warnings=warnings,
    )
    return result


# ---------------------------------------------------------------- Kaggle score


def score_submission(
    submission: Mapping[str, Any], solutions: Mapping[str, Any], path: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Kaggle's score: per task the fraction of test outputs whose attempt_1 or attempt_2 is exact, then the
    mean over the tasks of `solutions` ({id: [grid]} or {id: Task}).

    A task missing from the submission scores 0 (listed in ``missing``); a missing or invalid attempt is
    simply wrong. A submission that is not a mapping of lists of objects, or has the wrong number of entries
    for a task, raises ArcDataError. Returns score, tasks, test_outputs, solved_outputs, per_task, missing,
    extra (ids not in the solutions, ignored) and warnings.
    """
    where = str(path) if path is not None else "<submission>"
    if not isinstance(submission, Mapping):
        raise ArcDataError(f"{where}: a submission must map task ids to lists of attempts")
    truths = _truths(solutions)
    per_task: dict[str, float] = {}
    missing: list[str] = []
    solved = outputs = 0
    for tid, outs in truths.items():
        outputs += len(outs)
        entries = submission.get(tid)
        if entries is None:
            missing.append(tid)
            per_task[tid] = 0.0
            continue
        tw = f"{where}: task {tid}"
        if not isinstance(entries, list):
            raise ArcDataError(f"{tw}: expected a list with one entry per test input")
        if len(entries) != len(outs):
            raise ArcDataError(f"{tw}: {len(entries)} entries for {len(outs)} test output(s)")
        hits = 0
        for i, (entry, truth) in enumerate(zip(entries, outs, strict=True)):
            check_entry(entry, f"{tw}: entry[{i}]")
            hits += any(_same(normalize_candidate(entry.get(k)), truth) for k in ATTEMPT_KEYS)
        solved += hits
        per_task[tid] = hits / len(outs)
    extra = [t for t in submission if t not in truths]
    warnings = []
    if missing:
        warnings.append(
            f"{where}: {len(missing)} task(s) missing from the submission scored 0: {_name_some(missing)}"
        )
    if extra:
        warnings.append(f"{where}: {len(extra)} task(s) not in the solutions ignored: {_name_some(extra)}")
    score = float(np.mean(list(per_task.values()))) if per_task else 0.0
    return {
        "score": score,
        "tasks": len(truths),
        "test_outputs": outputs,
        "solved_outputs": solved,
        "per_task": per_task,
        "missing": missing,
        "extra": extra,
        "warnings": warnings,
    }


# ---------------------------------------------------------------- reporting


def solved_alone(solved: Mapping[str, set[str]]) -> dict[str, list[str]]:
    """Per run (or member), the tasks it solves that no other one does: what pooling it adds at best, and what
    a pool that drops it loses."""
    return {
        name: sorted(tasks - set().union(*(v for k, v in solved.items() if k != name)))
        for name, tasks in solved.items()
    }


def format_metrics_table(
    rows: Mapping[str, Any], markdown: bool = False, columns: Sequence[str] = TABLE_COLUMNS
) -> str:
    """The metric table as aligned text (or a markdown table), values as percentages.

    `rows` is one metrics dict (from compute_metrics) or a mapping of row names (runs, seeds) to metrics
    dicts, which adds a first column with the names.
    """
    single = "accuracy" in rows and not isinstance(rows.get("accuracy"), Mapping)
    named = [("", rows)] if single else list(rows.items())
    header = ([] if single else ["run"]) + list(columns)
    body = [
        ([] if single else [str(name)]) + [f"{float(m.get(c, 0.0)):.1%}" for c in columns]
        for name, m in named
    ]
    if markdown:
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" if not single and i == 0 else "---:" for i in range(len(header))) + "|",
        ]
        lines += ["| " + " | ".join(r) + " |" for r in body]
        return "\n".join(lines)
    widths = [max(len(x) for x in col) for col in zip(header, *body, strict=True)]
    fmt = [str.ljust if not single and i == 0 else str.rjust for i in range(len(header))]
    lines = ["  ".join(f(x, w) for f, x, w in zip(fmt, r, widths, strict=True)) for r in [header, *body]]
    return "\n".join(line.rstrip() for line in lines)
