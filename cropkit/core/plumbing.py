"""Small helpers every module shares, each written once: eval mode (and ``frozen``, for measuring), a model's device,
a parameter's plain name, the state of every random number generator a training draws from, whether a warning is
cropkit's own."""
from __future__ import annotations

import contextlib
import random
import re
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize


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


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """:func:`eval_mode` without gradients, each masked weight θ_orig ⊙ m computed once for the whole block instead of
    at every forward pass (``torch.nn.utils.parametrize.cached``: the same tensor, as nothing changes θ in the block).
    For measuring a network and for playing episodes with it."""
    with torch.no_grad(), eval_mode(model), parametrize.cached():
        yield model


def device_of(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (the CPU for a model without parameters)."""
    return next(iter(model.parameters()), torch.empty(0)).device


def plain_name(name: str) -> str:
    """One name per tensor whatever pruning re-parametrisation wraps it: ``conv.parametrizations.weight.original``
    (``torch.nn.utils.parametrize``, the kit's masks) and ``conv.weight_orig`` (``torch.nn.utils.prune``) are both
    ``conv.weight``."""
    name = re.sub(r"(^|\.)parametrizations\.(\w+)\.original$", r"\1\2", name)
    return re.sub(r"_orig$", "", name)


def rng_state(loader=None) -> dict:
    """Every random number generator a CPU training draws from (Python, NumPy, torch, CUDA if present, and the
    shuffling generator of ``loader``), as tensors, tuples and numbers (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = dict(python=random.getstate(), torch=torch.get_rng_state(),
                 numpy=dict(kind=kind, keys=torch.from_numpy(keys.astype(np.int64)), pos=pos, has_gauss=has_gauss,
                            gauss=gauss))
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    for name, generator in _loader_generators(loader).items():
        state[name] = generator.get_state()
    if hasattr(loader, "state_dict"):  # a loader that counts its own stream (control's episodes)
        state["stream"] = loader.state_dict()
    return state


def _loader_generators(loader) -> dict:
    """The generators a loader draws its order from: its own, and its sampler's (`cropkit.tasks.data`'s shuffling
    sampler holds the order's generator; the loader's seeds the workers)."""
    found = {"loader": getattr(loader, "generator", None),
             "sampler": getattr(getattr(loader, "sampler", None), "generator", None)}
    return {name: g for name, g in found.items() if g is not None}


def set_rng_state(state: dict, loader=None) -> None:
    """Put back what :func:`rng_state` took."""
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, generator in _loader_generators(loader).items():
        if name in state:
            generator.set_state(state[name])
    if "stream" in state and hasattr(loader, "load_state_dict"):
        loader.load_state_dict(state["stream"])


PACKAGE = Path(__file__).resolve().parent.parent


def is_cropkit_warning(w: warnings.WarningMessage) -> bool:
    """Whether a caught warning was raised by cropkit's own code (a run records those in its result)."""
    return Path(w.filename).resolve().is_relative_to(PACKAGE)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (``None``: unchanged), then put the previous count back."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
