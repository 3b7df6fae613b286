"""bench/near_misses.py: how many cells the best right-size candidate gets wrong, on a kept real prediction."""

from pathlib import Path

import numpy as np
from bench_scripts import bench_module

from arcsub.core.data import grids_equal, load_tasks, read_json

PAIR = Path(__file__).resolve().parents[1] / "docs" / "experiments" / "arc2-h200" / "pair"


def test_fewest_wrong_counts_cells_of_right_size_candidates_only():
    nm = bench_module("near_misses")
    truth = np.array([[1, 2], [3, 4]])
    cands = [{"grid": [[1, 2, 0]]}, {"grid": [[1, 0], [0, 4]]}, {"grid": [[1, 2], [3, 0]]}, {"grid": None}]
    assert nm.fewest_wrong(cands, truth) == 1
    assert nm.fewest_wrong(cands[:1], truth) is None
    assert nm.histogram([0, 1, 3, 4, 9, 10, None]) == {"wrong size": 1, "0": 1, "1-3": 2, "4-9": 2, "10+": 1}


def test_a_kept_arc2_prediction_is_bucketed_over_all_its_test_outputs(data_root, tmp_path):
    nm = bench_module("near_misses")
    d = data_root / "arc-agi-2"
    challenges, solutions = d / "arc-agi_evaluation_challenges.json", d / "arc-agi_evaluation_solutions.json"
    predictions = PAIR / "p0-v32-predictions.json.xz"
    out = tmp_path / "near.json"
    assert (
        nm.main(
            [str(predictions), "--challenges", str(challenges), "--solutions", str(solutions), "-o", str(out)]
        )
        == 0
    )
    result = read_json(out)
    tasks, preds = load_tasks(challenges, solutions), read_json(predictions)
    exact = sum(
        any(c["grid"] is not None and grids_equal(np.asarray(c["grid"]), t.test[i].output) for c in cands)
        for tid, outs in preds.items()
        for t in [tasks[tid]]
        for i, cands in enumerate(outs)
    )
    everything = result["all"]
    assert everything["outputs"] == sum(len(tasks[t].test) for t in preds) == 167
    assert everything["0"] == exact > 0
    assert sum(v for k, v in everything.items() if k != "outputs") == everything["outputs"]
    assert result["larger test input"]["outputs"] + result["other"]["outputs"] == 167


def test_predictions_of_unknown_tasks_are_one_error_line(data_root, tmp_path, capsys):
    nm = bench_module("near_misses")
    d = data_root / "arc-agi-2"
    bad = tmp_path / "p.json"
    bad.write_text('{"nope0000": [[]]}')
    args = ["--challenges", str(d / "arc-agi_evaluation_challenges.json")]
    args += ["--solutions", str(d / "arc-agi_evaluation_solutions.json")]
    assert nm.main([str(bad), *args]) == 2
    assert capsys.readouterr().err.count("\n") == 1
