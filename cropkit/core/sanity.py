r"""Sanity checks for a pruning score: does it know *which* weights matter, or only *how many* per layer?

Frankle et al. (ICLR 2021, "Pruning Neural Networks at Initialization: Why are We Missing the Mark?") prune at
initialisation with SNIP, GraSP, SynFlow and magnitude, then disturb the result in three ways; a method whose
accuracy survives a disturbance did not rely on what the disturbance destroys. Su et al. (NeurIPS 2020,
"Sanity-Checking Pruning Methods: Random Tickets can Win the Jackpot") reach the same verdict with layer-wise
rearranged masks ("random tickets" that keep only each layer's keep-ratio).

    shuffle_within_layers(masks, seed)   each layer's mask permuted at random: per-layer counts kept,
                                         which weights forgotten (Frankle et al.'s "random shuffling")
    reinit(model, masks, seed)           the same masks on freshly drawn weights (their "reinitialisation")
    redraw(model, seed)                  the weights of a (structurally pruned) model drawn afresh, in place
    with_masks(model, masks)             a copy of the model, its weights unchanged, pruned by these masks
    invert(scores)                       the order of the scores reversed, so that the usual top-k keeps the
                                         *lowest*-scored weights (their "inversion")
    random_channels(model, kept, x, seed)  the structured analogue of shuffling: every layer keeps the number of
                                         channels a criterion kept, but channels chosen at random (a width-only
                                         control, as in Liu et al., ICLR 2019, "Rethinking the Value of Network
                                         Pruning")

Masks are the kit's: ``{"<module>.weight": boolean tensor}`` (True = kept), as `cropkit.core.masks.masks` gives.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from cropkit.core.dependencies import coupled_outputs
from cropkit.core.layers import node_layers, signal_preserving_init
from cropkit.core.masks import pruned_layers, set_mask
from cropkit.core.structured import StructuredPlan, structured_plan

# ----------------------------------------------------------------------------- shuffling

def shuffle_within_layers(masks: dict[str, torch.Tensor], seed: int) -> dict[str, torch.Tensor]:
    """Each layer's mask with its entries permuted uniformly at random over all its elements.

    Every layer keeps exactly its number of kept weights (a permutation moves entries, it never adds or drops
    one), and with it the layer-wise keep-ratios that Su et al. (2020) find to be all a random ticket needs; which
    weights are kept is forgotten. Layer i is permuted by a generator seeded from (``seed``, i), so each layer has
    a stream of its own and a seed always gives the same masks. Returns new tensors (same shape, dtype and device);
    ``masks`` is left as it was.
    """
    _check_masks(masks)
    _check_seed(seed)
    out = {}
    for position, (name, mask) in enumerate(masks.items()):
        generator = torch.Generator().manual_seed(_stream_seed(seed, position))  # on the CPU: the same on any device
        order = torch.randperm(mask.numel(), generator=generator).to(mask.device)
        out[name] = mask.flatten()[order].view(mask.shape)
    return out


def _stream_seed(seed: int, position: int) -> int:
    """A 64-bit seed for stream ``position`` of ``seed``: (seed, position) pairs never share a stream, unlike
    seed + position, where layer 1 of seed 0 would be layer 0 of seed 1."""
    return int(np.random.SeedSequence([seed, position]).generate_state(1, dtype=np.uint64)[0])


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    return int(seed)


def _check_masks(masks) -> dict[str, torch.Tensor]:
    if not isinstance(masks, dict) or not masks:
        raise ValueError("masks must be a non-empty dict {'<module>.weight': boolean tensor, True = kept}, as "
                         "cropkit.core.masks.masks(model) gives")
    wrong = [name for name, mask in masks.items() if not isinstance(mask, torch.Tensor)]
    if wrong:
        raise ValueError(f"masks[{wrong[0]!r}] is a {type(masks[wrong[0]]).__name__}; every mask must be a tensor")
    return masks


# ----------------------------------------------------------------------------- inversion

_LARGEST = torch.finfo(torch.float64).max


def invert(scores: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Scores in reversed order, −s, so that keeping the highest (`cropkit.core.masks.unstructured`, or
    `cropkit.core.structured.structured` for node scores) keeps the *lowest*-scored weights or nodes at the same
    budget (Frankle et al. 2021's inversion: if a score is meaningful, keeping what it ranks lowest should hurt).

    Returned as float64 on the CPU, where the kit ranks anyway. Why not just ``-s``: the kit reads a score of −∞
    as "already pruned, never keep", so a +∞ score would, negated, drop out of the budget and fewer weights would be
    kept; ±∞ become ∓(largest float64) instead, which stays below (above) every float32 or float16 score (a float64
    score of exactly ±largest would tie with them). Ties stay ties, and the kit breaks them as always (the earlier
    layer, then the earlier index, is kept), so among equal scores at the threshold the inverted prune keeps the
    same positions an ordinary prune would prefer, not the mirror ones. Scores need not be non-negative (GraSP's are
    signed); the inverted ones mostly are not. A model that already carries masks keeps its pruned weights pruned:
    inversion reorders only the live ones.
    """
    if not isinstance(scores, dict) or not scores:
        raise ValueError("scores must be a non-empty dict {name: tensor of scores, higher = keep}")
    out = {}
    for name, score in scores.items():
        if not isinstance(score, torch.Tensor):
            raise ValueError(f"scores[{name!r}] is a {type(score).__name__}; every score must be a tensor")
        if torch.isnan(score).any():
            raise ValueError(f"scores[{name!r}] contains NaN; every score must be a number (higher = keep)")
        out[name] = torch.nan_to_num(-score.detach().to("cpu", torch.float64), posinf=_LARGEST, neginf=-_LARGEST)
    return out


