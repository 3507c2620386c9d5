"""Scores against independent computations: a dense float64 Hessian for crop/grasp/snip, finite differences
of hand-written gated networks for the node criteria."""
import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cropkit.core import prune, scores
from cropkit.core.layers import classifier_name, prunable_layers
from cropkit.tasks import models


@pytest.fixture(autouse=True)
def float64():
    """The oracles need float64; other test modules get the default back."""
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def tiny_mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 4), nn.Tanh(), nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 3)).double()


def tiny_cnn():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Tanh(), nn.Conv2d(2, 2, 2), nn.BatchNorm2d(2),
                         nn.Tanh(), nn.Flatten(), nn.Linear(2 * 2 * 2, 3)).double()


def batches(shape, n_batches=2, n=6):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(n, *shape, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g))
            for _ in range(n_batches)]


NETS = {"mlp": (tiny_mlp, (5,)), "cnn": (tiny_cnn, (1, 5, 5))}


def oracle(model, data):
    """(θ, g, H(g ⊙ m)) with H from torch.autograd.functional.hessian over the flattened effective prunable
    weights and m the masks (all ones on an unmasked network): the masked weights are frozen at zero, so the
    gradient flow being preserved is that of the kept weights only."""
    model.eval()
    names = [f"{n}.weight" for n, _ in prunable_layers(model)]
    with torch.no_grad():
        theta = {k: model.get_submodule(k[:-7]).weight.detach().clone() for k in names}
    shapes = [theta[k].shape for k in names]
    flat = torch.cat([theta[k].flatten() for k in names])

    def loss(vector):
        pieces = torch.split(vector, [s.numel() for s in shapes])
        params = {k: p.view(s) for k, p, s in zip(names, pieces, shapes)}
        total = 0
        for x, y in data:
            out = x
            for name, module in model.named_children():
                key = f"{name}.weight"
                out = (F.linear(out, params[key], module.bias) if isinstance(module, nn.Linear) else
                       F.conv2d(out, params[key], module.bias) if isinstance(module, nn.Conv2d) else module(out))
            total = total + F.cross_entropy(out, y)
        return total / len(data)

    g = torch.autograd.functional.jacobian(loss, flat, vectorize=True)
    H = torch.autograd.functional.hessian(loss, flat, vectorize=True)
    m = torch.cat([mask.flatten() for mask in prune.masks(model).values()]).to(g.dtype)
    hg = H @ (g * m)  # explicit dense product
    unflat = lambda v: {k: p.view(s) for k, p, s in zip(names, torch.split(v, [s.numel() for s in shapes]), shapes)}
    return theta, unflat(g), unflat(hg)


def rel_err(got, want):
    a = torch.cat([got[k].flatten() for k in want])
    b = torch.cat([want[k].flatten() for k in want])
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("method", ["double", "forward"])  # the two ways to Hg (cropkit.core.derivatives)
@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("masked", [False, True])
def test_weight_scores_match_dense_hessian(net, masked, method):
    build, shape = NETS[net]
    model, data = build(), batches(shape)
    if masked:  # CroPit re-scores masked networks: H(g ⊙ m) at the effective weights
        prune.unstructured(model, scores.magnitude(model), 0.3)
    theta, g, hg = oracle(model, data)
    assert rel_err(scores.crop(model, data, method=method), {k: (theta[k] * hg[k]).abs() for k in theta}) < 1e-8
    assert rel_err(scores.grasp(model, data, method=method, norms="eval"), {k: theta[k] * hg[k] for k in theta}) < 1e-8
    assert rel_err(scores.snip(model, data), {k: (theta[k] * g[k]).abs() for k in theta}) < 1e-8
    assert rel_err(scores.magnitude(model), {k: theta[k].abs() for k in theta}) < 1e-12


def test_masked_rescoring_is_not_the_full_hessian_gradient():
    """The two conventions H(g ⊙ m) and Hg disagree on a masked network, so the oracle above can tell them apart."""
    model, data = tiny_mlp(), batches((5,))
    prune.unstructured(model, scores.magnitude(model), 0.5)
    theta, g, hgm = oracle(model, data)
    with torch.no_grad():  # Hg: the same network with the pruned weights unfrozen (mask removed, value 0 kept)
        dense = prune.make_permanent(copy.deepcopy(model))
    _, _, hg = oracle(dense, data)
    kept = {k: prune.masks(model)[k] for k in theta}
    assert rel_err({k: hg[k] * kept[k] for k in theta}, {k: hgm[k] * kept[k] for k in theta}) > 0.05


