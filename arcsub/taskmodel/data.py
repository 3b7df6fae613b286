"""Data for the task-embedding model: one (input, output) pair per sequence, tagged with its task's row.

Why one pair per sequence: the model stores each task's rule in a learned task embedding instead of reading
demonstrations in context, so sequences stay short (at most 1863 tokens) and every pair of every task is a
training sample. A sequence is

    <bos> input rows, each ending in '\\n'  O  output rows, each ending in '\\n'  <eos>

in the compact vocabulary (arcsub.core.encode), with 'O' as the input/output separator. The model derives each
token's (x, y, z) grid coordinates from this stream itself (taskmodel.grid_positions), so packed rows need no
side channel for positions. Loss is on the output tokens and eos only.

Sources: training tasks (every pair, test pairs with their solutions; a task id in several challenge files is
one task, its pairs merged), RE-ARC and ARC-GEN generated pairs (sharing the embedding row of the ARC task with
the same id) and, for test-time training, the demonstration pairs of the test tasks only: their test outputs are
never loaded. No training source may hold a test task or a held-out task (`holdout`): refused, or left out. Every batch is a pure function of (seed, step, rank), as
in arcsub.lm.batches, so resuming reproduces the data exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from arcsub.core.augment import D8_SIZE, Augmentation
from arcsub.core.config import added_field
from arcsub.core.data import (
    MAX_SIDE,
    NUM_COLOURS,
    ArcDataError,
    Grid,
    Pair,
    Task,
    load_generated,
    load_pairs,
    load_tasks,
    read_json,
    resolve_path,
    write_json_atomic,
)
from arcsub.core.encode import COMPACT_CHARS, COMPACT_VOCAB, RowsEncoder

log = logging.getLogger("arcsub.taskmodel.data")

NL, SEP = COMPACT_VOCAB["\n"], COMPACT_VOCAB["O"]
PAD, BOS, EOS = COMPACT_VOCAB["<pad>"], COMPACT_VOCAB["<bos>"], COMPACT_VOCAB["<eos>"]
MAX_GRID_TOKENS = MAX_SIDE * (MAX_SIDE + 1)
MAX_PAIR_TOKENS = 2 * MAX_GRID_TOKENS + 3  # bos, sep, eos
IGNORE = -100
_MAX_MISSES = 8  # make_batch: consecutive samples that fit no row before the batch counts as full

# ------------------------------------------------------------------------------------------- sequences


def grid_tokens(grid: Grid) -> np.ndarray:
    """Row-major cells with a newline after every row (int64 token ids)."""
    g = np.asarray(grid, dtype=np.int64)
    return np.concatenate([g, np.full((g.shape[0], 1), NL, dtype=np.int64)], axis=1).ravel()


def encode_pair(inp: Grid, out: Grid | None = None) -> np.ndarray:
    """A pair as one sequence; without `out` the prompt that the model completes ([bos] input [sep])."""
    parts = [np.array([BOS]), grid_tokens(inp), np.array([SEP])]
    if out is not None:
        parts += [grid_tokens(out), np.array([EOS])]
    return np.concatenate(parts).astype(np.int64)


_ROWS = RowsEncoder()


def decode_grid(tokens: Sequence[int] | np.ndarray) -> Grid | None:
    """Generated output tokens (up to an optional eos) -> grid, or None when they do not form one."""
    ids = [int(t) for t in tokens]
    if EOS in ids:
        ids = ids[: ids.index(EOS)]
    if any(not 0 <= t <= NL for t in ids):
        return None
    return _ROWS.decode("".join(COMPACT_CHARS[t] for t in ids))


def output_start(ids: np.ndarray) -> int:
    """Where a pair's output begins: just after the sep that ends its input grid."""
    return int(np.flatnonzero(ids == SEP)[0]) + 1


def label_mask(ids: np.ndarray, with_input: bool = False) -> np.ndarray:
    """True on the tokens the model learns to predict: every output token and the eos (after the sep); with
    `with_input` also the input grid's tokens and the sep that ends it (everything after the bos)."""
    mask = np.zeros(len(ids), dtype=bool)
    mask[1 if with_input else output_start(ids) :] = True
    return mask


