"""Task-model inference: views, reverting and voting, and the CLI end to end on real tasks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_taskmodel import one_thread, tiny  # noqa: F401  (the fixture applies here too)
from test_tasktrain import TINY, smallest, write_subset

from arcsub.core.augment import Augmentation
from arcsub.core.candidates import Candidate
from arcsub.core.data import Pair, grids_equal, load_tasks
from arcsub.core.metrics import load_predictions
from arcsub.core.submission import load_submission
from arcsub.taskmodel import predict as taskpredict
from arcsub.taskmodel.data import TaskIndex, free_colours, grid_tokens
from arcsub.taskmodel.predict import TaskPredictConfig, predict_tasks, task_views


def test_free_colours_keep_background_and_output_only_colours():
    pairs = [Pair(np.array([[0, 1], [2, 5]]), np.array([[3, 1]])), Pair(np.array([[4]]), None)]
    assert free_colours(pairs).tolist() == [1, 2, 4, 5, 6, 7, 8, 9]  # 0 and 3 (output only) stay


def test_views_are_distinct_cover_d8_first_and_respect_fixed_colours(arc1_eval):
    task = arc1_eval[smallest(arc1_eval, 1)[0]]
    vs = task_views(task, TaskPredictConfig(views=20))
    assert len(vs) == 20 and len({v.name for v in vs}) == 20 and vs[0].name == "id"
    assert [v.d8 for v in vs[:8]] == list(range(8))
    free = set(free_colours(task.train + [Pair(p.input) for p in task.test]).tolist())
    for v in vs:
        assert all(v.colours[c] == c for c in range(10) if c not in free)
        assert Augmentation.parse(v.name) == v
        g = task.test[0].input
        assert grids_equal(v.revert_grid(v.apply_grid(g)), g)
    assert vs == task_views(task, TaskPredictConfig(views=20))  # seeded by the task: stable across runs
    assert [v.d8 for v in task_views(task, TaskPredictConfig(views=4, d8=False, colours=False))] == [0]


def test_answers_are_reverted_and_voted_and_input_copies_left_out(arc1_eval, monkeypatch):
    """A fake decoder answers every view with the truth in that view's frame, except that a majority of views
    copy the test input: the vote must still return the truth, mapped back from every D8/colour view."""
    ids = smallest(arc1_eval, 3)
    tasks = {t: arc1_eval[t] for t in ids}
    cfg = TaskPredictConfig(views=9, selection="vote")
    index = TaskIndex(ids)
    jobs = [j for t in tasks.values() for j in taskpredict.view_jobs(t, index.row(t.id), cfg)]

    def fake_decode(model, prompts, rows, views, params, progress=False):
        assert len(prompts) == len(jobs)
        out = []
        for k, j in enumerate(jobs):
            test = tasks[j.task_id].test[j.test_index]
            grid = test.input if k % 9 < 5 else test.output
            toks = grid_tokens(j.view.apply_grid(grid)).tolist()
            out.append([Candidate(toks, -1.0 - k, len(toks) + 1, True)])
        return out

    monkeypatch.setattr(taskpredict, "decode", fake_decode)
    preds, attempts = predict_tasks(tiny(num_tasks=3), index, tasks, cfg, progress=False)
    for t in ids:
        for i, pair in enumerate(tasks[t].test):
            assert grids_equal(np.asarray(attempts[t][i][0]), pair.output)
            assert len(preds[t][i]) == 9
            # every view's answer is reverted to the original frame
            grids = [np.asarray(c["grid"]) for c in preds[t][i]]
            assert all(grids_equal(g, pair.output) or grids_equal(g, pair.input) for g in grids)
    keep = TaskPredictConfig(views=9, selection="vote", drop_input_copies=False)
    _, with_copies = predict_tasks(tiny(num_tasks=3), index, tasks, keep, progress=False)
    assert grids_equal(np.asarray(with_copies[ids[0]][0][0]), tasks[ids[0]].test[0].input)


def test_cli_trains_and_predicts_real_tasks_into_a_valid_submission(run_cli, arc1_train, arc1_eval, tmp_path):
    train_ch, _ = write_subset(arc1_train, smallest(arc1_train, 3), tmp_path, "tr")
    eval_ch, eval_sol = write_subset(arc1_eval, smallest(arc1_eval, 2), tmp_path, "ev")
    res = run_cli(
        "task-train",
        "--config",
        TINY,
        "mode=transductive",
        f"data.challenges=[{train_ch}]",
        f"data.ttt_challenges=[{eval_ch}]",
        "steps=4",
        "seq_len=512",
        f"out_dir={tmp_path / 'runs'}",
        "--quiet",
    )
    assert res.rc == 0, res.err
    model = res.out.strip().splitlines()[-1].removeprefix("run: ") + "/model"
    out = tmp_path / "out"
    res = run_cli(
        "task-predict",
        model,
        eval_ch,
        "-o",
        out,
        "--solutions",
        eval_sol,
        "--quiet",
        "views=3",
        "selection=vote+likelihood",
        "score_views=2",
    )
    assert res.rc == 0, res.err
    assert "Kaggle score" in res.out and "pass_n" in res.out
    files = {p.name.split("__")[0]: p for p in out.glob("*.json")}
    assert set(files) == {"predictions", "submission", "run"}
    tasks = load_tasks(eval_ch)
    load_submission(files["submission"], tasks)  # every task, every test input, two valid grids
    preds = load_predictions(files["predictions"])
    assert all(len(cands) == 3 for t in tasks for cands in preds[t])
    assert "score" in json.loads(files["run"].read_text())
    assert run_cli("validate", files["submission"], "--challenges", eval_ch).rc == 0
    res = run_cli("task-predict", model, eval_ch, "-o", out, "--quiet", "views=2", "--tasks", "1")
    assert res.rc == 0, res.err
    assert len(list(out.glob("*.json"))) == 6  # other settings: new files, nothing overwritten


@pytest.mark.parametrize("bad", ["model", "config"])
def test_cli_bad_input_is_one_line(run_cli, arc1_eval, tmp_path, bad):
    eval_ch, _ = write_subset(arc1_eval, smallest(arc1_eval, 1), tmp_path, "ev")
    model = tmp_path / "nope" if bad == "model" else tmp_path
    extra = ["views=0"] if bad == "config" else []
    res = run_cli("task-predict", model, eval_ch, "-o", tmp_path / "o", *extra)
    assert res.rc == 2 and len(res.err_lines) == 1 and res.err.startswith("arcsub: error: ")