def gated_mlp(params, x, c1, c2):
    """The tiny MLP written out by hand with explicit gates after each hidden layer's bias."""
    h = torch.tanh(c1 * F.linear(x, params["0.weight"], params["0.bias"]))
    h = torch.tanh(c2 * F.linear(h, params["2.weight"], params["2.bias"]))
    return F.linear(h, params["4.weight"], params["4.bias"])


def gated_loss(params, data, c1, c2):
    return sum(F.cross_entropy(gated_mlp(params, x, c1, c2), y) for x, y in data) / len(data)


def finite_difference(fn, c, eps=1e-6):
    out = torch.empty_like(c)
    for j in range(c.numel()):
        step = torch.zeros_like(c)
        step[j] = eps
        out[j] = (fn(c + step) - fn(c - step)) / (2 * eps)
    return out


@pytest.mark.parametrize("method", ["double", "forward"])
@pytest.mark.parametrize("masked", [False, True])
def test_node_scores_match_finite_differences_of_gated_copy(masked, method):
    model, data = tiny_mlp(), batches((5,))
    keys = ("0.weight", "2.weight", "4.weight")
    if masked:  # CroPit-S-style re-scoring of a masked network: z = (g ⊙ m)ᵀ ∇_θ L
        prune.unstructured(model, scores.magnitude(model), 0.3)
    m = prune.masks(model)
    params = {k: v.detach().clone().requires_grad_(k.endswith("weight")) for k, v in model.state_dict().items()
              if ".parametrizations." not in k}
    for k in keys:  # the effective weights θ ⊙ m
        params[k] = model.get_submodule(k[:-7]).weight.detach().clone().requires_grad_(True)
    weights = [params[k] for k in keys]
    one1, one2 = torch.ones(4), torch.ones(3)
    g = [t.detach() * m[k] for t, k in zip(torch.autograd.grad(gated_loss(params, data, one1, one2), weights), keys)]

    def z(c1, c2):  # z(c) = gᵀ ∇_θ L(θ, c), g fixed at c = 1
        grads = torch.autograd.grad(gated_loss(params, data, c1, c2), weights)
        return sum((gi * gr).sum() for gi, gr in zip(g, grads)).detach()

    crop = scores.crop_nodes(model, data, method=method)
    snap = scores.snap_nodes(model, data)
    assert set(crop) == set(snap) == {"0", "2"}  # never the classifier
    for name, c_fn_z, c_fn_l in [
        ("0", lambda c: z(c, one2), lambda c: gated_loss(params, data, c, one2).detach()),
        ("2", lambda c: z(one1, c), lambda c: gated_loss(params, data, one1, c).detach()),
    ]:
        ones = one1 if name == "0" else one2
        torch.testing.assert_close(crop[name], finite_difference(c_fn_z, ones).abs(), rtol=1e-6, atol=1e-10)
        torch.testing.assert_close(snap[name], finite_difference(c_fn_l, ones).abs(), rtol=1e-6, atol=1e-10)


def test_bn_and_taylor_gate_scores():
    model, data = tiny_cnn(), batches((1, 5, 5))
    with torch.no_grad():
        model[1].weight.uniform_(-2, 2)
        model[1].bias.uniform_(-1, 1)
    bn = scores.bn_nodes(model, data)
    assert set(bn) == {"0", "3"}  # every node layer; the classifier is never a node layer
    torch.testing.assert_close(bn["0"], model[1].weight.detach().abs())
    # a gate γ_g after the BN scales y = γ x̂ + β, so ∂L/∂γ_g = γ ∂L/∂γ + β ∂L/∂β (autograd on the BN)
    model.eval()
    loss = sum(F.cross_entropy(model(x), y) for x, y in data) / len(data)
    dgamma, dbeta = torch.autograd.grad(loss, [model[1].weight, model[1].bias])
    expected = (model[1].weight * dgamma + model[1].bias * dbeta).abs().detach()
    torch.testing.assert_close(scores.taylor_gate_nodes(model, data)["0"], expected)


