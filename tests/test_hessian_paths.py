"""Hg two ways (`cropkit.core.derivatives.hessian_gradient`): double backprop and forward over reverse give the same
numbers, both equal a dense Hessian, forward mode falls back where it cannot run, and the derivative kernels the
double path swaps in are exact to second order."""
import warnings

import pytest
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F
from torch.nn.utils import parametrize

from cropkit.core import derivatives, kernels, node_derivatives, prune, scores
from cropkit.core.layers import node_layers, prunable_layers
from cropkit.tasks import models

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny nets: one thread is faster on a shared, busy machine

SHAPES = {"mlp": (1, 12), "cnn": (1, 8, 8), "cnn1d": (1, 16), "resnet18": (3, 8, 8), "vgg16": (3, 8, 8)}


def zoo(name, dtype=torch.float64, masked=False, width=0.125):
    """A zoo model at small width, with BatchNorm statistics and affine parameters away from their defaults (a
    fresh eval-mode BatchNorm is the identity and would not test the affine form the kernels use)."""
    model = models.build(name, SHAPES[name], 4, width=width, seed=0).to(dtype)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, kernels.NORM_TYPES):
                for t, lo, hi in ((m.weight, 0.5, 1.5), (m.bias, -0.3, 0.3), (m.running_mean, -0.2, 0.2),
                                  (m.running_var, 0.5, 2.0)):
                    t.copy_(torch.rand(t.shape, generator=g, dtype=dtype) * (hi - lo) + lo)
    if masked:  # a re-scored network: H(g ⊙ m)
        prune.unstructured(model, scores.random(model), 0.5)
    return model


def batches(name, n_batches=3, n=5, dtype=torch.float64):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(n, *SHAPES[name], generator=g, dtype=dtype), torch.randint(0, 4, (n,), generator=g))
            for _ in range(n_batches)]


def rel_err(got, want):
    a = torch.cat([got[k].flatten() for k in want])
    b = torch.cat([want[k].flatten() for k in want])
    return float((a - b).norm() / b.norm())


def dense_oracle(model, data, plain, loss_fn=F.cross_entropy):
    """(g ⊙ m, H(g ⊙ m)) with H formed densely by torch.autograd.functional.hessian over the flattened effective
    prunable weights, through functional_call on ``plain``, an unmasked twin of ``model`` that gets its effective
    weights: independent of the code's paths. (Not a deep copy with the masks removed: removing a parametrisation
    from a deep copy also removes the property from the original, whose class the copy shares.)"""
    masks = prune.masks(model)
    with torch.no_grad():
        for name, layer in prunable_layers(plain):
            layer.weight.copy_(model.get_submodule(name).weight)
    plain.eval()
    names = [f"{n}.weight" for n, _ in prunable_layers(plain)]
    theta = {k: plain.get_submodule(k[:-7]).weight.detach() for k in names}
    shapes = [theta[k].shape for k in names]
    unflat = lambda v: {k: p.view(s) for k, p, s in zip(names, torch.split(v, [s.numel() for s in shapes]), shapes)}

    def loss(vector):
        return sum(loss_fn(functional_call(plain, unflat(vector), (x,)), y) for x, y in data) / len(data)

    flat = torch.cat([theta[k].flatten() for k in names])
    g = torch.autograd.functional.jacobian(loss, flat) * torch.cat([masks[k].flatten() for k in names])
    return unflat(g), unflat(torch.autograd.functional.hessian(loss, flat) @ g)


@pytest.mark.parametrize("method", derivatives.METHODS)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("name", ["cnn", "cnn1d"])
def test_each_path_equals_a_dense_hessian(name, masked, method):
    model, data = zoo(name, masked=masked, width=0.0625), batches(name, n_batches=2)  # ≤ 430 weights: H is dense
    g_want, hg_want = dense_oracle(model, data, plain=zoo(name, width=0.0625))
    g, hg = derivatives.hessian_gradient(model, data, method=method)
    assert rel_err(g, g_want) < 1e-10 and rel_err(hg, hg_want) < 1e-8


@pytest.mark.parametrize("n_batches", [1, 3])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("name", list(SHAPES))
def test_both_paths_agree_in_float64(name, masked, n_batches):
    model, data = zoo(name, masked=masked), batches(name, n_batches)
    gated = dict(node_layers(model))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no fallback: forward mode really ran
        g_f, hg_f = derivatives.hessian_gradient(model, data, method="forward")
        dz_f = node_derivatives.gate_hessian_gradient(model, data, gated, None, method="forward")
    g_d, hg_d = derivatives.hessian_gradient(model, data, method="double")
    dz_d = node_derivatives.gate_hessian_gradient(model, data, gated, None, method="double")
    assert rel_err(g_f, g_d) < 1e-12
    assert rel_err(hg_f, hg_d) < 1e-10
    assert rel_err(dz_f, dz_d) < 1e-10
    if masked:  # g is g ⊙ m on both paths; Hg keeps its pruned entries (w.r.t. the effective weights) on both
        m = prune.masks(model)
        assert all((g_f[k][~m[k]] == 0).all() for k in m)
        assert any((hg_f[k][~m[k]] != 0).any() for k in m)


