"""Derivative kernels: while the pruning scores differentiate twice, every convolution and eval-mode BatchNorm
computes through functions whose derivatives of any order are PyTorch's tuned kernels (the same values, a
cheaper Hessian-gradient product; `cropkit.core.derivatives` uses them)."""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import nn

from cropkit.core.layers import NORM_TYPES


class Conv(torch.autograd.Function):
    """y = w ⋆ x (a convolution without bias), whose gradients are the two functions below: every derivative of
    any order is then one of PyTorch's three tuned convolution kernels (forward, input-gradient, weight-gradient).
    Autograd's own second derivative of a convolution computes the weight-gradient term as a convolution of the
    activations with the output gradient as the kernel, which was 4–8× slower on the CPUs measured."""

    @staticmethod
    def forward(ctx, x, w, spec):
        ctx.save_for_backward(x, w)
        ctx.spec = spec
        stride, padding, dilation, groups = spec
        return torch.ops.aten.convolution(x, w, None, stride, padding, dilation, False, [0] * len(stride), groups)

    @staticmethod
    def backward(ctx, gy):
        x, w = ctx.saved_tensors
        gx = _ConvInputGrad.apply(gy, x, w, ctx.spec) if ctx.needs_input_grad[0] else None
        gw = _ConvWeightGrad.apply(gy, x, w, ctx.spec) if ctx.needs_input_grad[1] else None
        return gx, gw, None


def _conv_backward(gy, x, w, spec, which: int) -> torch.Tensor:
    stride, padding, dilation, groups = spec
    mask = [which == 0, which == 1, False]
    return torch.ops.aten.convolution_backward(gy, x, w, None, stride, padding, dilation, False, [0] * len(stride),
                                               groups, mask)[which]


class _ConvGrad(torch.autograd.Function):
    """A gradient of `Conv` w.r.t. its input (``which = 0``) or its weight (``which = 1``)."""

    which = 0

    @classmethod
    def forward(cls, ctx, gy, x, w, spec):
        ctx.save_for_backward(gy, x, w)
        ctx.spec = spec
        return _conv_backward(gy, x, w, spec, cls.which)


class _ConvInputGrad(_ConvGrad):
    """∂L/∂x = wᵀ ⋆ gy: bilinear in (gy, w); x gives only the shape."""

    which = 0

    @staticmethod
    def backward(ctx, u):  # ⟨u, wᵀ ⋆ gy⟩ = ⟨w ⋆ u, gy⟩
        gy, x, w = ctx.saved_tensors
        d_gy = Conv.apply(u, w, ctx.spec) if ctx.needs_input_grad[0] else None
        d_w = _ConvWeightGrad.apply(gy, u, w, ctx.spec) if ctx.needs_input_grad[2] else None
        return d_gy, None, d_w, None


class _ConvWeightGrad(_ConvGrad):
    """∂L/∂w = gy ⋆ x: bilinear in (gy, x); w gives only the shape."""

    which = 1

    @staticmethod
    def backward(ctx, v):  # ⟨v, gy ⋆ x⟩ = ⟨gy, v ⋆ x⟩ = ⟨vᵀ ⋆ gy, x⟩
        gy, x, w = ctx.saved_tensors
        d_gy = Conv.apply(x, v, ctx.spec) if ctx.needs_input_grad[0] else None
        d_x = _ConvInputGrad.apply(gy, x, v, ctx.spec) if ctx.needs_input_grad[1] else None
        return d_gy, d_x, None, None


def _conv_forward(m: nn.Module) -> Callable:
    spec = (list(m.stride), list(m.padding), list(m.dilation), m.groups)

    def forward(x):
        out = Conv.apply(x, m.weight, spec)
        return out if m.bias is None else out + m.bias.view((1, -1) + (1,) * (out.dim() - 2))
    return forward


def _affine_norm_forward(m: nn.Module) -> Callable:
    """An eval-mode BatchNorm as the affine map it is, x·s + t with s = γ / √(σ² + ε), t = β − μ·s: its derivatives
    of every order are products and sums (the generic BatchNorm derivatives also serve train mode and cost more)."""
    def forward(x):
        scale = torch.rsqrt(m.running_var + m.eps)
        scale = scale if m.weight is None else scale * m.weight
        shift = -m.running_mean * scale if m.bias is None else m.bias - m.running_mean * scale
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return x * scale.view(shape) + shift.view(shape)
    return forward


def _fast_conv(m: nn.Module) -> bool:
    """A Conv1d/Conv2d (masked or not: the kit's mask parametrisation keeps the class's forward; a subclass with a
    forward of its own is left alone) with plain zero padding."""
    return type(m).forward in (nn.Conv1d.forward, nn.Conv2d.forward) and m.padding_mode == "zeros" \
        and not isinstance(m.padding, str)


@contextlib.contextmanager
def derivative_kernels(model: nn.Module, convs: bool):
    """While the block runs (in eval mode), eval-mode BatchNorms compute as affine maps and, with ``convs``,
    Conv1d/Conv2d layers as `Conv`; the same functions, cheaper higher derivatives. Each module's ``forward`` is
    restored afterwards."""
    patched = []
    for m in model.modules():
        if "forward" in vars(m):
            continue
        if isinstance(m, NORM_TYPES) and not m.training and m.running_mean is not None and m.running_var is not None:
            m.forward = _affine_norm_forward(m)
        elif convs and _fast_conv(m):
            m.forward = _conv_forward(m)
        else:
            continue
        patched.append(m)
    try:
        yield
    finally:
        for m in patched:
            del m.forward
