import pytest
import torch
from torch import nn

import cropkit as ck
from cropkit.core.layers import classifier_name, prunable_layers

SHAPES = [(1, 8, 8), (1, 40), (3, 32, 32)]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("name", [n for n in ck.models.ZOO if ck.models.of_model(n) == "classification"
                                  and not n.startswith("resnext")])  # 2-D only, 101 layers: tests/test_resnext.py
def test_zoo_forward_every_shape(name, shape):  # the classifiers; fcn and lstm: tests/test_task_oracles.py
    model = ck.models.build(name, input_shape=shape, num_classes=7, width=0.25)
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, 7)
    out.sum().backward()


def test_width_scales_channels():
    small = ck.models.build("resnet18", (3, 32, 32), 10, width=0.25)
    full = ck.models.build("resnet18", (3, 32, 32), 10, width=1.0)
    assert small.conv1.out_channels == 16 and full.conv1.out_channels == 64
    assert ck.measure.param_count(full) > 10 * ck.measure.param_count(small)


def test_resnet18_is_cifar_form():
    model = ck.models.build("resnet18", (3, 32, 32), 10)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert 11_000_000 < ck.measure.param_count(model) < 11_300_000  # 11.17 M, as in the CIFAR ResNet18


def test_vgg16_has_13_convs_with_batchnorm():
    model = ck.models.build("vgg16", (3, 32, 32), 10)
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 13
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 13


def test_same_seed_same_init():
    a = ck.models.build("cnn", (1, 8, 8), 10, seed=5)
    b = ck.models.build("cnn", (1, 8, 8), 10, seed=5)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_torchvision_by_name_adapts_channels(name):
    model = ck.models.build(name, (1, 32, 32), 10)
    assert model.eval()(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_helpers():
    model = ck.models.build("cnn", (1, 8, 8), 10)
    names = [n for n, _ in prunable_layers(model)]
    assert len(names) == 6 and classifier_name(model) == names[-1]
    with pytest.raises(ValueError, match="no prunable layer"):
        classifier_name(nn.Sequential(nn.ReLU()))


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="resnet1000"), "unknown model 'resnet1000'"),
    (dict(name="cnn", width=0), "width"),
    (dict(name="resnet50", width=0.5), "width is only available"),
    (dict(name="cnn", input_shape=(64,)), "input_shape"),
])
def test_bad_input(kwargs, match):
    args = dict(input_shape=(1, 8, 8), num_classes=10) | kwargs
    with pytest.raises(ValueError, match=match):
        ck.models.build(**args)


def test_zoo_init_is_kaiming_with_zero_biases():
    model = ck.models.build("vgg16", (3, 32, 32), 10, width=0.5, seed=0)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    for conv in convs[1:]:  # N(0, 2 / fan_out)
        fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
        assert abs(float(conv.weight.detach().std()) / (2 / fan_out) ** 0.5 - 1) < 0.1
        assert not conv.bias.any()
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(bool((m.weight == 1).all()) and not m.bias.any() for m in norms)


@pytest.mark.parametrize("criterion", ["crop_nodes", "snap_nodes"])
def test_vgg16_scored_at_init_in_eval_mode_keeps_channels_in_every_conv(criterion):
    """With PyTorch's default init the signal fades through VGG16's 13 convs in eval mode (fresh BatchNorm is the
    identity), and CroP-S / SNAP cut the first six convs to one channel at 0.8. The zoo's init prevents that."""
    g = torch.Generator().manual_seed(0)
    batch = (torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g))
    for sparsity in (0.8, 0.9):
        model = ck.models.build("vgg16", (3, 32, 32), 10, width=0.25, seed=0).eval()
        node_scores = ck.scores.NODE_SCORES[criterion](model, [batch])
        small = ck.prune.structured(model, node_scores, sparsity, batch[0][:2])
        kept = [m.out_channels for m in small.modules() if isinstance(m, nn.Conv2d)]
        assert min(kept) > 1, (sparsity, kept)
