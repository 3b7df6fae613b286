"""Shared fixtures: real ARC data slices (skipped with a reason when the data is absent), temp paths, a CLI runner."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from arcsub.core.data import Task, data_dir, dataset_files, load_tasks


def _load_set(name: str, split: str) -> dict[str, Task]:
    challenges, solutions = dataset_files(name, split)
    if not challenges.exists() or not solutions.exists():
        pytest.skip(f"ARC data not found: {challenges} (set ARCSUB_DATA to the shared data folder)")
    return load_tasks(challenges, solutions)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """The shared ARC data folder (arcsub.core.data.data_dir()); skips the test when it is absent."""
    root = data_dir()
    if not root.is_dir():
        pytest.skip(f"ARC data folder not found: {root} (set ARCSUB_DATA to the shared data folder)")
    return root


@pytest.fixture(scope="session")
def arc1_train(data_root: Path) -> dict[str, Task]:
    """ARC-AGI-1 training tasks with their test outputs, loaded once per session (do not mutate)."""
    return _load_set("arc-agi-1", "training")


@pytest.fixture(scope="session")
def arc1_eval(data_root: Path) -> dict[str, Task]:
    """ARC-AGI-1 evaluation tasks with their test outputs, loaded once per session (do not mutate)."""
    return _load_set("arc-agi-1", "evaluation")


@pytest.fixture(scope="session")
def arc1_eval_files(data_root: Path) -> tuple[Path, Path]:
    """(challenges, solutions) paths of ARC-AGI-1 evaluation."""
    challenges, solutions = dataset_files("arc-agi-1", "evaluation")
    if not challenges.exists():
        pytest.skip(f"ARC data not found: {challenges}")
    return challenges, solutions


@pytest.fixture(scope="session")
def pretrained_task_model(arc1_train: dict[str, Task], tmp_path_factory) -> Path:
    """A tiny task model pretrained for 10 steps on the 3 smallest ARC-AGI-1 training tasks, trained once per
    session and shared (read it, copy it; do not train into it)."""
    from test_tasktrain import smallest, tiny_config, write_subset

    from arcsub.taskmodel.train import train

    root = tmp_path_factory.mktemp("pretrained-task-model")
    ch, _ = write_subset(arc1_train, smallest(arc1_train, 3), root, "tr")
    cfg = tiny_config(f"data.challenges=[{ch}]", "steps=10", "seq_len=512", f"out_dir={root / 'pre'}")
    return train(cfg, progress=False) / "model"


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    """A fresh temporary folder for the test's files."""
    return tmp_path


def _write(path: Path, obj: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj), encoding="utf-8")
    return path


@pytest.fixture
def write():
    """write(path, obj): `obj` as JSON (a str verbatim) at `path`; returns the path."""
    return _write


@dataclass
class CliResult:
    rc: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


@pytest.fixture
def run_cli(capsys):
    """Run arcsub.cli.main(argv) in-process; returns CliResult(rc, out, err)."""
    from arcsub.cli import main

    def run(*argv: Any) -> CliResult:
        capsys.readouterr()
        rc = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return CliResult(rc, captured.out, captured.err)

    return run
