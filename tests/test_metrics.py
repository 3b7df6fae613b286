"""Metrics and Kaggle score against hand-computed values on crafted cases."""

from __future__ import annotations

import numpy as np
import pytest

from arcsub.core.data import ArcDataError
from arcsub.core.metrics import (
    METRIC_KEYS,
    compute_metrics,
    format_metrics_table,
    group_candidates,
    load_predictions,
    normalize_candidate,
    output_metrics,
    score_submission,
    solved_alone,
    vote,
)

T = [[1, 2], [3, 4]]  # the truth of most cases
W1 = [[1, 2], [3, 5]]  # right shape, 3 of 4 pixels right
W2 = [[0, 0], [0, 0]]  # right shape, no pixel right
SMALL = [[1]]  # wrong shape
RAGGED = [[1, 2], [3]]
COLOUR10 = [[10, 2], [3, 4]]


def metrics_of(cands, truth=T):
    return compute_metrics({"t": [cands]}, {"t": [truth]})


def approx(d):
    return {k: pytest.approx(v) for k, v in d.items()}


def pick(d, keys=METRIC_KEYS):
    return {k: d[k] for k in keys}


def test_all_correct():
    m = metrics_of([T, T, T])
    assert pick(m) == approx(
        dict(accuracy=1, correct_pixels=1, correct_size=1, pass_n=1, vote_1=1, vote_2=1, unanswered=0)
    )
    assert m["n"] == 3 and m["tasks"] == 1 and m["missing"] == [] and m["warnings"] == []


def test_all_wrong_wrong_shape_vs_right_shape_some_pixels():
    m = metrics_of([W1, SMALL])
    # W1: right shape, 3/4 pixels; SMALL: wrong shape, pixels count 0
    assert pick(m) == approx(
        dict(accuracy=0, correct_pixels=0.375, correct_size=0.5, pass_n=0, vote_1=0, vote_2=0, unanswered=0)
    )


def test_invalid_candidates_count_in_n_and_score_zero():
    m = metrics_of([None, RAGGED, COLOUR10, T, [[1.0, 2], [3, 4]], "junk", []])
    n = 7
    assert pick(m) == approx(
        dict(
            accuracy=1 / n,
            correct_pixels=1 / n,
            correct_size=1 / n,
            pass_n=1,
            vote_1=1,
            vote_2=1,
            unanswered=6 / n,
        )
    )
    assert m["n"] == n


def test_no_candidates_is_unanswered():
    m = metrics_of([])
    assert m["unanswered"] == 1 and m["accuracy"] == 0 and m["pass_n"] == 0


@pytest.mark.parametrize(
    "cands, vote_1, vote_2",
    [
        ([W1, T, W1, T, W2], 0, 1),  # W1 and T tie on 2 votes: W1 appeared first
        ([T, W1, W1, T], 1, 1),  # tie, T first
        ([W1, W2, T], 0, 0),  # three-way tie: W1, W2 first
        ([W1, T, T, W2, W2, W2], 0, 1),  # W2 (3) > T (2) > W1 (1)
        ([None, None, None, W1, T, T], 1, 1),  # invalid ones never vote
        ([W2, W1, W1, None, T], 0, 0),  # W1 (2), then W2 (1, first of the singles)
    ],
)
def test_vote_ties_first_appearance_wins(cands, vote_1, vote_2):
    m = metrics_of(cands)
    assert (m["vote_1"], m["vote_2"], m["pass_n"]) == (vote_1, vote_2, int(any(c == T for c in cands)))


def test_group_candidates_counts_and_order():
    groups = group_candidates([normalize_candidate(c) for c in [W1, T, W1, None, T, W2]])
    assert [(g.tolist(), n) for g, n in groups] == [(W1, 2), (T, 2), (W2, 1)]
    assert [g.tolist() for g in vote([normalize_candidate(c) for c in [W2, T, T]], 1)] == [T]


def test_multi_output_tasks_weigh_the_same_as_single_output_tasks():
    preds = {"a": [[T], [W1]], "b": [[T]]}
    sols = {"a": [T, T], "b": [T]}
    m = compute_metrics(preds, sols)
    # task a: 1 of 2 outputs right -> 0.5; task b: 1 -> mean 0.75 (per-output average would be 2/3)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["per_task"]["a"]["accuracy"] == pytest.approx(0.5)
    assert m["correct_pixels"] == pytest.approx(((1 + 0.75) / 2 + 1) / 2)
    assert m["tasks"] == 2 and m["test_outputs"] == 3
    s = score_submission({"a": [{"attempt_1": T, "attempt_2": W1}, {"attempt_1": W1, "attempt_2": W2}],
                          "b": [{"attempt_1": W2, "attempt_2": T}]}, sols)  # fmt: skip
    assert s["score"] == pytest.approx(0.75)
    assert (s["solved_outputs"], s["test_outputs"], s["tasks"]) == (2, 3, 2)
    assert s["per_task"] == {"a": 0.5, "b": 1.0}