# ----------------------------------------------------------------------------- re-initialisation

def reinit(model: nn.Module, masks: dict[str, torch.Tensor], seed: int,
           init: Callable[[nn.Module], nn.Module] = signal_preserving_init) -> nn.Module:
    """A fresh copy of ``model`` with newly drawn weights and exactly ``masks`` applied (Frankle et al. 2021's
    reinitialisation: if a pruned-at-init network trains as well from new weights, the method found a layer-wise
    architecture, not a lucky initialisation). ``model`` is left as it was.

    The weights are drawn by ``init`` — the zoo's Kaiming initialisation, `cropkit.core.layers.signal_preserving_init`,
    which every zoo model that ``cropkit.tasks.models.build`` builds gets — under ``torch.manual_seed(seed)``, with
    the caller's random number generators restored afterwards: the same seed gives the same weights. They come
    from the distribution ``build`` draws from, not the same draw as ``build(..., seed=seed)``. Biases and norm
    parameters are reset too, and norm running statistics cleared, so nothing learned survives but the masks.
    A model that initialises itself (the zoo's ``own_init`` nets, torchvision's classifiers) needs its own
    ``init``; with the default it is a ValueError. This lives in the core, not next to the zoo, because the zoo's
    initialisation is a core function.
    """
    seed = _check_seed(seed)
    layers = pruned_layers(model)
    _check_model_masks(layers, _check_masks(masks))
    if init is signal_preserving_init and initialises_itself(model):  # said before the copy is made
        raise ValueError(f"{type(model).__name__} does not use the zoo's signal-preserving initialisation (it "
                         f"initialises itself); pass init=<a function that re-initialises it in place>")
    fresh = redraw(copy.deepcopy(model), seed, init)
    for name, module in pruned_layers(fresh):
        set_mask(module, masks[f"{name}.weight"].to(module.weight.device).bool())
    return fresh


def redraw(model: nn.Module, seed: int, init: Callable[[nn.Module], nn.Module] = signal_preserving_init) -> nn.Module:
    """Draw ``model``'s weights afresh in place and return it: ``init`` under ``torch.manual_seed(seed)`` (the caller's
    random number generators restored afterwards), norm running statistics cleared; a masked weight's θ_orig is
    redrawn and its mask kept. On a structurally pruned network this is Frankle et al. 2021's reinitialisation of
    the smaller architecture (each layer drawn for its own, smaller fan). With the default ``init``, a model that
    initialises itself (`initialises_itself`) is a ValueError."""
    seed = _check_seed(seed)
    if init is signal_preserving_init and initialises_itself(model):
        raise ValueError(f"{type(model).__name__} does not use the zoo's signal-preserving initialisation (it "
                         f"initialises itself); pass init=<a function that re-initialises it in place>")
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))), _plain_weights(model):
        torch.manual_seed(seed)
        init(model)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._NormBase) and module.track_running_stats:
            module.reset_running_stats()
    return model


