"""Self-training pairs: the joint model's confident answers to test inputs join the refinement's
demonstrations; a split vote, a lone vote or a copy of the input adds nothing; test outputs stay hidden."""

from __future__ import annotations

import numpy as np

from arcsub.core.data import load_tasks
from arcsub.taskmodel.selftrain import SelfTrainSettings, confident_answer, with_confident_pairs


def cand(grid) -> dict:
    return {
        "grid": None if grid is None else np.asarray(grid).tolist(),
        "logprob": -1.0,
        "tokens": 3,
        "view": "id",
    }


def test_confident_answer_needs_agreement_and_two_votes():
    a, b, inp = [[1, 2]], [[3]], np.array([[5, 5]])
    s = SelfTrainSettings(agreement=0.5, min_votes=2)
    assert confident_answer([cand(a), cand(a), cand(b)], inp, s).tolist() == a
    assert confident_answer([cand(a), cand(b)], inp, s) is None  # one vote each
    assert confident_answer([cand(a), cand(a), cand(b), cand(b), cand([[4]])], inp, s) is None  # 2 of 5
    assert confident_answer([cand(inp), cand(inp), cand(inp), cand(a)], inp, s) is None  # copies never vote
    assert confident_answer([cand(None), cand(a), cand(a)], inp, s).tolist() == a  # invalid answers skipped


def test_confident_pairs_join_the_demonstrations_of_real_tasks(arc1_eval_files):
    challenges, _ = arc1_eval_files
    tasks = load_tasks(challenges)
    ids = sorted(tasks)[:2]
    sub = {t: tasks[t] for t in ids}
    answer = [[0, 1], [1, 0]]
    preds = {ids[0]: [[cand(answer)] * 3 for _ in sub[ids[0]].test], ids[1]: [[cand([[1]]), cand([[2]])]]}
    out, added = with_confident_pairs(sub, preds, SelfTrainSettings())
    assert added == len(sub[ids[0]].test)
    first = out[ids[0]]
    assert len(first.train) == len(sub[ids[0]].train) + added
    assert np.array_equal(first.train[-1].input, sub[ids[0]].test[-1].input)
    assert first.train[-1].output.tolist() == answer
    assert all(p.output is None for t in out.values() for p in t.test)  # test outputs stay hidden
    assert len(out[ids[1]].train) == len(sub[ids[1]].train)  # a split vote adds nothing
