"""arcsub.core.device: one dtype rule for every caller, checked with a faked CUDA device (no GPU here)."""

from __future__ import annotations

import pytest
import torch

from arcsub.core import device
from arcsub.core.data import ArcDataError
from arcsub.kaggle.runtime import GpuInfo
from arcsub.taskmodel.train import pick_attention


@pytest.fixture
def fake_cuda(monkeypatch):
    """A CUDA device of a chosen capability whose is_bf16_supported() says True, as a T4's does."""

    def set_capability(cap: tuple[int, int]) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: cap)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)

    monkeypatch.delenv(device.CAPABILITY_ENV, raising=False)
    return set_capability


@pytest.mark.parametrize(
    ("cap", "dtype", "ns", "attn"),
    [
        ((7, 5), torch.float16, torch.float32, "sdpa"),  # T4: bf16 is only emulated
        ((8, 0), torch.bfloat16, torch.bfloat16, "flex"),  # A100
        ((8, 9), torch.bfloat16, torch.bfloat16, "flex"),  # L4
        ((9, 0), torch.bfloat16, torch.bfloat16, "flex"),  # H100 / H200
    ],
)
def test_every_picker_follows_the_capability(fake_cuda, cap, dtype, ns, attn):
    fake_cuda(cap)
    cuda = torch.device("cuda")
    assert device.pick_dtype("auto", cuda) is dtype
    assert device.fast_matmul_dtype(cuda) is ns
    assert pick_attention("auto", cuda) == attn
    assert GpuInfo(count=2, capability=cap).dtype == {torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]


def test_cpu_is_fp32_and_explicit_names_win(fake_cuda):
    fake_cuda((9, 0))
    assert device.pick_dtype("auto", "cpu") is torch.float32
    assert device.fast_matmul_dtype(torch.device("cpu")) is torch.float32
    assert device.pick_dtype("fp16", torch.device("cuda")) is torch.float16
    assert GpuInfo().dtype == "fp32"
    with pytest.raises(ArcDataError, match="dtype='half'"):
        device.pick_dtype("half", "cpu")


def test_the_capability_switch_forces_the_t4_path(fake_cuda, monkeypatch):
    fake_cuda((9, 0))
    monkeypatch.setenv(device.CAPABILITY_ENV, "7.5")
    cuda = torch.device("cuda")
    assert device.capability(cuda) == (7, 5)
    assert device.pick_dtype("auto", cuda) is torch.float16
    assert pick_attention("auto", cuda) == "sdpa"
    assert device.capability("cpu") is None  # a CPU stays a CPU
    monkeypatch.setenv(device.CAPABILITY_ENV, "seven")
    with pytest.raises(ArcDataError, match="ARCSUB_CAPABILITY='seven'"):
        device.capability(cuda)


def test_the_memory_cap_holds_each_gpu_to_the_kaggle_card(monkeypatch):
    """ARCSUB_GPU_MEMORY_GB=15 on a faked 2-GPU host of 140 GB cards: each gets the fraction 15/140."""
    calls = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda i: type("P", (), {"total_memory": 140 * 2**30})()
    )
    monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", lambda f, i: calls.append((i, f)))
    monkeypatch.delenv(device.MEMORY_ENV, raising=False)
    assert device.apply_memory_cap() is None and calls == []
    monkeypatch.setenv(device.MEMORY_ENV, "15")
    assert device.apply_memory_cap() == 15.0
    assert calls == [(0, pytest.approx(15 / 140)), (1, pytest.approx(15 / 140))]
    monkeypatch.setenv(device.MEMORY_ENV, "-3")
    with pytest.raises(ArcDataError, match="ARCSUB_GPU_MEMORY_GB='-3'"):
        device.apply_memory_cap()
