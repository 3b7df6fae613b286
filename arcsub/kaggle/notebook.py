"""Running offline on Kaggle: paths, the model and wheel datasets, GPUs, the 12 h budget, the submission.

The submission notebook (kernels/arcsub_submission.py) installs arcsub from the wheel dataset and calls
`main()`; everything else happens here, so the notebook holds no logic and this module is tested on CPU.

What `main()` does, in order:

1. finds the competition's challenges (``/kaggle/input/<competition>/arc-agi_test_challenges.json``) and
   writes a valid baseline ``/kaggle/working/submission.json`` at once (fallback attempts for every task),
   so a crash, a kill or a timeout later still leaves a scorable file;
2. finds the model dataset (a folder with the ``manifest.json`` of tools/build_model_dataset.py), checks
   it against the manifest, detects the GPUs (count, compute capability -> engine and dtype);
3. splits the 12 h limit, less a safety margin and the time already spent, into the pipeline's budget and
   runs ``arcsub.lm.pipeline.run_pipeline`` into ``/kaggle/working`` (it updates submission.json atomically as
   tasks finish); a watcher logs each task as its attempts land, an alarm interrupts the pipeline at the
   hard deadline;
4. when the challenges are the public stand-in (Kaggle's public run of ARC Prize 2024 shows 100 *training*
   tasks; solutions or the same ids sit next to the file) it runs a short self-check on a few tasks with
   their solutions instead of the whole budget;
5. finally merges whatever is on disk with the fallbacks, writes and validates submission.json again.

Every path can be moved with environment variables, so a fake ``/kaggle`` tree works on any machine:

=========================  ==========================================================================
ARCSUB_KAGGLE_ROOT         the /kaggle folder (input/ and working/ below it)
ARCSUB_KAGGLE_INPUT        the input folder (default ROOT/input)
ARCSUB_KAGGLE_WORKING      the working folder, where submission.json goes (default ROOT/working)
ARCSUB_COMPETITION         competition slug (arc-prize-2024 | arc-prize-2025); default: the one found
ARCSUB_CHALLENGES          the challenges file itself
ARCSUB_MODEL_DIR           a model directory (skips the model dataset search)
ARCSUB_TIME_LIMIT          seconds the whole notebook may run (default 43200 = 12 h)
ARCSUB_SAFETY_MARGIN       seconds kept free at the end (default 10% of the limit, at most 45 min)
ARCSUB_T0                  epoch seconds the notebook started (default: this process's start)
ARCSUB_KAGGLE_MODE         auto | full | selfcheck (default auto: selfcheck on the public stand-in)
ARCSUB_SELFCHECK_TASKS     tasks the self-check runs (default 4)
ARCSUB_SELFCHECK_BUDGET    seconds the self-check may take (default 900)
ARCSUB_CONFIG              pipeline config file (YAML/JSON); default: pipeline.yaml of the model dataset
ARCSUB_OVERRIDES           whitespace-separated key=value pipeline config overrides
ARCSUB_PIPELINE            module:function of the pipeline (default arcsub.lm.pipeline:run_pipeline)
ARCSUB_KAGGLE_STRICT       1: re-raise a pipeline error after the submission is finalised (dry runs)
=========================  ==========================================================================
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import importlib.util
import logging
import os
import shlex
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arcsub.core.data import ArcDataError, Task, load_tasks, read_json, write_json_atomic
from arcsub.core.submission import ATTEMPT_KEYS, build_submission, validate_submission, write_submission

log = logging.getLogger("arcsub.kaggle")

TIME_LIMIT_S = 12 * 3600
MAX_MARGIN_S = 45 * 60
CHALLENGES_FILE = "arc-agi_test_challenges.json"
SUBMISSION_FILE = "submission.json"
MODEL_MANIFEST = "manifest.json"
MODEL_KIND = "arcsub-model"
DATA_KIND = "arcsub-data"  # a training-data dataset (tools/build_data_dataset.py): ARCSUB_DATA points at it
WHEELS_MANIFEST = "arcsub-wheels.json"
WHEELS_KIND = "arcsub-wheels"
# ARCSUB_PIPELINE: a name or "module:function"; the pre-0.2 flat module paths still work in old notebooks
PIPELINES = {
    "in-context": "arcsub.lm.pipeline:run_pipeline",
    "task": "arcsub.taskmodel.pipeline:run_pipeline",
}
LEGACY_PIPELINES = {
    "arcsub.pipeline": "arcsub.lm.pipeline",
    "arcsub.taskpipeline": "arcsub.taskmodel.pipeline",
}
DEFAULT_PIPELINE = PIPELINES["in-context"]
SEARCH_DEPTH = 3  # how deep below the input folder datasets are looked for (Kaggle nests some mounts)

# The public stand-in tasks Kaggle shows before the hidden rerun (all public ARC tasks, so they are known).
_PUBLIC_2024 = """
007bbfb7 00d62c1b 017c7c7b 025d127b 045e512c 0520fde7 05269061 05f2a901 06df4c85 08ed6ac7 09629e4f
0962bcdd 0a938d79 0b148d64 0ca9ddb6 0d3d703e 0dfd9992 0e206a2e 10fcaaa3 11852cab 1190e5a7 137eaa0f
150deff5 178fcbfb 1a07d186 1b2d62fb 1b60fb0c 1bfc4729 1c786137 1caeab9d 1cf80156 1e0a9b12 1e32b0e9
1f0c79e5 1f642eb9 1f85a75f 1f876c06 1fad071e 2013d3e2 2204b7a8 22168020 22233c11 2281f1f4 228f6490
22eb0ac0 234bbc79 23581191 239be575 23b5c85d 253bf280 25d487eb 25d8a9c8 25ff71a9 264363fd 272f95fa
27a28665 28bf18c6 28e73c20 29623171 29c11459 29ec7d0e 2bcee788 2bee17df 2c608aff 2dc579da 2dd70a9a
2dee498d 31aa019c 321b1fc6 32597951 3345333e 3428a4f5 3618c87e 3631a71a 363442ee 36d67576 36fdfd69
3906de3d 39a8645d 39e1d7f9 3aa6fb7a 3ac3eb23 3af2c5a8 3bd67248 3bdb4ada 3befdf3e 3c9b0459 3de23699
3e980e27 3eda0437 3f7978a0 40853293 4093f84a 41e4d17e 4258a5f9 4290ef0e 42a50994 4347f46a 444801d8
445eab21
"""
_PUBLIC_2025 = """
0934a4d8 135a2760 136b0064 13e47133 142ca369 16b78196 16de56c4 1818057f 195c6913 1ae2feb7 20270e3b
20a9e565 21897d95 221dfab4 247ef758 269e22fb 271d71e2 28a6681f 291dc1e1 2b83f449 2ba387bc 2c181942
2d0172a1 31f7f899 332f06d7 35ab12c3 36a08778 38007db0 3a25b0d8 3dc255db 3e6067c3 409aa875 446ef5d2
45a5af55 4a21e3da 4c3d4a41 4c416de3 4c7dc4dd 4e34c42c 53fb4810 5545f144 581f7754 58490d8a 58f5dbd5
5961cc34 5dbc8537 62593bfd 64efde09 65b59efc 67e490f4 6e453dd6 6e4f6532 6ffbe589 71e489b6 7491f3cf
7666fa5d 78332cb0 7b0280bc 7b3084d4 7b5033c1 7b80bb43 7c66cb00 7ed72f31 800d221b 80a900e0 8698868d
88bcf3b4 88e364bc 89565ca0 898e7135 8b7bacbf 8b9c3697 8e5c0c38 8f215267 8f3a5a89 9385bd28 97d7923e
981571dc 9aaea919 9bbf930d a251c730 a25697e4 a32d8b75 a395ee82 a47bf94d a6f40cea aa4ec2a5 abc82100
b0039139 b10624e5 b5ca7ac4 b6f77b65 b99e7126 b9e38dc0 bf45cf4b c4d067a0 c7f57c3e cb2d8a2c cbebaa4b
d35bdbdc d59b0160 d8e07eb2 da515329 db0c5428 db695cfb dbff022c dd6b8c4b de809cff dfadab01 e12f9a14
e3721c99 e376de54 e8686506 e87109e9 edb79dae eee78d87 f560132c f931b4a8 faa9f03d fc7cae8d
"""


@dataclass(frozen=True)
class Competition:
    """One ARC Prize code competition on Kaggle and the machine its notebook gets."""

    slug: str
    arc: str  # which ARC-AGI version the hidden tasks are
    hidden_tasks: int
    gpus: int
    gpu: str
    gpu_memory_gb: int  # per GPU
    capability: tuple[int, int]
    public_ids: frozenset[str] = field(default_factory=frozenset, repr=False)


COMPETITIONS: dict[str, Competition] = {
    "arc-prize-2024": Competition(
        "arc-prize-2024", "ARC-AGI-1", 100, 2, "T4", 15, (7, 5), frozenset(_PUBLIC_2024.split())
    ),
    "arc-prize-2025": Competition(
        "arc-prize-2025", "ARC-AGI-2", 240, 4, "L4", 24, (8, 9), frozenset(_PUBLIC_2025.split())
    ),
}


def _env(name: str, env: Mapping[str, str] | None = None, default: str | None = None) -> str | None:
    value = (os.environ if env is None else env).get(name)
    return value if value not in (None, "") else default


def _env_float(name: str, default: float, env: Mapping[str, str] | None = None) -> float:
    raw = _env(name, env)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ArcDataError(f"{name}={raw!r} is not a number") from None


# ------------------------------------------------------------------------------------------------ paths


@dataclass(frozen=True)
class KagglePaths:
    root: Path
    input: Path
    working: Path

    @property
    def submission(self) -> Path:
        return self.working / SUBMISSION_FILE


def kaggle_paths(env: Mapping[str, str] | None = None) -> KagglePaths:
    """/kaggle, /kaggle/input and /kaggle/working, each movable by its environment variable."""
    root = Path(_env("ARCSUB_KAGGLE_ROOT", env, "/kaggle"))
    inp = Path(_env("ARCSUB_KAGGLE_INPUT", env) or root / "input")
    working = Path(_env("ARCSUB_KAGGLE_WORKING", env) or root / "working")
    return KagglePaths(root, inp, working)


def on_kaggle(env: Mapping[str, str] | None = None) -> bool:
    """True inside a Kaggle notebook (or a fake /kaggle tree named by ARCSUB_KAGGLE_ROOT)."""
    if _env("KAGGLE_KERNEL_RUN_TYPE", env) or _env("ARCSUB_KAGGLE_ROOT", env):
        return True
    return kaggle_paths(env).input.is_dir()


def _walk(base: Path, name: str, depth: int = SEARCH_DEPTH) -> list[Path]:
    """Files called `name` at most `depth` folders below `base`, sorted (no symlink loops, no errors)."""
    found: list[Path] = []
    level = [base]
    for _ in range(depth + 1):
        nxt: list[Path] = []
        for d in level:
            try:
                entries = sorted(d.iterdir())
            except OSError:
                continue
            for e in entries:
                if e.name == name and e.is_file():
                    found.append(e)
                elif e.is_dir() and not e.is_symlink():
                    nxt.append(e)
        level = nxt
    return found


def find_challenges(
    paths: KagglePaths, competition: str | None = None, env: Mapping[str, str] | None = None
) -> tuple[Path, str | None]:
    """(the hidden challenges file, its competition slug or None); one clear line when it is not there."""
    explicit = _env("ARCSUB_CHALLENGES", env)
    competition = competition or _env("ARCSUB_COMPETITION", env)
    if competition is not None and competition not in COMPETITIONS:
        raise ArcDataError(f"unknown competition {competition!r} (known: {', '.join(COMPETITIONS)})")
    if explicit:
        p = Path(explicit)
        if not p.is_file():
            raise ArcDataError(f"{p}: challenges file not found (ARCSUB_CHALLENGES)")
        return p, competition or _competition_of(p)
    if competition:
        p = paths.input / competition / CHALLENGES_FILE
        if p.is_file():
            return p, competition
        hits = [h for h in _walk(paths.input, CHALLENGES_FILE) if h.parent.name == competition]
        if hits:
            return hits[0], competition
        raise ArcDataError(f"{p}: challenges file not found (is the competition {competition} attached?)")
    hits = _walk(paths.input, CHALLENGES_FILE)
    if not hits:
        raise ArcDataError(f"{paths.input}: no {CHALLENGES_FILE} found (attach the competition data)")
    known = [h for h in hits if h.parent.name in COMPETITIONS]
    best = (known or hits)[-1]  # the newest competition when both are attached
    if len(hits) > 1:
        log.warning("several challenges files, using %s (set ARCSUB_COMPETITION to choose)", best)
    return best, _competition_of(best)


def _competition_of(path: Path) -> str | None:
    for part in reversed(path.parts):
        if part in COMPETITIONS:
            return part
    return None


# ------------------------------------------------------------------------------------- model dataset


@dataclass(frozen=True)
class ModelDataset:
    """A model dataset made by tools/build_model_dataset.py, as mounted under the input folder."""

    root: Path
    manifest: dict[str, Any]

    @property
    def model_dir(self) -> Path:
        return self.root / self.manifest.get("model_dir", ".")

    @property
    def adapters_dir(self) -> Path | None:
        sub = self.manifest.get("adapters_dir")
        return self.root / sub if sub else None

    @property
    def pipeline_config(self) -> Path | None:
        sub = self.manifest.get("pipeline_config")
        return self.root / sub if sub else None


def read_manifest(path: Path, kind: str) -> dict[str, Any] | None:
    """The manifest at `path` when it is a JSON object of that kind, else None (never raises)."""
    try:
        obj = read_json(path)
    except ArcDataError:
        return None
    return obj if isinstance(obj, dict) and obj.get("kind") == kind else None


def find_datasets(paths: KagglePaths, kind: str) -> list[tuple[Path, dict[str, Any]]]:
    """(folder, manifest) of every dataset of this kind under the input folder (found by its manifest)."""
    return [
        (m.parent, man)
        for m in _walk(paths.input, MODEL_MANIFEST)
        if (man := read_manifest(m, kind)) is not None
    ]


def find_model_dataset(paths: KagglePaths, name: str | None = None) -> ModelDataset:
    """The model dataset under the input folder (the one called `name` when several are attached)."""
    found = find_datasets(paths, MODEL_KIND)
    if name:
        found = [f for f in found if f[0].name == name]
    if not found:
        what = f"model dataset {name!r}" if name else "model dataset"
        raise ArcDataError(
            f"{paths.input}: no {what} ({MODEL_MANIFEST} of kind {MODEL_KIND}; made by "
            "tools/build_model_dataset.py) - attach it to the notebook or set ARCSUB_MODEL_DIR"
        )
    if len(found) > 1:
        log.warning("several model datasets, using %s", found[0][0])
    return ModelDataset(*found[0])


def use_data_dataset(paths: KagglePaths, env: Mapping[str, str] | None = None) -> Path | None:
    """Point ARCSUB_DATA (what `data:` paths resolve to) at an attached data dataset, unless it is set; folders
    Kaggle left zipped are unpacked under the working folder first. Returns the folder used, or None."""
    if _env("ARCSUB_DATA", env):
        return None
    found = find_datasets(paths, DATA_KIND)
    if not found:
        return None
    root, manifest = found[0]
    folders = [str(f) for f in manifest.get("folders", [])]
    zipped = [f for f in folders if not (root / f).is_dir()]
    moved = {f: unpack_folder(root / f, paths.working / "arcsub-data" / f) for f in zipped}
    verify_dataset_files(root, manifest, moved=moved)
    base = root
    if moved:  # one folder that holds every data folder, unpacked or not
        base = paths.working / "arcsub-data"
        for f in folders:
            if f not in moved and not (base / f).exists():
                (base / f).symlink_to(root / f, target_is_directory=True)
    os.environ["ARCSUB_DATA"] = str(base)
    log.info("data dataset %s (%s): ARCSUB_DATA=%s", root, ", ".join(folders), base)
    return base


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def verify_dataset_files(
    root: Path, manifest: Mapping[str, Any], full: bool = False, moved: Mapping[str, Path] | None = None
) -> int:
    """Check every file the manifest lists exists with its size (and sha256 when `full`); returns the count.

    `moved` maps a top folder of the dataset to where it really is (a folder Kaggle left as a .zip and
    that was unpacked elsewhere).
    """
    files = manifest.get("files")
    if not isinstance(files, dict) or not files:
        raise ArcDataError(f"{root / MODEL_MANIFEST}: manifest lists no files")
    for rel, info in files.items():
        top, _, rest = rel.partition("/")
        p = moved[top] / rest if moved and rest and top in moved else root / rel
        if not p.is_file():
            raise ArcDataError(f"{p}: listed in the manifest but missing (incomplete upload?)")
        if p.stat().st_size != info.get("size"):
            raise ArcDataError(f"{p}: {p.stat().st_size} bytes, the manifest says {info.get('size')}")
        if full and sha256_file(p) != info.get("sha256"):
            raise ArcDataError(f"{p}: sha256 differs from the manifest (corrupt copy)")
    return len(files)


def unpack_folder(folder: Path, dest: Path) -> Path:
    """A dataset sub-folder uploaded as FOLDER.zip (`kaggle datasets ... --dir-mode zip`) that Kaggle did not
    unpack: extract it to `dest` (the input folder is read-only) and return `dest`."""
    archive = folder.with_name(folder.name + ".zip")
    if not archive.is_file():
        raise ArcDataError(
            f"{folder}: listed in the manifest but neither the folder nor {archive.name} is there"
        )
    import zipfile

    with zipfile.ZipFile(archive) as z:
        for name in z.namelist():
            target = (dest / name).resolve()
            if not target.is_relative_to(dest.resolve()):
                raise ArcDataError(f"{archive}: unsafe path {name!r} in the archive")
        z.extractall(dest)
    log.info("unpacked %s to %s", archive, dest)
    return dest


def find_wheels(paths: KagglePaths) -> Path | None:
    """The wheel dataset's folder under the input folder, or None."""
    for m in _walk(paths.input, WHEELS_MANIFEST):
        if read_manifest(m, WHEELS_KIND) is not None:
            return m.parent
    return None


