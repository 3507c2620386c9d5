r"""Layer sensitivity: how much the test metric suffers when one layer alone is pruned.

For every prunable layer l and every sparsity s, a copy of the model has only layer l pruned to s (the lowest
``criterion`` scores of that layer removed, `cropkit.core.masks.unstructured_layers` on that one layer), optionally
fine-tuned, and evaluated:

    drop(l, s) = metric_ref − metric(l, s)   when higher is better (accuracy, return)
                 metric(l, s) − metric_ref   when lower is better (RMSE, log-perplexity)

so a positive drop is always a loss. metric_ref is the unpruned model put through the same fine-tuning (same
epochs, same seed), so that the drop measures the pruning and not the extra training; at s = 0 the drop is 0 (on
the CPU exactly: the same weights train the same way). This is the per-layer sensitivity analysis of Han et al.
(NeurIPS 2015, "Learning both Weights and Connections") and of Distiller's ``sensitivity_analysis``, with and
without fine-tuning; Frankle et al. (ICLR 2021) and Su et al. (NeurIPS 2020) ask what a pruning score knows
beyond such per-layer budgets, which this table measures.

    table = layer_sensitivity(model, data, [0.0, 0.5, 0.9], criterion="magnitude")
    table.pivot(index="layer", columns="sparsity", values="drop")
"""
from __future__ import annotations

import copy

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader

from cropkit.core.masks import check_choice, check_sparsity, pruned_layers, unstructured_layers
from cropkit.core.plumbing import rng_state, set_rng_state
from cropkit.core.scores import WEIGHT_SCORES
from cropkit.tasks.data import take
from cropkit.tasks.task import CLASSIFICATION
from cropkit.training.loop import Trainer, resolve_device

SCORE_BATCHES = 4  # training batches a data-driven criterion is scored on, when no ``batches`` are given


def layer_sensitivity(model: nn.Module, data, sparsities, criterion: str = "magnitude", finetune_epochs: int = 0, *,
                      batches=None, seed: int = 0, **train_options) -> pd.DataFrame:
    """One row per (prunable layer, sparsity): ``layer``, ``weights`` (the layer's count), ``sparsity``, ``metric``
    (the task's test metric, e.g. accuracy) and ``drop`` (positive = worse than the reference; see the module
    docstring). ``model`` is not modified.

    ``data``: a `cropkit.tasks.data.Data` (or a (train, test) pair of loaders, classification). ``criterion``: a key
    of `cropkit.core.scores.WEIGHT_SCORES`, scored once on the unpruned model; ``batches``: its scoring batches
    (default: the first `SCORE_BATCHES` of a loader of their own over the training set, shuffled with ``seed``).
    ``finetune_epochs``: epochs of `cropkit.training.loop.Trainer` after pruning (0: evaluate at once);
    ``train_options`` go to the Trainer (``lr``, ``optimizer``, ``device`` …). The reference metric, the criterion
    and the metric's name are in ``table.attrs``.
    """
    sparsities = _check_sparsities(sparsities)
    check_choice(criterion, WEIGHT_SCORES, "criterion")
    if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, int) or finetune_epochs < 0:
        raise ValueError(f"finetune_epochs must be an integer >= 0 (0: no fine-tuning); got {finetune_epochs!r}")
    task = getattr(data, "task", None) or CLASSIFICATION
    base = copy.deepcopy(model).to(resolve_device(train_options.get("device")))  # the caller's model stays untouched
    batches = _scoring_batches(data, base, seed) if batches is None else batches
    scores = WEIGHT_SCORES[criterion](base, batches, loss_fn=task.loss_fn, seed=seed)
    options, start = dict(train_options, seed=seed), rng_state(_train_loader(data))
    try:
        reference = _metric(copy.deepcopy(base), data, finetune_epochs, options, start)
        rows = []
        for name, module in pruned_layers(base):
            key = f"{name}.weight"
            for sparsity in sparsities:
                pruned = copy.deepcopy(base)
                unstructured_layers([(name, dict(pruned.named_modules())[name])], {key: scores[key]}, sparsity)
                metric = _metric(pruned, data, finetune_epochs, options, start)
                drop = reference - metric if task.higher_is_better else metric - reference
                rows.append(dict(layer=name, weights=module.weight.numel(), sparsity=sparsity, metric=metric,
                                 drop=drop))
    finally:  # the caller's data order and random streams go on as if nothing had run
        set_rng_state(start, _train_loader(data))
    table = pd.DataFrame(rows, columns=["layer", "weights", "sparsity", "metric", "drop"])
    table.attrs.update(reference=reference, metric=task.metric, higher_is_better=task.higher_is_better,
                       criterion=criterion, finetune_epochs=finetune_epochs)
    return table


def _check_sparsities(sparsities) -> list[float]:
    if isinstance(sparsities, (int, float)) or not hasattr(sparsities, "__iter__"):
        raise ValueError(f"sparsities must be a list of numbers in [0, 1), e.g. [0.0, 0.5, 0.9]; got {sparsities!r}")
    checked = [check_sparsity(s) for s in sparsities]
    if not checked:
        raise ValueError("sparsities is empty; give at least one sparsity in [0, 1)")
    return checked


def _metric(model: nn.Module, data, epochs: int, options: dict, start: dict) -> float:
    """The test metric of ``model`` after ``epochs`` of training (the Trainer's own evaluation), every run starting
    from the random state ``start`` (`cropkit.core.plumbing.rng_state`): the same data order for each, so that the
    drop measures the pruning, not a reshuffle."""
    set_rng_state(start, _train_loader(data))
    trainer = Trainer(model, data, epochs, **{"progress": False, **options, "evaluate_every_epoch": False})
    if epochs:
        trainer.fit()
    return trainer.evaluate()[1]


def _train_loader(data):
    return data.train if hasattr(data, "train") else data[0]


def _scoring_batches(data, model: nn.Module, seed: int) -> list:
    """`SCORE_BATCHES` scoring batches: the data's own ``scoring_batches`` hook where it has one (collected by
    ``model`` for on-policy data), else the first batches of a seeded, shuffled loader over the training set."""
    hook = getattr(data, "scoring_batches", None)
    train = _train_loader(data)
    batch_size = getattr(train, "batch_size", None) or 64
    if hook is not None:
        extra = (model,) if getattr(data, "on_policy", False) else ()
        return hook(SCORE_BATCHES, batch_size, seed, *extra)
    if getattr(train, "dataset", None) is None:
        raise ValueError("the training loader has no dataset to draw scoring batches from; pass batches=[(inputs, "
                         "targets), ...]")
    loader = DataLoader(train.dataset, batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    return take(loader, SCORE_BATCHES)
