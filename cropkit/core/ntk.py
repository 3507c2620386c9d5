"""Gradient flow and the empirical neural tangent kernel (NTK), computed with ``torch.func``.

With Y = f(X; θ) the network outputs on a batch of N samples and C classes, flattened **sample-major**
(index n·C + c), the chain rule gives

    g_L(θ) = ∂L/∂θ = J(θ)ᵀ g_L(Y),       J = ∂Y/∂θ  (N·C × P),   g_L(Y) = ∂L/∂Y  (N·C,)

so the gradient flow GF = g_Lᵀ g_L equals the NTK-weighted quadratic form

    GF = g_L(Y)ᵀ · Θ · g_L(Y),           Θ = J Jᵀ  (the empirical NTK, N·C × N·C).

CroP keeps the weights that keep GF; this identity is why it also keeps the NTK's action on the loss
gradient (EarlyCroP, Rachwan et al. 2022, §3). L is the *batch* loss: with mean-reduced cross-entropy the
1/N factor sits inside g_L(Y).

**Mode.** Every function here evaluates the network in eval mode (BatchNorm uses its running statistics,
dropout is off) and restores each module's mode afterwards. In train mode BatchNorm normalises with batch
statistics, so a sample's output depends on the other samples and there is no per-sample function whose
Jacobian the NTK could be built from (vmapping single samples would even normalise each sample by itself).
Gradient flow uses the same eval-mode network so that the identity above holds exactly.

**Parameters.** θ is, by default, every trainable parameter (``params="all"``); ``params="prunable"``
restricts θ to the prunable weights (the θ of `cropkit.core.scores`). NTK and GF always use the same set.
Differentiation is
with respect to the parameters that exist, through ``torch.func.functional_call``: for a network pruned
with ``torch.nn.utils.prune`` that is ``weight_orig`` (the forward hook forms weight = weight_orig ⊙ mask),
for ``torch.nn.utils.parametrize`` it is ``parametrizations.weight.original``. Masked entries therefore
get exactly zero gradient and the kernel is that of the effective (pruned) network.

For float64 checks convert both model and inputs: ``model.double()``, ``x.double()``.
"""
from __future__ import annotations

import copy
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from cropkit.core.layers import prunable_layers
from cropkit.core.plumbing import eval_mode, plain_name

LossFn = Callable[[Tensor, Tensor], Tensor]
PARAM_SETS = ("all", "prunable")


# ----------------------------------------------------------------------------- plumbing

@contextmanager
def evaluation(model: nn.Module) -> Iterator[nn.Module]:
    """Put every module in eval mode and restore each one's own mode afterwards.

    Also restores plain tensor attributes (``module.weight`` written by a ``torch.nn.utils.prune`` hook):
    a forward under ``functional_call``/``vmap`` would otherwise leave a dead functorch wrapper there.
    """
    attributes = [(m, k, v) for m in model.modules() for k, v in vars(m).items() if isinstance(v, Tensor)]
    try:
        with eval_mode(model):
            yield model
    finally:
        for m, k, v in attributes:
            setattr(m, k, v)


def parameters(model: nn.Module, params: str = "all") -> dict[str, Tensor]:
    """θ as a dict {name: detached tensor} of the trainable parameters NTK and GF differentiate.

    ``"all"``: every parameter with ``requires_grad``; ``"prunable"``: only the weights of Conv/Linear layers
    (under whichever name a pruning re-parametrisation stores them).
    """
    if params not in PARAM_SETS:
        raise ValueError(f"params must be one of {PARAM_SETS}; got {params!r}")
    if params == "all":
        chosen = {n: p for n, p in model.named_parameters() if p.requires_grad}
    else:
        chosen = {}
        for module_name, module in prunable_layers(model):
            for local, p in module.named_parameters():
                if plain_name(local) == "weight" and p.requires_grad:  # plain, torch.nn.utils.prune, parametrize
                    chosen[f"{module_name}.{local}" if module_name else local] = p
    if not chosen:
        raise ValueError(f"{type(model).__name__} has no trainable parameters in the set {params!r}")
    return {n: p.detach() for n, p in chosen.items()}


