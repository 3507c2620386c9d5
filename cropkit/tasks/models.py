"""The model zoo: small nets for the offline data, CIFAR-form ResNet18/VGG16, any torchvision classifier, and the
regression and language networks of `cropkit.tasks.nets` (``fcn``, ``lstm``).

Every zoo model is dimension-generic: a 1-D input shape ``(C, L)`` builds Conv1d layers, a 2-D shape
``(C, H, W)`` builds Conv2d layers, so the same name runs on MNIST-1D (1×40), digits (1×8×8) and CIFAR (3×32×32).
``width`` multiplies every hidden channel count (at least one channel is always kept).

    model = build("resnet18", input_shape=(3, 32, 32), num_classes=10, width=0.25)
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from cropkit.core.layers import signal_preserving_init
from cropkit.tasks import data as data_lib
from cropkit.tasks.fcrn import TASK_MODELS as FCRN
from cropkit.tasks.nets import TASK_MODELS
from cropkit.tasks.pointer import TASK_MODELS as POINTER
from cropkit.tasks.resnext import ZOO as RESNEXT


def _nd(input_shape: tuple[int, ...]) -> dict[str, type]:
    """Layer classes for 1-D (C, L) or 2-D (C, H, W) inputs."""
    if len(input_shape) == 2:
        return dict(conv=nn.Conv1d, bn=nn.BatchNorm1d, pool=nn.MaxPool1d, gap=nn.AdaptiveAvgPool1d)
    if len(input_shape) == 3:
        return dict(conv=nn.Conv2d, bn=nn.BatchNorm2d, pool=nn.MaxPool2d, gap=nn.AdaptiveAvgPool2d)
    raise ValueError(f"conv models take input_shape (C, L) or (C, H, W); got {tuple(input_shape)}")


def _w(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


# ----------------------------------------------------------------------------- the zoo

def mlp(input_shape, num_classes, width=1.0, hidden=(256, 256)) -> nn.Module:
    """Flatten → [Linear → ReLU] × len(hidden) → Linear."""
    layers, features = [nn.Flatten()], math.prod(input_shape)
    for h in hidden:
        layers += [nn.Linear(features, _w(h, width)), nn.ReLU()]
        features = _w(h, width)
    layers.append(nn.Linear(features, num_classes))
    return nn.Sequential(*layers)


def cnn1d(input_shape, num_classes, width=1.0) -> nn.Module:
    """Three conv-BN-ReLU blocks with pooling and a global-average-pooled linear head (MNIST-1D style)."""
    L = _nd(input_shape)
    c1, c2 = _w(32, width), _w(64, width)
    return nn.Sequential(
        L["conv"](input_shape[0], c1, 5, padding=2), L["bn"](c1), nn.ReLU(), L["pool"](2),
        L["conv"](c1, c2, 3, padding=1), L["bn"](c2), nn.ReLU(), L["pool"](2),
        L["conv"](c2, c2, 3, padding=1), L["bn"](c2), nn.ReLU(),
        L["gap"](1), nn.Flatten(), nn.Linear(c2, num_classes),
    )


def cnn(input_shape, num_classes, width=1.0) -> nn.Module:
    """Small VGG-style net for digits: conv32-conv32-pool-conv64-conv64-pool, then flatten → Linear(128) → BN → ReLU
    → Linear.

    The flatten keeps spatial positions, so a conv channel feeds several inputs of the first linear layer:
    the coupling that structured pruning has to respect. The hidden Linear has a BatchNorm1d like every conv, as
    the fully connected layers of the EarlyCroP reference networks do, so that the criteria that read a norm
    layer (EarlyBird's |γ|, GateDecorators' gates) score every node layer.
    """
    L = _nd(input_shape)
    c1, c2, h = _w(32, width), _w(64, width), _w(128, width)
    spatial = list(input_shape[1:])
    layers, channels = [], input_shape[0]
    for block in ((c1, c1), (c2, c2)):
        for c in block:
            layers += [L["conv"](channels, c, 3, padding=1), L["bn"](c), nn.ReLU()]
            channels = c
        if min(spatial) >= 2:
            layers.append(L["pool"](2))
            spatial = [s // 2 for s in spatial]
    layers += [nn.Flatten(), nn.Linear(channels * math.prod(spatial), h), nn.BatchNorm1d(h), nn.ReLU(),
               nn.Linear(h, num_classes)]
    return nn.Sequential(*layers)


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016) with a 1×1 projection shortcut when the shape changes."""

    def __init__(self, L, in_ch, out_ch, stride):
        super().__init__()
        self.conv1 = L["conv"](in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = L["bn"](out_ch)
        self.conv2 = L["conv"](out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = L["bn"](out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(L["conv"](in_ch, out_ch, 1, stride=stride, bias=False), L["bn"](out_ch))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """CIFAR-form ResNet18: 3×3 stem with stride 1, no max-pool, stages of 64/128/256/512 × width."""

    def __init__(self, input_shape, num_classes, width=1.0):
        super().__init__()
        L = _nd(input_shape)
        widths = [_w(c, width) for c in (64, 128, 256, 512)]
        self.conv1 = L["conv"](input_shape[0], widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = L["bn"](widths[0])
        stages, in_ch = [], widths[0]
        for i, out_ch in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(L, in_ch, out_ch, stride), BasicBlock(L, out_ch, out_ch, 1)))
            in_ch = out_ch
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.pool = L["gap"](1)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x):
        x = torch.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))


VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


def vgg16(input_shape, num_classes, width=1.0) -> nn.Module:
    """CIFAR-form VGG16 with BatchNorm: 13 conv-BN-ReLU layers, five max-pools (skipped once the map is 1 wide),
    global average pooling and one linear classifier (as in the GraSP/EarlyCroP code bases)."""
    L = _nd(input_shape)
    layers, channels, size = [], input_shape[0], min(input_shape[1:])
    for v in VGG16_CFG:
        if v == "M":
            if size >= 2:
                layers.append(L["pool"](2))
                size //= 2
            continue
        c = _w(v, width)
        layers += [L["conv"](channels, c, 3, padding=1), L["bn"](c), nn.ReLU()]
        channels = c
    layers += [L["gap"](1), nn.Flatten(), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)


ZOO: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp,
    "cnn1d": cnn1d,
    "cnn": cnn,
    "resnet18": ResNet18,
    "vgg16": vgg16,
    **RESNEXT,  # resnext101_32x16d, resnext101_32x48d (CIFAR form, `cropkit.tasks.resnext`)
    **TASK_MODELS,
    **POINTER,  # pointer_lstm: the pointer sentinel LSTM (`cropkit.tasks.pointer`)
    **FCRN,  # fcrn: Laina et al.'s fully convolutional residual network (`cropkit.tasks.fcrn`)
    "policy": mlp,  # the control domain's 3-layer policy (`cropkit.tasks.control`): obs → h → h → actions
}


# ----------------------------------------------------------------------------- torchvision models

def _torchvision(name: str, input_shape, num_classes) -> nn.Module:
    import torchvision

    if len(input_shape) != 3:
        raise ValueError(f"torchvision model {name!r} needs a 2-D image input (C, H, W); got {tuple(input_shape)}")
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    if input_shape[0] != 3:  # replace the stem so that digits (1 channel) or other inputs fit
        for parent in model.modules():
            for child_name, child in parent.named_children():
                if isinstance(child, nn.Conv2d):
                    setattr(parent, child_name, nn.Conv2d(
                        input_shape[0], child.out_channels, child.kernel_size, stride=child.stride,
                        padding=child.padding, dilation=child.dilation, bias=child.bias is not None))
                    return model
    return model


def torchvision_names() -> list[str]:
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def names() -> list[str]:
    """Every name `build` accepts: the zoo, then torchvision's classification models."""
    return list(ZOO) + [n for n in torchvision_names() if n not in ZOO]


