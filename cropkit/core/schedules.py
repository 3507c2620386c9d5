"""Iterative pruning schedules: prune in steps, re-scoring the current network before each.

CroPit (the paper's iterative CroP, Rachwan et al. 2022, §3) prunes at init with cumulative targets
s_i = p − (p − s₀)·0.5^i for i = 0..5, then p, with s₀ = 0.5 (0.25 when p ≤ 0.5; targets are capped at p),
re-scoring with ``crop`` (or ``crop_nodes``) before every step. SynFlow (Tanaka et al. 2020) prunes to
1 − (1 − p)^{k/n} in n steps.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from cropkit.core import scores as S
from cropkit.core.derivatives import prepared_batches
from cropkit.core.masks import check_sparsity, pruned_layers, unstructured, unstructured_layers
from cropkit.core.structured import structured_plan


def geometric(sparsity: float, step: int, steps: int) -> float:
    """The cumulative sparsity after ``step`` of ``steps`` equal steps to ``sparsity``: 1 − (1 − p)^(step/steps),
    each step removing the same fraction of the weights that remain (SynFlow's rounds, LTR's, GateDecorators')."""
    return 1 - (1 - sparsity) ** (step / steps)


def synflow(model: nn.Module, batches, sparsity: float, iterations: int = 100) -> nn.Module:
    """SynFlow's iterative schedule (Tanaka et al. 2020): for k = 1..n re-score with `cropkit.core.scores.synflow`
    and prune to the cumulative sparsity 1 − (1 − p)^{k/n}. In place; returns the model. The network is linearised
    (absolute values, eval mode) once for all rounds and restored at the end: only the masks change in between."""
    sparsity = check_sparsity(sparsity)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1; got {iterations}")
    inputs, _ = prepared_batches(list(batches), model)[0]
    layers = pruned_layers(model)
    with S.linearised(model):  # the weights do not change between rounds, only the masks: linearise once
        for k in range(1, iterations + 1):
            unstructured_layers(layers, S.synflow_round(model, inputs.shape[1:], layers),
                                geometric(sparsity, k, iterations))
    return model


def cropit_targets(sparsity: float) -> list[float]:
    """Cumulative targets s_i = p − (p − s₀)·0.5^i for i = 0..5, then p.
    s₀ = 0.5, or 0.25 when p ≤ 0.5; targets are capped at p (so p < 0.25 prunes to p at once)."""
    p = check_sparsity(sparsity)
    start = 0.25 if p <= 0.5 else 0.5
    return [min(p, p - (p - start) * 0.5 ** i) for i in range(6)] + [p]


def cropit(model: nn.Module, batches, sparsity: float, structured: bool = False,
           example_inputs: torch.Tensor | None = None, loss_fn: Callable | None = None,
           min_fraction: float = 0.0) -> nn.Module:
    """CroPit-U (masks, ``crop``) or CroPit-S (surgery, ``crop_nodes``): prune at init through `cropit_targets`,
    re-scoring the current network before each step. Returns the pruned model (in place for CroPit-U;
    CroPit-S shrinks the same object). Structured targets are weight sparsities of the original dense model."""
    targets = cropit_targets(sparsity)
    batches = list(batches)
    if not batches:
        raise ValueError("batches is empty; pass at least one (inputs, targets) training batch")
    if not structured:
        for target in targets:
            unstructured(model, S.crop(model, batches, loss_fn), target)
        return model
    if example_inputs is None:
        raise ValueError("CroPit-S needs example_inputs (a batch the model accepts) to trace channel dependencies")
    dense = sum(m.weight.numel() for _, m in pruned_layers(model))
    for target in targets:
        # structured_plan(...).apply() is `structured`, whose name the flag argument shadows here
        model = structured_plan(model, S.crop_nodes(model, batches, loss_fn), target, example_inputs,
                                dense_weights=dense, min_fraction=min_fraction).apply()
    return model
