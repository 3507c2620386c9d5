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

def _sum_over_batches(model: nn.Module, data, loss_fn: Callable, per_batch, n: int) -> list[torch.Tensor]:
    """Σ_b per_batch(weights, L_b / n) over ``data`` (already `prepared_batches`), in eval mode, with ``weights`` the
    effective prunable weights of that forward pass (``parametrize.cached``: a masked weight is computed once)."""
    total = None
    with eval_mode(model):
        for inputs, targets in data:
            with parametrize.cached():
                weights = list(effective_weights(model).values())
                values = per_batch(weights, loss_fn(model(inputs), targets) / n)
            total = values if total is None else [t + v for t, v in zip(total, values)]
    return [t.detach() for t in total]


def gradient(model: nn.Module, batches, loss_fn: Callable | None = None) -> Scores:
    """g = ∇_θ L with L = (1/B) Σ_b L_b, w.r.t. the effective prunable weights (eval mode)."""
    data = prepared_batches(batches, model)
    total = _sum_over_batches(model, data, resolve_loss(loss_fn), lambda weights, loss: grad_or_zeros(loss, weights),
                              len(data))
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


def _flowing(model: nn.Module, g: Scores) -> Scores:
    """g ⊙ m: a pruned weight is frozen at zero, so its gradient carries no gradient flow."""
    m = _masks(model)
    return {k: v * m[k].to(v.dtype) if k in m else v for k, v in g.items()}


# ----------------------------------------------------------------------------- the Hessian-gradient product

METHODS = ("double", "forward")
FORWARD_FALLBACKS: dict[str, str] = {}  # model class → why method="forward" fell back to double backprop


def hessian_gradient(model: nn.Module, batches, loss_fn: Callable | None = None,
                     method: str = "double") -> tuple[Scores, Scores]:
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
    """
    data, loss_fn = prepared_batches(batches, model), resolve_loss(loss_fn)
    if _check_method(method) == "forward":
        result = _forward_or_none(model, lambda: _hessian_gradient_forward(model, data, loss_fn))
        if result is not None:
            return result
    return _hessian_gradient_double(model, data, loss_fn)


def _check_method(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r} for the Hessian-gradient product; choose one of {list(METHODS)}")
    return method


def _head_gradient(model: nn.Module, data, loss_fn: Callable) -> list[torch.Tensor] | None:
    """Σ_b ∇L_b / B over every batch but the last (None for one batch): the last batch's gradient comes with its Hg."""
    if len(data) == 1:
        return None
    return _sum_over_batches(model, data[:-1], loss_fn, lambda weights, loss: grad_or_zeros(loss, weights), len(data))


def _completed(model: nn.Module, head: list[torch.Tensor] | None, last: list[torch.Tensor]) -> list[torch.Tensor]:
    """g ⊙ m from the other batches' gradient sum and the last batch's gradient (a graph kept for its Hg)."""
    total = [d.detach() for d in last] if head is None else [h + d.detach() for h, d in zip(head, last)]
    return list(_flowing(model, dict(zip(_names(model), total))).values())


def _hessian_gradient_double(model: nn.Module, data, loss_fn: Callable) -> tuple[Scores, Scores]:
    head, n, names = _head_gradient(model, data, loss_fn), len(data), _names(model)
    with eval_mode(model), derivative_kernels(model, convs=True), parametrize.cached():
        inputs, targets = data[-1]
        weights = list(effective_weights(model).values())
        grads = grad_or_zeros(loss_fn(model(inputs), targets) / n, weights, create_graph=True)
        g = _completed(model, head, grads)
        hg = grad_or_zeros(sum((d * v).sum() for d, v in zip(grads, g)), weights)  # the kept graph: ∇(gᵀ∇L_last)
    del grads

    def hvp(weights, loss):
        grads = grad_or_zeros(loss, weights, create_graph=True)
        return grad_or_zeros(sum((d * v).sum() for d, v in zip(grads, g)), weights)  # ∇_θ(gᵀ∇L_b), g constant

    if len(data) > 1:
        with eval_mode(model), derivative_kernels(model, convs=True):
            hg = [a + b for a, b in zip(_sum_over_batches(model, data[:-1], loss_fn, hvp, n), hg)]
    return dict(zip(names, g)), {k: v.detach() for k, v in zip(names, hg)}


def _hessian_gradient_forward(model: nn.Module, data, loss_fn: Callable) -> tuple[Scores, Scores]:
    g = _flowing(model, gradient(model, data, loss_fn))
    theta, fixed = _functional_weights(model)  # {functional name: θ}, the masks set to ones
    tangent = {f: g[k] for f, k in zip(theta, g)}
    total = None
    with eval_mode(model), derivative_kernels(model, convs=False):
        for inputs, targets in data:
            def batch_loss(theta_, inputs=inputs, targets=targets):
                return loss_fn(functional_call(model, (theta_, fixed), (inputs,)), targets) / len(data)

            with torch.no_grad():  # no graph for the other parameters; grad and jvp run their own levels
                _, hg = torch.func.jvp(torch.func.grad(batch_loss), (theta,), (tangent,))  # ∂/∂ε ∇L_b(θ + εg)
            total = hg if total is None else {k: total[k] + hg[k] for k in total}
    return g, {k: total[f] for f, k in zip(theta, g)}


