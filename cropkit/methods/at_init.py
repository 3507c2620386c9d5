"""Pruning at initialisation: once by a criterion (Random, SNIP, GraSP, CroP-U; Random-S, SNAP, CroP-S), or by
CroPit's iterative schedule, re-scoring before each step (Rachwan et al. 2022, §3); then E epochs of training."""
from __future__ import annotations

import functools
from typing import Callable

from torch import nn

from cropkit.core import prune, schedules
from cropkit.methods.context import Context
from cropkit.methods.method import Method
from cropkit.methods.options import LAYER_FLOOR, SANITY


def at_init(how: Callable[[Context, nn.Module], nn.Module], ctx: Context) -> nn.Module:
    """Prune the freshly initialised network with ``how``, then train it for ``epochs``."""
    model = how(ctx, ctx.build_model())
    ctx.pruned()
    return ctx.fit(ctx.trainer(model, ctx.sparse_epochs()))


def once(criterion: str) -> Callable[[Context, nn.Module], nn.Module]:
    """One-shot pruning by ``criterion`` (SNIP, GraSP, CroP, SNAP, CroP-S, random)."""
    return lambda ctx, model: ctx.prune(model, criterion)


def cropit(structured: bool) -> Callable[[Context, nn.Module], nn.Module]:
    """CroPit's iterative at-init schedule, re-scoring before each step (`cropkit.core.prune.cropit`)."""
    return lambda ctx, model: prune.cropit(model, ctx.batches_for(model), ctx.sparsity, structured=structured,
                                           example_inputs=ctx.example_inputs, loss_fn=ctx.loss_fn,
                                           min_fraction=ctx.cfg.layer_floor)


def one_shot(criterion: str, label: str, family: str) -> Method:
    """The method that prunes the fresh network once with ``criterion``, then trains; ``sanity`` ablates that
    prune (Frankle et al. 2021, `cropkit.methods.context.Context.prune`)."""
    return Method(functools.partial(at_init, once(criterion)), label, family, when="at init",
                  schedule=f"once, by {criterion}",
                  options=((LAYER_FLOOR,) if family == "Structured" else ()) + (SANITY,))


def iterative(structured: bool) -> Method:
    """CroPit-U / CroPit-S: CroPit's cumulative steps at initialisation (`cropkit.core.schedules.cropit_targets`)."""
    label, family = ("CroPit-S", "Structured") if structured else ("CroPit-U", "Unstructured")
    return Method(functools.partial(at_init, cropit(structured)), label, family,
                  when="at init", schedule="in CroPit's steps, re-scoring before each",
                  cuts=lambda cfg: len(schedules.cropit_targets(0.9)),
                  options=(LAYER_FLOOR,) if structured else ())
