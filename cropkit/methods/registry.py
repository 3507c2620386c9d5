"""The sixteen methods of the paper's tables (Rachwan et al. 2022, Tables 1–4): when to prune and what to prune.

    result = cropkit.run("earlycrop-s", data="digits", model="cnn", sparsity=0.9, epochs=10, seed=0)
    table  = cropkit.compare(["dense", "snap", "earlycrop-s"], sparsity=0.9, seeds=(0, 1, 2))

Every method is one small function ``(Context) -> final model`` in the registry ``REGISTRY``; ``METHODS`` are its
keys in the order of the paper's tables (dense, then unstructured, then structured). The options a method reads
are declared next to it (`cropkit.methods.options.Option`) and listed in its registry entry: they enter its cache key.
Running and measuring a method is `cropkit.experiments.runs` (``run``); many methods over seeds,
`cropkit.experiments.comparison`.
``sparsity`` is always the target *weight* sparsity. ``epochs`` is the length of the sparse phase (the paper's
"80 epochs after pruning"), so an early method trains its dense phase on top:

| method                        | what happens                                                     | epochs_trained   |
|-------------------------------|------------------------------------------------------------------|------------------|
| dense                         | train                                                            | E                |
| random-u, snip, grasp, crop-u | score on ``score_batches`` training batches at init, mask, train | E                |
| random-s, snap, crop-s        | the same with node scores and physical removal                   | E                |
| cropit-u, cropit-s            | CroPit's iterative schedule at init (`core.schedules.cropit`), | E                |
|                               | train                                                            |                  |
| earlycrop-u, earlycrop-s      | dense (constant LR) until the detector fires at t (cap:          | t + E            |
|                               | ``max_dense_epochs``, with a warning), prune θ_t with CroP /     |                  |
|                               | CroP-S, keep training θ_t (no rewinding), fresh optimizer +      |                  |
|                               | one-cycle                                                        |                  |
| ltr                           | train; then R = ``ltr_rounds`` rounds of: prune 1 − (1 − p)^(1/R)| (R + 1) · E      |
|                               | of the survivors globally by |θ|, rewind survivors to θ_k        |                  |
|                               | (k = ``rewind_epoch`` of the first training), retrain            |                  |
| earlybird                     | dense with L1 on BN γ until the BN-mask distance settles (cap),  | t + E            |
|                               | remove nodes by |γ|, continue                                    |                  |
| gatedecorators                | learnable gates after the norms, L1 penalty; ``ticks`` × (tock:  | ticks + E        |
|                               | one epoch; tick: train the gates alone over the scoring batches, |                  |
|                               | accumulating their Taylor score, remove nodes), then train       |                  |
| efficientconvnets             | ``dense_epochs`` of dense training, remove nodes by filter L1 at | dense_epochs + E |
|                               | an equal ratio in every layer, train                             |                  |

Dense phases use a constant learning rate; every sparse phase gets a fresh optimizer and the profile's
schedule (one-cycle). Scoring batches come from their own seeded loader over the training set, so scoring
never shifts the order in which training sees the data. The run's ``seed`` builds the model (the dense
reference of the sparsity columns is rebuilt with it), shuffles the data and seeds the random criteria.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

from torch import nn

from cropkit.core import measure, prune, scores
from cropkit.methods import gates as gates_lib
from cropkit.methods.context import Context
from cropkit.methods.options import Option
from cropkit.training import loop as train
from cropkit.training import timing
from cropkit.training.callbacks import BatchNormL1, DetectorCallback, Snapshot, rewind, state_of

# ----------------------------------------------------------------------------- the methods

def dense(ctx: Context) -> nn.Module:
    """The reference row: no pruning."""
    return ctx.fit(ctx.trainer(ctx.build_model(), ctx.cfg.epochs))


def at_init(how: Callable[[Context, nn.Module], nn.Module], ctx: Context) -> nn.Module:
    """Prune the freshly initialised network with ``how``, then train it for ``epochs``."""
    model = how(ctx, ctx.build_model())
    ctx.pruned()
    return ctx.fit(ctx.trainer(model, ctx.cfg.epochs))


def once(criterion: str) -> Callable[[Context, nn.Module], nn.Module]:
    """One-shot pruning by ``criterion`` (SNIP, GraSP, CroP, SNAP, CroP-S, random)."""
    return lambda ctx, model: ctx.prune(model, criterion)


def cropit(structured: bool) -> Callable[[Context, nn.Module], nn.Module]:
    """CroPit's iterative at-init schedule, re-scoring before each step (`cropkit.core.prune.cropit`)."""
    return lambda ctx, model: prune.cropit(model, ctx.batches_for(model), ctx.sparsity, structured=structured,
                                           example_inputs=ctx.example_inputs, loss_fn=ctx.loss_fn)


