"""ARC tasks: typed grids, pairs and tasks, loading and validating Kaggle's files, atomic JSON writing.

Every loader validates what it reads and raises `ArcDataError` with one line naming the file, the task and
the problem, so the CLI can print it and exit 2 instead of a traceback.
"""

from __future__ import annotations

import gzip
import itertools
import json
import lzma
import os
import re
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MAX_SIDE = 30
NUM_COLOURS = 10

Grid = np.ndarray  # 2-D uint8 array, 1x1 to 30x30, values 0..9


class ArcDataError(ValueError):
    """Bad input data; the message is one line naming the file, the task and the problem."""


# A task id names folders and files (adapters/<id>/, re_arc/<id>.json), so an id from an untrusted file must
# not be able to leave that folder: letters, digits, '_', '.', '-', not starting with '.' (no '.', '..',
# hidden names, nor the '.<name>.tmp' folders saves are written into). Every Kaggle, ARC-AGI, RE-ARC and
# ARC-GEN id (hex strings) passes.
TASK_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


def check_task_id(task_id: Any, where: str = "<data>") -> str:
    """The id as a string, or one ArcDataError line when it could not safely name a file."""
    tid = str(task_id)
    if not TASK_ID.fullmatch(tid) or ".." in tid:
        raise ArcDataError(f"{where}: task id {tid[:60]!r} is not allowed (letters, digits, _ . - only)")
    return tid


def task_path(root: str | os.PathLike, task_id: str, suffix: str = "") -> Path:
    """`root/<task_id><suffix>`: the one way paths are built from task ids; refuses any id that would leave
    `root` (checked by rule, then on the normalised path)."""
    base = Path(root)
    p = base / f"{check_task_id(task_id, str(base))}{suffix}"
    if Path(os.path.normpath(p)).parent != Path(os.path.normpath(base)):
        raise ArcDataError(f"{base}: task id {task_id!r} leaves its folder")
    return p


def _where(path: str | os.PathLike | None, task_id: str | None = None, part: str | None = None) -> str:
    bits = [str(path) if path is not None else "<data>"]
    if task_id is not None:
        bits.append(f"task {task_id}")
    if part:
        bits.append(part)
    return ": ".join(bits)


def to_grid(obj: Any, where: str = "<grid>") -> Grid:
    """Validate a nested list (or array) as an ARC grid and return it as a uint8 array.

    Checks run over whole rows in C where they can (set(map(...))): generated sets hold ~250k grids."""
    if isinstance(obj, np.ndarray):
        rows = obj.tolist() if obj.ndim == 2 else None
    else:
        rows = obj
    if not isinstance(rows, list) or not rows:
        raise ArcDataError(f"{where}: a grid must be a non-empty list of rows")
    if set(map(type, rows)) != {list} and not all(isinstance(r, list) for r in rows):
        raise ArcDataError(f"{where}: every row of a grid must be a list")
    width = len(rows[0])
    if width == 0:
        raise ArcDataError(f"{where}: empty row")
    if set(map(len, rows)) != {width}:
        raise ArcDataError(f"{where}: ragged grid (rows of different lengths)")
    if len(rows) > MAX_SIDE or width > MAX_SIDE:
        raise ArcDataError(f"{where}: grid is {len(rows)}x{width}, larger than {MAX_SIDE}x{MAX_SIDE}")
    if set(map(type, itertools.chain.from_iterable(rows))) == {int}:  # bool is not int here: refused below
        try:
            grid = np.asarray(rows, dtype=np.uint8)
        except OverflowError:  # negative or > 255: the cell loop names it
            grid = None
        if grid is not None and grid.max() < NUM_COLOURS:
            return grid
    for r in rows:
        for v in r:
            if isinstance(v, bool) or not isinstance(v, int | np.integer):
                raise ArcDataError(f"{where}: cell {v!r} is not an integer colour")
            if not 0 <= v < NUM_COLOURS:
                raise ArcDataError(f"{where}: colour {v} outside 0-9")
    return np.asarray(rows, dtype=np.uint8)


