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

import math
import warnings

import torch
from torch import nn
from torch.nn.utils import parametrize

from cropkit.models import require_prunable


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
