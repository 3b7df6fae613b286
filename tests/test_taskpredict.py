"""Task-model inference: views, reverting and voting, and the CLI end to end on real tasks."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from test_taskmodel import one_thread, tiny  # noqa: F401  (the fixture applies here too)
from test_tasktrain import TINY, smallest, write_subset

from arcsub.core.augment import Augmentation
from arcsub.core.candidates import MAX_ANSWER_TOKENS, Candidate, SamplingSettings
from arcsub.core.data import Pair, grids_equal, load_tasks
from arcsub.core.memory import BATCH_TOKENS_CEILING, usable_memory
from arcsub.core.metrics import load_predictions
from arcsub.core.submission import load_submission
from arcsub.taskmodel import predict as taskpredict
from arcsub.taskmodel.data import EOS, NL, TaskIndex, encode_pair, free_colours, grid_tokens
from arcsub.taskmodel.model import preset_config
from arcsub.taskmodel.predict import TaskPredictConfig, predict_tasks, task_views


def test_free_colours_keep_background_and_output_only_colours():
    pairs = [Pair(np.array([[0, 1], [2, 5]]), np.array([[3, 1]])), Pair(np.array([[4]]), None)]
    assert free_colours(pairs).tolist() == [1, 2, 4, 5, 6, 7, 8, 9]  # 0 and 3 (output only) stay


def test_views_are_distinct_cover_d8_first_and_respect_fixed_colours(arc1_eval):
    task = arc1_eval[smallest(arc1_eval, 1)[0]]
    vs = task_views(task, TaskPredictConfig(views=20))
    assert len(vs) == 20 and len({v.name for v in vs}) == 20 and vs[0].name == "id"
    assert [v.d8 for v in vs[:8]] == list(range(8))
    free = set(free_colours(task.train + [Pair(p.input) for p in task.test]).tolist())
    for v in vs:
        assert all(v.colours[c] == c for c in range(10) if c not in free)
        assert Augmentation.parse(v.name) == v
        g = task.test[0].input
        assert grids_equal(v.revert_grid(v.apply_grid(g)), g)
    assert vs == task_views(task, TaskPredictConfig(views=20))  # seeded by the task: stable across runs
    assert [v.d8 for v in task_views(task, TaskPredictConfig(views=4, d8=False, colours=False))] == [0]


def test_answers_are_reverted_and_voted_and_input_copies_left_out(arc1_eval, monkeypatch):
    """A fake decoder answers every view with the truth in that view's frame, except that a majority of views
    copy the test input: the vote must still return the truth, mapped back from every D8/colour view."""
    ids = smallest(arc1_eval, 3)
    tasks = {t: arc1_eval[t] for t in ids}
    cfg = TaskPredictConfig(views=9, selection="vote")
    index = TaskIndex(ids)
    jobs = [j for t in tasks.values() for j in taskpredict.view_jobs(t, index.row(t.id), cfg)]

    def fake_decode(model, prompts, rows, views, params, progress=False):
        assert len(prompts) == len(jobs)
        out = []
        for k, j in enumerate(jobs):
            test = tasks[j.task_id].test[j.test_index]
            grid = test.input if k % 9 < 5 else test.output
            toks = grid_tokens(j.view.apply_grid(grid)).tolist()
            out.append([Candidate(toks, -1.0 - k, len(toks) + 1, True)])
        return out

    monkeypatch.setattr(taskpredict, "decode", fake_decode)
    preds, attempts = predict_tasks(tiny(num_tasks=3), index, tasks, cfg, progress=False)
    for t in ids:
        for i, pair in enumerate(tasks[t].test):
            assert grids_equal(np.asarray(attempts[t][i][0]), pair.output)
            assert len(preds[t][i]) == 9
            # every view's answer is reverted to the original frame
            grids = [np.asarray(c["grid"]) for c in preds[t][i]]
            assert all(grids_equal(g, pair.output) or grids_equal(g, pair.input) for g in grids)
    keep = TaskPredictConfig(views=9, selection="vote", drop_input_copies=False)
    _, with_copies = predict_tasks(tiny(num_tasks=3), index, tasks, keep, progress=False)
    assert grids_equal(np.asarray(with_copies[ids[0]][0][0]), tasks[ids[0]].test[0].input)


def test_an_ensemble_pools_its_members_candidates_and_sums_their_likelihoods(arc1_eval, monkeypatch):
    """Two models decode the same views: the first is right in 4 of 9 views, the second in all 9. Alone the
    first loses its vote to a wrong grid; pooled, the right grid has 13 of 18 votes."""
    ids = smallest(arc1_eval, 2)
    tasks = {t: arc1_eval[t] for t in ids}
    cfg = TaskPredictConfig(views=9, selection="vote")
    first, second = tiny(num_tasks=2), tiny(num_tasks=2)

    def fake_decode(model, prompts, rows, views, params, progress=False):
        jobs = [j for t in tasks.values() for j in taskpredict.view_jobs(t, 0, cfg)]
        out = []
        for k, j in enumerate(jobs):
            test = tasks[j.task_id].test[j.test_index]
            grid = test.output if model is second or k % 9 < 4 else np.full_like(test.output, 7)
            toks = grid_tokens(j.view.apply_grid(grid)).tolist()
            out.append([Candidate(toks, -1.0, len(toks) + 1, True)])
        return out

    monkeypatch.setattr(taskpredict, "decode", fake_decode)
    _, alone = predict_tasks(first, TaskIndex(ids), tasks, cfg, progress=False)
    preds, pooled = predict_tasks(first, TaskIndex(ids), tasks, cfg, False, None, [(second, TaskIndex(ids))])
    for t in ids:
        truth = tasks[t].test[0].output
        assert len(np.unique(truth)) > 1  # the wrong grid (one colour) is told apart by its colours
        assert not grids_equal(np.asarray(alone[t][0][0]), truth)
        assert grids_equal(np.asarray(pooled[t][0][0]), truth)
        assert [c["member"] for c in preds[t][0]] == [0] * 9 + [1] * 9
    assert taskpredict.sum_scorer([lambda g: [1.0, 2.0], lambda g: [0.5, -3.0]])([None, None]) == [1.5, -1.0]

    def fake_scores(model, prompts, answers, rows, views, batch_tokens):
        """The first model mildly prefers the wrong grid (all 7s), the second strongly prefers the truth."""
        wrong = [len(set(a[(a != NL) & (a != EOS)].tolist())) == 1 for a in answers]  # one colour: the 7s
        return [(0.1 if w else 0.0) if model is first else (-5.0 if w else 0.0) for w in wrong]

    monkeypatch.setattr(taskpredict, "score_answers", fake_scores)
    likely = TaskPredictConfig(views=9, selection="likelihood", score_views=2)
    _, alone = predict_tasks(first, TaskIndex(ids), tasks, likely, progress=False)
    _, pooled = predict_tasks(first, TaskIndex(ids), tasks, likely, False, None, [(second, TaskIndex(ids))])
    for t in ids:
        truth = tasks[t].test[0].output
        assert not grids_equal(np.asarray(alone[t][0][0]), truth)  # first model alone: its own preference
        assert grids_equal(np.asarray(pooled[t][0][0]), truth)  # summed over both: the truth


def test_cli_trains_and_predicts_real_tasks_into_a_valid_submission(run_cli, arc1_train, arc1_eval, tmp_path):
    train_ch, _ = write_subset(arc1_train, smallest(arc1_train, 3), tmp_path, "tr")
    eval_ch, eval_sol = write_subset(arc1_eval, smallest(arc1_eval, 2), tmp_path, "ev")
    train_args = [
        "task-train",
        "--config",
        TINY,
        "mode=transductive",
        f"data.challenges=[{train_ch}]",
        f"data.ttt_challenges=[{eval_ch}]",
        "steps=4",
        "seq_len=512",
        f"out_dir={tmp_path / 'runs'}",
        "--quiet",
    ]
    res = run_cli(*train_args)
    assert res.rc == 0, res.err
    model = res.out.strip().splitlines()[-1].removeprefix("run: ") + "/model"
    last = json.loads((Path(model).parent / "log.jsonl").read_text().splitlines()[-1])
    by_source = last["loss_by_source"]  # training tasks and the test tasks' demonstrations, apart
    assert set(by_source) == {"arc", "ttt"} and min(by_source.values()) > 0
    assert min(by_source.values()) <= last["loss"] <= max(by_source.values())  # their label-weighted mean
    out = tmp_path / "out"
    res = run_cli(
        "task-predict",
        model,
        eval_ch,
        "-o",
        out,
        "--solutions",
        eval_sol,
        "--quiet",
        "views=3",
        "selection=vote+likelihood",
        "score_views=2",
    )
    assert res.rc == 0, res.err
    assert "Kaggle score" in res.out and "pass_n" in res.out
    files = {p.name.split("__")[0]: p for p in out.glob("*.json")}
    assert set(files) == {"predictions", "submission", "run"}
    tasks = load_tasks(eval_ch)
    load_submission(files["submission"], tasks)  # every task, every test input, two valid grids
    preds = load_predictions(files["predictions"])
    assert all(len(cands) == 3 for t in tasks for cands in preds[t])
    run = json.loads(files["run"].read_text())
    assert "score" in run and set(run["task_scores"]) == set(tasks)
    assert run_cli("validate", files["submission"], "--challenges", eval_ch).rc == 0
    res = run_cli("task-predict", model, eval_ch, "-o", out, "--quiet", "views=2", "--tasks", "1")
    assert res.rc == 0, res.err
    assert len(list(out.glob("*.json"))) == 6  # other settings: new files, nothing overwritten
    res = run_cli(*train_args[:-1], "seed=1", "--quiet")  # a second model: another seed
    assert res.rc == 0, res.err
    other = res.out.strip().splitlines()[-1].removeprefix("run: ") + "/model"
    both = tmp_path / "both"
    res = run_cli("task-predict", model, eval_ch, "-o", both, "--ensemble", other, "--quiet", "views=3")
    assert res.rc == 0, res.err
    files = {p.name.split("__")[0]: p for p in both.glob("*.json")}
    load_submission(files["submission"], tasks)
    preds = json.loads(files["predictions"].read_text())
    assert all([c["member"] for c in cands] == [0] * 3 + [1] * 3 for t in tasks for cands in preds[t])
    assert json.loads(files["run"].read_text())["ensemble"] == [other]


@pytest.mark.parametrize("bad", ["model", "config"])
def test_cli_bad_input_is_one_line(run_cli, arc1_eval, tmp_path, bad):
    eval_ch, _ = write_subset(arc1_eval, smallest(arc1_eval, 1), tmp_path, "ev")
    model = tmp_path / "nope" if bad == "model" else tmp_path
    extra = ["views=0"] if bad == "config" else []
    res = run_cli("task-predict", model, eval_ch, "-o", tmp_path / "o", *extra)
    assert res.rc == 2 and len(res.err_lines) == 1 and res.err.startswith("arcsub: error: ")


# ------------------------------------------------------------- decode batches that fit Kaggle's GPUs

GIB = 2**30
LONGEST_PROMPT = 30 * 31 + 2  # bos, a 30 x 30 input grid with its newlines, sep


def budget(memory_gib: float | None, dtype: torch.dtype) -> int:
    cfg = preset_config("base", 400)  # the task pipeline's model
    memory = None if memory_gib is None else int(memory_gib * GIB)
    return taskpredict.auto_batch_tokens(memory, cfg, dtype, LONGEST_PROMPT, MAX_ANSWER_TOKENS)


def test_auto_batch_tokens_fit_the_t4_and_l4_and_keep_the_ceiling_on_an_h200():
    """1 << 20 tokens fit the H200 (measured) but ran out of memory on the emulated T4 (15 GB, fp16) and L4
    (22 GB, bf16): the auto budget must stay below both and fill the H200 up to the ceiling."""
    cfg = preset_config("base", 400)
    t4, l4, h200 = budget(15, torch.float16), budget(22, torch.bfloat16), budget(139, torch.bfloat16)
    assert h200 == BATCH_TOKENS_CEILING == 1 << 20
    assert budget(None, torch.float32) == 1 << 20  # no limit known
    assert 100_000 < t4 < l4 < 1 << 20
    kv = cfg.num_hidden_layers * 2 * cfg.hidden_size * 2  # bytes per token of the fp16/bf16 cache
    assert (1 << 20) * kv > 11 * GIB  # why 1 << 20 died on both: the cache alone took 12 GiB
    per_token = taskpredict.decode_bytes_per_token(cfg, torch.float16, LONGEST_PROMPT, MAX_ANSWER_TOKENS)
    assert t4 * per_token <= 0.6 * 15 * GIB and l4 * per_token <= 0.6 * 22 * GIB
    assert budget(15, torch.float32) < t4  # fp32 costs twice the bytes
    assert budget(0, torch.float16) == 1  # nothing free: one row at a time, never zero


def test_usable_memory_on_cpu_is_the_hosts_available_memory(tmp_path, monkeypatch):
    """A CPU's budget follows MemAvailable: the 1 << 20 ceiling got a 24 GB machine's prediction killed."""
    from arcsub.core import memory

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24684000 kB\nMemAvailable:   20000000 kB\n")
    assert memory.host_available_bytes(str(meminfo)) == 20_000_000 * 1024
    assert memory.host_available_bytes(str(tmp_path / "missing")) is None
    meminfo.write_text("MemTotal:       24684000 kB\n")
    assert memory.host_available_bytes(str(meminfo)) is None
    monkeypatch.setattr(memory, "host_available_bytes", lambda: 20 * GIB)
    assert usable_memory("cpu") == 20 * GIB
    per_token = taskpredict.decode_bytes_per_token(
        preset_config("base", 400), torch.float32, LONGEST_PROMPT, MAX_ANSWER_TOKENS
    )
    cpu = budget(20, torch.float32)
    assert cpu < 1 << 20 and cpu * per_token <= 0.6 * 20 * GIB
    monkeypatch.setattr(memory, "host_available_bytes", lambda: None)
    assert usable_memory("cpu") is None


def oom_above(monkeypatch, rows: int, target=taskpredict, name: str = "decode_batch") -> list[int]:
    """Patch target.name to raise CUDA's out-of-memory for batches of more than `rows`; returns the sizes."""
    real, sizes = getattr(target, name), []

    def fake(model, prompts, *args, **kwargs):
        sizes.append(len(prompts))
        if len(prompts) > rows:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 286.00 MiB")
        return real(model, prompts, *args, **kwargs)

    monkeypatch.setattr(target, name, fake)
    return sizes