# ---------------------------------------------------------------------------------------- task index


class TaskIndex:
    """Task id -> row of the model's task-embedding table, saved beside the model as task_index.json.

    Rows are only ever appended, so a model extended for test-time training keeps every old task's row.
    """

    FILE = "task_index.json"

    def __init__(self, ids: Iterable[str] = ()):
        self.rows: dict[str, int] = {}
        self.add(ids)

    def add(self, ids: Iterable[str]) -> list[str]:
        """Append unknown ids (in order); returns the ids that got new rows."""
        new = []
        for tid in ids:
            if tid not in self.rows:
                self.rows[tid] = len(self.rows)
                new.append(tid)
        return new

    def row(self, task_id: str) -> int:
        if task_id not in self.rows:
            raise ArcDataError(f"task {task_id}: not in the model's task index")
        return self.rows[task_id]

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self.rows

    def save(self, folder: str | Path) -> Path:
        return write_json_atomic(Path(folder) / self.FILE, self.rows, indent=0)

    @classmethod
    def load(cls, folder: str | Path) -> TaskIndex:
        obj = read_json(Path(folder) / cls.FILE)
        if not isinstance(obj, dict) or sorted(obj.values()) != list(range(len(obj))):
            raise ArcDataError(f"{Path(folder) / cls.FILE}: must map task ids to rows 0..n-1")
        index = cls()
        index.rows = {str(k): int(v) for k, v in sorted(obj.items(), key=lambda kv: kv[1])}
        return index


# ------------------------------------------------------------------------------------- augmentations


def free_colours(pairs: Iterable[Pair]) -> np.ndarray:
    """Colours a permutation may move: all but 0 and the colours seen only in outputs.

    Why: a task embedding is shared by every view of its task, so it cannot say which colour an output-only
    colour was renamed to (the input does not show it). Keeping those fixed keeps every view solvable.
    """
    seen_in, seen_out = np.zeros(NUM_COLOURS, bool), np.zeros(NUM_COLOURS, bool)
    for p in pairs:  # bincount, not unique: ~250k generated grids at start-up
        seen_in |= np.bincount(p.input.ravel(), minlength=NUM_COLOURS) > 0
        if p.output is not None:
            seen_out |= np.bincount(p.output.ravel(), minlength=NUM_COLOURS) > 0
    fixed = seen_out & ~seen_in
    fixed[0] = True
    return np.flatnonzero(~fixed)


def random_view(
    rng: np.random.Generator, free: np.ndarray, d8: bool = True, colours: bool = True, k: int | None = None
) -> Augmentation:
    """A D8 element (k, or random when d8) and a permutation of the free colours (when colours)."""
    if k is None:
        k = int(rng.integers(D8_SIZE)) if d8 else 0
    perm = np.arange(NUM_COLOURS)
    if colours and len(free) > 1:
        perm[free] = rng.permutation(free)
    return Augmentation(d8=k, colours=tuple(int(c) for c in perm))


def scale_factor(rng: np.random.Generator, chance: float, *grids: Grid) -> int:
    """1, or with probability `chance` an integer factor from 2 up to the largest that keeps every grid of the
    pair within MAX_SIDE (1 when none does). No random draw at chance 0, so older data streams stay as they were.

    Why (VARC's resolution augmentation): the same rule at another resolution is more distinct data for a
    model that memorises the few pairs a task has; both grids are scaled alike, so most rules still hold."""
    if not chance_of(rng, chance):
        return 1
    largest = MAX_SIDE // max(max(g.shape) for g in grids)
    return int(rng.integers(2, largest + 1)) if largest >= 2 else 1


def upscale(grid: Grid, k: int) -> Grid:
    """Each cell as a k x k block."""
    return np.repeat(np.repeat(np.asarray(grid), k, axis=0), k, axis=1) if k > 1 else np.asarray(grid)