def test_synflow_matches_path_norm_formula():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3, bias=False), nn.ReLU(), nn.Linear(3, 2, bias=False)).double()
    w1, w2 = model[0].weight.detach(), model[2].weight.detach()
    # R = 1ᵀ |W2| |W1| 1  ⇒  ∂R/∂|W1|_ij = Σ_k |W2|_ki,  ∂R/∂|W2|_ki = Σ_j |W1|_ij
    want = {"0.weight": w1.abs() * w2.abs().sum(0)[:, None], "2.weight": w2.abs() * w1.abs().sum(1)[None, :]}
    got = scores.synflow(model, [(torch.randn(2, 4), torch.zeros(2, dtype=torch.long))])
    assert rel_err(got, want) < 1e-12


def test_scoring_restores_modes_and_buffers_and_uses_eval_mode():
    model = tiny_cnn().train()
    model[3].eval()  # a submodule with its own mode must keep it
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    for fn in list(scores.WEIGHT_SCORES.values()) + list(scores.NODE_SCORES.values()):
        fn(model, batches((1, 5, 5)))
    assert model.training and model[1].training and not model[3].training
    for k, v in model.state_dict().items():
        assert torch.equal(v, buffers[k]), k  # eval mode: BN running statistics untouched


def test_every_criterion_on_a_zoo_model_has_the_right_keys_and_shapes():
    torch.set_default_dtype(torch.float32)
    model = models.build("cnn", (1, 8, 8), 10, width=0.25, seed=0)
    data = [(torch.randn(4, 1, 8, 8, dtype=torch.float32), torch.randint(0, 10, (4,)))]
    layers = dict(prunable_layers(model))
    nodes = [n for n in layers if n != classifier_name(model)]
    for name, fn in scores.WEIGHT_SCORES.items():
        s = fn(model, data)
        assert list(s) == [f"{n}.weight" for n in layers], name
        assert all(s[f"{n}.weight"].shape == m.weight.shape and torch.isfinite(s[f"{n}.weight"]).all()
                   for n, m in layers.items()), name
    for name, fn in scores.NODE_SCORES.items():
        s = fn(model, data)
        assert list(s) == nodes, name  # every node layer, the hidden Linear included (it has a BatchNorm1d)
        assert all(s[n].shape == (layers[n].weight.shape[0],) for n in s), name


def test_random_is_seeded():
    model = tiny_mlp()
    a, b, c = scores.random(model, seed=0), scores.random(model, seed=0), scores.random(model, seed=1)
    assert all(torch.equal(a[k], b[k]) for k in a) and not torch.equal(a["0.weight"], c["0.weight"])
    data = batches((5,))
    assert torch.equal(scores.random_nodes(model, data, seed=3)["0"], scores.random_nodes(model, data, seed=3)["0"])
    assert not torch.equal(scores.random_nodes(model, data, seed=3)["0"], scores.random_nodes(model, data)["0"])


def test_bad_input_raises_value_error_saying_what_is_allowed():
    with pytest.raises(ValueError, match="crop"):
        scores.get("cropp")
    assert scores.get("crop") is scores.crop and scores.get("crop_nodes") is scores.crop_nodes
    with pytest.raises(ValueError, match="empty"):
        scores.crop(tiny_mlp(), [])
    with pytest.raises(ValueError, match="Conv1d, Conv2d or Linear"):
        scores.snip(nn.Sequential(nn.ReLU(), nn.Tanh()), batches((5,)))
    with pytest.raises(ValueError, match="Conv1d, Conv2d or Linear"):
        scores.crop_nodes(nn.Sequential(nn.ReLU(), nn.Tanh()), batches((5,)))
    with pytest.raises(ValueError, match="BatchNorm"):
        scores.bn_nodes(tiny_mlp(), batches((5,)))
    no_second_norm = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Tanh(), nn.Conv2d(2, 2, 2), nn.Tanh(),
                                   nn.Flatten(), nn.Linear(8, 3))
    with pytest.raises(ValueError, match=r"\['3'\] are not followed directly by a BatchNorm"):
        scores.bn_nodes(no_second_norm, batches((1, 5, 5)))
