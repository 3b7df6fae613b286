"""bench/task_selection.py: the views x selection x scoring-views table of a prediction run, from its decoded
candidates; for a pooled run it must score as the run did (every member's likelihood, summed)."""

import json

import pytest
from bench_scripts import bench_module
from test_tasktrain import smallest, tiny_config, write_subset


def test_first_views_takes_each_members_first_views():
    sel = bench_module("task_selection")
    pooled = [{"member": m, "view": v} for m in (0, 1) for v in ("id", "d1", "d2", "d3")]
    assert [(c["member"], c["view"]) for c in sel.first_views(pooled, 2, 4)] == [
        (0, "id"),
        (0, "d1"),
        (1, "id"),
        (1, "d1"),
    ]
    single = [{"view": v} for v in ("id", "d1", "d2", "d3")]
    assert [c["view"] for c in sel.first_views(single, 1, 4)] == ["id"]


def test_only_likelihood_strategies_try_other_scoring_views():
    sel = bench_module("task_selection")
    assert sel.selection_plans(["vote", "likelihood"], [2, 4], own=2) == [
        ("vote", 2, "vote"),
        ("likelihood", 2, "likelihood"),
        ("likelihood", 4, "likelihood, 4 scoring views"),
    ]


def test_differing_outputs_counts_each_test_output_whose_attempts_differ():
    sel = bench_module("task_selection")
    a, b = {"attempt_1": [[1]], "attempt_2": [[2]]}, {"attempt_1": [[2]], "attempt_2": [[1]]}
    kept = {"t1": [a, a], "t2": [a]}
    assert sel.differing_outputs(kept, {"t1": [a, a], "t2": [a]}) == 0
    assert sel.differing_outputs(kept, {"t1": [a, b], "t2": [b]}) == 2  # attempt order counts too
    assert sel.differing_outputs(kept, {"t1": [a, a, a], "t3": [a]}) == 2  # outputs the run did not have


def test_a_pooled_run_is_reproduced_and_swept_over_scoring_views(
    run_cli, pretrained_task_model, arc1_eval, tmp_path, capsys
):
    from arcsub.taskmodel.train import train

    eval_ch, eval_sol = write_subset(arc1_eval, smallest(arc1_eval, 2), tmp_path, "ev")
    # a second member that differs from the first: else summing their scores would rank as one model does
    cfg = tiny_config(
        f"data.challenges=[{eval_ch}]", "steps=3", "seq_len=512", "seed=1", f"out_dir={tmp_path}"
    )
    other = train(cfg, progress=False) / "model"
    out = tmp_path / "pool"
    res = run_cli(
        "task-predict",
        pretrained_task_model,
        eval_ch,
        "-o",
        out,
        "--ensemble",
        other,
        "--solutions",
        eval_sol,
        "--quiet",
        "views=4",
        "score_views=2",
        "selection=likelihood",
    )
    assert res.rc == 0, res.err
    run_file = next(out.glob("run__*.json"))
    run = json.loads(run_file.read_text())
    table = tmp_path / "table.json"
    sel = bench_module("task_selection")
    args = [str(run_file), "--solutions", str(eval_sol), "--views", "2,4", "-o", str(table)]
    sel.main([*args, "--strategies", "vote,likelihood", "--score-views", "1,2"])
    rows = json.loads(table.read_text())["rows"]
    assert set(rows) == {
        f"{k} views, {label}"
        for k in (2, 4)
        for label in ("vote", "likelihood", "likelihood, 1 scoring views")
    }
    # on the CPU the run's own setting (4 views, 2 scoring views, likelihood) picks exactly the run's attempts
    assert json.loads(table.read_text())["reproduced"] == {"outputs": 2, "differing": 0}
    assert rows["4 views, likelihood"]["score"] == pytest.approx(run["score"])
    assert rows["4 views, likelihood, 1 scoring views"]["score_views"] == 1
    assert table.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert "4 views, likelihood: score" in capsys.readouterr().out
    # the pooled scorer is the sum of the two members' products of experts, and they do differ
    from arcsub.core.config import from_dict
    from arcsub.core.data import load_tasks
    from arcsub.taskmodel.predict import TaskPredictConfig

    tasks, cfg = load_tasks(eval_ch), from_dict(TaskPredictConfig, run["config"])
    task = next(iter(tasks.values()))
    members = sel.load_members(run, cfg, list(tasks))
    grids = [c["grid"] for c in json.loads(next(out.glob("predictions__*.json")).read_text())[task.id][0]]
    alone = [sel.pool_scorer([m], task, 0, cfg)(grids) for m in members]
    assert alone[0] != pytest.approx(alone[1])
    assert sel.pool_scorer(members, task, 0, cfg)(grids) == pytest.approx(
        [a + b for a, b in zip(*alone, strict=True)]
    )