def test_out_of_memory_halves_the_batch_and_keeps_the_predictions(monkeypatch, caplog):
    model = tiny(num_tasks=3)
    prompts = [
        encode_pair(np.full((h, w), c)) for h, w, c in [(1, 1, 1), (2, 3, 2), (3, 2, 3), (2, 2, 4)] * 3
    ]
    rows, views = [i % 3 for i in range(12)], [i % 8 for i in range(12)]
    params = SamplingSettings(max_new_tokens=12, batch_tokens=1 << 20)
    whole = taskpredict.decode(model, prompts, rows, views, params)
    sizes = oom_above(monkeypatch, 3)
    with caplog.at_level(logging.WARNING, "arcsub.core.memory"):
        split = taskpredict.decode(model, prompts, rows, views, params)
    assert sizes[:3] == [12, 6, 3] and max(sizes) == 12 and all(s <= 3 for s in sizes if s not in (12, 6))
    assert [[c.tokens for c in cs] for cs in split] == [[c.tokens for c in cs] for cs in whole]
    for a, b in zip(split, whole, strict=True):
        assert a[0].logprob == pytest.approx(b[0].logprob, abs=1e-4)
    assert sum("halving the batch" in r.message for r in caplog.records) <= 1  # logged once per process


def test_a_single_row_that_does_not_fit_still_raises(monkeypatch):
    oom_above(monkeypatch, 0)
    with pytest.raises(torch.cuda.OutOfMemoryError):
        taskpredict.decode(tiny(), [encode_pair(np.ones((2, 2)))] * 2, [0, 0], [0, 0], SamplingSettings())


