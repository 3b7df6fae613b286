"""Every bad input exits 2 with one line naming the file or key, before any compute (issue #20's audit).

Each case runs `arcsub.cli.main` in-process (capsys: no subprocess, no model is built) and checks the exit code,
that stderr is one `arcsub: error:` line holding the expected fragment, and never `internal error`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from arcsub.cli.app import main

REPO = Path(__file__).resolve().parent.parent
MODEL = (
    REPO / "models" / "arcsub-small"
)  # the embedded default: a valid model folder (only its header is read)
GRID = [[1, 2], [3, 4]]
TASK = {"train": [{"input": GRID, "output": GRID}], "test": [{"input": GRID}]}
ENTRY = {"attempt_1": GRID, "attempt_2": GRID}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    """Small good and bad files; the bad ones each carry one defect."""

    def put(name: str, obj) -> Path:
        p = tmp_path / name
        p.write_bytes(obj) if isinstance(obj, bytes) else p.write_text(json.dumps(obj))
        return p

    garbage = tmp_path / "garbage-model"
    garbage.mkdir()
    (garbage / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (garbage / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    truncated = tmp_path / "truncated-model"
    shutil.copytree(MODEL, truncated)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    (tmp_path / "out-dir").mkdir()
    return {
        "ch": put("a_challenges.json", {"t1": TASK, "t2": TASK}),
        "sol": put("a_solutions.json", {"t1": [GRID], "t2": [GRID]}),
        "sol_short": put("short_solutions.json", {"t1": [GRID]}),
        "evil": put("evil_challenges.json", {"../../etc/pwn": TASK}),
        "deep": put("deep.json", b"[" * 100_000 + b"]" * 100_000),
        "binlog": put("log.jsonl", bytes(range(256)) * 4),
        "no_a2": put("no_a2.json", {"t1": [{"attempt_1": GRID}], "t2": [ENTRY]}),
        "a3": put("a3.json", {"t1": [{**ENTRY, "attempt_3": GRID}], "t2": [ENTRY]}),
        "logprob": put("preds.json", {"t1": [[{"grid": GRID, "logprob": "high"}]], "t2": [[GRID]]}),
        "garbage": garbage,
        "truncated": truncated,
        "dir": tmp_path / "out-dir",
        "tmp": tmp_path,
    }


CASES = {
    # corrupt or garbage weights: refused by the model-folder check, before a model is built
    "ttft garbage weights": (["ttft", "{garbage}", "{ch}", "-o", "{tmp}/ad"], "not a safetensors file"),
    "ttft truncated weights": (["ttft", "{truncated}", "{ch}", "-o", "{tmp}/ad"], "truncated or corrupt"),
    "predict garbage weights": (["predict", "{garbage}", "{ch}", "-o", "{tmp}/p"], "model.safetensors"),
    "train garbage weights": (["train", "model={garbage}", "out_dir={tmp}/r"], "model.safetensors"),
    "task-predict garbage": (["task-predict", "{garbage}", "{ch}", "-o", "{tmp}/p"], "model.safetensors"),
    "generate garbage weights": (
        ["generate", "{garbage}", "{ch}", "-o", "{tmp}/g.json"],
        "model.safetensors",
    ),
    # malformed files
    "deep JSON": (["validate", "{deep}"], "nested too deeply"),
    "binary plot log": (["plot", "{binlog}", "-o", "{tmp}/x.png"], "not UTF-8"),
    "override YAML alias": (["train", "data.challenges=[*a]"], "data.challenges: malformed value"),
    # numbers out of range: refused when the config loads
    "seq_len=0": (["train", "seq_len=0"], "seq_len=0 must be at least 1"),
    "optim.lr=-1": (["train", "optim.lr=-1"], "optim.lr=-1.0 must be at least 0"),
    "train steps=-1": (["train", "steps=-1"], "steps=-1 must be at least 1"),
    "task-train steps=-5": (["task-train", "steps=-5"], "steps=-5 must be at least 1"),
    "task-train seconds=-5": (["task-train", "seconds=-5"], "seconds=-5.0 must be at least 0"),
    "ttft steps=0": (["ttft", str(MODEL), "{ch}", "-o", "{tmp}/ad", "steps=0"], "steps=0"),
    "predict views=-2": (["predict", str(MODEL), "{ch}", "-o", "{tmp}/p", "views=-2"], "views=-2"),
    "--tasks 0": (["ttft", str(MODEL), "{ch}", "-o", "{tmp}/ad", "--tasks", "0"], "--tasks 0"),
    "--re-arc missing": (
        ["generate", str(MODEL), "{ch}", "-o", "{tmp}/g.json", "--re-arc", "{tmp}/nonexistent"],
        "RE-ARC folder not found",
    ),
    "generate -n 0": (["generate", str(MODEL), "{ch}", "-o", "{tmp}/g.json", "-n", "0"], "-n 0"),
    # submissions and predictions: score agrees with validate
    "score without attempt_2": (["score", "{no_a2}", "{sol}"], "has no attempt_2"),
    "validate attempt_3": (["validate", "{a3}"], "unknown key 'attempt_3'"),
    "score attempt_3": (["score", "{a3}", "{sol}"], "unknown key 'attempt_3'"),
    "metrics logprob": (["metrics", "{logprob}", "{sol}"], "logprob='high' must be a int"),
    # untrusted task ids never name a path
    "traversal id ttft": (["ttft", str(MODEL), "{evil}", "-o", "{tmp}/ad"], "task id '../../etc/pwn'"),
    "traversal id validate": (["validate", "{evil}"], "is not allowed"),
    # checked before decoding
    "predict solutions mismatch": (
        ["predict", str(MODEL), "{ch}", "-o", "{tmp}/p", "--solutions", "{sol_short}"],
        "task t2: no solution",
    ),
    "predict submission is a dir": (
        ["predict", str(MODEL), "{ch}", "-o", "{tmp}/p", "--submission", "{dir}"],
        "out-dir: is a directory",
    ),
    "task-predict submission dir": (
        ["task-predict", str(MODEL), "{ch}", "-o", "{tmp}/p", "--submission", "{dir}"],
        "out-dir: is a directory",
    ),
    "dry-run solutions mismatch": (
        ["dry-run", "--challenges", "{ch}", "--solutions", "{sol_short}", "--tasks", "2", "--out", "{tmp}/d"],
        "task t2: no solution",
    ),
    "show output is a dir": (["show", "{ch}", "--task", "t1", "-o", "{dir}/x.png/"], "is a directory"),
}


@pytest.fixture
def no_compute(monkeypatch):
    """Any model build, training step or decoding fails the test: every case must stop before them."""

    def forbidden(*args, **kwargs):
        raise AssertionError("compute started before the bad input was refused")

    import arcsub.lm.predict as lp
    import arcsub.lm.ttft as lt
    import arcsub.taskmodel.predict as tp

    monkeypatch.setattr(lp, "predict", forbidden)
    monkeypatch.setattr(tp, "predict_tasks", forbidden)
    monkeypatch.setattr(lt, "LoraFitter", forbidden)


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_exits_2_with_one_line(case, files, no_compute, capsys, monkeypatch):
    argv, fragment = CASES[case]
    monkeypatch.chdir(files["tmp"])
    (files["dir"] / "x.png").mkdir(exist_ok=True)
    args = [a.format(**files) for a in argv]
    code = main(args)
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("arcsub")]
    assert code == 2, (case, err)  # (notices such as dry-run's "no GPU: using ..." are not arcsub: lines)
    assert len(err) == 1 and err[0].startswith("arcsub: error:"), err
    assert "internal error" not in err[0]
    assert fragment in err[0], err[0]


def test_every_public_task_id_passes_the_rule(data_root: Path):
    """The id rule refuses paths, not real tasks: every id of the shared ARC, RE-ARC and ARC-GEN data passes."""
    from arcsub.core.data import check_task_id, json_stem, read_json

    ids: set[str] = set()
    for f in sorted(data_root.glob("arc-agi-*/arc-agi_*_challenges.json")):
        ids |= set(read_json(f))
    ids |= {json_stem(f) for f in (data_root / "re-arc" / "tasks").glob("*.json*")}
    for f in sorted((data_root / "extra" / "arc-gen").glob("arc*.json*")):
        ids |= set(read_json(f))  # the keys only: parsing 83k generated grids is not what this checks
    assert len(ids) > 1000
    for tid in ids:
        check_task_id(tid)


@pytest.mark.parametrize("bad", ["../x", "..", ".", "a/b", ".hidden", "a\\b", "a..b", "", "x" * 200, "é"])
def test_task_ids_that_could_leave_a_folder_are_refused(bad, tmp_path):
    from arcsub.core.data import ArcDataError, check_task_id, parse_task, task_path

    with pytest.raises(ArcDataError):
        check_task_id(bad)
    with pytest.raises(ArcDataError):
        task_path(tmp_path, bad)
    with pytest.raises(ArcDataError, match="not allowed"):
        parse_task(bad, TASK, "f.json")
    assert task_path(tmp_path, "007bbfb7", ".json") == tmp_path / "007bbfb7.json"
