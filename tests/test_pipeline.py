"""The competition path end to end on real evaluation tasks with the embedded default model: a valid
submission is on disk before any model work, the run improves and scores it, and a rerun resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from arcsub.cli import main
from arcsub.core.data import ArcDataError, load_tasks
from arcsub.core.runs import pick_dry_run_tasks
from arcsub.core.submission import validate_submission
from arcsub.lm.pipeline import default_model_dir, load_pipeline_config, run_pipeline

CHEAP = ["ttft.steps=2", "ttft.seq_len=1024", "ttft.max_len=1024", "predict.views=2", "predict.max_len=1024"]


@pytest.fixture(scope="module")
def model_dir():
    d = default_model_dir()
    if not (d / "model.safetensors").exists():
        pytest.skip(f"embedded default model not found: {d}")
    return d


def test_baseline_submission_written_before_model_work(arc1_eval_files, tmp_path):
    challenges, _ = arc1_eval_files
    ids = pick_dry_run_tasks(challenges, 3)
    cfg = load_pipeline_config(None, [f"model={tmp_path / 'no-model'}"])
    with pytest.raises(ArcDataError, match="model directory not found"):
        run_pipeline(challenges, tmp_path / "out", cfg, task_ids=ids)
    sub = json.loads((tmp_path / "out" / "submission.json").read_text())
    tasks = {t: v for t, v in load_tasks(challenges).items() if t in ids}
    validate_submission(sub, tasks)  # valid, every task present, although no model ever ran


def test_pipeline_ttft_predict_score_and_resume(model_dir, arc1_eval_files, tmp_path):
    challenges, solutions = arc1_eval_files
    ids = pick_dry_run_tasks(challenges, 2)
    cfg = load_pipeline_config(None, CHEAP)
    out = tmp_path / "run"
    summary = run_pipeline(challenges, out, cfg, solutions, ids)
    assert summary["predicted"] == 2 and summary["score"] is not None
    assert summary["stage_seconds"]["ttft"] > 0 and summary["stage_seconds"]["predict"] > 0
    assert set(summary["metrics"]) >= {"accuracy", "correct_pixels", "correct_size", "pass_n", "vote_2"}
    report = (out / "report.html").read_text()
    assert all(t in report for t in ids)  # the HTML report shows every task
    manifest = json.loads((out / "adapters" / "manifest.json").read_text())
    assert set(manifest["tasks"]) == set(ids)
    preds = json.loads((out / "predictions.json").read_text())
    assert all(len(preds[t][0]) == 2 for t in ids)  # 2 views per test input, all kept
    assert set(json.loads((out / "solver_answers.json").read_text())) <= set(ids)  # the solver ran beside
    # a rerun finds every task done: nothing is recomputed and the submission stays the same
    before = (out / "submission.json").read_text()
    again = run_pipeline(challenges, out, cfg, solutions, ids)
    assert again["predicted"] == 2 and (out / "submission.json").read_text() == before


def test_dry_run_cli(model_dir, arc1_eval_files, tmp_path, capsys):
    challenges, _ = arc1_eval_files
    in_context = ["dry-run", "--pipeline", "in-context"]  # one flag away from the default task pipeline
    rc = main(
        [*in_context, "--tasks", "1", "-o", str(tmp_path / "d"), "--json", "ttft_enabled=false", *CHEAP[3:]]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["tasks"] == 1 and 0.0 <= out["score"] <= 1.0
    assert set(out["stage_seconds"]) == {"ttft", "predict"}  # the in-context stages, not train + predict
    assert main([*in_context, "--tasks", "1", "bogus=1"]) == 2
    rc = main(
        [
            *in_context,
            "--tasks",
            "1",
            "--first",
            "-o",
            str(tmp_path / "f"),
            "--json",
            "ttft_enabled=false",
            *CHEAP[3:],
        ]
    )
    first = list(json.loads(Path(challenges).read_text()))[:1]
    assert first != pick_dry_run_tasks(challenges, 1)  # the file's first task is not its smallest
    assert rc == 0 and list(json.loads((tmp_path / "f" / "submission.json").read_text())) == first


def test_an_interrupted_single_worker_run_keeps_every_finished_chunk(arc1_eval_files, tmp_path, monkeypatch):
    """One in-process worker merges into submission.json after every chunk: an interruption in the second
    chunk keeps the first chunk's attempts (engine and prediction are stand-ins: the merge is under test)."""
    from arcsub.core.data import read_json
    from arcsub.core.runs import start_run
    from arcsub.lm import pipeline as lm_pipeline
    from arcsub.lm import predict as lm_predict

    challenges, _ = arc1_eval_files
    ids = pick_dry_run_tasks(challenges, 2)
    out, tasks = start_run(challenges, tmp_path / "out", ids)
    calls: list[list[str]] = []

    def fake_predict(chunk, model, cfg, adapters, engine, progress):
        calls.append(list(chunk))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the notebook's hard deadline, mid-chunk
        return {t: [] for t in chunk}, {t: [[[[7]], [[7]]] for _ in chunk[t].test] for t in chunk}

    monkeypatch.setattr(lm_predict, "open_engine", lambda *a, **k: (None, None, None))
    monkeypatch.setattr(lm_predict, "predict", fake_predict)
    cfg = load_pipeline_config(None, ["chunk=1", "ttft_enabled=false"])
    with pytest.raises(KeyboardInterrupt):
        lm_pipeline.run_shard(0, ids, str(challenges), str(out), cfg, float("inf"), merge=True)
    sub = read_json(out / "submission.json")
    assert list(sub) == ids  # the run's tasks only, in order
    assert sub[ids[0]][0]["attempt_1"] == [[7]] and sub[ids[1]][0]["attempt_1"] != [[7]]


