r"""Pruning criteria: one number per weight, or one per node. Higher = more important = kept.

Notation (SPEC §1): θ are the prunable weights (``weight`` of every Conv1d/Conv2d/Linear), L the mean
training loss over the scoring batches, g = ∇_θ L, H = ∇²_θ L.

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
GF, and with it the NTK-weighted form g_L(Y)ᵀ·NTK·g_L(Y), SPEC §2).

Several batches. With B scoring batches, L = (1/B) Σ_b L_b, so g = (1/B) Σ_b ∇L_b and
Hg = (1/B) Σ_b H_b g: g is averaged first (one backward per batch), then held constant while one
Hessian-vector product per batch — the double backprop ∇_θ(gᵀ∇_θ L_b) — is averaged. H is never formed.

Per-node scores ``fn(model, batches, loss_fn=None, seed=0) -> {"<module>": 1-D tensor over out nodes}``
(every prunable layer except the classifier, whose outputs are not nodes). Gates: a forward hook
multiplies each such layer's output channel-wise by c = 1 (after the layer's bias, before any norm):

    random_nodes       u ~ U(0, 1), one draw per coupled group (Random-S)
    snap_nodes         |∂L/∂c|                           (SNAP, Verdenius et al. 2020)
    crop_nodes         |∂z/∂c|,  z = gᵀ∇_θL, g constant  (CroP-S; g ⊙ m on a masked network)
    l1_nodes           ‖θ_node‖₁ of the node's filter    (EfficientConvNets, Li et al. 2017)
    bn_nodes           |γ| of the BatchNorm right after  (EarlyBird, You et al. 2020)
    taylor_gate_nodes  |γ_g · ∂L/∂γ_g|, gate γ_g = 1 after that BatchNorm  (GateDecorators, You et al. 2019)

Model mode. Scores are computed in **eval mode**, as the EarlyCroP reference code does: BatchNorm uses
its running statistics and dropout is off, so scoring is deterministic and leaves no trace in the BN
buffers. Every module's own mode is restored afterwards.

Effective weights. If the model carries masks (``cropkit.prune.unstructured``), θ means the *effective*
weight θ_orig ⊙ m: the gradient and the Hessian-vector product are taken with respect to it. The pruned
weights are frozen at zero and carry no gradient flow, so re-scoring a masked network (CroPit, iterative
EarlyCroP) uses H(g ⊙ m), not Hg: the gradient flow of the masked network is (g ⊙ m)ᵀ(g ⊙ m).

Everything runs on the device and in the dtype of the model; batches are moved there.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from cropkit.models import classifier_name, require_prunable
from cropkit.plumbing import eval_mode

Scores = dict[str, torch.Tensor]
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


# ----------------------------------------------------------------------------- plumbing

def _layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return require_prunable(model, "scoring")


def _node_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Prunable layers whose outputs are nodes: all but the classifier."""
    classifier = classifier_name(model)
    return [(name, m) for name, m in _layers(model) if name != classifier]


def _batches(batches: Iterable, model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    weight = _layers(model)[0][1].weight  # validates the model first
    device, dtype = weight.device, weight.dtype
    out = []
    for inputs, targets in batches:
        inputs = inputs.to(device)
        out.append((inputs.to(dtype) if inputs.is_floating_point() else inputs, targets.to(device)))
    if not out:
        raise ValueError("batches is empty; pass an iterable of at least one (inputs, targets) batch "
                         "from the training set")
    return out


def _effective_weights(model: nn.Module) -> Scores:
    """{"<module>.weight": the tensor the forward pass uses}. Call inside ``parametrize.cached()`` so that a
    masked weight (θ_orig ⊙ m) is computed once and reused by the forward: gradients w.r.t. it are
    gradients w.r.t. the effective weight."""
    return {f"{name}.weight": m.weight for name, m in _layers(model)}


def _grad(out: torch.Tensor, inputs: list[torch.Tensor], **kwargs) -> list[torch.Tensor]:
    """torch.autograd.grad with zeros (not None) for inputs the output does not depend on."""
    if not out.requires_grad:
        return [torch.zeros_like(t) for t in inputs]
    grads = torch.autograd.grad(out, inputs, allow_unused=True, **kwargs)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads)]


def _loss_fn(loss_fn: Callable | None) -> Callable:
    return F.cross_entropy if loss_fn is None else loss_fn


def _uniform(shape, seed: int, like: torch.Tensor) -> torch.Tensor:
    # A CPU generator so that the same seed gives the same scores on every device.
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator, dtype=torch.float64).to(like.device, like.dtype)


# ----------------------------------------------------------------------------- gradients

