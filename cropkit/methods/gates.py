r"""Gate Decorator (You et al., NeurIPS 2019, "Gate Decorator: Global Filter Pruning Method for Accelerating Deep
Convolutional Neural Networks"): learnable channel gates after the norm layers, and their Taylor score.

A *gated batch norm* multiplies the output of each node layer's BatchNorm channel-wise by a learnable gate φ
(initialised to 1): y = φ ⊙ BN(x). The paper's sparsity penalty λ‖φ‖₁ pushes unimportant gates towards 0.
Removing channel i sets φ_i = 0, and its first-order Taylor estimate of the loss change is (the paper's eq. 5)

    Θ(φ_i) = | Σ_b  φ_i · ∂L_b/∂φ_i |        summed over the batches of the *tick* phase.

Tick: only the gates are trained (with the penalty) while Θ accumulates; then the lowest-Θ channels are removed.
Tock: the whole network trains with the penalty. `cropkit.methods.registry.gatedecorators` alternates them.

    gates = GateDecorator(model, batches, penalty=1e-4)   # φ = 1 after every node layer's BatchNorm
    ...train (tock): the optimizer sees the gates, the penalty is a gradient hook...
    theta = gates.tick(batches, lr=1e-3)                  # {node layer: Θ}, for cropkit.prune.structured
    gates.fold()                                          # γ ← γ·φ, β ← β·φ; the gates are gone

The gates live on the norm modules as a parameter named ``gate`` plus a forward hook, so every optimizer built
from ``model.parameters()`` trains them. ``fold`` writes them into the norm's affine parameters and removes them,
leaving an ordinary network (the output is unchanged: φ ⊙ (γ x̂ + β) = (φγ) x̂ + φβ), ready for structured surgery.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from cropkit.core import derivatives as D
from cropkit.core.layers import norms_or_raise
from cropkit.core.plumbing import eval_mode


class GateDecorator:
    """Learnable gates φ (init 1) after the BatchNorm of every node layer, with the L1 penalty ``penalty``·‖φ‖₁
    applied as a gradient hook (its subgradient λ·sign(φ) is added to ∂L/∂φ)."""

    def __init__(self, model: nn.Module, batches, penalty: float = 1e-4):
        if penalty < 0:
            raise ValueError(f"penalty (λ of the L1 sparsity term on the gates) must be >= 0; got {penalty}")
        self.model, self.penalty = model, penalty
        modules = dict(model.named_modules())
        norms = norms_or_raise(model, D.prepared_batches(batches, model)[0][0])
        self.norms = {layer: modules[norm] for layer, norm in norms.items()}
        self._handles = []
        for norm in self.norms.values():
            gate = getattr(norm, "gate", None)  # a gate already there (a resumed run's) is adopted
            if not isinstance(gate, nn.Parameter):
                gate = nn.Parameter(torch.ones_like(norm.weight.detach()))
                norm.register_parameter("gate", gate)
            self._handles.append(norm.register_forward_hook(_apply_gate))
            if penalty:
                self._handles.append(gate.register_hook(lambda g, gate=gate: g + penalty * torch.sign(gate.detach())))

    @property
    def gates(self) -> dict[str, nn.Parameter]:
        """{node layer: its gate φ}."""
        return {layer: norm.gate for layer, norm in self.norms.items()}

    def tick(self, batches, lr: float, loss_fn: Callable | None = None) -> dict[str, torch.Tensor]:
        """The tick phase: one pass over ``batches`` in which only the gates train (SGD, the penalty included),
        accumulating Σ_b φ ⊙ ∂L_b/∂φ; returns Θ = |that sum| per node layer.

        Eval mode, as every criterion of `cropkit.core.scores` (BN uses its running statistics and keeps them)."""
        loss_fn, data = D.resolve_loss(loss_fn), D.prepared_batches(batches, self.model)
        gates = list(self.gates.values())
        others = [p for p in self.model.parameters() if all(p is not g for g in gates)]
        frozen = [p.requires_grad for p in others]
        for p in others:
            p.requires_grad_(False)
        total = [torch.zeros_like(g) for g in gates]
        optimizer = torch.optim.SGD(gates, lr=lr)
        try:
            with eval_mode(self.model):
                for inputs, targets in data:
                    optimizer.zero_grad(set_to_none=True)
                    loss_fn(self.model(inputs), targets).backward()  # the gates' hooks add λ·sign(φ)
                    for t, phi in zip(total, gates):
                        t += phi.detach() * (phi.grad - self.penalty * torch.sign(phi.detach()))  # φ ⊙ ∂L_b/∂φ
                    optimizer.step()
        finally:
            for p, requires in zip(others, frozen):
                p.requires_grad_(requires)
        return {layer: t.abs() for layer, t in zip(self.gates, total)}

    def unhook(self) -> None:
        """Remove the forward and penalty hooks, leaving the gates' tensors in place."""
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @torch.no_grad()
    def fold(self) -> nn.Module:
        """γ ← γ·φ, β ← β·φ in every gated norm, then remove the gates and hooks. Returns the model."""
        self.unhook()
        for norm in self.norms.values():
            phi = norm.gate.detach()
            norm.weight.mul_(phi)
            norm.bias.mul_(phi)
            del norm.gate
        return self.model


def _apply_gate(norm: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    """y = φ ⊙ BN(x), φ broadcast over the channel dimension (dim 1)."""
    shape = (1, -1) + (1,) * (output.dim() - 2)
    return output * norm.gate.view(shape)
