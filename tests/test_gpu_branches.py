"""The CUDA-only branches, exercised on a CPU with recording fakes of ``torch.cuda`` (issue 13).

No GPU run of cropkit has ever been made. What can be checked without one is that each CUDA branch is taken when the
device says CUDA, calls the CUDA functions it should, with the device, in the right order, and reports the numbers
they return. The branch decisions are ``cropkit.core.measure._on_cuda(device)`` (batch time, inference time, peak
memory),
``device.type == "cuda"`` on a ``torch.device("cuda")`` that can be built without a GPU (device names), and
``torch.cuda.is_available()`` / ``device_count()`` (device choice); the tests fake those and run on CPU tensors.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import cropkit as ck
from cropkit.core import hardware, measure
from cropkit.training import loop as train


@pytest.fixture
def cuda_calls(monkeypatch):
    """Fakes of the torch.cuda functions cropkit calls; every call is appended to the returned list, in order,
    next to the training steps and forward passes of the measurement (so that their order can be checked)."""
    calls = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append(("synchronize", device)))
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats",
                        lambda device=None: calls.append(("reset_peak_memory_stats", device)))

    def max_memory_allocated(device=None):
        calls.append(("max_memory_allocated", device))
        return 123_456_789

    monkeypatch.setattr(torch.cuda, "max_memory_allocated", max_memory_allocated)
    step = measure._training_step

    def training_step(*args):
        calls.append(("step", None))
        return step(*args)

    monkeypatch.setattr(measure, "_training_step", training_step)
    return calls


@pytest.fixture
def on_cuda(monkeypatch):
    """Make cropkit.measure treat the CPU device as a CUDA one."""
    seen = []
    monkeypatch.setattr(measure, "_on_cuda", lambda device: seen.append(device) or True)
    return seen


def _tiny():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(12, 5)), torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 2, 3])


def test_batch_time_synchronises_before_and_after_every_step(cuda_calls, on_cuda):
    model, x, y = _tiny()
    assert measure.batch_time(model, x, y, warmup=2, repeats=3) > 0
    cpu = torch.device("cpu")
    assert cuda_calls == [("synchronize", cpu), ("step", None), ("synchronize", cpu)] * 5
    assert on_cuda and all(d == cpu for d in on_cuda)


def test_inference_time_synchronises_around_every_forward(cuda_calls, on_cuda):
    model, x, _ = _tiny()
    assert measure.inference_time(model, x, warmup=1, repeats=2) > 0
    assert cuda_calls == [("synchronize", torch.device("cpu"))] * 6


def test_cpu_timings_never_touch_cuda(cuda_calls):
    model, x, y = _tiny()
    measure.batch_time(model, x, y, warmup=1, repeats=1)
    measure.inference_time(model, x, warmup=1, repeats=1)
    assert [name for name, _ in cuda_calls] == ["step", "step"]


def test_peak_memory_on_cuda_is_max_memory_allocated_after_a_reset(cuda_calls, on_cuda, monkeypatch):
    model, x, y = _tiny()

    def no_profiler(*args, **kwargs):
        raise AssertionError("the CUDA branch must not profile the CPU allocator")

    monkeypatch.setattr(torch.profiler, "profile", no_profiler)
    result = measure.peak_memory(model, x, y)
    assert result == {"bytes": 123_456_789, "method": "torch.cuda.max_memory_allocated"}
    cpu = torch.device("cpu")
    # warm-up step (gradients and Adam state exist), then the measured step between a reset and the read-out
    assert cuda_calls == [("step", None), ("synchronize", cpu), ("reset_peak_memory_stats", cpu), ("step", None),
                          ("synchronize", cpu), ("max_memory_allocated", cpu)]


def test_peak_memory_on_cpu_does_not_ask_cuda(cuda_calls):
    model, x, y = _tiny()
    result = measure.peak_memory(model, x, y)
    assert result["method"].startswith("persistent state") and result["bytes"] > 0
    assert [name for name, _ in cuda_calls] == ["step", "step"]


def test_gpu_device_name_and_hardware_line(monkeypatch):
    asked = []
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: asked.append(device) or "NVIDIA H100")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert hardware.device_name("cuda:1") == "NVIDIA H100" and asked == [torch.device("cuda:1")]
    assert ck.hardware.describe() == f"GPU NVIDIA H100 · torch {torch.__version__}"
    assert asked[-1] == torch.device("cuda")
    asked.clear()
    assert hardware.device_name("cpu") and not asked  # the CPU's name comes from /proc/cpuinfo, not CUDA


def test_default_and_resolved_devices_with_two_fake_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert train.default_device() == torch.device("cuda") and train.resolve_device(None) == torch.device("cuda")
    assert train.resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(ValueError, match=r"'cuda:2' does not exist; available here: \['cpu', 'cuda', 'cuda:0', "
                                         r"'cuda:1'"):
        train.resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert train.default_device() == torch.device("cpu")
    with pytest.raises(ValueError, match=r"'cuda' is not available on this machine; available here: \['cpu'"):
        train.resolve_device("cuda")
