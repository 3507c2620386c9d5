"""Structured pruning: the physically smaller network must equal the dense network with the removed channels
zeroed (the oracle), hit its budget, and stay an ordinary module that trains, saves and reloads."""
import copy
import io
import math
import os

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from cropkit.core import measure, prune, scores
from cropkit.core.layers import classifier_name, prunable_layers
from cropkit.tasks import models

ZOO = {  # small but not degenerate: one removed node must stay well under 1 % of the weights
    "mlp": dict(input_shape=(1, 40), width=0.25),
    "cnn1d": dict(input_shape=(1, 40), width=1.0),
    "cnn": dict(input_shape=(1, 8, 8), width=0.5),
    "resnet18": dict(input_shape=(3, 8, 8), width=0.125),
    "vgg16": dict(input_shape=(3, 8, 8), width=0.25),
}


def build(name, **kw):
    spec = ZOO.get(name, dict(input_shape=(3, 32, 32)))
    return models.build(name, spec["input_shape"], 10, width=spec.get("width", 1.0), seed=0, **kw).eval()


def example(model_or_shape, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *model_or_shape, generator=g)


def batch(x):
    return [(x, torch.zeros(len(x), dtype=torch.long))]


def weights(model):
    return sum(m.weight.numel() for _, m in prunable_layers(model))


def flops(model, x):
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops()


def zeroed(model, removed):
    """The oracle: a dense copy whose removed output channels (prunable *and* norm layers) are forced to 0."""
    dense = copy.deepcopy(model)
    modules = dict(dense.named_modules())
    for name, idx in removed.items():
        module = modules[name]
        dim = -1 if isinstance(module, nn.Linear) else 1
        keep = torch.ones(module.weight.shape[0])
        keep[idx] = 0

        def hook(mod, inputs, output, keep=keep, dim=dim):
            shape = [1] * output.dim()
            shape[dim] = -1
            return output * keep.view(shape)
        module.register_forward_hook(hook)
    return dense


def assert_equivalent(model, node_scores, sparsity, x):
    plan = prune.structured_plan(model, node_scores, sparsity, x[:1])
    oracle = zeroed(model, plan.removed)
    small = plan.apply().eval()
    with torch.no_grad():
        torch.testing.assert_close(small(x), oracle(x), rtol=0, atol=1e-5)
    return plan, small


@pytest.mark.parametrize("name", ["resnet18", "vgg16"])
def test_zoo_pruned_equals_zeroed_dense(name):
    model = build(name)
    x = example(ZOO[name]["input_shape"])
    plan, small = assert_equivalent(model, scores.random_nodes(model, batch(x)), 0.7, x)
    assert plan.removed and weights(small) < weights(build(name))


def small_torchvision(name):
    """Torchvision's own architectures (code the kit never saw), in configurations small enough for CI."""
    import torchvision.models as tv
    from torchvision.models.resnet import Bottleneck

    torch.manual_seed(0)
    build = {
        "resnext": lambda: tv.ResNet(Bottleneck, [1, 1, 1, 1], num_classes=10, groups=4, width_per_group=4),
        "densenet": lambda: tv.DenseNet(growth_rate=8, block_config=(2, 2, 2), num_init_features=16, bn_size=2,
                                        num_classes=10),
        "mobilenet_v2": lambda: tv.mobilenet_v2(num_classes=10, width_mult=0.25),
        "mobilenet_v3_small": lambda: tv.mobilenet_v3_small(num_classes=10, width_mult=0.25),
        "googlenet": lambda: tv.GoogLeNet(num_classes=10, aux_logits=False, init_weights=False),
    }[name]
    model = build().eval()
    _randomise_norms(model)
    return model


TESTED_FAMILIES = ["resnext", "densenet", "mobilenet_v2", "mobilenet_v3_small", "googlenet"]  # the README lists these


@pytest.mark.parametrize("name", TESTED_FAMILIES)
def test_torchvision_pruned_equals_zeroed_dense(name):
    model = small_torchvision(name)
    x = example((3, 32, 32), n=2)
    plan, small = assert_equivalent(model, scores.random_nodes(model, batch(x)), 0.5, x)
    assert abs(plan.weight_sparsity - 0.5) <= 0.01
    assert abs(1 - weights(small) / weights(small_torchvision(name)) - 0.5) <= 0.01


