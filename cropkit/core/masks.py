r"""Masks for single weights (the -U methods), and the checks every pruning function shares.

Unstructured (-U). ``unstructured(model, scores, sparsity)`` keeps the global top-k of the scores over all
prunable weights, with k = N − round(sparsity · N) for N prunable weights: exact to one weight. The mask
is a ``torch.nn.utils.parametrize`` re-parametrisation, weight = θ_orig ⊙ m, so ``module.weight`` is always
the effective weight and a pruned weight stays exactly 0 under any optimizer (weight decay and momentum
move θ_orig, never the product). ``sparsity`` is cumulative: calling again with a higher target prunes
further; masks only shrink. Ties break by position (earlier layer, then earlier index, is kept).
``make_permanent`` folds the masks into plain weights (do it before ``torch.save(model)``).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from cropkit.core.layers import require_prunable


def check_sparsity(sparsity) -> float:
    """``sparsity`` as a float, or a ValueError saying what a sparsity is."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise ValueError(f"sparsity is the (target) fraction of weights removed, a number in [0, 1); "
                         f"got {sparsity!r}")
    return float(sparsity)


def pruned_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return require_prunable(model, "pruning")


def check_choice(value, allowed, what) -> str:
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


def _stored(module: nn.Module) -> torch.Tensor:
    """The weight as stored (θ_orig of a masked layer): its shape, dtype and device are the weight's, and reading it
    does not compute θ_orig ⊙ m."""
    return module.parametrizations.weight.original if parametrize.is_parametrized(module, "weight") else module.weight


def mask_of(module: nn.Module) -> Mask | None:
    if parametrize.is_parametrized(module, "weight"):
        for p in module.parametrizations.weight:
            if isinstance(p, Mask):
                return p
    return None


def masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """{"<module>.weight": boolean mask (True = kept)} for every prunable layer (all True where unmasked)."""
    out = {}
    for name, module in pruned_layers(model):
        mask = mask_of(module)
        out[f"{name}.weight"] = mask.mask.clone() if mask is not None else \
            torch.ones(_stored(module).shape, dtype=torch.bool, device=_stored(module).device)
    return out


def set_mask(module: nn.Module, mask: torch.Tensor) -> None:
    existing = mask_of(module)
    if existing is not None:
        existing.mask.copy_(mask)
    else:  # the Parameter object itself moves to parametrizations.weight.original, so optimizers keep working
        parametrize.register_parametrization(module, "weight", Mask(mask))


def _global_keep(values: np.ndarray, sizes: list[int], n_keep: int) -> tuple[np.ndarray, list[int]]:
    """Boolean keep-vector of the top ``n_keep`` of ``values`` (flat float64, −inf = already pruned; ties: the
    earlier position first), where each segment of ``sizes`` first reserves its own best entry. Returns it and the
    segments that needed the reserve (their best entry is not among the top ``n_keep`` of all entries).

    A selection (``np.partition``, linear time), not a sort: SynFlow ranks all weights a hundred times. The −inf
    entries (most of them at high sparsity) stay out of the partition, which slows down on masses of equal values.
    """
    starts = np.cumsum([0] + list(sizes[:-1]))
    best = [start + int(np.argmax(values[start:start + size])) for start, size in zip(starts, sizes)]
    best_values = values[best]
    values[best] = -np.inf  # the reserved entries leave the race for the other n_keep − L places (restored below)
    live = np.flatnonzero(values > -np.inf)
    places = max(n_keep - len(best), 0)
    if places == 0:
        chosen, threshold = live[:0], np.inf
    elif places >= live.size:
        chosen, threshold = live, -np.inf
    else:
        candidates = values[live]
        threshold = np.partition(candidates, candidates.size - places)[candidates.size - places]
        above = live[candidates > threshold]
        chosen = np.concatenate([above, live[candidates == threshold][:places - above.size]])
    values[best] = best_values
    keep = np.zeros(values.size, dtype=bool)
    keep[chosen] = True
    keep[best] = True
    # A best entry above the threshold has at most (n_keep − L − 1) + (L − 1) entries ahead of it: it is in the top
    # n_keep without its reserve. Only the others are counted exactly.
    emptied = [i for i, b in enumerate(best) if values[b] <= threshold and
               int((values > values[b]).sum()) + int((values[:b] == values[b]).sum()) >= n_keep]
    return keep, emptied