def with_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model``, its weights as they are, pruned by exactly ``masks`` (e.g. shuffled ones: Frankle et al.
    2021 train the shuffled mask from the same initial weights). ``model`` is left as it was."""
    layers = pruned_layers(model)
    _check_model_masks(layers, _check_masks(masks))
    out = copy.deepcopy(model)
    for name, module in pruned_layers(out):
        set_mask(module, masks[f"{name}.weight"].to(module.weight.device).bool())
    return out


@contextlib.contextmanager
def _plain_weights(model: nn.Module) -> Iterator[None]:
    """Inside the block a masked layer's ``weight`` is θ_orig itself (its parametrisations swapped for identities),
    so that an initialisation writing into ``module.weight`` in place redraws θ_orig, not a temporary θ_orig ⊙ m.
    Why not remove the parametrisations: torch deletes the ``weight`` property from the parametrised class, which a
    deep copy shares with its original, and the original model would lose its weights."""
    chains = [m.parametrizations.weight for _, m in pruned_layers(model) if parametrize.is_parametrized(m, "weight")]
    saved = [list(chain) for chain in chains]
    for chain in chains:
        for i in range(len(chain)):
            chain[i] = nn.Identity()
    try:
        yield
    finally:
        for chain, modules in zip(chains, saved):
            for i, module in enumerate(modules):
                chain[i] = module


def initialises_itself(model: nn.Module) -> bool:
    """Whether ``model`` keeps an initialisation of its own (the zoo's ``own_init`` nets, torchvision's models)
    rather than the zoo's `cropkit.core.layers.signal_preserving_init`."""
    return getattr(model, "own_init", False) or type(model).__module__.startswith("torchvision.")


def _check_model_masks(layers: list[tuple[str, nn.Module]], masks: dict[str, torch.Tensor]) -> None:
    """A ValueError unless ``masks`` holds one mask of the right shape for every prunable weight, and nothing else."""
    keys = [f"{name}.weight" for name, _ in layers]
    if set(masks) != set(keys):
        raise ValueError(f"masks must name exactly the model's prunable weights {keys}; missing "
                         f"{[k for k in keys if k not in masks]}, unknown {[k for k in masks if k not in keys]}")
    for (name, module), key in zip(layers, keys):
        shape = tuple(module.weight.shape)
        if tuple(masks[key].shape) != shape:
            raise ValueError(f"masks[{key!r}] has shape {tuple(masks[key].shape)}; the weight has {shape}")


# ----------------------------------------------------------------------------- random channels (structured)

def kept_nodes(model: nn.Module) -> dict[str, int]:
    """{node layer: its number of output nodes}: the kept counts of a structurally pruned model (whose layers keep
    their names), to hand to `random_channels`."""
    return {name: module.weight.shape[0] for name, module in node_layers(model)}


def random_channel_scores(model: nn.Module, kept: dict, example_inputs: torch.Tensor,
                          seed: int = 0) -> dict[str, torch.Tensor]:
    """Node scores with which `cropkit.core.structured.structured_plan`, at node sparsity 1 − Σ kept / Σ nodes,
    keeps ``kept[layer]`` random nodes in every node layer: 1 for the chosen nodes, 0 for the others.

    The surgery ranks each coupled group of channels (`cropkit.core.dependencies.coupled_outputs`: a conv with the
    linear layer reading its flattened output, the layers of a residual stream) by the sum of its members' scores,
    so the random choice is made per group: k of its channels, uniformly, the same channels in every member. Every
    unit of a removed channel then scores 0 and every kept one at least 1, so the global order removes exactly the
    0-scored ones first. ``kept``: {node layer: count} or {node layer: boolean node mask}; a layer left out keeps
    all its nodes. Members of a group must ask for the same count, and each member must carry every channel of its
    group (concatenations are refused).
    """
    counts = _kept_counts(model, kept)
    _check_seed(seed)
    generator = torch.Generator().manual_seed(seed)  # on the CPU: the same channels on every device
    scores = {name: torch.ones(m.weight.shape[0], dtype=torch.float64) for name, m in node_layers(model)}
    for channels, members in coupled_outputs(model, example_inputs):
        k = _group_count(channels, members, counts)
        chosen = torch.zeros(channels, dtype=torch.float64)
        chosen[torch.randperm(channels, generator=generator)[:k]] = 1.0
        for name, idx, root_idx in members:
            scores[name][idx] = chosen[root_idx]
    return scores


