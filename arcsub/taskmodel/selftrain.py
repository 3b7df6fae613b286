"""Self-training for the refinement run: the joint model's own confident answers to the test inputs become
extra demonstration pairs (never a solution: nothing here reads a test output).

Why: the refinement run sees only ~3 demonstrations per test task and memorises them (its loss falls to
~0.002, docs/experiments/arc2.md); a test input with the answer most views agree on is a new pair from the
very distribution the model is scored on, and training on it under fresh augmentations makes the views
agree more where they already lean one way (the self-consistency TTT of the ARChitects and of VARC).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from arcsub.core.data import Pair, Task, grids_equal, load_tasks, write_json_atomic
from arcsub.core.device import pick_dtype
from arcsub.core.metrics import group_candidates
from arcsub.taskmodel.model import load_task_model
from arcsub.taskmodel.predict import TaskPredictConfig, predict_device, predict_tasks

log = logging.getLogger(__name__)


@dataclass
class SelfTrainSettings:
    """Which answers count as confident: the most-voted grid holds at least `agreement` of the valid answers
    and `min_votes` of them (so one lucky view is never enough)."""

    views: int = 8  # views per test input for the labelling pass (fewer than the final prediction's)
    agreement: float = 0.5
    min_votes: int = 2


def confident_answer(
    candidates: list[Mapping[str, Any]], test_input: np.ndarray, s: SelfTrainSettings
) -> np.ndarray | None:
    """The grid most views agree on, or None when too few agree (copies of the input never count)."""
    grids = [
        np.asarray(c["grid"])
        for c in candidates
        if c["grid"] is not None and not grids_equal(c["grid"], test_input)
    ]
    groups = group_candidates(grids)
    if not groups:
        return None
    grid, votes = groups[0]
    return grid if votes >= s.min_votes and votes >= s.agreement * len(grids) else None


def with_confident_pairs(
    tasks: Mapping[str, Task], predictions: Mapping[str, list], s: SelfTrainSettings
) -> tuple[dict[str, Task], int]:
    """The tasks with each confidently answered test input added to their demonstrations (test outputs
    stay hidden), and how many pairs were added."""
    out, added = {}, 0
    for tid, task in tasks.items():
        extra = []
        for pair, cands in zip(task.test, predictions.get(tid, []), strict=False):
            answer = confident_answer(cands, pair.input, s)
            if answer is not None:
                extra.append(Pair(pair.input, answer))
        added += len(extra)
        out[tid] = Task(tid, list(task.train) + extra, [Pair(p.input) for p in task.test], task.meta)
    return out, added


def write_self_train_file(
    model_dir: Path, test_file: Path, out_file: Path, s: SelfTrainSettings, predict_cfg: TaskPredictConfig
) -> Path:
    """Label the test inputs with the model at `model_dir` (`s.views` views, the prediction settings
    otherwise) and write the tasks with their confident pairs to `out_file`, a challenges file the refinement
    run reads as its test tasks. Reuses the file when it exists (a resumed run labels once)."""
    if out_file.exists():
        return out_file
    tasks = load_tasks(test_file)
    cfg = dataclasses.replace(predict_cfg, views=s.views)
    device = predict_device(cfg)
    model, index = load_task_model(model_dir, device, pick_dtype(cfg.dtype, device))
    predictions, _ = predict_tasks(model, index, tasks, cfg, progress=False)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()  # the refinement run trains on this GPU next
    labelled, added = with_confident_pairs(tasks, predictions, s)
    n_test = sum(len(t.test) for t in tasks.values())
    log.info("self-training: %d of %d test inputs answered confidently (added as pairs)", added, n_test)
    return write_json_atomic(out_file, {t: x.to_json() for t, x in labelled.items()})
