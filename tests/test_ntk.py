"""cropkit.ntk against independent computations: the chain-rule identity, an explicit Jacobian, masks."""
import copy

import pytest
import torch
import torch.nn.functional as F
import torch.nn.utils.parametrize as parametrize
import torch.nn.utils.prune as prune
from torch import nn

from cropkit.core import ntk
from cropkit.core.layers import prunable_layers
from cropkit.tasks import models
from cropkit.training.callbacks import KernelDrift

SHAPES = {"mlp": (1, 12), "cnn": (1, 8, 8), "cnn1d": (1, 16)}


def _model(name, seed=0):
    model = models.build(name, SHAPES[name], num_classes=4, width=0.25, seed=seed).double()
    if name != "mlp":  # give BatchNorm non-trivial running statistics so eval mode is really tested
        model.train()
        with torch.no_grad():
            model(torch.randn(16, *SHAPES[name], dtype=torch.float64) * 2 + 1)
    return model


def _batch(name, n=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *SHAPES[name], generator=g, dtype=torch.float64), torch.randint(0, 4, (n,), generator=g)


def _explicit_ntk(model, x, names):
    """J Jᵀ with J from torch.autograd.functional.jacobian of the flattened eval-mode outputs."""
    model = copy.deepcopy(model).eval()
    params = dict(model.named_parameters())
    rest = {n: p.detach() for n, p in params.items() if n not in names}

    def outputs(*values):
        return torch.func.functional_call(model, ({**rest, **dict(zip(names, values))}, dict(model.named_buffers())),
                                          (x,)).reshape(-1)

    jac = torch.autograd.functional.jacobian(outputs, tuple(params[n].detach() for n in names))
    J = torch.cat([j.reshape(j.shape[0], -1) for j in jac], dim=1)  # (N·C, P)
    return J @ J.T


@pytest.mark.parametrize("name", ["mlp", "cnn", "cnn1d"])
@pytest.mark.parametrize("params", ["all", "prunable"])
def test_gradient_flow_equals_ntk_form(name, params):
    for seed in range(2):
        model = _model(name, seed)
        x, y = _batch(name, seed=seed + 10)
        direct = ntk.gradient_flow(model, x, y, params=params)
        via_ntk = ntk.gradient_flow_from_ntk(model, x, y, params=params)
        assert direct > 0
        assert ntk.relative_error(direct, via_ntk) < 1e-10


def test_sum_reduction_loss_is_respected():
    model, (x, y) = _model("mlp"), _batch("mlp")
    loss_fn = lambda out, t: F.cross_entropy(out, t, reduction="sum")
    mean, total = ntk.gradient_flow(model, x, y), ntk.gradient_flow(model, x, y, loss_fn)
    assert total == pytest.approx(mean * len(y) ** 2, rel=1e-10)  # g scales with N, GF with N²
    assert ntk.relative_error(total, ntk.gradient_flow_from_ntk(model, x, y, loss_fn)) < 1e-10


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_empirical_ntk_matches_explicit_jacobian(name):
    model, (x, _) = _model(name), _batch(name, n=3)
    kernel = ntk.empirical_ntk(model, x)
    names = list(ntk.parameters(model))
    assert kernel.shape == (3 * 4, 3 * 4)
    torch.testing.assert_close(kernel, _explicit_ntk(model, x, names), rtol=1e-10, atol=1e-12)


def test_prunable_parameter_set_is_the_layer_weights():
    model = _model("cnn")
    names = list(ntk.parameters(model, "prunable"))
    assert names == [f"{n}.weight" for n, _ in prunable_layers(model)]
    x, _ = _batch("cnn", n=2)
    torch.testing.assert_close(ntk.empirical_ntk(model, x, "prunable"), _explicit_ntk(model, x, names))


def test_mode_and_buffers_are_restored():
    model, (x, y) = _model("cnn"), _batch("cnn")
    model.train()
    before = {n: b.clone() for n, b in model.named_buffers()}
    ntk.empirical_ntk(model, x)
    ntk.gradient_flow(model, x, y)
    assert all(m.training for m in model.modules())
    for n, b in model.named_buffers():  # eval mode: running statistics untouched
        torch.testing.assert_close(b, before[n])


def _random_prune(model, amount=0.6):
    torch.manual_seed(0)
    for _, module in prunable_layers(model):
        prune.random_unstructured(module, "weight", amount=amount)
    return model


def test_pruned_model_uses_the_effective_network():
    model = _random_prune(_model("cnn"))
    x, y = _batch("cnn")
    # the identity still holds, and masked weights receive exactly zero gradient
    assert ntk.relative_error(ntk.gradient_flow(model, x, y), ntk.gradient_flow_from_ntk(model, x, y)) < 1e-10
    grads = ntk.loss_gradient(model, x, y)
    masks = dict(model.named_buffers())
    for name, g in grads.items():
        if name.endswith("weight_orig"):
            assert (g[masks[name.replace("weight_orig", "weight_mask")] == 0] == 0).all()
    # oracle: a plain copy whose weights are the masked ones; its GF restricted to the kept weights
    plain = _model("cnn")
    with torch.no_grad():
        for (_, pruned), (_, dense) in zip(prunable_layers(model), prunable_layers(plain)):
            dense.weight.copy_(pruned.weight_orig * pruned.weight_mask)
    plain_grads = ntk.loss_gradient(plain, x, y)
    expected = 0.0
    for name, g in plain_grads.items():
        mask_name = name.replace(".weight", ".weight_mask")
        expected += float((g * masks[mask_name]).pow(2).sum()) if mask_name in masks else float(g.pow(2).sum())
    assert ntk.gradient_flow(model, x, y) == pytest.approx(expected, rel=1e-10)
    assert isinstance(model[0].weight, torch.Tensor) and model(x).shape == (5, 4)  # module still usable