def test_scoring_backs_off_too(monkeypatch):
    model = tiny(num_tasks=2)
    prompts = [encode_pair(np.full((2, 2), c)) for c in range(6)]
    answers = [np.append(grid_tokens(np.full((1, 2), c)), EOS) for c in range(6)]
    args = (model, prompts, answers, [0, 1] * 3, [0] * 6)
    whole = taskpredict.score_answers(*args, 1 << 20)
    calls = []
    real = model.forward

    def fake(ids, *a, **k):
        calls.append(ids.shape[0])
        if ids.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real(ids, *a, **k)

    monkeypatch.setattr(model, "forward", fake)
    assert taskpredict.score_answers(*args, 0) == pytest.approx(whole, abs=1e-4)  # 0: auto (CPU: ceiling)
    assert calls[0] == 6 and max(calls[1:]) <= 3


def write_task_folder(tasks: dict, ids: list[str], folder: Path) -> Path:
    """ARC's own repository form (and most ARC-like sets'): one file per task, test outputs written inline."""
    folder.mkdir(parents=True)
    for i in ids:
        (folder / f"{i}.json").write_text(json.dumps(tasks[i].to_json(with_test_outputs=True)))
    return folder


def test_tasks_with_inline_outputs_score_without_a_solutions_file(
    run_cli, pretrained_task_model, arc1_eval, tmp_path
):
    ids = smallest(arc1_eval, 2)
    folder = write_task_folder(arc1_eval, ids, tmp_path / "tasks")
    eval_ch, eval_sol = write_subset(arc1_eval, ids, tmp_path, "ev")
    args = ["--quiet", "views=2"]
    res = run_cli("task-predict", pretrained_task_model, folder, "-o", tmp_path / "a", *args)
    assert res.rc == 0, res.err
    assert "Kaggle score" in res.out  # no --solutions: the folder's own test outputs score it
    res = run_cli(
        "task-predict", pretrained_task_model, eval_ch, "-o", tmp_path / "b", "--solutions", eval_sol, *args
    )
    assert res.rc == 0, res.err
    inline, kaggle = (json.loads(next((tmp_path / d).glob("run__*.json")).read_text()) for d in "ab")
    assert inline["task_scores"] == kaggle["task_scores"] and set(inline["task_scores"]) == set(ids)
    assert inline["metrics"] == kaggle["metrics"]
    res = run_cli("task-predict", pretrained_task_model, eval_ch, "-o", tmp_path / "c", *args)
    assert res.rc == 0 and "Kaggle score" not in res.out  # outputs neither inline nor given: not scored
    assert "score" not in json.loads(next((tmp_path / "c").glob("run__*.json")).read_text())
    sub = next((tmp_path / "a").glob("submission__*.json"))
    res = run_cli("score", sub, folder, "--json")  # `score` takes the folder as its solutions too
    assert res.rc == 0 and json.loads(res.out)["score"] == pytest.approx(inline["score"])
    res = run_cli("score", sub, eval_ch)  # a challenges file without its test outputs is not solutions
    assert res.rc == 2 and len(res.err_lines) == 1 and str(eval_ch) in res.err and "test outputs" in res.err
