r"""Networks for the regression and language tasks (`cropkit.tasks.task`), registered in the zoo
(`cropkit.tasks.models.ZOO`).

``fcn`` — a fully convolutional residual encoder–decoder for dense prediction: the FCRN of Laina et al. (2016,
"Deeper depth prediction with fully convolutional residual networks", the paper's NYU-depth network), scaled down. A
conv-BN-ReLU stem, two residual blocks with stride 2 (32 → 8 pixels), two up-projections back to full resolution
(Laina et al.'s up-projection: 2× upsampling, then a residual block whose shortcut is a projection conv), and a 3×3
conv to ``num_classes`` output maps (1: depth), initialised with Kaiming fan-in (the hidden convs: fan-out). Every
conv is followed by a BatchNorm except the last, so every criterion, structured ones included
(`cropkit.core.structured`,
EarlyBird's |γ|), applies; the last conv is the "classifier" (its outputs are not nodes).

``lstm`` — an LSTM language model: embedding → one LSTM layer → linear decoder over the vocabulary. The LSTM cell
is written with two ``nn.Linear`` layers (input → 4 gates, hidden → 4 gates; gates i, f, g, o) instead of
``nn.LSTM``: cropkit's scores and masks act on the ``weight`` of Conv/Linear modules, so this makes every gate
weight prunable by the existing machinery (the embedding is not pruned, as a conv net's norms are not). The input
projection of all T steps is one matrix product; only the recurrent one runs step by step. Structured pruning is
not supported (`cropkit.tasks.models.NO_STRUCTURED`): a hidden unit couples four gate rows of two layers and a column of
the recurrent layer through the recurrence. Initialised as ``nn.LSTM`` (U(±1/√H)) with the forget-gate bias at 1
(Jozefowicz et al. 2015), embedding and decoder U(±0.1) (Zaremba et al. 2014).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from cropkit.core.layers import signal_preserving_init


def _w(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class Residual(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN plus a shortcut (a 1×1 conv-BN projection when the shape changes), then ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def fcn(input_shape, num_classes=1, width=1.0) -> nn.Module:
    """FCRN-style encoder–decoder: (C, H, W) → (num_classes, H, W); H and W divisible by 4."""
    if len(input_shape) != 3 or input_shape[1] % 4 or input_shape[2] % 4:
        raise ValueError(f"fcn takes an image input (C, H, W) with H and W divisible by 4; got {tuple(input_shape)}")

    c0, c1, c2 = _w(16, width), _w(32, width), _w(64, width)
    model = nn.Sequential(
        nn.Conv2d(input_shape[0], c0, 3, padding=1, bias=False), nn.BatchNorm2d(c0), nn.ReLU(),
        Residual(c0, c1, stride=2), Residual(c1, c2, stride=2),                     # encoder: H → H/4
        nn.Upsample(scale_factor=2), Residual(c2, c1),                              # up-projections: H/4 → H
        nn.Upsample(scale_factor=2), Residual(c1, c0),
        nn.Conv2d(c0, num_classes, 3, padding=1),                                   # one map per output
    )
    signal_preserving_init(model)
    # The head as the zoo's linear classifiers: Kaiming fan-in, so the first output has about unit variance, as the
    # standardised targets (fan-out, right for the hidden convs, gives a 1-map head an output std of ≈ 4: the first
    # epochs then only shrink it).
    nn.init.kaiming_normal_(model[-1].weight, mode="fan_in", nonlinearity="relu")
    model.own_init = True  # `cropkit.tasks.models.build` leaves this initialisation alone
    return model


class LSTMLanguageModel(nn.Module):
    """Tokens (N, T) → next-token logits (N, T, V): embedding → LSTM (gates from two Linear layers) → decoder."""

    own_init = True  # `cropkit.tasks.models.build` leaves the initialisation below alone

    def __init__(self, input_shape, num_classes, width=1.0, embedding=64, hidden=128):
        super().__init__()
        E, H = _w(embedding, width), _w(hidden, width)
        self.hidden_size = H
        self.embedding = nn.Embedding(num_classes, E)
        self.input_gates = nn.Linear(E, 4 * H)                 # W_i x + b, gates i, f, g, o
        self.hidden_gates = nn.Linear(H, 4 * H, bias=False)    # W_h h
        self.decoder = nn.Linear(H, num_classes)
        with torch.no_grad():
            bound = 1 / math.sqrt(H)
            for w in (self.input_gates.weight, self.input_gates.bias, self.hidden_gates.weight):
                w.uniform_(-bound, bound)
            self.input_gates.bias[H:2 * H].fill_(1.0)           # forget gate open at the start
            for w in (self.embedding.weight, self.decoder.weight):
                w.uniform_(-0.1, 0.1)
            self.decoder.bias.zero_()

    def hidden_states(self, tokens: torch.Tensor) -> torch.Tensor:
        """h_1 … h_T: (N, T, H), from a zero state."""
        x = self.input_gates(self.embedding(tokens))           # (N, T, 4H), every step at once
        h = x.new_zeros(x.shape[0], self.hidden_size)
        c, outputs = h, []
        for t in range(x.shape[1]):
            i, f, g, o = (x[:, t] + self.hidden_gates(h)).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            outputs.append(h)
        return torch.stack(outputs, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.hidden_states(tokens))        # (N, T, V)


def lstm(input_shape, num_classes, width=1.0) -> nn.Module:
    """LSTM language model over a vocabulary of ``num_classes`` tokens (embedding 64, hidden 128, × width)."""
    if len(input_shape) != 1:
        raise ValueError(f"lstm takes token sequences, input_shape (T,); got {tuple(input_shape)}")
    return LSTMLanguageModel(input_shape, num_classes, width)


TASK_MODELS = {"fcn": fcn, "lstm": lstm}
