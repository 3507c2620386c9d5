r"""Whole nodes removed: the plan decided on the dense model, then the surgery (the -S methods).

Structured (-S). ``structured(model, node_scores, sparsity, example_inputs)`` removes whole nodes.
Coupled channels (residual adds, concats, grouped/depthwise convs, flattens) are discovered by tracing with
torch-pruning's ``DependencyGraph``; each coupled *group* is pruned with the same indices in every member.

    group score    S_G[j] = Σ_{members l of G with a node score} s_l[idx_l(j)]   (BN-only members add 0;
                   a group none of whose layers has a score is left whole)
    selection      one global order over the units (j, G), lowest S_G[j] removed first (``scope="global"``)
                   or the same fraction from every group (``scope="layer"``, EfficientConvNets style);
                   each group keeps its best unit, so every layer keeps at least one node (``min_fraction``:
                   its best ⌈min_fraction · units⌉, a per-layer floor)
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
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch import nn

from cropkit.core.dependencies import Group, LayerShape, read_group, trace
from cropkit.core.layers import classifier_name, node_layers
from cropkit.core.masks import check_choice, check_sparsity, mask_of, pruned_layers
from cropkit.core.plumbing import device_of, eval_mode

BUDGETS = ("weights", "nodes", "flops")
SCOPES = ("global", "layer")


def _check_node_scores(model: nn.Module, node_scores) -> dict[str, torch.Tensor]:
    allowed = dict(node_layers(model))
    if not isinstance(node_scores, dict) or not node_scores:
        raise ValueError("node_scores must be a non-empty dict {module name: 1-D tensor over its output nodes} "
                         f"for some of {list(allowed)}")
    unknown = [k for k in node_scores if k not in allowed]
    if unknown:
        raise ValueError(f"node_scores names {unknown}, which are not prunable non-classifier layers; "
                         f"allowed: {list(allowed)}")
    for name, value in node_scores.items():
        nodes = allowed[name].weight.shape[0]
        if tuple(value.shape) != (nodes,):
            raise ValueError(f"node_scores[{name!r}] has shape {tuple(value.shape)}; the layer has {nodes} nodes")
        if torch.isnan(value).any():
            raise ValueError(f"node_scores[{name!r}] contains NaN; every score must be a number (higher = keep)")
    return node_scores


def _totals(table: list[LayerShape], removed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weights, FLOPs, nodes removed) for each row of ``removed`` (rows × 2·layers: out/in channels removed)."""
    weights = torch.zeros(removed.shape[0], dtype=torch.float64)
    flops, nodes = torch.zeros_like(weights), torch.zeros_like(weights)
    for i, layer in enumerate(table):
        w = layer.weights(removed[:, 2 * i], removed[:, 2 * i + 1])
        weights += w
        flops += 2 * w * layer.positions
        if i < len(table) - 1:  # the classifier (last) has no nodes
            nodes += removed[:, 2 * i]
    return weights, flops, nodes


def _order(groups: list[Group], table: list[LayerShape], budget: str, scope: str,
           min_fraction: float = 0.0) -> list[tuple[int, int]]:
    """(group, unit) pairs in removal order. Each group's best unit is left out, so every layer keeps a node; with
    ``min_fraction`` > 0 its best ⌈min_fraction · units⌉ are (a per-layer floor)."""
    keys, pairs = [], []
    dense_flops = _totals(table, torch.zeros(1, 2 * len(table), dtype=torch.float64))[1]
    for gi, group in enumerate(groups):
        if scope == "layer":  # the same fraction from every group: rank within the group, as a fraction
            rank = torch.empty(len(group.units), dtype=torch.float64)
            rank[torch.sort(group.score, stable=True).indices] = torch.arange(len(group.units), dtype=torch.float64)
            key = (rank + 1) / len(group.units)
        elif budget == "flops":  # score per FLOP saved, each unit alone from the dense model
            saved = dense_flops - _totals(table, group.counts)[1]
            key = group.score / saved.clamp_min(1e-12)
        else:
            key = group.score
        floor = max(1, math.ceil(min_fraction * len(group.units) - 1e-9))
        kept = set(torch.sort(group.score, descending=True, stable=True).indices[:floor].tolist())
        for u in range(len(group.units)):
            if u not in kept:
                keys.append(float(key[u]))
                pairs.append((gi, u))
    order = torch.sort(torch.tensor(keys, dtype=torch.float64), stable=True).indices
    return [pairs[i] for i in order.tolist()]


@dataclass
class StructuredPlan:
    """Which output channels a structured prune removes, decided on the dense model, before any surgery.

    ``removed`` maps every module whose outputs shrink (prunable layers *and* norm layers) to the sorted
    dense indices of its removed output channels. ``weight_sparsity``, ``node_sparsity`` and
    ``flops_reduction`` are the exact values the pruned model will have (weights against ``dense_weights``,
    FLOPs of the prunable layers). ``apply()`` performs the surgery in place and returns the model.
    """
    model: nn.Module = field(repr=False)
    removed: dict[str, list[int]]
    budget: str
    target: float
    weight_sparsity: float
    node_sparsity: float
    flops_reduction: float
    _graph: object = field(repr=False)
    _cuts: list = field(repr=False)

    def apply(self) -> nn.Module:
        with eval_mode(self.model):
            for root, handler, idxs in self._cuts:
                self._graph.get_pruning_group(root, handler, idxs).prune()
        return self.model


