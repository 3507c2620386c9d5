"""GraSP scores the network as it trains: every BatchNorm with the batch's statistics (Wang et al.'s code scores
its freshly built network without .eval()). Checked against finite differences of the train-mode gradient, by the
scale invariance batch statistics give a conv → BatchNorm channel, and by the buffers scoring must leave alone."""
import copy

import torch
from torch import nn

from cropkit.core import derivatives, scores
from cropkit.core.layers import signal_preserving_init


def net(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 3), nn.BatchNorm2d(3),
                          nn.ReLU(), nn.Flatten(), nn.Linear(3 * 4 * 4, 5))
    signal_preserving_init(model)
    return model.double()


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 1, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 5, (8,), generator=g))]


def test_train_mode_hg_matches_finite_differences_of_the_train_mode_gradient():
    model, batches = net(), data()
    g, hg = derivatives.hessian_gradient(model, batches, norms="train")
    eps = 1e-6

    def gradient_at(sign):
        moved = copy.deepcopy(model)
        with torch.no_grad():
            for name, module in moved.named_modules():
                if f"{name}.weight" in g:
                    module.weight += sign * eps * g[f"{name}.weight"]
        return derivatives.gradient(moved, batches, norms="train")

    plus, minus = gradient_at(1), gradient_at(-1)
    fd = torch.cat([((plus[k] - minus[k]) / (2 * eps)).flatten() for k in g])
    got = torch.cat([hg[k].flatten() for k in g])
    assert float((got - fd).norm() / fd.norm()) < 1e-6
    _, hg_eval = derivatives.hessian_gradient(model, batches, norms="eval")
    assert float((torch.cat([v.flatten() for v in hg_eval.values()]) - got).norm() / got.norm()) > 0.1  # not eval's


def test_with_batch_statistics_a_conv_channel_before_a_batchnorm_is_scale_invariant():
    """Σ_{i ∈ channel} θ_i g_i = 0 (scaling a channel's filter changes nothing after a train-mode BatchNorm): the
    reason GraSP cannot reward a whole channel for amplifying; in eval mode at initialisation (BatchNorm = identity)
    it can."""
    model, batches = net(), data()
    theta = derivatives.weights_now(model)
    for norms, invariant in (("train", True), ("eval", False)):
        g = derivatives.gradient(model, batches, norms=norms)
        per_channel = (theta["0.weight"] * g["0.weight"]).flatten(1).sum(1)
        scale = (theta["0.weight"] * g["0.weight"]).abs().flatten(1).sum(1)
        # up to BatchNorm's ε in the variance: ~1e-5 of the channel's terms with batch statistics, ~1e-1 without
        assert bool((per_channel.abs() < 1e-4 * scale).all()) == invariant, norms


def test_scoring_leaves_the_batchnorm_buffers_and_modes_alone():
    model, batches = net(), data()
    model.train()
    before = copy.deepcopy(model.state_dict())
    scores.grasp(model, batches)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(m.training for m in model.modules())
    assert scores.grasp(model, batches).keys() == scores.grasp(model, batches, norms="eval").keys()
