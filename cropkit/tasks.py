r"""What a run learns and how it is scored: the task (Rachwan et al. 2022 report accuracy on image classification,
RMSE on NYU depth, log-perplexity on PTB and returns on control games, §4.4).

A :class:`Task` names the loss that training minimises and every pruning score differentiates, and the metric a
run reports. The classification path (cross-entropy, accuracy) is the one the kit always had.

The contract (what `cropkit.train.Trainer`, `cropkit.context.Context` and `cropkit.runs` read):

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

Data hooks for a task whose training set is not a Dataset (control): a `cropkit.data.Data` may carry
``scoring_batches(n, batch_size, seed) -> [(inputs, targets), ...]`` (`cropkit.context.Context.batches` then uses it),
and a training loader with ``bind(model)`` is bound to the current, possibly just pruned, model at every epoch begin
(`cropkit.train.Trainer.fit`). A dataset loader may return a ready ``Data`` (`cropkit.data.load`).

Which task a dataset and a model belong to: :data:`DATA_TASKS` and :data:`MODEL_TASKS` (absent = classification);
`check_pair` rejects a model built for another task with a message that names the ones that fit.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch
from torch.nn import functional as F


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


# ----------------------------------------------------------------------------- which task a dataset / model is for

TASKS: dict[str, Task] = {t.name: t for t in (CLASSIFICATION, REGRESSION, LANGUAGE)}
DATA_TASKS: dict[str, str] = {"depth": "regression", "pydoc": "language",   # every other dataset: classification
                              "cartpole": "control", "acrobot": "control", "lunarlander": "control",
                              "ptb": "language", "nyudepth": "regression"}
MODEL_TASKS: dict[str, str] = {"fcn": "regression", "lstm": "language",     # every other model: classification
                               "policy": "control", "pointer_lstm": "language", "fcrn": "regression"}
# The model a dataset gets when none is named, where its task has several (the others: the task's one model).
DATA_MODELS: dict[str, str] = {"depth": "fcn", "pydoc": "lstm", "ptb": "pointer_lstm", "nyudepth": "fcrn"}
# Models whose nodes structured pruning cannot remove, with the reason (the methods that work are the unstructured).
NO_STRUCTURED: dict[str, str] = {
    "lstm": "a hidden unit of the LSTM is four gate rows of two Linear layers and a column of the recurrent one, "
            "coupled through the recurrence, which cropkit's channel surgery does not trace",
    "pointer_lstm": "its LSTM couples four gate rows of two Linear layers and a column of the recurrent one per "
                    "hidden unit through the recurrence, and its attention couples the hidden state with the query"}


def of_data(name: str) -> Task:
    """The task of dataset ``name``."""
    task = DATA_TASKS.get(name, "classification")
    if task == "control":  # defined beside its environments and loss (imports gymnasium only when asked for)
        from .control import TASK

        return TASK
    return TASKS[task]


def of_model(name: str) -> str:
    """The task name model ``name`` is built for."""
    return MODEL_TASKS.get(name, "classification")


def default_model(data: str | None) -> str | None:
    """The zoo model built for ``data``'s task when it is not classification (the one model of that task), else
    None (the profile's model)."""
    if data in DATA_MODELS:
        return DATA_MODELS[data]
    fit = sorted(m for m, t in MODEL_TASKS.items() if data is not None and t == of_data(data).name != "classification")
    return fit[0] if len(fit) == 1 else None


def check_pair(data: str, model: str) -> None:
    """A ``ValueError`` when ``model`` is built for another task than ``data`` is, naming the models that fit."""
    want, have = of_data(data).name, of_model(model)
    if want != have:
        fit = sorted(m for m, t in MODEL_TASKS.items() if t == want) if want != "classification" else \
            "the zoo's mlp, cnn1d, cnn, resnet18, vgg16 or a torchvision classifier"
        raise ValueError(f"model {model!r} is built for {have}, but data {data!r} is a {want} task; "
                         f"for {data!r} choose {fit}")


def check_structured(model: str, method: str, family: str) -> None:
    """A ``ValueError`` when a structured method is asked for on a model whose nodes cannot be removed."""
    if family == "Structured" and model in NO_STRUCTURED:
        raise ValueError(f"{method!r} removes whole nodes, which model {model!r} does not support: "
                         f"{NO_STRUCTURED[model]}; on {model!r} use dense or an unstructured method "
                         f"(random-u, snip, grasp, crop-u, cropit-u, earlycrop-u, ltr)")
