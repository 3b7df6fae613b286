"""The symbolic solver on real ARC tasks: symmetry completion, the program search (simple first, colour maps,
two steps), the deadline, the merge with a model's attempts, `arcsub solve`, and the pipelines' background
solver whose answers reach the submission."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from arcsub.core.combine import SOLVER_FILE, combine, combine_entry
from arcsub.core.data import grids_equal, load_tasks, read_json
from arcsub.core.runs import merge_attempts, start_run
from arcsub.core.submission import load_submission
from arcsub.solver.feature_rule import FEATURE_NAMES, fit_feature_rules
from arcsub.solver.local_rule import OUTSIDE, first_seen
from arcsub.solver.run import SolverSettings, solve_tasks, start_solver, wait_solver
from arcsub.solver.search import fit_colours, programs, solve
from arcsub.solver.symmetry import complete, complete_hidden_part

# ARC-AGI-1 training tasks and the program the search finds first (measured, docs/experiments/solver.md)
KNOWN = {
    "3c9b0459": "rot180",
    "0d3d703e": "identity | colours",  # a colour map alone
    "3af2c5a8": "mirror_four",
    "28bf18c6": "crop_content | tile1x2",  # two steps
    "3428a4f5": "overlay_xor | colours",  # two halves overlaid, painted by the colour map
    "00d62c1b": "fill_enclosed_4",  # holes of shapes filled
    "2dc579da": "panel_unique",  # the panel between separator lines that differs from the others
    "496994bd": "symmetrize_rows",  # a shape made whole by its mirror image
    "7b6016b9": "fill_enclosed_2 | colours",  # the test's new shape colour keeps itself, as the others do
    "007bbfb7": "self_kron",  # the grid placed where it has cells
    "4258a5f9": "identity | local_counts",  # a learned local rule: cells next to grey turn blue
    "1e0a9b12": "gravity_down",  # loose cells fall
    "ded97339": "connect",  # lines between marks of one colour in a row or a column
    "6e82a1ae": "identity | recolour_by_area_4",  # each shape coloured by its size
    "08ed6ac7": "identity | recolour_by_size_rank_4",  # bars coloured by their length's rank
    "2281f1f4": "identity | local_rays",  # red where a cell sees grey straight up and straight right
}
# tasks where simpler programs fit the demonstrations but cannot answer the test: the answer comes from a later one
LATER = {
    "6d75e8bb": "identity | local_lines",  # a shape's box filled: black cells whose row and column hold it
    "810b9b61": "identity | recolour_by_holes_4",  # closed loops green, open strokes kept
    "25ff71a9": "identity | local_cell+at-1+0",  # a shift down: each cell takes the colour above it
    "d037b0a7": "identity | local_cell+ray-1+0",  # colours drip down: a black cell takes the first colour above
}


@pytest.mark.parametrize("tid", sorted(KNOWN))
def test_the_search_finds_the_simplest_program_and_answers_the_test(arc1_train, tid):
    task = arc1_train[tid]
    first = next(programs(task))
    assert first.name.startswith(KNOWN[tid])
    name, answers = solve(task)
    assert name == first.name
    for pair, ours in zip(task.test, answers, strict=True):
        assert 1 <= len(ours) <= 2 and grids_equal(ours[0], pair.output)


@pytest.mark.parametrize("tid", sorted(LATER))
def test_a_program_that_cannot_answer_the_test_gives_way_to_the_next(arc1_train, tid):
    task = arc1_train[tid]
    assert not next(programs(task)).name.startswith(LATER[tid])
    name, answers = solve(task)
    assert name == LATER[tid]
    for pair, ours in zip(task.test, answers, strict=True):
        assert grids_equal(ours[0], pair.output)


def test_a_feature_rule_reads_only_its_features_and_refuses_an_unseen_value():
    shift = [np.array([[1, 0], [0, 2]], dtype=np.uint8), np.array([[3, 3], [0, 0]], dtype=np.uint8)]
    below = [
        np.vstack([np.full((1, 2), OUTSIDE - 10, dtype=np.uint8), g[:-1]]) for g in shift
    ]  # shifted down
    rules = list(fit_feature_rules(shift, below))
    assert rules and rules[0].columns == (0, FEATURE_NAMES.index("at-1+0"))  # the fewest features first
    test = np.array([[1, 3], [0, 0]], dtype=np.uint8)  # neighbourhoods no demonstration showed whole
    assert rules[0](test).tolist() == [[0, 0], [1, 3]]
    assert rules[0](np.array([[5, 0], [0, 0]], dtype=np.uint8)) is None  # colour 5 above: never seen


def test_rays_see_the_first_coloured_cell_in_each_direction_and_outside_past_the_border():
    grid = np.array([[0, 1, 0, 0], [2, 0, 0, 3], [0, 0, 0, 0]], dtype=np.uint8)
    x = OUTSIDE
    assert first_seen(grid, -1, 0).tolist() == [[x, x, x, x], [x, 1, x, x], [2, 1, x, 3]]  # looking up
    assert first_seen(grid, 1, 0).tolist() == [[2, x, x, 3], [x, x, x, x], [x, x, x, x]]  # looking down
    assert first_seen(grid, 0, -1).tolist() == [[x, x, 1, 1], [x, 2, 2, 2], [x, x, x, x]]  # looking left
    assert first_seen(grid, 0, 1).tolist() == [[1, x, x, x], [3, 3, 3, x], [x, x, x, x]]  # looking right


def test_symmetry_completion_fills_the_hidden_cells_of_a_real_task(arc1_train):
    task = arc1_train["0dfd9992"]  # a periodic wallpaper with black holes
    for pair in task.train:
        assert grids_equal(complete(pair.input, 0), pair.output)
    assert complete(task.train[0].input, 7) is None  # a colour that is absent: no answer


def test_the_hidden_rectangle_alone_is_cut_from_the_completed_picture():
    pattern = np.add.outer(np.arange(8), np.arange(8)) % 3 + 1  # symmetric about the main diagonal
    hidden = pattern.astype(np.uint8).copy()
    hidden[2:4, 5:7] = 0
    assert grids_equal(complete_hidden_part(hidden, 0), pattern[2:4, 5:7].astype(np.uint8))


def test_a_colour_map_must_be_one_colour_per_colour_across_demonstrations():
    a, b = np.array([[1, 2]], np.uint8), np.array([[5, 6]], np.uint8)
    assert fit_colours([a, a], [b, b]) == (-1, 5, 6, -1, -1, -1, -1, -1, -1, -1)  # every colour moves
    kept = fit_colours([a], [np.array([[1, 6]], np.uint8)])  # 1 keeps itself: so do the colours never seen
    assert kept == (0, 1, 6, 3, 4, 5, 6, 7, 8, 9)
    assert fit_colours([a, a], [b, np.array([[5, 7]], np.uint8)]) is None  # 2 -> 6 and 2 -> 7
    assert fit_colours([a], [np.array([[5]], np.uint8)]) is None  # the shapes differ


def test_a_colour_the_demonstrations_never_mapped_gets_no_answer(arc1_train):
    """aabf363d recolours a shape with its corner's colour; the test uses colours no demonstration showed, so
    the colour map learned there cannot say what they become (it answered wrongly before this rule)."""
    assert solve(arc1_train["aabf363d"]) is None


def test_no_local_rule_is_learned_over_a_crop(arc1_train):
    """A lookup table over the few cells of a cropped object fitted 5614dbcf's demonstrations by chance and
    answered wrongly; local rules now follow only steps that keep the grid's size."""
    assert solve(arc1_train["5614dbcf"]) is None


