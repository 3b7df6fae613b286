"""Task-model training sources on the real files: generated pairs, merged duplicate tasks, and the guard that
keeps test and held-out tasks (ARC-AGI-1 evaluation's 6 ARC-AGI-2 evaluation tasks) out of training."""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path

import pytest

from arcsub.core.config import load_config, to_dict
from arcsub.core.data import ArcDataError, read_json, resolve_path
from arcsub.taskmodel.data import TRAINING_SOURCES, PairSource, TaskDataSettings
from arcsub.taskmodel.train import TaskTrainConfig, check_config, check_same_run, run_name

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
A1_EVAL = "data:arc-agi-1/arc-agi_evaluation_challenges.json"
A2_EVAL = "data:arc-agi-2/arc-agi_evaluation_challenges.json"
OVERLAP = {"0934a4d8", "136b0064", "16b78196", "981571dc", "aa4ec2a5", "da515329"}


def training_ids(source: PairSource) -> dict[str, set[str]]:
    return {name: {s.task_id for s in sets} for name, sets in source.sources if name in TRAINING_SOURCES}


@pytest.mark.parametrize("where", ["ttt_challenges", "holdout"])
def test_arc1_evaluation_is_refused_beside_arc2_evaluation(data_root, where):
    data = TaskDataSettings(challenges=[A1_EVAL], **{where: [A2_EVAL]})
    with pytest.raises(
        ArcDataError, match=r"arc-agi_evaluation_challenges.json: task 0934a4d8 \(arc source\)"
    ):
        PairSource(data)


def test_exclude_test_tasks_drops_exactly_the_six_overlap_tasks(data_root, caplog):
    data = TaskDataSettings(challenges=[A1_EVAL], holdout=[A2_EVAL], exclude_test_tasks=True)
    with caplog.at_level(logging.WARNING, logger="arcsub.taskmodel.data"):
        source = PairSource(data)
    every = set(read_json(resolve_path(A1_EVAL)))
    assert every - training_ids(source)["arc"] == OVERLAP
    assert any("6 arc task(s)" in r.getMessage() for r in caplog.records)
    assert not OVERLAP & set(source.task_ids)  # held out: no row either


def test_generated_and_re_arc_sources_are_guarded_too(data_root, tmp_path):
    """A generated file (ARC-GEN's layout) that names a test task is refused by source, or loses that task."""
    pairs = read_json(resolve_path("data:re-arc/tasks/007bbfb7.json"))[:3]
    gen = tmp_path / "gen.json"
    gen.write_text(json.dumps({"007bbfb7": pairs, "0934a4d8": pairs}))
    with pytest.raises(ArcDataError, match=r"gen.json: task 0934a4d8 \(generated source\)"):
        PairSource(TaskDataSettings(generated=[str(gen)], holdout=[A2_EVAL]))
    source = PairSource(TaskDataSettings(generated=[str(gen)], holdout=[A2_EVAL], exclude_test_tasks=True))
    assert training_ids(source) == {"generated": {"007bbfb7"}}
    re_arc = tmp_path / "re-arc" / "tasks"
    re_arc.mkdir(parents=True)
    (re_arc / "007bbfb7.json").write_text(json.dumps(pairs))
    test_file = tmp_path / "t_challenges.json"
    test_file.write_text(
        json.dumps({"007bbfb7": {"train": pairs[:1], "test": [{"input": pairs[1]["input"]}]}})
    )
    with pytest.raises(
        ArcDataError, match=r"re-arc/tasks: task 007bbfb7 \(re-arc source\) is both a training"
    ):
        PairSource(TaskDataSettings(re_arc=str(re_arc.parent), ttt_challenges=[str(test_file)]))


def test_a_task_in_two_challenge_files_is_one_task_with_merged_pairs(data_root, tmp_path):
    task = read_json(resolve_path("data:arc-agi-1/arc-agi_training_challenges.json"))["007bbfb7"]
    first, second = tmp_path / "a_challenges.json", tmp_path / "b_challenges.json"
    first.write_text(json.dumps({"007bbfb7": {"train": task["train"][:2], "test": task["test"]}}))
    second.write_text(json.dumps({"007bbfb7": {"train": task["train"], "test": task["test"]}}))
    source = PairSource(TaskDataSettings(challenges=[str(first), str(second)]))
    ((name, sets),) = source.sources
    assert source.task_ids == ["007bbfb7"] and len(sets) == 1
    assert len(sets[0].pairs) == len(task["train"])  # the union, each demonstration once


def test_new_settings_keep_old_run_names_and_match_old_run_folders(tmp_path):
    cfg = load_config(TaskTrainConfig, CONFIGS / "task-transductive-arc2.yaml", ["name="])
    assert run_name(cfg) == "task-transductive__base__100000st__e20f8a52"  # its name before the new keys
    saved = to_dict(cfg)
    for key in ("generated", "generated_weight", "holdout", "scale", "input_loss", "test_input_weight"):
        del saved["data"][key]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    check_same_run(tmp_path, cfg)  # a run written before the keys existed is the same run
    widened = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, generated=["x.json.xz"]))
    assert run_name(widened) != run_name(cfg)
    with pytest.raises(ArcDataError, match="other settings"):
        check_same_run(tmp_path, widened)


