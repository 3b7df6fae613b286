"""Decoding batches that fit the GPU: a token budget sized from the memory this process may use, and an
out-of-memory backoff that halves a batch instead of losing the run.

Why: a fixed budget of 1 << 20 tokens fits an H200 but not Kaggle's cards. On an emulated T4 (15 GB) and L4
(22 GB) the task pipeline trained, then prediction died with a CUDA out-of-memory and no predictions
(docs/kaggle.md). The budget now follows the memory (`tokens_that_fit`, with the model's bytes per token from
its family), and `halving_on_oom` turns a wrong estimate into time instead of a lost run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from arcsub.core.device import memory_cap_gb

if TYPE_CHECKING:
    import torch

log = logging.getLogger("arcsub.core.memory")

BATCH_TOKENS_CEILING = 1 << 20  # the budget measured on an H200; more only lengthens the slowest batch
SAFETY = 0.6  # share of the free memory a batch may plan for: allocator fragmentation, estimate errors
GB = 2**30

T = TypeVar("T")
_warned: set[str] = set()


def host_available_bytes(meminfo: str = "/proc/meminfo") -> int | None:
    """The host's MemAvailable (Linux): what a CPU run may still allocate without swapping; None where the
    file is missing or has no such line."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def usable_memory(device: torch.device | str) -> int | None:
    """Bytes this process may still allocate on `device`: its total memory (or the ARCSUB_GPU_MEMORY_GB cap)
    less what PyTorch has allocated, and no more than the device has free. On a CPU the host's available
    memory: the GPU's 1 << 20 ceiling needs ~85 GB in fp32 there, and a 24 GB machine's prediction of the
    ARC-AGI-2 evaluation set with the base model was killed by the kernel's out-of-memory killer (no
    traceback, no predictions); None where that is not known."""
    import torch

    dev = torch.device(device)
    if dev.type != "cuda":
        return host_available_bytes()
    total = torch.cuda.get_device_properties(dev).total_memory
    cap = memory_cap_gb()
    limit = min(total, int(cap * GB)) if cap else total
    allocated, reserved = torch.cuda.memory_allocated(dev), torch.cuda.memory_reserved(dev)
    free_device = torch.cuda.mem_get_info(dev)[0] + reserved - allocated  # other processes share the GPU
    return max(0, min(limit - allocated, free_device))


def tokens_that_fit(
    memory_bytes: int | None,
    bytes_per_token: float,
    safety: float = SAFETY,
    ceiling: int = BATCH_TOKENS_CEILING,
) -> int:
    """The batch token budget for `memory_bytes` (None: no limit known, the ceiling) at `bytes_per_token`."""
    if memory_bytes is None:
        return ceiling
    return max(1, min(ceiling, int(memory_bytes * safety / bytes_per_token)))


def halving_on_oom(run: Callable[[Sequence[int]], list[T]], idx: Sequence[int], what: str) -> list[T]:
    """run(idx), or on a CUDA out-of-memory: empty the cache and run each half of idx (recursively).

    The results come back in idx's order, so the caller cannot tell a split batch from a whole one. A single
    row that does not fit re-raises. `what` names the batches in the one warning per process."""
    import torch

    try:
        return run(idx)
    except torch.cuda.OutOfMemoryError:
        if len(idx) <= 1:
            raise
    # out of the except block: the traceback's frames (and the tensors they hold) are gone before the retry
    torch.cuda.empty_cache()
    if what not in _warned:
        _warned.add(what)
        log.warning(
            "%s: CUDA out of memory at %d rows; halving the batch (once-only warning)", what, len(idx)
        )
    half = len(idx) // 2
    return halving_on_oom(run, idx[:half], what) + halving_on_oom(run, idx[half:], what)


def free_gpu_memory() -> None:
    """After a failed GPU job (e.g. an ensemble member out of memory): what its tensors held goes back to the
    GPU before the next job loads its models."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