def pair_views(
    free: np.ndarray,
    n: int,
    rng: np.random.Generator,
    d8: bool = True,
    colours: bool = True,
    max_tries: int = 200,
) -> list[Augmentation]:
    """Up to n distinct views for inference: identity, the other D8 elements, then random ones (as augment.views).

    Fewer come back when the task allows fewer distinct views (few free colours, d8 off)."""
    out: dict[str, Augmentation] = {"id": Augmentation()}
    for k in range(1, D8_SIZE if d8 else 1):
        if len(out) < n:
            aug = random_view(rng, free, d8, colours, k)
            out.setdefault(aug.name, aug)
    misses = 0
    while len(out) < n and misses < max_tries:
        aug = random_view(rng, free, d8, colours)
        misses = misses + 1 if aug.name in out else 0
        out.setdefault(aug.name, aug)
    return list(out.values())[:n]


# ------------------------------------------------------------------------------------------- sources


@dataclass
class TaskDataSettings:
    """Where training pairs come from and how each sample is augmented."""

    # training tasks: all pairs, test pairs with their solutions (the sibling *_solutions.json)
    challenges: list[str] = field(default_factory=list)
    re_arc: str | None = None  # RE-ARC folder (tasks/<id>.json): pairs share the row of task <id>
    ttt_challenges: list[str] = field(default_factory=list)  # test tasks: demonstration pairs only
    arc_weight: float = 1.0  # chance of each source, relative (sources that are absent are left out)
    re_arc_weight: float = 1.0
    ttt_weight: float = 1.0
    d8: bool = True
    colours: bool = True  # permute colours (0 and output-only colours stay)
    # a training task that is also a test task or a held-out task: refused (False: catches mixed-up data in
    # experiments) or left out of the training sources (True: the competition path, e.g. Kaggle's public
    # stand-in of training tasks, or ARC-AGI-1 evaluation's 6 ARC-AGI-2 evaluation tasks)
    exclude_test_tasks: bool = False
    # (added later: at their defaults these stay out of the settings hash, so older run names hold)
    # ARC-GEN style files {task_id: [{"input", "output"}, ...]} (.json, .json.xz, .json.gz): pairs share the
    # row of task <id>, as RE-ARC's do
    generated: list[str] = added_field(default_factory=list)
    generated_weight: float = added_field(default=1.0)
    # challenge files whose task ids must never be training tasks: the evaluation set a pretraining run will
    # be scored on without its ttt demonstrations (their test outputs are never read)
    holdout: list[str] = added_field(default_factory=list)
    # chance that a training sample is scaled up (both grids, each cell a k x k block, k from 2 to what fits in
    # 30 x 30; scale_factor): VARC's resolution augmentation; prediction stays at scale 1
    scale: float = added_field(default=0.0)
    # self-supervised input modelling (mdlARC's first "compression" recipe): the chance that a sample's input
    # grid is learned too (its tokens get labels; the output's always do), and the source weight of the test
    # tasks' test inputs, learned as input grids alone (never an output: none is read). Why: ARC-AGI-2's test
    # inputs are often larger or busier than every demonstration; a task row that has modelled them has seen
    # the grids it must answer. 0: off, no random draw (older data streams stay as they were)
    input_loss: float = added_field(default=0.0)
    test_input_weight: float = added_field(default=0.0)


TRAINING_SOURCES = ("arc", "re-arc", "generated")  # what the guard checks: every source with test outputs
# a batch's per-token source ids index this (the log's loss by source); "inputs" marks the input-grid labels of
# any source's pairs (data.input_loss), so each source's own loss stays the loss on outputs
SOURCES = (*TRAINING_SOURCES, "ttt", "test-inputs", "inputs")


@dataclass
class PairSet:
    """One task's pairs from one source and the colours its augmentations may permute."""

    task_id: str
    pairs: list[Pair]
    free: np.ndarray
    origin: str = ""  # the file or folder it came from (error messages)


@dataclass(frozen=True)
class Sample:
    """One augmented training sequence and where it came from (logged, and checked by the tests)."""

    ids: np.ndarray
    task_row: int
    view: Augmentation
    source: str
    task_id: str
    pair_index: int
    scale: int = 1
    input_target: bool = False  # the input grid's tokens are labelled too (data.input_loss, test inputs)


