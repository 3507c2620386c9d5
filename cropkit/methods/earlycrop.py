"""EarlyCroP (Rachwan et al. 2022, §3.3): train dense until the detector sees the rich → lazy transition, prune θ_t
once with CroP (-U) or CroP-S (-S), keep training θ_t (no rewinding)."""
from __future__ import annotations

import functools

from torch import nn

from cropkit.core import prune, schedules, scores
from cropkit.methods.context import Context
from cropkit.methods.method import Method, budget
from cropkit.methods.options import LAYER_FLOOR, MAX_DENSE_EPOCHS, SANITY, Option
from cropkit.training import timing
from cropkit.training.callbacks import DetectorCallback

EARLYCROP_OPTIONS = (
    MAX_DENSE_EPOCHS,
    Option("threshold", float, "the detector's τ", default=None,
           none="timing.DEFAULT_THRESHOLD (seed rule) or timing.reference_threshold (reference rule)"),
    Option("rule", str, "the detector's rule: ‖θ_t − θ₀‖² (seed) or the reference code's", default="seed",
           choices=timing.RULES),
    Option("iterative", bool, "prune θ_t in CroPit's steps (re-scoring between them) instead of once", default=False),
    Option("detect_every_steps", int, "update the detector every N optimizer steps", default=None, minimum=1,
           none="once per epoch"),
    Option("criterion", str, "the score applied to θ_t, e.g. magnitude (lesson 03: when vs how)", default=None,
           none="CroP (-U) / CroP-S (-S)"),
    SANITY,
)


def _detector_threshold(ctx: Context, structured: bool) -> dict:
    c = ctx.cfg
    # the reference code's τ: 1 − p, structured min(1 − p − 0.1, 0.99)
    if c.rule == "reference" and c.threshold is None:
        return dict(sparsity=ctx.sparsity, structured=structured)
    return dict(threshold=c.threshold)


def _early_criterion(cfg, structured: bool) -> str:
    """The score EarlyCroP applies to θ_t: ``criterion`` if given, else CroP / CroP-S; checked, with ``sanity``."""
    criterion = cfg.criterion or ("crop_nodes" if structured else "crop")
    kind, allowed = ("node", scores.NODE_SCORES) if structured else ("weight", scores.WEIGHT_SCORES)
    if criterion not in allowed:
        raise ValueError(f"criterion {criterion!r} is not a {kind} score; choose one of {sorted(allowed)}")
    if cfg.iterative and cfg.criterion is not None:
        raise ValueError("iterative=True re-scores with CroP in CroPit's steps; it takes no other criterion")
    if cfg.iterative and cfg.sanity != "none":
        raise ValueError(f"sanity={cfg.sanity!r}: the sanity checks apply to the one-shot prune only, and "
                         f"iterative=True prunes in CroPit's steps; give iterative=False or sanity='none'")
    return criterion


def earlycrop(structured: bool, ctx: Context) -> nn.Module:
    """Train dense until the EarlyCroP detector fires (rich → lazy), prune θ_t with CroP(-S), keep training θ_t.

    ``detect_every_steps=N`` updates the detector every N optimizer steps (its "epochs" are then blocks of N
    steps) and may prune in the middle of an epoch: the sparse phase is then the rest of that epoch plus
    ``epochs`` epochs, and ``prune_epoch`` counts the epochs finished before the prune. ``criterion`` swaps the
    score applied to θ_t (e.g. "magnitude"), to separate *when* EarlyCroP prunes from *how* (lesson 03);
    ``sanity`` ablates the one-shot prune of θ_t (Frankle et al. 2021, `cropkit.methods.context.Context.prune`)."""
    c = ctx.cfg
    every = c.detect_every_steps
    criterion = _early_criterion(c, structured)
    model = ctx.build_model()
    if structured and c.sanity == "reinit":  # said now, not after the dense phase
        ctx.check_redraw(model)
    detector = timing.EarlyCroPDetector(model, rule=c.rule, max_epochs=c.max_dense_epochs if every is None else None,
                                        **_detector_threshold(ctx, structured))

    def prune_now(trainer):
        if c.iterative:  # the reference code's EarlyCROP re-scores θ_t in CroPit's cumulative steps
            trainer.model = prune.cropit(trainer.model, ctx.batches_for(trainer.model), ctx.sparsity,
                                         structured=structured,
                                         example_inputs=ctx.example_inputs, loss_fn=ctx.loss_fn,
                                         min_fraction=c.layer_floor)
        else:            # the paper (§3.3): one CroP / CroP-S prune at the firing epoch
            trainer.model = ctx.prune(trainer.model, criterion)
        ctx.pruned(trainer, detector)
        mid_epoch = int(trainer.epoch_step > 0)  # the running epoch's rest belongs to the sparse phase
        trainer.reset_optimizer(epochs=ctx.sparse_epochs(trainer.epoch) + mid_epoch * (c.total_epochs is None),
                                schedule=c.schedule)  # no rewinding: θ_t goes on

    def forced(trainer):
        detector.force(f"EarlyCroP detector ({c.rule} rule, τ = {detector.threshold:g}, every {every} steps) did not "
                       f"fire within the maximum dense phase of {c.max_dense_epochs} epochs; pruning now (forced)")
        prune_now(trainer)

    trainer = ctx.trainer(model, c.max_dense_epochs, schedule="constant",
                          callbacks=[DetectorCallback(detector, every_steps=every, on_fire=prune_now,
                                                      deadline=(c.max_dense_epochs, forced))])
    return ctx.fit(trainer)


def _method(structured: bool) -> Method:
    label, family = ("EarlyCroP-S", "Structured") if structured else ("EarlyCroP-U", "Unstructured")
    return Method(functools.partial(earlycrop, structured), label, family,
                  when="early",
                  schedule="once, when the detector fires at epoch t (at the latest max_dense_epochs)",
                  epochs=lambda cfg: budget(cfg, cfg.max_dense_epochs),
                  cuts=lambda cfg: len(schedules.cropit_targets(0.9)) if cfg.iterative else 1,
                  options=EARLYCROP_OPTIONS + ((LAYER_FLOOR,) if structured else ()),
                  check=functools.partial(_early_criterion, structured=structured))


EARLYCROP_U, EARLYCROP_S = _method(False), _method(True)
