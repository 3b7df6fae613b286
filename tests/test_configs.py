"""Every shipped config loads into its dataclass (unknown keys or wrong types would fail here first)."""

from __future__ import annotations

from pathlib import Path

import pytest

from arcsub.core.config import load_config
from arcsub.lm.pipeline import load_pipeline_config
from arcsub.lm.train import TrainConfig, run_name
from arcsub.taskmodel.predict import TaskPredictConfig
from arcsub.taskmodel.train import TaskTrainConfig

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


def _load(path: Path):
    name = path.stem
    if name.startswith("train-"):
        return load_config(TrainConfig, path)
    if name == "task-dry-run-cpu" or name.startswith("task-pipeline"):
        from arcsub.taskmodel.pipeline import load_pipeline_config as load_task_pipeline_config

        return load_task_pipeline_config(path, [])
    if name == "task-predict":
        return load_config(TaskPredictConfig, path)
    if name.startswith("task-"):
        return load_config(TaskTrainConfig, path)
    if name.startswith("dry-run"):
        return load_pipeline_config(path, [])
    raise AssertionError(
        f"{path.name}: no config class known for this name (add it to tests/test_configs.py)"
    )


def test_there_are_configs():
    assert len(CONFIGS) >= 8


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_config_loads(path):
    cfg = _load(path)
    if isinstance(cfg, TrainConfig):
        assert run_name(cfg)  # run directories can be named from it