def unstructured(model: nn.Module, scores: dict[str, torch.Tensor], sparsity: float) -> nn.Module:
    """Mask the lowest-scoring prunable weights, globally, in place, so that exactly round(sparsity · N) of the
    N prunable weights are zero (or as close as masks-only-shrink and one-weight-per-layer allow).

    ``sparsity`` is the cumulative target; already-pruned weights stay pruned whatever their new score.
    A layer that would lose every weight keeps its highest-scoring one (with a warning), and the count
    stays exact by taking that weight out of the global budget. Returns the model.
    """
    unstructured_layers(pruned_layers(model), scores, check_sparsity(sparsity))
    return model


def unstructured_layers(layers: list[tuple[str, nn.Module]], scores: dict[str, torch.Tensor], sparsity: float) -> None:
    """`unstructured` on the prunable ``layers`` of a model (listed once by a caller that prunes many times)."""
    keys = [f"{name}.weight" for name, _ in layers]
    missing = [k for k in keys if k not in scores]
    if missing:
        raise ValueError(f"scores lack {missing}; they must hold one tensor per prunable weight: {keys}")
    device = torch.device("cpu")  # rank on the CPU, in float64 (NumPy's selection)
    stored = [_stored(module) for _, module in layers]
    for key, weight in zip(keys, stored):
        if tuple(scores[key].shape) != tuple(weight.shape):
            raise ValueError(f"scores[{key!r}] has shape {tuple(scores[key].shape)}; the weight has "
                             f"{tuple(weight.shape)}")
    ranked = np.empty(sum(weight.numel() for weight in stored))  # float64
    start = 0
    for (_, module), key, weight in zip(layers, keys, stored):
        piece = ranked[start:start + weight.numel()]
        score = scores[key].detach().to(device).flatten()
        piece[:] = (score if score.dtype in (torch.float32, torch.float64) else score.double()).numpy()
        mask = mask_of(module)
        if mask is not None:  # masks only shrink
            piece[~mask.mask.flatten().cpu().numpy()] = -np.inf
        start += weight.numel()
    if np.isnan(ranked).any():
        raise ValueError("scores contain NaN; every score must be a number (higher = keep)")
    n_keep = ranked.size - round(sparsity * ranked.size)
    sizes = [weight.numel() for weight in stored]
    keep, emptied = _global_keep(ranked, sizes, n_keep)
    keep = torch.from_numpy(keep)
    for i in emptied:
        warnings.warn(f"layer {layers[i][0]!r} would lose every weight at sparsity {sparsity}; "
                      f"keeping its highest-scoring weight", stacklevel=3)
    for (_, module), weight, piece in zip(layers, stored, torch.split(keep, sizes)):
        set_mask(module, piece.view(weight.shape).to(weight.device))


def _own_class(module: nn.Module) -> None:
    """Give a parametrised module a class of its own. torch keeps a parametrised weight as a property of a class made
    for the module, and removing the parametrisation deletes that property from the class; ``copy.deepcopy`` shares
    the class between the copy and its original, so making the copy permanent would strip the original's weight."""
    cls = module.__class__
    namespace = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, namespace)


def make_permanent(model: nn.Module) -> nn.Module:
    """Replace every masked weight by a plain Parameter holding θ_orig ⊙ m (zeros stay), removing the
    re-parametrisation, so that ``torch.save(model)`` works. Build a new optimizer afterwards. Returns the model;
    a deep copy can be made permanent and its original keeps its masks."""
    for _, module in pruned_layers(model):
        if mask_of(module) is not None:
            _own_class(module)
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model
