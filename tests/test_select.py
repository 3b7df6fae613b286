"""Tests of arcsub.core.select: vote counting and its tie-breaks, likelihood ranking through a scorer, padding."""

from __future__ import annotations

import numpy as np
import pytest

from arcsub.core.data import ArcDataError
from arcsub.core.select import SELECTORS, group_candidates, rank, select

A, B, C = [[1]], [[2, 2]], [[3], [3]]


def cand(grid, logprob=-1.0, view="id"):
    return {"grid": grid, "logprob": logprob, "tokens": 3, "view": view}


def grids(selected):
    return [None if g is None else np.asarray(g).tolist() for g in selected]


def test_vote_takes_the_most_frequent_grids():
    cands = [cand(A), cand(B), cand(B), cand(C), cand(B), cand(C)]
    assert grids(select(cands, "vote")) == [B, C]


def test_vote_ties_break_by_mean_logprob_then_first_appearance():
    cands = [cand(A, -5.0), cand(B, -1.0), cand(A, -5.0), cand(B, -1.0)]
    assert grids(select(cands, "vote")) == [B, A]  # same count, B more likely
    cands = [cand(A, -2.0), cand(B, -2.0), cand(C, -2.0)]
    assert grids(select(cands, "vote")) == [A, B]  # all tied: first appearance
    cands = [cand(C, -1.0), cand(A, -3.0), cand(A, -1.0)]
    assert grids(select(cands, "vote")) == [A, C]  # count beats likelihood


def test_invalid_candidates_do_not_vote_and_missing_attempts_are_none():
    assert grids(select([cand(None), cand(None), cand(A)], "vote")) == [A, None]
    assert select([], "vote") == [None, None]
    assert select([cand(None)], "vote") == [None, None]


def test_identical_grids_group_by_shape_and_cells():
    """[[1, 1]] and [[1], [1]] hold the same cells but are different answers."""
    groups = group_candidates([cand([[1, 1]]), cand([[1], [1]]), cand(np.array([[1, 1]], dtype=np.uint8))])
    assert [g.votes for g in groups] == [2, 1]


def test_nan_logprobs_rank_last_among_ties():
    cands = [cand(A, float("nan")), cand(B, -3.0)]
    assert grids(select(cands, "vote")) == [B, A]


def test_likelihood_ranks_by_the_scorer_and_calls_it_once():
    calls = []

    def scorer(gs):
        calls.append(len(gs))
        return [{1: -9.0, 2: -1.0, 3: -4.0}[int(np.asarray(g).flat[0])] for g in gs]

    cands = [cand(A), cand(A), cand(A), cand(B), cand(C)]
    assert grids(select(cands, "likelihood", scorer)) == [B, C]
    assert calls == [3]  # one call with the three distinct grids
    assert grids(select(cands, "vote+likelihood", scorer)) == [A, B]  # votes first, then likelihood
    cands = [cand(A), cand(C), cand(B), cand(C), cand(B)]
    assert grids(select(cands, "vote+likelihood", scorer)) == [B, C]


def test_likelihood_with_one_distinct_grid_skips_scoring():
    def scorer(gs):
        raise AssertionError("no ranking needed")

    assert grids(select([cand(A), cand(A), cand(None)], "likelihood", scorer)) == [A, None]


def test_likelihood_needs_a_scorer_and_unknown_strategies_fail():
    with pytest.raises(ArcDataError, match="scorer"):
        select([cand(A), cand(B)], "likelihood")
    with pytest.raises(ArcDataError, match="unknown strategy"):
        rank([cand(A)], "majority")
    assert set(SELECTORS) == {"vote", "likelihood", "vote+likelihood"}


def test_k_attempts():
    cands = [cand(A), cand(B), cand(C)]
    assert grids(select(cands, "vote", k=3)) == [A, B, C]
    assert grids(select(cands, "vote", k=1)) == [A]
