"""What a pruned network costs: parameters, sparsity, FLOPs, batch time, peak memory, disk, emissions — the
columns of the paper's result tables (Rachwan et al. 2022, Tables 1–4). Disk is `cropkit.core.storage`; emissions and
the hardware a number was measured on are `cropkit.core.hardware`.

Definitions:
    weight sparsity = removed-or-zero prunable weights ÷ prunable weights of the dense reference
    node sparsity   = removed nodes ÷ nodes of the dense reference (a node is an output channel of a conv or an
                      output neuron of a hidden linear layer; classifier outputs are not nodes)

Masked weights are read through ``module.weight`` (the effective weight), so unstructured and structured models
are measured the same way.
"""
from __future__ import annotations

import statistics
import time

import torch
from torch import nn

from cropkit.core.hardware import quiet_stderr
from cropkit.core.layers import classifier_name, prunable_layers
from cropkit.core.plumbing import device_of, eval_mode, plain_name

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
            if id(module) in prunable and plain_name(name) == "weight":
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


def kept_weights(model: nn.Module, reference: nn.Module) -> dict[str, tuple[int, int]]:
    """{prunable layer: (nonzero weights, the dense layer's weights)}: the per-layer picture behind weight sparsity
    (masked or removed alike; a layer the model lost counts 0 kept)."""
    kept = {name: int(torch.count_nonzero(m.weight.detach())) for name, m in prunable_layers(model)}
    return {name: (kept.get(name, 0), m.weight.numel()) for name, m in prunable_layers(reference)}


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
    For a linear layer, MACs = nnz(W) per sample, times the positions of any extra dims ((N, T, F) inputs: T).
    This is what an ideal sparse
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

def _on_cuda(device: torch.device) -> bool:
    """Whether timings and memory on ``device`` go through CUDA's clock and allocator (one predicate, so that the
    CUDA branches can be exercised on a CPU by faking it and ``torch.cuda``: tests/test_gpu_branches.py)."""
    return device.type == "cuda"


def _sync(device: torch.device) -> None:
    if _on_cuda(device):
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

    GPU: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``.
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
    if _on_cuda(device):
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