def _training_sets(path: Path) -> list[PairSet]:
    """Every pair of every task; test pairs only where the sibling solutions file gives their outputs."""
    tasks = load_tasks(path, solutions="auto")
    sets = []
    for t in tasks.values():
        pairs = t.train + [p for p in t.test if p.output is not None]
        sets.append(PairSet(t.id, pairs, free_colours(pairs), str(path)))
    if not all(t.has_solutions for t in tasks.values()):
        log.warning("%s: no solutions file beside it: training on demonstration pairs only", path)
    return sets


def task_pairs_for_views(task: Task) -> list[Pair]:
    """What decides a test task's free colours: its demonstrations and its test inputs (never test outputs)."""
    return task.train + [Pair(p.input) for p in task.test]


def _test_task_sets(path: Path) -> tuple[list[PairSet], list[PairSet]]:
    """Test tasks, loaded once: their demonstration pairs, and their test inputs as pairs without outputs (never
    a test output, even one written inline in the file). Both share the task's free colours."""
    demos, inputs = [], []
    for t in load_tasks(path).values():
        free = free_colours(task_pairs_for_views(t))
        demos.append(PairSet(t.id, list(t.train), free))
        inputs.append(PairSet(t.id, [Pair(p.input) for p in t.test], free, str(path)))
    return demos, inputs


def _re_arc_sets(folder: Path) -> list[PairSet]:
    folder = folder / "tasks" if (folder / "tasks").is_dir() else folder
    files = sorted(folder.glob("*.json"))
    if not files:
        raise ArcDataError(f"{folder}: no RE-ARC task files")
    sets = []
    for f in files:
        pairs = load_pairs(f)
        sets.append(PairSet(f.stem, pairs, free_colours(pairs), str(folder)))
    return sets


def _generated_sets(path: Path) -> list[PairSet]:
    """ARC-GEN's layout: one file of {task_id: pairs}; each task's pairs share that task's row."""
    return [
        PairSet(tid, pairs, free_colours(pairs), str(path)) for tid, pairs in load_generated(path).items()
    ]


def _holdout_ids(files: Iterable[str]) -> dict[str, str]:
    """{task id: the holdout file naming it}; only the ids are used (no test output is read)."""
    return {tid: c for c in files for tid in load_tasks(c)}


def guard_training(sets: list[PairSet], source: str, banned: dict[str, str], exclude: bool) -> list[PairSet]:
    """Refuse (or, with `exclude`, leave out with a warning per file) training sets whose task is banned:
    `banned` maps a test or held-out task id to why. Why per source: RE-ARC and ARC-GEN cover task ids of
    ARC-AGI-1/2 sets, and ARC-AGI-1 evaluation holds 6 ARC-AGI-2 evaluation tasks."""
    bad = [s for s in sets if s.task_id in banned]
    if bad and not exclude:
        s, n = bad[0], sum(b.origin == bad[0].origin for b in bad)
        raise ArcDataError(
            f"{s.origin}: task {s.task_id} ({source} source) is both a training task and "
            f"{banned[s.task_id]} ({n} such task(s) there); data.exclude_test_tasks=true leaves them out"
        )
    for origin in dict.fromkeys(b.origin for b in bad):
        n = sum(b.origin == origin for b in bad)
        log.warning(
            "%s: %d %s task(s) are test tasks here (or held out): left out of training", origin, n, source
        )
    return [s for s in sets if s.task_id not in banned]


def merge_sets(sets: list[PairSet]) -> list[PairSet]:
    """One set per task id, in first-seen order: a task in several files (ARC-AGI-2 training repeats
    ARC-AGI-1 tasks) is one task, its pairs merged without exact duplicates, so it is sampled once, not twice."""
    by_id: dict[str, list[PairSet]] = {}
    for s in sets:
        by_id.setdefault(s.task_id, []).append(s)
    out = []
    for tid, group in by_id.items():
        if len(group) == 1:
            out.append(group[0])
            continue
        pairs = list({_pair_key(p): p for g in group for p in g.pairs}.values())
        out.append(
            PairSet(tid, pairs, free_colours(pairs), " + ".join(dict.fromkeys(g.origin for g in group)))
        )
    return out


def _pair_key(p: Pair) -> tuple:
    out = p.output if p.output is not None else np.zeros((0, 0), np.uint8)
    return p.input.shape, p.input.tobytes(), out.shape, out.tobytes()


