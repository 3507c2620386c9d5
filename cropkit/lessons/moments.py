"""The moment a run prunes, re-created: θ₀, the weights its prune scored, its scoring batches and when it pruned.

A cached run keeps its result, not the networks it scored. To look at *what* a score saw (lesson 03: where CroP,
SNIP and magnitude put an unstructured budget at θ_t; lesson 04: how CroP-S's layer scores move between θ₀ and
θ_t), :func:`moment` runs the method's own code with the run's settings up to its first prune and stops there. The
dense phase is therefore the run's own (same data, initialisation, optimizer, schedule, detector and scoring
batches), not a re-telling of it, and on the CPU with the run's torch threads the weights are the ones the run
pruned, bit for bit (tested against the runs' recorded layouts and prune epochs).

    m = moment("earlycrop-u", data="mnist1d", model="cnn", width=0.5, sparsity=0.9, seed=0, threads=1)
    m.prune_epoch, m.forced                      # when the run pruned, and whether the detector was forced
    scores.crop(m.theta_t, m.batches)            # score the very weights the run scored, on its batches
    m.pruned                                     # what the run's prune made of them

It takes what `cropkit.run` takes (the cache, progress and callbacks are ignored: nothing is cached). Methods whose
cut does not go through `cropkit.methods.context.Context.prune` (GateDecorators' gates) cannot be stopped there.
"""
from __future__ import annotations

import copy
import dataclasses

from torch import nn

from cropkit.core.plumbing import torch_threads
from cropkit.experiments.runs import configuration
from cropkit.methods.context import Context
from cropkit.methods.registry import REGISTRY
from cropkit.tasks import data as data_lib
from cropkit.training import loop as train

_IGNORED = ("cache", "cache_dir", "progress", "callbacks", "pin_memory")
_NO_MOMENT = ("dense", "cropit-u", "cropit-s", "gatedecorators")  # no one-shot cut through Context.prune


@dataclasses.dataclass
class Moment:
    """A run stopped at its first prune.

    theta_0      the network as the run built it (its initialisation)
    theta_t      the weights the first prune scored (θ₀ itself for a method that prunes at initialisation)
    pruned       what that prune made of them (masks, or the smaller network of a structured prune)
    batches      the scoring batches the prune used
    prune_epoch  epochs of training before the prune (0: at initialisation), as ``Result.prune_epoch``
    forced       whether a detector was forced at its cap (None: the method has no detector)
    settings     the run's resolved settings; ``config`` its cache configuration; ``data`` its data; ``loss_fn``
                 the loss its scores differentiate
    """

    method: str
    theta_0: nn.Module
    theta_t: nn.Module
    pruned: nn.Module
    batches: list
    prune_epoch: int
    forced: bool | None
    settings: object
    config: dict
    data: object
    loss_fn: object


class _Stop(Exception):
    """Raised once the first prune is recorded: ends the method's code there."""


class _Watching(Context):
    """A run's context that keeps θ₀, the weights and batches of the first prune, and stops the method after it."""

    first_model: nn.Module | None = None
    seen: dict | None = None

    def build_model(self, seed: int | None = None) -> nn.Module:
        model = super().build_model(seed)
        if self.first_model is None:
            self.first_model = copy.deepcopy(model)
        return model

    def prune(self, model: nn.Module, criterion: str, sparsity: float | None = None, **structured) -> nn.Module:
        before, batches = copy.deepcopy(model), self.batches_for(model)
        pruned = super().prune(model, criterion, sparsity, **structured)
        self.seen = dict(theta_t=before, batches=batches, pruned=pruned)
        return pruned

    def pruned(self, trainer: train.Trainer | None = None, detector=None) -> None:
        super().pruned(trainer, detector)
        raise _Stop


def _no_moment(method: str) -> None:
    raise ValueError(f"{method} has no one-shot prune through Context.prune to stop at (dense does not cut; CroPit and "
                     f"iterative=True prune in steps of their own; GateDecorators cuts by its gates); choose a "
                     f"one-shot method such as {['snip', 'crop-u', 'crop-s', 'earlycrop-u', 'earlycrop-s', 'ltr']}")


def moment(method: str, threads: int | None = None, device: str | None = None, root=None, **run_options) -> Moment:
    """Run ``method`` with ``run_options`` (`cropkit.run`'s arguments) up to its first prune and return that
    :class:`Moment`. ``threads``: torch's CPU threads meanwhile (give the run's to get its weights bit for bit)."""
    for name in _IGNORED:
        run_options.pop(name, None)
    cfg, config = configuration(method, device=device, threads=threads, **run_options)
    if method in _NO_MOMENT or getattr(cfg, "iterative", False):
        _no_moment(method)
    dev = train.resolve_device(device)
    seed, sparsity = config["seed"], config["sparsity"]
    data = data_lib.load(cfg.data, root=root, batch_size=cfg.batch_size, seed=seed, limit=cfg.limit,
                         num_workers=cfg.num_workers, pin_memory=False)
    ctx = _Watching(cfg, data, sparsity, seed, dev, progress=False)
    with torch_threads(threads):
        try:
            REGISTRY[method].train(ctx)
        except _Stop:
            pass
    if ctx.seen is None:
        _no_moment(method)
    return Moment(method=method, theta_0=ctx.first_model, theta_t=ctx.seen["theta_t"], pruned=ctx.seen["pruned"],
                  batches=ctx.seen["batches"], prune_epoch=ctx.prune_epoch, forced=ctx.forced, settings=cfg,
                  config=config, data=data, loss_fn=ctx.loss_fn)
