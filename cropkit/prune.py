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

CroPit (SPEC §4). ``cropit`` prunes at init in steps with cumulative targets
s_i = p − (p − s₀)·0.5^i for i = 0..5, then p, with s₀ = 0.5 (0.25 when p ≤ 0.5; targets are capped at p),
re-scoring with ``crop`` (or ``crop_nodes``) before every step.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from cropkit import scores as S
from cropkit.models import classifier_name, require_prunable
from cropkit.plumbing import device_of, eval_mode

BUDGETS = ("weights", "nodes", "flops")
SCOPES = ("global", "layer")


# ----------------------------------------------------------------------------- validation

def _check_sparsity(sparsity) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise ValueError(f"sparsity is the fraction of weights removed and must be a number in [0, 1); "
                         f"got {sparsity!r}")
    return float(sparsity)


def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return require_prunable(model, "pruning")


def _choice(value, allowed, what) -> str:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; choose one of {list(allowed)}")
    return value


# ----------------------------------------------------------------------------- unstructured masks

class Mask(nn.Module):
    """Parametrisation weight = θ_orig ⊙ m with a boolean buffer m (True = kept)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.bool())

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.mask


def _mask_module(module: nn.Module) -> Mask | None:
    if parametrize.is_parametrized(module, "weight"):
        for p in module.parametrizations.weight:
            if isinstance(p, Mask):
                return p
    return None


def masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """{"<module>.weight": boolean mask (True = kept)} for every prunable layer (all True where unmasked)."""
    out = {}
    for name, module in _layers(model):
        mask = _mask_module(module)
        out[f"{name}.weight"] = mask.mask.clone() if mask is not None else \
            torch.ones(module.weight.shape, dtype=torch.bool, device=module.weight.device)
    return out


def _set_mask(module: nn.Module, mask: torch.Tensor) -> None:
    existing = _mask_module(module)
    if existing is not None:
        existing.mask.copy_(mask)
    else:  # the Parameter object itself moves to parametrizations.weight.original, so optimizers keep working
        parametrize.register_parametrization(module, "weight", Mask(mask))


def _global_keep(ranked: torch.Tensor, sizes: list[int], n_keep: int) -> tuple[torch.Tensor, list[int]]:
    """Boolean keep-vector of the top ``n_keep`` of ``ranked`` (flat, −inf = already pruned), where each segment
    of ``sizes`` first reserves its own best entry. Returns it and the segments that needed the reserve."""
    order = torch.sort(ranked, descending=True, stable=True).indices  # stable: ties keep the earlier position
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel(), device=order.device)
    reserved = torch.zeros_like(ranked, dtype=torch.bool)
    emptied, start = [], 0
    for i, size in enumerate(sizes):
        best = start + int(torch.argmax(ranked[start:start + size]))  # argmax returns the first of equal maxima
        reserved[best] = True
        if rank[best] >= n_keep:
            emptied.append(i)
        start += size
    rest = order[~reserved[order]]
    keep = reserved.clone()
    keep[rest[:max(n_keep - int(reserved.sum()), 0)]] = True
    return keep & (ranked > -math.inf) | reserved, emptied


def unstructured(model: nn.Module, scores: dict[str, torch.Tensor], sparsity: float) -> nn.Module:
    """Mask the lowest-scoring prunable weights, globally, in place, so that exactly round(sparsity · N) of the
    N prunable weights are zero (or as close as masks-only-shrink and one-weight-per-layer allow).

    ``sparsity`` is the cumulative target; already-pruned weights stay pruned whatever their new score.
    A layer that would lose every weight keeps its highest-scoring one (with a warning), and the count
    stays exact by taking that weight out of the global budget. Returns the model.
    """
    sparsity = _check_sparsity(sparsity)
    layers = _layers(model)
    keys = [f"{name}.weight" for name, _ in layers]
    missing = [k for k in keys if k not in scores]
    if missing:
        raise ValueError(f"scores lack {missing}; they must hold one tensor per prunable weight: {keys}")
    old = masks(model)
    device = torch.device("cpu")  # rank on the CPU: float64 and stable sorting work there on every setup
    flat = []
    for (name, module), key in zip(layers, keys):
        if tuple(scores[key].shape) != tuple(module.weight.shape):
            raise ValueError(f"scores[{key!r}] has shape {tuple(scores[key].shape)}; the weight has "
                             f"{tuple(module.weight.shape)}")
        flat.append(scores[key].detach().to(device, torch.float64).flatten())
    ranked = torch.cat(flat)
    if torch.isnan(ranked).any():
        raise ValueError("scores contain NaN; every score must be a number (higher = keep)")
    alive = torch.cat([old[k].flatten().cpu() for k in keys])
    ranked = ranked.masked_fill(~alive, -math.inf)  # masks only shrink
    n_keep = ranked.numel() - round(sparsity * ranked.numel())
    sizes = [m.weight.numel() for _, m in layers]
    keep, emptied = _global_keep(ranked, sizes, n_keep)
    for i in emptied:
        warnings.warn(f"layer {layers[i][0]!r} would lose every weight at sparsity {sparsity}; "
                      f"keeping its highest-scoring weight", stacklevel=2)
    for (name, module), piece in zip(layers, torch.split(keep, sizes)):
        _set_mask(module, piece.view(module.weight.shape).to(module.weight.device))
    return model


def make_permanent(model: nn.Module) -> nn.Module:
    """Replace every masked weight by a plain Parameter holding θ_orig ⊙ m (zeros stay), removing the
    re-parametrisation, so that ``torch.save(model)`` works. Build a new optimizer afterwards. Returns the model."""
    for _, module in _layers(model):
        if _mask_module(module) is not None:
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def synflow(model: nn.Module, batches, sparsity: float, iterations: int = 100) -> nn.Module:
    """SynFlow's iterative schedule (Tanaka et al. 2020): for k = 1..n re-score with `cropkit.scores.synflow`
    and prune to the cumulative sparsity 1 − (1 − p)^{k/n}. In place; returns the model."""
    sparsity = _check_sparsity(sparsity)
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1; got {iterations}")
    batches = list(batches)
    for k in range(1, iterations + 1):
        unstructured(model, S.synflow(model, batches), 1 - (1 - sparsity) ** (k / iterations))
    return model


# ----------------------------------------------------------------------------- structured: layer accounting

@dataclass
class _Layer:
    """Shape facts of one prunable layer, enough to count its weights for any number of removed in/out channels."""
    name: str
    out: int
    inp: int
    groups: int
    kernel: int        # weights per (out, in/groups) pair
    depthwise: bool
    positions: int     # output positions per sample (FLOPs = 2 · weights · positions)

    @staticmethod
    def of(name: str, module: nn.Module, positions: int) -> "_Layer":
        w = module.weight
        groups = getattr(module, "groups", 1)
        depthwise = groups > 1 and groups == w.shape[0] == groups * w.shape[1]
        return _Layer(name, w.shape[0], w.shape[1] * groups, groups, math.prod(w.shape[2:]), depthwise, positions)

    def weights(self, out_removed: torch.Tensor, in_removed: torch.Tensor) -> torch.Tensor:
        out = self.out - out_removed
        if self.depthwise:  # one filter per channel; its in/out channels go together
            return out * self.kernel
        return out * (self.inp - in_removed) / self.groups * self.kernel


def _output_positions(model: nn.Module, example_inputs: torch.Tensor) -> dict[str, int]:
    """Output positions per sample of each prunable layer (H·W for a 2-D conv, 1 for a plain linear layer)."""
    positions, handles = {}, []
    for name, module in _layers(model):
        def hook(mod, inputs, output, name=name):
            positions[name] = output.numel() // (output.shape[0] * mod.weight.shape[0])
        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return positions


# ----------------------------------------------------------------------------- structured: groups and plan

@dataclass
class _Group:
    root: nn.Module
    handler: Callable
    units: list[torch.Tensor]      # root channel indices removed together
    score: torch.Tensor            # (units,)
    counts: torch.Tensor           # (units, 2 · layers): out/in channels each unit removes from each layer
    outputs: list[tuple[str, torch.Tensor, torch.Tensor]]  # (module, member index, root index) of output members


def _channel_groups(group) -> int:
    """Number of convolution groups a grouped (non-depthwise) conv in this group imposes, else 1."""
    g = 1
    for item in group:
        m = item.dep.target.module
        if isinstance(m, nn.modules.conv._ConvNd) and m.groups > 1 and not m.groups == m.in_channels == m.out_channels:
            g = max(g, m.groups)
    return g


def _members(graph, group, names):
    """(module name, removes outputs?, member channel indices, matching root indices) of each named member."""
    for item in group:
        module = item.dep.target.module
        name = names.get(module) if isinstance(module, nn.Module) else None
        if name is not None:  # unnamed members are torch-pruning's own add/concat/reshape bookkeeping
            yield (name, graph.is_out_channel_pruning_fn(item.dep.handler),
                   torch.as_tensor(item.idxs, dtype=torch.long), torch.as_tensor(item.root_idxs, dtype=torch.long))


def _trace(model: nn.Module, example_inputs: torch.Tensor):
    """(output positions per prunable layer, torch-pruning's DependencyGraph), traced in eval mode; a model whose
    channel dependencies cannot be traced is a ValueError naming the model and the reason."""
    import torch_pruning as tp  # imported here: only structured pruning needs it

    layers = _layers(model)
    with eval_mode(model):
        positions = _output_positions(model, example_inputs)
        unseen = [name for name, _ in layers if name not in positions]
        if unseen:  # e.g. attention's out_proj (called through F.multi_head_attention_forward), aux classifiers
            raise ValueError(f"structured pruning cannot handle {type(model).__name__}: its layers {unseen[:3]}"
                             f"{' …' if len(unseen) > 3 else ''} are not called as modules in an eval-mode forward "
                             f"pass (used through functional calls, as in attention blocks, or only in training, "
                             f"as auxiliary classifiers), so their channel dependencies cannot be traced")
        try:
            graph = tp.DependencyGraph().build_dependency(model, example_inputs, verbose=False)
        except Exception as err:  # torch-pruning's own failures (ShuffleNet's channel shuffle: ZeroDivisionError)
            raise ValueError(f"structured pruning cannot handle {type(model).__name__}: torch-pruning could not "
                             f"trace its channel dependencies ({type(err).__name__}: {err})") from err
    return positions, graph


def coupled_outputs(model: nn.Module, example_inputs: torch.Tensor) -> list[tuple[int, list]]:
    """The coupled groups of the node layers, traced with torch-pruning's ``DependencyGraph``: for each group
    (n root channels, [(layer name, its output channel indices, the matching root indices), …]). The layers of
    a group lose their channels together (residual adds, concats, grouped convs)."""
    classifier = dict(_layers(model))[classifier_name(model)]
    nodes = {name for name, _ in S._node_layers(model)}
    _, graph = _trace(model, example_inputs)
    names = {m: n for n, m in model.named_modules()}
    out = []
    for group in graph.get_all_groups(ignored_layers=[classifier]):
        members = {}
        for name, is_out, idx, root_idx in _members(graph, group, names):
            if is_out and name in nodes and name not in members:
                members[name] = (name, idx, root_idx)
        n = graph.get_out_channels(group[0].dep.target.module)
        if members and n is not None:
            out.append((n, list(members.values())))
    return out


def _read_group(graph, group, names, slot, node_scores) -> _Group | None:
    """Units, unit scores and per-layer channel counts of one torch-pruning group (None: leave it whole)."""
    root = group[0].dep.target.module
    n, ch_groups = graph.get_out_channels(root), _channel_groups(group)
    if n is None or n % ch_groups:
        return None
    per_unit = n // ch_groups
    unit_of = torch.arange(n) % per_unit  # root channel → unit (the same offset in every conv group)
    score = torch.zeros(per_unit, dtype=torch.float64)
    counts = torch.zeros(per_unit, 2 * len(slot), dtype=torch.float64)
    outputs, seen, scored = [], set(), False
    for name, is_out, idx, root_idx in _members(graph, group, names):
        if is_out:
            outputs.append((name, idx, root_idx))
        if name not in slot:  # a norm layer: sliced by the surgery, but it holds no prunable weight
            continue
        direction = 0 if (is_out or slot[name][1]) else 1  # a depthwise conv loses in and out channels together
        if (name, direction) in seen:
            continue
        seen.add((name, direction))
        units = unit_of[root_idx]
        counts[:, 2 * slot[name][0] + direction] += torch.bincount(units, minlength=per_unit).double()
        if direction == 0 and name in node_scores:
            score.index_add_(0, units, node_scores[name].detach().double().cpu()[idx])
            scored = True
    if not scored:  # no member has a score: nothing to rank by, so the group stays whole
        return None
    return _Group(root, group[0].dep.handler, [torch.nonzero(unit_of == u).flatten() for u in range(per_unit)],
                  score, counts, outputs)


def _check_node_scores(model: nn.Module, node_scores) -> dict[str, torch.Tensor]:
    allowed = dict(S._node_layers(model))
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


def _totals(table: list[_Layer], removed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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


def _order(groups: list[_Group], table: list[_Layer], budget: str, scope: str) -> list[tuple[int, int]]:
    """(group, unit) pairs in removal order. Each group's best unit is left out, so every layer keeps a node."""
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
        best = int(torch.argmax(group.score))
        for u in range(len(group.units)):
            if u != best:
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
                    dense_weights: int | None = None) -> StructuredPlan:
    """Decide a structured prune (see the module docstring); ``structured`` applies it.

    ``dense_weights``: prunable-weight count that the weight budget refers to (default: the model's own), so an
    already-shrunk model can be pruned further to a sparsity measured against the original dense one.
    """
    sparsity = _check_sparsity(sparsity)
    _choice(budget, BUDGETS, "budget")
    _choice(scope, SCOPES, "scope")
    layers = _layers(model)
    if any(_mask_module(m) is not None for _, m in layers):
        raise ValueError("the model carries unstructured masks; call cropkit.prune.make_permanent(model) first")
    node_scores = _check_node_scores(model, node_scores)
    if not isinstance(example_inputs, torch.Tensor):
        raise ValueError("example_inputs must be a tensor batch the model accepts (used to trace the dependencies)")
    example_inputs = example_inputs.to(device_of(model))
    classifier = dict(layers)[classifier_name(model)]
    positions, graph = _trace(model, example_inputs)
    names = {m: n for n, m in model.named_modules()}
    table = [_Layer.of(name, m, positions[name]) for name, m in layers]
    slot = {layer.name: (i, layer.depthwise) for i, layer in enumerate(table)}
    groups = [g for g in (_read_group(graph, grp, names, slot, node_scores)
                          for grp in graph.get_all_groups(ignored_layers=[classifier])) if g is not None]

    order = _order(groups, table, budget, scope)
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
    achieved = {key: float(v[0]) for key, v in measure(final[None]).items()}

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
    _warn_single_nodes(table[:-1], removed, sparsity, budget)
    return StructuredPlan(model, removed, budget, sparsity, achieved["weights"], achieved["nodes"],
                          achieved["flops"], graph, cuts)