def unsupported_torchvision(name):
    """Torchvision architectures the surgery cannot handle, small."""
    import torchvision.models as tv

    torch.manual_seed(0)
    return {
        "shufflenet_v2": lambda: tv.shufflenet_v2_x0_5(num_classes=10),  # channel shuffle: torch-pruning fails
        "googlenet_aux": lambda: tv.GoogLeNet(num_classes=10, aux_logits=True, init_weights=False),  # aux heads
        "vit": lambda: tv.VisionTransformer(image_size=32, patch_size=8, num_layers=1, num_heads=2, hidden_dim=16,
                                            mlp_dim=32, num_classes=10),  # out_proj used functionally
        "swin": lambda: tv.SwinTransformer(patch_size=[4, 4], embed_dim=16, depths=[1, 1], num_heads=[2, 2],
                                           window_size=[2, 2], num_classes=10),  # qkv used functionally
    }[name]().eval()


@pytest.mark.parametrize("name, model_class, reason", [
    ("shufflenet_v2", "ShuffleNetV2", "torch-pruning could not trace its channel dependencies.*ZeroDivisionError"),
    ("googlenet_aux", "GoogLeNet", r"layers \['aux1.*not called as modules"),
    ("vit", "VisionTransformer", r"layers \['encoder.layers.encoder_layer_0.self_attention.out_proj'\] are not"),
    ("swin", "SwinTransformer", r"layers \['features.1.0.attn.qkv'.*not called as modules"),
])
def test_unsupported_torchvision_models_are_a_value_error_naming_model_and_reason(name, model_class, reason):
    model, x = unsupported_torchvision(name), example((3, 32, 32), n=1)
    with pytest.raises(ValueError, match=f"cannot handle {model_class}: .*{reason}"):
        prune.structured(model, scores.l1_nodes(model), 0.5, x)
    with pytest.raises(ValueError, match=f"cannot handle {model_class}: .*{reason}"):
        scores.random_nodes(model, batch(x))  # Random-S traces the coupled groups itself


FULL_SIZE = ["resnet18", "resnext50_32x4d", "vgg11_bn", "mobilenet_v2", "mobilenet_v3_large", "densenet121",
             "efficientnet_b0"]


@pytest.mark.skipif(not os.environ.get("CROPKIT_SLOW"), reason="full-size torchvision models: set CROPKIT_SLOW=1")
@pytest.mark.parametrize("name", FULL_SIZE)
def test_full_size_torchvision_pruned_equals_zeroed_dense(name):
    torch.manual_seed(0)
    model = models.build(name, (3, 32, 32), 10).eval()
    _randomise_norms(model)
    x = example((3, 32, 32), n=2)
    plan, _ = assert_equivalent(model, scores.random_nodes(model, batch(x)), 0.5, x)
    assert abs(plan.weight_sparsity - 0.5) <= 0.01