def test_a_task_no_program_explains_gets_no_answer(arc1_train):
    task = arc1_train["05269061"]  # diagonals continued over the whole grid: not in the catalogue
    assert solve(task) is None


def test_the_deadline_stops_the_search_and_is_read_from_the_injected_clock(arc1_train):
    ticks = itertools.count()
    task = arc1_train["3af2c5a8"]
    # every step reads the clock once: a deadline of 3 ticks stops before the mirror tilings are tried
    assert solve(task, deadline=3, clock=lambda: next(ticks)) is None
    assert solve(task, deadline=1e9, clock=lambda: next(ticks)) is not None


def test_the_solver_answer_goes_first_and_the_models_best_different_guess_second():
    s, m1, m2 = [[1]], [[2]], [[3]]
    assert combine_entry([s], [m1, m2]) == [np.array(s), np.array(m1)]
    assert [g.tolist() for g in combine_entry([s], [s, m2])] == [s, m2]  # the model agreed: its second
    assert [g.tolist() for g in combine_entry([s, m2], [])] == [s, m2]  # no model: the solver's second
    assert combine_entry([], [m1]) == [np.array(m1), None]  # nothing explained: the model's as they are
    merged = combine({"a": [[s]]}, {"a": [[m1, m2]], "b": [[m2, m1]]})
    assert [g.tolist() for g in merged["a"][0]] == [s, m1] and [g.tolist() for g in merged["b"][0]] == [
        m2,
        m1,
    ]