MAX_DENSE_EPOCHS = Option("max_dense_epochs", int, "the longest dense phase in epochs; the prune is forced then",
                          minimum=1)
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
)


def _detector_threshold(ctx: Context, structured: bool) -> dict:
    c = ctx.cfg
    # the reference code's τ: 1 − p, structured min(1 − p − 0.1, 0.99)
    if c.rule == "reference" and c.threshold is None:
        return dict(sparsity=ctx.sparsity, structured=structured)
    return dict(threshold=c.threshold)


def _early_criterion(cfg, structured: bool) -> str:
    """The score EarlyCroP applies to θ_t: ``criterion`` if given, else CroP / CroP-S; checked."""
    criterion = cfg.criterion or ("crop_nodes" if structured else "crop")
    kind, allowed = ("node", scores.NODE_SCORES) if structured else ("weight", scores.WEIGHT_SCORES)
    if criterion not in allowed:
        raise ValueError(f"criterion {criterion!r} is not a {kind} score; choose one of {sorted(allowed)}")
    if cfg.iterative and cfg.criterion is not None:
        raise ValueError("iterative=True re-scores with CroP in CroPit's steps; it takes no other criterion")
    return criterion


def earlycrop(structured: bool, ctx: Context) -> nn.Module:
    """Train dense until the EarlyCroP detector fires (rich → lazy), prune θ_t with CroP(-S), keep training θ_t.

    ``detect_every_steps=N`` updates the detector every N optimizer steps (its "epochs" are then blocks of N
    steps) and may prune in the middle of an epoch: the sparse phase is then the rest of that epoch plus
    ``epochs`` epochs, and ``prune_epoch`` counts the epochs finished before the prune. ``criterion`` swaps the
    score applied to θ_t (e.g. "magnitude"), to separate *when* EarlyCroP prunes from *how* (lesson 03)."""
    c = ctx.cfg
    every = c.detect_every_steps
    criterion = _early_criterion(c, structured)
    model = ctx.build_model()
    detector = timing.EarlyCroPDetector(model, rule=c.rule, max_epochs=c.max_dense_epochs if every is None else None,
                                        **_detector_threshold(ctx, structured))

    def prune_now(trainer):
        if c.iterative:  # the reference code's EarlyCROP re-scores θ_t in CroPit's cumulative steps
            trainer.model = prune.cropit(trainer.model, ctx.batches_for(trainer.model), ctx.sparsity,
                                         structured=structured,
                                         example_inputs=ctx.example_inputs, loss_fn=ctx.loss_fn)
        else:            # the paper (§3.3): one CroP / CroP-S prune at the firing epoch
            trainer.model = ctx.prune(trainer.model, criterion)
        ctx.pruned(trainer, detector)
        mid_epoch = int(trainer.epoch_step > 0)  # the running epoch's rest belongs to the sparse phase
        trainer.reset_optimizer(epochs=c.epochs + mid_epoch, schedule=c.schedule)  # no rewinding: θ_t goes on

    def forced(trainer):
        detector.force(f"EarlyCroP detector ({c.rule} rule, τ = {detector.threshold:g}, every {every} steps) did not "
                       f"fire within the maximum dense phase of {c.max_dense_epochs} epochs; pruning now (forced)")
        prune_now(trainer)

    trainer = ctx.trainer(model, c.max_dense_epochs, schedule="constant",
                          callbacks=[DetectorCallback(detector, every_steps=every, on_fire=prune_now,
                                                      deadline=(c.max_dense_epochs, forced))])
    return ctx.fit(trainer)


LTR_OPTIONS = (
    Option("ltr_rounds", int, "rounds of prune → rewind → retrain", minimum=1),
    Option("rewind_epoch", int, "k of θ_k, the epoch of the first training the survivors rewind to", minimum=0),
    Option("reinit", bool, "re-initialise the survivors at random instead of rewinding (open_lth's control)",
           default=False),
)