# ------------------------------------------------------------------------------------------------- GPUs


@dataclass(frozen=True)
class GpuInfo:
    count: int = 0
    names: tuple[str, ...] = ()
    capability: tuple[int, int] | None = None  # the lowest over the GPUs
    memory_gb: float = 0.0  # the smallest over the GPUs
    vllm: bool = False  # importable

    @property
    def bf16(self) -> bool:
        """bf16 tensor cores: Ampere (8.0) or newer; a T4 (7.5) only emulates it, slowly."""
        return self.capability is not None and self.capability >= (8, 0)

    @property
    def engine(self) -> str:
        """vllm when it is installed and its LoRA kernels run here (compute capability >= 8.0), else torch."""
        return "vllm" if self.vllm and self.bf16 else "torch"

    @property
    def dtype(self) -> str:
        if self.count == 0:
            return "fp32"
        return "bf16" if self.bf16 else "fp16"

    def describe(self) -> str:
        if self.count == 0:
            return "no CUDA GPU: engine torch, fp32 on CPU"
        cc = f"{self.capability[0]}.{self.capability[1]}" if self.capability else "?"
        names = ", ".join(sorted(set(self.names)))
        return (
            f"{self.count}x {names} (compute capability {cc}, {self.memory_gb:.0f} GB each): "
            f"engine {self.engine}, dtype {self.dtype}"
            + ("" if self.vllm or not self.bf16 else " (vllm not installed)")
        )


