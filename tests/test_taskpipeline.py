"""The task-model competition path: baseline first, training on the tasks' demonstrations only, prediction,
a score; resume, a budget-stopped run predicting from its checkpoint, and the Kaggle entry point without a
model dataset."""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from pathlib import Path

import pytest
from test_kaggle import CHALLENGES_FILE, _eval_challenges, _model_dataset, kaggle_env, tiny_model  # noqa: F401  (fixtures)
from test_taskmodel import one_thread  # noqa: F401  (the fixture applies here too)

from arcsub.cli import main
from arcsub.core.data import load_tasks, read_json
from arcsub.core.runs import pick_dry_run_tasks
from arcsub.core.submission import load_submission
from arcsub.kaggle import notebook
from arcsub.kaggle import paths as kpaths
from arcsub.taskmodel.pipeline import load_pipeline_config, run_pipeline

CPU = Path(__file__).resolve().parent.parent / "configs" / "task-dry-run-cpu.yaml"
FAST = ["train.seconds=0", "train.steps=40", "train.seq_len=512", "predict.views=2"]


def test_dry_run_trains_on_demonstrations_only_and_scores(arc1_eval_files, tmp_path, capsys):
    challenges, _ = arc1_eval_files
    out = tmp_path / "run"
    rc = main(
        [
            "dry-run",  # the task pipeline is the default
            "--challenges",  # the form: a 'data:' path, its solutions the sibling file
            "data:arc-agi-1/arc-agi_evaluation_challenges.json",
            "--tasks",
            "2",
            "-o",
            str(out),
            "--config",
            str(CPU),
            "--json",
            *FAST,
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    ids = pick_dry_run_tasks(challenges, 2)
    assert summary["tasks"] == summary["predicted"] == 2 and 0.0 <= summary["score"] <= 1.0
    assert sorted(summary["task_scores"]) == sorted(ids)  # which tasks it solved, for bench/task_overlap.py
    assert set(summary["stage_seconds"]) == {"train", "predict"}
    assert summary["model"].endswith("task-model/model")
    solver = read_json(out / "solver_answers.json")  # the background solver ran on the run's tasks
    assert set(solver) <= set(ids) and sorted(read_json(out / "solver_challenges.json")) == sorted(ids)
    seen = read_json(out / "test_challenges.json")  # what training read of the test tasks
    assert sorted(seen) == sorted(ids)
    assert all("output" not in p for t in seen.values() for p in t["test"])
    assert read_json(out / "task-model" / "config.json")["data"]["ttt_challenges"] == [
        str(out / "test_challenges.json")
    ]
    all_tasks = load_tasks(challenges)
    load_submission(out / "submission.json", {t: all_tasks[t] for t in ids})  # valid for the run's tasks
    before = (out / "submission.json").read_text()
    cfg = load_pipeline_config(CPU, FAST)
    again = run_pipeline(
        challenges, out, cfg, task_ids=ids
    )  # finished: nothing is trained or predicted again
    assert again["predicted"] == 2 and (out / "submission.json").read_text() == before


def test_a_budget_stopped_training_predicts_from_its_checkpoint(arc1_eval_files, tmp_path):
    challenges, _ = arc1_eval_files
    cfg = load_pipeline_config(CPU, [*FAST, "train.time_budget=0.000001"])
    summary = run_pipeline(challenges, tmp_path / "run", cfg, task_ids=pick_dry_run_tasks(challenges, 1))
    assert summary["model"].endswith("task-model/checkpoint") and summary["predicted"] == 1


def test_kaggle_notebook_runs_the_task_pipeline_without_a_model_dataset(kaggle_env, arc1_eval, monkeypatch):  # noqa: F811
    ids = sorted(arc1_eval)[:2]
    path = _eval_challenges(kaggle_env, "arc-prize-2024", ids, arc1_eval)
    monkeypatch.setenv("ARCSUB_PIPELINE", "arcsub.taskmodel.pipeline:run_pipeline")
    monkeypatch.setenv("ARCSUB_CONFIG", str(CPU))
    monkeypatch.setenv("ARCSUB_TIME_LIMIT", "30")  # ~18 s of training fitted to the budget, then prediction
    summary = notebook.main(["predict.views=2", "train.seq_len=512"])
    assert "error" not in summary and summary["predicted"] == 2
    plan = read_json(kaggle_env / "working" / "task-model" / "plan.json")
    assert plan["steps"] > 40  # the schedule was fitted to the budget's training share
    load_submission(kaggle_env / "working" / "submission.json", load_tasks(path))
    assert CHALLENGES_FILE == path.name


@pytest.mark.long
def test_two_workers_train_through_torchrun_and_share_the_prediction(arc1_eval_files, tmp_path):
    """gpus=2 on a CPU: DDP training over two gloo processes, then one prediction worker per shard."""
    challenges, _ = arc1_eval_files
    ids = pick_dry_run_tasks(challenges, 2)
    cfg = load_pipeline_config(CPU, [*FAST, "gpus=2", "train.time_budget=60"])  # bounds the torchrun wait
    summary = run_pipeline(challenges, tmp_path / "run", cfg, task_ids=ids)
    assert summary["workers"] == 2 and summary["predicted"] == 2
    assert summary["model"].endswith("task-model/model")
    for rank, task in enumerate(ids):  # round-robin shards, each saved by its worker
        assert list(read_json(tmp_path / "run" / f"attempts.{rank}.json")) == [task]


def test_a_pretrained_task_model_is_continued_on_the_test_tasks(
    pretrained_task_model, arc1_eval_files, tmp_path
):
    """model=<task-model dir>: the pipeline test-time trains it (mode ttt: new rows for the test tasks)."""
    from arcsub.taskmodel.model import load_task_model

    pre = pretrained_task_model
    challenges, _ = arc1_eval_files
    ids = pick_dry_run_tasks(challenges, 2)
    cfg = load_pipeline_config(CPU, [*FAST, f"model={pre}", "train.data.challenges=[]"])
    summary = run_pipeline(challenges, tmp_path / "run", cfg, task_ids=ids)
    assert summary["predicted"] == 2
    assert read_json(tmp_path / "run" / "task-model" / "config.json")["mode"] == "ttt"
    _, index = load_task_model(summary["model"])
    assert set(ids) <= set(index.rows) and len(index) == 3 + 2  # the pretrained rows kept, two new ones


def test_kaggle_notebook_continues_a_task_model_shipped_in_the_model_dataset(
    kaggle_env,  # noqa: F811
    pretrained_task_model,
    arc1_eval,
    tiny_model,  # noqa: F811
    tmp_path,
    monkeypatch,
):
    """Pretrain offline, ship it as the model dataset, test-time train it in the notebook: an attached task model
    replaces the preset; an attached in-context model does not (the preset is trained from scratch)."""
    from arcsub.taskmodel.model import load_task_model

    paths = kpaths.kaggle_paths({"ARCSUB_KAGGLE_ROOT": str(kaggle_env)})
    assert not notebook.shipped_task_model(paths)  # nothing attached
    ds = _model_dataset(tiny_model, kaggle_env / "input" / "arcsub-model")
    assert not notebook.shipped_task_model(paths)  # an in-context model
    shutil.rmtree(ds)
    _model_dataset(pretrained_task_model, kaggle_env / "input" / "arcsub-model")
    assert notebook.shipped_task_model(paths)

    ids = sorted(arc1_eval)[:2]
    _eval_challenges(kaggle_env, "arc-prize-2024", ids, arc1_eval)
    monkeypatch.setenv("ARCSUB_PIPELINE", "arcsub.taskmodel.pipeline:run_pipeline")
    monkeypatch.setenv("ARCSUB_CONFIG", str(CPU))
    monkeypatch.setenv("ARCSUB_TIME_LIMIT", "20")  # only the mode and the rows are checked: ~12 s of training
    summary = notebook.main(["predict.views=2", "train.seq_len=512"])
    assert "error" not in summary and summary["predicted"] == 2
    run = kaggle_env / "working" / "task-model"
    assert read_json(run / "config.json")["mode"] == "ttt"
    _, index = load_task_model(run / "model")
    # the shipped rows kept, the hidden tasks added
    assert set(ids) <= set(index.rows) and len(index) == 3 + 2


def test_training_tasks_that_are_test_tasks_are_left_out_of_training(arc1_train, tmp_path, caplog):
    """Kaggle's public stand-in holds training tasks: with the training file as a source, those tasks must train
    on their demonstrations only, never on the solutions the training file has for them."""
    import logging

    from test_tasktrain import smallest, write_subset

    ids = smallest(arc1_train, 3)
    train_ch, _ = write_subset(arc1_train, ids, tmp_path, "tr")  # with solutions beside it
    test_ch, _ = write_subset(arc1_train, ids[:2], tmp_path, "te")
    cfg = load_pipeline_config(CPU, [*FAST, f"train.data.challenges=[{train_ch}]"])
    with caplog.at_level(logging.WARNING, logger="arcsub"):
        summary = run_pipeline(test_ch, tmp_path / "run", cfg)
    assert summary["predicted"] == 2
    assert any("2 arc task(s) are test tasks here" in r.getMessage() for r in caplog.records)


def test_solved_files_beside_the_test_file_join_training(arc1_train, arc1_eval, tmp_path):
    """Kaggle's competition folder holds the training and evaluation sets with solutions next to the hidden
    test file: the pipeline trains on them too; never on the test file itself or on a file without solutions."""
    from test_tasktrain import smallest, write_subset

    from arcsub.taskmodel.pipeline import train_config

    comp = tmp_path / "arc-prize-2024"
    write_subset(arc1_train, smallest(arc1_train, 2), comp, "arc-agi_training")
    ev_ch, ev_sol = write_subset(arc1_eval, smallest(arc1_eval, 2), comp, "arc-agi_evaluation")
    test_ch, _ = write_subset(arc1_eval, smallest(arc1_eval, 1), comp, "arc-agi_test")
    cfg = load_pipeline_config(CPU, [*FAST, "beside_data=true"])
    sources = train_config(cfg, tmp_path / "t.json", tmp_path, 0, test_ch).data.challenges
    assert sources == [str(comp / "arc-agi_training_challenges.json"), str(ev_ch)]
    ev_sol.unlink()  # no solutions: not a training source
    assert train_config(cfg, tmp_path / "t.json", tmp_path, 0, test_ch).data.challenges == sources[:1]
    assert train_config(cfg, tmp_path / "t.json", tmp_path, 0, ev_ch).data.challenges == sources[:1]  # itself
    off = load_pipeline_config(CPU, FAST)  # the CPU dry-run config leaves them out
    assert train_config(off, tmp_path / "t.json", tmp_path, 0, test_ch).data.challenges == []


@pytest.mark.long
def test_per_task_ablation_trains_one_model_per_task(arc1_eval_files, tmp_path):
    """per_task=true (the joint run's ablation): each task gets its own model, trained on its demonstrations
    alone; the submission and metrics cover every task, and a rerun redoes nothing."""
    from arcsub.taskmodel.model import load_task_model

    challenges, solutions = arc1_eval_files
    ids = pick_dry_run_tasks(challenges, 2)
    cfg = load_pipeline_config(CPU, [*FAST, "per_task=true", "train.steps=10"])  # 10 steps: a model per task
    summary = run_pipeline(challenges, tmp_path / "run", cfg, solutions, ids)
    assert summary["predicted"] == 2 and 0.0 <= summary["score"] <= 1.0
    for t in ids:
        _, index = load_task_model(tmp_path / "run" / "per-task" / t / "task-model" / "model")
        assert list(index.rows) == [t]  # trained on this task alone
    load_submission(tmp_path / "run" / "submission.json", {t: load_tasks(challenges)[t] for t in ids})
    assert set(read_json(tmp_path / "run" / "predictions.json")) == set(ids)
    before = (tmp_path / "run" / "per-task" / ids[0] / "task-model" / "model" / "model.safetensors").stat()
    run_pipeline(challenges, tmp_path / "run", cfg, solutions, ids)
    after = (tmp_path / "run" / "per-task" / ids[0] / "task-model" / "model" / "model.safetensors").stat()
    assert before.st_mtime_ns == after.st_mtime_ns


def test_an_interrupted_prediction_keeps_every_finished_chunk_in_the_submission(
    arc1_eval, tmp_path, monkeypatch
):
    """The in-process shard merges into submission.json after every chunk: an interruption in the second
    chunk (the notebook's hard deadline) keeps the first chunk's attempts (an emulated T4 run lost 250
    predicted tasks this way). Model loading and prediction are stand-ins: the merge is under test."""
    from arcsub.core.runs import start_run
    from arcsub.taskmodel import model as task_model
    from arcsub.taskmodel import pipeline as task_pipeline
    from arcsub.taskmodel import predict as task_predict

    ids = sorted(arc1_eval)[:2]
    test_file = tmp_path / "test.json"
    test_file.write_text(json.dumps({t: arc1_eval[t].to_json() for t in ids}))
    out, tasks = start_run(test_file, tmp_path / "out", None)
    calls: list[list[str]] = []

    def fake_predict(model, index, chunk, cfg, progress, ensemble=()):
        calls.append(list(chunk))
        if len(calls) == 2:
            raise KeyboardInterrupt  # the hard deadline's alarm, mid-chunk
        att = {t: [[[[7]], [[7]]] for _ in chunk[t].test] for t in chunk}
        return {t: [] for t in chunk}, att

    monkeypatch.setattr(task_model, "load_task_model", lambda *a: (None, None))
    monkeypatch.setattr(task_predict, "predict_tasks", fake_predict)
    cfg = load_pipeline_config(None, ["chunk=1", "predict.device=cpu"])
    with pytest.raises(KeyboardInterrupt):
        task_pipeline.predict_shard(0, ids, ["m"], str(test_file), str(out), cfg, float("inf"), merge=True)
    sub = read_json(out / "submission.json")
    assert sub[ids[0]][0]["attempt_1"] == [[7]]  # the finished chunk is in the submission
    assert sub[ids[1]][0]["attempt_1"] != [[7]]  # the interrupted one keeps its baseline


def test_a_short_last_chunk_is_judged_by_seconds_per_task(arc1_eval, tmp_path, monkeypatch):
    """Chunks of 2 of 5 tasks on a clock that moves 10 s a task: after two chunks (40 s) 15 s are left. The
    last chunk of one task needs 10 s, so it runs; judged by a full chunk's 20 s it would keep its baseline
    (the tenth session's 4-minute run left 20 of 120 tasks so). With 5 s left it is not started."""
    from arcsub.core.runs import start_run
    from arcsub.taskmodel import model as task_model
    from arcsub.taskmodel import pipeline as task_pipeline
    from arcsub.taskmodel import predict as task_predict

    ids = sorted(arc1_eval)[:5]
    test_file = tmp_path / "test.json"
    test_file.write_text(json.dumps({t: arc1_eval[t].to_json() for t in ids}))
    now = [0.0]

    def fake_predict(model, index, chunk, cfg, progress, ensemble=()):
        now[0] += 10 * len(chunk)
        return {t: [] for t in chunk}, {t: [[[[7]], [[7]]] for _ in chunk[t].test] for t in chunk}

    monkeypatch.setattr(task_model, "load_task_model", lambda *a: (None, None))
    monkeypatch.setattr(task_predict, "predict_tasks", fake_predict)
    cfg = load_pipeline_config(None, ["chunk=2", "predict.device=cpu"])
    for deadline, predicted in ((55.0, 5), (45.0, 4)):
        now[0] = 0.0
        out, _ = start_run(test_file, tmp_path / f"out{deadline:g}", None)
        task_pipeline.predict_shard(
            0, ids, ["m"], str(test_file), str(out), cfg, deadline, merge=True, clock=lambda: now[0]
        )
        sub = read_json(out / "submission.json")
        assert sum(sub[t][0]["attempt_1"] == [[7]] for t in ids) == predicted


def test_refinement_is_fitted_to_the_time_left_or_skipped_when_too_little_is_left(tmp_path, caplog):
    import logging

    from arcsub.taskmodel.pipeline import refine, refine_config, train_config

    cfg = load_pipeline_config(CPU, [*FAST, "refine_share=0.2", "time_budget=100"])
    joint = train_config(cfg, tmp_path / "t.json", tmp_path, 50.0)
    tc = refine_config(cfg, joint, tmp_path / "joint", 12.5)
    assert (tc.seconds, tc.mode, tc.model) == (12.5, "ttt", str(tmp_path / "joint"))
    assert tc.data.ttt_challenges == [str(tmp_path / "t.json")] and tc.data.challenges == []
    assert tc.time_budget == pytest.approx(12.5 * 1.2 + 120)  # no predict_cap: the usual hard stop
    capped = dataclasses.replace(cfg, predict_cap=60)  # a long refinement's stop: at most half the cap over
    assert refine_config(capped, joint, tmp_path / "joint", 3_000).time_budget == pytest.approx(3_000 + 30)
    with caplog.at_level(logging.WARNING, logger="arcsub"):
        assert refine(cfg, joint, tmp_path / "joint", 1, time.time() + 5) == tmp_path / "joint"
    assert any("predicting with the joint model" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    "bad, word",
    [
        ("refine_share=1", "refine_"),
        ("refine_share=-0.1", "refine_"),
        ("refine_lr=0", "refine_"),
        ("ensemble=0", "ensemble"),
        ("member_tokens=-1", "member_tokens"),
        ("member_tokens=1e6 refine_share=0.25", "member_tokens"),
        ("predict_cap=-60", "predict_cap"),
    ],
)
def test_a_bad_refinement_or_ensemble_setting_is_one_line(bad, word, capsys):
    rc = main(["dry-run", "--tasks", "1", "--config", str(CPU), *bad.split()])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and word in err[0]


def test_an_ensemble_member_that_overruns_takes_time_from_the_next_not_from_prediction(tmp_path, monkeypatch):
    """120 s for three members: the first (40 s) takes 60, the second would get 20 (< 30): skipped, and the
    third trains in the time left to the end of its share (60 s). Training is a stand-in on a fake clock."""
    from types import SimpleNamespace

    from arcsub.taskmodel import pipeline as task_pipeline

    clock, seen = [1000.0], []

    def fake_train(tc, gpus):
        seen.append((tc.name, tc.seed, round(tc.seconds, 1)))
        clock[0] += 60.0 if len(seen) == 1 else tc.seconds
        return tmp_path / tc.name / "model"

    monkeypatch.setattr(task_pipeline, "time", SimpleNamespace(time=lambda: clock[0]))
    monkeypatch.setattr(task_pipeline, "train_task_model", fake_train)
    cfg = load_pipeline_config(CPU, [*FAST, "ensemble=3"])
    models, stages = task_pipeline.train_members(
        cfg, tmp_path / "t.json", tmp_path, 120.0, tmp_path / "t.json", 1
    )
    assert seen == [("task-model", 0, 40.0), ("task-model-2", 2, 60.0)]
    assert models == [tmp_path / "task-model" / "model", tmp_path / "task-model-2" / "model"]
    assert stages == {"train": 120.0}


@pytest.mark.parametrize("fails_at", [1, 0])
def test_a_later_member_that_fails_keeps_the_members_trained_and_the_first_one_fails_the_run(
    tmp_path, monkeypatch, caplog, fails_at
):
    """ensemble=3 with member 1 (or 0) running out of GPU memory: member 0's model is kept, member 2 is not
    tried, one warning says so; with nothing trained the error is the run's."""
    from arcsub.taskmodel import pipeline as task_pipeline

    seen = []

    def fake_train(tc, gpus):
        seen.append(tc.name)
        if len(seen) - 1 == fails_at:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB\nmore detail")
        return tmp_path / tc.name / "model"

    monkeypatch.setattr(task_pipeline, "train_task_model", fake_train)
    cfg = load_pipeline_config(CPU, [*FAST, "ensemble=3"])
    args = (cfg, tmp_path / "t.json", tmp_path, 0.0, tmp_path / "t.json", 1)
    if fails_at == 0:
        with pytest.raises(RuntimeError, match="out of memory"):
            task_pipeline.train_members(*args)
        return
    with caplog.at_level("WARNING"):
        models, _ = task_pipeline.train_members(*args)
    assert models == [tmp_path / "task-model" / "model"] and seen == ["task-model", "task-model-1"]
    warned = [r.getMessage() for r in caplog.records if "member 1 failed" in r.getMessage()]
    assert warned == [
        "ensemble: member 1 failed (RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB): "
        "predicting with the 1 member(s) trained"
    ]


@pytest.mark.parametrize(
    "takes, expected",
    [
        # 30 s a member in 100 s: three members of 10 steps (100, 70, 40 s left), then 10 s < 30 s: no fourth
        (
            lambda tc: 30.0,
            [("task-model", 0, 10, 100.0), ("task-model-1", 1, 10, 70.0), ("task-model-2", 2, 10, 40.0)],
        ),
        # a member that needs all its time (a short budget): one model, as without an ensemble
        (lambda tc: tc.seconds, [("task-model", 0, 10, 100.0)]),
    ],
)
def test_fixed_length_members_keep_coming_while_the_time_left_fits_one_more(
    tmp_path, monkeypatch, takes, expected
):
    """member_tokens: each member is bounded by its steps (10 of 2 rows x 512 tokens) and fitted to all the
    training time left; the next one trains only if the time left is at least what the last one took, up to
    `ensemble` (5 here). Training is a stand-in on a fake clock."""
    from types import SimpleNamespace

    from arcsub.taskmodel import pipeline as task_pipeline

    clock, seen = [1000.0], []

    def fake_train(tc, gpus):
        seen.append((tc.name, tc.seed, tc.steps, round(tc.seconds, 1)))
        clock[0] += takes(tc)
        return tmp_path / tc.name / "model"

    monkeypatch.setattr(task_pipeline, "time", SimpleNamespace(time=lambda: clock[0]))
    monkeypatch.setattr(task_pipeline, "train_task_model", fake_train)
    cfg = load_pipeline_config(CPU, [*FAST, "ensemble=5", "member_tokens=10240"])
    models, stages = task_pipeline.train_members(
        cfg, tmp_path / "t.json", tmp_path, 100.0, tmp_path / "t.json", 1
    )
    assert seen == expected
    assert models == [tmp_path / name / "model" for name, *_ in expected]
    assert stages == {"train": clock[0] - 1000.0}


def test_fixed_length_members_train_their_tokens_on_any_gpu_count():
    """15 steps of 2 rows x 512 tokens on one GPU, 8 on two (rounded up); all of train.seconds each, not a
    third: without a time budget every member trains its tokens."""
    from arcsub.taskmodel.pipeline import member_pipeline

    cfg = load_pipeline_config(CPU, [*FAST, "ensemble=3", "member_tokens=15360", "train.seconds=60"])
    second = member_pipeline(cfg, 1).train
    assert (second.seed, second.steps, second.seconds) == (cfg.train.seed + 1, 15, 60.0)
    assert member_pipeline(cfg, 1, gpus=2).train.steps == 8
    equal = member_pipeline(load_pipeline_config(CPU, [*FAST, "ensemble=2"]), 1).train
    assert (equal.steps, equal.seconds) == (20, 0.0)


def test_an_ensemble_trains_its_seeds_in_turn_and_pools_their_candidates(arc1_eval_files, tmp_path):
    """ensemble=2: two models with seeds 0 and 1 share the 40 steps (20 each), and every test input's
    candidates come from both (member 0 and 1); a member's own folders keep the runs apart."""
    challenges, _ = arc1_eval_files
    ids = pick_dry_run_tasks(challenges, 1)
    cfg = load_pipeline_config(CPU, [*FAST, "ensemble=2"])
    run = tmp_path / "run"
    summary = run_pipeline(challenges, run, cfg, task_ids=ids)
    assert summary["predicted"] == 1 and summary["model"] == str(run / "task-model" / "model")
    assert summary["ensemble"] == [str(run / "task-model-1" / "model")]
    for folder, seed in (("task-model", 0), ("task-model-1", 1)):
        saved = read_json(run / folder / "model" / "arcsub.json")
        assert saved["steps"] == 20 and read_json(run / folder / "config.json")["seed"] == seed
    cands = read_json(run / "predictions.json")[ids[0]][0]
    assert sorted({c["member"] for c in cands}) == [0, 1] and len(cands) == 2 * 2  # 2 views each


def test_refinement_continues_the_joint_model_on_the_test_tasks_with_confident_pairs(
    arc1_eval_files, tmp_path
):
    """refine_share: the joint run takes the rest of the steps, then a ttt run on the test tasks alone (no
    training sources) starts from its model at refine_lr; prediction uses the refined model. With
    refine_self_train the joint model labels the test inputs first, and the refinement trains on the test
    tasks with the confident pairs added (a file of the run, which never holds a test output)."""
    challenges, _ = arc1_eval_files
    ids = pick_dry_run_tasks(challenges, 1)
    over = ["refine_share=0.25", "refine_lr=0.0005", "refine_self_train=true", "self_train.views=3"]
    cfg = load_pipeline_config(CPU, [*FAST, *over, "self_train.agreement=0.3"])
    summary = run_pipeline(challenges, tmp_path / "run", cfg, task_ids=ids)
    assert summary["predicted"] == 1 and summary["model"].endswith("task-refine/model")
    assert set(summary["stage_seconds"]) == {"train", "refine", "predict"}
    run = tmp_path / "run"
    joint = read_json(run / "task-model" / "model" / "arcsub.json")
    refined = read_json(run / "task-refine" / "config.json")
    assert joint["steps"] == 30 and refined["steps"] == 10
    assert refined["mode"] == "ttt" and refined["model"] == str(run / "task-model" / "model")
    assert refined["optim"]["lr"] == 0.0005
    d = refined["data"]
    assert d["challenges"] == [] and d["re_arc"] is None and d["generated"] == []
    labelled = run / "self_train_challenges.json"
    assert d["ttt_challenges"] == [str(labelled)]
    demos = read_json(run / "test_challenges.json")[ids[0]]
    task = read_json(labelled)[ids[0]]
    assert task["train"][: len(demos["train"])] == demos["train"]  # the demonstrations, then any new pairs
    assert len(task["train"]) <= len(demos["train"]) + len(demos["test"])
    assert all("output" not in p for p in task["test"])


def test_predict_cap_gives_a_long_budget_to_training_and_leaves_a_short_one_alone():
    """Kaggle's 40,500 s with the ARC-AGI-2 recipe's cap: training gets all but 3,600 s (not its 80 % share);
    at 530 s the 20 % share (106 s) is under the cap, so nothing changes; without a budget training is not
    timed."""
    import dataclasses

    from arcsub.taskmodel.pipeline import fit_to_seconds, overrun_bound, training_seconds

    arc2 = load_pipeline_config(CPU.parent / "task-pipeline-arc2.yaml", [])
    assert (arc2.predict_cap, arc2.train_share) == (3600, 0.8)
    long = dataclasses.replace(arc2, time_budget=40_500)
    assert training_seconds(long, 100, 120) == pytest.approx(40_500 - 3_600 - 100)
    assert training_seconds(dataclasses.replace(long, predict_cap=0), 100, 120) == pytest.approx(
        40_500 * 0.8 - 100
    )
    short = dataclasses.replace(arc2, time_budget=530)
    assert training_seconds(short, 10, 0) == pytest.approx(530 * 0.8 - 10)
    assert training_seconds(short, 10, 120) == pytest.approx(530 * 0.8 - 10)  # 106 s kept: more than 72
    assert training_seconds(dataclasses.replace(arc2, time_budget=0), 10, 120) == 0
    fitted = fit_to_seconds(arc2.train, 36_800)  # its hard stop: 20 % + 120 s over, past the whole budget
    assert fitted.time_budget == pytest.approx(36_800 * 1.2 + 120)
    assert fit_to_seconds(arc2.train, 36_800, overrun_bound(long)).time_budget == pytest.approx(
        36_800 + 1_800
    )
    assert (
        fit_to_seconds(arc2.train, 36_800, overrun_bound(dataclasses.replace(long, predict_cap=0))) == fitted
    )


def test_prediction_keeps_its_seconds_per_task_of_a_short_budget():
    """The tenth session's 4-minute ARC-AGI-2 run kept 48 s (train_share 0.8) for 120 tasks that need ~60: 20
    kept their baseline attempts. With predict_s_per_task (0.6 s in the ARC-AGI-2 recipe) training gives way,
    down to half the budget; longer budgets, and the default config (0: off), are unchanged."""
    import dataclasses

    from arcsub.core.data import ArcDataError
    from arcsub.taskmodel.pipeline import training_seconds

    arc2 = load_pipeline_config(CPU.parent / "task-pipeline-arc2.yaml", [])
    assert arc2.predict_s_per_task == 0.6
    four = dataclasses.replace(arc2, time_budget=240)
    assert training_seconds(four, 10, 120) == pytest.approx(240 - 72 - 10)
    assert training_seconds(four, 10, 20) == pytest.approx(240 * 0.8 - 10)  # 12 s needed: the share stands
    assert training_seconds(four, 10, 400) == pytest.approx(120 - 10)  # training keeps half
    assert training_seconds(dataclasses.replace(four, time_budget=40_500), 0, 240) == pytest.approx(36_900)
    assert training_seconds(dataclasses.replace(four, predict_s_per_task=0), 10, 120) == pytest.approx(182)
    assert load_pipeline_config(None, []).predict_s_per_task == 0
    with pytest.raises(ArcDataError, match="predict_s_per_task"):
        load_pipeline_config(None, ["predict_s_per_task=-1"])


def test_a_hung_training_is_given_up_before_a_long_budget_ends():
    """The wait for torchrun: 1.5x + 300 s of a short run's hard stop as before, but at most 15 minutes past a
    10-hour one's (36,900 s + half the 3,600 s cap), inside Kaggle's 40,500 s; no limit without a hard stop."""
    from arcsub.taskmodel.pipeline import hung_rank_limit

    assert hung_rank_limit(557) == pytest.approx(557 * 1.5 + 300)
    assert hung_rank_limit(38_700) == pytest.approx(38_700 + 900)
    assert 100 + hung_rank_limit(38_700) < 40_500  # from training's start, ~100 s into the run
    assert hung_rank_limit(0) is None
