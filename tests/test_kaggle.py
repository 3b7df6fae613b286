"""arcsub.kaggle.notebook: paths, dataset discovery, GPU choices, the time budget, the public stand-in and main()."""

from __future__ import annotations

import json
import logging
import shutil
import sys
import textwrap
import time
from pathlib import Path

import pytest

from arcsub.core.data import ArcDataError, dataset_files, load_tasks, read_json, write_json_atomic
from arcsub.core.submission import load_submission
from arcsub.kaggle import __main__ as kaggle_main
from arcsub.kaggle import datasets, notebook, runtime, submission
from arcsub.kaggle import paths as kpaths
from arcsub.kaggle.competitions import CHALLENGES_FILE, is_public_standin
from arcsub.kaggle.datasets import find_model_dataset, verify_dataset_files
from arcsub.kaggle.notebook import apply_runtime
from arcsub.kaggle.paths import KagglePaths, find_challenges, kaggle_paths
from arcsub.kaggle.runtime import GpuInfo, TimeBudget

TOOLS = Path(__file__).resolve().parent.parent / "tools"

# A stand-in for arcsub.lm.pipeline.run_pipeline with the real config loader: it records what it was given,
# checks the baseline is already on disk, and writes one task's attempts at a time (FAKE_DELAY seconds each).
FAKE_PIPELINE = textwrap.dedent(
    """
    import json, os, time
    from pathlib import Path
    from arcsub.core.data import load_tasks, read_json, write_json_atomic
    from arcsub.lm.pipeline import PipelineConfig, load_pipeline_config
    from arcsub.core.submission import build_submission, write_submission

    def run_pipeline(challenges, out_dir, cfg, solutions=None, task_ids=None):
        out = Path(out_dir)
        tasks = load_tasks(challenges)
        kaggle_sub = Path(os.environ["ARCSUB_KAGGLE_ROOT"]) / "working" / "submission.json"
        call = {"challenges": str(challenges), "out": str(out), "model": cfg.model,
                "time_budget": cfg.time_budget, "engine": cfg.predict.engine, "dtype": cfg.predict.dtype,
                "ttft_dtype": cfg.ttft.dtype, "views": cfg.predict.views, "tasks": sorted(tasks),
                "solutions": str(solutions) if solutions else None,
                "baseline_on_disk": kaggle_sub.is_file()}
        write_json_atomic(out / "fake_call.json", call)
        if os.environ.get("FAKE_FAIL"):
            raise RuntimeError("fake pipeline failure")
        truth = read_json(solutions) if solutions else {}
        attempts = {}
        write_submission(out / "submission.json", build_submission(tasks))
        for tid, task in tasks.items():
            time.sleep(float(os.environ.get("FAKE_DELAY", "0")))
            grids = truth.get(tid) or [[[7]] for _ in task.test]
            attempts[tid] = [[g, None] for g in grids]
            write_submission(out / "submission.json", build_submission(tasks, attempts))
        return {"submission": str(out / "submission.json"), "score": 1.0 if truth else None,
                "stage_seconds": {"ttft": 0.0, "predict": 0.0}, "tasks": len(tasks)}
    """
)


@pytest.fixture
def fake_pipeline(tmp_path, monkeypatch):
    mod_dir = tmp_path / "fakemods"
    mod_dir.mkdir()
    (mod_dir / "fake_pipe.py").write_text(FAKE_PIPELINE)
    monkeypatch.syspath_prepend(str(mod_dir))
    sys.modules.pop("fake_pipe", None)
    monkeypatch.setenv("ARCSUB_PIPELINE", "fake_pipe:run_pipeline")
    return mod_dir


@pytest.fixture
def tiny_model(tmp_path_factory) -> Path:
    """A random tiny model directory (saved like training saves it)."""
    from arcsub.core.modeldir import save_model
    from arcsub.lm.models import build_model

    d = tmp_path_factory.mktemp("tiny") / "tiny-model"
    net, tok = build_model("tiny", max_len=2048)
    save_model(net, tok, d, {"format": "compact", "preset": "tiny", "steps": 0})
    return d


def _model_dataset(model: Path, dest: Path, adapters: Path | None = None) -> Path:
    sys.path.insert(0, str(TOOLS))
    import build_model_dataset

    build_model_dataset.build(
        model,
        dest,
        user="tester",
        slug="arcsub-model",
        title="arcsub model",
        license_name="other",
        adapters=adapters,
    )
    return dest