def test_solve_writes_a_scored_submission_and_merges_a_models(run_cli, arc1_train, tmp_path, write):
    ids = ["3c9b0459", "05269061"]
    tasks = {t: arc1_train[t].to_json() for t in ids}
    challenges = write(tmp_path / "ch.json", tasks)
    truth = write(tmp_path / "sol.json", {t: [p.output.tolist() for p in arc1_train[t].test] for t in ids})
    model = {
        t: [{"attempt_1": [[0]], "attempt_2": p.output.tolist()} for p in arc1_train[t].test] for t in ids
    }
    model_file = write(tmp_path / "model.json", model)
    res = run_cli("solve", challenges, "-o", tmp_path / "sub.json", "--solutions", truth, "--json")
    assert res.rc == 0 and json.loads(res.out) | {"seconds": 0} == {
        "tasks": 2,
        "explained": 1,
        "seconds": 0,
        "submission": str(tmp_path / "sub.json"),
        "score": 0.5,
    }
    assert read_json(tmp_path / "sub.programs.json") == {"3c9b0459": "rot180"}
    res = run_cli(
        "solve", challenges, "-o", tmp_path / "both.json", "--merge", model_file, "--solutions", truth
    )
    assert res.rc == 0 and "1 of 2 tasks explained" in res.out and "score 1.0000" in res.out
    both = load_submission(tmp_path / "both.json", load_tasks(challenges))
    assert grids_equal(both["05269061"][0]["attempt_2"], arc1_train["05269061"].test[0].output)


def test_solve_refuses_a_missing_challenges_file_in_one_line(run_cli, tmp_path):
    res = run_cli("solve", tmp_path / "nope.json", "-o", tmp_path / "sub.json")
    assert res.rc == 2 and len(res.err_lines) == 1 and "nope.json" in res.err
    assert not (tmp_path / "sub.json").exists()


def test_the_background_solver_of_a_run_reaches_its_submission(arc1_train, tmp_path, write):
    ids = ["3c9b0459", "05269061"]
    challenges = write(tmp_path / "ch.json", {t: arc1_train[t].to_json(with_test_outputs=True) for t in ids})
    out, tasks = start_run(challenges, tmp_path / "run", None)
    proc = start_solver(tasks, out, SolverSettings())
    wait_solver(proc, 120)
    assert proc.returncode == 0 and list(read_json(out / SOLVER_FILE)) == ["3c9b0459"]
    seen = read_json(out / "solver_challenges.json")  # what the solver read: no test output
    assert all("output" not in p for t in seen.values() for p in t["test"])
    assert start_solver(tasks, out, SolverSettings()) is None  # answered already: a resumed run keeps them
    merge_attempts(out, tasks)
    sub = load_submission(out / "submission.json", tasks)
    assert grids_equal(sub["3c9b0459"][0]["attempt_1"], arc1_train["3c9b0459"].test[0].output)
    assert grids_equal(sub["05269061"][0]["attempt_1"], arc1_train["05269061"].test[0].input)  # fallback


