r"""What a run learns and how it is scored: the task (Rachwan et al. 2022 report accuracy on image classification,
RMSE on NYU depth, log-perplexity on PTB and returns on control games, §4.4).

A :class:`Task` names the loss that training minimises and every pruning score differentiates, and the metric a
run reports. The classification path (cross-entropy, accuracy) is the one the kit always had.

The contract (what `cropkit.training.loop.Trainer`, `cropkit.methods.context.Context` and `cropkit.experiments.runs`
read):

    name              "classification" | "regression" | "language" | "control"
    metric            the column suffix: history ``test_<metric>`` (and ``train_<metric>`` when ``step_metric``
                      is given), e.g. "acc", "rmse", "log_ppl", "return"
    higher_is_better  accuracy and return: True; RMSE and log-perplexity: False (``best`` is max or min)
    loss_fn           (outputs, targets) -> scalar tensor: the training loss AND the L of every score
                      (g = ∇_θ L, Hg, gate gradients)
    batch_metric      (outputs, targets) -> (sum, count), accumulated over a loader; the metric is
                      ``finish(Σ sum / Σ count)``. None: the task evaluates itself (``evaluate``)
    evaluate          (model, loader, device) -> (mean loss, metric); when given it replaces the loader loop
                      (control: returns over fixed evaluation episodes)
    finish            maps the accumulated mean to the metric (RMSE: √ of the mean squared error); None: identity
    step_metric       (outputs, targets) -> float for one training batch; ``train_<metric>`` is
                      ``finish(mean over the epoch's batches)``. None: no ``train_<metric>`` column

Data hooks for a task whose training set is not a Dataset (control): a `cropkit.tasks.data.Data` may carry
``scoring_batches(n, batch_size, seed) -> [(inputs, targets), ...]`` (`cropkit.methods.context.Context.batches` then
uses it),
and a training loader with ``bind(model)`` is bound to the current, possibly just pruned, model at every epoch begin
(`cropkit.training.loop.Trainer.fit`). A dataset loader may return a ready ``Data`` (`cropkit.tasks.data.load`).

Which task a dataset and a model belong to: :data:`DATA_TASKS` and :data:`MODEL_TASKS` (absent = classification);
`check_pair` rejects a model built for another task with a message that names the ones that fit.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader


@dataclasses.dataclass(frozen=True)
class Task:
    """A loss to train and score with, and the metric to report (see the module docstring for the contract)."""

    name: str
    metric: str
    higher_is_better: bool
    loss_fn: Callable
    batch_metric: Callable | None
    evaluate: Callable | None = None
    finish: Callable[[float], float] | None = None
    step_metric: Callable | None = None

    def best(self, values) -> float:
        """The best of ``values``: max when higher is better, else min."""
        return max(values) if self.higher_is_better else min(values)

    def value(self, mean: float) -> float:
        """The metric from the accumulated mean (``finish`` applied)."""
        return mean if self.finish is None else self.finish(mean)


# ----------------------------------------------------------------------------- classification

def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Fraction of argmax predictions that hit the label (one training batch)."""
    return (logits.argmax(dim=1) == targets).float().mean().item()


def _correct(logits: torch.Tensor, targets: torch.Tensor) -> tuple[int, int]:
    return (logits.argmax(1) == targets).sum().item(), len(targets)


CLASSIFICATION = Task("classification", "acc", True, F.cross_entropy, _correct, step_metric=accuracy)


# ----------------------------------------------------------------------------- regression (dense prediction)

def _squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> tuple[float, int]:
    """Σ (ŷ − y)² over every target element (every pixel of a depth map), and how many."""
    return (outputs - targets).pow(2).sum().item(), targets.numel()


def _mse(outputs: torch.Tensor, targets: torch.Tensor) -> float:
    return F.mse_loss(outputs, targets).item()


# L2 loss (the mean squared error over all pixels) for training and scoring; RMSE = √(mean squared error over all
# test pixels) in the target's units, as the paper reports for depth (Laina et al. 2016's FCRN setting).
REGRESSION = Task("regression", "rmse", False, F.mse_loss, _squared_error, finish=math.sqrt, step_metric=_mse)


# ----------------------------------------------------------------------------- language modelling

def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per token in nats: logits (N, T, V), targets (N, T) of next-token ids."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def _token_nats(logits: torch.Tensor, targets: torch.Tensor) -> tuple[float, int]:
    nats = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum")
    return nats.item(), targets.numel()


def _mean_nats(logits: torch.Tensor, targets: torch.Tensor) -> float:
    return token_cross_entropy(logits, targets).item()


# The metric is the log-perplexity: the mean test cross-entropy per token, natural log (nats); perplexity = e^it.
LANGUAGE = Task("language", "log_ppl", False, token_cross_entropy, _token_nats, step_metric=_mean_nats)


@dataclasses.dataclass
class Data:
    """A dataset ready for training: loaders plus what a model needs to be built for it.

    num_classes      the model's output size: classes, vocabulary (language) or output channels (regression)
    task             the loss and the metric (`cropkit.tasks.task`)
    scoring_batches  optional ``(n, batch_size, seed) -> [(inputs, targets), ...]``: the scoring batches, for data
                     whose training set is not a Dataset; None: drawn from ``train.dataset``. On-policy data
                     (``on_policy = True``, control) take the network too: ``(n, batch_size, seed, model)``
    """

    name: str
    train: DataLoader
    test: DataLoader
    input_shape: tuple[int, ...]
    num_classes: int
    task: Task = CLASSIFICATION
    scoring_batches: Callable | None = None

    def example_inputs(self, n: int = 2) -> torch.Tensor:
        """A small batch of real training inputs, for FLOP counting and structured surgery."""
        x, _ = next(iter(self.train))
        return x[:n]
