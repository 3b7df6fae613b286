"""`arcsub generate`: sampled inputs are counted honestly (valid, new) and checked against RE-ARC-style
ground truth wherever a sampled input is one of its inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from arcsub.cli import main
from arcsub.core.data import Pair, dataset_files
from arcsub.lm.generate import inputs_task, judge
from arcsub.lm.pipeline import default_model_dir


def test_judge_and_inputs_task(arc1_train):
    task = arc1_train["007bbfb7"]
    ctx = inputs_task(task)
    assert len(ctx.train) == len(task.train) + len(task.test)
    assert all((a.input == b.input).all() for a, b in zip(ctx.train, task.train + task.test, strict=True))
    ref = [Pair(task.train[0].input, task.train[0].output)]
    assert judge(task.train[0].input, task.train[0].output, ref) is True
    assert judge(task.train[0].input, task.train[1].output, ref) is False
    assert judge(task.train[0].input, None, ref) is False
    assert judge(np.zeros((2, 2), np.uint8), task.train[0].output, ref) is None


def test_cli_counts_and_re_arc_check(tmp_path):
    model = default_model_dir()
    if not (model / "model.safetensors").exists():
        pytest.skip(f"embedded default model not found: {model}")
    challenges, _ = dataset_files("arc-agi-1", "training")
    if not challenges.exists():
        pytest.skip(f"ARC data not found: {challenges}")
    args = [str(model), str(challenges), "--tasks", "007bbfb7", "-n", "3", "--views", "1"]
    assert main(["generate", *args, "-o", str(tmp_path / "a.json")]) == 0
    first = json.loads((tmp_path / "a.json").read_text())
    c = first["tasks"]["007bbfb7"]["counts"]
    assert c["sampled"] == 3 and c["new"] <= c["valid"] <= 3 and c["checkable"] == 0
    if not first["tasks"]["007bbfb7"]["examples"]:
        pytest.skip("the model produced no new valid input to check against")
    # a RE-ARC-style reference holding the sampled input with the predicted output: the same seeded run must
    # find it checkable and correct, and with another output incorrect
    ex = first["tasks"]["007bbfb7"]["examples"][0]
    ref = tmp_path / "re-arc"
    ref.mkdir()
    (ref / "007bbfb7.json").write_text(json.dumps([{"input": ex["input"], "output": ex["output"]}]))
    assert main(["generate", *args, "--re-arc", str(ref), "-o", str(tmp_path / "b.json")]) == 0
    again = json.loads((tmp_path / "b.json").read_text())["tasks"]["007bbfb7"]["counts"]
    assert again["checkable"] >= 1 and again["correct"] >= 1
    wrong = [[(v + 1) % 10 for v in row] for row in ex["output"]]
    (ref / "007bbfb7.json").write_text(json.dumps([{"input": ex["input"], "output": wrong}]))
    assert main(["generate", *args, "--re-arc", str(ref), "-o", str(tmp_path / "c.json")]) == 0
    bad = json.loads((tmp_path / "c.json").read_text())["tasks"]["007bbfb7"]["counts"]
    assert bad["checkable"] >= 1 and bad["correct"] == 0
