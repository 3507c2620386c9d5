"""Gate Decorator's gates (You et al. 2019): learnable, penalised, scored over the tick, folded away."""
import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cropkit.methods import gates
from cropkit.tasks import models


def tiny():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(27, 4),
                          nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 3))
    with torch.no_grad():
        for bn in (model[1], model[5]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean.uniform_(-0.2, 0.2)
    return model.eval()


def data(n_batches=3):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(5, 1, 5, 5, generator=g), torch.randint(0, 3, (5,), generator=g)) for _ in range(n_batches)]


def test_gates_are_parameters_after_every_norm_and_fold_away_exactly():
    model, batches = tiny(), data()
    x = batches[0][0]
    decorator = gates.GateDecorator(model, batches)
    assert set(decorator.gates) == {"0", "4"}
    assert sum(p is g for p in model.parameters() for g in decorator.gates.values()) == 2  # optimizers see them
    with torch.no_grad():
        decorator.gates["0"].copy_(torch.tensor([0.5, 0.0, 2.0]))
        gated = model(x)
    decorator.fold()
    assert not any("gate" in n for n, _ in model.named_parameters())
    assert not any(m._forward_hooks for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model(x), gated)


def test_tock_trains_the_gates_and_the_penalty_pulls_them_down():
    model, batches = tiny(), data()
    decorator = gates.GateDecorator(model, batches, penalty=0.5)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.train()
    for x, y in batches * 5:
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    phi = torch.cat([g.detach() for g in decorator.gates.values()])
    assert phi.mean() < 0.9  # λ = 0.5 pushes every gate by 0.05 per step towards 0


def test_tick_accumulates_the_taylor_score_batch_by_batch_in_train_mode():
    """The authors' tick: Θ = Σ_b |φ ∂L_b/∂φ| (not |Σ_b …|), the network in train mode (batch statistics), no
    penalty. Oracle at lr = 0 (φ stays 1): ∂L/∂φ of a gate after y = γ x̂ + β is γ ∂L/∂γ + β ∂L/∂β."""
    model, batches = tiny(), data()
    want = {}
    oracle = copy.deepcopy(model).train()
    norms = {"0": oracle[1], "4": oracle[5]}
    for layer, bn in norms.items():
        total = 0
        for x, y in batches:
            dgamma, dbeta = torch.autograd.grad(F.cross_entropy(oracle(x), y), [bn.weight, bn.bias])
            total = total + (bn.weight.detach() * dgamma + bn.bias.detach() * dbeta).abs()
        want[layer] = total
    theta = gates.GateDecorator(model, batches, penalty=0.3).tick(batches, lr=0.0)
    for layer in want:
        torch.testing.assert_close(theta[layer], want[layer])
    assert not model.training and all(not m.training for m in model.modules())  # its modes are given back


def test_tick_trains_the_gates_the_norm_shifts_and_the_classifier_and_nothing_else():
    model, batches = tiny(), data()
    before = copy.deepcopy(model.state_dict())
    decorator = gates.GateDecorator(model, batches, penalty=0.3)
    decorator.tick(batches, lr=0.1)
    assert all((g != 1).all() for g in decorator.gates.values())
    moved = {k for k, v in model.state_dict().items() if not k.endswith("gate") and not torch.equal(v, before[k])}
    trained = {"1.bias", "5.bias", "7.weight", "7.bias"}  # the norms' β and the classifier
    statistics = {k for k in moved if "running" in k or "num_batches" in k}  # train mode updates them, as training
    assert moved - statistics == trained


def test_the_tick_has_no_sparsity_penalty():
    """At lr > 0 a gate moves by −lr ∂L/∂φ alone in the tick (the penalty belongs to the tock)."""
    model, batches = tiny(), data(n_batches=1)
    with_penalty = gates.GateDecorator(copy.deepcopy(model), batches, penalty=5.0)
    without = gates.GateDecorator(copy.deepcopy(model), batches, penalty=0.0)
    with_penalty.tick(batches, lr=0.1)
    without.tick(batches, lr=0.1)
    for layer in with_penalty.gates:
        torch.testing.assert_close(with_penalty.gates[layer], without.gates[layer])


def test_a_layer_without_a_norm_is_an_error():
    with pytest.raises(ValueError, match="BatchNorm"):
        gates.GateDecorator(models.build("mlp", (1, 8), 3, width=0.1), [(torch.randn(2, 1, 8), torch.zeros(2).long())])
