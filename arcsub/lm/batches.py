"""Training data: task sources, freshly augmented examples, and packed batches.

Every batch is a pure function of (seed, step, rank): resuming at step k or adding GPUs reproduces exactly the
data an uninterrupted run would have seen, with no data-loader state to checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from arcsub.core.augment import random_augmentation, swap_train_test
from arcsub.core.data import ArcDataError, Pair, Task, load_pairs, load_tasks, resolve_path
from arcsub.core.encode import FORMATS, Codec, Example, build_example

IGNORE = -100


@dataclass
class DataSettings:
    """Where training tasks come from and how each sample is made."""

    challenges: list[str] = field(default_factory=list)  # Kaggle challenge files (solutions: sibling file)
    re_arc: str | None = None  # folder of RE-ARC generated pairs (tasks/<id>.json)
    re_arc_weight: float = 0.0  # probability of drawing a RE-ARC task instead of a challenge task
    re_arc_pairs: tuple[int, int] = (3, 6)  # demonstration pairs per RE-ARC task (inclusive range)
    test_outputs: bool = True  # train on the test pairs of the challenge tasks (needs solutions)
    gen_input_prob: float = 0.0  # Omni-ARC: share of 'inputs -> new input' samples
    swap_prob: float = 0.5  # chance to swap a test pair with a train pair
    d8: bool = True
    colours: str = "keep0"  # keep0 | all | none
    shuffle_train: bool = True
    loss_on: str = "test"  # test | outputs | outputs-after-first


def _sibling_solutions(path: Path) -> Path | None:
    sib = path.with_name(path.name.replace("_challenges", "_solutions"))
    return sib if "_challenges" in path.name and sib.exists() else None


class TaskPool:
    """All training tasks: challenge tasks (with solutions) and RE-ARC generated pair lists."""

    def __init__(self, data: DataSettings, tasks: list[Task] | None = None):
        """Load the sources named in `data`; `tasks` adds ready-made tasks (e.g. leave-one-out tasks for TTFT)."""
        self.data = data
        self.tasks: list[Task] = list(tasks or [])
        for f in data.challenges:
            p = resolve_path(f)
            sol = _sibling_solutions(p) if data.test_outputs else None
            tasks = load_tasks(p, sol)
            for t in tasks.values():
                if sol is None:  # without solutions the test pairs cannot be targets: train on demonstrations
                    if len(t.train) < 2:
                        continue
                    t = Task(t.id, t.train[:-1], [t.train[-1]], t.meta)
                self.tasks.append(t)
        self.generated: list[tuple[str, list[Pair]]] = []
        if data.re_arc:
            folder = resolve_path(data.re_arc)
            folder = folder / "tasks" if (folder / "tasks").is_dir() else folder
            files = sorted(folder.glob("*.json"))
            if not files:
                raise ArcDataError(f"{folder}: no RE-ARC task files")
            self.generated = [(f.stem, load_pairs(f)) for f in files]
        if not self.tasks and not self.generated:
            raise ArcDataError("training data: no tasks (give data.challenges and/or data.re_arc)")

    def sample_task(self, rng: np.random.Generator) -> Task:
        use_gen = self.generated and (not self.tasks or rng.random() < self.data.re_arc_weight)
        if use_gen:
            tid, pairs = self.generated[rng.integers(len(self.generated))]
            lo, hi = self.data.re_arc_pairs
            k = min(int(rng.integers(lo, hi + 1)) + 1, len(pairs))
            idx = rng.choice(len(pairs), size=k, replace=False)
            chosen = [pairs[i] for i in idx]
            return Task(f"re-arc:{tid}", chosen[:-1], chosen[-1:])
        task = self.tasks[rng.integers(len(self.tasks))]
        if rng.random() < self.data.swap_prob and task.has_solutions:
            task = swap_train_test(task, rng)
        return task


def sample_example(
    pool: TaskPool, codec: Codec, rng: np.random.Generator, max_len: int, fmt: str
) -> Example | None:
    """One freshly augmented, tokenized training example (None if nothing fits max_len)."""
    d = pool.data
    task = pool.sample_task(rng)
    aug = random_augmentation(task, rng, d8=d.d8, colours=d.colours, shuffle_train=d.shuffle_train)
    task = aug.apply(task)
    prompt = "input-from-inputs" if rng.random() < d.gen_input_prob else "output-from-examples"
    test_index = int(rng.integers(len(task.test)))
    return build_example(task, codec, FORMATS[fmt], test_index, prompt, max_len, True, d.loss_on)


@dataclass
class Batch:
    """Packed rows: token ids, labels (IGNORE where no loss), position ids restarting at every example."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    position_ids: torch.Tensor
    n_examples: int

    @property
    def useful_tokens(self) -> int:
        """Tokens that belong to an example (not padding)."""
        return int((self.position_ids > 0).sum()) + self.n_examples

    def to(self, device) -> Batch:
        return Batch(
            *(t.to(device, non_blocking=True) for t in (self.input_ids, self.labels, self.position_ids)),
            self.n_examples,
        )