def test_both_paths_agree_in_float32():
    """float32: the two paths round differently; 1e-4 relative (norm over all weights) is a generous bound for
    the ~1e-6 measured on this net."""
    model, data = zoo("resnet18", torch.float32), batches("resnet18", 2, dtype=torch.float32)
    crop_f = scores.crop(model, data, method="forward")
    crop_d = scores.crop(model, data, method="double")
    assert rel_err(crop_f, crop_d) < 1e-4
    nodes_f, nodes_d = scores.crop_nodes(model, data, method="forward"), scores.crop_nodes(model, data)
    assert rel_err(nodes_f, nodes_d) < 1e-4


@pytest.mark.parametrize("loss_fn", [F.mse_loss, F.huber_loss], ids=["mse", "huber"])
def test_forward_mode_falls_back_with_a_reason(loss_fn):
    """torch has no working forward-mode derivative of mse_loss's and huber_loss's backward (mse: "ZeroTensors are
    immutable"; huber: not implemented): the forward path warns, records why and gives the double path's numbers."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    data = [(torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64))]
    derivatives.FORWARD_FALLBACKS.clear()
    with pytest.warns(UserWarning, match="forward-mode Hg is not available for Sequential"):
        _, hg_f = derivatives.hessian_gradient(model, data, loss_fn, method="forward")
    assert "Sequential" in derivatives.FORWARD_FALLBACKS
    _, hg_d = derivatives.hessian_gradient(model, data, loss_fn)
    assert rel_err(hg_f, hg_d) == 0
    by_hand = lambda out, y: (out - y).pow(2).mean()  # the same loss, written with ops forward mode can take
    _, hg_h = derivatives.hessian_gradient(model, data, by_hand, method="forward")
    assert rel_err(hg_h, hg_d) < 1e-12 if loss_fn is F.mse_loss else True


class Doubled(nn.Module):
    def forward(self, w):
        return 2 * w


def test_forward_mode_needs_plain_or_masked_weights():
    """A weight parametrisation other than the kit's mask: forward mode cannot take the effective weight as its
    input, so it falls back (and says which layer) rather than differentiate the wrong tensor."""
    model, data = zoo("mlp"), batches("mlp", 1)
    parametrize.register_parametrization(model[1], "weight", Doubled())
    derivatives.FORWARD_FALLBACKS.clear()
    with pytest.warns(UserWarning, match="'1' has the weight parametrisation"):
        _, hg_f = derivatives.hessian_gradient(model, data, method="forward")
    _, hg_d = derivatives.hessian_gradient(model, data)
    assert rel_err(hg_f, hg_d) == 0 and "Doubled" in derivatives.FORWARD_FALLBACKS["Sequential"]


def test_unknown_method_and_modules_left_as_they_were():
    model, data = zoo("cnn"), batches("cnn", 1)
    with pytest.raises(ValueError, match=r"\['double', 'forward'\]"):
        scores.crop(model, data, method="reverse")
    with pytest.raises(RuntimeError):  # a loss that fails midway: the swapped forwards are restored all the same
        derivatives.hessian_gradient(model, data, lambda out, y: out.view(-1, 7).sum())
    assert not any("forward" in vars(m) for m in model.modules())
    model.train()
    derivatives.hessian_gradient(model, data, method="forward")
    assert all(m.training for m in model.modules()) and not any("forward" in vars(m) for m in model.modules())


@pytest.mark.parametrize("conv", [
    nn.Conv2d(4, 6, 3, padding=1, bias=True),
    nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2, bias=False),
    nn.Conv1d(3, 3, 5, stride=2, padding=1, groups=3),
], ids=["conv2d", "conv2d-strided-dilated-grouped", "conv1d-depthwise"])
def test_conv_kernels_are_exact_to_second_order(conv):
    """`kernels.Conv` and its two gradient functions against finite differences of first and second derivatives."""
    conv = conv.double()
    spec = (list(conv.stride), list(conv.padding), list(conv.dilation), conv.groups)
    shape = (2, conv.in_channels) + (7,) * (conv.weight.dim() - 2)
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    w = conv.weight.detach().clone().requires_grad_(True)
    fn = lambda x, w: kernels.Conv.apply(x, w, spec)
    assert torch.autograd.gradcheck(fn, (x, w)) and torch.autograd.gradgradcheck(fn, (x, w))
    with torch.no_grad():
        torch.testing.assert_close(fn(x, w), F.conv2d(x, w, None, *spec) if x.dim() == 4 else
                                   F.conv1d(x, w, None, *spec), rtol=0, atol=0)



def test_masked_convolutions_get_the_derivative_kernels_too():
    """A masked conv is a parametrised subclass that keeps Conv2d's forward: it is swapped like a plain one."""
    model = zoo("cnn", masked=True)
    with derivatives.eval_mode(model), kernels.derivative_kernels(model, convs=True):
        swapped = [name for name, m in model.named_modules() if "forward" in vars(m)]
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert convs and set(convs) <= set(swapped)
    assert not any("forward" in vars(m) for m in model.modules())