def ltr(ctx: Context) -> nn.Module:
    """Lottery tickets with rewinding (Frankle et al. 2020): train, then ``ltr_rounds`` rounds of prune → rewind
    the survivors to θ_k → retrain. Round r prunes to the cumulative sparsity 1 − (1 − p)^(r/R), i.e. the
    fraction 1 − (1 − p)^(1/R) of the surviving weights, globally by |θ|. With ``reinit=True`` the survivors
    are re-initialised at random instead (open_lth's control: a new draw from the same initialiser).

    Every retraining runs the full ``epochs`` from θ_k with a fresh optimizer and one-cycle schedule, so
    epochs_trained = (R + 1) · epochs. (open_lth instead resumes the original schedule at step k and trains the
    remaining epochs − k; the difference is k epochs per round.)"""
    c = ctx.cfg
    model = ctx.build_model()
    snapshot = Snapshot(c.rewind_epoch)
    ctx.fit(ctx.trainer(model, c.epochs, callbacks=[snapshot]))
    if "start" not in ctx.state:  # in ctx.state: a resumed run skips the training that took it
        ctx.state["start"] = state_of(ctx.build_model(seed=ctx.seed + 10_000)) if c.reinit else snapshot.state
    start = ctx.state["start"]
    for r in range(1, c.ltr_rounds + 1):
        ctx.prune(model, "magnitude", sparsity=1 - (1 - ctx.sparsity) ** (r / c.ltr_rounds))
        rewind(model, start)
        ctx.pruned()
        ctx.fit(ctx.trainer(model, c.epochs))
    return model


EARLYBIRD_OPTIONS = (
    MAX_DENSE_EPOCHS,
    Option("bn_l1", float, "λ of the L1 penalty on BatchNorm γ (You et al. 2020)", default=1e-4),
    Option("eb_epsilon", float, "Hamming distance below which the BN channel mask counts as settled", default=0.1),
    Option("eb_window", int, "consecutive masks compared", default=5, minimum=1),
)


def earlybird(ctx: Context) -> nn.Module:
    """Early-bird tickets (You et al. 2020): dense training with λ‖γ‖₁ on BatchNorm scales; every epoch the
    detector takes the BN channel mask at the node ratio r = 1 − √(1 − p) (a chain of layers that each lose a
    fraction r of their nodes loses ≈ 1 − (1 − r)² = p of its weights) and fires once the mask stops changing.
    Then nodes are removed by |γ| to the weight-sparsity target and training goes on without the penalty."""
    c = ctx.cfg
    model = ctx.build_model()
    penalty = BatchNormL1(model, c.bn_l1)
    detector = timing.EarlyBirdDetector(1 - math.sqrt(1 - ctx.sparsity), epsilon=c.eb_epsilon, window=c.eb_window,
                                        max_epochs=c.max_dense_epochs)

    def prune_now(trainer):
        penalty.remove()
        trainer.model = ctx.prune(trainer.model, "bn_nodes")
        ctx.pruned(trainer, detector)
        trainer.reset_optimizer(epochs=c.epochs, schedule=c.schedule)

    trainer = ctx.trainer(model, c.max_dense_epochs, schedule="constant",
                          callbacks=[penalty, DetectorCallback(detector, on_fire=prune_now)])
    return ctx.fit(trainer)


GATEDECORATORS_OPTIONS = (
    Option("ticks", int, "tick-tock rounds, each removing nodes", minimum=1),
    Option("gate_l1", float, "λ of the L1 sparsity penalty on the gates φ (the kit's default)", default=1e-4),
)


def gatedecorators(ctx: Context) -> nn.Module:
    """Gate Decorator (You et al. 2019, `cropkit.methods.gates`), from initialisation: learnable gates φ = 1 after every
    node layer's BatchNorm, trained with the L1 penalty ``gate_l1``·‖φ‖₁. ``ticks`` times: tock = one epoch of
    training (all parameters and the gates, penalty on); tick = one pass over the scoring batches in which only
    the gates train while the Taylor score Θ = |Σ_b φ ⊙ ∂L_b/∂φ| accumulates, then the gates are folded into the
    norms (γφ, βφ) and the lowest-Θ nodes removed to the cumulative weight sparsity 1 − (1 − p)^(i/ticks) of the
    dense model (the same fraction of the remaining weights each tick; the last tick lands on p), and fresh gates
    go on. Then train without gates."""
    model = ctx.build_model()
    tick_tock = _TickTock(ctx, model)  # the gates come before the optimizer exists
    return ctx.fit(ctx.trainer(model, ctx.cfg.ticks, schedule="constant", callbacks=[tick_tock]))


