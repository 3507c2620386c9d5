"""Control (cropkit.tasks.control): the REINFORCE loss against hand computation, finite differences and a dense-Hessian
CroP oracle; seeded collection and evaluation repeat exactly; a short training learns CartPole; CroP scores an
on-policy batch and the pruned policy still plays."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from cropkit.core import prune, scores
from cropkit.core.layers import prunable_layers
from cropkit.tasks import control, models
from cropkit.training import loop as train


def tiny_policy(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).double()


def hand_batch():
    """Two hand-made episodes of CartPole-shaped observations: (inputs, targets) as the loader packs them."""
    g = torch.Generator().manual_seed(3)
    episodes = [dict(obs=torch.randn(3, 4, generator=g).numpy(), actions=np.array([0, 1, 1]),
                     rewards=np.array([1.0, 1.0, 1.0])),
                dict(obs=torch.randn(2, 4, generator=g).numpy(), actions=np.array([1, 0]),
                     rewards=np.array([1.0, 1.0]))]
    return control.transitions(episodes)


def test_returns_to_go_and_targets_by_hand():
    assert np.allclose(control.returns_to_go(np.array([1.0, 1.0, 1.0]), gamma=0.5), [1.75, 1.5, 1.0])
    _, targets = hand_batch()
    # γ = 0.99: G = (2.9701, 1.99, 1) and (1.99, 1); the baseline at t = 0, 1, 2 is 2.48005, 1.495, 1
    centred = np.array([0.49005, 0.495, 0.0, -0.49005, -0.495])
    assert torch.allclose(targets[:, 1].double(), torch.tensor(centred / centred.std()), atol=1e-5)
    assert targets[:, 0].tolist() == [0, 1, 1, 1, 0]
    assert targets[:, 2].tolist() == [3, 3, 3, 2, 2] and targets[:, 3].tolist() == [1, 0, 0, 1, 0]
    assert control.batch_return(torch.zeros(5, 2), targets) == 2.5


def test_loss_equals_hand_computation():
    logits = torch.tensor([[0.0, 0.0], [1.0, -1.0], [2.0, 0.5]])
    targets = torch.tensor([[0, 1.0, 5, 1], [1, -2.0, 5, 0], [0, 0.5, 5, 0]])
    log_pi = [math.log(0.5), -1.0 - math.log(math.exp(1) + math.exp(-1)), 2.0 - math.log(math.exp(2) + math.exp(0.5))]
    expected = -(log_pi[0] * 1.0 + log_pi[1] * -2.0 + log_pi[2] * 0.5) / 3
    assert control.reinforce_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_loss_gradient_matches_finite_differences():
    model = tiny_policy()
    inputs, targets = hand_batch()
    inputs, targets = inputs.double(), targets.double()
    params = list(model.parameters())
    grads = torch.autograd.grad(control.reinforce_loss(model(inputs), targets), params)
    eps = 1e-6
    for p, g in zip(params, grads):
        for i in range(p.numel()):
            with torch.no_grad():
                p.view(-1)[i] += eps
                up = control.reinforce_loss(model(inputs), targets).item()
                p.view(-1)[i] -= 2 * eps
                down = control.reinforce_loss(model(inputs), targets).item()
                p.view(-1)[i] += eps
            assert g.view(-1)[i].item() == pytest.approx((up - down) / (2 * eps), abs=1e-8)


def test_crop_on_the_policy_gradient_loss_equals_a_dense_hessian_oracle():
    """|θ ⊙ Hg| for L = −mean log π(a|s)·Â, with H from torch.autograd.functional.hessian (float64)."""
    model = tiny_policy()
    inputs, targets = hand_batch()
    inputs, targets = inputs.double(), targets.double()
    w1, w2 = model[0].weight.detach().clone(), model[2].weight.detach().clone()
    b1, b2 = model[0].bias.detach(), model[2].bias.detach()

    def loss(flat):
        a, b = flat[:w1.numel()].view_as(w1), flat[w1.numel():].view_as(w2)
        logits = nn.functional.linear(torch.tanh(nn.functional.linear(inputs, a, b1)), b, b2)
        return control.reinforce_loss(logits, targets)

    flat = torch.cat([w1.flatten(), w2.flatten()])
    g = torch.autograd.functional.jacobian(loss, flat)
    oracle = (flat * (torch.autograd.functional.hessian(loss, flat) @ g)).abs()
    got = scores.crop(model, [(inputs, targets)], loss_fn=control.reinforce_loss)
    assert torch.allclose(torch.cat([got["0.weight"].flatten(), got["2.weight"].flatten()]), oracle, atol=1e-12)


@pytest.fixture
def policy():
    data = control.load_control("cartpole", batch_size=4, seed=0)
    return data, models.build("mlp", data.input_shape, data.num_classes, width=0.25, seed=0)


def test_shapes_and_the_zoo_mlp_is_a_three_layer_policy(policy):
    data, model = policy
    assert data.input_shape == (4,) and data.num_classes == 2 and data.task.metric == "return"
    assert control.load_control("acrobot").input_shape == (6,) and control.load_control("acrobot").num_classes == 3
    assert [tuple(m.weight.shape) for _, m in prunable_layers(model)] == [(64, 4), (64, 64), (2, 64)]
    assert data.example_inputs(3).shape == (3, 4)
    assert control.load_control("cartpole", eval_episodes=3).test.seeds == (10_000, 10_001, 10_002)


def test_same_seed_same_transitions_and_returns(policy):
    data, model = policy
    again = control.load_control("cartpole", batch_size=4, seed=0)
    other = control.load_control("cartpole", batch_size=4, seed=1)
    for loader in (data.train, again.train, other.train):
        loader.bind(model)
    first = next(iter(data.train))
    assert all(torch.equal(a, b) for a, b in zip(first, next(iter(again.train))))
    assert not torch.equal(first[0][:5], next(iter(other.train))[0][:5])
    second = next(iter(data.train))  # epoch 1: new episode seeds
    assert not torch.equal(first[0][:5], second[0][:5])
    assert data.test.seeds == control.EVAL_SEEDS == tuple(range(10_000, 10_010))
    assert data.task.evaluate(model, data.test, None)[1] == data.task.evaluate(model, again.test, None)[1]
    one = data.scoring_batches(2, 3, seed=7, model=model)
    assert all(torch.equal(a, b) for x, y in zip(one, data.scoring_batches(2, 3, seed=7, model=model))
               for a, b in zip(x, y))
    assert int(one[0][1][:, 3].sum()) == 3  # three whole episodes per batch


def test_short_training_learns_cartpole(one_thread):
    """A plain loop doing what the Trainer does: bind at epoch begin, iterate, loss_fn(model(x), y), Adam step."""
    data = control.load_control("cartpole", batch_size=8, seed=0, limit=200)  # training episodes cut at 200 steps
    model = models.build("mlp", data.input_shape, data.num_classes, width=0.25, seed=0)
    _, before = data.task.evaluate(model, data.test, None)
    optimizer = train.make_optimizer("adam", model.parameters(), lr=1e-2, weight_decay=5e-5)
    for _ in range(20):
        data.train.bind(model)
        for x, y in data.train:
            optimizer.zero_grad()
            data.task.loss_fn(model(x), y).backward()
            optimizer.step()
    _, after = data.task.evaluate(model, data.test, None)
    assert before < 60 and after > 100, (before, after)  # random play scores about 20, the maximum is 500


def test_crop_scores_prune_to_90_percent_and_the_policy_still_plays(policy):
    data, model = policy
    batches = data.scoring_batches(2, 4, seed=0, model=model)
    got = scores.crop(model, batches, loss_fn=data.task.loss_fn)
    keys = [f"{n}.weight" for n, _ in prunable_layers(model)]
    assert sorted(got) == sorted(keys) and all(torch.isfinite(s).all() and (s > 0).any() for s in got.values())
    prune.unstructured(model, got, 0.9)
    kept = sum(int(m.sum()) for m in prune.masks(model).values())
    total = sum(m.numel() for m in prune.masks(model).values())
    assert kept == total - round(0.9 * total)
    loss, ret = data.task.evaluate(model, data.test, None)
    assert math.isnan(loss) and 8 <= ret <= 500
    data.train.bind(model)
    x, y = next(iter(data.train))
    assert torch.isfinite(data.task.loss_fn(model(x), y))


def test_bad_input_says_what_is_allowed(policy):
    data, model = policy
    with pytest.raises(ValueError, match="cartpole"):
        control.load_control("pong")
    with pytest.raises(ValueError, match="model="):
        data.scoring_batches(1, 2, seed=0)
    with pytest.raises(ValueError, match="bind"):
        next(iter(control.load_control("cartpole").train))
    with pytest.raises(ValueError, match=r"\(3, 4\)"):
        control.reinforce_loss(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(ValueError, match="batch_size"):
        control.load_control("acrobot", batch_size=0)
    with pytest.raises(ValueError, match="eval_episodes"):
        control.load_control("acrobot", eval_episodes=0)
