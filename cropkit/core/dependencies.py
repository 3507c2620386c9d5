"""Coupled channels, traced: which layers lose their output channels together, and what each removal costs.

torch-pruning's ``DependencyGraph`` follows residual adds, concats, grouped/depthwise convs and flattens; each
coupled *group* is cut with the same indices in every member. A *unit* is one root channel, except next to a
grouped (non-depthwise) convolution, where it is the same within-group offset in every group (so the groups
stay equal-sized). ``LayerShape`` counts a layer's weights exactly for any number of removed in/out channels.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from cropkit.core.layers import classifier_name, node_layers
from cropkit.core.masks import pruned_layers
from cropkit.core.plumbing import eval_mode


@dataclass
class LayerShape:
    """Shape facts of one prunable layer, enough to count its weights for any number of removed in/out channels."""
    name: str
    out: int
    inp: int
    groups: int
    kernel: int        # weights per (out, in/groups) pair
    depthwise: bool
    positions: int     # output positions per sample (FLOPs = 2 · weights · positions)

    @staticmethod
    def of(name: str, module: nn.Module, positions: int) -> "LayerShape":
        w = module.weight
        groups = getattr(module, "groups", 1)
        depthwise = groups > 1 and groups == w.shape[0] == groups * w.shape[1]
        return LayerShape(name, w.shape[0], w.shape[1] * groups, groups, math.prod(w.shape[2:]), depthwise, positions)

    def weights(self, out_removed: torch.Tensor, in_removed: torch.Tensor) -> torch.Tensor:
        out = self.out - out_removed
        if self.depthwise:  # one filter per channel; its in/out channels go together
            return out * self.kernel
        return out * (self.inp - in_removed) / self.groups * self.kernel


def _output_positions(model: nn.Module, example_inputs: torch.Tensor) -> dict[str, int]:
    """Output positions per sample of each prunable layer (H·W for a 2-D conv, 1 for a plain linear layer)."""
    positions, handles = {}, []
    for name, module in pruned_layers(model):
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


@dataclass
class Group:
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


def trace(model: nn.Module, example_inputs: torch.Tensor):
    """(output positions per prunable layer, torch-pruning's DependencyGraph), traced in eval mode; a model whose
    channel dependencies cannot be traced is a ValueError naming the model and the reason."""
    import torch_pruning as tp  # imported here: only structured pruning needs it

    layers = pruned_layers(model)
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
    classifier = dict(pruned_layers(model))[classifier_name(model)]
    nodes = {name for name, _ in node_layers(model)}
    _, graph = trace(model, example_inputs)
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


def read_group(graph, group, names, slot, node_scores) -> Group | None:
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
    return Group(root, group[0].dep.handler, [torch.nonzero(unit_of == u).flatten() for u in range(per_unit)],
                  score, counts, outputs)