class _TickTock(train.Callback):
    """GateDecorators' schedule: the gates of the running tock, and a tick at the end of epochs 1..``ticks``. Its
    state (gates on or off) lets a resumed run hook the gates of the restored model (`cropkit.training.checkpoint`)."""

    def __init__(self, ctx: Context, model: nn.Module):
        self.ctx, self.dense_weights = ctx, measure.prunable_count(model)
        self.gates = gates_lib.GateDecorator(model, ctx.batches, penalty=ctx.cfg.gate_l1)

    def on_epoch_end(self, trainer) -> None:
        c, ctx, i = self.ctx.cfg, self.ctx, trainer.epoch
        if i > c.ticks:
            return
        theta = self.gates.tick(ctx.batches_for(trainer.model), lr=c.lr, loss_fn=ctx.loss_fn)
        self.gates.fold()
        target = 1 - (1 - ctx.sparsity) ** (i / c.ticks)
        trainer.model = prune.structured(trainer.model, theta, target, ctx.example_inputs,
                                         dense_weights=self.dense_weights)
        if i < c.ticks:  # tensors changed: fresh gates and a fresh optimizer for the next tock
            self.gates = gates_lib.GateDecorator(trainer.model, ctx.batches, penalty=c.gate_l1)
            trainer.reset_optimizer(epochs=c.ticks - i, schedule="constant")
        else:
            self.gates = None
            ctx.pruned(trainer)
            trainer.reset_optimizer(epochs=c.epochs, schedule=c.schedule)

    def state_dict(self) -> dict:
        return dict(gated=self.gates is not None)

    def load_state_dict(self, state: dict, trainer) -> None:
        if self.gates is not None:
            self.gates.unhook()
        self.gates = gates_lib.GateDecorator(trainer.model, self.ctx.batches, penalty=self.ctx.cfg.gate_l1) \
            if state["gated"] else None


EFFICIENTCONVNETS_OPTIONS = (
    Option("dense_epochs", int, "epochs of dense training before the filters are ranked", minimum=0),
)


def efficientconvnets(ctx: Context) -> nn.Module:
    """Pruning Filters for Efficient ConvNets (Li et al. 2017): after ``dense_epochs`` of dense training remove
    the nodes with the smallest filter L1 norm, the same fraction in every layer (``scope="layer"``), train."""
    c = ctx.cfg
    model = ctx.build_model()
    if c.dense_epochs > 0:
        model = ctx.fit(ctx.trainer(model, c.dense_epochs, schedule="constant"))
    model = ctx.prune(model, "l1_nodes", scope="layer")
    ctx.pruned()
    return ctx.fit(ctx.trainer(model, c.epochs))


@dataclasses.dataclass(frozen=True)
class Method:
    """A registry entry: how the method trains, its name in the paper's tables, its family, and the options it
    reads besides `cropkit.methods.options.COMMON` (they enter its cache key)."""

    train: Callable[[Context], nn.Module]
    label: str
    family: str
    options: tuple[Option, ...] = ()
    check: Callable | None = None  # check(cfg): what the options' declarations alone cannot say; raises ValueError

    @property
    def settings(self) -> tuple[str, ...]:
        """The names of :attr:`options`."""
        return tuple(o.name for o in self.options)


def _one_shot(criteria: dict[str, tuple[str, str]], family: str) -> dict[str, Method]:
    """The at-init methods that score once with a criterion and prune: {method: (criterion, label)}."""
    return {name: Method(functools.partial(at_init, once(criterion)), label, family)
            for name, (criterion, label) in criteria.items()}


REGISTRY: dict[str, Method] = {
    "dense": Method(dense, "Dense", "Dense"),
    **_one_shot({"random-u": ("random", "Random-U"), "snip": ("snip", "SNIP"), "grasp": ("grasp", "GraSP"),
                 "crop-u": ("crop", "CroP-U")}, "Unstructured"),
    "cropit-u": Method(functools.partial(at_init, cropit(structured=False)), "CroPit-U", "Unstructured"),
    "earlycrop-u": Method(functools.partial(earlycrop, False), "EarlyCroP-U", "Unstructured", EARLYCROP_OPTIONS,
                          functools.partial(_early_criterion, structured=False)),
    "ltr": Method(ltr, "LTR", "Unstructured", LTR_OPTIONS),
    **_one_shot({"random-s": ("random_nodes", "Random-S"), "snap": ("snap_nodes", "SNAP"),
                 "crop-s": ("crop_nodes", "CroP-S")}, "Structured"),
    "cropit-s": Method(functools.partial(at_init, cropit(structured=True)), "CroPit-S", "Structured"),
    "earlycrop-s": Method(functools.partial(earlycrop, True), "EarlyCroP-S", "Structured", EARLYCROP_OPTIONS,
                          functools.partial(_early_criterion, structured=True)),
    "earlybird": Method(earlybird, "EarlyBird", "Structured", EARLYBIRD_OPTIONS),
    "gatedecorators": Method(gatedecorators, "GateDecorators", "Structured", GATEDECORATORS_OPTIONS),
    "efficientconvnets": Method(efficientconvnets, "EfficientConvNets", "Structured", EFFICIENTCONVNETS_OPTIONS),
}
METHODS: tuple[str, ...] = tuple(REGISTRY)
LABELS = {name: m.label for name, m in REGISTRY.items()}
FAMILIES = {name: m.family for name, m in REGISTRY.items()}
