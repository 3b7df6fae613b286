"""bench/ensemble_members.py on kept real runs (docs/experiments/arc2-h200/ensemble): each member's own
candidates against the pool's, from a pooled run and from single-model runs pooled offline."""

from pathlib import Path

import pytest
from bench_scripts import bench_module

from arcsub.core.data import read_json

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "docs" / "experiments" / "arc2-h200" / "ensemble"


@pytest.fixture
def solutions_file(data_root: Path) -> Path:
    return data_root / "arc-agi-2" / "arc-agi_evaluation_solutions.json"


def test_a_pooled_run_splits_into_its_members_and_the_pool_holds_every_right_answer(solutions_file):
    em = bench_module("ensemble_members")
    pooled = read_json(RUNS / "e2-predictions.json.xz")  # the pipeline's ensemble=2 run on 120 tasks
    result = em.member_table(pooled, read_json(solutions_file))
    rows = result["rows"]
    assert list(rows) == ["member 0", "member 1", "pool"] and result["tasks"] == 120
    assert rows["member 0"]["n"] == rows["member 1"]["n"] == 32 and rows["pool"]["n"] == 64
    right = {name: {t for t, m in r["per_task"].items() if m["pass_n"] > 0} for name, r in rows.items()}
    assert right["pool"] == right["member 0"] | right["member 1"]  # pass_n of a pool: a union
    assert result["pass_n_only_in"]["member 1"] == sorted(right["member 1"] - right["member 0"])


def test_single_runs_pool_offline_in_file_order(solutions_file, tmp_path, capsys):
    em = bench_module("ensemble_members")
    files = [RUNS / "s0-predictions.json.xz", RUNS / "s1-predictions.json.xz"]
    pooled = em.pool_files([read_json(f) for f in files])
    first = next(iter(pooled))
    assert [c["member"] for c in pooled[first][0]] == [0] * 32 + [1] * 32
    out = tmp_path / "m.json"
    assert em.main([*map(str, files), "--solutions", str(tmp_path / "none.json")]) == 2  # one line, no table
    assert "none.json: file not found" in capsys.readouterr().err
    assert em.main([*map(str, files), "--solutions", str(solutions_file), "-o", str(out)]) == 0
    kept = read_json(out)["rows"]
    assert kept["pool"]["pass_n"] >= max(kept["member 0"]["pass_n"], kept["member 1"]["pass_n"])
    assert "per_task" not in kept["pool"]


def test_a_single_model_file_or_unknown_tasks_are_refused_in_one_line():
    em = bench_module("ensemble_members")
    with pytest.raises(em.ArcDataError, match="not a pooled"):
        em.member_ids({"t": [[{"grid": [[1]]}]]})
    with pytest.raises(em.ArcDataError, match="1 predicted task.* not in the solutions, e.g. t"):
        em.member_table({"t": [[{"grid": [[1]], "member": 0}]]}, {"u": [[[1]]]})
