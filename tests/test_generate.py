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


@pytest.mark.long
def test_cli_counts_and_re_arc_check(tmp_path):
    model = default_model_dir()
    if not (model / "model.safetensors").exists():
        pytest.skip(f"embedded default model not found: {model}")
    challenges, _ = dataset_files("arc-agi-1", "training")
    if not challenges.exists():
        pytest.skip(f"ARC data not found: {challenges}")
    args = [str(model), str(challenges), "--tasks", "007bbfb7", "-n", "2", "--views", "1"]
    assert main(["generate", *args, "-o", str(tmp_path / "a.json")]) == 0
    first = json.loads((tmp_path / "a.json").read_text())
    c = first["tasks"]["007bbfb7"]["counts"]
    assert c["sampled"] == 2 and c["new"] <= c["valid"] <= 2 and c["checkable"] == 0
    examples = first["tasks"]["007bbfb7"]["examples"]
    if not examples:
        pytest.skip("the model produced no new valid input to check against")
    # a RE-ARC-style reference holding the sampled inputs, the first with the predicted output and the second
    # (when there is one; else a second run) with another: the same seeded run must find them checkable, the
    # first correct and the second incorrect
    ref = tmp_path / "re-arc"
    ref.mkdir()
    right = [{"input": ex["input"], "output": ex["output"]} for ex in examples[:1]]
    wrong = [
        {"input": ex["input"], "output": [[(v + 1) % 10 for v in row] for row in ex["output"]]}
        for ex in examples
    ]
    runs = [right + wrong[1:2]] if len(examples) > 1 else [right, wrong[:1]]
    verdicts = []
    for i, pairs in enumerate(runs):
        (ref / "007bbfb7.json").write_text(json.dumps(pairs))
        assert main(["generate", *args, "--re-arc", str(ref), "-o", str(tmp_path / f"b{i}.json")]) == 0
        again = json.loads((tmp_path / f"b{i}.json").read_text())["tasks"]["007bbfb7"]
        assert again["counts"]["checkable"] == len(pairs)
        assert again["counts"]["correct"] == sum(e["correct"] is True for e in again["examples"])
        verdicts += [e["correct"] for e in again["examples"][: len(pairs)]]
    assert verdicts == [True, False]  # the predicted output is right, another one wrong
