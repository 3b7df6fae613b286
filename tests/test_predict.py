"""Tests of arcsub.lm.predict: augmentation reversal end to end on real ARC tasks (with a copy-the-input engine),
the predictions file through arcsub.core.metrics, fallbacks, adapters discovery, config and the CLI functions."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from arcsub.core.candidates import Candidate, SamplingSettings
from arcsub.core.config import load_config
from arcsub.core.data import ArcDataError, Pair, Task, grids_equal
from arcsub.core.encode import COMPACT_VOCAB, build_compact_tokenizer
from arcsub.lm.infer.base import Engine
from arcsub.lm.predict import (
    PredictConfig,
    find_adapters,
    output_paths,
    predict,
    run_predict,
    task_views,
)

TOK = build_compact_tokenizer()
MODEL = (None, TOK, "compact")  # the tokenizer and format; the engine is given directly
I_ID, O_ID, EOS = COMPACT_VOCAB["I"], COMPACT_VOCAB["O"], COMPACT_VOCAB["<eos>"]


class CopyEngine(Engine):
    """A 'model' that answers every prompt with its (augmented) test input: it tests the pipeline's
    prompt building, parsing and reversal, not a model. Scores favour that same copy."""

    name = "copy"

    def __init__(self) -> None:
        self.prompts: list[list[int]] = []
        self.adapters: list[str | None] = []

    @staticmethod
    def _copy(prompt: Sequence[int]) -> list[int]:
        assert prompt[-1] == O_ID
        last_i = len(prompt) - 1 - list(reversed(prompt)).index(I_ID)
        return list(prompt[last_i + 1 : -1])

    def generate(self, prompts, params, adapters=None):
        self.prompts += [list(p) for p in prompts]
        self.adapters += list(adapters or [None] * len(prompts))
        n = params.n if params.mode == "sample" else 1
        return [[Candidate(self._copy(p), -float(len(p)), len(self._copy(p)) + 1)] * n for p in prompts]

    def score(self, prompts, answers, adapters=None):
        return [
            0.0 if list(a) == self._copy(p) + [EOS] else -10.0 for p, a in zip(prompts, answers, strict=True)
        ]


def _subset(tasks: dict[str, Task], n: int) -> dict[str, Task]:
    """n tasks with varied shapes: several test inputs, non-square grids."""
    ids = sorted(tasks, key=lambda t: (-len(tasks[t].test), t))[: n // 2] + sorted(tasks)[: n - n // 2]
    return {t: tasks[t] for t in dict.fromkeys(ids)}


@pytest.mark.parametrize("colours", ["keep0", "all"])
def test_copy_model_votes_the_identity_after_reverting_every_view(arc1_eval, colours):
    tasks = _subset(arc1_eval, 12)
    cfg = PredictConfig(views=8, colours=colours, selection="vote")
    engine = CopyEngine()
    preds, attempts = predict(tasks, MODEL, cfg, engine=engine, progress=False)
    assert list(preds) == list(tasks)
    for tid, task in tasks.items():
        assert len(preds[tid]) == len(task.test) == len(attempts[tid])
        for pair, cands, (first, _) in zip(task.test, preds[tid], attempts[tid], strict=True):
            assert len(cands) == len(task_views(task, cfg)) == 8
            assert len({c["view"] for c in cands}) == 8
            for c in cands:  # every view, reverted, is the test input again
                assert grids_equal(np.array(c["grid"]), pair.input), (tid, c["view"])
                assert isinstance(c["logprob"], float) and c["tokens"] > 0
            assert grids_equal(np.array(first), pair.input)
    # the model never saw a test output
    assert all(p.count(O_ID) == p.count(I_ID) for p in engine.prompts)


def test_likelihood_selection_scores_reverted_candidates_in_each_view(arc1_eval):
    tasks = _subset(arc1_eval, 3)
    cfg = PredictConfig(views=4, selection="vote+likelihood", score_views=3)
    _, attempts = predict(tasks, MODEL, cfg, engine=CopyEngine(), progress=False)
    for tid, task in tasks.items():
        for pair, (first, second) in zip(task.test, attempts[tid], strict=True):
            assert grids_equal(np.array(first), pair.input) and second is None


def test_predictions_file_passes_through_metrics(arc1_eval_files, tmp_path):
    from arcsub.core.metrics import compute_metrics, load_predictions
    from arcsub.core.submission import load_submission

    challenges, solutions = arc1_eval_files
    cfg = PredictConfig(views=2)
    ids = ["00576224", "009d5c81", "00dbd492"]
    summary = run_predict(
        MODEL,
        challenges,
        tmp_path,
        cfg,
        task_ids=ids,
        solutions=solutions,
        engine=CopyEngine(),
        progress=False,
    )
    files = {k: Path(v) for k, v in summary["files"].items()}
    assert all(p.exists() for p in files.values())
    assert files["predictions"].name.startswith("predictions__memory__arc-agi-1-evaluation__")
    preds = load_predictions(files["predictions"])
    from arcsub.core.data import load_tasks

    tasks = {t: load_tasks(challenges, solutions)[t] for t in ids}
    metrics = compute_metrics(preds, tasks)
    assert metrics["tasks"] == 3 and metrics["n"] == 2 and metrics["unanswered"] == 0.0
    assert metrics["vote_2"] == pytest.approx(summary["metrics"]["vote_2"])
    load_submission(files["submission"], tasks)  # valid for Kaggle
    run = json.loads(files["run"].read_text())
    assert run["stats"]["candidates"] == sum(len(t.test) for t in tasks.values()) * 2
    # other settings -> other files, never an overwrite
    other = output_paths(tmp_path, MODEL, challenges, PredictConfig(views=3))
    assert other["predictions"] != files["predictions"]


def test_task_that_cannot_fit_gets_no_candidates_and_fallback_attempts(tmp_path, caplog, write):
    grid = [[1, 2], [3, 4]]
    task = {"train": [{"input": grid, "output": grid}], "test": [{"input": grid}]}
    path = write(tmp_path / "tiny_challenges.json", {"t1": task})
    cfg = PredictConfig(views=2, max_len=8)
    with caplog.at_level(logging.WARNING, logger="arcsub.lm.predict"):
        summary = run_predict(MODEL, path, tmp_path / "out", cfg, engine=CopyEngine(), progress=False)
    assert any("t1" in r.message and "max_len" in r.message for r in caplog.records)
    preds = json.loads(Path(summary["files"]["predictions"]).read_text())
    sub = json.loads(Path(summary["files"]["submission"]).read_text())
    assert preds == {"t1": [[]]}
    assert sub["t1"][0]["attempt_1"] == grid  # the submission builder's fallback


def test_adapters_are_found_per_task_and_missing_ones_warn(tmp_path, caplog, write):
    for tid in ("a", "b", "c"):
        write(tmp_path / tid / "adapter_config.json", {})
    (tmp_path / "d").mkdir()  # a directory without an adapter
    with caplog.at_level(logging.WARNING, logger="arcsub.lm.predict"):
        found = find_adapters(tmp_path, ["a", "b", "d", "e"])
    assert found == {"a": str(tmp_path / "a"), "b": str(tmp_path / "b"), "d": None, "e": None}
    assert any("2 of 4" in r.message for r in caplog.records)
    write(tmp_path / "manifest.json", {"finished": ["a"]})
    assert find_adapters(tmp_path, ["a", "b"]) == {"a": str(tmp_path / "a"), "b": None}
    with pytest.raises(ArcDataError, match="not found"):
        find_adapters(tmp_path / "nope", ["a"])
    assert find_adapters(None, ["a"]) == {"a": None}


def test_adapter_paths_reach_the_engine(arc1_eval, tmp_path, write):
    tasks = _subset(arc1_eval, 2)
    first = next(iter(tasks))
    write(tmp_path / first / "adapter_config.json", {})
    engine = CopyEngine()
    predict(tasks, MODEL, PredictConfig(views=2), adapters_dir=tmp_path, engine=engine, progress=False)
    per_prompt = set(zip((tuple(p) for p in engine.prompts), engine.adapters, strict=True))
    assert {a for _, a in per_prompt} == {str(tmp_path / first), None}


def test_tiny_model_end_to_end_with_the_torch_engine(arc1_eval):
    """A random model through the real engine: constrained greedy answers are all valid grids."""
    from arcsub.lm.models import build_model

    tasks = {t: arc1_eval[t] for t in ("00576224", "66e6c45b")}
    model, tok = build_model("tiny", seed=0)
    cfg = PredictConfig(
        views=2,
        selection="vote+likelihood",
        device="cpu",
        sampling=SamplingSettings(mode="greedy", constrained=True),
    )
    stats: dict = {}
    preds, attempts = predict(tasks, (model, tok, "compact"), cfg, progress=False, stats=stats)
    assert stats["engine"] == "torch" and stats["prompts"] == 4 and stats["valid"] == 4
    for tid in tasks:
        assert all(c["grid"] is not None for cands in preds[tid] for c in cands)
        assert attempts[tid][0][0] is not None


def test_test_outputs_never_reach_the_model(arc1_eval):
    task = arc1_eval["00576224"]
    hidden = Task(task.id, task.train, [Pair(p.input) for p in task.test])
    a, b = CopyEngine(), CopyEngine()
    predict({task.id: task}, MODEL, PredictConfig(views=2), engine=a, progress=False)
    predict({task.id: hidden}, MODEL, PredictConfig(views=2), engine=b, progress=False)
    assert a.prompts == b.prompts


def test_config_loads_nested_sampling_and_rejects_unknown_keys(tmp_path, write):
    path = write(tmp_path / "c.yaml", "views: 4\nsampling:\n  mode: dfs\n  dfs_threshold: 0.2\n")
    cfg = load_config(PredictConfig, path, ["selection=vote+likelihood"])
    assert cfg.views == 4 and cfg.sampling.mode == "dfs" and cfg.sampling.dfs_threshold == 0.2
    with pytest.raises(ArcDataError, match="unknown key"):
        load_config(PredictConfig, None, ["sampling.beams=2"])
    with pytest.raises(ArcDataError):
        load_config(PredictConfig, None, ["selection=best"])
    with pytest.raises(ArcDataError, match="views"):
        PredictConfig(views=0).validate()


def _predict(argv: list) -> int:
    """`arcsub predict ARGV...` in this process (the command line's own parser and runner)."""
    from arcsub.cli import main

    return main(["predict", *(str(a) for a in argv)])


def test_cli_functions_run_a_saved_model(arc1_eval_files, tmp_path, capsys):
    from arcsub.core.modeldir import save_model
    from arcsub.lm.models import build_model

    challenges, solutions = arc1_eval_files
    model, tok = build_model("tiny", seed=0)
    model_dir = save_model(model, tok, tmp_path / "myrun" / "model", {"format": "compact"})
    rc = _predict(
        [
            model_dir,
            challenges,
            "-o",
            tmp_path / "out",
            "--tasks",
            "2",
            "--engine",
            "torch",
            "--solutions",
            solutions,
            "--quiet",
            "views=1",
            "device=cpu",
            "sampling.max_new_tokens=40",
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "predicted 2 task(s)" in out and "score" in out
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert len(names) == 3 and all("__myrun__arc-agi-1-evaluation__" in n for n in names)


def test_cli_vllm_without_vllm_is_one_line(arc1_eval_files, tmp_path, capsys):
    from arcsub.lm.infer.vllm_engine import VLLM_MISSING, vllm_installed

    if vllm_installed():
        pytest.skip("vllm is installed here")
    from arcsub.core.modeldir import save_model
    from arcsub.lm.models import build_model

    model, tok = build_model("tiny", seed=0)
    model_dir = save_model(model, tok, tmp_path / "m", {"format": "compact"})
    rc = _predict([model_dir, arc1_eval_files[0], "-o", tmp_path / "out", "--engine", "vllm", "--tasks", "1"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("arcsub")]
    assert rc == 2 and err == [f"arcsub: error: {VLLM_MISSING}"]
