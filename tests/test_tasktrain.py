"""Task-model training on real ARC tasks: it learns, resumes exactly, and test-time training never sees test outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from test_taskmodel import one_thread  # noqa: F401  (the fixture applies here too)

from arcsub.core.candidates import SamplingSettings
from arcsub.core.config import load_config
from arcsub.core.data import ArcDataError, Task, grid_to_list, grids_equal
from arcsub.taskmodel.data import (
    IGNORE,
    SEP,
    PairSource,
    TaskDataSettings,
    TaskIndex,
    decode_grid,
    encode_pair,
    make_batch,
)
from arcsub.taskmodel.model import load_task_model
from arcsub.taskmodel.predict import decode
from arcsub.taskmodel.train import StepPlan, TaskTrainConfig, check_config, train
from arcsub.training.runtime import Dist, optimizer_step

TINY = Path(__file__).resolve().parent.parent / "configs" / "task-tiny-cpu.yaml"


def write_subset(
    tasks: dict[str, Task], ids: list[str], folder: Path, stem: str, inline_outputs: bool = False
) -> tuple[Path, Path]:
    """A Kaggle-style <stem>_challenges.json / <stem>_solutions.json pair holding `ids` (used by the other modules)."""
    folder.mkdir(parents=True, exist_ok=True)
    challenges, solutions = folder / f"{stem}_challenges.json", folder / f"{stem}_solutions.json"
    challenges.write_text(json.dumps({i: tasks[i].to_json(with_test_outputs=inline_outputs) for i in ids}))
    solutions.write_text(json.dumps({i: [grid_to_list(p.output) for p in tasks[i].test] for i in ids}))
    return challenges, solutions


def smallest(tasks: dict[str, Task], n: int) -> list[str]:
    return sorted(
        tasks, key=lambda t: sum(p.input.size + p.output.size for p in tasks[t].train + tasks[t].test)
    )[:n]


def tiny_config(*overrides: str) -> TaskTrainConfig:
    return load_config(TaskTrainConfig, TINY, ["data.re_arc=null", *overrides])


def losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "log.jsonl").read_text().splitlines()]


def test_tiny_model_overfits_three_real_tasks(arc1_train, tmp_path):
    ids = smallest(arc1_train, 3)
    ch, _ = write_subset(arc1_train, ids, tmp_path, "three")
    cfg = tiny_config(
        f"data.challenges=[{ch}]",
        "data.d8=false",
        "data.colours=false",
        "steps=60",
        "seq_len=512",
        "log_every=5",
        "optim.name=normuon",
        f"out_dir={tmp_path / 'runs'}",
    )
    run = train(cfg, progress=False)
    curve = losses(run)
    assert curve[-1] < 0.5 * curve[0]
    model, index = load_task_model(run / "model")
    assert set(index.rows) == set(ids)
    pairs = [(t, p) for t in ids for p in arc1_train[t].train + arc1_train[t].test]
    cands = decode(
        model.eval(),
        [encode_pair(p.input) for _, p in pairs],
        [index.row(t) for t, _ in pairs],
        [0] * len(pairs),
        SamplingSettings(),
    )
    exact = sum(
        grids_equal(decode_grid(c[0].tokens), p.output) for (_, p), c in zip(pairs, cands, strict=True)
    )
    assert exact >= 1, f"none of {len(pairs)} trained outputs reproduced (losses {curve})"


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(arc1_train, tmp_path):
    ch, _ = write_subset(arc1_train, smallest(arc1_train, 4), tmp_path, "four")
    common = [f"data.challenges=[{ch}]", "steps=5", "seq_len=512", "log_every=1", "dropout=0.1"]
    whole = train(tiny_config(*common, f"out_dir={tmp_path / 'a'}"), progress=False)
    # a tiny time budget stops the run after its first step, with a checkpoint
    cut = tiny_config(*common, f"out_dir={tmp_path / 'b'}", "time_budget=0.000001")
    run = train(cut, progress=False)
    assert (run / "checkpoint" / "state.json").exists() and not (run / "model").exists()
    assert losses(run) == losses(whole)[:1]
    again = train(tiny_config(*common, f"out_dir={tmp_path / 'b'}"), progress=False)  # same run directory
    assert again == run and (run / "model" / "model.safetensors").exists()
    assert losses(run) == pytest.approx(losses(whole), abs=1e-6)
    with pytest.raises(ArcDataError, match="other settings"):  # a fixed name never mixes two different runs
        train(
            tiny_config(*common, f"out_dir={tmp_path / 'b'}", f"name={run.name}", "steps=6"), progress=False
        )


def test_test_time_training_stream_never_holds_test_outputs(arc1_eval, tmp_path):
    ids = list(arc1_eval)[:6]
    # test outputs written inline AND a sibling solutions file: the loader must still ignore both
    ch, _ = write_subset(arc1_eval, ids, tmp_path, "eval6", inline_outputs=True)
    source = PairSource(TaskDataSettings(ttt_challenges=[str(ch)]))
    index = TaskIndex(source.task_ids)
    seen, views = 0, set()
    for step in range(8):
        batch = make_batch(source, index, seed=0, step=step, rank=0, rows=2, seq_len=2048)
        for r, start, s in batch.placed:
            span = batch.input_ids[r, start : start + len(s.ids)].numpy()
            assert np.array_equal(span, s.ids) and s.source == "ttt"
            sep = int(np.flatnonzero(span == SEP)[0])
            labelled = np.flatnonzero(batch.labels[r, start : start + len(s.ids)].numpy() != IGNORE)
            assert labelled.tolist() == list(range(sep + 1, len(span)))  # loss on the output and eos only
            task = arc1_eval[s.task_id]
            inp, out = (
                s.view.revert_grid(decode_grid(span[1:sep])),
                s.view.revert_grid(decode_grid(span[sep + 1 :])),
            )
            assert any(grids_equal(inp, p.input) and grids_equal(out, p.output) for p in task.train)
            hidden = [
                p.output for p in task.test if not any(grids_equal(p.output, q.output) for q in task.train)
            ]
            assert not any(grids_equal(out, h) for h in hidden)
            assert index.row(s.task_id) == s.task_row
            views.add(s.view.name)
            seen += 1
    assert seen > 30 and len(views) > 10  # freshly augmented samples


def test_a_test_task_that_is_also_a_training_task_is_refused(arc1_train, tmp_path):
    ch, _ = write_subset(arc1_train, smallest(arc1_train, 2), tmp_path, "two")
    with pytest.raises(ArcDataError, match="both a training task and a test-time task"):
        PairSource(TaskDataSettings(challenges=[str(ch)], ttt_challenges=[str(ch)]))


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["mode=pretrain", "data.ttt_challenges=[x.json]"], "takes no data.ttt_challenges"),
        (["mode=ttt", "data.ttt_challenges=[x.json]"], "continues a pretrained model"),
        (["mode=transductive"], "needs data.ttt_challenges"),
        (["mode=transductive", "data.ttt_challenges=[x.json]", "model=runs/x/model"], "from scratch"),
        (["trainable=tasks"], "needs a pretrained model"),
    ],
)
def test_modes_check_their_data_and_starting_point(overrides, message):
    with pytest.raises(ArcDataError, match=message):
        check_config(tiny_config(*overrides))


def test_ttt_adds_task_rows_and_can_train_only_them(arc1_train, arc1_eval, tmp_path):
    train_ch, _ = write_subset(arc1_train, smallest(arc1_train, 2), tmp_path, "pre")
    eval_ids = smallest(arc1_eval, 2)
    eval_ch, _ = write_subset(arc1_eval, eval_ids, tmp_path, "ev")
    pre = train(
        tiny_config(
            f"data.challenges=[{train_ch}]", "steps=2", "seq_len=512", f"out_dir={tmp_path / 'runs'}"
        ),
        progress=False,
    )
    ttt = train(
        tiny_config(
            "mode=ttt",
            f"model={pre / 'model'}",
            "data.challenges=[]",
            f"data.ttt_challenges=[{eval_ch}]",
            "trainable=tasks",
            "steps=3",
            "seq_len=512",
            "optim.name=normuon",
            "optim.lr=0.01",
            f"out_dir={tmp_path / 'runs'}",
        ),
        progress=False,
    )
    m0, i0 = load_task_model(pre / "model")
    m1, i1 = load_task_model(ttt / "model")
    assert list(i1.rows)[: len(i0)] == list(i0.rows) and list(i1.rows)[len(i0) :] == eval_ids
    old = len(i0)
    assert torch.equal(m1.embed_tasks.weight[:old], m0.embed_tasks.weight)  # old tasks untouched
    assert not torch.allclose(m1.embed_tasks.weight[old:], m0.embed_tasks.weight.mean(0).expand(2, -1))
    body0 = {n: p for n, p in m0.named_parameters() if not n.startswith("embed_tasks")}
    for n, p in m1.named_parameters():
        if n in body0:
            assert torch.equal(p, body0[n]), n


def test_architecture_ablations_are_saved_with_the_model_and_kept(arc1_train, tmp_path):
    """1-D positions and no task rows train from scratch, reload as such, and a continued run cannot flip them."""
    train_ch, _ = write_subset(arc1_train, smallest(arc1_train, 2), tmp_path, "pre")
    common = [f"data.challenges=[{train_ch}]", "steps=2", "seq_len=512", f"out_dir={tmp_path / 'runs'}"]
    run = train(tiny_config(*common, "positions=1d", "task_embedding=false"), progress=False)
    model, _ = load_task_model(run / "model")
    assert (model.config.positions, model.config.task_embedding) == ("1d", False)
    with pytest.raises(ArcDataError, match="positions=1d; a trained model keeps it"):
        train(tiny_config(*common, f"model={run / 'model'}", "positions=3d", "name=again"), progress=False)
    # a run saved before these keys existed is the same run as one with them unset
    plain = train(tiny_config(*common, "name=plain"), progress=False)
    saved = json.loads((plain / "config.json").read_text())
    del saved["positions"], saved["task_embedding"]
    (plain / "config.json").write_text(json.dumps(saved))
    assert train(tiny_config(*common, "name=plain"), progress=False) == plain


class StepClock:
    """A fake clock for train(clock=...) that advances only when an optimizer step runs: each step costs
    `step_s` seconds (`slow_s` from step `slow_from` on), so the fitted step counts are the same on any machine."""

    def __init__(self, step_s: float, slow_s: float | None = None, slow_from: int = 0) -> None:
        self.now, self.steps = 1000.0, 0
        self.step_s, self.slow_s, self.slow_from = step_s, slow_s, slow_from

    def __call__(self) -> float:
        return self.now

    def patch(self, monkeypatch) -> None:
        """Time taskmodel.train's optimizer steps on this clock (the real step still runs)."""
        import arcsub.taskmodel.train as tt

        def timed_step(*args, **kwargs):
            self.steps += 1
            slow = self.slow_s is not None and self.steps >= self.slow_from
            self.now += self.slow_s if slow else self.step_s
            return optimizer_step(*args, **kwargs)

        monkeypatch.setattr(tt, "optimizer_step", timed_step)


