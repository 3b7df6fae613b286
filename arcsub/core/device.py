"""The one place that picks a device and a dtype, for training, prediction, the Newton-Schulz step and the
Kaggle notebook alike.

Why one picker: `torch.cuda.is_bf16_supported()` answers True on a T4 (compute capability 7.5), where bf16 is
only emulated, so pickers that trusted it trained in slow bf16 there while the notebook chose fp16. The rule
here is the hardware's: bf16 needs bf16 tensor cores, compute capability 8.0 (Ampere) or newer.

`ARCSUB_CAPABILITY=7.5` makes every CUDA device report that capability, so the T4 path (fp16 with loss
scaling, SDPA with dense masks, the torch engine) runs on any newer GPU; `ARCSUB_GPU_MEMORY_GB=15` caps what
each process may allocate on each GPU (a T4 has 15 GB, an L4 24). The emulated-T4 and -L4 runs use both.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from arcsub.core.data import ArcDataError

if TYPE_CHECKING:
    import torch

BF16_CAPABILITY = (8, 0)
CAPABILITY_ENV = "ARCSUB_CAPABILITY"
MEMORY_ENV = "ARCSUB_GPU_MEMORY_GB"
DTYPE_NAMES = ("auto", "bf16", "fp16", "fp32")


def forced_capability(env: dict[str, str] | None = None) -> tuple[int, int] | None:
    """The capability ARCSUB_CAPABILITY forces ("7.5" -> (7, 5)), or None when it is unset."""
    value = (os.environ if env is None else env).get(CAPABILITY_ENV, "").strip()
    if not value:
        return None
    major, dot, minor = value.partition(".")
    if not (major.isdigit() and (not dot or minor.isdigit())):
        raise ArcDataError(f"{CAPABILITY_ENV}={value!r}: expected a compute capability such as 7.5 or 8.9")
    return int(major), int(minor or 0)


def memory_cap_gb(env: dict[str, str] | None = None) -> float | None:
    """The per-process GPU memory cap ARCSUB_GPU_MEMORY_GB asks for, in GB (2**30 bytes), or None."""
    value = (os.environ if env is None else env).get(MEMORY_ENV, "").strip()
    if not value:
        return None
    try:
        gb = float(value)
    except ValueError:
        gb = -1.0
    if not gb > 0:
        raise ArcDataError(f"{MEMORY_ENV}={value!r}: expected a positive number of GB such as 15 or 22")
    return gb


def apply_memory_cap() -> float | None:
    """Hold every visible GPU of this process to ARCSUB_GPU_MEMORY_GB (set_per_process_memory_fraction), so
    an out-of-memory on Kaggle's smaller cards shows here; returns the cap, None when unset or without CUDA.
    Called at the process entry points (the `arcsub` command, the notebook's main), before any allocation."""
    gb = memory_cap_gb()
    if gb is None:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    for i in range(torch.cuda.device_count()):
        total = torch.cuda.get_device_properties(i).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, gb * 2**30 / total), i)
    return gb


def capability(device: str | torch.device) -> tuple[int, int] | None:
    """Compute capability of a CUDA device (ARCSUB_CAPABILITY when set); None for a CPU."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    return forced_capability() or tuple(torch.cuda.get_device_capability(dev))


def dtype_name(cap: tuple[int, int] | None) -> str:
    """'bf16' with bf16 tensor cores, 'fp16' on older GPUs (T4), 'fp32' without a GPU (cap None)."""
    if cap is None:
        return "fp32"
    return "bf16" if cap >= BF16_CAPABILITY else "fp16"


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype of a name ('bf16', 'fp16', 'fp32'); a one-line error for anything else."""
    import torch

    table = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    if name not in table:
        raise ArcDataError(f"config: dtype={name!r} must be one of {list(DTYPE_NAMES)}")
    return table[name]


def pick_dtype(name: str, device: str | torch.device) -> torch.dtype:
    """`name` as a torch dtype, with 'auto' decided by the device's capability (see the module docstring)."""
    return torch_dtype(dtype_name(capability(device)) if name == "auto" else name)


def fast_matmul_dtype(device: str | torch.device) -> torch.dtype:
    """bf16 where bf16 tensor cores exist, else fp32: for iterations that tolerate bf16 but gain nothing from
    fp16 (Newton-Schulz in Muon would overflow in fp16)."""
    import torch

    return torch.bfloat16 if dtype_name(capability(device)) == "bf16" else torch.float32


def default_device() -> torch.device:
    """The first CUDA device when there is one, else the CPU."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def peak_gpu_memory_gb() -> dict[str, float] | None:
    """This process's peak GPU memory in GB (2**30 bytes) summed over its GPUs: `allocated` (tensors) and
    `reserved` (what the caching allocator held, the number a memory cap or a card's size limits); None
    without CUDA. Run summaries carry it so an emulated-card run shows how close it came to the card's size."""
    import torch

    if not torch.cuda.is_available():
        return None
    n = torch.cuda.device_count()
    allocated = sum(torch.cuda.max_memory_allocated(i) for i in range(n)) / 2**30
    reserved = sum(torch.cuda.max_memory_reserved(i) for i in range(n)) / 2**30
    return {"allocated": round(allocated, 2), "reserved": round(reserved, 2)}


def gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