def _kept_counts(model: nn.Module, kept) -> dict[str, int]:
    """{node layer: nodes to keep} for every node layer (all of them where ``kept`` is silent); checked."""
    layers = dict(node_layers(model))
    if not isinstance(kept, dict):
        raise ValueError("kept must be a dict {node layer: number of nodes to keep, or a boolean node mask}, e.g. "
                         "kept_nodes(pruned_model)")
    unknown = [name for name in kept if name not in layers]
    if unknown:
        raise ValueError(f"kept names {unknown}, which are not node layers of the model; allowed: {list(layers)}")
    counts = {name: m.weight.shape[0] for name, m in layers.items()}
    for name, value in kept.items():
        nodes = counts[name]
        if isinstance(value, torch.Tensor) and value.dtype == torch.bool:
            if tuple(value.shape) != (nodes,):
                raise ValueError(f"kept[{name!r}] is a node mask of shape {tuple(value.shape)}; the layer has {nodes} "
                                 f"nodes")
            value = int(value.sum())
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= nodes:
            raise ValueError(f"kept[{name!r}] must be a count in [1, {nodes}] (every layer keeps a node) or a "
                             f"boolean node mask; got {value!r}")
        counts[name] = int(value)
    return counts


def _group_count(channels: int, members: list, counts: dict[str, int]) -> int:
    """The number of channels a coupled group keeps: the count every member asks for."""
    names = [name for name, _, _ in members]
    partial = [name for name, _, root_idx in members if len(root_idx) != channels]
    if partial:
        raise ValueError(f"layers {partial} carry only part of the {channels} channels of their coupled group "
                         f"{names} (a concatenation); random_channels keeps counts only for sequential, flattened "
                         f"and residual coupling")
    asked = {counts[name] for name in names}
    if len(asked) > 1:
        raise ValueError(f"layers {names} are coupled (they lose the same channels in any structured prune), so "
                         f"they must keep the same number of nodes; kept asks for {[counts[n] for n in names]}")
    return asked.pop()


def random_channels_plan(model: nn.Module, kept: dict, example_inputs: torch.Tensor,
                         seed: int = 0) -> StructuredPlan:
    """The structured plan (`cropkit.core.structured.structured_plan`) that keeps ``kept[layer]`` nodes in every
    node layer, chosen at random (`random_channel_scores`); ``random_channels`` applies it.

    Exactly preserved: every node layer's kept-node count, hence (the surgery cutting a channel's inputs wherever
    it is read) every layer's kept in- and output channels, its weight count and its FLOPs, and the model's node
    sparsity. Not preserved, by design: which channels, and whatever the criterion's choice did to the magnitudes
    that stay. Where the surgery cuts whole units rather than channels (next to a grouped, non-depthwise
    convolution) the counts may not be reachable; that, like any count the plan misses, is a ValueError, never a
    silently different architecture.
    """
    counts = _kept_counts(model, kept)
    scores = random_channel_scores(model, counts, example_inputs, seed)
    dense = kept_nodes(model)
    removed = sum(dense.values()) - sum(counts.values())
    plan = structured_plan(model, scores, removed / sum(dense.values()), example_inputs, budget="nodes")
    missed = {name: (n - len(plan.removed.get(name, ())), counts[name]) for name, n in dense.items()
              if n - len(plan.removed.get(name, ())) != counts[name]}
    if missed:
        raise ValueError(f"the structured surgery cannot keep these counts at random (layer: (kept, asked)): "
                         f"{missed}; its units span several channels here (grouped convolutions)")
    return plan


def random_channels(model: nn.Module, kept: dict, example_inputs: torch.Tensor, seed: int = 0) -> nn.Module:
    """Remove nodes so that every node layer keeps ``kept[layer]`` of them, chosen at random: the structured
    analogue of `shuffle_within_layers`. Changes ``model`` in place and returns it, as
    `cropkit.core.structured.structured` does; what is preserved exactly is said in `random_channels_plan`.

        small = structured(copy.deepcopy(dense), node_scores, 0.8, x)
        control = random_channels(copy.deepcopy(dense), kept_nodes(small), x, seed=1)
    """
    return random_channels_plan(model, kept, example_inputs, seed).apply()
