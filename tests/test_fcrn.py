"""Laina et al.'s FCRN (cropkit.tasks.fcrn): full size checked on the meta device (Laina et al.'s 63.6 M parameters, the
ResNet-50 encoder exactly torchvision's, 228×304 in and out), the unpooling by hand, structured surgery at a tiny width
exact against the zero-masked dense network, and a structured run on the offline depth scenes."""
import copy
import warnings

import pytest
import torch
from test_structured import _randomise_norms, assert_equivalent, example
from torch import nn

import cropkit as ck
from cropkit.core import scores
from cropkit.core.layers import prunable_layers
from cropkit.tasks import models
from cropkit.tasks.fcrn import unpool


def count(module):
    return sum(p.numel() for p in module.parameters())


def test_full_size_is_laina_et_als_network():
    with torch.device("meta"):  # shapes only
        model = models.build("fcrn", (3, 228, 304), 1)
        out = model(torch.zeros(2, 3, 228, 304))
        resnet50 = __import__("torchvision").models.resnet50()
        encoded = model.layer4(model.layer3(model.layer2(model.layer1(model.maxpool(model.conv1(
            torch.zeros(1, 3, 228, 304)))))))
    assert out.shape == (2, 1, 228, 304) and encoded.shape == (1, 2048, 8, 10)
    encoder = sum(count(getattr(model, n)) for n in ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4"))
    assert encoder == count(resnet50) - count(resnet50.fc)  # 23.5 M: ResNet-50 without its classifier
    # the decoder from its arithmetic: bridge 1×1 + BN; per up-projection two 5×5 convs, a 3×3 conv, three BNs; head
    up = sum(a * b * 25 * 2 + b * b * 9 + 3 * 2 * b for a, b in ((1024, 512), (512, 256), (256, 128), (128, 64)))
    assert count(model) - encoder == 2048 * 1024 + 2 * 1024 + up + 64 * 9 + 1
    assert round(count(model) / 1e6, 1) == 63.6  # Laina et al. 2016, Table 1 (ResNet-UpProj)


def test_unpooling_puts_each_value_top_left_of_a_block_of_zeros():
    x = torch.arange(1.0, 7.0).view(1, 1, 2, 3)
    want = torch.tensor([[1, 0, 2, 0, 3, 0], [0] * 6, [4, 0, 5, 0, 6, 0], [0] * 6], dtype=torch.float)
    torch.testing.assert_close(unpool(x)[0, 0], want)


@pytest.mark.parametrize("criterion, sparsity", [("random_nodes", 0.5), ("crop_nodes", 0.8)])
def test_structured_surgery_equals_the_masked_network(criterion, sparsity):
    dense = models.build("fcrn", (3, 16, 16), 1, width=1 / 16, seed=0).eval().double()  # 60 layers: float32's
    _randomise_norms(dense)                                                            # rounding would show
    model, x = copy.deepcopy(dense), example((3, 16, 16), n=2).double()
    y = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(0)).double()
    node_scores = getattr(scores, criterion)(model, [(x, y)], **({"loss_fn": nn.functional.mse_loss}
                                                                 if criterion == "crop_nodes" else {}))
    plan, small = assert_equivalent(model, node_scores, sparsity, x)
    assert abs(plan.weight_sparsity - sparsity) <= 0.01 and small(x).shape == (2, 1, 16, 16)
    removed = {n for n, m in prunable_layers(dense)
               if m.weight.shape[0] > small.get_submodule(n).weight.shape[0]}
    assert any(n.startswith("up.") for n in removed) and any(n.startswith("layer") for n in removed)


def test_a_structured_method_runs_on_the_depth_scenes(one_thread):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # layers left with one node, at this width
        result = ck.run("crop-s", data="depth", model="fcrn", width=1 / 16, profile="smoke", sparsity=0.5,
                        cache=False, progress=False)
    assert result.metric == "rmse" and result.node_sparsity > 0 and abs(result.weight_sparsity - 0.5) <= 0.01
