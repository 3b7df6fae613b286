"""The notebook at run time: which GPUs it has (and so which engine and dtype), the 12 h budget less a safety
margin, a watcher that logs tasks as their attempts land, and an alarm at the hard deadline.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from arcsub.core.data import ArcDataError, Task, read_json
from arcsub.core.device import dtype_name, forced_capability
from arcsub.kaggle.competitions import MAX_MARGIN_S, TIME_LIMIT_S
from arcsub.kaggle.paths import env_float, env_value
from arcsub.kaggle.submission import quiet_baseline

log = logging.getLogger("arcsub.kaggle")


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
        return self.count > 0 and dtype_name(self.capability) == "bf16"

    @property
    def engine(self) -> str:
        """vllm when it is installed and its LoRA kernels run here (compute capability >= 8.0), else torch."""
        return "vllm" if self.vllm and self.bf16 else "torch"

    @property
    def dtype(self) -> str:
        return dtype_name(self.capability) if self.count else "fp32"

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
    cap = forced_capability() or min(caps)  # ARCSUB_CAPABILITY: the emulated-T4 runs
    return GpuInfo(n, tuple(p.name for p in props), cap, min(p.total_memory for p in props) / 2**30, vllm)


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
        limit = env_float("ARCSUB_TIME_LIMIT", TIME_LIMIT_S, env)
        margin_raw = env_value("ARCSUB_SAFETY_MARGIN", env)
        margin = env_float("ARCSUB_SAFETY_MARGIN", 0.0, env) if margin_raw is not None else None
        t0 = env_float("ARCSUB_T0", 0.0, env) or process_start_time()
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


class DeadlineAlarm:
    """SIGALRM at the hard deadline raises BudgetExceeded in the main thread (a no-op elsewhere)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.armed = False
        self._old: Any = None

    def __enter__(self) -> DeadlineAlarm:
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
