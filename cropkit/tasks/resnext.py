"""ResNeXt (Xie et al. 2017, "Aggregated residual transformations for deep neural networks") in the CIFAR form, for
the paper's wide-against-narrow comparison (Rachwan et al. 2022, §5: ResNeXt101 32×48d pruned by CroP-S to 98.5 %
against a dense ResNeXt101 32×16d of about the same GPU memory).

Built from torchvision's ``ResNet`` and ``Bottleneck`` (``groups`` = cardinality 32, ``width_per_group`` = 16 or 48,
layers [3, 4, 23, 3] for the 101-layer network), with the stem the zoo's ResNet18 has for 32×32 inputs: a 3×3 conv
with stride 1 and no max-pool (torchvision's ImageNet stem, a 7×7 conv with stride 2 and a max-pool, would leave a
32×32 image 8×8 before the first stage). A bottleneck of ``planes`` output planes ×4 has an inner width of
⌊planes · width_per_group / 64⌋ · groups channels in ``groups`` groups:

    params(block) = in·D + D·(D / groups)·9 + D·4p  (+ in·4p for a projection shortcut)  + 2·(D + D + 4p) (BatchNorm)

``width`` multiplies every stage's planes (64, 128, 256, 512) and the stem's 64 channels, so the inner width of every
grouped conv scales with it and the cardinality stays 32; it must leave every group at least one channel. The zoo's
signal-preserving init applies (`cropkit.tasks.models.build`). Structured pruning removes the same within-group offset
from
every group of a grouped conv (`cropkit.core.dependencies`), so the groups stay equal-sized.

The EarlyCroP reference code loaded the ImageNet-form WSL ResNeXts from torch.hub (weights reset) and fed them
CIFAR images resized to 64×64; here the CIFAR form takes 32×32 images as they are (a larger activation map per stage:
a deliberate change, named in the paper grid, `cropkit.experiments.paper_grid`).
"""
from __future__ import annotations

import functools

import torch
from torch import nn

LAYERS_101 = (3, 4, 23, 3)
CARDINALITY = 32


def _w(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class CifarResNeXt(nn.Module):
    """torchvision's ResNet of ``Bottleneck`` blocks (its stages built by its ``_make_layer``) with a 3×3 stride-1
    stem and no max-pool. torchvision is imported when a model is built, not with the zoo."""

    def __init__(self, input_shape, num_classes: int, width: float = 1.0, layers=LAYERS_101,
                 groups: int = CARDINALITY, width_per_group: int = 16):
        super().__init__()
        from torchvision.models.resnet import Bottleneck, ResNet

        if len(input_shape) != 3:
            raise ValueError(f"ResNeXt takes an image input (C, H, W); got {tuple(input_shape)}")
        planes = [_w(p, width) for p in (64, 128, 256, 512)]
        if min(int(p * width_per_group / 64) for p in planes) < 1:
            raise ValueError(f"width {width} leaves the {groups}-group convs without a channel per group "
                             f"(width_per_group {width_per_group}); use width >= {1 / width_per_group:g}")
        # the attributes ResNet._make_layer reads
        self._norm_layer, self.dilation = nn.BatchNorm2d, 1
        self.groups, self.base_width = groups, width_per_group
        self.inplanes = _w(64, width)
        self.conv1 = nn.Conv2d(input_shape[0], self.inplanes, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        stages = [ResNet._make_layer(self, Bottleneck, p, n, stride=1 if i == 0 else 2)
                  for i, (p, n) in enumerate(zip(planes, layers))]
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(planes[3] * Bottleneck.expansion, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnext(input_shape, num_classes, width=1.0, layers=LAYERS_101, groups=CARDINALITY, width_per_group=16):
    """A CIFAR-form ResNeXt; the zoo's names fix the 101-layer depth and cardinality 32."""
    return CifarResNeXt(input_shape, num_classes, width, layers, groups, width_per_group)


ZOO = {"resnext101_32x16d": functools.partial(resnext, width_per_group=16),
       "resnext101_32x48d": functools.partial(resnext, width_per_group=48)}