def _warn_single_nodes(node_layers: list[_Layer], removed: dict[str, list[int]], sparsity: float,
                       budget: str) -> None:
    """Warn when a layer is cut to a single node: the network then hangs on one channel (layer collapse)."""
    collapsed = [layer.name for layer in node_layers
                 if layer.out > 1 and layer.out - len(removed.get(layer.name, ())) == 1]
    if collapsed:
        warnings.warn(f"structured pruning to {sparsity} {budget} sparsity leaves {len(collapsed)} layer(s) with a "
                      f"single node: {collapsed} (layer collapse; check the scores of these layers)", stacklevel=4)


def _closest(achieved: torch.Tensor, target: float, budget: str) -> int:
    """Number of removal steps whose result is closest to the target (the first reaching it, or the one before)."""
    reached = torch.nonzero(achieved >= target - 1e-12).flatten()
    if reached.numel() == 0:
        warnings.warn(f"structured pruning reaches at most {float(achieved.max()):.4f} {budget} sparsity "
                      f"(every layer keeps a node); asked for {target}", stacklevel=3)
        return int(torch.argmax(achieved))
    k = int(reached[0])
    if k > 0 and abs(float(achieved[k - 1]) - target) < abs(float(achieved[k]) - target):
        return k - 1
    return k


def structured(model: nn.Module, node_scores: dict[str, torch.Tensor], sparsity: float,
               example_inputs: torch.Tensor, budget: str = "weights", scope: str = "global",
               dense_weights: int | None = None) -> nn.Module:
    """Remove whole nodes until the budget's sparsity is reached; returns the physically smaller model (the same
    object, changed in place). Arguments as in `structured_plan`; ``budget`` ∈ BUDGETS, ``scope`` ∈ SCOPES."""
    return structured_plan(model, node_scores, sparsity, example_inputs, budget, scope, dense_weights).apply()