def test_seconds_fit_the_step_count_and_a_resume_keeps_it(arc1_train, tmp_path, monkeypatch):
    ch, _ = write_subset(arc1_train, smallest(arc1_train, 3), tmp_path, "three")
    common = [f"data.challenges=[{ch}]", "seq_len=512", "log_every=1", "optim.warmup=40", "steps=100000"]
    clock = StepClock(0.125)  # 40 steps take 5 s: 1.25 s is left of 6.25, 10 more steps (exact in binary)
    clock.patch(monkeypatch)
    cut = tiny_config(*common, "seconds=6.25", f"out_dir={tmp_path / 'r'}", "time_budget=5.6")
    run = train(cut, progress=False, clock=clock)
    plan = json.loads((run / "plan.json").read_text())
    assert 40 < plan["steps"] < 100000  # fitted to 6.25 s from the timed steps, far below the maximum
    assert plan["steps"] == 50 and clock.steps == 45  # the budget ends the session at step 45
    assert not (run / "model").exists()  # stopped by time_budget first; the resume must keep the plan
    resumed = StepClock(1.0)  # a slower session: a refit would change the count, the plan must not
    resumed.patch(monkeypatch)
    train(tiny_config(*common, "seconds=6.25", f"out_dir={tmp_path / 'r'}"), progress=False, clock=resumed)
    assert json.loads((run / "model" / "arcsub.json").read_text())["steps"] == plan["steps"]
    with pytest.raises(ArcDataError, match="warmup"):  # the count must be fixed before the schedule moves
        train(tiny_config(*common, "seconds=5", "optim.warmup=5", f"out_dir={tmp_path / 's'}"))


