"""What survives a kill or a full disk, and what is never trusted (issue #20): saves that complete or leave
nothing, resume from the newest complete checkpoint, weights_only trainer state, no duplicate log steps,
local-only loading, and the dry-run notebook's allow-listed environment."""

from __future__ import annotations

import errno
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from arcsub.core.data import ArcDataError, is_complete, save_dir_atomic, write_bytes_atomic
from arcsub.training import runtime
from arcsub.training.runtime import latest_checkpoint, open_log, resume, save_checkpoint

TOOLS = Path(__file__).resolve().parent.parent / "tools"


def test_a_save_that_fails_midway_leaves_the_old_folder_and_no_temp(tmp_path):
    target = tmp_path / "model"
    save_dir_atomic(target, lambda d: (d / "a.txt").write_text("old"))

    def half_then_die(folder: Path) -> None:
        (folder / "config.json").write_text("{}")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError):
        save_dir_atomic(target, half_then_die)
    assert (target / "a.txt").read_text() == "old" and is_complete(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no .model.tmp left behind


def test_task_train_killed_in_its_final_save_is_not_finished_and_the_rerun_saves(tmp_path, monkeypatch):
    """The audit's kill -9 right after model/config.json: a writer that raises once config.json is written."""
    from arcsub.core.config import load_config
    from arcsub.core.modeldir import model_finished
    from arcsub.taskmodel import data as taskdata
    from arcsub.taskmodel.train import TaskTrainConfig, train

    grid = [[1, 2], [3, 4]]
    task = {"train": [{"input": grid, "output": grid}] * 2, "test": [{"input": grid, "output": grid}]}
    ch = tmp_path / "t_challenges.json"
    ch.write_text(json.dumps({"aa": task}))
    tiny = Path(__file__).resolve().parent.parent / "configs" / "task-tiny-cpu.yaml"
    over = ["data.re_arc=null", f"data.challenges=[{ch}]", "steps=2", "seq_len=512", f"out_dir={tmp_path}/r"]
    cfg = load_config(TaskTrainConfig, tiny, over)
    real_save = taskdata.TaskIndex.save

    def killed(self, folder):
        if (Path(folder) / "config.json").exists():  # the final save's index, after config.json
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, folder)

    monkeypatch.setattr(taskdata.TaskIndex, "save", killed)
    with pytest.raises(OSError):
        train(cfg, progress=False)
    run = next((tmp_path / "r").iterdir())
    assert not (run / "model").exists() and not model_finished(run / "model")
    monkeypatch.setattr(taskdata.TaskIndex, "save", real_save)
    assert train(cfg, progress=False) == run
    assert model_finished(run / "model") and (run / "model" / "task_index.json").exists()


@dataclass
class _Cfg:
    steps: int = 9