# ----------------------------------------------------------------------------- reloading a shrunk model

def _sync_shape_attributes(module: nn.Module, depthwise: bool) -> None:
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
        _sync_shape_attributes(module, depthwise[module])
    model.load_state_dict(state_dict)
    return model


# ----------------------------------------------------------------------------- CroPit

def cropit_targets(sparsity: float) -> list[float]:
    """Cumulative targets s_i = p − (p − s₀)·0.5^i for i = 0..5, then p.
    s₀ = 0.5, or 0.25 when p ≤ 0.5; targets are capped at p (so p < 0.25 prunes to p at once)."""
    p = _check_sparsity(sparsity)
    start = 0.25 if p <= 0.5 else 0.5
    return [min(p, p - (p - start) * 0.5 ** i) for i in range(6)] + [p]


def cropit(model: nn.Module, batches, sparsity: float, structured: bool = False,
           example_inputs: torch.Tensor | None = None, loss_fn: Callable | None = None) -> nn.Module:
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
    dense = sum(m.weight.numel() for _, m in _layers(model))
    for target in targets:
        # structured_plan(...).apply() is `structured`, whose name the flag argument shadows here
        model = structured_plan(model, S.crop_nodes(model, batches, loss_fn), target, example_inputs,
                                dense_weights=dense).apply()
    return model