def grid_or_none(obj: Any) -> Grid | None:
    """A grid when `obj` is a valid grid, else None (never raises): for model answers, which may be anything."""
    if obj is None:
        return None
    try:
        return to_grid(obj)
    except ArcDataError:
        return None


def grid_to_list(grid: Grid) -> list[list[int]]:
    """A grid as JSON-ready nested lists of Python ints."""
    return np.asarray(grid).astype(int).tolist()


def grids_equal(a: Grid | None, b: Grid | None) -> bool:
    """Exact equality of shape and cells; None never equals anything."""
    if a is None or b is None:
        return False
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool((a == b).all())


@dataclass(frozen=True)
class Pair:
    """One input grid and its output grid (None for a hidden test output)."""

    input: Grid
    output: Grid | None = None

    def map(self, fn: Callable[[Grid], Grid]) -> Pair:
        """The pair with fn applied to both grids; a hidden output stays hidden (None), so augmentations and
        rescalings can treat test inputs and demonstrations alike."""
        return Pair(fn(self.input), None if self.output is None else fn(self.output))


@dataclass
class Task:
    """An ARC task: demonstration pairs and test pairs (test outputs are None when unknown)."""

    id: str
    train: list[Pair]
    test: list[Pair]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def has_solutions(self) -> bool:
        return all(p.output is not None for p in self.test)

    def to_json(self, with_test_outputs: bool = False) -> dict[str, Any]:
        """Kaggle's challenge form of the task (and optionally the test outputs inline)."""
        test = []
        for p in self.test:
            item = {"input": grid_to_list(p.input)}
            if with_test_outputs and p.output is not None:
                item["output"] = grid_to_list(p.output)
            test.append(item)
        train = [{"input": grid_to_list(p.input), "output": grid_to_list(p.output)} for p in self.train]
        return {"train": train, "test": test}


COMPRESSED = {".xz": lzma.open, ".gz": gzip.open}  # suffix -> opener; big generated sets ship compressed


JSON_SUFFIXES = (".json", *(f".json{s}" for s in COMPRESSED))


def is_json_file(path: str | os.PathLike) -> bool:
    return Path(path).name.endswith(JSON_SUFFIXES)


def json_stem(path: str | os.PathLike) -> str:
    """A JSON file's name without `.json` and a compression suffix: a.json.xz -> a (task ids, sibling names)."""
    name = Path(path).name
    for suffix in COMPRESSED:
        name = name.removesuffix(suffix)
    return name.removesuffix(".json")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file, xz- or gzip-compressed by suffix; a missing, corrupt or malformed file becomes one
    ArcDataError line. A 'data:' path names a file of the shared data folder (resolve_path)."""
    p = resolve_path(path)
    if not p.exists():
        raise ArcDataError(f"{p}: file not found")
    if p.is_dir():
        raise ArcDataError(f"{p}: is a directory, expected a JSON file")
    opener = COMPRESSED.get(p.suffix, open)
    try:
        with opener(p, "rt", encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ArcDataError(f"{p}: malformed JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except RecursionError:
        raise ArcDataError(f"{p}: JSON nested too deeply") from None
    except UnicodeDecodeError:
        raise ArcDataError(f"{p}: not UTF-8 text") from None
    except (lzma.LZMAError, gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise ArcDataError(f"{p}: corrupt {p.suffix[1:]} file ({e or 'truncated'})") from None


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write to a temp file beside `path`, fsync, then rename: a reader never sees half a file."""
    p = check_output_path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):  # name the file asked for, not the temp file (or none: ENOSPC on write)
            raise OSError(e.errno, e.strerror or str(e), str(p)) from None
        raise
    return p


def check_output_path(path: str | os.PathLike) -> Path:
    """An output file's path, refused (one line) when it is a folder: checked before any compute, so a long
    run does not end on it."""
    p = Path(path)
    if p.is_dir():
        raise ArcDataError(f"{p}: is a directory, expected an output file path")
    return p


