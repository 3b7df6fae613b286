"""bench/bench_task_step.py on the CPU: both optimizers time real steps of one model on real tasks, and the
report has what docs/benchmarks.md reads from it (on a CPU the GPU columns stay empty)."""

import math

import pytest
import torch
from bench_scripts import bench_module
from test_taskmodel import one_thread  # noqa: F401  (the fixture applies here too)
from test_tasktrain import smallest, tiny_config, write_subset


def test_both_optimizers_are_timed_on_real_steps(arc1_train, tmp_path):
    bench = bench_module("bench_task_step")
    ch, _ = write_subset(arc1_train, smallest(arc1_train, 3), tmp_path, "three")
    cfg = tiny_config(
        f"data.challenges=[{ch}]", "rows=1", "seq_len=512", "workers=0", "compile=false", "optim.name=normuon"
    )
    res = bench.measure(cfg, warmup=2, steps=2, rounds=2, profile_steps=1)
    assert res["device"] == "cpu"
    for name in ("loop", "batched"):
        r = res[name]
        assert len(r["ms_per_step_rounds"]) == 2 and all(ms > 0 for ms in r["ms_per_step_rounds"])
        assert r["optimizer_ms"] > 0 and r["forward_backward_ms"] > 0
        assert r["profile"]["gpu_kernel_ms_per_step"] == 0 and r["profile"]["top_kernels"] == []
    assert math.isfinite(res["speedup"]) and res["speedup"] > 0


def test_the_loop_is_the_reference_and_both_step_the_same_model(arc1_train, tmp_path):
    bench = bench_module("bench_task_step")
    ch, _ = write_subset(arc1_train, smallest(arc1_train, 2), tmp_path, "two")
    cfg = tiny_config(
        f"data.challenges=[{ch}]", "rows=1", "seq_len=512", "workers=0", "compile=false", "optim.name=normuon"
    )
    b = bench.build(cfg)
    opts = bench.optimizers(b)
    assert (opts["loop"].batched, opts["batched"].batched) == (False, True)
    before = [p.detach().clone() for p in b.model.parameters()]
    for opt in opts.values():
        b.step(opt)
    assert any(not torch.equal(a, p) for a, p in zip(before, b.model.parameters(), strict=True))
    assert all(torch.isfinite(p).all() for p in b.model.parameters())
    adamw = bench.build(
        tiny_config(f"data.challenges=[{ch}]", "workers=0", "compile=false", "optim.name=adamw")
    )
    with pytest.raises(SystemExit, match="optim.name='adamw'"):
        bench.optimizers(adamw)
