r"""Pruning: masks for single weights, physical surgery for whole nodes, and the iterative at-init schedules.

Unstructured (-U). ``unstructured(model, scores, sparsity)`` keeps the global top-k of the scores over all
prunable weights, with k = N − round(sparsity · N) for N prunable weights: exact to one weight. The mask
is a ``torch.nn.utils.parametrize`` re-parametrisation, weight = θ_orig ⊙ m, so ``module.weight`` is always
the effective weight and a pruned weight stays exactly 0 under any optimizer (weight decay and momentum
move θ_orig, never the product). ``sparsity`` is cumulative: calling again with a higher target prunes
further; masks only shrink. Ties break by position (earlier layer, then earlier index, is kept).
``make_permanent`` folds the masks into plain weights (do it before ``torch.save(model)``).

Structured (-S). ``structured(model, node_scores, sparsity, example_inputs)`` removes whole nodes.
Coupled channels (residual adds, concats, grouped/depthwise convs, flattens) are discovered by tracing with
torch-pruning's ``DependencyGraph``; each coupled *group* is pruned with the same indices in every member.

    group score    S_G[j] = Σ_{members l of G with a node score} s_l[idx_l(j)]   (BN-only members add 0;
                   a group none of whose layers has a score is left whole)
    selection      one global order over the units (j, G), lowest S_G[j] removed first (``scope="global"``)
                   or the same fraction from every group (``scope="layer"``, EfficientConvNets style);
                   each group keeps its best unit, so every layer keeps at least one node
    budget         "weights": 1 − W_kept / W_dense reaches ``sparsity`` (±1 %, W = prunable weights)
                   "nodes":   removed nodes / nodes reaches ``sparsity``
                   "flops":   1 − F_kept / F reaches ``sparsity``, units ranked by S_G[j] / ΔF_G[j]
                              (score per FLOP saved; F = multiply-accumulates of the prunable layers × 2)

A unit is one root channel, except next to a grouped (non-depthwise) convolution, where it is the same
within-group offset in every group (so the groups stay equal-sized). W_kept and F_kept are computed
exactly from the kept in/out channel counts of every layer, so the stopping point is exact, not estimated.

The first layer's inputs and the classifier's outputs are never removed. The result is an ordinary
``nn.Module`` (weights, biases, norm parameters and running buffers sliced); ``load_structured`` rebuilds
one from a freshly built dense model and a saved ``state_dict``.

CroPit (the paper's iterative CroP, §3). ``cropit`` prunes at init in steps with cumulative targets
s_i = p − (p − s₀)·0.5^i for i = 0..5, then p, with s₀ = 0.5 (0.25 when p ≤ 0.5; targets are capped at p),
re-scoring with ``crop`` (or ``crop_nodes``) before every step.

This module is the one place to call them from; each idea lives in its own module: `cropkit.masks` (masks),
`cropkit.dependencies` (coupled channels, traced), `cropkit.structured` (the plan and the surgery),
`cropkit.schedules` (CroPit, SynFlow).
"""
from __future__ import annotations

from cropkit.dependencies import coupled_outputs
from cropkit.masks import Mask, make_permanent, masks, unstructured
from cropkit.schedules import cropit, cropit_targets, synflow
from cropkit.structured import BUDGETS, SCOPES, StructuredPlan, load_structured, structured, structured_plan

__all__ = ["BUDGETS", "SCOPES", "Mask", "StructuredPlan", "coupled_outputs", "cropit", "cropit_targets",
           "load_structured", "make_permanent", "masks", "structured", "structured_plan", "synflow", "unstructured"]