def test_missing_task_counts_all_zero_and_is_listed():
    m = compute_metrics({"a": [[T, T]]}, {"a": [T], "b": [T, T]})
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["unanswered"] == pytest.approx(0.5)
    assert m["per_task"]["b"] == approx(dict.fromkeys(METRIC_KEYS, 0) | {"unanswered": 1})
    assert m["missing"] == ["b"]
    assert len(m["warnings"]) == 1 and "b" in m["warnings"][0]


def test_extra_predicted_task_ignored_with_warning():
    m = compute_metrics({"a": [[T]], "zzz": [[T]]}, {"a": [T]})
    assert m["accuracy"] == 1 and m["tasks"] == 1
    assert any("zzz" in w for w in m["warnings"])


def test_rich_candidates_equal_plain_ones():
    plain = {"a": [[W1, T, None, T]]}
    rich = {
        "a": [
            [
                {"grid": W1, "logprob": -3.0, "tokens": 12, "view": "rot90"},
                {"grid": T, "logprob": -1.0, "tokens": 12, "view": "id"},
                {"grid": None, "logprob": -9.0, "tokens": 40, "view": "flip"},
                {"grid": T, "logprob": -1.5, "tokens": 12, "view": "transpose"},
            ]
        ]
    }
    sols = {"a": [T]}
    assert pick(compute_metrics(rich, sols)) == approx(pick(compute_metrics(plain, sols)))
    assert compute_metrics(rich, sols)["unanswered"] == pytest.approx(0.25)


def test_submission_shaped_predictions_are_accepted():
    m = compute_metrics({"a": [{"attempt_1": W1, "attempt_2": T}]}, {"a": [T]})
    assert (m["accuracy"], m["pass_n"], m["n"]) == (0.5, 1, 2)


def test_predictions_file_roundtrip(tmp, write):
    p = write(tmp / "p.json", {"a": [[T, None, {"grid": RAGGED}]]})
    preds = load_predictions(p)
    assert preds["a"][0][0].dtype == np.uint8 and preds["a"][0][1] is None and preds["a"][0][2] is None


@pytest.mark.parametrize(
    "preds, fragment",
    [
        ([[T]], "must map task ids"),
        ({}, "no tasks"),
        ({"a": {"x": 1}}, "task a"),
        ({"a": [5]}, "task a: test[0]"),
        ({"a": [[T], [T]]}, "2 candidate list(s) for 1 test output(s)"),
    ],
)
def test_bad_prediction_structure_raises_one_line(preds, fragment):
    with pytest.raises(ArcDataError) as e:
        compute_metrics(preds, {"a": [T]}, path="p.json")
    assert fragment in str(e.value) and "\n" not in str(e.value)


def _naive_output_metrics(truth, cands):
    """An independent, list-based version of the definitions (no numpy)."""

    def valid(c):
        return (
            isinstance(c, list) and c and all(isinstance(r, list) and len(r) == len(c[0]) and r for r in c)
            and all(type(v) is int and 0 <= v <= 9 for r in c for v in r)
        )  # fmt: skip

    n = len(cands)
    good = [c if valid(c) else None for c in cands]
    same_shape = [c is not None and len(c) == len(truth) and len(c[0]) == len(truth[0]) for c in good]
    exact = [c == truth for c in good]
    pix = [
        sum(a == b for ra, rb in zip(c, truth, strict=True) for a, b in zip(ra, rb, strict=True)) / (len(truth) * len(truth[0]))
        if ok else 0.0 for c, ok in zip(good, same_shape, strict=True)
    ]  # fmt: skip
    counts: dict[str, int] = {}
    for c in good:
        if c is not None:
            counts[repr(c)] = counts.get(repr(c), 0) + 1
    ranked = sorted(counts, key=lambda k: -counts[k])
    return dict(
        accuracy=sum(exact) / n,
        correct_pixels=sum(pix) / n,
        correct_size=sum(same_shape) / n,
        pass_n=float(any(exact)),
        vote_1=float(repr(truth) in ranked[:1]),
        vote_2=float(repr(truth) in ranked[:2]),
        unanswered=sum(c is None for c in good) / n,
    )