def _state(model: nn.Module, theta: dict[str, Tensor]) -> dict[str, Tensor]:
    """Everything functional_call needs besides θ: the other parameters (held constant) and the buffers."""
    rest = {n: p.detach() for n, p in model.named_parameters() if n not in theta}
    rest.update({n: b for n, b in model.named_buffers()})
    return rest


def _check(x: Tensor, y: Tensor | None = None) -> None:
    if x.shape[0] == 0:
        raise ValueError("the batch is empty; pass at least one sample")
    if y is not None and y.shape[0] != x.shape[0]:
        raise ValueError(f"inputs and targets disagree on the batch size: {x.shape[0]} vs {y.shape[0]}")


# ----------------------------------------------------------------------------- the kernel

def jacobian(model: nn.Module, x: Tensor, params: str = "all") -> dict[str, Tensor]:
    """Per-sample Jacobians of the outputs: {name: (N, C, *θ_name.shape)}, eval mode (see module doc).

    ``jacrev`` differentiates one sample's C outputs w.r.t. θ; ``vmap`` maps that over the N samples.
    """
    _check(x)
    with evaluation(model):
        theta = parameters(model, params)
        rest = _state(model, theta)

        def outputs(theta_, sample):  # one sample (…) → its C logits
            return functional_call(model, (theta_, rest), (sample.unsqueeze(0),)).squeeze(0)

        return vmap(jacrev(outputs), in_dims=(None, 0))(theta, x)


def empirical_ntk(model: nn.Module, x: Tensor, params: str = "all") -> Tensor:
    """Θ = J Jᵀ, the empirical NTK on the batch ``x``: an (N·C × N·C) tensor, rows/columns sample-major.

    Θ[n·C + c, m·C + d] = Σ_p ∂f_c(x_n)/∂θ_p · ∂f_d(x_m)/∂θ_p. Memory: the Jacobian holds N·C·P numbers
    (P = number of parameters in the set), so keep N small (tens of samples) for the zoo's models.
    """
    jac = jacobian(model, x, params)
    n, c = next(iter(jac.values())).shape[:2]
    kernel = sum(torch.einsum("ncp,mdp->ncmd", j.flatten(2), j.flatten(2)) for j in jac.values())
    return kernel.reshape(n * c, n * c)


def output_gradient(model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn | None = None) -> Tensor:
    """g_L(Y) = ∂L/∂Y for the batch loss L = loss_fn(f(X), y), flattened sample-major: shape (N·C,).

    With mean-reduced cross-entropy, g_L(Y)[n·C + c] = (softmax(f(x_n))_c − [c = y_n]) / N.
    """
    _check(x, y)
    loss_fn = loss_fn or F.cross_entropy
    with evaluation(model), torch.no_grad():
        out = model(x)
    out = out.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss_fn(out, y), out)
    return grad.reshape(-1)


# ----------------------------------------------------------------------------- gradient flow

def loss_gradient(model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn | None = None,
                  params: str = "all") -> dict[str, Tensor]:
    """g_L = ∂L/∂θ on the batch, eval mode, w.r.t. the parameter set ``params`` ({name: tensor like θ})."""
    _check(x, y)
    loss_fn = loss_fn or F.cross_entropy
    with evaluation(model):
        theta = parameters(model, params)
        rest = _state(model, theta)

        def batch_loss(theta_):
            return loss_fn(functional_call(model, (theta_, rest), (x,)), y)

        return torch.func.grad(batch_loss)(theta)


def gradient_flow(model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn | None = None,
                  params: str = "all") -> float:
    """GF = g_Lᵀ g_L = Σ_θ ‖∂L/∂θ‖² on the batch (x, y) (eval mode, parameter set ``params``)."""
    grads = loss_gradient(model, x, y, loss_fn, params)
    return float(sum(g.pow(2).sum() for g in grads.values()))


def gradient_flow_from_ntk(model: nn.Module, x: Tensor, y: Tensor, loss_fn: LossFn | None = None,
                           params: str = "all") -> float:
    """GF via the NTK: g_L(Y)ᵀ · Θ · g_L(Y). Equals ``gradient_flow`` up to rounding (the chain rule)."""
    g_out = output_gradient(model, x, y, loss_fn)      # (N·C,)
    kernel = empirical_ntk(model, x, params)           # (N·C, N·C)
    return float(g_out @ kernel.to(g_out.dtype) @ g_out)