def _randomise_norms(model):
    """Non-trivial BN statistics, so that a channel the surgery got wrong cannot hide behind BN(0) = 0."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.98])
@pytest.mark.parametrize("name", list(ZOO))
def test_every_zoo_model_shrinks_to_the_target_and_stays_an_ordinary_module(name, sparsity):
    dense, model = build(name), build(name)
    x = example(ZOO[name]["input_shape"])
    y = torch.randint(0, 10, (len(x),), generator=torch.Generator().manual_seed(0))
    small = prune.structured(model, scores.crop_nodes(model, [(x, y)]), sparsity, x[:1])

    assert abs(1 - weights(small) / weights(dense) - sparsity) <= 0.01
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in dense.parameters())
    assert flops(small, x[:1]) < flops(dense, x[:1])
    layers, dense_layers = dict(prunable_layers(small)), dict(prunable_layers(dense))
    first, classifier = next(iter(layers)), classifier_name(small)
    assert layers[first].weight.shape[1] == dense_layers[first].weight.shape[1]          # inputs untouched
    assert layers[classifier].weight.shape[0] == dense_layers[classifier].weight.shape[0]  # outputs untouched
    assert all(m.weight.shape[0] >= 1 for m in layers.values())                           # a node per layer

    small.train()  # forward and backward, one optimizer step
    loss = F.cross_entropy(small(x), y)
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in small.parameters())
    torch.optim.SGD(small.parameters(), lr=0.1).step()

    small.eval()
    want = small(x)
    buffer = io.BytesIO()
    torch.save(small, buffer)
    buffer.seek(0)
    torch.testing.assert_close(torch.load(buffer, weights_only=False)(x), want, rtol=0, atol=0)
    rebuilt = prune.load_structured(build(name), copy.deepcopy(small.state_dict())).eval()
    torch.testing.assert_close(rebuilt(x), want, rtol=0, atol=0)


def test_flops_budget_cuts_measured_flops_by_the_fraction():
    dense, model = build("vgg16"), build("vgg16")
    x = example(ZOO["vgg16"]["input_shape"])
    small = prune.structured(model, scores.l1_nodes(model), 0.6, x[:1], budget="flops")
    assert abs(1 - flops(small, x[:1]) / flops(dense, x[:1]) - 0.6) <= 0.01


def test_nodes_budget_removes_that_fraction_of_nodes():
    dense, model = build("resnet18"), build("resnet18")
    x = example(ZOO["resnet18"]["input_shape"])
    small = prune.structured(model, scores.random_nodes(model, batch(x)), 0.5, x[:1], budget="nodes")
    nodes = lambda m: sum(layer.weight.shape[0] for n, layer in prunable_layers(m)
                          if n != classifier_name(m))
    assert abs(1 - nodes(small) / nodes(dense) - 0.5) <= 0.01


def test_layer_scope_removes_the_same_fraction_everywhere():
    model = build("vgg16")
    before = {n: m.weight.shape[0] for n, m in prunable_layers(model)}
    x = example(ZOO["vgg16"]["input_shape"])
    small = prune.structured(model, scores.l1_nodes(model), 0.75, x[:1], scope="layer")
    removed = {n: before[n] - m.weight.shape[0] for n, m in prunable_layers(small)}
    layers = list(before)[:-1]
    # one common fraction t with |removed_l − t·n_l| <= 1 channel in every layer: the intervals must intersect
    low = max((removed[n] - 1) / before[n] for n in layers)
    high = min((removed[n] + 1) / before[n] for n in layers)
    assert low <= high, {n: (removed[n], before[n]) for n in layers}
    assert abs(1 - weights(small) / weights(build("vgg16")) - 0.75) <= 0.01


def test_cropit_structured_reaches_the_target_against_the_dense_model():
    dense, model = build("cnn"), build("cnn")
    x = example(ZOO["cnn"]["input_shape"], n=8)
    y = torch.randint(0, 10, (8,), generator=torch.Generator().manual_seed(0))
    small = prune.cropit(model, [(x, y)], 0.9, structured=True, example_inputs=x[:1])
    assert abs(1 - weights(small) / weights(dense) - 0.9) <= 0.01


def test_bad_input_raises_value_error_saying_what_is_allowed():
    model = build("cnn")
    x = example(ZOO["cnn"]["input_shape"])
    n = scores.l1_nodes(model)
    for bad in (1.0, -0.5):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            prune.structured(model, n, bad, x)
    with pytest.raises(ValueError, match="weights"):
        prune.structured(model, n, 0.5, x, budget="params")
    with pytest.raises(ValueError, match="allowed"):
        prune.structured(model, {**n, classifier_name(model): torch.ones(10)}, 0.5, x)
    with pytest.raises(ValueError, match="non-empty"):
        prune.structured(model, {}, 0.5, x)
    with pytest.raises(ValueError, match="example_inputs"):
        prune.structured(model, n, 0.5, None)
    with pytest.raises(ValueError, match="example_inputs"):
        prune.cropit(model, [(x, torch.zeros(len(x), dtype=torch.long))], 0.5, structured=True)
    masked = build("cnn")
    prune.unstructured(masked, scores.magnitude(masked), 0.5)
    with pytest.raises(ValueError, match="make_permanent"):
        prune.structured(masked, scores.l1_nodes(masked), 0.5, x)


def test_groups_without_any_scored_layer_stay_whole():
    model = build("cnn")
    hidden = [n for n, m in prunable_layers(model) if isinstance(m, nn.Linear)][0]
    x = example(ZOO["cnn"]["input_shape"])
    partial = {k: v for k, v in scores.l1_nodes(model).items() if k != hidden}  # no opinion on the hidden layer
    width = model.get_submodule(hidden).out_features
    small = prune.structured(model, partial, 0.5, x[:1])
    assert small.get_submodule(hidden).out_features == width


def test_warns_when_a_layer_is_cut_to_one_node():
    model = build("cnn")
    x = example(ZOO["cnn"]["input_shape"])
    node_scores = scores.l1_nodes(model)
    first = next(iter(node_scores))
    node_scores[first] = node_scores[first] - 1e6  # every node of the first conv ranks last
    node_scores[first][0] = 1e6  # but one (each layer keeps its best node)
    with pytest.warns(UserWarning, match=rf"a single node: \['{first}'\]"):
        prune.structured(model, node_scores, 0.3, x[:1])


def test_earlybird_scores_every_layer_of_the_cnn():
    """EarlyBird's |γ| must score the hidden Linear too (the cnn gives it a BatchNorm1d); when it did not, that
    group stayed whole and the weight budget cut conv1–conv3 to one channel each."""
    import warnings

    model = build("cnn")
    x = example(ZOO["cnn"]["input_shape"])
    bn = scores.bn_nodes(model, [(x, torch.zeros(len(x), dtype=torch.long))])
    assert list(bn) == [n for n, _ in prunable_layers(model)][:-1]
    torch.manual_seed(0)
    for norm in [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]:
        norm.weight.data.uniform_(0.5, 1.5)  # |γ| of a trained net are spread; at init they are all 1
    bn = scores.bn_nodes(model, [(x, torch.zeros(len(x), dtype=torch.long))])
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*a single node")  # no layer collapse
        small = prune.structured(model, bn, 0.9, x[:1])
    assert min(m.weight.shape[0] for _, m in prunable_layers(small)) > 1


def test_random_s_keeps_the_same_fraction_in_every_layer():
    """Random-S draws one uniform score per coupled group: on ResNet18 at 0.9 the residual stream (3 members) and
    the block-internal convs keep the same fraction of their channels in expectation (√0.1 ≈ 0.32 each). With one
    draw per member the stream kept 85–89 % and the internal convs 6–12 %."""
    shape = ZOO["resnet18"]["input_shape"]
    x = example(shape)
    dense = models.build("resnet18", shape, 10, width=0.5, seed=0)
    kept = {}
    for seed in range(3):
        model = models.build("resnet18", shape, 10, width=0.5, seed=0).eval()
        small = prune.structured(model, scores.random_nodes(model, batch(x), seed=seed), 0.9, x[:1])
        for name, (k, n) in measure.kept_nodes(small, dense).items():
            kept[name] = kept.get(name, 0) + k / n / 3
    assert all(0.2 < f < 0.5 for f in kept.values()), kept


def test_a_layer_left_with_two_nodes_is_starved_and_a_floor_keeps_a_share_of_every_layer():
    """The warning fires at ≤ 2 kept nodes (not only at one); ``min_fraction`` (the runs' ``layer_floor``) keeps
    at least that fraction of every coupled group, still at the weight target; 0 is the paper's single ranking."""
    model = build("cnn")
    x = example(ZOO["cnn"]["input_shape"])
    generator = torch.Generator().manual_seed(0)
    node_scores = {name: 0.1 + 0.8 * torch.rand(m.weight.shape[0], generator=generator)
                   for name, m in list(prunable_layers(model))[:-1]}
    first = next(iter(node_scores))
    node_scores[first] = torch.full_like(node_scores[first], 1e-6)  # one layer scored far below the others
    node_scores[first][:2] = 1.0
    with pytest.warns(UserWarning, match=rf"at most 2 nodes: {{'{first}': 2}}"):
        plan = prune.structured_plan(copy.deepcopy(model), node_scores, 0.5, x)
    assert len(plan.removed[first]) == model.get_submodule(first).weight.shape[0] - 2
    floored = prune.structured_plan(copy.deepcopy(model), node_scores, 0.5, x, min_fraction=0.25)
    assert abs(floored.weight_sparsity - 0.5) <= 0.01
    for name, m in list(prunable_layers(model))[:-1]:
        channels = m.weight.shape[0]
        assert channels - len(floored.removed.get(name, ())) >= math.ceil(0.25 * channels)
    with pytest.raises(ValueError, match="min_fraction"):
        prune.structured_plan(copy.deepcopy(model), node_scores, 0.5, x, min_fraction=1.0)
