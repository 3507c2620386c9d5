"""The zoo's CIFAR-form ResNeXt101 32×16d / 32×48d (cropkit.tasks.resnext): parameter counts against the architecture's
arithmetic (full size on the meta device, where nothing is allocated; reduced depth and width for real), against
torchvision's own ImageNet-form network, and structured surgery on grouped convolutions exact against the
zero-masked dense network."""
import copy

import pytest
import torch
from test_structured import _randomise_norms, assert_equivalent, example
from torch import nn

from cropkit.core import scores
from cropkit.core.layers import signal_preserving_init
from cropkit.tasks import models
from cropkit.tasks.resnext import resnext


def expected_params(layers, groups, width_per_group, num_classes, width=1.0, in_channels=3, stem=3 * 3):
    """Parameters of a ResNeXt of Bottleneck blocks, counted from the architecture: the stem conv (``stem`` weights
    per in/out pair) and its BatchNorm; per block conv1 1×1 (in → D), conv2 3×3 grouped (D → D, D/groups inputs per
    filter), conv3 1×1 (D → 4p), three BatchNorms (γ, β), a 1×1 projection + BatchNorm where the shape changes;
    the linear classifier. D = ⌊p · width_per_group / 64⌋ · groups."""
    w = lambda c: max(1, int(round(c * width)))
    inplanes = w(64)
    total = in_channels * inplanes * stem + 2 * inplanes
    for stage, (planes, blocks) in enumerate(zip((w(64), w(128), w(256), w(512)), layers)):
        inner, out = int(planes * width_per_group / 64) * groups, 4 * planes
        for block in range(blocks):
            total += inplanes * inner + inner * (inner // groups) * 9 + inner * out + 2 * (inner + inner + out)
            if block == 0 and (stage > 0 or inplanes != out):
                total += inplanes * out + 2 * out
            inplanes = out
    return total + inplanes * num_classes + num_classes


def count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, width_per_group", [("resnext101_32x16d", 16), ("resnext101_32x48d", 48)])
def test_full_size_parameter_counts(name, width_per_group):
    with torch.device("meta"):  # 194 M and 826 M parameters: shapes only
        ours = models.build(name, (3, 32, 32), 10)
        imagenet = __import__("torchvision").models.ResNet(
            __import__("torchvision").models.resnet.Bottleneck, [3, 4, 23, 3], groups=32,
            width_per_group=width_per_group, num_classes=10)
    assert count(ours) == expected_params((3, 4, 23, 3), 32, width_per_group, 10)
    # torchvision's ImageNet form differs only in its 7×7 stem
    assert count(imagenet) - count(ours) == 3 * 64 * (7 * 7 - 3 * 3)
    assert count(imagenet) == expected_params((3, 4, 23, 3), 32, width_per_group, 10, stem=7 * 7)
    # the published sizes of the ImageNet networks (1000 classes): 194 M and 829 M
    published = {16: 194.0e6, 48: 829.0e6}[width_per_group]
    assert abs(count(imagenet) + 2048 * 990 + 990 - published) < 0.005 * published
    assert isinstance(ours.maxpool if hasattr(ours, "maxpool") else nn.Identity(), nn.Identity)
    assert ours.conv1.kernel_size == (3, 3) and ours.conv1.stride == (1, 1)


@pytest.mark.parametrize("layers, groups, width_per_group, width", [
    ((1, 1, 1, 1), 32, 16, 0.125), ((1, 2, 1, 1), 4, 48, 0.25), ((2, 1, 1, 1), 8, 8, 0.5)])
def test_reduced_parameter_counts(layers, groups, width_per_group, width):
    model = resnext((1, 8, 8), 7, width=width, layers=layers, groups=groups, width_per_group=width_per_group)
    assert count(model) == expected_params(layers, groups, width_per_group, 7, width=width, in_channels=1)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 7)


def test_width_must_leave_every_group_a_channel():
    with pytest.raises(ValueError, match="without a channel per group"):
        models.build("resnext101_32x16d", (3, 32, 32), 10, width=1 / 32)


def small(groups=32, width_per_group=16, width=0.125):
    model = resnext((3, 8, 8), 10, width=width, layers=(1, 1, 1, 1), groups=groups, width_per_group=width_per_group)
    signal_preserving_init(model)
    _randomise_norms(model.eval())
    return model


def grouped(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1}


@pytest.mark.parametrize("criterion, groups, width_per_group, sparsity", [
    ("random_nodes", 32, 16, 0.5), ("crop_nodes", 32, 16, 0.7), ("crop_nodes", 4, 48, 0.9)])
def test_structured_surgery_on_grouped_convs_equals_the_masked_network(criterion, groups, width_per_group, sparsity):
    dense, x = small(groups, width_per_group), example((3, 8, 8), n=2)
    model = copy.deepcopy(dense)  # the surgery works in place
    y = torch.randint(0, 10, (2,), generator=torch.Generator().manual_seed(0))
    plan, pruned = assert_equivalent(model, getattr(scores, criterion)(model, [(x, y)]), sparsity, x)
    assert abs(plan.weight_sparsity - sparsity) <= 0.01
    before, after = grouped(dense), grouped(pruned)
    assert set(before) == set(after)
    for conv in after.values():  # still `groups` groups, each with the same number of input and output channels
        assert conv.groups == groups and conv.in_channels % groups == 0 and conv.out_channels % groups == 0
        assert conv.weight.shape[1] == conv.in_channels // groups
    if criterion == "crop_nodes":  # CroP-S removes channels of grouped convs too (a unit: one channel per group)
        assert any(after[n].in_channels < before[n].in_channels for n in after)


def test_zoo_names_build_and_train_at_a_small_width():
    model = models.build("resnext101_32x48d", (3, 8, 8), 10, width=1 / 32, seed=0)
    assert sum(isinstance(m, nn.Conv2d) and m.groups == 32 for m in model.modules()) == 33  # 33 bottlenecks
    nn.functional.cross_entropy(model.train()(example((3, 8, 8), n=2)), torch.tensor([1, 2])).backward()
    assert all(p.grad is not None for p in model.parameters())