class _Mask(nn.Module):
    def __init__(self, mask):
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, w):
        return w * self.mask


def test_parametrized_mask_matches_prune_hooks():
    hooked = _random_prune(_model("mlp"))
    parametrized = _model("mlp")
    for (_, h), (_, p) in zip(prunable_layers(hooked), prunable_layers(parametrized)):
        parametrize.register_parametrization(p, "weight", _Mask(h.weight_mask.clone()))
    x, y = _batch("mlp")
    assert ntk.gradient_flow(parametrized, x, y) == pytest.approx(ntk.gradient_flow(hooked, x, y), rel=1e-12)
    torch.testing.assert_close(ntk.empirical_ntk(parametrized, x), ntk.empirical_ntk(hooked, x))


def test_kernel_distance_and_eigenvalues():
    model, (x, _) = _model("mlp"), _batch("mlp", n=4)
    k1 = ntk.empirical_ntk(model, x)
    k2 = ntk.empirical_ntk(_model("mlp", seed=3), x)
    assert ntk.kernel_distance(k1, k1) == pytest.approx(0.0, abs=1e-12)
    assert ntk.kernel_distance(k1, 7.5 * k1) == pytest.approx(0.0, abs=1e-12)
    d = ntk.kernel_distance(k1, k2)
    assert 0 < d < 2
    assert ntk.kernel_distance(3 * k1, 0.2 * k2) == pytest.approx(d, rel=1e-10)
    values = ntk.top_eigenvalues(torch.diag(torch.tensor([1.0, 5.0, 3.0])), 2)
    torch.testing.assert_close(values, torch.tensor([5.0, 3.0]))
    top = ntk.top_eigenvalues(k1, 3)
    assert (top[:-1] >= top[1:]).all() and top[-1] >= -1e-10  # the NTK is positive semi-definite
    assert ntk.top_eigenvalues(k1).sum() == pytest.approx(float(k1.trace()), rel=1e-10)


def test_bad_input_raises():
    model = _model("mlp")
    with pytest.raises(ValueError, match="empty"):
        ntk.empirical_ntk(model, torch.zeros(0, 1, 12, dtype=torch.float64))
    with pytest.raises(ValueError, match="params"):
        ntk.parameters(model, "weights")
    with pytest.raises(ValueError, match="shape"):
        ntk.kernel_distance(torch.eye(2), torch.eye(3))


def test_pruning_effect_and_kernel_drift_callback():
    from torch.utils.data import DataLoader, TensorDataset

    from cropkit.lessons.widgets_ntk import pruned_copy
    from cropkit.training.loop import Trainer

    model, (x, y) = _model("mlp"), _batch("mlp", n=8)
    scores = {f"{n}.weight": m.weight.detach().abs() for n, m in prunable_layers(model)}
    same = ntk.pruning_effect(model, pruned_copy(model, scores, 0.0), x, y, x[:3])
    assert same["gf_change"] == 0 and same["kernel_distance"] == pytest.approx(0, abs=1e-12)
    pruned = pruned_copy(model, scores, 0.8)
    effect = ntk.pruning_effect(model, pruned, x, y, x[:3], eigenvalues=4)
    assert effect["gf_change"] != 0 and effect["kernel_distance"] > 0 and len(effect["eigenvalues"]) == 4
    reference = ntk.dense_reference(model, x, y, x[:3])
    assert ntk.pruning_effect(model, pruned, x, y, x[:3], eigenvalues=4, reference=reference) == effect
    single = ntk.pruning_effect(model, pruned, x, y, x[:3], dtype=torch.float32)
    assert single["kernel_distance"] == pytest.approx(effect["kernel_distance"], rel=1e-3, abs=1e-5)

    model = model.float()
    loaders = (DataLoader(TensorDataset(x.float(), y), batch_size=4), DataLoader(TensorDataset(x.float(), y)))
    drift = KernelDrift(x[:2].float(), every_steps=3)
    Trainer(model, loaders, epochs=3, progress=False, callbacks=[drift], evaluate_every_epoch=False).fit()
    assert drift.steps == [0, 3, 6] and drift.distance[0] == pytest.approx(0, abs=1e-12)
    assert drift.trace_ratio[0] == 1 and drift.distance[-1] > 0
    assert all(m.training for m in model.modules())


def test_a_disconnected_network_has_an_undefined_kernel_distance():
    """No path from input to output: Θ' = 0, the kernel distance (a cosine) is NaN and the result says why."""
    import math

    from cropkit.tasks import models

    torch.manual_seed(0)
    dense = models.build("mlp", (1, 6), 3, width=0.05, seed=0)
    cut = copy.deepcopy(dense)
    with torch.no_grad():
        for p in cut.parameters():
            p.zero_()
    x, y = torch.randn(4, 1, 6), torch.tensor([0, 1, 2, 0])
    effect = ntk.pruning_effect(dense, cut, x, y, x[:2], "prunable", eigenvalues=2)
    assert effect["disconnected"] and math.isnan(effect["kernel_distance"]) and effect["trace_ratio"] == 0
    assert not ntk.pruning_effect(dense, dense, x, y, x[:2], "prunable", eigenvalues=2)["disconnected"]
