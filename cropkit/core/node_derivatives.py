"""Derivatives with respect to gates on node outputs, for the node criteria (`cropkit.core.scores`): a gate c = 1 on
each node layer's output (out ← out ⊙ c, attached by a forward hook), then ∂L/∂c (SNAP) and ∂(gᵀ∇_θL)/∂c (CroP-S),
computed as `cropkit.core.derivatives` computes g and Hg (eval mode, several batches averaged, H(g ⊙ m) on a masked
network, double backprop or forward over reverse)."""
from __future__ import annotations

import contextlib

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.utils import parametrize

from cropkit.core.derivatives import (
    check_hvp_method,
    completed_gradient,
    effective_weights,
    flowing,
    forward_or_none,
    functional_weights,
    grad_or_zeros,
    gradient,
    head_gradient,
    prepared_batches,
    resolve_loss,
)
from cropkit.core.kernels import derivative_kernels
from cropkit.core.layers import NORM_TYPES
from cropkit.core.plumbing import eval_mode


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
    if check_hvp_method(method) == "forward":
        result = forward_or_none(model, lambda: _gate_hessian_gradient_forward(model, data, gated, loss_fn))
        if result is not None:
            return result
    return _gate_hessian_gradient_double(model, data, gated, loss_fn)


def _gate_hessian_gradient_double(model: nn.Module, data, gated: dict[str, nn.Module], loss_fn) -> dict:
    head, n = head_gradient(model, data, loss_fn, "eval"), len(data)
    like = next(iter(model.parameters()))
    total, g = None, None
    with eval_mode(model), gates(gated, like) as cs, derivative_kernels(model, convs=True):
        for inputs, targets in data[::-1]:  # the last batch first: its gradient completes g
            with parametrize.cached():
                weights = list(effective_weights(model).values())
                grads = grad_or_zeros(loss_fn(model(inputs), targets) / n, weights, create_graph=True)
                g = completed_gradient(model, head, grads) if g is None else g
                dz = grad_or_zeros(sum((d * v).sum() for d, v in zip(grads, g)), list(cs.values()))
            total = dz if total is None else [t + d for t, d in zip(total, dz)]
    return {name: d.detach() for name, d in zip(cs, total)}


def _gate_hessian_gradient_forward(model: nn.Module, data, gated: dict[str, nn.Module], loss_fn) -> dict:
    g = flowing(model, gradient(model, data, loss_fn))
    theta, fixed = functional_weights(model)
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
