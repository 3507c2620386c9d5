"""What a pruned network costs: parameters, sparsity, FLOPs, batch time, peak memory, disk, emissions (SPEC §5).

Definitions (SPEC §1):
    weight sparsity = removed-or-zero prunable weights ÷ prunable weights of the dense reference
    node sparsity   = removed nodes ÷ nodes of the dense reference (a node is an output channel of a conv or an
                      output neuron of a hidden linear layer; classifier outputs are not nodes)

Masked weights are read through ``module.weight`` (the effective weight), so unstructured and structured models
are measured the same way.
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import statistics
import tempfile
import time

import torch
from torch import nn

from .models import classifier_name, prunable_layers
from .plumbing import device_of, eval_mode


# ----------------------------------------------------------------------------- counts and sparsity

def param_count(model: nn.Module) -> int:
    """Trainable parameters stored by the model (masked entries of unstructured models included)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def nonzero_param_count(model: nn.Module) -> int:
    """Parameters that are not zero: prunable weights read through their masks, everything else as stored."""
    from torch.nn.utils import parametrize

    prunable = {id(m) for _, m in prunable_layers(model)}
    total = 0
    for module in model.modules():
        if isinstance(module, parametrize.ParametrizationList):
            continue  # θ_orig of a masked weight (torch parametrize): counted below, through its mask
        for name, p in module.named_parameters(recurse=False):
            if id(module) in prunable and name in ("weight", "weight_orig"):
                continue
            total += p.numel()
    return total + sum(int(torch.count_nonzero(m.weight)) for _, m in prunable_layers(model))


def prunable_count(model: nn.Module) -> int:
    """Number of prunable weights (the ``weight`` tensors of Conv1d/Conv2d/Linear)."""
    return sum(m.weight.numel() for _, m in prunable_layers(model))


def weight_sparsity(model: nn.Module, reference: nn.Module | None = None) -> float:
    """Removed-or-zero prunable weights ÷ prunable weights of ``reference`` (default: ``model`` itself)."""
    reference = model if reference is None else reference
    dense = prunable_count(reference)
    if dense == 0:
        raise ValueError("the reference model has no prunable weights")
    kept = sum(int(torch.count_nonzero(m.weight.detach())) for _, m in prunable_layers(model))
    return 1.0 - kept / dense


def node_counts(model: nn.Module) -> dict[str, int]:
    """{layer name: number of output nodes} for every prunable layer but the classifier."""
    head = classifier_name(model)
    return {name: m.weight.shape[0] for name, m in prunable_layers(model) if name != head}


def node_sparsity(model: nn.Module, reference: nn.Module) -> float:
    """Removed nodes ÷ nodes of ``reference`` (0 for unstructured pruning, which keeps every node)."""
    dense, pruned = node_counts(reference), node_counts(model)
    total = sum(dense.values())
    if total == 0:
        raise ValueError("the reference model has no nodes (only a classifier)")
    return 1.0 - sum(pruned.get(name, 0) for name in dense) / total


def kept_nodes(model: nn.Module, reference: nn.Module) -> dict[str, tuple[int, int]]:
    """{layer: (kept nodes, dense nodes)}: the per-layer picture behind node sparsity."""
    dense, pruned = node_counts(reference), node_counts(model)
    return {name: (pruned.get(name, 0), n) for name, n in dense.items()}


# ----------------------------------------------------------------------------- FLOPs

def _as_tuple(example_inputs):
    return example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)


def flops(model: nn.Module, example_inputs) -> float:
    """FLOPs of one forward pass per sample, counted by ``torch.utils.flop_counter.FlopCounterMode``.

    FlopCounterMode counts 2 FLOPs per multiply-accumulate of matmuls and convolutions (not activations or norms).
    Masked weights still count: unstructured pruning does not change the dense FLOPs.
    """
    from torch.utils.flop_counter import FlopCounterMode

    inputs = _as_tuple(example_inputs)
    with eval_mode(model), torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*inputs)
    return counter.get_total_flops() / inputs[0].shape[0]


def nonzero_macs(model: nn.Module, example_inputs) -> float:
    """Multiply-accumulates per sample that involve a nonzero weight of a prunable layer.

    For a conv, every output position uses each nonzero weight once: MACs = nnz(W) × output positions.
    For a linear layer, MACs = nnz(W) per sample, times the positions of any extra dims ((N, T, F) inputs: T). This is what an ideal sparse
    kernel would execute; dense hardware still runs :func:`flops`.
    """
    inputs = _as_tuple(example_inputs)
    total = 0.0
    handles = []

    def hook(module, args, output):
        nonlocal total
        # output positions per sample: H·W for a 2-D conv, the extra leading dims (e.g. tokens) for a Linear
        positions = output.numel() // (output.shape[0] * module.weight.shape[0])
        total += int(torch.count_nonzero(module.weight)) * positions

    for _, m in prunable_layers(model):
        handles.append(m.register_forward_hook(hook))
    try:
        with eval_mode(model), torch.no_grad():
            model(inputs[0][:1], *inputs[1:])  # one sample: the hook counts per sample
    finally:
        for h in handles:
            h.remove()
    return total