def relative_error(a: float, b: float) -> float:
    """|a − b| / max(|a|, |b|) (0 when both are 0)."""
    scale = max(abs(a), abs(b))
    return abs(a - b) / scale if scale > 0 else 0.0


# ----------------------------------------------------------------------------- comparing kernels

def kernel_distance(k1: Tensor, k2: Tensor) -> float:
    """d(K₁, K₂) = 1 − ⟨K₁, K₂⟩_F / (‖K₁‖_F ‖K₂‖_F) ∈ [0, 2] (Fort et al. 2020).

    0 for kernels that are positive multiples of each other: it measures a change of the kernel's *shape*,
    not of its scale (that is what the eigenvalues show).
    """
    if k1.shape != k2.shape:
        raise ValueError(f"kernels must have the same shape; got {tuple(k1.shape)} and {tuple(k2.shape)}")
    k1, k2 = k1.double(), k2.double()
    norms = torch.linalg.matrix_norm(k1) * torch.linalg.matrix_norm(k2)
    if norms == 0:
        raise ValueError("kernel distance is undefined for an all-zero kernel")
    # clamp: rounding can push the cosine a hair above 1 for identical kernels
    return float(1 - ((k1 * k2).sum() / norms).clamp(-1, 1))


def top_eigenvalues(kernel: Tensor, k: int | None = None) -> Tensor:
    """The k largest eigenvalues of the symmetric kernel, descending (all of them when k is None).

    Solved in float64 (float32 eigh fails to converge on the ill-conditioned kernels of heavily pruned networks),
    returned in the kernel's dtype.
    """
    k64 = kernel.double()
    symmetric = (k64 + k64.T) / 2  # remove rounding asymmetry so eigvalsh sees an exact symmetric matrix
    values = torch.linalg.eigvalsh(symmetric).flip(0).to(kernel.dtype)
    return values if k is None else values[:k]


def pruning_effect(dense: nn.Module, pruned: nn.Module, x: Tensor, y: Tensor, probe: Tensor,
                   params: str = "prunable", loss_fn: LossFn | None = None, eigenvalues: int = 20,
                   dtype: torch.dtype = torch.float64, reference: dict | None = None) -> dict:
    """How far pruning moved the gradient flow (on the batch x, y) and the NTK (on ``probe``).

    Both models are evaluated as copies in ``dtype``. Returns gf_dense, gf_pruned, gf_change = (GF' − GF)/GF,
    kernel_distance d(Θ, Θ'), trace_ratio tr Θ'/tr Θ and the top ``eigenvalues`` of Θ'. A pruned network with no
    path left from input to output has Θ' = 0: ``disconnected`` is then True and the kernel distance, a cosine, is
    undefined (NaN). ``reference`` —
    the dict :func:`dense_reference` returns — saves recomputing the dense side for every pruned model.
    """
    reference = reference or dense_reference(dense, x, y, probe, params, loss_fn, dtype)
    model = copy.deepcopy(pruned).to(dtype)
    gf_pruned = gradient_flow(model, x.to(dtype), y, loss_fn, params)
    after = empirical_ntk(model, probe.to(dtype), params)
    before, gf_dense = reference["kernel"], reference["gf"]
    disconnected = bool(torch.linalg.matrix_norm(after) == 0)
    return dict(gf_dense=gf_dense, gf_pruned=gf_pruned, gf_change=(gf_pruned - gf_dense) / gf_dense,
                kernel_distance=float("nan") if disconnected else kernel_distance(before, after),
                trace_ratio=float(after.trace() / before.trace()), disconnected=disconnected,
                eigenvalues=top_eigenvalues(after, eigenvalues).tolist())


def dense_reference(dense: nn.Module, x: Tensor, y: Tensor, probe: Tensor, params: str = "prunable",
                    loss_fn: LossFn | None = None, dtype: torch.dtype = torch.float64) -> dict:
    """The dense side of :func:`pruning_effect`: {"gf": GF on (x, y), "kernel": Θ on probe}, in ``dtype``."""
    model = copy.deepcopy(dense).to(dtype)
    return dict(gf=gradient_flow(model, x.to(dtype), y, loss_fn, params),
                kernel=empirical_ntk(model, probe.to(dtype), params))
