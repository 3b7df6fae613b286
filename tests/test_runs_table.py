"""bench/runs_table.py on the run files kept in docs/experiments (real runs, not made-up numbers)."""

from pathlib import Path

import pytest
from bench_scripts import bench_module

ROOT = Path(__file__).resolve().parents[1]
EXP = ROOT / "docs" / "experiments"


def test_resumed_run_sums_its_calls_and_takes_likelihood_from_the_selection_table(tmp_path):
    rt = bench_module("runs_table")
    files = [
        EXP / "task_transductive_h100_1000s_log.jsonl",  # two calls: the clock starts again in the second
        EXP / "task_transductive_h100_eval_v32_run.json",  # predicted by vote (0.4825)
        EXP / "task_transductive_h100_train_v32_run.json",
        EXP / "task_transductive_h100_selection_v32.json",
    ]
    row = rt.summarize("1000s", files)
    assert row["steps"] == 31633
    assert 1000 < row["train_s"] < 1200  # more than either call alone
    assert row["eval"]["score"] == pytest.approx(0.52) and row["eval"]["sel"] == "likelihood"
    assert row["train"]["vote_2"] == pytest.approx(0.9892, abs=1e-4) and row["train"]["sel"] == "vote"
    table = rt.markdown([row])
    assert "| 1000s | 31633 |" in table and "0.5200 (32 views, likelihood)" in table
    rt.main([f"x={','.join(map(str, files))}", "--plot", str(tmp_path / "p.png")])
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_a_folder_without_an_evaluation_run_is_refused(tmp_path):
    rt = bench_module("runs_table")
    (tmp_path / "r_log.jsonl").write_text('{"step": 1, "loss": 1.0, "tokens_per_s": 5, "elapsed_s": 1.0}\n')
    with pytest.raises(SystemExit, match="no evaluation run file"):
        rt.main([str(tmp_path)])


def test_task_overlap_counts_what_each_run_alone_solves_and_the_union(tmp_path, capsys):
    """Two runs solving {a, b} and {b, c} of four tasks (c half): each 0.5 / 0.375, together 0.625."""
    import json

    ov = bench_module("task_overlap")
    runs = {"s0": {"a": 1.0, "b": 1.0, "c": 0.0, "d": 0.0}, "s1": {"a": 0.0, "b": 1.0, "c": 0.5, "d": 0.0}}
    files = []
    for name, scores in runs.items():
        files.append(tmp_path / f"{name}.json")
        files[-1].write_text(json.dumps({"score": 0.0, "task_scores": scores}))
    assert ov.main([*map(str, files), "-o", str(tmp_path / "o.json")]) == 0
    out = json.loads((tmp_path / "o.json").read_text())
    assert out["union_score"] == pytest.approx(0.625) and out["tasks"] == 4
    assert out["runs"][str(files[0])]["only_here"] == ["a"] and out["runs"][str(files[1])]["only_here"] == [
        "c"
    ]
    # a committed run file from before task_scores existed: one line, exit 2
    old = (
        EXP
        / "arc2-h200"
        / "long"
        / "run__task-transductive-arc2-long-1gpu-1440s__arc-agi-2-evaluation__4d16bd20.json"
    )
    capsys.readouterr()
    assert ov.main([str(old), str(files[0])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no task_scores" in err[0]