def test_a_run_on_tasks_with_inline_outputs_is_scored_and_reported_with_them(arc1_eval, tmp_path):
    """finish_run (both pipelines' end): no solutions file, but every test output written inline in the task
    files (ARC's repository form): the run is scored and its report shows the metrics against them."""
    from arcsub.core.data import grid_to_list, write_json_atomic
    from arcsub.core.runs import finish_run, merge_attempts, start_run
    from arcsub.core.submission import load_submission

    ids = sorted(arc1_eval)[:2]
    folder = tmp_path / "tasks"
    folder.mkdir()
    for i in ids:
        (folder / f"{i}.json").write_text(json.dumps(arc1_eval[i].to_json(with_test_outputs=True)))
    out, tasks = start_run(folder, tmp_path / "out", None)
    # a worker's files: the first task answered right, the second wrong
    answer = {ids[0]: [grid_to_list(p.output) for p in arc1_eval[ids[0]].test]}
    answer[ids[1]] = [[[0, 0, 0]] for _ in arc1_eval[ids[1]].test]
    write_json_atomic(out / "attempts.0.json", {t: [[g, g] for g in gs] for t, gs in answer.items()})
    write_json_atomic(out / "predictions.0.json", {t: [[g] for g in gs] for t, gs in answer.items()})
    merge_attempts(out, tasks)
    summary = finish_run(out, tasks, None, {"stage_seconds": {}}, 0.0)
    assert summary["task_scores"] == {ids[0]: 1.0, ids[1]: 0.0} and summary["score"] == 0.5
    assert "pass_n" in (out / "report.html").read_text()  # the report's metrics table
    # the same tasks without their outputs, and nothing predicted (the time spent before the first chunk):
    # not scored, the baseline submission and the report still written
    (tmp_path / "h.json").write_text(json.dumps({i: arc1_eval[i].to_json() for i in ids}))
    out2, tasks2 = start_run(tmp_path / "h.json", tmp_path / "out2", None)
    assert finish_run(out2, tasks2, None, {"stage_seconds": {}}, 0.0)["score"] is None
    assert (out2 / "report.html").exists() and list(load_submission(out2 / "submission.json", tasks2)) == ids