COMPLETE = ".complete"  # written last into a saved folder: without it the folder is not finished


def save_dir_atomic(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Run `write(folder)` into a temp folder beside `path`, mark it complete, then swap it in with renames:
    a kill or a full disk leaves either the old folder or the new one, never half of one (the temp folder is
    removed on an error, and cleared at the next save after a kill)."""
    p = Path(path)
    tmp, old = p.with_name(f".{p.name}.tmp"), p.with_name(f".{p.name}.old")
    p.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        write(tmp)
        write_bytes_atomic(tmp / COMPLETE, b"")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    if p.exists():
        p.rename(old)
    tmp.rename(p)
    shutil.rmtree(old, ignore_errors=True)
    return p


def is_complete(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder that save_dir_atomic finished (its marker is written last)."""
    return (Path(path) / COMPLETE).is_file()


def write_json_atomic(path: str | os.PathLike, obj: Any, indent: int | None = None) -> Path:
    """JSON through write_bytes_atomic (serialised first, so a bad object never truncates the old file)."""
    return write_bytes_atomic(path, json.dumps(obj, indent=indent).encode("utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pair(obj: Any, where: str, need_output: bool) -> Pair:
    if not isinstance(obj, dict) or "input" not in obj:
        raise ArcDataError(f"{where}: a pair must be an object with an 'input' grid")
    inp = to_grid(obj["input"], f"{where} input")
    out = None
    if "output" in obj and obj["output"] is not None:
        out = to_grid(obj["output"], f"{where} output")
    elif need_output:
        raise ArcDataError(f"{where}: missing 'output' grid")
    return Pair(inp, out)


def parse_task(task_id: str, obj: Any, path: str | os.PathLike | None = None) -> Task:
    """Validate one task in Kaggle's form: {"train": [pairs], "test": [{"input": grid}, ...]}."""
    check_task_id(task_id, _where(path))
    where = _where(path, task_id)
    if not isinstance(obj, dict):
        raise ArcDataError(f"{where}: a task must be an object with 'train' and 'test'")
    train, test = obj.get("train"), obj.get("test")
    if not isinstance(train, list) or not train:
        raise ArcDataError(f"{where}: a task needs at least one train pair")
    if not isinstance(test, list) or not test:
        raise ArcDataError(f"{where}: a task needs at least one test input")
    return Task(
        id=task_id,
        train=[_pair(p, f"{where}: train[{i}]", True) for i, p in enumerate(train)],
        test=[_pair(p, f"{where}: test[{i}]", False) for i, p in enumerate(test)],
    )


def attach_solutions(tasks: dict[str, Task], solutions: Any, path: str | os.PathLike) -> None:
    """Fill test outputs from a Kaggle solutions mapping; ids and counts must match exactly."""
    if not isinstance(solutions, dict):
        raise ArcDataError(f"{path}: a solutions file must map task ids to lists of grids")
    missing = sorted(set(tasks) - set(solutions))
    extra = sorted(set(solutions) - set(tasks))
    if missing:
        raise ArcDataError(f"{path}: task {missing[0]}: no solution ({len(missing)} task(s) missing)")
    if extra:
        raise ArcDataError(f"{path}: task {extra[0]}: not in the challenges ({len(extra)} extra task(s))")
    for tid, task in tasks.items():
        grids = solutions[tid]
        if not isinstance(grids, list) or len(grids) != len(task.test):
            n = len(grids) if isinstance(grids, list) else "no"
            raise ArcDataError(f"{_where(path, tid)}: {n} solution(s) for {len(task.test)} test input(s)")
        task.test = [
            Pair(p.input, to_grid(g, f"{_where(path, tid)}: solution[{i}]"))
            for i, (p, g) in enumerate(zip(task.test, grids, strict=True))
        ]


def looks_like_task(obj: Any) -> bool:
    return isinstance(obj, dict) and "train" in obj and "test" in obj


def load_task_folder(folder: Path) -> dict[str, Task]:
    """Every task file below `folder`, subfolders included (ARC-like sets group tasks so: ConceptARC one folder
    per concept), each named by its file's stem; two files of one name are refused, naming both."""
    files = sorted(f for f in folder.rglob("*") if f.is_file() and is_json_file(f))
    if not files:
        raise ArcDataError(f"{folder}: folder holds no .json (.json.xz, .json.gz) task files")
    tasks: dict[str, Task] = {}
    where: dict[str, Path] = {}
    for f in files:
        tid = json_stem(f)
        if tid in where:
            raise ArcDataError(
                f"{f}: task id {tid} again (also {where[tid]}): task file names must be unique"
            )
        obj = read_json(f)
        if not looks_like_task(obj):
            raise ArcDataError(f"{f}: not an ARC task (no 'train' and 'test')")
        tasks[tid], where[tid] = parse_task(tid, obj, f), f
    return tasks


def load_tasks(path: str | os.PathLike, solutions: str | os.PathLike | None = None) -> dict[str, Task]:
    """Load tasks from a Kaggle challenges file, a single-task ARC JSON file, or a folder of them (load_task_folder).

    `solutions` (a Kaggle solutions file) fills the test outputs. A Kaggle challenges file named
    `*_challenges.json` picks up its sibling `*_solutions.json` only when asked (`solutions="auto"`); a
    compressed one (`*_challenges.json.xz`, `.gz`) its sibling with the same suffix. Both may be 'data:' paths.
    """
    p = resolve_path(path)
    if p.is_dir():
        tasks = load_task_folder(p)
    else:
        obj = read_json(p)
        if looks_like_task(obj):
            tasks = {json_stem(p): parse_task(json_stem(p), obj, p)}
        elif isinstance(obj, dict):
            if not obj:
                raise ArcDataError(f"{p}: no tasks in file")
            tasks = {str(tid): parse_task(str(tid), t, p) for tid, t in obj.items()}
        else:
            raise ArcDataError(f"{p}: expected a task or a mapping of task ids to tasks")
    if solutions == "auto":
        sib = p.with_name(p.name.replace("_challenges", "_solutions"))
        solutions = sib if p.is_file() and "_challenges" in p.name and sib.exists() else None
    if solutions is not None:
        attach_solutions(tasks, read_json(solutions), solutions)
    return tasks


def inline_solutions(tasks: Mapping[str, Task]) -> dict[str, list[Grid]] | None:
    """The test outputs written inline in the tasks, when every test input of every task has one (ARC's own
    per-task files and most ARC-like sets ship so); None otherwise. Only scoring reads them: the pipelines hide
    them from training and prediction (hide_test_outputs)."""
    if not tasks or not all(t.has_solutions for t in tasks.values()):
        return None
    return {tid: [p.output for p in t.test] for tid, t in tasks.items()}


def holds_tasks(obj: Any) -> bool:
    """A task, or a challenges-form mapping of task ids to tasks (a solutions file maps ids to grid lists)."""
    if looks_like_task(obj):
        return True
    return isinstance(obj, dict) and bool(obj) and all(looks_like_task(v) for v in obj.values())


def load_truth(path: str | os.PathLike) -> dict[str, list[Grid]]:
    """The true test outputs: a Kaggle solutions file, or tasks that carry their test outputs inline (a task
    file, a challenges-form file or a folder of task files), so an ARC-like set scores as it ships."""
    p = resolve_path(path)
    if p.is_dir() or holds_tasks(read_json(p)):
        truth = inline_solutions(load_tasks(p))
        if truth is None:
            raise ArcDataError(f"{p}: tasks without all their test outputs: not solutions")
        return truth
    return load_solutions(p)


def load_solutions(path: str | os.PathLike, tasks: Mapping[str, Task] | None = None) -> dict[str, list[Grid]]:
    """Load a Kaggle solutions file as {task_id: [grid, ...]}, validated (against `tasks` if given)."""
    obj = read_json(path)
    if not isinstance(obj, dict) or not obj:
        raise ArcDataError(f"{path}: a solutions file must map task ids to lists of grids")
    out: dict[str, list[Grid]] = {}
    for tid, grids in obj.items():
        if not isinstance(grids, list) or not grids:
            raise ArcDataError(f"{_where(path, tid)}: solutions must be a non-empty list of grids")
        out[tid] = [to_grid(g, f"{_where(path, tid)}: solution[{i}]") for i, g in enumerate(grids)]
    if tasks is not None:
        attach_solutions({k: Task(v.id, v.train, list(v.test)) for k, v in tasks.items()}, obj, path)
    return out


def parse_pairs(obj: Any, where: str) -> list[Pair]:
    """Validate a non-empty JSON list of {"input", "output"} pairs (RE-ARC's and ARC-GEN's form)."""
    if not isinstance(obj, list) or not obj:
        raise ArcDataError(f"{where}: expected a non-empty list of input/output pairs")
    return [_pair(x, f"{where}: pair[{i}]", True) for i, x in enumerate(obj)]


def load_pairs(path: str | os.PathLike) -> list[Pair]:
    """Load a RE-ARC style file: a JSON list of {"input", "output"} pairs."""
    return parse_pairs(read_json(path), str(path))


def load_generated(path: str | os.PathLike) -> dict[str, list[Pair]]:
    """Load an ARC-GEN style file: {task_id: [{"input", "output"}, ...]}, one file for many tasks (compressed:
    tens of thousands of pairs would be one RE-ARC file each)."""
    obj = read_json(path)
    if not isinstance(obj, dict) or not obj:
        raise ArcDataError(f"{path}: expected a mapping of task ids to lists of input/output pairs")
    return {
        check_task_id(tid, str(path)): parse_pairs(pairs, _where(path, str(tid)))
        for tid, pairs in obj.items()
    }


def repo_root() -> Path:
    """The checkout that holds the arcsub package (configs/, models/ and ../shared/data sit beside it)."""
    return Path(__file__).resolve().parents[2]


def data_dir() -> Path:
    """The shared ARC data folder: $ARCSUB_DATA, else ../shared/data beside the repo."""
    env = os.environ.get("ARCSUB_DATA")
    return Path(env) if env else repo_root().parent / "shared" / "data"


def resolve_path(path: str | os.PathLike) -> Path:
    """Config paths may start with 'data:' for the shared data folder, so configs work on every machine."""
    s = str(path)
    return data_dir() / s[len("data:") :] if s.startswith("data:") else Path(s)


def dataset_files(name: str, split: str) -> tuple[Path, Path]:
    """(challenges, solutions) paths of a named public set, e.g. ("arc-agi-1", "evaluation")."""
    base = data_dir() / name
    return base / f"arc-agi_{split}_challenges.json", base / f"arc-agi_{split}_solutions.json"


def pick_task_ids(spec: str | None, ids: list[str]) -> list[str] | None:
    """A --tasks argument: None (all), "N" (the first N) or comma-separated ids (each must exist)."""
    if spec is None:
        return None
    if spec.isdigit() and int(spec) < 1:
        raise ArcDataError(f"--tasks {spec}: must be at least 1 (or omit it for all tasks)")
    picked = ids[: int(spec)] if spec.isdigit() else [t for t in spec.split(",") if t]
    if not picked:
        raise ArcDataError(f"--tasks {spec!r}: names no task")
    known = set(ids)
    unknown = [t for t in picked if t not in known]
    if unknown:
        raise ArcDataError(f"task {unknown[0]}: not in the challenges file")
    return picked


def subset(tasks: Mapping[str, Task], ids: Iterable[str]) -> dict[str, Task]:
    return {i: tasks[i] for i in ids}
