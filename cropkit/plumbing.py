"""Small helpers every module shares, each written once: eval mode, a model's device, a parameter's plain name."""
from __future__ import annotations

import contextlib
import re
from typing import Iterator

import torch
from torch import nn


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with ``model`` in eval mode, then give every submodule back its own mode (a frozen
    BatchNorm inside a training network stays frozen), even when the block raises."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for m, training in modes:
            m.training = training


def device_of(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (the CPU for a model without parameters)."""
    return next(iter(model.parameters()), torch.empty(0)).device


def plain_name(name: str) -> str:
    """One name per tensor whatever pruning re-parametrisation wraps it: ``conv.parametrizations.weight.original``
    (``torch.nn.utils.parametrize``, the kit's masks) and ``conv.weight_orig`` (``torch.nn.utils.prune``) are both
    ``conv.weight``."""
    name = re.sub(r"(^|\.)parametrizations\.(\w+)\.original$", r"\1\2", name)
    return re.sub(r"_orig$", "", name)