def _tiny_state(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    return model, opt


def _save_weights(model):
    from safetensors.torch import save_file

    return lambda folder: save_file(model.state_dict(), str(folder / "model.safetensors"))


@pytest.mark.parametrize("where", ["checkpoint", ".checkpoint.old"])
def test_resume_finds_the_newest_complete_checkpoint_and_round_trips_state(tmp_path, where):
    """A kill between the swap's two renames leaves only .checkpoint.old: resume still finds it; optimizer and
    RNG state come back through weights_only=True."""
    model, opt = _tiny_state()
    torch.manual_seed(123)
    save_checkpoint(tmp_path, _save_weights(model), opt, 7, _Cfg(), None)
    rng = torch.get_rng_state()
    if where != "checkpoint":
        (tmp_path / "checkpoint").rename(tmp_path / where)
    assert latest_checkpoint(tmp_path) == tmp_path / where
    fresh, fresh_opt = _tiny_state(seed=1)
    torch.manual_seed(999)
    assert resume(tmp_path, fresh, fresh_opt, None, torch.device("cpu")) == 7
    assert torch.equal(torch.get_rng_state(), rng)
    for a, b in zip(model.parameters(), fresh.parameters(), strict=True):
        assert torch.equal(a, b)
    old, new = opt.state_dict()["state"][0], fresh_opt.state_dict()["state"][0]
    assert torch.equal(old["exp_avg"], new["exp_avg"]) and float(old["step"]) == float(new["step"])


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_planted_trainer_state_is_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model, opt = _tiny_state()
    save_checkpoint(tmp_path, _save_weights(model), opt, 3, _Cfg(), None)
    torch.save({"optimizer": _Payload()}, tmp_path / "checkpoint" / "trainer_state.pt")
    with pytest.raises(ArcDataError, match="not a loadable trainer state"):
        resume(tmp_path, model, opt, None, torch.device("cpu"))
    assert not (tmp_path / "PWNED").exists()


def test_a_full_disk_in_a_checkpoint_names_the_file_and_leaves_no_temp(tmp_path, monkeypatch):
    model, opt = _tiny_state()

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 0 vs 6")

    monkeypatch.setattr(runtime.torch, "save", full)
    with pytest.raises(OSError) as e:
        save_checkpoint(tmp_path, _save_weights(model), opt, 3, _Cfg(), None)
    assert e.value.filename.endswith("trainer_state.pt")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_names_the_file_asked_for_not_the_temp(tmp_path, monkeypatch, capsys):
    def no_space(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError) as e:
        write_bytes_atomic(tmp_path / "report.html", b"x")
    assert e.value.filename == str(tmp_path / "report.html") and list(tmp_path.iterdir()) == []


def test_a_resumed_run_logs_each_step_once(tmp_path):
    (tmp_path / "log.jsonl").write_text(
        "".join(json.dumps({"step": s, "loss": 1.0}) + "\n" for s in range(1, 18)) + '{"step": 18, "lo'
    )
    with open_log(tmp_path, 10) as log:
        for s in range(11, 18):
            log.write(json.dumps({"step": s}) + "\n")
    steps = [json.loads(x)["step"] for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 18))


def test_a_finished_train_run_rerun_is_a_no_op(tmp_path, capsys):
    from arcsub.core.config import load_config
    from arcsub.lm.train import TrainConfig, run_name, train

    cfg = load_config(TrainConfig, None, ["model=tiny", f"out_dir={tmp_path}", "data.challenges=[]"])
    model = tmp_path / run_name(cfg) / "model"
    save_dir_atomic(model, lambda d: (d / "config.json").write_text("{}"))
    assert train(cfg, progress=False) == model.parent
    assert "already finished" in capsys.readouterr().out
    assert (model / "config.json").read_text() == "{}"  # untouched


def test_adapters_load_local_only_unless_the_hub_is_allowed(tmp_path, monkeypatch):
    from arcsub.core.modeldir import HUB_ENV, check_adapter_dir, load_adapter, local_only

    monkeypatch.delenv(HUB_ENV, raising=False)
    assert local_only("user/repo") == {"local_files_only": True}
    with pytest.raises(ArcDataError, match=f"{HUB_ENV}=1"):
        load_adapter(torch.nn.Linear(1, 1), "user/repo")
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.safetensors").write_bytes(b"garbage!")
    with pytest.raises(ArcDataError, match="safetensors"):
        check_adapter_dir(tmp_path)
    monkeypatch.setenv(HUB_ENV, "1")
    assert local_only("user/repo") == {"local_files_only": False}
    assert local_only(tmp_path) == {"local_files_only": True}


def test_the_dry_run_notebook_gets_only_allow_listed_variables(monkeypatch):
    monkeypatch.syspath_prepend(str(TOOLS))
    sys.modules.pop("kaggle_dry_run", None)
    import kaggle_dry_run

    env = kaggle_dry_run.notebook_env(
        {"PATH": "/bin", "KAGGLE_KEY": "s3cret", "HF_TOKEN": "t", "AWS_SECRET_ACCESS_KEY": "k", "LC_ALL": "C"}
    )
    assert env == {"PATH": "/bin", "LC_ALL": "C"}