def _functional_weights(model: nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
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


def _forward_or_none(model: nn.Module, compute: Callable):
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


# ----------------------------------------------------------------------------- gates

def _gate_shape(module: nn.Module, output: torch.Tensor, channels: int) -> tuple[int, ...]:
    """Broadcast shape of a gate over ``output``: conv channels sit on dim 1, linear features on the last dim."""
    if isinstance(module, nn.Linear):
        return (channels,)
    return (1, channels) + (1,) * (output.dim() - 2)


@contextlib.contextmanager
def gates(modules: dict[str, nn.Module], like: torch.Tensor):
    """Attach a gate c = 1 (requires grad) to the output of each module: out ← out ⊙ c. Yields {name: c}; the hooks
    read the gates from that dict, so a caller may swap them (forward mode passes its own)."""
    cs, handles = {}, []
    for name, module in modules.items():
        channels = module.num_features if isinstance(module, NORM_TYPES) else module.weight.shape[0]
        cs[name] = torch.ones(channels, dtype=like.dtype, device=like.device, requires_grad=True)

        def hook(mod, inputs, output, name=name):
            return output * cs[name].view(_gate_shape(mod, output, cs[name].numel()))

        handles.append(module.register_forward_hook(hook))
    try:
        yield cs
    finally:
        for handle in handles:
            handle.remove()


def gate_gradient(model: nn.Module, batches, gated: dict[str, nn.Module], loss_fn) -> dict[str, torch.Tensor]:
    """∂L/∂c at c = 1, L = (1/B) Σ_b L_b, for gates on the outputs of ``gated``."""
    loss_fn, data = resolve_loss(loss_fn), prepared_batches(batches, model)
    like = next(iter(model.parameters()))
    total = None
    with eval_mode(model), gates(gated, like) as cs:
        for inputs, targets in data:
            loss = loss_fn(model(inputs), targets) / len(data)
            grads = grad_or_zeros(loss, list(cs.values()))
            total = grads if total is None else [t + g for t, g in zip(total, grads)]
    return {name: g.detach() for name, g in zip(cs, total)}


def gate_hessian_gradient(model: nn.Module, batches, gated: dict[str, nn.Module], loss_fn,
                          method: str = "double") -> dict[str, torch.Tensor]:
    """∂z/∂c at c = 1, z = gᵀ ∇_θ L(θ, c) with g = ∇_θ L(θ, 1) held constant (g ⊙ m on a masked network, as in
    `hessian_gradient`), for gates on the outputs of ``gated``. ``method`` as in `hessian_gradient`: ``"double"``
    backpropagates z to the gates (the last batch's gradient graph serves g too); ``"forward"`` takes the
    derivative of ∂L/∂c along g, ∂/∂ε ∂L(θ + εg, c)/∂c, by forward mode."""
    loss_fn, data = resolve_loss(loss_fn), prepared_batches(batches, model)
    if _check_method(method) == "forward":
        result = _forward_or_none(model, lambda: _gate_hessian_gradient_forward(model, data, gated, loss_fn))
        if result is not None:
            return result
    return _gate_hessian_gradient_double(model, data, gated, loss_fn)


def _gate_hessian_gradient_double(model: nn.Module, data, gated: dict[str, nn.Module], loss_fn) -> dict:
    head, n = _head_gradient(model, data, loss_fn), len(data)
    like = next(iter(model.parameters()))
    total, g = None, None
    with eval_mode(model), gates(gated, like) as cs, derivative_kernels(model, convs=True):
        for inputs, targets in data[::-1]:  # the last batch first: its gradient completes g
            with parametrize.cached():
                weights = list(effective_weights(model).values())
                grads = grad_or_zeros(loss_fn(model(inputs), targets) / n, weights, create_graph=True)
                g = _completed(model, head, grads) if g is None else g
                dz = grad_or_zeros(sum((d * v).sum() for d, v in zip(grads, g)), list(cs.values()))
            total = dz if total is None else [t + d for t, d in zip(total, dz)]
    return {name: d.detach() for name, d in zip(cs, total)}


def _gate_hessian_gradient_forward(model: nn.Module, data, gated: dict[str, nn.Module], loss_fn) -> dict:
    g = _flowing(model, gradient(model, data, loss_fn))
    theta, fixed = _functional_weights(model)
    tangent = {f: g[k] for f, k in zip(theta, g)}
    like = next(iter(model.parameters()))
    total = None
    with eval_mode(model), gates(gated, like) as cs, derivative_kernels(model, convs=False):
        ones = {name: c.detach() for name, c in cs.items()}
        try:
            for inputs, targets in data:
                def gate_grad(theta_, inputs=inputs, targets=targets):
                    def batch_loss(c):
                        cs.update(c)  # the hooks read their gates from cs
                        return loss_fn(functional_call(model, (theta_, fixed), (inputs,)), targets) / len(data)
                    return torch.func.grad(batch_loss)(ones)

                with torch.no_grad():
                    _, dz = torch.func.jvp(gate_grad, (theta,), (tangent,))  # ∂/∂ε ∂L(θ + εg, c)/∂c
                total = dz if total is None else {k: total[k] + dz[k] for k in total}
        finally:
            cs.update(ones)
    return total
