r"""Pruning, in one place to call it from: masks for single weights, physical surgery for whole nodes, and the
iterative at-init schedules. Each idea lives in a module of its own, whose docstring holds its definitions:

    unstructured(model, scores, sparsity)            `cropkit.core.masks`: the global top-k of the scores is kept,
    exact to
                                                     one weight; a mask is a parametrisation weight = θ_orig ⊙ m
    make_permanent(model), masks(model)              `cropkit.core.masks`
    structured(model, node_scores, sparsity, x)      `cropkit.core.structured`: whole nodes removed, coupled channels
    structured_plan(...), load_structured(...)       (residual adds, concats, grouped convs) cut together, budget
                                                     "weights", "nodes" or "flops", scope "global" or "layer"
    coupled_outputs(model, x)                        `cropkit.core.dependencies`: the groups, traced with torch-pruning
    cropit(model, batches, sparsity, structured)     `cropkit.core.schedules`: CroPit (the paper's iterative CroP, §3):
    cropit_targets(sparsity), synflow(...)           steps with cumulative targets, re-scoring before each

``sparsity`` is always the fraction of prunable weights removed (cumulative: pruning again to a higher target
prunes further).
"""
from __future__ import annotations

from cropkit.core.dependencies import coupled_outputs
from cropkit.core.masks import Mask, make_permanent, masks, unstructured
from cropkit.core.schedules import cropit, cropit_targets, synflow
from cropkit.core.structured import BUDGETS, SCOPES, StructuredPlan, load_structured, structured, structured_plan

__all__ = ["BUDGETS", "SCOPES", "Mask", "StructuredPlan", "coupled_outputs", "cropit", "cropit_targets",
           "load_structured", "make_permanent", "masks", "structured", "structured_plan", "synflow", "unstructured"]