@pytest.fixture
def kaggle_env(tmp_path, monkeypatch):
    """A fresh fake /kaggle tree and the environment pointing at it (no leftovers from the caller's env)."""
    root = tmp_path / "kaggle"
    (root / "input").mkdir(parents=True)
    for k in (
        "ARCSUB_CHALLENGES",
        "ARCSUB_MODEL_DIR",
        "ARCSUB_KAGGLE_INPUT",
        "ARCSUB_KAGGLE_WORKING",
        "ARCSUB_COMPETITION",
        "ARCSUB_KAGGLE_MODE",
        "ARCSUB_CONFIG",
        "ARCSUB_OVERRIDES",
        "ARCSUB_T0",
        "ARCSUB_SAFETY_MARGIN",
        "ARCSUB_KAGGLE_STRICT",
        "FAKE_FAIL",
        "FAKE_DELAY",
    ):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("ARCSUB_KAGGLE_ROOT", str(root))
    monkeypatch.setenv("ARCSUB_TIME_LIMIT", "600")
    # the notebook's clock starts with its process; pytest's process started minutes of tests ago
    monkeypatch.setenv("ARCSUB_T0", str(time.time()))
    return root


def _eval_challenges(root: Path, competition: str, ids: list[str], arc1_eval) -> Path:
    path = root / "input" / competition / CHALLENGES_FILE
    write_json_atomic(path, {t: arc1_eval[t].to_json() for t in ids})
    return path


# ---------------------------------------------------------------------------------------------- paths


def test_paths_default_and_env_override():
    p = kaggle_paths({})
    assert p == KagglePaths(Path("/kaggle"), Path("/kaggle/input"), Path("/kaggle/working"))
    assert p.submission == Path("/kaggle/working/submission.json")
    q = kaggle_paths({"ARCSUB_KAGGLE_ROOT": "/x", "ARCSUB_KAGGLE_WORKING": "/w"})
    assert (q.input, q.working, q.submission) == (Path("/x/input"), Path("/w"), Path("/w/submission.json"))
    assert kpaths.on_kaggle({"ARCSUB_KAGGLE_ROOT": "/x"})


def test_find_challenges(kaggle_env, arc1_eval):
    ids = sorted(arc1_eval)[:2]
    path = _eval_challenges(kaggle_env, "arc-prize-2025", ids, arc1_eval)
    paths = kaggle_paths()
    assert find_challenges(paths) == (path, "arc-prize-2025")
    assert find_challenges(paths, "arc-prize-2025") == (path, "arc-prize-2025")
    with pytest.raises(ArcDataError, match="arc-prize-2024.*not found"):
        find_challenges(paths, "arc-prize-2024")
    with pytest.raises(ArcDataError, match="unknown competition"):
        find_challenges(paths, "arc-prize-1999")
    empty = KagglePaths(kaggle_env, kaggle_env / "nothing", kaggle_env / "working")
    with pytest.raises(ArcDataError, match="no arc-agi_test_challenges.json"):
        find_challenges(empty)


def test_public_standin_detection(tmp_path, data_root, arc1_eval):
    # ARC Prize 2024's public "test" file: 100 training tasks, recognised by their ids alone
    public, _ = dataset_files("arc-agi-1", "test")
    comp = tmp_path / "arc-prize-2024"
    comp.mkdir()
    (comp / CHALLENGES_FILE).write_bytes(public.read_bytes())
    standin, why = is_public_standin(load_tasks(comp / CHALLENGES_FILE), comp / CHALLENGES_FILE)
    assert standin and "public stand-in" in why
    # evaluation tasks: unknown ids -> hidden ...
    hidden = tmp_path / "h" / CHALLENGES_FILE
    ids = sorted(arc1_eval)[:3]
    write_json_atomic(hidden, {t: arc1_eval[t].to_json() for t in ids})
    assert is_public_standin(load_tasks(hidden), hidden) == (False, "hidden tasks")
    # ... unless a sibling challenges file holds them, or their solutions sit next to them
    write_json_atomic(
        hidden.parent / "arc-agi_evaluation_challenges.json",
        {t: arc1_eval[t].to_json() for t in sorted(arc1_eval)[:10]},
    )
    assert is_public_standin(load_tasks(hidden), hidden)[0]
    (hidden.parent / "arc-agi_evaluation_challenges.json").unlink()
    write_json_atomic(hidden.parent / "arc-agi_test_solutions.json", {})
    assert is_public_standin(load_tasks(hidden), hidden)[0]


# ----------------------------------------------------------------------------------------------- GPUs