def test_random_candidates_match_an_independent_implementation():
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = rng.integers(1, 4, size=2)
        truth = rng.integers(0, 3, size=(h, w)).tolist()
        cands = []
        for _ in range(rng.integers(1, 8)):
            kind = rng.integers(0, 5)
            if kind == 0:
                cands.append(None)
            elif kind == 1:
                cands.append([r[:] for r in truth])
            elif kind == 2:
                cands.append(rng.integers(0, 3, size=(rng.integers(1, 4), rng.integers(1, 4))).tolist())
            elif kind == 3:
                g = [r[:] for r in truth]
                g[0][0] = (g[0][0] + 1) % 3
                cands.append(g)
            else:
                cands.append([[11]])
        got = output_metrics(np.array(truth, dtype=np.uint8), [normalize_candidate(c) for c in cands])
        assert got == approx(_naive_output_metrics(truth, cands)), (truth, cands)


# ---------------------------------------------------------------- Kaggle score


def test_score_all_correct_and_all_wrong():
    sols = {"a": [T], "b": [W1, W2]}
    right = {"a": [{"attempt_1": T, "attempt_2": W2}], "b": [{"attempt_1": W1, "attempt_2": T},
                                                               {"attempt_1": T, "attempt_2": W2}]}  # fmt: skip
    assert score_submission(right, sols)["score"] == 1.0
    wrong = {"a": [{"attempt_1": W1, "attempt_2": W2}], "b": [{"attempt_1": T, "attempt_2": T},
                                                               {"attempt_1": SMALL, "attempt_2": T}]}  # fmt: skip
    s = score_submission(wrong, sols)
    assert s["score"] == 0.0 and s["solved_outputs"] == 0 and s["missing"] == []


def test_score_invalid_or_missing_attempts_are_wrong_not_crashes():
    sols = {"a": [T], "b": [T], "d": [T]}
    sub = {
        "a": [{"attempt_1": RAGGED, "attempt_2": T}],  # invalid attempt_1, right attempt_2
        "b": [{"attempt_1": COLOUR10, "attempt_2": None}],
        "d": [{"attempt_1": "[[1,2],[3,4]]", "attempt_2": {"grid": 5}}],
    }  # a missing attempt key is refused, as validate refuses it (tests/test_bad_inputs.py)
    s = score_submission(sub, sols)
    assert s["per_task"] == {"a": 1.0, "b": 0.0, "d": 0.0}
    assert s["score"] == pytest.approx(1 / 3)


def test_score_missing_task_scores_zero_and_is_named():
    s = score_submission({"a": [{"attempt_1": T, "attempt_2": T}], "x": []}, {"a": [T], "b": [T], "c": [T]})
    assert s["score"] == pytest.approx(1 / 3)
    assert s["missing"] == ["b", "c"] and s["extra"] == ["x"]
    assert any("b, c" in w for w in s["warnings"])


@pytest.mark.parametrize(
    "sub, fragment",
    [
        ([], "must map task ids"),
        ({"a": {"attempt_1": T}}, "task a: expected a list"),
        ({"a": [{"attempt_1": T, "attempt_2": T}] * 2}, "task a: 2 entries for 1"),
        ({"a": [T]}, "task a: entry[0]"),
    ],
)
def test_score_bad_structure_raises(sub, fragment):
    with pytest.raises(ArcDataError) as e:
        score_submission(sub, {"a": [T]}, path="sub.json")
    assert str(e.value).startswith("sub.json") and fragment in str(e.value)


def test_score_accepts_tasks_as_solutions(arc1_eval):
    ids = list(arc1_eval)[:5]
    tasks = {t: arc1_eval[t] for t in ids}
    sub = {t: [{"attempt_1": p.output.tolist(), "attempt_2": [[0]]} for p in tasks[t].test] for t in ids}
    assert score_submission(sub, tasks)["score"] == 1.0


# ---------------------------------------------------------------- table


def test_metrics_table_text_and_markdown():
    m = metrics_of([W1, T, None, T])
    text = format_metrics_table(m)
    header, row = text.splitlines()
    assert header.split() == ["accuracy", "correct_pixels", "correct_size", "pass_n", "vote_2", "unanswered"]
    assert row.split() == ["50.0%", "68.8%", "75.0%", "100.0%", "100.0%", "25.0%"]
    md = format_metrics_table(m, markdown=True).splitlines()
    assert md[0] == "| accuracy | correct_pixels | correct_size | pass_n | vote_2 | unanswered |"
    assert md[2] == "| 50.0% | 68.8% | 75.0% | 100.0% | 100.0% | 25.0% |"
    many = format_metrics_table({"seed 0": m, "seed 1": metrics_of([W1])}, markdown=True).splitlines()
    assert many[0].startswith("| run | accuracy") and many[3].startswith("| seed 1 | 0.0%")


def test_solved_alone_names_what_no_other_run_solves():
    solved = {"a": {"t1", "t2", "t3"}, "b": {"t2", "t4"}, "c": {"t3"}}
    assert solved_alone(solved) == {"a": ["t1"], "b": ["t4"], "c": []}
    assert solved_alone({"only": {"t2", "t1"}}) == {"only": ["t1", "t2"]}