def test_a_rerun_fitted_to_other_seconds_is_the_same_run_once_planned(tmp_path):
    """The competition path fits `seconds` to the time left, so each rerun asks for other seconds: that is the
    same run once plan.json holds its step count, or while nothing is saved; with a checkpoint of a run that
    has no plan (fixed steps) seconds still tells two runs apart."""
    cfg = load_config(TaskTrainConfig, CONFIGS / "task-transductive-arc2.yaml", ["name=fixed"])
    (tmp_path / "config.json").write_text(json.dumps(to_dict(cfg)))
    other = dataclasses.replace(cfg, seconds=cfg.seconds - 7.5)
    check_same_run(tmp_path, other)  # nothing saved yet: it starts afresh
    (tmp_path / "checkpoint").mkdir()
    (tmp_path / "checkpoint" / "state.json").write_text("{}")
    with pytest.raises(ArcDataError, match="seconds differ"):
        check_same_run(tmp_path, other)
    (tmp_path / "plan.json").write_text(json.dumps({"steps": 1000}))
    check_same_run(tmp_path, other)  # planned: the resumed run keeps its step count
    check_same_run(tmp_path, dataclasses.replace(other, steps=900))  # a bound that may shorten the plan


A2_GEN = "data:extra/arc-gen/arc2-training.json.xz"


def first_re_arc_tasks(re_arc: str, where: Path, n: int) -> str:
    """A RE-ARC folder of its first n real task files (linked into `where`): the whole of it is ~120k pairs and
    30 s to parse, more than a test that checks which tasks a preset reads needs."""
    for f in sorted((resolve_path(re_arc) / "tasks").glob("*.json"))[:n]:
        (where / f.name).symlink_to(f)
    return str(where)


@pytest.fixture(scope="module")
def preset_source(data_root, tmp_path_factory) -> PairSource:
    """The widened ARC-AGI-2 preset's sources on the real data, its generated pairs sliced (loaded once, ~5 s):
    every challenge file, the ttt file, holdout and the guard as in the preset; RE-ARC as three of its real task
    files and ARC-GEN as its ARC-AGI-2 training file alone (the whole of both is ~120k pairs and 30 s to parse)."""
    cfg = load_config(TaskTrainConfig, CONFIGS / "task-transductive-arc2-data.yaml")
    assert A2_GEN in cfg.data.generated and cfg.data.re_arc
    re_arc = first_re_arc_tasks(cfg.data.re_arc, tmp_path_factory.mktemp("re-arc"), 3)
    return PairSource(dataclasses.replace(cfg.data, re_arc=re_arc, generated=[A2_GEN]))


def test_the_widened_arc2_preset_holds_arc_gen_and_no_arc2_evaluation_task(preset_source):
    ids = training_ids(preset_source)
    arc2_eval = set(read_json(resolve_path(A2_EVAL)))
    arc2_gen = set(read_json(resolve_path(A2_GEN)))
    assert len(arc2_gen) > 150 and arc2_gen <= ids["generated"]
    assert all(not arc2_eval & found for found in ids.values())
    assert ids["arc"] >= set(read_json(resolve_path("data:arc-agi-2/arc-agi_training_challenges.json")))
    assert len(ids["arc"]) == 1027  # 1033 distinct ARC-AGI-1/2 training and evaluation tasks less the 6
    assert {s.task_id for s in dict(preset_source.sources)["ttt"]} == arc2_eval
    assert len(preset_source.task_ids) == len(set(preset_source.task_ids))
    assert len(ids["re-arc"]) == 3 and ids["re-arc"] <= ids["arc"]  # RE-ARC pairs share their task's row


def test_the_arc2_pretraining_preset_reads_no_arc2_evaluation_task(data_root, tmp_path):
    """configs/task-pretrain-arc2.yaml is pretraining for an ARC-AGI-2 report: its sources may hold anything but
    the evaluation tasks, which the competition path's TTT adds as new rows afterwards."""
    cfg = load_config(TaskTrainConfig, CONFIGS / "task-pretrain-arc2.yaml")
    check_config(cfg)
    assert cfg.mode == "pretrain" and not cfg.data.ttt_challenges and cfg.data.scale > 0
    re_arc = first_re_arc_tasks(cfg.data.re_arc, tmp_path, 2)
    ids = training_ids(PairSource(dataclasses.replace(cfg.data, re_arc=re_arc)))
    arc2_training = set(read_json(resolve_path("data:arc-agi-2/arc-agi_training_challenges.json")))
    assert ids["arc"] == arc2_training and len(ids["re-arc"]) == 2
    assert not set(read_json(resolve_path(A2_EVAL))) & set().union(*ids.values())