@pytest.mark.parametrize(
    "gpu, engine, dtype",
    [
        (GpuInfo(2, ("Tesla T4",) * 2, (7, 5), 15.0, vllm=True), "torch", "fp16"),  # ARC Prize 2024
        (GpuInfo(4, ("NVIDIA L4",) * 4, (8, 9), 22.0, vllm=True), "vllm", "bf16"),  # ARC Prize 2025
        (GpuInfo(4, ("NVIDIA L4",) * 4, (8, 9), 22.0, vllm=False), "torch", "bf16"),
        (GpuInfo(), "torch", "fp32"),  # CPU
    ],
)
def test_gpu_choices(gpu, engine, dtype):
    assert (gpu.engine, gpu.dtype) == (engine, dtype)
    assert engine in gpu.describe()


def test_detect_gpus_here():
    import torch

    info = runtime.detect_gpus()
    assert info.count == (torch.cuda.device_count() if torch.cuda.is_available() else 0)


def test_apply_runtime_sets_auto_fields_of_the_real_config():
    from arcsub.lm.pipeline import PipelineConfig

    t4 = GpuInfo(2, ("Tesla T4",) * 2, (7, 5), 15.0, vllm=True)
    cfg = apply_runtime(PipelineConfig(), t4)
    assert (cfg.predict.engine, cfg.predict.dtype, cfg.ttft.dtype) == ("torch", "fp16", "fp16")
    pinned = PipelineConfig()
    pinned.predict.dtype = "fp32"
    assert apply_runtime(pinned, t4).predict.dtype == "fp32"  # an explicit choice stays
    assert notebook.set_field(cfg, "ttft.adapter", "/a").ttft.adapter == "/a"
    assert notebook.set_field(cfg, "nope", 1) is cfg


# --------------------------------------------------------------------------------------------- budget


def test_time_budget():
    b = TimeBudget(t0=1000.0)
    assert b.margin_s == 45 * 60  # 12 h: capped margin
    assert b.deadline == 1000.0 + 12 * 3600 - 45 * 60
    assert b.hard_deadline == b.deadline + 45 * 60 / 2
    assert b.remaining(now=1000.0) == 12 * 3600 - 45 * 60
    assert b.per_task(100, workers=2, now=1000.0) == pytest.approx((12 * 3600 - 45 * 60) * 2 / 100)
    assert b.remaining(now=1e12) == 0.0
    short = TimeBudget(600, t0=0.0)
    assert short.margin_s == 60.0  # 10% of a short limit
    with pytest.raises(ArcDataError):
        TimeBudget(600, margin_s=700)
    env = {"ARCSUB_TIME_LIMIT": "3600", "ARCSUB_SAFETY_MARGIN": "100", "ARCSUB_T0": "5"}
    assert TimeBudget.from_env(env) == TimeBudget(3600, 100, 5.0)
    with pytest.raises(ArcDataError, match="ARCSUB_TIME_LIMIT"):
        TimeBudget.from_env({"ARCSUB_TIME_LIMIT": "12h"})


# ------------------------------------------------------------------------------------ model dataset


def test_model_dataset_found_and_verified(tmp_path, tiny_model):
    ds = _model_dataset(tiny_model, tmp_path / "input" / "arcsub-model")
    paths = KagglePaths(tmp_path, tmp_path / "input", tmp_path / "working")
    found = find_model_dataset(paths)
    assert found.root == ds and found.model_dir == ds and found.adapters_dir is None
    assert verify_dataset_files(found.root, found.manifest, full=True) == len(found.manifest["files"])
    weights = ds / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # same size, different content: only the sha256 check sees it
    weights.write_bytes(bytes(data))
    verify_dataset_files(found.root, found.manifest)
    with pytest.raises(ArcDataError, match="sha256"):
        verify_dataset_files(found.root, found.manifest, full=True)
    weights.write_bytes(b"short")
    with pytest.raises(ArcDataError, match="bytes, the manifest says"):
        verify_dataset_files(found.root, found.manifest)
    with pytest.raises(ArcDataError, match="no model dataset"):
        find_model_dataset(KagglePaths(tmp_path, tmp_path / "working", tmp_path / "working"))


def test_adapters_kaggle_left_zipped_are_unpacked(tmp_path, tiny_model):
    lora = tmp_path / "lora"
    lora.mkdir()
    (lora / "adapter_config.json").write_text('{"r": 8}')
    (lora / "adapter_model.safetensors").write_bytes(b"w" * 32)
    ds = _model_dataset(tiny_model, tmp_path / "input" / "arcsub-model", adapters=lora)
    paths = KagglePaths(tmp_path, tmp_path / "input", tmp_path / "working")
    assert notebook.resolve_model(None, paths, {})[1] == ds / "adapters"
    shutil.make_archive(str(ds / "adapters"), "zip", ds / "adapters")  # as `--dir-mode zip` uploads it
    shutil.rmtree(ds / "adapters")
    model_dir, adapters, config = notebook.resolve_model(None, paths, {"ARCSUB_VERIFY_SHA256": "1"})
    assert model_dir == ds and config is None
    assert adapters == tmp_path / "working" / "arcsub-adapters"
    assert (adapters / "adapter_config.json").read_text() == '{"r": 8}'
    (ds / "adapters.zip").unlink()
    with pytest.raises(ArcDataError, match="neither the folder nor adapters.zip"):
        notebook.resolve_model(None, paths, {})