def detect_gpus() -> GpuInfo:
    """Count the CUDA GPUs and their capabilities (torch imported here only); CPU-only gives count 0."""
    vllm = importlib.util.find_spec("vllm") is not None
    try:
        import torch
    except ImportError:
        return GpuInfo(vllm=vllm)
    if not torch.cuda.is_available():
        return GpuInfo(vllm=vllm)
    n = torch.cuda.device_count()
    props = [torch.cuda.get_device_properties(i) for i in range(n)]
    caps = [(p.major, p.minor) for p in props]
    return GpuInfo(
        n, tuple(p.name for p in props), min(caps), min(p.total_memory for p in props) / 2**30, vllm
    )


# ---------------------------------------------------------------------------------------------- budget


def process_start_time() -> float:
    """Epoch seconds this process started (Linux /proc), else now: the notebook's clock starts about then."""
    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        btime = next(
            int(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return time.time()


@dataclass
class TimeBudget:
    """The notebook's wall-clock limit, a safety margin and what is already spent.

    The pipeline gets ``remaining()`` (limit - margin - elapsed); an alarm interrupts it at
    ``hard_deadline`` (half the margin later), which leaves the other half to finalise the submission and for
    Kaggle's own overhead.
    """

    limit_s: float = TIME_LIMIT_S
    margin_s: float | None = None  # None: 10% of the limit, at most 45 min
    t0: float = field(default_factory=time.time)

    def __post_init__(self) -> None:
        if self.limit_s <= 0:
            raise ArcDataError(f"time limit {self.limit_s} s must be positive")
        if self.margin_s is None:
            self.margin_s = min(MAX_MARGIN_S, 0.1 * self.limit_s)
        if not 0 <= self.margin_s < self.limit_s:
            raise ArcDataError(
                f"safety margin {self.margin_s} s must be >= 0 and below the limit {self.limit_s} s"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TimeBudget:
        limit = _env_float("ARCSUB_TIME_LIMIT", TIME_LIMIT_S, env)
        margin_raw = _env("ARCSUB_SAFETY_MARGIN", env)
        margin = _env_float("ARCSUB_SAFETY_MARGIN", 0.0, env) if margin_raw is not None else None
        t0 = _env_float("ARCSUB_T0", 0.0, env) or process_start_time()
        return cls(limit, margin, t0)

    def elapsed(self, now: float | None = None) -> float:
        return (time.time() if now is None else now) - self.t0

    @property
    def deadline(self) -> float:
        """Epoch seconds the pipeline should be done by."""
        return self.t0 + self.limit_s - self.margin_s

    @property
    def hard_deadline(self) -> float:
        """Epoch seconds the pipeline is interrupted at."""
        return self.t0 + self.limit_s - self.margin_s / 2

    def remaining(self, now: float | None = None) -> float:
        return max(0.0, self.deadline - (time.time() if now is None else now))

    def per_task(self, n_tasks: int, workers: int = 1, now: float | None = None) -> float:
        """Seconds each task may take when `workers` run tasks side by side."""
        return self.remaining(now) * max(1, workers) / max(1, n_tasks)

    def describe(self, n_tasks: int, workers: int = 1) -> str:
        return (
            f"limit {self.limit_s / 3600:.2f} h, margin {self.margin_s / 60:.1f} min, "
            f"spent {self.elapsed() / 60:.1f} min, {self.remaining() / 3600:.2f} h left for "
            f"{n_tasks} tasks on {max(1, workers)} worker(s): {self.per_task(n_tasks, workers):.0f} s per task"
        )


# ------------------------------------------------------------------------------------ public stand-in


def is_public_standin(
    tasks: Mapping[str, Task], challenges: Path, competition: str | None = None
) -> tuple[bool, str]:
    """(True, why) when the challenges hold public tasks standing in for the hidden ones.

    Kaggle's public run shows public tasks (ARC Prize 2024: 100 training tasks) and swaps in the hidden ones
    for scoring. Signs: a solutions file next to the challenges, every id listed in a sibling challenges file
    (training / evaluation), or the ids of a known stand-in set.
    """
    ids = set(tasks)
    sib = challenges.with_name(challenges.name.replace("_challenges", "_solutions"))
    if "_challenges" in challenges.name and sib.is_file():
        return True, f"solutions next to the challenges ({sib.name})"
    for other in sorted(challenges.parent.glob("*_challenges.json")):
        if other == challenges:
            continue
        try:
            obj = read_json(other)
        except ArcDataError:
            continue
        if isinstance(obj, dict) and ids <= set(obj):
            return True, f"every task id is in {other.name}"
    comps = [COMPETITIONS[competition]] if competition in COMPETITIONS else list(COMPETITIONS.values())
    for comp in comps:
        if comp.public_ids and len(ids & comp.public_ids) >= 0.9 * len(ids):
            return True, f"the task ids are {comp.slug}'s public stand-in set"
    return False, "hidden tasks"


def find_solutions(task_ids: Sequence[str], challenges: Path) -> dict[str, Any] | None:
    """Solutions for `task_ids` from the *_solutions.json files next to the challenges, or None."""
    found: dict[str, Any] = {}
    for f in sorted(challenges.parent.glob("*_solutions.json")):
        try:
            obj = read_json(f)
        except ArcDataError:
            continue
        if isinstance(obj, dict):
            found.update({t: obj[t] for t in task_ids if t in obj and t not in found})
    return found if len(found) == len(task_ids) else None


# ----------------------------------------------------------------------------------------- submission


def write_baseline(tasks: Mapping[str, Task], path: Path) -> Path:
    """A valid submission with fallback attempts for every task, written atomically."""
    return write_submission(path, build_submission(tasks))


def quiet_baseline(tasks: Mapping[str, Task]) -> dict[str, Any]:
    """The fallback-only submission, without build_submission's log line (used for comparisons)."""
    sub_log = logging.getLogger("arcsub.core.submission")
    level = sub_log.level
    sub_log.setLevel(logging.WARNING)
    try:
        return build_submission(tasks)
    finally:
        sub_log.setLevel(level)


def read_attempts(path: Path, tasks: Mapping[str, Task]) -> dict[str, list[list[Any]]]:
    """Per task, the [attempt_1, attempt_2] pairs of a submission on disk that are well formed (never raises)."""
    try:
        obj = read_json(path)
    except ArcDataError:
        return {}
    if not isinstance(obj, dict):
        return {}
    out: dict[str, list[list[Any]]] = {}
    for tid, task in tasks.items():
        entries = obj.get(tid)
        if isinstance(entries, list) and len(entries) == len(task.test):
            out[tid] = [[e.get(k) for k in ATTEMPT_KEYS] if isinstance(e, dict) else [] for e in entries]
    return out


def finalize_submission(
    tasks: Mapping[str, Task], path: Path, extra: Mapping[str, list[list[Any]]] | None = None
) -> dict[str, Any]:
    """Merge what is on disk (and `extra`, which wins) with fallbacks, write atomically and validate."""
    attempts = read_attempts(path, tasks)
    attempts.update({k: v for k, v in (extra or {}).items() if k in tasks})
    sub = build_submission(tasks, attempts)
    write_submission(path, sub)
    validate_submission(read_json(path), tasks, path)
    baseline = quiet_baseline(tasks)
    changed = sum(sub[t] != baseline[t] for t in tasks)
    return {"path": str(path), "tasks": len(tasks), "predicted": changed}


class ProgressWatcher(threading.Thread):
    """Logs each task as its attempts land in submission.json (elapsed seconds, tasks done, budget left)."""

    def __init__(self, path: Path, tasks: Mapping[str, Task], budget: TimeBudget, interval: float = 10.0):
        super().__init__(name="arcsub-progress", daemon=True)
        self.path, self.budget, self.interval = path, budget, interval
        self.tasks = tasks
        self.baseline = quiet_baseline(tasks)
        self.done: dict[str, float] = {}  # task id -> seconds since the watcher started
        self.t_start = time.time()
        self._stop_event = threading.Event()
        self._mtime = 0.0

    def poll(self) -> list[str]:
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return []
        if mtime == self._mtime:
            return []
        self._mtime = mtime
        try:
            obj = read_json(self.path)
        except ArcDataError:
            return []
        if not isinstance(obj, dict):
            return []
        now = time.time() - self.t_start
        new = [t for t in self.tasks if t not in self.done and obj.get(t) not in (None, self.baseline[t])]
        share = (now - max(self.done.values(), default=0.0)) / max(1, len(new))  # tasks landing together
        for t in new:
            self.done[t] = now
            log.info(
                "task %s done: %.0f s into the run (~%.0f s for it), %d/%d tasks, %.0f s of budget left",
                t,
                now,
                share,
                len(self.done),
                len(self.tasks),
                self.budget.remaining(),
            )
        return new

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            self.poll()

    def stop(self) -> dict[str, float]:
        self._stop_event.set()
        self.poll()
        return dict(self.done)


class BudgetExceeded(BaseException):
    """Raised in the main thread by the alarm at the hard deadline.

    A BaseException (like KeyboardInterrupt), so a stage's ``except Exception`` cannot swallow it; the alarm
    repeats every `REPEAT_S` seconds in case something does.
    """

    REPEAT_S = 30.0


class _Alarm:
    """SIGALRM at the hard deadline raises BudgetExceeded in the main thread (a no-op elsewhere)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.armed = False
        self._old: Any = None

    def __enter__(self) -> _Alarm:
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):

            def _fire(signum, frame):
                raise BudgetExceeded(f"hard deadline reached ({self.seconds:.0f} s)")

            self._old = signal.signal(signal.SIGALRM, _fire)
            signal.setitimer(signal.ITIMER_REAL, max(0.01, self.seconds), BudgetExceeded.REPEAT_S)
            self.armed = True
        else:
            log.warning("not in the main thread: no alarm at the hard deadline")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.armed:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old)


# ------------------------------------------------------------------------------------------- pipeline


def load_pipeline(spec: str | None = None) -> tuple[Callable[..., dict], Callable[..., Any]]:
    """(run_pipeline, load_config(path, overrides)) of `spec` ("module:function").

    The config loader is the module's `load_pipeline_config` when it has one (it builds the typed sub-configs),
    else arcsub.core.config.load_config on the module's `PipelineConfig`.
    """
    spec = spec or _env("ARCSUB_PIPELINE") or DEFAULT_PIPELINE
    spec = PIPELINES.get(spec, spec)
    module, _, func = spec.partition(":")
    module = LEGACY_PIPELINES.get(module, module)
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise ArcDataError(f"pipeline {spec}: cannot import {module} ({e})") from None
    run = getattr(mod, func or "run_pipeline", None)
    loader = getattr(mod, "load_pipeline_config", None)
    if loader is None and hasattr(mod, "PipelineConfig"):
        from arcsub.core.config import load_config

        def loader(path, overrides):
            return load_config(mod.PipelineConfig, path, overrides)

    if run is None or loader is None:
        raise ArcDataError(f"pipeline {spec}: {module} has no {func or 'run_pipeline'} or PipelineConfig")
    return run, loader


def apply_runtime(cfg: Any, gpus: GpuInfo) -> Any:
    """Set every `engine` / `dtype` field left at "auto" (in the config and its sub-configs) from the GPUs."""
    if not dataclasses.is_dataclass(cfg):
        return cfg
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.name == "engine" and value == "auto":
            changes[f.name] = gpus.engine
        elif f.name == "dtype" and value == "auto":
            changes[f.name] = gpus.dtype
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            new = apply_runtime(value, gpus)
            if new is not value:
                changes[f.name] = new
    return dataclasses.replace(cfg, **changes) if changes else cfg


def set_field(cfg: Any, dotted: str, value: Any) -> Any:
    """`cfg` with the (dotted, nested) field set; a field the config lacks is logged and left alone."""
    head, _, rest = dotted.partition(".")
    if not dataclasses.is_dataclass(cfg) or head not in {f.name for f in dataclasses.fields(cfg)}:
        log.warning("pipeline config has no field %r: not set", dotted)
        return cfg
    if rest:
        return dataclasses.replace(cfg, **{head: set_field(getattr(cfg, head), rest, value)})
    return dataclasses.replace(cfg, **{head: value})


def _subset_files(
    tasks: Mapping[str, Task], ids: Sequence[str], solutions: Mapping[str, Any] | None, out: Path
) -> tuple[Path, Path | None]:
    ch = write_json_atomic(out / "challenges.json", {t: tasks[t].to_json() for t in ids})
    so = write_json_atomic(out / "solutions.json", {t: solutions[t] for t in ids}) if solutions else None
    return ch, so


def setup_logging(level: int = logging.INFO) -> None:
    """Log arcsub's messages to stdout (the notebook's output) with wall time, once."""
    root = logging.getLogger("arcsub")
    if not any(getattr(h, "_arcsub", False) for h in root.handlers):
        h = logging.StreamHandler(sys.stdout)
        h.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s", "%H:%M:%S"))
        h._arcsub = True  # type: ignore[attr-defined]
        root.addHandler(h)
        root.propagate = False
    root.setLevel(level)


def _parse_args(argv: Sequence[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m arcsub.kaggle",
        description="Write the Kaggle submission: baseline, then the pipeline under the time limit.",
    )
    p.add_argument("--competition", choices=sorted(COMPETITIONS), help="default: ARCSUB_COMPETITION or found")
    p.add_argument(
        "--mode", choices=["auto", "full", "selfcheck"], help="default: ARCSUB_KAGGLE_MODE or auto"
    )
    p.add_argument("--model", help="model directory (default: the model dataset, or ARCSUB_MODEL_DIR)")
    p.add_argument("--config", help="pipeline config file (default: ARCSUB_CONFIG or the model dataset's)")
    p.add_argument("--time-limit", type=float, help="seconds (default: ARCSUB_TIME_LIMIT or 12 h)")
    p.add_argument("overrides", nargs="*", help="pipeline config key=value overrides")
    return p.parse_args(list(argv))


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """The notebook's entry point; returns a summary dict (also logged). Never leaves an invalid submission.

    `argv` defaults to no arguments (not sys.argv: inside a notebook that holds the kernel's arguments).
    """
    args = _parse_args(argv or [])
    setup_logging()
    env = dict(os.environ)
    if args.time_limit is not None:
        env["ARCSUB_TIME_LIMIT"] = str(args.time_limit)
    budget = TimeBudget.from_env(env)
    paths = kaggle_paths(env)
    import arcsub

    log.info(
        "arcsub %s from %s; python %s",
        arcsub.__version__,
        Path(arcsub.__file__).parent,
        sys.version.split()[0],
    )

    # 1. the baseline, before anything that could fail or take long
    challenges, competition = find_challenges(paths, args.competition, env)
    tasks = load_tasks(challenges)
    paths.working.mkdir(parents=True, exist_ok=True)
    write_baseline(tasks, paths.submission)
    log.info(
        "baseline submission for %d tasks written to %s (%.1f s after start)",
        len(tasks),
        paths.submission,
        budget.elapsed(),
    )
    summary: dict[str, Any] = {
        "submission": str(paths.submission),
        "tasks": len(tasks),
        "competition": competition,
        "challenges": str(challenges),
        "arcsub_version": arcsub.__version__,
        "arcsub_path": str(Path(arcsub.__file__).parent),
    }

    watcher: ProgressWatcher | None = None
    error: BaseException | None = None
    extra: dict[str, list[list[Any]]] = {}
    try:
        # 2. what to run: mode, model, GPUs, config
        mode = args.mode or _env("ARCSUB_KAGGLE_MODE", env, "auto")
        if mode not in ("auto", "full", "selfcheck"):
            raise ArcDataError(f"ARCSUB_KAGGLE_MODE={mode!r} must be auto, full or selfcheck")
        standin, why = is_public_standin(tasks, challenges, competition)
        if mode == "auto":
            mode = "selfcheck" if standin else "full"
        log.info("mode %s (%s)", mode, why)
        summary["mode"] = mode

        gpus = detect_gpus()
        log.info("GPUs: %s", gpus.describe())
        run_pipeline, load_cfg = load_pipeline(_env("ARCSUB_PIPELINE", env))
        config = args.config or _env("ARCSUB_CONFIG", env)
        overrides = [*shlex.split(_env("ARCSUB_OVERRIDES", env, "")), *args.overrides]
        cfg = load_cfg(config, overrides)
        if (
            _trains_from_scratch(cfg)
            and not (args.model or _env("ARCSUB_MODEL_DIR", env))
            and not _shipped_task_model(paths)
        ):
            log.info("model: preset %r trained from scratch in this run (no task model attached)", cfg.model)
        else:
            model_dir, adapters, ds_config = _resolve_model(args.model, paths, env)
            if config is None and ds_config is not None:
                cfg = load_cfg(ds_config, overrides)
            cfg = set_field(cfg, "model", str(model_dir))
            if adapters is not None:  # a trained LoRA that TTFT starts from
                cfg = set_field(cfg, "ttft.adapter", str(adapters))
        use_data_dataset(paths, env)
        cfg = apply_runtime(cfg, gpus)
        workers = getattr(cfg, "workers", 0) or max(1, gpus.count)

        # 3. run under the budget
        if mode == "selfcheck":
            n = int(_env_float("ARCSUB_SELFCHECK_TASKS", 4, env))
            ids = sorted(tasks)[: max(1, n)]
            solutions = find_solutions(ids, challenges)
            sub_dir = paths.working / "arcsub-selfcheck"
            ch, so = _subset_files(tasks, ids, solutions, sub_dir)
            seconds = min(_env_float("ARCSUB_SELFCHECK_BUDGET", 900.0, env), budget.remaining())
            run_tasks, target, run_dir = {t: tasks[t] for t in ids}, sub_dir / SUBMISSION_FILE, sub_dir
            log.info(
                "self-check on %d task(s) %s, %.0f s, %s",
                len(ids),
                ", ".join(ids),
                seconds,
                "with solutions" if so else "no solutions found: not scored",
            )
        else:
            ch, so, seconds = challenges, None, budget.remaining()
            run_tasks, target, run_dir = tasks, paths.submission, paths.working
            log.info("budget: %s", budget.describe(len(tasks), workers))
        if seconds < 1:
            raise BudgetExceeded(f"no time left for the pipeline ({budget.elapsed():.0f} s spent)")
        cfg = set_field(cfg, "time_budget", float(seconds))
        watcher = ProgressWatcher(target, run_tasks, budget)
        watcher.start()
        t_run = time.time()
        with _Alarm(budget.hard_deadline - time.time()):
            result = run_pipeline(ch, run_dir, cfg, solutions=so)
        summary.update(
            pipeline_seconds=round(time.time() - t_run, 1),
            score=result.get("score") if isinstance(result, dict) else None,
            stage_seconds=result.get("stage_seconds") if isinstance(result, dict) else None,
        )
        if mode == "selfcheck":
            extra = read_attempts(target, run_tasks)
            log.info("self-check score %s", summary["score"])
    except BudgetExceeded as e:
        log.error("%s: pipeline interrupted, keeping the tasks it finished", e)
        summary["interrupted"] = True
    except Exception as e:  # the submission must survive any failure of the pipeline
        error = e
        log.error("pipeline failed: %s: %s\n%s", type(e).__name__, e, traceback.format_exc())
        summary["error"] = f"{type(e).__name__}: {e}"
    finally:
        if watcher is not None:
            summary["task_seconds"] = watcher.stop()
        # 5. whatever happened: a valid submission for every task
        final = finalize_submission(tasks, paths.submission, extra)
        summary.update(predicted=final["predicted"], seconds=round(budget.elapsed(), 1))
        log.info(
            "final submission %s: %d/%d tasks with predictions, %.0f s after start",
            paths.submission,
            final["predicted"],
            len(tasks),
            budget.elapsed(),
        )
        write_json_atomic(paths.working / "arcsub-kaggle-summary.json", summary, indent=2)
    if error is not None and _env("ARCSUB_KAGGLE_STRICT", env) == "1":
        raise error
    return summary


def _trains_from_scratch(cfg: Any) -> bool:
    """The task-model pipeline with a preset as its model trains from scratch: it needs no model dataset."""
    from arcsub.taskmodel.model import PRESETS
    from arcsub.taskmodel.pipeline import TaskPipelineConfig

    return isinstance(cfg, TaskPipelineConfig) and cfg.model in PRESETS


def _shipped_task_model(paths: KagglePaths) -> bool:
    """An attached model dataset holds a task model (pretrained offline, say on training tasks + RE-ARC): the
    task pipeline then continues it on the hidden tasks (mode ttt) instead of training a preset from scratch.
    Pretraining first, then joint TTT beat the all-in-one run at equal compute
    (docs/experiments/task-model-ablations.md), and the pretraining half costs no notebook time."""
    from arcsub.taskmodel.data import TaskIndex

    try:
        model_dir = find_model_dataset(paths).model_dir
    except ArcDataError:
        return False
    if (model_dir / TaskIndex.FILE).exists():
        log.info("model: the task model of the model dataset (%s), continued on the hidden tasks", model_dir)
        return True
    return False


def _resolve_model(
    model: str | None, paths: KagglePaths, env: Mapping[str, str]
) -> tuple[Path, Path | None, Path | None]:
    """(model dir, adapters dir or None, the dataset's pipeline config or None), checked."""
    from arcsub.lm.models import check_model_dir

    explicit = model or _env("ARCSUB_MODEL_DIR", env)
    if explicit:
        log.info("model %s (given)", explicit)
        return check_model_dir(explicit), None, None
    ds = find_model_dataset(paths)
    full = _env("ARCSUB_VERIFY_SHA256", env) == "1"
    adapters = ds.adapters_dir
    moved: dict[str, Path] = {}
    if adapters is not None and not adapters.is_dir():
        adapters = unpack_folder(adapters, paths.working / "arcsub-adapters")
        moved[ds.manifest["adapters_dir"]] = adapters
    n = verify_dataset_files(ds.root, ds.manifest, full=full, moved=moved)
    model_dir = check_model_dir(ds.model_dir)
    log.info(
        "model dataset %s: %d files verified (%s), model %s, settings %s",
        ds.root,
        n,
        "sha256" if full else "sizes",
        ds.manifest.get("name", model_dir.name),
        ds.manifest.get("settings", {}),
    )
    config = ds.pipeline_config if ds.pipeline_config is not None and ds.pipeline_config.is_file() else None
    return model_dir, adapters, config


def cli(argv: Sequence[str] | None = None) -> int:
    """`python -m arcsub.kaggle`: main() with one-line errors (exit 2) instead of tracebacks."""
    try:
        summary = main(sys.argv[1:] if argv is None else argv)
    except (ArcDataError, OSError) as e:
        print(f"arcsub.kaggle: error: {e}", file=sys.stderr)
        return 2
    return 1 if "error" in summary else 0