class PairSource:
    """All pair sets by source, and the sampler of augmented training sequences."""

    def __init__(self, data: TaskDataSettings, max_tokens: int = MAX_PAIR_TOKENS):
        self.data, self.max_tokens = data, max_tokens
        loaded = {
            "arc": [s for c in data.challenges for s in _training_sets(resolve_path(c))],
            "re-arc": _re_arc_sets(resolve_path(data.re_arc)) if data.re_arc else [],
            "generated": [s for g in data.generated for s in _generated_sets(resolve_path(g))],
        }
        test_sets = [_test_task_sets(resolve_path(c)) for c in data.ttt_challenges]
        loaded["ttt"] = [s for demos, _ in test_sets for s in demos]
        loaded["test-inputs"] = (
            [s for _, inputs in test_sets for s in inputs] if data.test_input_weight > 0 else []
        )
        banned = {tid: f"a held-out task of {c}" for tid, c in _holdout_ids(data.holdout).items()}
        banned |= {
            s.task_id: "a test-time task; its test outputs would leak into training" for s in loaded["ttt"]
        }
        for k in TRAINING_SOURCES:
            loaded[k] = merge_sets(guard_training(loaded[k], k, banned, data.exclude_test_tasks))
        check_no_leak([s for k in TRAINING_SOURCES for s in loaded[k]], loaded["ttt"])
        self.task_ids = list(dict.fromkeys(s.task_id for sets in loaded.values() for s in sets))
        dropped = 0
        for sets in loaded.values():
            for s in sets:
                keep = [p for p in s.pairs if _pair_tokens(p) <= max_tokens]
                dropped += len(s.pairs) - len(keep)
                s.pairs = keep
        if dropped:
            log.warning("%d pair(s) longer than %d tokens left out", dropped, max_tokens)
        weights = {
            "arc": data.arc_weight,
            "re-arc": data.re_arc_weight,
            "generated": data.generated_weight,
            "ttt": data.ttt_weight,
            "test-inputs": data.test_input_weight,
        }
        self.sources = [(name, [s for s in sets if s.pairs]) for name, sets in loaded.items()]
        self.sources = [(n, sets) for n, sets in self.sources if sets and weights[n] > 0]
        if not self.sources:
            raise ArcDataError(
                "training data: no pairs (give data.challenges, data.re_arc, data.generated or data.ttt_challenges)"
            )
        w = np.array([weights[n] for n, _ in self.sources], dtype=float)
        self.probs = w / w.sum()

    def sample(self, rng: np.random.Generator, index: TaskIndex) -> Sample:
        """A source by weight, a task uniformly, a pair uniformly, then a fresh random view of it (scaled up
        with chance data.scale; its input learned too with chance data.input_loss). A test input comes alone."""
        name, sets = self.sources[int(rng.choice(len(self.sources), p=self.probs))]
        s = sets[int(rng.integers(len(sets)))]
        i = int(rng.integers(len(s.pairs)))
        view = random_view(rng, s.free, self.data.d8, self.data.colours)
        pair = view.apply_pair(s.pairs[i])
        grids = [g for g in (pair.input, pair.output) if g is not None]
        k = scale_factor(rng, self.data.scale, *grids)
        if k > 1:
            scaled = pair.map(lambda g: upscale(g, k))
            pair, k = (scaled, k) if _pair_tokens(scaled) <= self.max_tokens else (pair, 1)
        learn_input = pair.output is None or chance_of(rng, self.data.input_loss)
        ids = encode_pair(pair.input, pair.output)
        return Sample(ids, index.row(s.task_id), view, name, s.task_id, i, k, learn_input)


def chance_of(rng: np.random.Generator, p: float) -> bool:
    """True with probability p; no draw at p <= 0 (so a setting that is off leaves the data stream as it was)."""
    return p > 0 and rng.random() < p


def _pair_tokens(p: Pair) -> int:
    """encode_pair's length: bos, the input rows with their newlines, sep, then the output's and eos."""
    rows = p.input.shape[0] * (p.input.shape[1] + 1) + 2
    return rows if p.output is None else rows + p.output.shape[0] * (p.output.shape[1] + 1) + 1


