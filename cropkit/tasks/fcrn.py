r"""The fully convolutional residual network of Laina et al. (2016, "Deeper depth prediction with fully convolutional
residual networks", §3): the paper's NYU-depth network (Rachwan et al. 2022, §4.4), at full size for the ``paper``
profile and any ``width``.

    encoder   ResNet-50 (He et al. 2016): 7×7 conv stride 2, BN, ReLU, 3×3 max-pool stride 2, then torchvision's
              Bottleneck stages [3, 4, 6, 3] with 64/128/256/512 planes (×4 out); 228×304 → 8×10 × 2048 channels
    bridge    1×1 conv to 1024 channels, BN
    decoder   four up-projections 1024 → 512 → 256 → 128 → 64, each doubling the resolution: 8×10 → 128×160
    head      3×3 conv to ``num_classes`` maps (1: depth), then bilinear upsampling to the input's size

An **up-projection** (Laina et al., Fig. 2): 2× *unpooling* (each value goes to the top-left of a 2×2 block of zeros),
then two branches added and passed through a ReLU:

    main        5×5 conv → BN → ReLU → 3×3 conv → BN
    projection  5×5 conv → BN

Laina et al. predict at 128×160 and upsample for evaluation; here the bilinear upsampling is the network's last step,
so the L2 loss (`cropkit.tasks.task.REGRESSION`) compares full-resolution maps with targets of the input's size.
``width``
multiplies every channel count (stem, stages, bridge, decoder); the encoder is trained from scratch (Laina et al.
start from ImageNet weights, which no pruning-at-initialisation method may use). Every conv but the head is followed
by a BatchNorm, so every criterion applies, structured ones included: channels are removed as in a CNN
(`cropkit.core.structured`; the residual adds, the unpooling and the upsampling are traced by torch-pruning).
Initialised
as the zoo's models (Kaiming fan-out), the head with Kaiming fan-in as the ``fcn``'s (`cropkit.tasks.nets`).

Input sizes: any image of at least 1×1 after the encoder's stride 32 (smaller maps are padded by the convs); Laina
et al.'s 228×304 gives 8×10. The offline lesson keeps the small ``fcn`` on the 32×32 ``depth`` scenes.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from cropkit.core.layers import signal_preserving_init

LAYERS_50 = (3, 4, 6, 3)


def _w(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


def unpool(x: torch.Tensor) -> torch.Tensor:
    """2× unpooling: (N, C, H, W) → (N, C, 2H, 2W), x[i, j] at (2i, 2j) and zeros elsewhere (Laina et al., Fig. 2)."""
    up = F.interpolate(x, scale_factor=2, mode="nearest")
    keep = torch.zeros(up.shape[-2:], dtype=x.dtype, device=x.device)
    keep[::2, ::2] = 1
    return up * keep


class UpProjection(nn.Module):
    """Unpool, then ReLU(BN(conv3×3(ReLU(BN(conv5×5(x))))) + BN(conv5×5(x)))."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.projection = nn.Conv2d(in_ch, out_ch, 5, padding=2, bias=False)
        self.bn_projection = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = unpool(x)
        main = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(main + self.bn_projection(self.projection(x)))


class FCRN(nn.Module):
    """(C, H, W) images → (num_classes, H, W) maps."""

    own_init = True  # `cropkit.tasks.models.build` leaves the initialisation below alone

    def __init__(self, input_shape, num_classes: int = 1, width: float = 1.0, layers=LAYERS_50):
        super().__init__()
        from torchvision.models.resnet import Bottleneck, ResNet


        if len(input_shape) != 3:
            raise ValueError(f"fcrn takes an image input (C, H, W); got {tuple(input_shape)}")
        self.size = tuple(int(s) for s in input_shape[1:])
        c = lambda n: _w(n, width)  # noqa: E731
        # the attributes torchvision's ResNet._make_layer reads (a plain ResNet-50: one group of 64)
        self._norm_layer, self.dilation, self.groups, self.base_width = nn.BatchNorm2d, 1, 1, 64
        self.inplanes = c(64)
        self.conv1 = nn.Conv2d(input_shape[0], c(64), 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(c(64))
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1, self.layer2, self.layer3, self.layer4 = [
            ResNet._make_layer(self, Bottleneck, c(p), n, stride=1 if i == 0 else 2)
            for i, (p, n) in enumerate(zip((64, 128, 256, 512), layers))]
        self.bridge = nn.Sequential(nn.Conv2d(self.inplanes, c(1024), 1, bias=False), nn.BatchNorm2d(c(1024)))
        self.up = nn.Sequential(*[UpProjection(c(a), c(b)) for a, b in ((1024, 512), (512, 256), (256, 128),
                                                                        (128, 64))])
        self.head = nn.Conv2d(c(64), num_classes, 3, padding=1)
        signal_preserving_init(self)
        nn.init.kaiming_normal_(self.head.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))   # (N, 2048·w, H/32, W/32)
        x = self.head(self.up(self.bridge(x)))                      # (N, maps, 16·H/32, 16·W/32)
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)


def fcrn(input_shape, num_classes=1, width=1.0) -> nn.Module:
    """Laina et al.'s FCRN (ResNet-50 encoder, up-projection decoder) for (C, H, W) inputs."""
    return FCRN(input_shape, num_classes, width)


TASK_MODELS = {"fcrn": fcrn}
