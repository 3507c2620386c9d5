r"""Pruning criteria: one number per weight, or one per node. Higher = more important = kept.

Notation (the paper's, Rachwan et al. 2022, §3): θ are the prunable weights (``weight`` of every
Conv1d/Conv2d/Linear), L the mean training loss over the scoring batches, g = ∇_θ L, H = ∇²_θ L.

Per-weight scores ``fn(model, batches, loss_fn=None, seed=0) -> {"<module>.weight": tensor}``

    random     u ~ U(0, 1) i.i.d.
    magnitude  |θ|
    snip       |θ ⊙ g|                                   (Lee et al. 2019)
    grasp      θ ⊙ Hg                                    (Wang et al. 2020, see below for the sign)
    crop       |θ ⊙ Hg|                                  (Rachwan et al. 2022; H(g ⊙ m) once masked)
    synflow    |θ ⊙ ∂R/∂θ|,  R = 1ᵀ(∏_l |θ_l|)1          (Tanaka et al. 2020, data-free)

GraSP's sign. Removing weight i changes the gradient flow by ≈ 2·S_i with S = −θ ⊙ Hg (see below), and
GraSP removes the weights with the *largest* S: those whose removal raises the gradient flow the most.
As a "higher = keep" score that is θ ⊙ Hg = −S, so ``grasp`` returns θ ⊙ Hg (signed, no absolute value)
and the usual top-k keeps exactly what GraSP keeps. (The EarlyCroP reference code kept the weights GraSP
removes; we follow the GraSP paper.) The GraSP code divides the logits by a temperature T = 200 while
computing Hg; pass ``loss_fn=lambda out, y: F.cross_entropy(out / 200, y)`` to reproduce that.

Why Hg. Removing a weight (θ → θ − θ_i e_i) changes the gradient flow GF = gᵀg to first order by
ΔGF ≈ −2 θ_i (Hg)_i, so |θ ⊙ Hg| ranks weights by how much their removal would change GF (CroP keeps
GF, and with it the NTK-weighted form g_L(Y)ᵀ·NTK·g_L(Y), `cropkit.core.ntk`; lesson 01).

Several batches. With B scoring batches, L = (1/B) Σ_b L_b, so g = (1/B) Σ_b ∇L_b and
Hg = (1/B) Σ_b H_b g: g is averaged first (one backward per batch), then held constant while one
Hessian-vector product per batch is averaged: by default the double backprop ∇_θ(gᵀ∇_θ L_b), or forward over
reverse, ∂/∂ε ∇_θ L_b(θ + εg) (``method="forward"``; `cropkit.core.derivatives.hessian_gradient`). H is never formed.

Per-node scores ``fn(model, batches, loss_fn=None, seed=0) -> {"<module>": 1-D tensor over out nodes}``
(every prunable layer except the classifier, whose outputs are not nodes). Gates: a forward hook
multiplies each such layer's output channel-wise by c = 1 (after the layer's bias, before any norm):

    random_nodes       u ~ U(0, 1), one draw per coupled group (Random-S)
    snap_nodes         |∂L/∂c|                           (SNAP, Verdenius et al. 2020)
    crop_nodes         |∂z/∂c|,  z = gᵀ∇_θL, g constant  (CroP-S; g ⊙ m on a masked network)
    l1_nodes           ‖θ_node‖₁ of the node's filter    (EfficientConvNets, Li et al. 2017)
    bn_nodes           |γ| of the BatchNorm right after  (EarlyBird, You et al. 2020)
    taylor_gate_nodes  |γ_g · ∂L/∂γ_g|, gate γ_g = 1 after that BatchNorm  (GateDecorators, You et al. 2019)

Model mode. Scores are computed in **eval mode**, as the EarlyCroP reference code does (GraSP excepted: see
`grasp`): BatchNorm uses its running statistics and dropout is off, so scoring is deterministic and leaves no trace
in the BN buffers. Every module's own mode is restored afterwards.

Effective weights. If the model carries masks (``cropkit.core.prune.unstructured``), θ means the *effective*
weight θ_orig ⊙ m: the gradient and the Hessian-vector product are taken with respect to it. The pruned
weights are frozen at zero and carry no gradient flow, so re-scoring a masked network (CroPit, iterative
EarlyCroP) uses H(g ⊙ m), not Hg: the gradient flow of the masked network is (g ⊙ m)ᵀ(g ⊙ m).

Everything runs on the device and in the dtype of the model; batches are moved there. The derivatives
themselves (g, Hg, gate gradients) are `cropkit.core.derivatives`; this module holds the formulas.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Callable

import torch
from torch import nn
from torch.nn.utils import parametrize

from cropkit.core.dependencies import coupled_outputs
from cropkit.core.derivatives import (
    Scores,
    grad_or_zeros,
    gradient,
    hessian_gradient,
    prepared_batches,
    scored_layers,
    seeded_uniform,
    weights_now,
)
from cropkit.core.layers import node_layers, norms_or_raise
from cropkit.core.node_derivatives import gate_gradient, gate_hessian_gradient
from cropkit.core.plumbing import eval_mode

# ----------------------------------------------------------------------------- per-weight criteria

def random(model: nn.Module, batches=None, loss_fn=None, seed: int = 0) -> Scores:
    """u ~ U(0, 1) per weight (one seeded stream per layer, identical on every device)."""
    return {k: seeded_uniform(w.shape, seed + i, w) for i, (k, w) in enumerate(weights_now(model).items())}


def magnitude(model: nn.Module, batches=None, loss_fn=None, seed: int = 0) -> Scores:
    """|θ|."""
    return {k: w.abs() for k, w in weights_now(model).items()}


def snip(model: nn.Module, batches, loss_fn=None, seed: int = 0) -> Scores:
    """|θ ⊙ g|  (SNIP, Lee et al. 2019: connection sensitivity)."""
    theta, g = weights_now(model), gradient(model, batches, loss_fn)
    return {k: (theta[k] * g[k]).abs() for k in theta}


def grasp(model: nn.Module, batches, loss_fn=None, seed: int = 0, method: str = "double",
          norms: str = "train") -> Scores:
    """θ ⊙ Hg, i.e. −S with GraSP's S = −θ ⊙ Hg. GraSP removes the largest S, so keeping the highest θ ⊙ Hg
    keeps exactly what GraSP keeps (signed: no absolute value). ``method``: how Hg is computed (`hessian_gradient`).

    Scored with every BatchNorm normalising with the batch's statistics (``norms="train"``, `scoring_mode`), as
    Wang et al.'s code scores (its ``GraSP`` copies the freshly built network without ``.eval()``): at
    initialisation an eval-mode BatchNorm is the identity, so in eval mode the score ranks the weights of an
    un-normalised network. There GraSP's keep rule favours weights whose removal would lower the gradient flow most:
    weights that amplify the signal coherently, and a sign-biased classifier; on a ResNet the pruned network then
    starts at chance and trains far worse than one scored with batch statistics (``python -m benchmarks.grasp_mode``
    measures both). With batch statistics a conv followed by a BatchNorm is scale-invariant per channel,
    Σ_{i∈channel} θ_i g_i = 0, so GraSP cannot reward a whole channel for amplifying. ``norms="eval"`` gives the
    eval-mode score."""
    theta, (_, hg) = weights_now(model), hessian_gradient(model, batches, loss_fn, method, norms)
    return {k: theta[k] * hg[k] for k in theta}


def crop(model: nn.Module, batches, loss_fn=None, seed: int = 0, method: str = "double") -> Scores:
    """|θ ⊙ Hg|: weights whose removal changes the gradient flow gᵀg least score lowest (CroP).
    ``method``: how Hg is computed, ``"double"`` or ``"forward"`` (`hessian_gradient`; equal to rounding)."""
    theta, (_, hg) = weights_now(model), hessian_gradient(model, batches, loss_fn, method)
    return {k: (theta[k] * hg[k]).abs() for k in theta}


def synflow(model: nn.Module, batches, loss_fn=None, seed: int = 0) -> Scores:
    """|θ ⊙ ∂R/∂θ| with R = Σ f_{|θ|}(1): the network with every parameter and buffer replaced by its absolute
    value, evaluated on an all-ones input (Tanaka et al. 2020). Data-free: ``batches`` only gives the input
    shape. One round; `cropkit.core.prune.synflow` iterates it (the algorithm is iterative by design).

    Computed in the model's dtype on the model itself, made absolute in place and restored exactly afterwards
    (`linearised`; as Tanaka et al.'s code does: a copy per round cost more than the pass). R is a product of |θ|
    over the whole depth, so in float32 it can over- or underflow: when R or a nonzero score is not finite or leaves
    [1e-30, 1e30] (float32 ends near 1e±38), the round is recomputed in float64 on a copy and the scores are
    returned in float64. (A score more than ~15 orders of magnitude below all others can still flush
    to zero in float32: it is among the first pruned either way.)
    """
    inputs, _ = prepared_batches(batches, model)[0]
    with linearised(model):
        return synflow_round(model, inputs.shape[1:])


SYNFLOW_RANGE = (1e-30, 1e30)  # nonzero float32 SynFlow scores outside it are recomputed in float64


@contextlib.contextmanager
def linearised(model: nn.Module):
    """SynFlow's linearised network for the block: eval mode, every floating-point parameter and buffer made absolute
    in place; the values are restored exactly afterwards, even when the block raises. (Masks may change inside.)"""
    tensors = [t for t in list(model.parameters()) + list(model.buffers()) if t.is_floating_point()]
    saved = [t.detach().clone() for t in tensors]
    try:
        with torch.no_grad():
            for t in tensors:
                t.abs_()
        with eval_mode(model):
            yield model
    finally:
        with torch.no_grad():
            for t, original in zip(tensors, saved):
                t.copy_(original)


def synflow_round(model: nn.Module, input_shape, layers=None) -> Scores:
    """One SynFlow score of a `linearised` model, w.r.t. its effective weights (θ_orig ⊙ m for the kit's masks), in
    its dtype, or in float64 (computed on a copy, returned as such) when that dtype cannot represent the scores.
    ``layers``: its prunable layers, if listed."""
    out, flat, r = _synflow_pass(model, input_shape, layers or scored_layers(model))
    if flat.dtype != torch.float64 and not _held(flat, r):
        double = copy.deepcopy(model).double()
        out = _synflow_pass(double, input_shape, scored_layers(double))[0]  # kept in float64: float32 cannot hold them
    return out


def _held(flat: torch.Tensor, r: float) -> bool:
    """Whether R, the largest score and the smallest nonzero score (scores are ≥ 0) lie in SYNFLOW_RANGE; NaN fails.

    The smallest nonzero score is read from the float32 bit patterns, which order nonnegative floats as their
    values do: b − 1 masked to 31 bits sends 0 to the top and keeps the order of the rest, so one ``amin`` finds it
    (a masked minimum, ``torch.where`` and ``amin``, took six times as long as the whole check)."""
    low, high = SYNFLOW_RANGE
    if not (low <= r <= high and flat.amax() <= high):
        return False
    smallest = int((flat.float().view(torch.int32) - 1).bitwise_and_(0x7FFFFFFF).amin()) + 1  # its bit pattern
    return smallest == 0x7FFFFFFF + 1 or smallest >= _LOW_BITS  # all zero: only bias paths carry R


_LOW_BITS = int(torch.tensor(SYNFLOW_RANGE[0], dtype=torch.float32).view(torch.int32))  # SYNFLOW_RANGE[0]'s pattern


def _synflow_pass(model: nn.Module, input_shape, layers) -> tuple[Scores, torch.Tensor, float]:
    """{name: |θ ⊙ ∂R/∂θ|}, the same scores flattened into one tensor, and R."""
    with parametrize.cached():
        weights = {f"{name}.weight": m.weight for name, m in layers}  # cached: the tensors the forward uses
        like = next(iter(weights.values()))
        r = model(like.new_ones((1, *input_shape))).sum()
        grads = grad_or_zeros(r, list(weights.values()))
    out = {k: (w.detach() * g).abs() for (k, w), g in zip(weights.items(), grads)}
    return out, torch.cat([s.flatten() for s in out.values()]), float(r.detach())


# ----------------------------------------------------------------------------- per-node criteria

def random_nodes(model: nn.Module, batches, loss_fn=None, seed: int = 0) -> Scores:
    """Random-S: one u ~ U(0, 1) per channel of each *coupled group*, shared out among the group's k layers as u / k.

    A structured prune ranks a group by the sum of its members' node scores, so every group's channel scores
    u / k + … + u / k = u are uniform whatever k: every layer keeps the same fraction in expectation. (One draw
    per layer would give a residual stream of 3 members an Irwin–Hall(3) score: on ResNet18 at 0.9 it kept
    75–92 % of its channels and the block-internal convs 3–19 %.) ``batches``: one batch traces the groups.
    """

    inputs, _ = prepared_batches(batches, model)[0]
    out = {name: torch.zeros(m.weight.shape[0], dtype=torch.float64) for name, m in node_layers(model)}
    generator = torch.Generator().manual_seed(seed)  # on the CPU: the same scores on every device
    for channels, members in coupled_outputs(model, inputs[:1]):
        u = torch.rand(channels, generator=generator, dtype=torch.float64)
        k = torch.zeros(channels, dtype=torch.float64)
        for _, _, root_idx in members:
            k.index_add_(0, root_idx, torch.ones(len(root_idx), dtype=torch.float64))
        for name, idx, root_idx in members:
            out[name][idx] = u[root_idx] / k[root_idx]
    like = scored_layers(model)[0][1].weight
    return {name: v.to(like.device, like.dtype) for name, v in out.items()}


def snap_nodes(model: nn.Module, batches, loss_fn=None, seed: int = 0) -> Scores:
    """|∂L/∂c| at c = 1 (SNAP: SNIP's sensitivity for whole nodes)."""
    grads = gate_gradient(model, batches, dict(node_layers(model)), loss_fn)
    return {name: g.abs() for name, g in grads.items()}


def crop_nodes(model: nn.Module, batches, loss_fn=None, seed: int = 0, method: str = "double") -> Scores:
    """|∂z/∂c| at c = 1, z = gᵀ ∇_θ L(θ, c) with g = ∇_θ L(θ, 1) held constant (CroP-S).

    The gate-level Hessian-gradient product: how much the gradient flow moves when a node is scaled.
    Averaged like `hessian_gradient`: g over all batches first, then one Hessian-gradient product per batch
    (``method`` as there).
    """
    grads = gate_hessian_gradient(model, batches, dict(node_layers(model)), loss_fn, method)
    return {name: d.abs() for name, d in grads.items()}


def l1_nodes(model: nn.Module, batches=None, loss_fn=None, seed: int = 0) -> Scores:
    """‖θ_j‖₁ = Σ |θ_j,...| over node j's filter or weight row (EfficientConvNets, Li et al. 2017)."""
    with parametrize.cached():
        return {name: m.weight.detach().abs().flatten(1).sum(1) for name, m in node_layers(model)}


def bn_nodes(model: nn.Module, batches, loss_fn=None, seed: int = 0) -> Scores:
    """|γ_j| of the BatchNorm right after the layer (EarlyBird, You et al. 2020).

    Every node layer must have such a norm (else ValueError): an unscored layer would escape the prune.
    ``batches`` is used for one forward pass that finds the layer → norm pairs.
    """
    modules = dict(model.named_modules())
    norms = norms_or_raise(model, prepared_batches(batches, model)[0][0])
    return {layer: modules[norm].weight.detach().abs() for layer, norm in norms.items()}


def taylor_gate_nodes(model: nn.Module, batches, loss_fn=None, seed: int = 0) -> Scores:
    """|γ_g ⊙ ∂L/∂γ_g| for a gate γ_g = 1 on the output of the BatchNorm right after each layer
    (GateDecorators' first-order Taylor estimate of the loss change when the node is removed, You et al. 2019).
    At γ_g = 1 this is |∂L/∂γ_g|: the one-shot score of untrained gates. The method itself trains the gates
    with a sparsity penalty and accumulates the score over its tick phase (`cropkit.methods.gates`). Every node layer
    needs a following BatchNorm, as in `bn_nodes`."""
    norms = norms_or_raise(model, prepared_batches(batches, model)[0][0])
    modules = dict(model.named_modules())
    grads = gate_gradient(model, batches, {layer: modules[norm] for layer, norm in norms.items()}, loss_fn)
    return {layer: g.abs() for layer, g in grads.items()}  # γ_g = 1, so |γ_g · ∂L/∂γ_g| = |∂L/∂γ_g|


# ----------------------------------------------------------------------------- registries

WEIGHT_SCORES: dict[str, Callable[..., Scores]] = {
    "random": random,
    "magnitude": magnitude,
    "snip": snip,
    "grasp": grasp,
    "crop": crop,
    "synflow": synflow,
}

NODE_SCORES: dict[str, Callable[..., Scores]] = {
    "random_nodes": random_nodes,
    "snap_nodes": snap_nodes,
    "crop_nodes": crop_nodes,
    "l1_nodes": l1_nodes,
    "bn_nodes": bn_nodes,
    "taylor_gate_nodes": taylor_gate_nodes,
}


def get(name: str) -> Callable[..., Scores]:
    """A criterion by name, from WEIGHT_SCORES or NODE_SCORES."""
    if name in WEIGHT_SCORES:
        return WEIGHT_SCORES[name]
    if name in NODE_SCORES:
        return NODE_SCORES[name]
    raise ValueError(f"unknown criterion {name!r}; per-weight criteria are {list(WEIGHT_SCORES)}, "
                     f"per-node criteria are {list(NODE_SCORES)}")
