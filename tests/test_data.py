"""Compressed ARC files (.json.xz, .json.gz) read like plain ones, on a real slice of ARC-AGI-1 training."""

from __future__ import annotations

import gzip
import json
import lzma
from pathlib import Path

import pytest

from arcsub.core.data import (
    ArcDataError,
    Pair,
    grid_to_list,
    grids_equal,
    load_generated,
    load_pairs,
    load_solutions,
    load_tasks,
    load_truth,
    read_json,
    to_grid,
)

OPENERS = {".xz": lzma.open, ".gz": gzip.open}


def write_compressed(path: Path, obj) -> Path:
    with OPENERS[path.suffix](path, "wt", encoding="utf-8") as f:
        json.dump(obj, f)
    return path


def real_slice(arc1_train, n: int = 4) -> tuple[dict, dict]:
    ids = sorted(arc1_train)[:n]
    challenges = {i: arc1_train[i].to_json() for i in ids}
    solutions = {i: [grid_to_list(p.output) for p in arc1_train[i].test] for i in ids}
    return challenges, solutions


@pytest.mark.parametrize("suffix", [".xz", ".gz"])
def test_compressed_challenges_find_their_compressed_solutions(arc1_train, tmp_path, suffix):
    challenges, solutions = real_slice(arc1_train)
    ch = write_compressed(tmp_path / f"slice_challenges.json{suffix}", challenges)
    sol = write_compressed(tmp_path / f"slice_solutions.json{suffix}", solutions)
    tasks = load_tasks(ch, solutions="auto")
    assert sorted(tasks) == sorted(challenges) and all(t.has_solutions for t in tasks.values())
    for tid, task in tasks.items():
        assert all(
            grids_equal(a.output, b.output) for a, b in zip(task.test, arc1_train[tid].test, strict=True)
        )
    assert sorted(load_solutions(sol, tasks)) == sorted(challenges)
    assert read_json(ch) == challenges


def test_data_paths_name_the_data_folder_in_every_reader(arc1_train, tmp_path, monkeypatch):
    """`data:` works wherever a file is read (the issue's `dry-run --challenges data:arc-agi-2/...` once said
    'file not found' on the GPU machine), and the data folder is $ARCSUB_DATA when set."""
    challenges, solutions = real_slice(arc1_train)
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "x_challenges.json").write_text(json.dumps(challenges))
    (tmp_path / "set" / "x_solutions.json").write_text(json.dumps(solutions))
    monkeypatch.setenv("ARCSUB_DATA", str(tmp_path))
    tasks = load_tasks("data:set/x_challenges.json", solutions="auto")
    assert sorted(tasks) == sorted(challenges) and all(t.has_solutions for t in tasks.values())
    assert sorted(load_truth("data:set/x_solutions.json")) == sorted(challenges)
    assert read_json("data:set/x_challenges.json") == challenges
    with pytest.raises(ArcDataError, match=f"{tmp_path}/set/missing.json: file not found"):
        read_json("data:set/missing.json")


def test_compressed_pairs_and_generated_sets(arc1_train, tmp_path):
    tid = sorted(arc1_train)[0]
    pairs = arc1_train[tid].to_json()["train"]
    got = load_pairs(write_compressed(tmp_path / f"{tid}.json.xz", pairs))
    assert len(got) == len(pairs) and grids_equal(got[0].output, to_grid(pairs[0]["output"]))
    gen = load_generated(write_compressed(tmp_path / "gen.json.gz", {tid: pairs, "x": pairs[:1]}))
    assert sorted(gen) == sorted([tid, "x"]) and len(gen[tid]) == len(pairs)


def test_a_folder_of_compressed_single_tasks_loads_by_id(arc1_train, tmp_path):
    challenges, _ = real_slice(arc1_train, 2)
    for tid, task in challenges.items():
        write_compressed(tmp_path / f"{tid}.json.xz", task)
    (tmp_path / "notes.txt").write_text("not a task")
    assert sorted(load_tasks(tmp_path)) == sorted(challenges)


def test_a_folder_of_concept_subfolders_loads_and_a_repeated_name_is_one_line(arc1_eval, tmp_path, run_cli):
    """ARC-like sets group task files in subfolders (ConceptARC: one per concept), outputs inline."""
    challenges, _ = real_slice(arc1_eval, 3)
    ids = sorted(challenges)
    for i, tid in enumerate(ids):
        (tmp_path / "set" / f"concept{i % 2}").mkdir(parents=True, exist_ok=True)
        task = arc1_eval[tid].to_json(with_test_outputs=True)
        (tmp_path / "set" / f"concept{i % 2}" / f"{tid}.json").write_text(json.dumps(task))
    tasks = load_tasks(tmp_path / "set")
    assert sorted(tasks) == ids and all(t.has_solutions for t in tasks.values())
    res = run_cli("validate", tmp_path / "set")
    assert res.rc == 0 and "task folder, 3 tasks" in res.out
    again = tmp_path / "set" / "concept1" / f"{ids[0]}.json"
    again.write_text(json.dumps(challenges[ids[0]]))
    with pytest.raises(ArcDataError, match=f"task id {ids[0]} again"):
        load_tasks(tmp_path / "set")
    res = run_cli("validate", tmp_path / "set")
    assert res.rc == 2 and len(res.err_lines) == 1 and str(again) in res.err


@pytest.mark.parametrize("suffix", [".xz", ".gz"])
def test_a_corrupt_or_truncated_compressed_file_is_one_line_naming_it(arc1_train, tmp_path, suffix):
    challenges, _ = real_slice(arc1_train, 2)
    good = write_compressed(tmp_path / f"good_challenges.json{suffix}", challenges).read_bytes()
    truncated = tmp_path / f"cut_challenges.json{suffix}"
    truncated.write_bytes(good[: len(good) // 2])
    garbage = tmp_path / f"junk_challenges.json{suffix}"
    garbage.write_bytes(b"this is not compressed")
    for bad in (truncated, garbage):
        with pytest.raises(ArcDataError, match=rf"^{bad}: corrupt") as e:
            load_tasks(bad)
        assert "\n" not in str(e.value)


def test_bad_cells_are_still_refused_by_the_fast_grid_check():
    for grid, msg in [
        ([[True, 0]], "not an integer"),
        ([[-1]], "outside"),
        ([[10]], "outside"),
        ([[300]], "outside"),
    ]:
        with pytest.raises(ArcDataError, match=msg):
            to_grid(grid)


def test_pair_map_transforms_both_grids_and_keeps_a_hidden_output_hidden(arc1_train):
    task = arc1_train[sorted(arc1_train)[0]]
    shown, hidden = task.train[0], Pair(task.test[0].input)
    flipped = shown.map(lambda g: g[::-1])
    assert grids_equal(flipped.input, shown.input[::-1]) and grids_equal(flipped.output, shown.output[::-1])
    transposed = hidden.map(lambda g: g.T)
    assert grids_equal(transposed.input, hidden.input.T) and transposed.output is None
