"""Test-time fine-tuning on real evaluation tasks with a tiny trained model: leave-one-out never leaks its
target, finished tasks are saved and skipped, the budget stops a task early, adapters load in predict."""

from __future__ import annotations

import json

import pytest

from arcsub.core.augment import leave_one_out
from arcsub.core.data import dataset_files
from arcsub.core.modeldir import save_model
from arcsub.lm.models import build_model
from arcsub.lm.predict import PredictConfig, find_adapters, predict
from arcsub.lm.ttft import TTFTConfig, loo_tasks, run_ttft


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    model, tok = build_model("tiny", max_len=2048)
    return save_model(model, tok, d, {"format": "compact"})


def _small_tasks(arc1_eval, n):
    ids = sorted(arc1_eval, key=lambda k: sum(p.input.size for p in arc1_eval[k].train))[:n]
    return {k: arc1_eval[k] for k in ids}


CFG = TTFTConfig(steps=3, seq_len=1024, max_len=1024)


def test_leave_one_out_never_leaks_the_target(arc1_eval):
    for task in list(arc1_eval.values())[:50]:
        for i, loo in enumerate(loo_tasks(task)):
            target = task.train[i]
            assert len(loo.test) == 1 and (loo.test[0].output == target.output).all()
            assert all(p is not target for p in loo.train) and len(loo.train) == len(task.train) - 1
        # the test pairs (whose outputs are hidden at Kaggle) are never part of TTFT data
        tests = {id(p) for p in task.test}
        assert not any(id(p) in tests for t in loo_tasks(task) for p in t.train + t.test)
    with pytest.raises(ValueError):
        leave_one_out(list(arc1_eval.values())[0], 99)


def test_adapters_saved_skipped_on_rerun_and_used_by_predict(tiny_model_dir, arc1_eval, tmp_path):
    tasks = _small_tasks(arc1_eval, 2)
    out = run_ttft(tiny_model_dir, tasks, tmp_path / "ad", CFG, device="cpu", progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["tasks"]) == set(tasks)
    for tid in tasks:
        assert (out / tid / "adapter_model.safetensors").exists()
        assert manifest["tasks"][tid]["steps"] == 3
    mtimes = {t: (out / t / "adapter_model.safetensors").stat().st_mtime_ns for t in tasks}
    run_ttft(tiny_model_dir, tasks, out, CFG, device="cpu", progress=False)  # nothing left to do
    assert mtimes == {t: (out / t / "adapter_model.safetensors").stat().st_mtime_ns for t in tasks}
    assert all(find_adapters(out, list(tasks)).values())
    pc = PredictConfig(views=2, max_len=1024, device="cpu", engine="torch")
    pc.sampling.max_new_tokens = 64
    stats: dict = {}
    preds, attempts = predict(tasks, str(tiny_model_dir), pc, adapters_dir=out, progress=False, stats=stats)
    assert stats["adapters"] == len(tasks) and set(preds) == set(tasks)


def test_budget_stops_a_task_early_and_still_saves(tiny_model_dir, arc1_eval, tmp_path):
    tasks = _small_tasks(arc1_eval, 1)
    cfg = TTFTConfig(steps=10_000, seq_len=1024, max_len=1024, seconds_per_task=1.0)
    out = run_ttft(tiny_model_dir, tasks, tmp_path / "ad", cfg, device="cpu", progress=False)
    stats = json.loads((out / "manifest.json").read_text())["tasks"][next(iter(tasks))]
    assert 0 < stats["steps"] < 10_000 and stats["seconds"] < 5
    assert (out / next(iter(tasks)) / "adapter_model.safetensors").exists()


def test_group_mode_writes_a_merged_model(tiny_model_dir, arc1_eval, tmp_path):
    from arcsub.lm.models import load_model

    tasks = _small_tasks(arc1_eval, 2)
    cfg = TTFTConfig(mode="group", steps=2, seq_len=1024, max_len=1024)
    out = run_ttft(tiny_model_dir, tasks, tmp_path / "grp", cfg, device="cpu", progress=False)
    model, _, fmt = load_model(out / "model")
    assert fmt == "compact" and not hasattr(model, "peft_config")


def test_cli_ttft_errors(tmp_path):
    from arcsub.cli import main

    c, _ = dataset_files("arc-agi-1", "evaluation")
    assert main(["ttft", str(tmp_path), str(c), "-o", str(tmp_path / "o")]) == 2  # no weights there


@pytest.mark.long
def test_two_workers_share_the_tasks_and_merge_manifests(tiny_model_dir, arc1_eval, tmp_path):
    tasks = _small_tasks(arc1_eval, 2)
    cfg = TTFTConfig(steps=1, seq_len=512, max_len=1024, workers=2)
    out = run_ttft(tiny_model_dir, tasks, tmp_path / "ad", cfg, device="cpu", progress=False)
    assert set(json.loads((out / "manifest.json").read_text())["tasks"]) == set(tasks)
    assert {p.name for p in out.glob("manifest.*.json")} == {"manifest.0.json", "manifest.1.json"}
    assert all((out / t / "adapter_model.safetensors").exists() for t in tasks)
