"""What the pruning criteria differentiate, written once: the scoring batches, the effective weights, g = ∇_θ L,
the Hessian-gradient product Hg (by double backprop or forward over reverse, `hessian_gradient`; its cheap second
derivatives come from `cropkit.core.kernels`) and gates on node
outputs.

The conventions (eval mode, effective weights θ_orig ⊙ m, H(g ⊙ m) on a masked network, several batches
averaged) are stated in `cropkit.core.scores`, whose formulas call these.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Iterable

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F
from torch.nn.utils import parametrize

from cropkit.core.kernels import derivative_kernels
from cropkit.core.layers import NORM_TYPES, require_prunable
from cropkit.core.plumbing import eval_mode

Scores = dict[str, torch.Tensor]


def scored_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return require_prunable(model, "scoring")


def prepared_batches(batches: Iterable, model: nn.Module) -> list[tuple[torch.Tensor, torch.Tensor]]:
    weight = scored_layers(model)[0][1].weight  # validates the model first
    device, dtype = weight.device, weight.dtype
    out = []
    for inputs, targets in batches:
        inputs = inputs.to(device)
        out.append((inputs.to(dtype) if inputs.is_floating_point() else inputs, targets.to(device)))
    if not out:
        raise ValueError("batches is empty; pass an iterable of at least one (inputs, targets) batch "
                         "from the training set")
    return out


def _names(model: nn.Module) -> list[str]:
    return [f"{name}.weight" for name, _ in scored_layers(model)]


def effective_weights(model: nn.Module) -> Scores:
    """{"<module>.weight": the tensor the forward pass uses}. Call inside ``parametrize.cached()`` so that a
    masked weight (θ_orig ⊙ m) is computed once and reused by the forward: gradients w.r.t. it are
    gradients w.r.t. the effective weight."""
    return {f"{name}.weight": m.weight for name, m in scored_layers(model)}


def grad_or_zeros(out: torch.Tensor, inputs: list[torch.Tensor], **kwargs) -> list[torch.Tensor]:
    """torch.autograd.grad with zeros (not None) for inputs the output does not depend on."""
    if not out.requires_grad:
        return [torch.zeros_like(t) for t in inputs]
    grads = torch.autograd.grad(out, inputs, allow_unused=True, **kwargs)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads)]


def resolve_loss(loss_fn: Callable | None) -> Callable:
    return F.cross_entropy if loss_fn is None else loss_fn


def seeded_uniform(shape, seed: int, like: torch.Tensor) -> torch.Tensor:
    # A CPU generator so that the same seed gives the same scores on every device.
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=generator, dtype=torch.float64).to(like.device, like.dtype)


# ----------------------------------------------------------------------------- gradients

NORM_MODES = ("eval", "train")


@contextlib.contextmanager
def scoring_mode(model: nn.Module, norms: str = "eval"):
    """The mode a criterion differentiates the network in: eval mode (dropout off, every BatchNorm normalising with
    its running statistics), or with ``norms="train"`` every BatchNorm normalising with the batch's statistics, as
    in training — what GraSP's authors score in (`cropkit.core.scores.grasp`); the running statistics such a pass
    updates are put back afterwards, so scoring leaves no trace."""
    if norms not in NORM_MODES:
        raise ValueError(f"unknown norms {norms!r}; choose one of {list(NORM_MODES)}")
    with eval_mode(model):
        norm_layers = [m for m in model.modules() if isinstance(m, NORM_TYPES)] if norms == "train" else []
        saved = [{k: v.clone() for k, v in m.named_buffers(recurse=False)} for m in norm_layers]
        for m in norm_layers:
            m.train()
        try:
            yield model
        finally:
            with torch.no_grad():
                for m, buffers in zip(norm_layers, saved):
                    for k, v in buffers.items():
                        getattr(m, k).copy_(v)


def _sum_over_batches(model: nn.Module, data, loss_fn: Callable, per_batch, n: int,
                      norms: str = "eval") -> list[torch.Tensor]:
    """Σ_b per_batch(weights, L_b / n) over ``data`` (already `prepared_batches`), in `scoring_mode`, with
    ``weights`` the effective prunable weights of that forward pass (``parametrize.cached``: a masked weight is
    computed once)."""
    total = None
    with scoring_mode(model, norms):
        for inputs, targets in data:
            with parametrize.cached():
                weights = list(effective_weights(model).values())
                values = per_batch(weights, loss_fn(model(inputs), targets) / n)
            total = values if total is None else [t + v for t, v in zip(total, values)]
    return [t.detach() for t in total]


def gradient(model: nn.Module, batches, loss_fn: Callable | None = None, norms: str = "eval") -> Scores:
    """g = ∇_θ L with L = (1/B) Σ_b L_b, w.r.t. the effective prunable weights (in `scoring_mode`)."""
    data = prepared_batches(batches, model)
    total = _sum_over_batches(model, data, resolve_loss(loss_fn), lambda weights, loss: grad_or_zeros(loss, weights),
                              len(data), norms)
    return dict(zip(_names(model), total))


def _masks(model: nn.Module) -> Scores:
    """{"<module>.weight": mask m} of every masked prunable layer (a parametrisation with a ``mask`` buffer, as
    `cropkit.core.prune.unstructured` adds); unmasked layers are absent."""
    out = {}
    for name, m in scored_layers(model):
        if parametrize.is_parametrized(m, "weight"):
            for p in m.parametrizations.weight:
                if isinstance(getattr(p, "mask", None), torch.Tensor):
                    out[f"{name}.weight"] = p.mask
    return out


def flowing(model: nn.Module, g: Scores) -> Scores:
    """g ⊙ m: a pruned weight is frozen at zero, so its gradient carries no gradient flow."""
    m = _masks(model)
    return {k: v * m[k].to(v.dtype) if k in m else v for k, v in g.items()}


# ----------------------------------------------------------------------------- the Hessian-gradient product

METHODS = ("double", "forward")
FORWARD_FALLBACKS: dict[str, str] = {}  # model class → why method="forward" fell back to double backprop


def hessian_gradient(model: nn.Module, batches, loss_fn: Callable | None = None,
                     method: str = "double", norms: str = "eval") -> tuple[Scores, Scores]:
    """(g, Hg): g as in `gradient`, then Hg = (1/B) Σ_b H_b g with g held constant; H itself is never formed.

    On a masked network g is first restricted to the kept weights, g ← g ⊙ m, and the product is H(g ⊙ m): a
    pruned weight is frozen at zero and takes no part in the gradient flow gᵀg of the network being re-scored
    (as the EarlyCroP code computes z = Σ g ⊙ ∇L_b ⊙ m, and as `cropkit.core.ntk.gradient_flow` counts a pruned net).
    The returned g is g ⊙ m; Hg is w.r.t. the effective weights θ_orig ⊙ m (pruned entries included).

    ``method`` — two ways to the same H·v (Pearlmutter 1994), equal to rounding:

    ``"double"`` (default)  reverse over reverse: Hg_b = ∇_θ(gᵀ ∇_θ L_b), backpropagating through the graph of the
                            gradient. The last batch's gradient graph is kept, so its forward and backward serve
                            both g and its Hg (one batch: 3 gradients' worth of work, not 4).
    ``"forward"``           forward over reverse: Hg_b = ∂/∂ε ∇_θ L_b(θ + ε g), ``torch.func.jvp`` of
                            ``torch.func.grad``. It cannot reuse g's pass (the direction g must be known before
                            the forward), and on the CPUs measured it was the slower one (docs/performance.md).
                            Where forward AD fails it falls back to double backprop, with a warning and the reason
                            in ``FORWARD_FALLBACKS``.

    ``norms``: the `scoring_mode` ("eval", or "train": BatchNorms with the batch's statistics).
    """
    data, loss_fn = prepared_batches(batches, model), resolve_loss(loss_fn)
    if check_hvp_method(method) == "forward":
        result = forward_or_none(model, lambda: _hessian_gradient_forward(model, data, loss_fn, norms))
        if result is not None:
            return result
    return _hessian_gradient_double(model, data, loss_fn, norms)


def check_hvp_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} for the Hessian-gradient product; choose one of {list(METHODS)}")
    return method


def head_gradient(model: nn.Module, data, loss_fn: Callable, norms: str) -> list[torch.Tensor] | None:
    """Σ_b ∇L_b / B over every batch but the last (None for one batch): the last batch's gradient comes with its Hg."""
    if len(data) == 1:
        return None
    return _sum_over_batches(model, data[:-1], loss_fn, lambda weights, loss: grad_or_zeros(loss, weights), len(data),
                             norms)


def completed_gradient(model: nn.Module, head: list[torch.Tensor] | None,
                       last: list[torch.Tensor]) -> list[torch.Tensor]:
    """g ⊙ m from the other batches' gradient sum and the last batch's gradient (a graph kept for its Hg)."""
    total = [d.detach() for d in last] if head is None else [h + d.detach() for h, d in zip(head, last)]
    return list(flowing(model, dict(zip(_names(model), total))).values())


def _hessian_gradient_double(model: nn.Module, data, loss_fn: Callable, norms: str) -> tuple[Scores, Scores]:
    head, n, names = head_gradient(model, data, loss_fn, norms), len(data), _names(model)
    with scoring_mode(model, norms), derivative_kernels(model, convs=True), parametrize.cached():
        inputs, targets = data[-1]
        weights = list(effective_weights(model).values())
        grads = grad_or_zeros(loss_fn(model(inputs), targets) / n, weights, create_graph=True)
        g = completed_gradient(model, head, grads)
        hg = grad_or_zeros(sum((d * v).sum() for d, v in zip(grads, g)), weights)  # the kept graph: ∇(gᵀ∇L_last)
    del grads

    def hvp(weights, loss):
        grads = grad_or_zeros(loss, weights, create_graph=True)
        return grad_or_zeros(sum((d * v).sum() for d, v in zip(grads, g)), weights)  # ∇_θ(gᵀ∇L_b), g constant

    if len(data) > 1:
        with derivative_kernels(model, convs=True):
            hg = [a + b for a, b in zip(_sum_over_batches(model, data[:-1], loss_fn, hvp, n, norms), hg)]
    return dict(zip(names, g)), {k: v.detach() for k, v in zip(names, hg)}


def _hessian_gradient_forward(model: nn.Module, data, loss_fn: Callable, norms: str) -> tuple[Scores, Scores]:
    g = flowing(model, gradient(model, data, loss_fn, norms))
    theta, fixed = functional_weights(model)  # {functional name: θ}, the masks set to ones
    tangent = {f: g[k] for f, k in zip(theta, g)}
    total = None
    with scoring_mode(model, norms), derivative_kernels(model, convs=False):
        for inputs, targets in data:
            def batch_loss(theta_, inputs=inputs, targets=targets):
                return loss_fn(functional_call(model, (theta_, fixed), (inputs,)), targets) / len(data)

            with torch.no_grad():  # no graph for the other parameters; grad and jvp run their own levels
                _, hg = torch.func.jvp(torch.func.grad(batch_loss), (theta,), (tangent,))  # ∂/∂ε ∇L_b(θ + εg)
            total = hg if total is None else {k: total[k] + hg[k] for k in total}
    return g, {k: total[f] for f, k in zip(theta, g)}


def functional_weights(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The effective prunable weights under the names ``torch.func.functional_call`` swaps, in layer order, and the
    tensors that make the swap exact: a masked weight is passed as its parametrisation's ``original`` with the mask
    set to ones, so that θ_orig ⊙ m enters the forward as the effective weight itself and the derivative is w.r.t.
    it (pruned entries included), as in the double-backprop path. Call `_forward_blocker` first."""
    theta, fixed = {}, {}
    for (name, m), (_, w) in zip(scored_layers(model), weights_now(model).items()):
        if parametrize.is_parametrized(m, "weight"):
            theta[f"{name}.parametrizations.weight.original"] = w
            fixed[f"{name}.parametrizations.weight.0.mask"] = torch.ones_like(m.parametrizations.weight[0].mask)
        else:
            theta[f"{name}.weight"] = w
    return theta, fixed


def _forward_blocker(model: nn.Module) -> str | None:
    """Why forward mode cannot take this model's effective weights as its inputs, or None."""
    for name, m in scored_layers(model):
        if parametrize.is_parametrized(m, "weight"):
            kinds = [type(p).__name__ for p in m.parametrizations.weight]
            if len(kinds) != 1 or not isinstance(getattr(m.parametrizations.weight[0], "mask", None), torch.Tensor):
                return f"layer {name!r} has the weight parametrisation(s) {kinds}, not a single mask"
        elif not isinstance(m.weight, nn.Parameter):
            return f"layer {name!r}'s weight is not a parameter (a forward pre-hook, e.g. torch.nn.utils.prune?)"
    return None


def forward_or_none(model: nn.Module, compute: Callable):
    """compute() when forward mode works for ``model``; else None, with a warning and the reason recorded in
    ``FORWARD_FALLBACKS[type(model).__name__]``. A failure that is not forward mode's own (a bad loss, say)
    raises again on the double-backprop path, so nothing is hidden."""
    reason = _forward_blocker(model)
    if reason is None:
        try:
            return compute()
        except (RuntimeError, NotImplementedError) as error:
            reason = f"{type(error).__name__}: {str(error).splitlines()[0][:300]}"
    FORWARD_FALLBACKS[type(model).__name__] = reason
    warnings.warn(f"forward-mode Hg is not available for {type(model).__name__} ({reason}); "
                  f"using double backprop instead", stacklevel=3)
    return None


def weights_now(model: nn.Module) -> Scores:
    with parametrize.cached():
        return {k: w.detach() for k, w in effective_weights(model).items()}