# ----------------------------------------------------------------------------- time and memory

@contextlib.contextmanager
def quiet_stderr():
    """Silence C++-level chatter on file descriptor 2 (the profiler's start/stop lines) for the block."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _training_step(model, optimizer, x, y, loss_fn):
    optimizer.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()
    optimizer.step()


def batch_time(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, warmup: int = 3, repeats: int = 10,
               loss_fn=None, lr: float = 2e-3) -> float:
    """Median milliseconds of a full training step (forward, backward, Adam step) after ``warmup`` steps.

    Runs on a deep copy so the caller's model and optimizer are untouched. CUDA is synchronised around each step.
    """
    import copy

    model = copy.deepcopy(model).train()
    device = device_of(model)
    x, y = inputs.to(device), targets.to(device)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    times = []
    for i in range(warmup + repeats):
        _sync(device)
        start = time.perf_counter()
        _training_step(model, optimizer, x, y, loss_fn)
        _sync(device)
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def inference_time(model: nn.Module, inputs: torch.Tensor, *, warmup: int = 3, repeats: int = 10) -> float:
    """Median milliseconds of one eval-mode forward pass without gradients."""
    device = device_of(model)
    x = inputs.to(device)
    times = []
    with eval_mode(model), torch.no_grad():
        for i in range(warmup + repeats):
            _sync(device)
            start = time.perf_counter()
            model(x)
            _sync(device)
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def _state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    tensors = list(model.parameters()) + list(model.buffers())
    tensors += [p.grad for p in model.parameters() if p.grad is not None]
    tensors += [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    return sum(t.numel() * t.element_size() for t in tensors)


def peak_memory(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor, *, loss_fn=None) -> dict:
    """Peak memory (bytes) of one training step of ``model`` with Adam, after a warm-up step.

    GPU: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` (SPEC §5).
    CPU: the persistent state (parameters, buffers, Adam moments) plus the peak of the memory that the step itself
    allocates (activations, temporaries and the new gradients), read from the PyTorch profiler's raw allocation
    records (``profile_memory=True``, ``kineto_results``): each is an allocation (+) or a free (−) by the CPU
    allocator, so the running sum's maximum is the step's peak. (The FunctionEvents of ``prof.events()`` attach
    most records to their ops and keep only a few standalone "[memory]" events, so they cannot give a peak.)
    The step starts with ``zero_grad(set_to_none=True)``, whose frees of the previous gradients the profiler
    cannot size, so gradients are counted once, inside the step. Process RSS is not used: it never shrinks and
    counts the allocator's cache. Returns ``{"bytes": ..., "method": ...}``.
    """
    import copy

    model = copy.deepcopy(model).train()
    device = device_of(model)
    x, y = inputs.to(device), targets.to(device)
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    _training_step(model, optimizer, x, y, loss_fn)  # warm-up: gradients and Adam state now exist
    if device.type == "cuda":
        _sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        _training_step(model, optimizer, x, y, loss_fn)
        _sync(device)
        return {"bytes": int(torch.cuda.max_memory_allocated(device)), "method": "torch.cuda.max_memory_allocated"}
    persistent = _state_bytes(model, optimizer) - sum(p.grad.numel() * p.grad.element_size()
                                                      for p in model.parameters() if p.grad is not None)
    from torch.profiler import ProfilerActivity, profile

    with quiet_stderr(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        _training_step(model, optimizer, x, y, loss_fn)
    records = sorted((e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
                     key=lambda e: e.start_ns())
    running, step_peak = 0, 0
    for e in records:
        running += e.nbytes()
        step_peak = max(step_peak, running)
    return {"bytes": int(persistent + step_peak), "method": "persistent state + profiler allocation peak (CPU)"}


# ----------------------------------------------------------------------------- disk

SPARSE_SHAPES = "__cropkit_sparse_shapes__"  # entry of a saved state: {weight key: its dense shape}


def _csr(w: torch.Tensor) -> torch.Tensor:
    """``w`` viewed as (out, rest) in CSR with int32 indices: nnz values, nnz column indices, out + 1 row pointers."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "sparse CSR support is in beta"
        csr = w.reshape(w.shape[0], -1).to_sparse_csr()
        return torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(), csr.values(), csr.shape)


def _state_for_disk(model: nn.Module) -> dict:
    """state_dict with masked weights folded in; a prunable weight is stored as CSR with int32 indices (of its
    (out, rest) view) when that is smaller than dense, its dense shape under ``SPARSE_SHAPES``."""
    state, shapes = {}, {}
    for key, value in model.state_dict().items():
        if key.endswith(("weight_orig", "weight_mask")) or ".parametrizations." in key:
            continue
        state[key] = value
    for name, m in prunable_layers(model):
        w = m.weight.detach()
        key = f"{name}.weight" if name else "weight"
        nnz = int(torch.count_nonzero(w))
        csr_bytes = nnz * (w.element_size() + 4) + (w.shape[0] + 1) * 4
        if csr_bytes < w.numel() * w.element_size():
            state[key], shapes[key] = _csr(w), tuple(w.shape)
        else:
            state[key] = w.clone()
    if shapes:
        state[SPARSE_SHAPES] = shapes
    return state


def dense_state(state: dict) -> dict:
    """The ordinary state_dict of a state saved by :func:`save` (CSR weights back to dense tensors)."""
    shapes = state.get(SPARSE_SHAPES, {})
    return {k: v.to_dense().reshape(shapes[k]) if k in shapes else v for k, v in state.items() if k != SPARSE_SHAPES}


def save(model: nn.Module, f) -> None:
    """``torch.save`` of the model's weights, masked (unstructured) weights as CSR with int32 indices.
    Reload with ``model.load_state_dict(dense_state(torch.load(f)))``."""
    torch.save(_state_for_disk(model), f)


def disk_size(model: nn.Module) -> int:
    """Bytes of :func:`save`: masked (unstructured) weights stored as CSR with int32 indices."""
    buffer = io.BytesIO()
    save(model, buffer)
    return buffer.getbuffer().nbytes


def sparse_bits(model: nn.Module, value_bits: int = 32) -> dict:
    """An information estimate of the storage of a sparse model, independent of any file format:
    each nonzero prunable weight costs ``value_bits`` plus a column index of ⌈log₂ row length⌉ bits (CSR of its
    (out, rest) view; row pointers are negligible and left out), every other parameter ``value_bits``.
    Returns ``{"bits": total, "bits_per_nonzero": value + mean index bits over the nonzero weights}``."""
    index, nnz_total = 0.0, 0
    for _, m in prunable_layers(model):
        w = m.weight.detach()
        nnz = int(torch.count_nonzero(w))
        row = max(2, w[0].numel())
        index += nnz * math.ceil(math.log2(row))
        nnz_total += nnz
    others = nonzero_param_count(model) - nnz_total  # biases, norm parameters: every entry counts
    bits = nnz_total * value_bits + index + others * value_bits
    return {"bits": bits, "bits_per_nonzero": value_bits + (index / nnz_total if nnz_total else 0.0)}


# ----------------------------------------------------------------------------- emissions

class Emissions(contextlib.AbstractContextManager):
    """g CO₂eq of the enclosed block, from codecarbon's offline tracker (no network, quiet).

    On a CPU-only machine codecarbon estimates power from the CPU's TDP (or a default) rather than reading a
    meter: treat the number as an estimate. ``.grams`` holds the result after the block (``nan`` if codecarbon
    could not run, with the reason in ``.error``).
    """

    def __init__(self, country_iso_code: str = "USA", enabled: bool = True):
        self.country_iso_code, self.enabled = country_iso_code, enabled
        self.grams, self.error, self._tracker = float("nan"), None, None

    def __enter__(self):
        if not self.enabled:
            self.error = "disabled"
            return self
        try:
            from codecarbon import OfflineEmissionsTracker

            logging.getLogger("codecarbon").setLevel(logging.ERROR)  # after import: codecarbon sets its own level

            self._dir = tempfile.mkdtemp(prefix="cropkit-codecarbon-")
            self._tracker = OfflineEmissionsTracker(country_iso_code=self.country_iso_code, log_level="error",
                                                    save_to_file=False, output_dir=self._dir,
                                                    measure_power_secs=15, tracking_mode="process")
            with quiet_stderr():
                self._tracker.start()
        except Exception as err:  # codecarbon is an estimate; never let it break a run
            self.error, self._tracker = f"{type(err).__name__}: {err}", None
        return self

    def __exit__(self, *exc):
        if self._tracker is not None:
            try:
                with quiet_stderr():
                    kg = self._tracker.stop()
                self.grams = float(kg) * 1000.0 if kg is not None else float("nan")
            except Exception as err:
                self.error = f"{type(err).__name__}: {err}"
        return False


def device_name(device: str | torch.device = "cpu") -> str:
    """The model of the processor behind ``device``: the GPU's name, or the CPU's from ``/proc/cpuinfo``."""
    import platform

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type != "cpu":
        return device.type
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return cpu


def hardware() -> str:
    """A one-line description of where numbers were measured (timings always say where they ran)."""
    if torch.cuda.is_available():
        return f"GPU {device_name('cuda')} · torch {torch.__version__}"
    return f"CPU {device_name('cpu')} · {torch.get_num_threads()} threads · torch {torch.__version__}"
