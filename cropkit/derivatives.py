"""What the pruning criteria differentiate, written once: the scoring batches, the effective weights, g = ∇_θ L,
the Hessian-gradient product Hg, gates on node outputs, and the layer → BatchNorm pairs.

The conventions (eval mode, effective weights θ_orig ⊙ m, H(g ⊙ m) on a masked network, several batches
averaged) are stated in `cropkit.scores`, whose formulas call these.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from cropkit.models import classifier_name, require_prunable
from cropkit.plumbing import eval_mode

Scores = dict[str, torch.Tensor]
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


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


def gate_gradient(model: nn.Module, batches, gated: dict[str, nn.Module], loss_fn) -> dict[str, torch.Tensor]:
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


def gate_hessian_gradient(model: nn.Module, batches, gated: dict[str, nn.Module], loss_fn) -> dict[str, torch.Tensor]:
    """∂z/∂c at c = 1, z = gᵀ ∇_θ L(θ, c) with g = ∇_θ L(θ, 1) held constant (g ⊙ m on a masked network, as in
    `hessian_gradient`), for gates on the outputs of ``gated``: g over all batches first, then one double
    backprop per batch."""
    loss_fn, data = _loss_fn(loss_fn), _batches(batches, model)
    g = _flowing(model, gradient(model, data, loss_fn))
    like = next(iter(model.parameters()))
    total = None
    with eval_mode(model), gates(gated, like) as cs:
        for inputs, targets in data:
            with parametrize.cached():
                weights = _effective_weights(model)
                loss = loss_fn(model(inputs), targets) / len(data)
                grads = _grad(loss, list(weights.values()), create_graph=True)
                z = sum((gi * g[k]).sum() for k, gi in zip(weights, grads))
                dz = _grad(z, list(cs.values()))
            total = dz if total is None else [t + d for t, d in zip(total, dz)]
    return {name: d.detach() for name, d in zip(cs, total)}


# ----------------------------------------------------------------------------- layer → BatchNorm

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


def norms_or_raise(model: nn.Module, batches) -> dict[str, str]:
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