def structured_plan(model: nn.Module, node_scores: dict[str, torch.Tensor], sparsity: float,
                    example_inputs: torch.Tensor, budget: str = "weights", scope: str = "global",
                    dense_weights: int | None = None, min_fraction: float = 0.0) -> StructuredPlan:
    """Decide a structured prune (see the module docstring); ``structured`` applies it.

    ``dense_weights``: prunable-weight count that the weight budget refers to (default: the model's own), so an
    already-shrunk model can be pruned further to a sparsity measured against the original dense one.
    ``min_fraction``: a per-layer floor — every coupled group keeps at least this fraction of its units (its
    best-scored), instead of one. 0 is the paper's rule: one global ranking, each layer keeping at least a node.
    """
    sparsity = check_sparsity(sparsity)
    example_inputs = _check_plan_inputs(model, node_scores, example_inputs, budget, scope)
    table, groups, graph = _scored_groups(model, node_scores, example_inputs)
    if isinstance(min_fraction, bool) or not isinstance(min_fraction, (int, float)) or not 0 <= min_fraction < 1:
        raise ValueError(f"min_fraction is the fraction of every layer's nodes kept at least, in [0, 1); got "
                         f"{min_fraction!r}")
    order = _order(groups, table, budget, scope, min_fraction)
    chosen, achieved = _choose(groups, table, order, sparsity, budget, dense_weights)
    removed, cuts = _cuts(groups, chosen)
    _warn_starved(table[:-1], removed, sparsity, budget)
    return StructuredPlan(model, removed, budget, sparsity, achieved["weights"], achieved["nodes"],
                          achieved["flops"], graph, cuts)


def _check_plan_inputs(model, node_scores, example_inputs, budget: str, scope: str) -> torch.Tensor:
    """Validate what a plan is asked for; returns ``example_inputs`` on the model's device."""
    check_choice(budget, BUDGETS, "budget")
    check_choice(scope, SCOPES, "scope")
    if any(mask_of(m) is not None for _, m in pruned_layers(model)):
        raise ValueError("the model carries unstructured masks; call cropkit.prune.make_permanent(model) first")
    _check_node_scores(model, node_scores)
    if not isinstance(example_inputs, torch.Tensor):
        raise ValueError("example_inputs must be a tensor batch the model accepts (used to trace the dependencies)")
    return example_inputs.to(device_of(model))


def _scored_groups(model: nn.Module, node_scores, example_inputs: torch.Tensor):
    """(the layer table, the coupled groups with their unit scores, torch-pruning's graph): the classifier's
    outputs are never removed, and a group with no scored member stays whole."""
    layers = pruned_layers(model)
    classifier = dict(layers)[classifier_name(model)]
    positions, graph = trace(model, example_inputs)
    names = {m: n for n, m in model.named_modules()}
    table = [LayerShape.of(name, m, positions[name]) for name, m in layers]
    slot = {layer.name: (i, layer.depthwise) for i, layer in enumerate(table)}
    groups = [g for g in (read_group(graph, grp, names, slot, node_scores)
                          for grp in graph.get_all_groups(ignored_layers=[classifier])) if g is not None]
    return table, groups, graph


def _choose(groups: list[Group], table: list[LayerShape], order: list[tuple[int, int]], sparsity: float, budget: str,
            dense_weights: int | None) -> tuple[list[tuple[int, int]], dict[str, float]]:
    """The units removed — the prefix of ``order`` closest to the target, plus the one later unit that lands
    closer still — and the exact sparsities they give."""
    width = 2 * len(table)
    steps = torch.stack([groups[gi].counts[u] for gi, u in order]) if order else torch.zeros(0, width)
    cumulative = torch.cat([torch.zeros(1, width, dtype=torch.float64), steps.double().cumsum(0)])
    weights, flops, _ = _totals(table, cumulative[:1])
    reference = float(weights[0]) if dense_weights is None else float(dense_weights)

    def measure(rows: torch.Tensor) -> dict[str, torch.Tensor]:
        w, f, n = _totals(table, rows)
        return {"weights": 1 - w / reference, "nodes": n / sum(layer.out for layer in table[:-1]),
                "flops": 1 - f / flops[0]}

    k = _closest(measure(cumulative)[budget], sparsity, budget)
    chosen, final = order[:k], cumulative[k]
    if k < len(order):  # fill: the one later unit that, added to the prefix, lands closest to the target
        trial = measure(cumulative[k] + steps[k:])[budget]
        j = int(torch.argmin((trial - sparsity).abs()))
        if abs(float(trial[j]) - sparsity) < abs(float(measure(final[None])[budget][0]) - sparsity):
            chosen, final = chosen + [order[k + j]], cumulative[k] + steps[k + j]
    return chosen, {key: float(v[0]) for key, v in measure(final[None]).items()}


