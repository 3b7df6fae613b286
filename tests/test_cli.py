"""The arcsub CLI: good runs on real data, and malformed input -> exit 2 with exactly one line on stderr."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from arcsub.cli import app as cli
from arcsub.core.data import grid_to_list

G = [[1, 2], [3, 4]]
TASK = {"train": [{"input": G, "output": G}], "test": [{"input": G}]}
TASK2 = {"train": [{"input": G, "output": G}], "test": [{"input": G}, {"input": G}]}


def challenges_with(cell_or_grid=None, **task):
    """A two-task challenges file whose task 'bad' has the given train input grid or fields."""
    bad = json.loads(json.dumps(TASK))
    if cell_or_grid is not None:
        bad["train"][0]["input"] = cell_or_grid
    bad.update(task)
    return {"good": TASK, "bad": bad}


def _sub(n=1):
    return [{"attempt_1": G, "attempt_2": G} for _ in range(n)]


# Each case: (name, files {name: content}, argv with {name} placeholders, the file the error must name).
CHALLENGES = {"good": TASK, "two": TASK2}
MALFORMED = [
    ("malformed JSON", {"f.json": '{"a": [1, 2'}, ["validate", "{f.json}"], "f.json"),
    ("empty file", {"f.json": ""}, ["validate", "{f.json}"], "f.json"),
    ("missing file", {}, ["validate", "{nope.json}"], "nope.json"),
    (
        "directory instead of file",
        {"s.json": {"good": [G]}, "d/x.json": "{}"},
        ["score", "{d}", "{s.json}"],
        "d",
    ),
    ("ragged grid", {"c.json": challenges_with([[1, 2], [3]])}, ["validate", "{c.json}"], "c.json"),
    ("colour 10", {"c.json": challenges_with([[1, 10]])}, ["validate", "{c.json}"], "c.json"),
    ("colour -1", {"c.json": challenges_with([[-1, 0]])}, ["validate", "{c.json}"], "c.json"),
    ("float cell", {"c.json": challenges_with([[1.5, 0]])}, ["validate", "{c.json}"], "c.json"),
    ("string cell", {"c.json": challenges_with([["1", 0]])}, ["validate", "{c.json}"], "c.json"),
    ("bool cell", {"c.json": challenges_with([[True, 0]])}, ["validate", "{c.json}"], "c.json"),
    ("empty grid", {"c.json": challenges_with([])}, ["validate", "{c.json}"], "c.json"),
    ("empty row", {"c.json": challenges_with([[]])}, ["validate", "{c.json}"], "c.json"),
    ("31x31 grid", {"c.json": challenges_with([[0] * 31] * 31)}, ["validate", "{c.json}"], "c.json"),
    ("task without train pairs", {"c.json": challenges_with(train=[])}, ["validate", "{c.json}"], "c.json"),
    ("task without test", {"c.json": challenges_with(test=[])}, ["validate", "{c.json}"], "c.json"),
    (
        "train pair without output",
        {"c.json": challenges_with(train=[{"input": G}])},
        ["validate", "{c.json}"],
        "c.json",
    ),
    (
        "solutions with missing task",
        {"c.json": CHALLENGES, "s.json": {"good": [G]}},
        ["validate", "{s.json}", "--challenges", "{c.json}"],
        "s.json",
    ),
    (
        "solutions with extra task",
        {"c.json": CHALLENGES, "s.json": {"good": [G], "two": [G, G], "more": [G]}},
        ["validate", "{s.json}", "--challenges", "{c.json}"],
        "s.json",
    ),
    (
        "solutions with wrong count",
        {"c.json": CHALLENGES, "s.json": {"good": [G], "two": [G]}},
        ["validate", "{s.json}", "--challenges", "{c.json}"],
        "s.json",
    ),
    (
        "submission missing attempt_2",
        {"c.json": CHALLENGES, "u.json": {"good": [{"attempt_1": G}], "two": _sub(2)}},
        ["validate", "{u.json}", "--challenges", "{c.json}"],
        "u.json",
    ),
    (
        "submission with wrong number of test entries",
        {"c.json": CHALLENGES, "u.json": {"good": _sub(1), "two": _sub(1)}},
        ["validate", "{u.json}", "--challenges", "{c.json}"],
        "u.json",
    ),
    (
        "submission missing a task",
        {"c.json": CHALLENGES, "u.json": {"good": _sub(1)}},
        ["validate", "{u.json}", "--challenges", "{c.json}"],
        "u.json",
    ),
    (
        "submission attempt with colour 10",
        {"c.json": CHALLENGES, "u.json": {"good": [{"attempt_1": G, "attempt_2": [[10]]}], "two": _sub(2)}},
        ["validate", "{u.json}", "--challenges", "{c.json}"],
        "u.json",
    ),
    (
        "predictions not a mapping",
        {"p.json": [[G]], "s.json": {"good": [G]}},
        ["metrics", "{p.json}", "{s.json}"],
        "p.json",
    ),
    (
        "predictions with wrong number of test entries",
        {"p.json": {"good": [[G], [G]]}, "s.json": {"good": [G]}},
        ["metrics", "{p.json}", "{s.json}"],
        "p.json",
    ),
    (
        "metrics: solutions malformed JSON",
        {"p.json": {"good": [[G]]}, "s.json": "[[["},
        ["metrics", "{p.json}", "{s.json}"],
        "s.json",
    ),
    (
        "score: submission not a mapping",
        {"u.json": "[1]", "s.json": {"good": [G]}},
        ["score", "{u.json}", "{s.json}"],
        "u.json",
    ),
    (
        "score: task entry not a list",
        {"u.json": {"good": {"attempt_1": G}}, "s.json": {"good": [G]}},
        ["score", "{u.json}", "{s.json}"],
        "u.json",
    ),
    (
        "score: solutions with ragged grid",
        {"u.json": {"good": _sub()}, "s.json": {"good": [[[1], [1, 2]]]}},
        ["score", "{u.json}", "{s.json}"],
        "s.json",
    ),
    ("not UTF-8", {"f.json": b"\xff\xfe{}"}, ["validate", "{f.json}"], "f.json"),
    ("validate: unknown kind", {"f.json": {"a": 5}}, ["validate", "{f.json}"], "f.json"),
    (
        "validate: --challenges missing",
        {"s.json": {"good": [G]}},
        ["validate", "{s.json}", "--challenges", "{c.json}"],
        "c.json",
    ),
    (
        "show: unknown task id",
        {"c.json": CHALLENGES},
        ["show", "{c.json}", "--task", "zzz", "-o", "{o.png}"],
        "c.json",
    ),
    (
        "show: predictions with wrong number of test entries",
        {"c.json": CHALLENGES, "p.json": {"two": [[G]]}},
        ["show", "{c.json}", "--task", "two", "--predictions", "{p.json}", "-o", "{o.png}"],
        "p.json",
    ),
    ("unknown subcommand", {}, ["frobnicate"], None),
    ("missing arguments", {}, ["score"], None),
    ("unknown option", {}, ["metrics", "a.json", "b.json", "--bogus"], None),
    ("no command", {}, [], None),
    (
        "show: bad output suffix",
        {"c.json": CHALLENGES},
        ["show", "{c.json}", "--task", "good", "-o", "{o.gif}"],
        None,
    ),
    (
        "show: --task all to a PNG",
        {"c.json": CHALLENGES},
        ["show", "{c.json}", "--task", "all", "-o", "{o.png}"],
        None,
    ),
]


def _materialize(tmp: Path, files: dict, argv: list[str]) -> list[str]:
    for name, content in files.items():
        p = tmp / name
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
        else:
            p.write_text(content if isinstance(content, str) else json.dumps(content))
    out = []
    for a in argv:
        out.append(str(tmp / a[1:-1]) if a.startswith("{") else a)
    return out


@pytest.mark.parametrize("name, files, argv, names", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_input_exits_2_with_one_line(tmp, run_cli, name, files, argv, names):
    res = run_cli(*_materialize(tmp, files, argv))
    assert res.rc == 2, (res.out, res.err)
    lines = res.err.splitlines()
    assert len(lines) == 1, res.err
    assert lines[0].startswith("arcsub: error: ")
    assert "Traceback" not in res.err and res.out == ""
    if names is not None:
        assert str(tmp / names) in lines[0]


def test_at_least_twenty_malformed_cases():
    assert len(MALFORMED) >= 20


def _subprocess(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(Path(cli.__file__).resolve().parents[1]))
    return subprocess.run(args, capture_output=True, text=True, cwd=cwd, env=env, timeout=60)


@pytest.mark.parametrize(
    "files, argv",
    [
        ({"f.json": "{nope"}, ["validate", "f.json"]),
        ({"c.json": challenges_with([[1, 10]])}, ["validate", "c.json"]),
        ({}, ["score", "missing.json", "also-missing.json"]),
        ({}, ["bogus-command"]),
    ],
)
def test_python_m_subprocess_has_no_traceback(tmp, files, argv):
    _materialize(tmp, files, [])
    res = _subprocess([sys.executable, "-m", "arcsub.cli", *argv], tmp)
    assert res.returncode == 2
    assert len(res.stderr.splitlines()) == 1 and res.stderr.startswith("arcsub: error: "), res.stderr
    assert "Traceback" not in res.stderr


def test_console_script_has_no_traceback(tmp):
    script = shutil.which("arcsub", path=str(Path(sys.executable).parent))
    if script is None:
        pytest.skip("console script 'arcsub' not installed (pip install -e .)")
    (tmp / "u.json").write_text('{"good": [{"attempt_1": [[1]]}]')  # truncated JSON
    (tmp / "s.json").write_text('{"good": [[[1]]]}')
    res = _subprocess([script, "score", "u.json", "s.json"], tmp)
    assert res.returncode == 2 and len(res.stderr.splitlines()) == 1 and "u.json" in res.stderr
    ok = _subprocess([script, "--help"], tmp)
    assert ok.returncode == 0 and "score" in ok.stdout and "validate" in ok.stdout


@pytest.mark.parametrize("command", ["score", "metrics", "validate", "show"])
def test_every_command_has_help(run_cli, command):
    res = run_cli(command, "--help")
    assert res.rc == 0 and res.err == ""
    assert f"usage: arcsub {command}" in res.out
    assert len(cli.COMMANDS[command].description or "") > 40  # a real explanation, not just the name


def test_top_level_help_lists_commands(run_cli):
    res = run_cli("--help")
    assert res.rc == 0 and all(c in res.out for c in ("score", "metrics", "validate", "show"))


# ---------------------------------------------------------------- good runs on real data


@pytest.fixture
def eval20(arc1_eval, tmp):
    """Challenges + solutions files for 20 ARC-AGI-1 evaluation tasks, and the tasks."""
    ids = sorted(arc1_eval)[:20]
    tasks = {t: arc1_eval[t] for t in ids}
    c = tmp / "c.json"
    s = tmp / "s.json"
    c.write_text(json.dumps({t: tasks[t].to_json() for t in ids}))
    s.write_text(json.dumps({t: [grid_to_list(p.output) for p in tasks[t].test] for t in ids}))
    return tasks, c, s


def test_score_json_on_real_data_with_missing_task(eval20, tmp, run_cli):
    tasks, c, s = eval20
    ids = list(tasks)
    sub = {
        t: [{"attempt_1": [[0]], "attempt_2": grid_to_list(p.output)} for p in tasks[t].test] for t in ids[1:]
    }
    u = tmp / "u.json"
    u.write_text(json.dumps(sub))
    res = run_cli("score", u, s, "--json")
    assert res.rc == 0
    out = json.loads(res.out)
    assert out["score"] == pytest.approx(19 / 20) and out["tasks"] == 20
    assert out["test_outputs"] == sum(len(t.test) for t in tasks.values())
    assert out["missing"] == [ids[0]]
    assert len(res.err_lines) == 1 and ids[0] in res.err and "warning" in res.err
    assert "per_task" not in out and "warnings" not in out
    per_task = json.loads(run_cli("score", u, s, "--json", "--per-task").out)["per_task"]
    assert per_task[ids[0]] == 0 and per_task[ids[1]] == 1
    text = run_cli("score", u, s)
    assert text.rc == 0 and "0.9500" in text.out and ids[1] not in text.out
    lines = run_cli("score", u, s, "--per-task").out.splitlines()
    assert f"{ids[1]}\t1.000" in lines and len(lines) == 21


def test_metrics_json_and_table(eval20, tmp, run_cli):
    tasks, c, s = eval20
    preds = {
        t: [[grid_to_list(p.output), None, {"grid": grid_to_list(p.input), "logprob": -1.0, "tokens": 3, "view": "id"}]
            for p in tasks[t].test]
        for t in tasks
    }  # fmt: skip
    p = tmp / "p.json"
    p.write_text(json.dumps(preds))
    res = run_cli("metrics", p, s, "--json")
    assert res.rc == 0 and res.err == ""
    m = json.loads(res.out)
    for key in (
        "accuracy",
        "correct_pixels",
        "correct_size",
        "pass_n",
        "vote_1",
        "vote_2",
        "unanswered",
        "n",
        "tasks",
    ):
        assert key in m
    assert m["pass_n"] == 1 and m["vote_2"] == 1 and m["unanswered"] == pytest.approx(1 / 3)
    assert m["n"] == 3 and m["tasks"] == 20 and "per_task" not in m
    assert set(json.loads(run_cli("metrics", p, s, "--json", "--per-task").out)["per_task"]) == set(tasks)
    table = run_cli("metrics", p, s)
    assert table.rc == 0 and table.out.splitlines()[0].split()[0] == "accuracy" and "100.0%" in table.out


def test_validate_detects_each_kind(eval20, tmp, run_cli):
    tasks, c, s = eval20
    u = tmp / "u.json"
    u.write_text(
        json.dumps({t: [{"attempt_1": [[0]], "attempt_2": [[0]]}] * len(tasks[t].test) for t in tasks})
    )
    p = tmp / "p.json"
    p.write_text(json.dumps({t: [[None]] * len(tasks[t].test) for t in tasks}))
    for path, kind in ((c, "challenges"), (s, "solutions"), (u, "submission"), (p, "predictions")):
        res = run_cli("validate", path, "--challenges", c)
        assert res.rc == 0, res.err
        assert res.out.startswith(f"OK: {path}: {kind}, 20 tasks") and len(res.out.splitlines()) == 1


def test_validate_real_files(data_root, run_cli):
    folder = data_root / "arc-agi-1"
    res = run_cli("validate", folder / "arc-agi_evaluation_solutions.json", "--challenges",
                  folder / "arc-agi_evaluation_challenges.json")  # fmt: skip
    assert res.rc == 0 and "400 tasks, 419 test outputs" in res.out


def test_registry_makes_adding_a_command_easy(run_cli, monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", dict(cli.COMMANDS))
    seen = {}

    def add(p):
        p.add_argument("word")

    def run(args):
        seen["word"] = args.word
        return 0

    cli.register(cli.Command("echo", "say a word", add, run))
    assert run_cli("echo", "hi").rc == 0 and seen == {"word": "hi"}
    cli.register(
        cli.Command("lazy", "lazily imported", lambda p: None, "arcsub.core.metrics:no_such_function")
    )
    res = run_cli("lazy")  # a broken command is a bug: one line, exit 1, no traceback
    assert res.rc == 1 and len(res.err_lines) == 1 and "internal error" in res.err