def _sum_over_batches(model: nn.Module, batches, loss_fn: Callable | None, per_batch) -> Scores:
    """Σ_b per_batch(weights, L_b / B) over the scoring batches, in eval mode, with ``weights`` the effective
    prunable weights of that forward pass (``parametrize.cached``: a masked weight is computed once)."""
    loss_fn, data = _loss_fn(loss_fn), _batches(batches, model)
    total = None
    with eval_mode(model):
        for inputs, targets in data:
            with parametrize.cached():
                weights = _effective_weights(model)
                loss = loss_fn(model(inputs), targets) / len(data)
                values = per_batch(list(weights.values()), loss)
            total = values if total is None else [t + v for t, v in zip(total, values)]
    return {k: v.detach() for k, v in zip(weights, total)}


def gradient(model: nn.Module, batches, loss_fn: Callable | None = None) -> Scores:
    """g = ∇_θ L with L = (1/B) Σ_b L_b, w.r.t. the effective prunable weights (eval mode)."""
    return _sum_over_batches(model, batches, loss_fn, lambda weights, loss: _grad(loss, weights))


def _masks(model: nn.Module) -> Scores:
    """{"<module>.weight": mask m} of every masked prunable layer (a parametrisation with a ``mask`` buffer, as
    `cropkit.prune.unstructured` adds); unmasked layers are absent."""
    out = {}
    for name, m in _layers(model):
        if parametrize.is_parametrized(m, "weight"):
            for p in m.parametrizations.weight:
                if isinstance(getattr(p, "mask", None), torch.Tensor):
                    out[f"{name}.weight"] = p.mask
    return out


def _flowing(model: nn.Module, g: Scores) -> Scores:
    """g ⊙ m: a pruned weight is frozen at zero, so its gradient carries no gradient flow."""
    m = _masks(model)
    return {k: v * m[k].to(v.dtype) if k in m else v for k, v in g.items()}


def hessian_gradient(model: nn.Module, batches, loss_fn: Callable | None = None) -> tuple[Scores, Scores]:
    """(g, Hg): g as in `gradient`, then Hg = (1/B) Σ_b ∇_θ(gᵀ ∇_θ L_b) with g held constant.

    One Hessian-vector product (double backprop) per batch; H itself is never formed.

    On a masked network g is first restricted to the kept weights, g ← g ⊙ m, and the product is H(g ⊙ m): a
    pruned weight is frozen at zero and takes no part in the gradient flow gᵀg of the network being re-scored
    (as the EarlyCroP code computes z = Σ g ⊙ ∇L_b ⊙ m, and as `cropkit.ntk.gradient_flow` counts a pruned net).
    The returned g is g ⊙ m.
    """
    data = _batches(batches, model)
    g = list(_flowing(model, gradient(model, data, loss_fn)).values())

    def hvp(weights, loss):
        grads = _grad(loss, weights, create_graph=True)
        z = sum((gi * g_const).sum() for gi, g_const in zip(grads, g))  # gᵀ∇L_b, g constant
        return _grad(z, weights)

    hg = _sum_over_batches(model, data, loss_fn, hvp)
    return dict(zip(hg, g)), hg


def _weights_now(model: nn.Module) -> Scores:
    with parametrize.cached():
        return {k: w.detach() for k, w in _effective_weights(model).items()}


# ----------------------------------------------------------------------------- per-weight criteria

def random(model: nn.Module, batches=None, loss_fn=None, seed: int = 0) -> Scores:
    """u ~ U(0, 1) per weight (one seeded stream per layer, identical on every device)."""
    return {k: _uniform(w.shape, seed + i, w) for i, (k, w) in enumerate(_weights_now(model).items())}


def magnitude(model: nn.Module, batches=None, loss_fn=None, seed: int = 0) -> Scores:
    """|θ|."""
    return {k: w.abs() for k, w in _weights_now(model).items()}


def snip(model: nn.Module, batches, loss_fn=None, seed: int = 0) -> Scores:
    """|θ ⊙ g|  (SNIP, Lee et al. 2019: connection sensitivity)."""
    theta, g = _weights_now(model), gradient(model, batches, loss_fn)
    return {k: (theta[k] * g[k]).abs() for k in theta}


def grasp(model: nn.Module, batches, loss_fn=None, seed: int = 0) -> Scores:
    """θ ⊙ Hg, i.e. −S with GraSP's S = −θ ⊙ Hg. GraSP removes the largest S, so keeping the highest θ ⊙ Hg
    keeps exactly what GraSP keeps (signed: no absolute value)."""
    theta, (_, hg) = _weights_now(model), hessian_gradient(model, batches, loss_fn)
    return {k: theta[k] * hg[k] for k in theta}


def crop(model: nn.Module, batches, loss_fn=None, seed: int = 0) -> Scores:
    """|θ ⊙ Hg|: weights whose removal changes the gradient flow gᵀg least score lowest (CroP)."""
    theta, (_, hg) = _weights_now(model), hessian_gradient(model, batches, loss_fn)
    return {k: (theta[k] * hg[k]).abs() for k in theta}