def build(name: str, input_shape, num_classes: int, width: float = 1.0, seed: int | None = None) -> nn.Module:
    """Build a model by name. ``seed`` (optional) fixes the initialisation."""
    input_shape = tuple(int(s) for s in input_shape)
    if not width > 0:
        raise ValueError(f"width must be > 0; got {width}")
    least = 2 if of_model(name) == "classification" else 1  # a regression net may have a single output map
    if num_classes < least:
        raise ValueError(f"num_classes must be >= {least}; got {num_classes}")
    if seed is not None:
        torch.manual_seed(seed)
    if name in ZOO:  # torchvision's models keep their own (already signal-preserving) initialisation
        model = ZOO[name](input_shape, num_classes, width=width)
        return model if getattr(model, "own_init", False) else signal_preserving_init(model)
    if name in torchvision_names():
        if width != 1.0:
            raise ValueError(f"width is only available for the zoo models {list(ZOO)}; {name!r} is torchvision's")
        return _torchvision(name, input_shape, num_classes)
    raise ValueError(f"unknown model {name!r}; choose one of the zoo {list(ZOO)} "
                     f"or a torchvision classification model (cropkit.models.torchvision_names())")


# ----------------------------------------------------------------------------- which task a model is for

MODEL_TASKS: dict[str, str] = {"fcn": "regression", "lstm": "language",     # every other model: classification
                               "policy": "control", "pointer_lstm": "language", "fcrn": "regression"}
# The model a dataset gets when none is named, where its task has several (the others: the task's one model).
DATA_MODELS: dict[str, str] = {"depth": "fcn", "pydoc": "lstm", "ptb": "pointer_lstm", "nyudepth": "fcrn"}
# Models whose nodes structured pruning cannot remove, with the reason (the methods that work are the unstructured).
NO_STRUCTURED: dict[str, str] = {
    "lstm": "a hidden unit of the LSTM is four gate rows of two Linear layers and a column of the recurrent one, "
            "coupled through the recurrence, which cropkit's channel surgery does not trace",
    "pointer_lstm": "its LSTM couples four gate rows of two Linear layers and a column of the recurrent one per "
                    "hidden unit through the recurrence, and its attention couples the hidden state with the query"}


def of_model(name: str) -> str:
    """The task name model ``name`` is built for."""
    return MODEL_TASKS.get(name, "classification")


def default_model(data: str | None) -> str | None:
    """The zoo model built for ``data``'s task when it is not classification (the one model of that task), else
    None (the profile's model)."""
    if data in DATA_MODELS:
        return DATA_MODELS[data]
    task = data_lib.of_data(data).name if data is not None else "classification"
    fit = sorted(m for m, t in MODEL_TASKS.items() if t == task != "classification")
    return fit[0] if len(fit) == 1 else None


def check_pair(data: str, model: str) -> None:
    """A ``ValueError`` when ``model`` is built for another task than ``data`` is, naming the models that fit."""
    want, have = data_lib.of_data(data).name, of_model(model)
    if want != have:
        fit = sorted(m for m, t in MODEL_TASKS.items() if t == want) if want != "classification" else \
            "the zoo's mlp, cnn1d, cnn, resnet18, vgg16 or a torchvision classifier"
        raise ValueError(f"model {model!r} is built for {have}, but data {data!r} is a {want} task; "
                         f"for {data!r} choose {fit}")


def check_structured(model: str, method: str, family: str) -> None:
    """A ``ValueError`` when a structured method is asked for on a model whose nodes cannot be removed."""
    if family == "Structured" and model in NO_STRUCTURED:
        raise ValueError(f"{method!r} removes whole nodes, which model {model!r} does not support: "
                         f"{NO_STRUCTURED[model]}; on {model!r} use dense or an unstructured method "
                         f"(random-u, snip, grasp, crop-u, cropit-u, earlycrop-u, ltr)")
