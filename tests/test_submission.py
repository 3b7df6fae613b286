"""Kaggle submissions: building with fallbacks, validating as Kaggle does, and real round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from arcsub.core.data import ArcDataError, Pair, Task, load_solutions, read_json
from arcsub.core.metrics import score_submission
from arcsub.core.submission import build_submission, load_submission, validate_submission, write_submission

IN = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
OUT = [[7, 7], [7, 7]]


def toy_tasks() -> dict[str, Task]:
    train = [Pair(np.array([[1]], np.uint8), np.array([[2]], np.uint8))]
    return {
        "one": Task("one", train, [Pair(IN)]),
        "two": Task("two", train, [Pair(IN), Pair(IN[:1])]),
        "three": Task("three", train, [Pair(IN[:, :1])]),
    }


def test_build_includes_every_task_with_fallbacks():
    tasks = toy_tasks()
    sub = build_submission(
        tasks,
        {
            "one": [[OUT, OUT]],
            "two": [[OUT, None]],  # second test input missing entirely
            "unknown": [[OUT, OUT]],  # not in the challenges: dropped
        },
    )
    assert list(sub) == ["one", "two", "three"]
    assert sub["one"] == [{"attempt_1": OUT, "attempt_2": OUT}]
    # attempt_2 missing with a real attempt_1: the test input gets its chance
    assert sub["two"][0] == {"attempt_1": OUT, "attempt_2": IN.tolist()}
    # a whole test entry missing: input copy, then [[0]]
    assert sub["two"][1] == {"attempt_1": IN[:1].tolist(), "attempt_2": [[0]]}
    assert sub["three"] == [{"attempt_1": IN[:, :1].tolist(), "attempt_2": [[0]]}]
    validate_submission(sub, tasks)
    json.dumps(sub)  # plain ints only


def test_build_replaces_invalid_grids_and_accepts_arrays():
    tasks = toy_tasks()
    sub = build_submission(
        tasks,
        {
            "one": [[[[1, 2], [3]], np.array(OUT)]],  # ragged attempt_1 -> input copy
            "two": [[None, [[10]]], [[[1.5]], OUT]],
            "three": "garbage",
        },
    )
    assert sub["one"] == [{"attempt_1": IN.tolist(), "attempt_2": OUT}]
    assert sub["two"] == [
        {"attempt_1": IN.tolist(), "attempt_2": [[0]]},
        {"attempt_1": IN[:1].tolist(), "attempt_2": OUT},
    ]
    assert type(sub["one"][0]["attempt_2"][0][0]) is int
    validate_submission(sub, tasks)


def test_fallback_input_is_a_copy():
    tasks = toy_tasks()
    sub = build_submission(tasks)
    sub["one"][0]["attempt_1"][0][0] = 9
    assert tasks["one"].test[0].input[0, 0] == 1


def test_write_and_load_roundtrip_atomic(tmp):
    tasks = toy_tasks()
    sub = build_submission(tasks, {"one": [[np.array(OUT, dtype=np.uint8), OUT]]})
    path = write_submission(tmp / "out" / "submission.json", sub)
    assert [p.name for p in path.parent.iterdir()] == ["submission.json"]  # no temp file left behind
    assert read_json(path) == sub
    loaded = load_submission(path, tasks)
    assert loaded["one"][0]["attempt_1"].dtype == np.uint8
    assert loaded["one"][0]["attempt_1"].tolist() == OUT


def _entry(g=OUT):
    return {"attempt_1": g, "attempt_2": g}


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda s: s.pop("three"), "task three: missing from the submission"),
        (lambda s: s.update(extra=[_entry()]), "task extra: not in the challenges"),
        (lambda s: s["two"].pop(), "task two: 1 entries for 2 test input(s)"),
        (lambda s: s["two"].append(_entry()), "task two: 3 entries for 2 test input(s)"),
        (lambda s: s["one"][0].pop("attempt_2"), "task one: entry[0] has no attempt_2"),
        (lambda s: s["one"][0].pop("attempt_1"), "task one: entry[0] has no attempt_1"),
        (lambda s: s["one"][0].update(attempt_1=[[1, 2], [3]]), "task one: entry[0] attempt_1: ragged"),
        (lambda s: s["one"][0].update(attempt_2=[[10]]), "task one: entry[0] attempt_2: colour 10"),
        (lambda s: s["one"][0].update(attempt_2=None), "task one: entry[0] attempt_2"),
        (lambda s: s.update(one=[OUT]), "task one: entry[0] must be an object"),
        (lambda s: s.update(one={"attempt_1": OUT}), "task one: expected a non-empty list"),
        (lambda s: s.update(one=[]), "task one: expected a non-empty list"),
    ],
)
def test_validate_rejects_what_kaggle_rejects(mutate, fragment):
    sub = build_submission(toy_tasks())
    mutate(sub)
    with pytest.raises(ArcDataError) as e:
        validate_submission(sub, toy_tasks(), "sub.json")
    msg = str(e.value)
    assert msg.startswith("sub.json: ") and fragment in msg and "\n" not in msg


def test_validate_without_tasks_checks_shape_only():
    assert validate_submission({"x": [_entry()]})["x"][0]["attempt_2"].shape == (2, 2)
    with pytest.raises(ArcDataError, match="must map task ids"):
        validate_submission([_entry()])
    with pytest.raises(ArcDataError, match="no tasks"):
        validate_submission({})


# ---------------------------------------------------------------- real data


def test_real_roundtrip_true_solutions_score_one(arc1_eval, tmp):
    ids = sorted(arc1_eval)[:20]
    tasks = {t: arc1_eval[t] for t in ids}
    attempts = {t: [[p.output, None] for p in tasks[t].test] for t in ids}
    path = write_submission(tmp / "submission.json", build_submission(tasks, attempts))
    sub = load_submission(path, tasks)
    res = score_submission(read_json(path), tasks, path)
    assert res["score"] == 1.0
    assert res["tasks"] == 20 and res["solved_outputs"] == res["test_outputs"] == sum(
        len(t.test) for t in tasks.values()
    )
    assert score_submission(sub, tasks)["score"] == 1.0


def test_real_test_inputs_as_attempts_score_what_we_count(arc1_eval, arc1_eval_files, tmp):
    ids = sorted(arc1_eval)[:20]
    tasks = {t: arc1_eval[t] for t in ids}
    path = write_submission(tmp / "submission.json", build_submission(tasks, None))
    # independent count straight from the raw JSON files: attempt_1 is the input, attempt_2 is [[0]]
    challenges = json.loads(arc1_eval_files[0].read_text())
    solutions = json.loads(arc1_eval_files[1].read_text())
    expected = sum(
        sum(
            t_in["input"] == out or out == [[0]]
            for t_in, out in zip(challenges[t]["test"], solutions[t], strict=True)
        )
        / len(solutions[t])
        for t in ids
    ) / len(ids)
    sols = load_solutions(arc1_eval_files[1])
    res = score_submission(read_json(path), {t: sols[t] for t in ids})
    assert res["score"] == pytest.approx(expected)
    assert res["score"] < 0.1


def test_sample_submission_validates_against_test_challenges(data_root):
    from arcsub.core.data import load_tasks

    folder = data_root / "arc-agi-1"
    if not (folder / "sample_submission.json").exists():
        pytest.skip("sample_submission.json not in the data folder")
    tasks = load_tasks(folder / "arc-agi_test_challenges.json")
    sub = load_submission(folder / "sample_submission.json", tasks)
    assert len(sub) == len(tasks) == 100