def test_a_lower_steps_shortens_a_resumed_plan_only_before_its_decay(tmp_path):
    """A chained run whose later calls have less time: `steps` below the plan's count shortens it on resume
    while the decay (wsd: the last fifth) is still ahead, and is refused once the lr depends on the count."""
    plan = tmp_path / "plan.json"

    def planned(start: int, *overrides: str) -> int:
        plan.write_text(json.dumps({"steps": 1000, "seconds_per_step": 0.03}))
        cfg = tiny_config("seconds=30", "optim.schedule=wsd", "optim.decay_frac=0.2", *overrides)
        return StepPlan(cfg, tmp_path, start, Dist(), torch.device("cpu"), lambda: 0.0).total

    assert planned(600, "steps=100000") == 1000  # the usual bound: the plan stands, the file too
    assert json.loads(plan.read_text())["steps"] == 1000
    assert planned(600, "steps=900") == 900  # decay from step 720: still ahead of the checkpoint
    assert json.loads(plan.read_text()) == {"steps": 900, "seconds_per_step": 0.03}  # a later rerun keeps it
    with pytest.raises(ArcDataError, match=r"plan.json: steps=700 cannot shorten .* start at step 560"):
        planned(600, "steps=700")
    with pytest.raises(
        ArcDataError, match="cannot shorten"
    ):  # cosine: every lr after warm-up needs the count
        planned(600, "steps=900", "optim.schedule=cosine")