def test_a_stopped_solver_keeps_what_it_found_and_a_resumed_one_goes_on_from_there(
    arc1_train, tmp_path, write, monkeypatch
):
    from arcsub.solver import run

    ids = ["3c9b0459", "3af2c5a8", "05269061"]
    challenges = write(tmp_path / "ch.json", {t: arc1_train[t].to_json() for t in ids})
    real, searched = run.solve, []

    def killed_at_the_third(task, **kw):  # the pipeline's deadline kills the process there
        if len(searched) == 2:
            raise KeyboardInterrupt
        searched.append(task.id)
        return real(task, **kw)

    monkeypatch.setattr(run, "solve", killed_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        run.write_answers(challenges, tmp_path, SolverSettings())
    assert list(read_json(tmp_path / SOLVER_FILE)) == ids[:2]  # written as found
    assert not (tmp_path / run.DONE_FILE).exists()
    searched.clear()
    monkeypatch.setattr(run, "solve", lambda task, **kw: searched.append(task.id) or real(task, **kw))
    run.write_answers(challenges, tmp_path, SolverSettings())
    assert searched == ["05269061"]  # the answered tasks are not searched again
    assert list(read_json(tmp_path / SOLVER_FILE)) == ids[:2] and (tmp_path / run.DONE_FILE).exists()
    out, tasks = start_run(challenges, tmp_path, None)
    assert start_solver(tasks, out, SolverSettings()) is None  # finished: a resumed run keeps its answers


def test_solve_tasks_keeps_only_explained_tasks(arc1_train):
    found = solve_tasks({t: arc1_train[t] for t in ("3af2c5a8", "05269061")}, SolverSettings())
    assert list(found) == ["3af2c5a8"] and found["3af2c5a8"]["program"] == "mirror_four"


def test_solver_gain_counts_the_tasks_the_solver_adds_to_a_scored_run(run_cli, arc1_train, tmp_path, write):
    from bench_scripts import bench_module

    ids = ["3c9b0459", "05269061"]
    challenges = write(tmp_path / "ch.json", {t: arc1_train[t].to_json() for t in ids})
    truth = write(tmp_path / "sol.json", {t: [p.output.tolist() for p in arc1_train[t].test] for t in ids})
    assert run_cli("solve", challenges, "-o", tmp_path / "solver.json").rc == 0
    run = write(tmp_path / "summary.json", {"task_scores": {"3c9b0459": 0.0, "05269061": 1.0}})
    gain = bench_module("solver_gain")
    assert (
        gain.main([str(tmp_path / "solver.json"), str(truth), str(run), "-o", str(tmp_path / "g.json")]) == 0
    )
    row = read_json(tmp_path / "g.json")["runs"][str(run)]
    assert row | {"tasks": 2} == {
        "tasks": 2,
        "model": 0.5,
        "merged_low": 1.0,
        "merged_high": 1.0,
        "added": ["3c9b0459"],
        "wrong_first": [],
    }
    other = write(tmp_path / "other.json", {"task_scores": {"05269061": 1.0}})  # a run without the task
    assert gain.main([str(tmp_path / "solver.json"), str(truth), str(other)]) == 2


def test_a_task_whose_search_fails_is_left_out_and_the_others_keep_their_answers(
    arc1_train, monkeypatch, caplog
):
    from arcsub.solver import run

    real = run.solve

    def failing(task, **kw):
        if task.id == "3c9b0459":
            raise IndexError("a bug on an odd grid")
        return real(task, **kw)

    monkeypatch.setattr(run, "solve", failing)
    found = solve_tasks({t: arc1_train[t] for t in ("3c9b0459", "3af2c5a8")}, SolverSettings())
    assert list(found) == ["3af2c5a8"] and "task 3c9b0459 failed" in caplog.text