# ----------------------------------------------------------------------------------------------- main


def test_main_writes_baseline_then_runs_the_pipeline(kaggle_env, arc1_eval, tiny_model, fake_pipeline):
    ids = sorted(arc1_eval)[:3]
    _eval_challenges(kaggle_env, "arc-prize-2024", ids, arc1_eval)
    _model_dataset(tiny_model, kaggle_env / "input" / "arcsub-model")
    summary = notebook.main(["predict.views=3"])
    working = kaggle_env / "working"
    call = read_json(working / "fake_call.json")
    assert call["baseline_on_disk"]  # the baseline was written before the pipeline started
    assert call["tasks"] == ids and call["solutions"] is None
    assert call["model"] == str(kaggle_env / "input" / "arcsub-model")
    assert call["views"] == 3  # the override reached the config
    assert (call["engine"], call["dtype"], call["ttft_dtype"]) == ("torch", "fp32", "fp32")  # CPU
    assert 400 < call["time_budget"] <= 600 - 60  # limit less the 10% margin less the time spent
    assert summary["mode"] == "full" and summary["predicted"] == 3 and "error" not in summary
    assert set(summary["task_seconds"]) == set(ids)
    sub = load_submission(
        working / "submission.json", load_tasks(kaggle_env / "input" / "arc-prize-2024" / CHALLENGES_FILE)
    )
    assert sub[ids[0]][0]["attempt_1"].tolist() == [[7]]
    assert read_json(working / "arcsub-kaggle-summary.json")["tasks"] == 3


def test_main_self_check_on_the_public_standin(kaggle_env, data_root, tiny_model, fake_pipeline, monkeypatch):
    public, _ = dataset_files("arc-agi-1", "test")
    train_ch, train_sol = dataset_files("arc-agi-1", "training")
    comp = kaggle_env / "input" / "arc-prize-2024"
    comp.mkdir(parents=True)
    for f in (public, train_ch, train_sol):
        (comp / f.name).write_bytes(f.read_bytes())  # as Kaggle lays out the public competition data
    _model_dataset(tiny_model, kaggle_env / "input" / "arcsub-model")
    monkeypatch.setenv("ARCSUB_SELFCHECK_TASKS", "3")
    summary = notebook.main()
    assert summary["mode"] == "selfcheck" and summary["score"] == 1.0
    call = read_json(kaggle_env / "working" / "arcsub-selfcheck" / "fake_call.json")
    assert len(call["tasks"]) == 3 and call["solutions"]
    assert call["time_budget"] <= 900
    tasks = load_tasks(comp / CHALLENGES_FILE)
    sub = load_submission(kaggle_env / "working" / "submission.json", tasks)  # all 100 tasks, valid
    truth = read_json(train_sol)
    for tid in call["tasks"]:  # the self-check's (here: perfect) attempts were merged in
        assert sub[tid][0]["attempt_1"].tolist() == truth[tid][0]
    assert summary["predicted"] == 3


def test_main_survives_a_failing_pipeline(kaggle_env, arc1_eval, tiny_model, fake_pipeline, monkeypatch):
    ids = sorted(arc1_eval)[:2]
    path = _eval_challenges(kaggle_env, "arc-prize-2025", ids, arc1_eval)
    _model_dataset(tiny_model, kaggle_env / "input" / "arcsub-model")
    monkeypatch.setenv("FAKE_FAIL", "1")
    summary = notebook.main()
    assert "fake pipeline failure" in summary["error"] and summary["predicted"] == 0
    load_submission(kaggle_env / "working" / "submission.json", load_tasks(path))
    monkeypatch.setenv("ARCSUB_KAGGLE_STRICT", "1")
    with pytest.raises(RuntimeError, match="fake pipeline failure"):
        notebook.main()
    load_submission(kaggle_env / "working" / "submission.json", load_tasks(path))