def test_a_slowdown_after_calibration_shortens_a_wsd_plan_but_not_a_cosine_one(
    arc1_train, tmp_path, monkeypatch, capsys
):
    """Checkpoint saves and data stalls come after steps 10-40: wsd refits its step count until the decay starts
    (the lr is flat until then), cosine keeps its first fit (every step's lr depends on the count)."""
    import arcsub.taskmodel.train as tt

    ch, _ = write_subset(arc1_train, smallest(arc1_train, 2), tmp_path, "two")
    monkeypatch.setattr(tt, "REFIT", 5)
    # 0.125 s a step until step 42, then 0.25 s: calibrated on steps 10-40, 7.5 s fit 60 steps at first
    common = [f"data.challenges=[{ch}]", "seq_len=512", "optim.warmup=40", "steps=100000", "seconds=7.5"]
    plans = {}
    for schedule in ("wsd", "cosine"):
        clock = StepClock(0.125, slow_s=0.25, slow_from=43)
        clock.patch(monkeypatch)
        overrides = [f"optim.schedule={schedule}", "optim.decay_frac=0.1", f"out_dir={tmp_path / schedule}"]
        run = train(tiny_config(*common, *overrides), False, clock=clock)
        first = int(re.search(r"ms/step: (\d+) steps fit", capsys.readouterr().out).group(1))
        plans[schedule] = (first, json.loads((run / "plan.json").read_text())["steps"])
        assert json.loads((run / "model" / "arcsub.json").read_text())["steps"] == plans[schedule][1]
    first, final = plans["wsd"]
    assert first == plans["cosine"][0] == 60  # the same first fit: the schedules differ only after it
    assert final < first  # every step after 42 is slower: the count falls
    assert plans["cosine"][0] == plans["cosine"][1]


def test_attention_degrades_to_sdpa_below_ampere(monkeypatch):
    from arcsub.taskmodel.train import pick_attention

    assert pick_attention("auto", torch.device("cpu")) == "sdpa"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 5))  # T4: no flex kernels
    assert pick_attention("auto", torch.device("cuda")) == "sdpa"
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    assert pick_attention("auto", torch.device("cuda")) == "flex"
    assert pick_attention("flex", torch.device("cpu")) == "flex"  # an explicit choice is kept


def test_dense_attention_packs_the_same_tokens_into_shorter_rows():
    """Without flex attention (T4, CPU) a step of 4 x 8192 tokens becomes 16 x 2048: same tokens, every pair fits."""
    from arcsub.taskmodel.train import row_layout

    cfg = tiny_config("rows=4", "seq_len=8192")
    assert row_layout(cfg, "sdpa") == (16, 2048)
    assert row_layout(cfg, "flex") == (4, 8192)
    assert row_layout(tiny_config("rows=2", "seq_len=1024"), "sdpa") == (2, 1024)
    assert row_layout(tiny_config("rows=2", "seq_len=3000"), "sdpa") == (2, 3000)  # not a multiple: kept