def synflow(model: nn.Module, batches, loss_fn=None, seed: int = 0) -> Scores:
    """|θ ⊙ ∂R/∂θ| with R = Σ f_{|θ|}(1): the network with every parameter and buffer replaced by its absolute
    value, evaluated on an all-ones input (Tanaka et al. 2020). Data-free: ``batches`` only gives the input
    shape. One round; `cropkit.prune.synflow` iterates it (the algorithm is iterative by design).
    Computed in float64 on a copy, because the product over layers under- or overflows in float32.
    """
    inputs, _ = _batches(batches, model)[0]
    linear = copy.deepcopy(model).double()
    with torch.no_grad():
        for tensor in list(linear.parameters()) + list(linear.buffers()):
            if tensor.is_floating_point():
                tensor.abs_()
    ones = torch.ones((1, *inputs.shape[1:]), dtype=torch.float64, device=inputs.device)
    with eval_mode(linear), parametrize.cached():
        weights = _effective_weights(linear)
        grads = _grad(linear(ones).sum(), list(weights.values()))
    dtype = next(iter(model.parameters())).dtype
    return {k: (w.detach() * g).abs().to(dtype) for (k, w), g in zip(weights.items(), grads)}


# ----------------------------------------------------------------------------- gates

def _gate_shape(module: nn.Module, output: torch.Tensor, channels: int) -> tuple[int, ...]:
    """Broadcast shape of a gate over ``output``: conv channels sit on dim 1, linear features on the last dim."""
    if isinstance(module, nn.Linear):
        return (channels,)
    return (1, channels) + (1,) * (output.dim() - 2)


@contextlib.contextmanager
def gates(modules: dict[str, nn.Module], like: torch.Tensor):
    """Attach a gate c = 1 (requires grad) to the output of each module: out ← out ⊙ c. Yields {name: c}."""
    cs, handles = {}, []
    for name, module in modules.items():
        channels = module.num_features if isinstance(module, NORM_TYPES) else module.weight.shape[0]
        c = torch.ones(channels, dtype=like.dtype, device=like.device, requires_grad=True)

        def hook(mod, inputs, output, c=c):
            return output * c.view(_gate_shape(mod, output, c.numel()))

        cs[name] = c
        handles.append(module.register_forward_hook(hook))
    try:
        yield cs
    finally:
        for handle in handles:
            handle.remove()


def _gate_gradient(model: nn.Module, batches, gated: dict[str, nn.Module], loss_fn) -> dict[str, torch.Tensor]:
    """∂L/∂c at c = 1, L = (1/B) Σ_b L_b, for gates on the outputs of ``gated``."""
    loss_fn, data = _loss_fn(loss_fn), _batches(batches, model)
    like = next(iter(model.parameters()))
    total = None
    with eval_mode(model), gates(gated, like) as cs:
        for inputs, targets in data:
            loss = loss_fn(model(inputs), targets) / len(data)
            grads = _grad(loss, list(cs.values()))
            total = grads if total is None else [t + g for t, g in zip(total, grads)]
    return {name: g.detach() for name, g in zip(cs, total)}


# ----------------------------------------------------------------------------- per-node criteria

def random_nodes(model: nn.Module, batches, loss_fn=None, seed: int = 0) -> Scores:
    """Random-S: one u ~ U(0, 1) per channel of each *coupled group*, shared out among the group's k layers as u / k.

    A structured prune ranks a group by the sum of its members' node scores, so every group's channel scores
    u / k + … + u / k = u are uniform whatever k: every layer keeps the same fraction in expectation. (One draw
    per layer would give a residual stream of 3 members an Irwin–Hall(3) score: on ResNet18 at 0.9 it kept
    75–92 % of its channels and the block-internal convs 3–19 %.) ``batches``: one batch traces the groups.
    """
    from cropkit.dependencies import coupled_outputs  # it imports this module

    inputs, _ = _batches(batches, model)[0]
    out = {name: torch.zeros(m.weight.shape[0], dtype=torch.float64) for name, m in _node_layers(model)}
    generator = torch.Generator().manual_seed(seed)  # on the CPU: the same scores on every device
    for channels, members in coupled_outputs(model, inputs[:1]):
        u = torch.rand(channels, generator=generator, dtype=torch.float64)
        k = torch.zeros(channels, dtype=torch.float64)
        for _, _, root_idx in members:
            k.index_add_(0, root_idx, torch.ones(len(root_idx), dtype=torch.float64))
        for name, idx, root_idx in members:
            out[name][idx] = u[root_idx] / k[root_idx]
    like = _layers(model)[0][1].weight
    return {name: v.to(like.device, like.dtype) for name, v in out.items()}