def pack(examples: list[Example], rows: int, seq_len: int, pad_id: int) -> Batch:
    """Pack whole examples into `rows` rows of `seq_len` tokens (first fit). Examples that do not fit are dropped.

    Labels are the ids where the example's mask is set; each example's first token (bos) is never a label, so
    no loss crosses an example boundary, and position ids restart at 0 so attention stays inside each example.
    """
    ids = np.full((rows, seq_len), pad_id, dtype=np.int64)
    labels = np.full((rows, seq_len), IGNORE, dtype=np.int64)
    pos = np.zeros((rows, seq_len), dtype=np.int64)
    fill = [0] * rows
    n = 0
    for ex in examples:
        L = len(ex)
        r = next((i for i in range(rows) if fill[i] + L <= seq_len), None)
        if r is None:
            continue
        s = fill[r]
        ids[r, s : s + L] = ex.ids
        labels[r, s : s + L] = np.where(ex.mask, ex.ids, IGNORE)
        labels[r, s] = IGNORE
        pos[r, s : s + L] = np.arange(L)
        fill[r] += L
        n += 1
    return Batch(torch.from_numpy(ids), torch.from_numpy(labels), torch.from_numpy(pos), n)


def make_batch(
    pool: TaskPool,
    codec: Codec,
    seed: int,
    step: int,
    rank: int,
    rows: int,
    seq_len: int,
    max_len: int,
    fmt: str,
) -> Batch:
    """The batch of one (seed, step, rank): draw examples until the rows are full (a few misses in a row)."""
    rng = np.random.default_rng([seed, step, rank])
    examples: list[Example] = []
    free = [seq_len] * rows
    misses = 0
    while misses < 8:
        ex = sample_example(pool, codec, rng, min(max_len, seq_len), fmt)
        if ex is None:
            misses += 1
            continue
        r = next((i for i in range(rows) if free[i] >= len(ex)), None)
        if r is None:
            misses += 1
            continue
        free[r] -= len(ex)
        examples.append(ex)
    return pack(examples, rows, seq_len, codec.pad_id)


class StepBatches(torch.utils.data.IterableDataset):
    """Batches for steps start..end of one rank, spread over DataLoader workers (worker w takes every w-th)."""

    def __init__(
        self,
        pool: TaskPool,
        codec: Codec,
        seed: int,
        start: int,
        end: int,
        rank: int,
        rows: int,
        seq_len: int,
        max_len: int,
        fmt: str,
    ):
        self.args = (pool, codec, seed)
        self.start, self.end, self.rank = start, end, rank
        self.shape = (rows, seq_len, max_len, fmt)

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        pool, codec, seed = self.args
        rows, seq_len, max_len, fmt = self.shape
        for step in range(self.start + wid, self.end, nw):
            yield make_batch(pool, codec, seed, step, self.rank, rows, seq_len, max_len, fmt)
