"""bench/heldout_sets.py: held-out ARC-like sets gathered from their clones' layouts into one scorable folder,
and a run's score per set. The clones are laid out here from real ARC-AGI-1 training tasks (the sets
themselves are not in ../shared)."""

import json
from pathlib import Path

import pytest
from bench_scripts import bench_module

from arcsub.core.data import inline_solutions, load_tasks, read_json


@pytest.fixture
def real_tasks(arc1_train) -> dict[str, dict]:
    """Twelve real ARC-AGI-1 training tasks with their test outputs inline, as ARC-like sets ship."""
    return {t: arc1_train[t].to_json(with_test_outputs=True) for t in sorted(arc1_train)[:12]}


def write(path: Path, task: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(task))


def clones(root: Path, tasks: dict[str, dict]) -> dict[str, Path]:
    """Three clones in the sets' own layouts: ConceptARC corpus/<concept>/, MiniARC data/MiniARC/, 1D-ARC
    dataset/<concept>/<concept>_<n>.json (12 of one concept, to check the natural-order cut)."""
    t = list(tasks.values())
    write(root / "c" / "corpus" / "Copy" / "Copy1.json", t[0])
    write(root / "c" / "corpus" / "Count" / "Count1.json", t[1])
    write(root / "m" / "data" / "MiniARC" / "mini_a.json", t[2])
    too_wide = {
        "train": [{"input": [[0] * 31], "output": [[0]]}],
        "test": [{"input": [[0]], "output": [[0]]}],
    }
    write(root / "m" / "data" / "MiniARC" / "mini_wide.json", too_wide)
    for n in range(12):
        write(root / "d" / "dataset" / "1d_fill" / f"1d_fill_{n}.json", t[n % len(t)])
    return {"c": root / "c", "m": root / "m", "d": root / "d"}


def test_build_gathers_the_sets_into_one_scorable_folder(real_tasks, tmp_path):
    hs = bench_module("heldout_sets")
    src = clones(tmp_path / "src", real_tasks)
    out = tmp_path / "heldout"
    argv = ["build", "--conceptarc", str(src["c"]), "--miniarc", str(src["m"]), "--1d-arc", str(src["d"])]
    assert hs.main([*argv, "--per-concept", "3", "-o", str(out)]) == 0
    manifest = read_json(out / "manifest.json")
    assert manifest["ConceptARC"]["tasks"] == ["Copy1", "Count1"]
    assert manifest["MiniARC"]["tasks"] == ["mini_a"]  # the 31-wide task is left out
    assert manifest["1D-ARC"]["tasks"] == ["1d_fill_0", "1d_fill_1", "1d_fill_2"]  # natural order, not _10
    assert manifest["1D-ARC"]["licence"] == "MIT"
    tasks = load_tasks(out / "tasks")
    assert sorted(tasks) == sorted(t for e in manifest.values() for t in e["tasks"])
    assert inline_solutions(tasks) is not None  # scorable with no solutions file
    assert hs.main([*argv, "-o", str(out)]) == 2  # never mixed into an earlier build


def test_a_clone_of_the_wrong_layout_is_one_clear_error(real_tasks, tmp_path, capsys):
    hs = bench_module("heldout_sets")
    src = clones(tmp_path / "src", real_tasks)
    assert hs.main(["build", "--conceptarc", str(src["m"]), "-o", str(tmp_path / "o")]) == 2
    assert "no corpus/*/*.json: not a clone of this set" in capsys.readouterr().err


def test_scores_are_per_set_means_and_a_missing_task_is_refused(tmp_path, capsys):
    hs = bench_module("heldout_sets")
    manifest = {"A": {"tasks": ["a1", "a2"]}, "B": {"tasks": ["b1"]}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    run = tmp_path / "r1" / "summary.json"
    write(run, {"task_scores": {"a1": 1.0, "a2": 0.5, "b1": 0.0}})
    assert hs.main(["scores", str(tmp_path), str(run), "-o", str(tmp_path / "sets.json")]) == 0
    assert read_json(tmp_path / "sets.json") == {"A": {str(run): 0.75}, "B": {str(run): 0.0}}
    assert "A (2 tasks): r1 0.7500" in capsys.readouterr().out
    write(run, {"task_scores": {"a1": 1.0, "b1": 0.0}})
    assert hs.main(["scores", str(tmp_path), str(run)]) == 2
    assert "no score for 1 A tasks (e.g. a2)" in capsys.readouterr().err


def test_the_kept_heldout_runs_score_per_set_as_recorded(tmp_path):
    """The kept lanes of docs/experiments/heldout-h100: per-set scores from their task scores and the manifest
    match the kept table, and each set's tasks are all scored (379 in all)."""
    hs = bench_module("heldout_sets")
    kept = Path(__file__).resolve().parents[1] / "docs" / "experiments" / "heldout-h100"
    runs = [str(f) for f in sorted(kept.glob("*/summary.json"))]
    assert len(runs) >= 2
    out = tmp_path / "sets.json"
    assert hs.main(["scores", str(kept), *runs, "-o", str(out)]) == 0
    table, recorded = read_json(out), read_json(kept / "sets.json")
    assert sum(len(e["tasks"]) for e in read_json(kept / "manifest.json").values()) == 379
    for name in ("ConceptARC", "MiniARC", "1D-ARC"):
        got = {Path(r).parent.name: v for r, v in table[name].items()}
        want = {Path(r).parent.name: v for r, v in recorded[name].items()}
        assert got == pytest.approx(want) and 0 < got["recipe"] < 1