def test_main_without_model_keeps_the_baseline(kaggle_env, arc1_eval, fake_pipeline):
    ids = sorted(arc1_eval)[:2]
    path = _eval_challenges(kaggle_env, "arc-prize-2024", ids, arc1_eval)
    summary = notebook.main()
    assert "no model dataset" in summary["error"]
    load_submission(kaggle_env / "working" / "submission.json", load_tasks(path))


def test_alarm_interrupts_a_pipeline_past_the_hard_deadline(
    kaggle_env, arc1_eval, tiny_model, fake_pipeline, monkeypatch
):
    ids = sorted(arc1_eval)[:5]
    path = _eval_challenges(kaggle_env, "arc-prize-2024", ids, arc1_eval)
    _model_dataset(tiny_model, kaggle_env / "input" / "arcsub-model")
    monkeypatch.setenv("ARCSUB_T0", str(time.time()))
    monkeypatch.setenv("ARCSUB_TIME_LIMIT", "3")  # margin 0.3 s: interrupted ~2.85 s in
    monkeypatch.setenv("FAKE_DELAY", "1")  # 5 tasks x 1 s would take 5 s
    t0 = time.time()
    summary = notebook.main()
    assert summary.get("interrupted") and time.time() - t0 < 3.5
    assert 1 <= summary["predicted"] < 5  # the tasks finished before the alarm are kept
    load_submission(kaggle_env / "working" / "submission.json", load_tasks(path))


def test_progress_watcher_logs_each_task(tmp_path, arc1_eval, caplog):
    tasks = {t: arc1_eval[t] for t in sorted(arc1_eval)[:2]}
    sub = tmp_path / "submission.json"
    submission.write_baseline(tasks, sub)
    w = runtime.ProgressWatcher(sub, tasks, TimeBudget(600))
    assert w.poll() == []
    first = sorted(tasks)[0]
    submission.finalize_submission(tasks, sub, {first: [[[[1]], [[2]]]] * len(tasks[first].test)})
    with caplog.at_level(logging.INFO, logger="arcsub.kaggle"):
        time.sleep(0.01)
        sub.touch()
        assert w.poll() == [first]
    assert f"task {first} done" in caplog.text
    assert set(w.stop()) == {first}


def test_cli_one_line_error_without_challenges(kaggle_env, capsys):
    assert kaggle_main.run([]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and err[0].startswith("arcsub.kaggle: error:") and "arc-agi_test_challenges" in err[0]
    )


def test_finalize_repairs_a_broken_submission(tmp_path, arc1_eval):
    tasks = {t: arc1_eval[t] for t in sorted(arc1_eval)[:3]}
    sub = tmp_path / "submission.json"
    ids = list(tasks)
    broken = {ids[0]: [{"attempt_1": [[1]], "attempt_2": [[2]]}] * len(tasks[ids[0]].test), ids[1]: "junk"}
    sub.write_text(json.dumps(broken))
    res = submission.finalize_submission(tasks, sub)
    assert res["predicted"] == 1
    out = load_submission(sub, tasks)
    assert out[ids[0]][0]["attempt_1"].tolist() == [[1]]


def test_an_attached_data_dataset_becomes_the_data_folder(kaggle_env, monkeypatch, tmp_path, data_root):  # noqa: F811
    """The task pipeline's `data:re-arc` resolves inside the attached data dataset, also when Kaggle left the
    folder zipped; an ARCSUB_DATA the user set wins."""
    from arcsub.core.data import resolve_path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
    import build_data_dataset
    from test_tools import re_arc_slice

    ds = kaggle_env / "input" / "arcsub-data"
    src = re_arc_slice(data_root, tmp_path / "src")
    build_data_dataset.build(
        src, ["re-arc"], ds, user="alice", slug="arcsub-data", title="arcsub data", license_name="other"
    )
    paths = kpaths.kaggle_paths()
    monkeypatch.setenv("ARCSUB_DATA", "/elsewhere")
    assert datasets.use_data_dataset(paths) is None and str(resolve_path("data:x")) == "/elsewhere/x"
    monkeypatch.setenv("ARCSUB_DATA", "")  # unset (restored after the test)
    assert datasets.use_data_dataset(paths) == ds
    assert len(list(resolve_path("data:re-arc/tasks").glob("*.json"))) == 3
    shutil.make_archive(str(ds / "re-arc"), "zip", ds / "re-arc")  # as `--dir-mode zip` uploads it
    shutil.rmtree(ds / "re-arc")
    monkeypatch.setenv("ARCSUB_DATA", "")
    base = datasets.use_data_dataset(paths)
    assert base == paths.working / "arcsub-data"
    assert len(list(resolve_path("data:re-arc/tasks").glob("*.json"))) == 3