def test_scale_augmentation_upscales_both_grids_alike_within_30_cells(data_root):
    """data.scale=1: every pair that fits twice over comes as k x k blocks of its view (k >= 2), input and
    output by the same k, never past 30 x 30; scale 0 draws nothing, so older data streams stay the same."""
    import numpy as np

    from arcsub.core.data import grids_equal
    from arcsub.taskmodel.data import SEP, TaskIndex, decode_grid, scale_factor, upscale

    data = TaskDataSettings(challenges=["data:arc-agi-1/arc-agi_training_challenges.json"])
    plain, scaled = PairSource(data), PairSource(dataclasses.replace(data, scale=1.0))
    index = TaskIndex(scaled.task_ids)
    sets = {s.task_id: s for _, group in scaled.sources for s in group}
    rng, big = np.random.default_rng(0), 0
    for _ in range(200):
        s = scaled.sample(rng, index)
        sep = int(np.flatnonzero(s.ids == SEP)[0])
        inp, out = decode_grid(s.ids[1:sep]), decode_grid(s.ids[sep + 1 : -1])
        pair = sets[s.task_id].pairs[s.pair_index]
        assert grids_equal(inp, upscale(s.view.apply_grid(pair.input), s.scale))
        assert grids_equal(out, upscale(s.view.apply_grid(pair.output), s.scale))
        assert max(*inp.shape, *out.shape) <= 30
        big += s.scale > 1
    assert big > 100  # most training pairs fit at twice their size
    state = rng.bit_generator.state
    assert scale_factor(rng, 0.0, inp, out) == 1 and rng.bit_generator.state == state  # no draw at chance 0
    assert all(plain.sample(rng, index).scale == 1 for _ in range(20))
    cfg = load_config(TaskTrainConfig, CONFIGS / "task-transductive-arc2.yaml", ["data.scale=1.5"])
    with pytest.raises(ArcDataError, match="data.scale is a chance"):
        check_config(cfg)


def test_input_loss_learns_inputs_and_test_inputs_come_alone_without_their_outputs(data_root, tmp_path):
    """data.input_loss=1 labels every pair's input grid too (logged as "inputs", so a source's own loss stays
    its loss on outputs); data.test_input_weight adds the test tasks' test inputs as [bos] input [sep]
    sequences, input labelled, never their outputs (here written inline in the file, as ARC's per-task files
    do); at 0 neither draws a random number, so older data streams stay exactly as they were."""
    import numpy as np

    from arcsub.core.data import grids_equal, load_tasks
    from arcsub.taskmodel.data import IGNORE, SEP, SOURCES, TaskIndex, chance_of, decode_grid, make_batch

    tasks = load_tasks(resolve_path(A2_EVAL), resolve_path(A2_EVAL.replace("challenges", "solutions")))
    inline = {t: tasks[t].to_json(with_test_outputs=True) for t in sorted(tasks)[:6]}
    test_file = tmp_path / "t_challenges.json"
    test_file.write_text(json.dumps(inline))
    train = "data:arc-agi-1/arc-agi_training_challenges.json"
    data = TaskDataSettings(
        challenges=[train], ttt_challenges=[str(test_file)], input_loss=1.0, test_input_weight=1.0
    )
    source = PairSource(data)
    index = TaskIndex(source.task_ids)
    test_inputs = {t: [p.input for p in task.test] for t, task in load_tasks(test_file).items()}
    batch = make_batch(source, index, seed=0, step=0, rank=0, rows=4, seq_len=4096)
    seen = {s.source for _, _, s in batch.placed}
    assert {"arc", "ttt", "test-inputs"} <= seen
    for r, start, s in batch.placed:
        labels = batch.labels[r, start : start + len(s.ids)].numpy()
        sources = batch.source_ids[r, start : start + len(s.ids)].numpy()
        sep = int(np.flatnonzero(s.ids == SEP)[0])
        assert s.input_target and labels[0] == IGNORE and (labels[1:] == s.ids[1:]).all()
        if s.source == "test-inputs":
            assert sep == len(s.ids) - 1  # the input alone: no output, no eos
            shown = decode_grid(s.ids[1:sep])
            raw = test_inputs[s.task_id][s.pair_index]
            assert grids_equal(shown, s.view.apply_grid(raw))
            assert (sources == SOURCES.index("test-inputs")).all()
        else:
            assert (sources[: sep + 1] == SOURCES.index("inputs")).all()
            assert (sources[sep + 1 :] == SOURCES.index(s.source)).all()
    plain = PairSource(dataclasses.replace(data, input_loss=0.0, test_input_weight=0.0))
    assert [name for name, _ in plain.sources] == ["arc", "ttt"]  # the source weights of before
    old = make_batch(plain, index, seed=0, step=0, rank=0, rows=4, seq_len=4096)
    assert not any(s.input_target or s.source == "test-inputs" for _, _, s in old.placed)
    assert all(
        (old.labels[r, start : start + 1 + int(np.flatnonzero(s.ids == SEP)[0])] == IGNORE).all()
        for r, start, s in old.placed
    )
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert not chance_of(rng, 0.0) and rng.bit_generator.state == state  # no draw when off
    cfg = load_config(TaskTrainConfig, CONFIGS / "task-transductive-arc2.yaml", ["data.input_loss=2"])
    with pytest.raises(ArcDataError, match="data.input_loss is a chance"):
        check_config(cfg)
