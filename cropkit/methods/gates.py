r"""Gate Decorator (You et al., NeurIPS 2019, "Gate Decorator: Global Filter Pruning Method for Accelerating Deep
Convolutional Neural Networks"): learnable channel gates after the norm layers, and their Taylor score.

A *gated batch norm* multiplies the output of each node layer's BatchNorm channel-wise by a learnable gate φ
(initialised to 1): y = φ ⊙ BN(x). The paper's sparsity penalty λ‖φ‖₁ pushes unimportant gates towards 0.
Removing channel i sets φ_i = 0, and its first-order Taylor estimate of the loss change is (the paper's eq. 5)

    Θ(φ_i) = Σ_b | φ_i · ∂L_b/∂φ_i |        accumulated over the batches of the *tick* phase,

as the authors' code accumulates it (a hook adds |φ ⊙ ∂L/∂φ| at every backward; the paper's Θ is the magnitude
of the first-order term and leaves where the sum goes open).

Tick, as in the authors' code (the paper's Fig. 2: "the convolution kernels are set to non-updatable"): the network
in train mode (BatchNorm with batch statistics), the convolution kernels and the BatchNorm scales γ frozen, the
gates, the BatchNorm shifts β and the classifier training, no sparsity penalty; Θ accumulates; then the lowest-Θ
channels are removed. Tock: the whole network trains with the penalty. `cropkit.methods.gatedecorators`
alternates them.

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
from cropkit.core.layers import classifier_name, norms_or_raise


class GateDecorator:
    """Learnable gates φ (init 1) after the BatchNorm of every node layer, with the L1 penalty ``penalty``·‖φ‖₁
    applied as a gradient hook (its subgradient λ·sign(φ) is added to ∂L/∂φ)."""

    def __init__(self, model: nn.Module, batches, penalty: float = 1e-4):
        if penalty < 0:
            raise ValueError(f"penalty (λ of the L1 sparsity term on the gates) must be >= 0; got {penalty}")
        self.model, self.penalty, self._penalty_on = model, penalty, True
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
                self._handles.append(gate.register_hook(lambda g, gate=gate: g + penalty * torch.sign(gate.detach())
                                                        if self._penalty_on else g))

    @property
    def gates(self) -> dict[str, nn.Parameter]:
        """{node layer: its gate φ}."""
        return {layer: norm.gate for layer, norm in self.norms.items()}

    def tick(self, batches, lr: float, loss_fn: Callable | None = None) -> dict[str, torch.Tensor]:
        """The tick phase: one pass over ``batches`` in train mode in which the gates, the norms' shifts β and the
        classifier train (SGD, no penalty; convolution kernels, other weights and the norms' scales γ frozen),
        accumulating Σ_b |φ ⊙ ∂L_b/∂φ|; returns that Θ per node layer."""
        loss_fn, data = D.resolve_loss(loss_fn), D.prepared_batches(batches, self.model)
        gates = list(self.gates.values())
        classifier = self.model.get_submodule(classifier_name(self.model))
        trained = gates + [norm.bias for norm in self.norms.values()] + list(classifier.parameters())
        others = [p for p in self.model.parameters() if all(p is not t for t in trained)]
        frozen = [p.requires_grad for p in others]
        modes = [(m, m.training) for m in self.model.modules()]
        for p in others:
            p.requires_grad_(False)
        total = [torch.zeros_like(g) for g in gates]
        optimizer = torch.optim.SGD(trained, lr=lr)
        self._penalty_on = False
        try:
            self.model.train()
            for inputs, targets in data:
                optimizer.zero_grad(set_to_none=True)
                loss_fn(self.model(inputs), targets).backward()
                for t, phi in zip(total, gates):
                    t += (phi.detach() * phi.grad).abs()  # |φ ⊙ ∂L_b/∂φ|, batch by batch
                optimizer.step()
        finally:
            self._penalty_on = True
            for p, requires in zip(others, frozen):
                p.requires_grad_(requires)
            for m, training in modes:
                m.training = training
        return dict(zip(self.gates, total))

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
