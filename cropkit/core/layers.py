"""Conventions every module relies on: which layers are prunable (their ``weight``: Conv1d, Conv2d, Linear), which
one is the classifier (the last prunable layer; its outputs are not nodes), which BatchNorm reads each node layer's
output, and the signal-preserving initialisation of the zoo's networks."""
from __future__ import annotations

from typing import Iterator

import torch
from torch import nn

from cropkit.core.plumbing import eval_mode

PRUNABLE_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def prunable_layers(model: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """(name, module) of every Conv1d/Conv2d/Linear, in registration order."""
    for name, module in model.named_modules():
        if isinstance(module, PRUNABLE_TYPES):
            yield name, module


def require_prunable(model: nn.Module, purpose: str) -> list[tuple[str, nn.Module]]:
    """The prunable layers, or a ValueError saying that ``purpose`` (scoring, pruning …) needs one."""
    layers = list(prunable_layers(model))
    if not layers:
        raise ValueError(f"{type(model).__name__} has no prunable layer; {purpose} needs at least one "
                         f"Conv1d, Conv2d or Linear")
    return layers


def classifier_name(model: nn.Module) -> str:
    """Name of the classifier: the last prunable layer. Its outputs are not nodes."""
    names = [name for name, _ in prunable_layers(model)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no prunable layer (Conv1d, Conv2d or Linear)")
    return names[-1]


@torch.no_grad()
def signal_preserving_init(model: nn.Module) -> nn.Module:
    """Kaiming-normal initialisation (He et al. 2015) for ReLU networks, in place; returns the model.

    Convs: N(0, 2 / fan_out), as torchvision's ResNets and VGGs; Linear layers: N(0, 2 / fan_in); biases 0;
    norm layers γ = 1, β = 0. Why: scores are taken in eval mode, where a fresh BatchNorm is the identity, so
    nothing re-normalises the signal between layers. With PyTorch's default init (Kaiming-uniform with a = √5,
    i.e. variance 1 / (3 fan_in)) each conv-ReLU roughly divides the signal's variance by 6: across VGG16's 13
    convs its std shrinks from 0.33 to 0.01, the early layers' node scores fall far below the late layers', and
    CroP-S and SNAP cut the first six convs to one channel at weight sparsity 0.8 — with synthetic and real
    inputs alike. The EarlyCroP authors' code initialises orthogonally with the ReLU gain; Kaiming with zero
    biases preserves the signal as well (tests/test_models.py checks that no VGG16 conv collapses).
    """
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
        elif isinstance(m, nn.modules.batchnorm._NormBase) and m.affine:
            nn.init.ones_(m.weight)
        else:
            continue
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    return model


def node_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Prunable layers whose outputs are nodes: all but the classifier."""
    classifier = classifier_name(model)
    return [(name, m) for name, m in require_prunable(model, "scoring") if name != classifier]


def following_norms(model: nn.Module, inputs: torch.Tensor) -> dict[str, str]:
    """{prunable layer: the BatchNorm that reads its output directly}, found by one traced forward pass
    on ``inputs`` (a norm counts when its input *is* the layer's output tensor, so no name heuristics). Layers whose
    output reaches a norm only through an add or a concat (e.g. DenseNet's concatenated features) are absent."""
    produced, found, handles = {}, {}, []
    for name, m in node_layers(model):
        def record(mod, inputs, output, name=name):
            produced[id(output)] = (name, output)  # keep the tensor alive so that its id is not reused this pass
        handles.append(m.register_forward_hook(record))
    for name, m in model.named_modules():
        if isinstance(m, NORM_TYPES):
            def pre(mod, args, name=name):
                layer, _ = produced.get(id(args[0]), (None, None))
                if layer is not None and layer not in found:
                    found[layer] = name
            handles.append(m.register_forward_pre_hook(pre))
    try:
        with eval_mode(model), torch.no_grad():
            model(inputs[:1])
    finally:
        for handle in handles:
            handle.remove()
    return found


def norms_or_raise(model: nn.Module, inputs: torch.Tensor) -> dict[str, str]:
    """{node layer: its BatchNorm} for *every* node layer, else a ValueError naming the layers without one.

    A layer left unscored would stay whole in a structured prune and push the whole budget onto the others
    (on a `cnn` whose hidden Linear had no norm, EarlyBird cut conv1–conv3 to one channel each)."""
    norms = following_norms(model, inputs)
    missing = [name for name, _ in node_layers(model) if name not in norms]
    if missing:
        raise ValueError(f"{type(model).__name__}: layer(s) {missing} are not followed directly by a BatchNorm; "
                         f"bn_nodes and taylor_gate_nodes score a node by its norm layer, so every node layer "
                         f"needs a conv/linear → BatchNorm pair (the zoo's cnn, cnn1d, resnet18 and vgg16 have them)")
    return norms