def snap_nodes(model: nn.Module, batches, loss_fn=None, seed: int = 0) -> Scores:
    """|∂L/∂c| at c = 1 (SNAP: SNIP's sensitivity for whole nodes)."""
    grads = _gate_gradient(model, batches, dict(_node_layers(model)), loss_fn)
    return {name: g.abs() for name, g in grads.items()}


def crop_nodes(model: nn.Module, batches, loss_fn=None, seed: int = 0) -> Scores:
    """|∂z/∂c| at c = 1, z = gᵀ ∇_θ L(θ, c) with g = ∇_θ L(θ, 1) held constant (CroP-S).

    The gate-level Hessian-gradient product: how much the gradient flow moves when a node is scaled.
    Averaged like `hessian_gradient`: g over all batches first, then one double backprop per batch.
    """
    loss_fn, data = _loss_fn(loss_fn), _batches(batches, model)
    g = _flowing(model, gradient(model, data, loss_fn))  # g ⊙ m on a masked network, as in `hessian_gradient`
    like = next(iter(model.parameters()))
    total = None
    with eval_mode(model), gates(dict(_node_layers(model)), like) as cs:
        for inputs, targets in data:
            with parametrize.cached():
                weights = _effective_weights(model)
                loss = loss_fn(model(inputs), targets) / len(data)
                grads = _grad(loss, list(weights.values()), create_graph=True)
                z = sum((gi * g[k]).sum() for k, gi in zip(weights, grads))
                dz = _grad(z, list(cs.values()))
            total = dz if total is None else [t + d for t, d in zip(total, dz)]
    return {name: d.detach().abs() for name, d in zip(cs, total)}


def l1_nodes(model: nn.Module, batches=None, loss_fn=None, seed: int = 0) -> Scores:
    """‖θ_j‖₁ = Σ |θ_j,...| over node j's filter or weight row (EfficientConvNets, Li et al. 2017)."""
    with parametrize.cached():
        return {name: m.weight.detach().abs().flatten(1).sum(1) for name, m in _node_layers(model)}


def following_norms(model: nn.Module, batches) -> dict[str, str]:
    """{prunable layer: the BatchNorm that reads its output directly}, found by one traced forward pass
    (a norm counts when its input *is* the layer's output tensor, so no name heuristics). Layers whose output
    reaches a norm only through an add or a concat (e.g. DenseNet's concatenated features) are absent."""
    inputs, _ = _batches(batches, model)[0]
    produced, found, handles = {}, {}, []
    for name, m in _node_layers(model):
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


def _norms_or_raise(model: nn.Module, batches) -> dict[str, str]:
    """{node layer: its BatchNorm} for *every* node layer, else a ValueError naming the layers without one.

    A layer left unscored would stay whole in a structured prune and push the whole budget onto the others
    (on a `cnn` whose hidden Linear had no norm, EarlyBird cut conv1–conv3 to one channel each)."""
    norms = following_norms(model, batches)
    missing = [name for name, _ in _node_layers(model) if name not in norms]
    if missing:
        raise ValueError(f"{type(model).__name__}: layer(s) {missing} are not followed directly by a BatchNorm; "
                         f"bn_nodes and taylor_gate_nodes score a node by its norm layer, so every node layer "
                         f"needs a conv/linear → BatchNorm pair (the zoo's cnn, cnn1d, resnet18 and vgg16 have them)")
    return norms


def bn_nodes(model: nn.Module, batches, loss_fn=None, seed: int = 0) -> Scores:
    """|γ_j| of the BatchNorm right after the layer (EarlyBird, You et al. 2020).

    Every node layer must have such a norm (else ValueError): an unscored layer would escape the prune.
    ``batches`` is used for one forward pass that finds the layer → norm pairs.
    """
    modules = dict(model.named_modules())
    return {layer: modules[norm].weight.detach().abs() for layer, norm in _norms_or_raise(model, batches).items()}


def taylor_gate_nodes(model: nn.Module, batches, loss_fn=None, seed: int = 0) -> Scores:
    """|γ_g ⊙ ∂L/∂γ_g| for a gate γ_g = 1 on the output of the BatchNorm right after each layer
    (GateDecorators' first-order Taylor estimate of the loss change when the node is removed, You et al. 2019).
    At γ_g = 1 this is |∂L/∂γ_g|: the one-shot score of untrained gates. The method itself trains the gates
    with a sparsity penalty and accumulates the score over its tick phase (`cropkit.gates`). Every node layer
    needs a following BatchNorm, as in `bn_nodes`."""
    norms = _norms_or_raise(model, batches)
    modules = dict(model.named_modules())
    grads = _gate_gradient(model, batches, {layer: modules[norm] for layer, norm in norms.items()}, loss_fn)
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