def _cuts(groups: list[Group], chosen: list[tuple[int, int]]) -> tuple[dict[str, list[int]], list]:
    """({module: removed dense output indices}, [(root, handler, root indices)] for torch-pruning's surgery)."""
    removed_units: dict[int, list[int]] = {}
    for gi, u in chosen:
        removed_units.setdefault(gi, []).append(u)
    removed, cuts = {}, []
    for gi, units in sorted(removed_units.items()):
        group = groups[gi]
        roots = torch.cat([group.units[u] for u in units]).sort().values
        cuts.append((group.root, group.handler, roots.tolist()))
        for name, idx, root_idx in group.outputs:
            hit = idx[torch.isin(root_idx, roots)].tolist()
            removed[name] = sorted(set(removed.get(name, [])) | set(hit))
    return removed, cuts


STARVED = 2  # a layer left with this many nodes or fewer (of more) is starved: the network hangs on a thread


def _warn_starved(node_layers: list[LayerShape], removed: dict[str, list[int]], sparsity: float,
                  budget: str) -> None:
    """Warn when a layer keeps at most `STARVED` of its nodes (layer starvation; one node: layer collapse)."""
    kept = {layer.name: layer.out - len(removed.get(layer.name, ())) for layer in node_layers
            if layer.out > STARVED}
    starved = {name: k for name, k in kept.items() if k <= STARVED}
    if starved:
        single = [name for name, k in starved.items() if k == 1]
        warnings.warn(f"structured pruning to {sparsity} {budget} sparsity leaves {len(starved)} layer(s) with at "
                      f"most {STARVED} nodes: {starved} (layer starvation"
                      + (f"; a single node: {single}" if single else "") + "; see the scores of these layers, or "
                      "keep a share of every layer with layer_floor)", stacklevel=4)


def _closest(achieved: torch.Tensor, target: float, budget: str) -> int:
    """Number of removal steps whose result is closest to the target (the first reaching it, or the one before)."""
    reached = torch.nonzero(achieved >= target - 1e-12).flatten()
    if reached.numel() == 0:
        warnings.warn(f"structured pruning reaches at most {float(achieved.max()):.4f} {budget} sparsity "
                      f"(every layer keeps a node); asked for {target}", stacklevel=4)
        return int(torch.argmax(achieved))
    k = int(reached[0])
    if k > 0 and abs(float(achieved[k - 1]) - target) < abs(float(achieved[k]) - target):
        return k - 1
    return k


def structured(model: nn.Module, node_scores: dict[str, torch.Tensor], sparsity: float,
               example_inputs: torch.Tensor, budget: str = "weights", scope: str = "global",
               dense_weights: int | None = None, min_fraction: float = 0.0) -> nn.Module:
    """Remove whole nodes until the budget's sparsity is reached; returns the physically smaller model (the same
    object, changed in place). Arguments as in `structured_plan`; ``budget`` ∈ BUDGETS, ``scope`` ∈ SCOPES."""
    return structured_plan(model, node_scores, sparsity, example_inputs, budget, scope, dense_weights,
                           min_fraction).apply()


# ----------------------------------------------------------------------------- reloading a shrunk model

def sync_shape_attributes(module: nn.Module, depthwise: bool) -> None:
    """Make a layer's size attributes agree with its (replaced) tensors."""
    if isinstance(module, nn.modules.conv._ConvNd):
        module.out_channels = module.weight.shape[0]
        if depthwise:
            module.groups = module.out_channels
        module.in_channels = module.weight.shape[1] * module.groups
    elif isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, nn.modules.batchnorm._NormBase):
        module.num_features = (module.weight if module.affine else module.running_mean).shape[0]
    elif isinstance(module, nn.GroupNorm):
        module.num_channels = module.weight.shape[0]
    elif isinstance(module, nn.LayerNorm):
        module.normalized_shape = tuple(module.weight.shape)


def load_structured(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """Load the ``state_dict`` of a structurally pruned model into a freshly built *dense* model of the same
    architecture: every tensor whose shape differs is resized first. Returns the (now smaller) model.

        torch.save(small.state_dict(), "small.pt")
        small = load_structured(ck.models.build("resnet18", ...), torch.load("small.pt"))
    """
    modules = dict(model.named_modules())
    depthwise = {m: isinstance(m, nn.modules.conv._ConvNd) and m.groups > 1 and m.groups == m.in_channels
                 == m.out_channels for m in modules.values()}
    touched = set()
    for key, value in state_dict.items():
        owner, _, attr = key.rpartition(".")
        module = modules.get(owner)
        current = getattr(module, attr, None) if module is not None else None
        if not isinstance(current, torch.Tensor) or current.shape == value.shape:
            continue
        fresh = torch.empty(value.shape, dtype=current.dtype, device=current.device)
        setattr(module, attr, nn.Parameter(fresh, current.requires_grad) if isinstance(current, nn.Parameter)
                else fresh)
        touched.add(module)
    for module in touched:
        sync_shape_attributes(module, depthwise[module])
    model.load_state_dict(state_dict)
    return model