def check_no_leak(training: Sequence[PairSet], test: Sequence[PairSet]) -> None:
    """A test task must not also be a training task: its test outputs would be in the training data.

    (ARC-AGI-2 training holds 376 ARC-AGI-1 evaluation tasks: this is the check that catches mixing them.)
    """
    seen = {s.task_id for s in training}
    both = [s.task_id for s in test if s.task_id in seen]
    if both:
        raise ArcDataError(
            f"training data: task {both[0]} is both a training task and a test-time task "
            f"({len(both)} such task(s)); its test outputs would leak into training"
        )


# -------------------------------------------------------------------------------------------- batches


@dataclass
class TaskBatch:
    """Packed rows: token ids, labels (IGNORE where no loss), each token's task row, D8 view and source (an
    index into SOURCES: the training log splits the loss by it, e.g. test demonstrations against the rest).

    Each sequence starts with bos, which is all the model needs to restart positions and attention there.
    `placed` lists (row, start, sample) for logging and tests; it stays on the CPU.
    """

    input_ids: torch.Tensor
    labels: torch.Tensor
    task_ids: torch.Tensor
    view_ids: torch.Tensor
    source_ids: torch.Tensor
    placed: list[tuple[int, int, Sample]]

    @property
    def n_label(self) -> int:
        return int((self.labels != IGNORE).sum())

    def to(self, device) -> TaskBatch:
        t = [
            x.to(device, non_blocking=True)
            for x in (self.input_ids, self.labels, self.task_ids, self.view_ids, self.source_ids)
        ]
        return TaskBatch(*t, self.placed)


def make_batch(
    source: PairSource, index: TaskIndex, seed: int, step: int, rank: int, rows: int, seq_len: int
) -> TaskBatch:
    """The batch of one (seed, step, rank): samples placed first-fit until several in a row fit nowhere."""
    rng = np.random.default_rng([seed, step, rank])
    fill = [0] * rows
    placed: list[tuple[int, int, Sample]] = []
    misses = 0
    while misses < _MAX_MISSES:
        s = source.sample(rng, index)
        r = next((i for i in range(rows) if fill[i] + len(s.ids) <= seq_len), None)
        if r is None:
            misses += 1
            continue
        placed.append((r, fill[r], s))
        fill[r] += len(s.ids)
    ids = np.full((rows, seq_len), PAD, dtype=np.int64)
    labels = np.full((rows, seq_len), IGNORE, dtype=np.int64)
    tasks = np.zeros((rows, seq_len), dtype=np.int64)
    views = np.zeros((rows, seq_len), dtype=np.int64)
    sources = np.zeros((rows, seq_len), dtype=np.int64)
    for r, start, s in placed:
        end = start + len(s.ids)
        ids[r, start:end] = s.ids
        labels[r, start:end] = np.where(label_mask(s.ids, s.input_target), s.ids, IGNORE)
        tasks[r, start:end] = s.task_row
        views[r, start:end] = s.view.d8
        sources[r, start:end] = token_sources(s)
    return TaskBatch(*(torch.from_numpy(a) for a in (ids, labels, tasks, views, sources)), placed)


def token_sources(s: Sample) -> np.ndarray:
    """Each token's index into SOURCES: the sample's source, and "inputs" on the input grid's tokens of a
    pair whose input is learned too, so a source's logged loss stays its loss on outputs."""
    out = np.full(len(s.ids), SOURCES.index(s.source), dtype=np.int64)
    if s.input_target and s.source != "test-inputs":
        out[: output_start(s.ids)] = SOURCES.index("inputs")
    return out


class TaskStepBatches(torch.utils.data.IterableDataset):
    """Batches for steps start..end of one rank, spread over DataLoader workers (worker w takes every w-th)."""

    def __init__(
        self,
        source: PairSource,
        index: TaskIndex,
        seed: int,
        start: int,
        end: int,
        rank: int,
        rows: int,
        seq_len: int,
    ):
        self.source, self.index = source, index
        self.seed, self.start, self.end, self.rank = seed, start, end, rank
        self.rows, self.seq_len = rows, seq_len

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        for step in range(self.start + wid, self.end, nw):
            yield make_batch(self.source, self.index, self.seed, step, self.rank, self.rows, self.seq_len)
