"""The sixteen methods of the paper's tables, end to end: when to prune, what to prune, what it cost (SPEC §4, §5).

    result = cropkit.run("earlycrop-s", data="digits", model="cnn", sparsity=0.9, epochs=10, seed=0)
    table  = cropkit.compare(["dense", "snap", "earlycrop-s"], sparsity=0.9, seeds=(0, 1, 2))

Every method is one small function ``(Context) -> final model`` in the registry ``REGISTRY``; ``METHODS`` are its
keys in the order of SPEC §9. ``sparsity`` is always the target *weight* sparsity. ``epochs`` is the length of
the sparse phase (the paper's "80 epochs after pruning"), so an early method trains its dense phase on top:

| method                           | what happens                                                        | epochs_trained    |
|----------------------------------|---------------------------------------------------------------------|-------------------|
| dense                            | train                                                               | E                 |
| random-u, snip, grasp, crop-u    | score on ``score_batches`` training batches at init, mask, train    | E                 |
| random-s, snap, crop-s           | the same with node scores and physical removal                      | E                 |
| cropit-u, cropit-s               | CroPit's iterative schedule at init (`cropkit.prune.cropit`), train  | E                 |
| earlycrop-u, earlycrop-s         | dense (constant LR) until the detector fires at t (cap:              | t + E             |
|                                  | ``max_dense_epochs``, with a warning), prune θ_t with CroP / CroP-S, |                   |
|                                  | keep training θ_t (no rewinding), fresh optimizer + one-cycle        |                   |
| ltr                              | train; then R = ``ltr_rounds`` rounds of: prune 1 − (1 − p)^(1/R) of | (R + 1) · E       |
|                                  | the survivors globally by |θ|, rewind survivors to θ_k              |                   |
|                                  | (k = ``rewind_epoch`` of the first training), retrain                |                   |
| earlybird                        | dense with L1 on BN γ until the BN-mask distance settles (cap),     | t + E             |
|                                  | remove nodes by |γ|, continue                                        |                   |
| gatedecorators                   | learnable gates after the norms, L1 penalty; ``ticks`` × (tock: one | ticks + E         |
|                                  | epoch; tick: train the gates alone over the scoring batches,         |                   |
|                                  | accumulating their Taylor score, remove nodes), then train           |                   |
| efficientconvnets                | ``dense_epochs`` of dense training, remove nodes by filter L1 at an  | dense_epochs + E  |
|                                  | equal ratio in every layer, train                                    |                   |

Dense phases use a constant learning rate; every sparse phase gets a fresh optimizer and the profile's
schedule (one-cycle). Scoring batches come from their own seeded loader over the training set, so scoring
never shifts the order in which training sees the data. The run's ``seed`` builds the model (the dense
reference of the sparsity columns is rebuilt with it), shuffles the data and seeds the random criteria.
"""
from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from . import data as data_lib
from . import gates as gates_lib
from . import measure, models, profiles, prune, scores, timing, train
from .callbacks import BatchNormL1, DetectorCallback, EveryEpoch, Snapshot, rewind, state_of  # noqa: F401
from .results import (Result, cache_path, code_version, default_cache_dir, library_versions,  # noqa: F401
                      load_cached, paper_table, save_table, store, unwritable)

# Settings every run depends on (they enter every cache key); each method adds the ones it reads.
COMMON_SETTINGS = ("epochs", "batch_size", "limit", "lr", "weight_decay", "schedule", "score_batches",
                   "measure_emissions")

# Method options that do not depend on the profile (profile-dependent ones live in cropkit.profiles.RUN).
OPTION_DEFAULTS = dict(
    threshold=None,   # EarlyCroP τ; None = timing.DEFAULT_THRESHOLD (seed rule) or timing.reference_threshold
    rule="seed",      # EarlyCroP detector rule: "seed" (‖θ_t − θ₀‖²) or "reference" (the reference code's)
    iterative=False,  # EarlyCroP: prune θ_t in CroPit's steps (re-scoring between them) instead of once
    detect_every_steps=None,  # EarlyCroP: update the detector every N optimizer steps; None = once per epoch
    reinit=False,     # LTR: random re-initialisation instead of rewinding (open_lth's control)
    bn_l1=1e-4,       # EarlyBird: λ of the L1 penalty on BatchNorm γ (You et al. 2020)
    eb_epsilon=0.1,   # EarlyBird: Hamming distance below which the BN channel mask counts as settled
    eb_window=5,      # EarlyBird: number of consecutive masks compared
    gate_l1=1e-4,     # GateDecorators: λ of the L1 sparsity penalty on the gates φ (the kit's default)
)


# ----------------------------------------------------------------------------- the run's context

class Context:
    """What a method needs (data, settings, scoring batches, a trainer factory) and the run's bookkeeping."""

    def __init__(self, cfg, dataset: data_lib.Data, sparsity: float, seed: int, device: torch.device,
                 progress: bool):
        self.cfg, self.data, self.sparsity, self.seed = cfg, dataset, sparsity, seed
        self.device, self.progress = device, progress
        self.history: list[dict] = []   # one record per epoch over all trainings, epochs numbered globally
        self.epochs_trained = 0
        self.trainings = 0
        self.prune_epoch: int | None = None

    def build_model(self, seed: int | None = None) -> nn.Module:
        shape, classes = self.data.input_shape, self.data.num_classes
        model = models.build(self.cfg.model, shape, classes, width=self.cfg.width,
                             seed=self.seed if seed is None else seed)
        return model.to(self.device)

    @functools.cached_property
    def batches(self) -> list:
        """The scoring batches: the first ``score_batches`` of a loader of their own over the training set."""
        loader = DataLoader(self.data.train.dataset, batch_size=self.cfg.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(self.seed))
        batches = data_lib.take(loader, self.cfg.score_batches)
        if len(batches) < self.cfg.score_batches:
            warnings.warn(f"score_batches={self.cfg.score_batches}, but the training set ({len(loader.dataset)} "
                          f"samples, batch size {self.cfg.batch_size}) has only {len(batches)} batch(es): scoring "
                          f"used {len(batches)}")
        return batches

    @property
    def example_inputs(self) -> torch.Tensor:
        """Two training inputs, for tracing channel dependencies and counting FLOPs."""
        return self.batches[0][0][:2].to(self.device)

    def trainer(self, model: nn.Module, epochs: int, schedule: str | None = None,
                callbacks: Sequence[train.Callback] = ()) -> train.Trainer:
        c = self.cfg
        return train.Trainer(model, self.data, epochs, lr=c.lr, weight_decay=c.weight_decay,
                             schedule=schedule or c.schedule, callbacks=callbacks, device=self.device,
                             progress=self.progress, seed=self.seed)

    def fit(self, trainer: train.Trainer) -> nn.Module:
        """Run ``trainer`` to the end, append its epochs to the history; returns the trained model."""
        trainer.fit()
        for record in trainer.history.epochs:
            self.history.append({**record, "epoch": self.epochs_trained + record["epoch"],
                                 "training": self.trainings})
        self.epochs_trained += trainer.epoch
        self.trainings += 1
        return trainer.model

    def pruned(self, trainer: train.Trainer | None = None) -> None:
        """Record that the (last) prune happens now: at init of the next training, or after the running
        ``trainer``'s finished epochs."""
        self.prune_epoch = self.epochs_trained + (trainer.epoch if trainer is not None else 0)

    def prune(self, model: nn.Module, criterion: str, sparsity: float | None = None, **structured) -> nn.Module:
        """Score ``model`` with ``criterion`` on the scoring batches and prune it to ``sparsity`` (default: the
        run's target): masks for a per-weight criterion, physical removal for a per-node one."""
        sparsity = self.sparsity if sparsity is None else sparsity
        if criterion in scores.WEIGHT_SCORES:
            return prune.unstructured(model, scores.WEIGHT_SCORES[criterion](model, self.batches, seed=self.seed),
                                      sparsity)
        node_scores = scores.NODE_SCORES[criterion](model, self.batches, seed=self.seed)
        return prune.structured(model, node_scores, sparsity, self.example_inputs, **structured)


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
    """CroPit's iterative at-init schedule, re-scoring before each step (`cropkit.prune.cropit`)."""
    return lambda ctx, model: prune.cropit(model, ctx.batches, ctx.sparsity, structured=structured,
                                           example_inputs=ctx.example_inputs)


def _detector_threshold(ctx: Context, structured: bool) -> dict:
    c = ctx.cfg
    if c.rule == "reference" and c.threshold is None:  # the reference code's τ: 1 − p, structured min(1 − p − 0.1, 0.99)
        return dict(sparsity=ctx.sparsity, structured=structured)
    return dict(threshold=c.threshold)


def earlycrop(structured: bool, ctx: Context) -> nn.Module:
    """Train dense until the EarlyCroP detector fires (rich → lazy), prune θ_t with CroP(-S), keep training θ_t.

    ``detect_every_steps=N`` updates the detector every N optimizer steps (its "epochs" are then blocks of N
    steps) and may prune in the middle of an epoch: the sparse phase is then the rest of that epoch plus
    ``epochs`` epochs, and ``prune_epoch`` counts the epochs finished before the prune."""
    c = ctx.cfg
    every = c.detect_every_steps
    model = ctx.build_model()
    detector = timing.EarlyCroPDetector(model, rule=c.rule, max_epochs=c.max_dense_epochs if every is None else None,
                                        **_detector_threshold(ctx, structured))

    def prune_now(trainer):
        if c.iterative:  # the reference code's EarlyCROP re-scores θ_t in CroPit's cumulative steps
            trainer.model = prune.cropit(trainer.model, ctx.batches, ctx.sparsity, structured=structured,
                                         example_inputs=ctx.example_inputs)
        else:            # SPEC §4 and the paper: one CroP / CroP-S prune at the firing epoch
            trainer.model = ctx.prune(trainer.model, "crop_nodes" if structured else "crop")
        ctx.pruned(trainer)
        mid_epoch = int(trainer.epoch_step > 0)  # the running epoch's rest belongs to the sparse phase
        trainer.reset_optimizer(epochs=c.epochs + mid_epoch, schedule=c.schedule)  # no rewinding: θ_t goes on

    def forced(trainer):
        warnings.warn(f"EarlyCroP detector ({c.rule} rule, τ = {detector.threshold:g}, every {every} steps) did not "
                      f"fire within the maximum dense phase of {c.max_dense_epochs} epochs; pruning now (forced)",
                      stacklevel=2)
        detector.forced = True
        prune_now(trainer)

    trainer = ctx.trainer(model, c.max_dense_epochs, schedule="constant",
                          callbacks=[DetectorCallback(detector, every_steps=every, on_fire=prune_now,
                                                      deadline=(c.max_dense_epochs, forced))])
    return ctx.fit(trainer)


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
    start = state_of(ctx.build_model(seed=ctx.seed + 10_000)) if c.reinit else snapshot.state
    for r in range(1, c.ltr_rounds + 1):
        ctx.prune(model, "magnitude", sparsity=1 - (1 - ctx.sparsity) ** (r / c.ltr_rounds))
        rewind(model, start)
        ctx.pruned()
        ctx.fit(ctx.trainer(model, c.epochs))
    return model


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
        ctx.pruned(trainer)
        trainer.reset_optimizer(epochs=c.epochs, schedule=c.schedule)

    trainer = ctx.trainer(model, c.max_dense_epochs, schedule="constant",
                          callbacks=[DetectorCallback(detector, on_fire=prune_now)])
    return ctx.fit(trainer)


def gatedecorators(ctx: Context) -> nn.Module:
    """Gate Decorator (You et al. 2019, `cropkit.gates`), from initialisation: learnable gates φ = 1 after every
    node layer's BatchNorm, trained with the L1 penalty ``gate_l1``·‖φ‖₁. ``ticks`` times: tock = one epoch of
    training (all parameters and the gates, penalty on); tick = one pass over the scoring batches in which only
    the gates train while the Taylor score Θ = |Σ_b φ ⊙ ∂L_b/∂φ| accumulates, then the gates are folded into the
    norms (γφ, βφ) and the lowest-Θ nodes removed to the cumulative weight sparsity 1 − (1 − p)^(i/ticks) of the
    dense model (the same fraction of the remaining weights each tick; the last tick lands on p), and fresh gates
    go on. Then train without gates."""
    c = ctx.cfg
    model = ctx.build_model()
    dense_weights = measure.prunable_count(model)
    state = {"gates": gates_lib.GateDecorator(model, ctx.batches, penalty=c.gate_l1)}  # before the optimizer exists

    def tick(trainer):
        i = trainer.epoch
        target = 1 - (1 - ctx.sparsity) ** (i / c.ticks)
        gates = state["gates"]
        theta = gates.tick(ctx.batches, lr=c.lr)
        gates.fold()
        trainer.model = prune.structured(trainer.model, theta, target, ctx.example_inputs, dense_weights=dense_weights)
        if i < c.ticks:  # tensors changed: fresh gates and a fresh optimizer for the next tock
            state["gates"] = gates_lib.GateDecorator(trainer.model, ctx.batches, penalty=c.gate_l1)
            trainer.reset_optimizer(epochs=c.ticks - i, schedule="constant")
        else:
            ctx.pruned(trainer)
            trainer.reset_optimizer(epochs=c.epochs, schedule=c.schedule)

    return ctx.fit(ctx.trainer(model, c.ticks, schedule="constant", callbacks=[EveryEpoch(c.ticks, tick)]))


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
    """A registry entry: how the method trains, its name in the paper's tables, its family, and the settings it
    reads besides ``COMMON_SETTINGS`` (they enter its cache key)."""

    train: Callable[[Context], nn.Module]
    label: str
    family: str
    settings: tuple[str, ...] = ()


_EARLY = ("max_dense_epochs", "threshold", "rule", "iterative", "detect_every_steps")
REGISTRY: dict[str, Method] = {
    "dense": Method(dense, "Dense", "Dense"),
    "random-u": Method(functools.partial(at_init, once("random")), "Random-U", "Unstructured"),
    "snip": Method(functools.partial(at_init, once("snip")), "SNIP", "Unstructured"),
    "grasp": Method(functools.partial(at_init, once("grasp")), "GraSP", "Unstructured"),
    "crop-u": Method(functools.partial(at_init, once("crop")), "CroP-U", "Unstructured"),
    "cropit-u": Method(functools.partial(at_init, cropit(structured=False)), "CroPit-U", "Unstructured"),
    "earlycrop-u": Method(functools.partial(earlycrop, False), "EarlyCroP-U", "Unstructured", _EARLY),
    "ltr": Method(ltr, "LTR", "Unstructured", ("ltr_rounds", "rewind_epoch", "reinit")),
    "random-s": Method(functools.partial(at_init, once("random_nodes")), "Random-S", "Structured"),
    "snap": Method(functools.partial(at_init, once("snap_nodes")), "SNAP", "Structured"),
    "crop-s": Method(functools.partial(at_init, once("crop_nodes")), "CroP-S", "Structured"),
    "cropit-s": Method(functools.partial(at_init, cropit(structured=True)), "CroPit-S", "Structured"),
    "earlycrop-s": Method(functools.partial(earlycrop, True), "EarlyCroP-S", "Structured", _EARLY),
    "earlybird": Method(earlybird, "EarlyBird", "Structured",
                        ("max_dense_epochs", "bn_l1", "eb_epsilon", "eb_window")),
    "gatedecorators": Method(gatedecorators, "GateDecorators", "Structured", ("ticks", "gate_l1")),
    "efficientconvnets": Method(efficientconvnets, "EfficientConvNets", "Structured", ("dense_epochs",)),
}
METHODS: tuple[str, ...] = tuple(REGISTRY)
LABELS = {name: m.label for name, m in REGISTRY.items()}
FAMILIES = {name: m.family for name, m in REGISTRY.items()}


# ----------------------------------------------------------------------------- configuration

def _check_method(method: str) -> Method:
    if method not in REGISTRY:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    return REGISTRY[method]


def _check_sparsity(sparsity) -> float:
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise ValueError(f"sparsity is the target fraction of weights removed, a number in [0, 1); got {sparsity!r}")
    return float(sparsity)


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return value


def settings(method: str, *, data=None, model=None, epochs=None, width=None, profile="cpu", **options):
    """The resolved settings of a run: the profile's ``RUN`` values, ``OPTION_DEFAULTS``, then what was given.

    ``None`` means the profile's value, except for ``limit``: omitted, it is the profile's; ``limit=None`` given
    explicitly means the whole training set. Unknown option names and invalid values raise ``ValueError`` saying
    what is allowed.
    """
    _check_method(method)
    if profile not in profiles.PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {list(profiles.PROFILES)}")
    whole_training_set = "limit" in options and options["limit"] is None
    options = {k: v for k, v in options.items() if v is not None}  # None = the default, as everywhere
    in_profile = set(profiles.RUN[profile]) - {"data", "model", "epochs", "width", "seeds"}  # these have arguments
    unknown = sorted(set(options) - in_profile - set(OPTION_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; allowed: {sorted(in_profile | set(OPTION_DEFAULTS))}")
    cfg = profiles.settings("run", profile, data=data, model=model, epochs=epochs, width=width,
                            **{k: v for k, v in options.items() if k in in_profile})
    for key, default in OPTION_DEFAULTS.items():
        setattr(cfg, key, options.get(key, default))
    if whole_training_set:
        cfg.limit = None
    if cfg.data not in data_lib.LOADERS or cfg.data == "synthetic":
        raise ValueError(f"unknown data {cfg.data!r}; choose one of {[d for d in data_lib.LOADERS if d != 'synthetic']} "
                         f"(synthetic data is for timing only, never for accuracy)")
    if cfg.model not in models.ZOO and cfg.model not in models.torchvision_names():
        raise ValueError(f"unknown model {cfg.model!r}; choose one of the zoo {list(models.ZOO)} "
                         f"or a torchvision classification model (cropkit.models.torchvision_names())")
    _check_int("epochs", cfg.epochs, 1)
    for name in ("batch_size", "score_batches", "max_dense_epochs", "ltr_rounds", "ticks", "eb_window"):
        _check_int(name, getattr(cfg, name), 1)
    for name in ("rewind_epoch", "dense_epochs"):
        _check_int(name, getattr(cfg, name), 0)
    if cfg.limit is not None and (isinstance(cfg.limit, bool) or not isinstance(cfg.limit, int) or cfg.limit < 1):
        raise ValueError(f"limit must be an integer >= 1 (training samples kept) or None (the whole training set); "
                         f"got {cfg.limit!r}")
    if cfg.detect_every_steps is not None:
        _check_int("detect_every_steps", cfg.detect_every_steps, 1)
    if cfg.rewind_epoch > cfg.epochs:
        raise ValueError(f"rewind_epoch ({cfg.rewind_epoch}) must be <= epochs ({cfg.epochs}): θ_k is taken "
                         f"during the first training")
    for name in ("iterative", "reinit"):
        if not isinstance(getattr(cfg, name), bool):
            raise ValueError(f"{name} must be True or False; got {getattr(cfg, name)!r}")
    if cfg.rule not in timing.RULES:
        raise ValueError(f"unknown detector rule {cfg.rule!r}; choose one of {list(timing.RULES)}")
    if not cfg.width > 0:
        raise ValueError(f"width must be > 0; got {cfg.width!r}")
    return cfg


def _config(method: str, cfg, sparsity: float, seed: int, device: torch.device) -> dict:
    """Everything that decides a run's result: the cache key is a hash of this."""
    keys = COMMON_SETTINGS + REGISTRY[method].settings
    return dict(method=method, data=cfg.data, model=cfg.model, width=cfg.width, seed=seed, sparsity=sparsity,
                profile=cfg.profile, device=device.type, device_name=measure.device_name(device),
                code=code_version(), versions=library_versions(), **{k: getattr(cfg, k) for k in keys})


# ----------------------------------------------------------------------------- run

def _cropkit_warning(w: warnings.WarningMessage) -> bool:
    return Path(w.filename).resolve().parent == Path(__file__).resolve().parent


def _measure(ctx: Context, final: nn.Module) -> dict:
    """The cost columns of SPEC §5 for the final model, against the dense model built with the same seed."""
    reference = ctx.build_model()
    x, y = ctx.batches[0]
    x, y = x.to(ctx.device), y.to(ctx.device)
    memory = measure.peak_memory(final, x, y)
    after = [e for e in ctx.history if ctx.prune_epoch is None or e["epoch"] > ctx.prune_epoch]
    return dict(
        test_acc=ctx.history[-1]["test_acc"],
        best_test_acc=max(e["test_acc"] for e in after),
        weight_sparsity=measure.weight_sparsity(final, reference=reference),
        node_sparsity=measure.node_sparsity(final, reference=reference),
        params=measure.nonzero_param_count(final),
        flops=measure.flops(final, x[:2]),
        nonzero_macs=measure.nonzero_macs(final, x[:1]),
        batch_time_ms=measure.batch_time(final, x, y),
        peak_memory_bytes=memory["bytes"], peak_memory_method=memory["method"],
        disk_bytes=measure.disk_size(final),
    )


def run(method: str, data: str | None = None, model: str | None = None, sparsity: float = 0.9,
        epochs: int | None = None, seed: int = 0, profile: str = "cpu", width: float | None = None,
        cache: bool = True, cache_dir: str | Path | None = None, progress: bool = True,
        device: str | None = None, root: str | Path | None = None, **options) -> Result:
    """Run one method once and measure it (SPEC §4, §5). ``None`` = the profile's value (`cropkit.profiles.RUN`),
    except ``limit=None`` given explicitly, which means the whole training set (omit ``limit`` for the profile's).

    sparsity   target weight sparsity in [0, 1); ignored (recorded as 0) for ``dense``
    epochs     epochs of the sparse phase (dense phases come on top, see the module docstring)
    cache      replay a stored result of the identical configuration, else run and store it; False: neither.
               A cache that cannot be written costs nothing but a warning: the result is still returned.
    device     a torch device this machine has ("cpu", "cuda", "cuda:1", ...); None = CUDA if present, else CPU
    options    any key of the profile's RUN table (batch_size, lr, score_batches, max_dense_epochs, ltr_rounds,
               rewind_epoch, ticks, dense_epochs, limit, measure_emissions, …) or of OPTION_DEFAULTS
               (threshold, rule, iterative, detect_every_steps, reinit, bn_l1, eb_epsilon, eb_window, gate_l1)
    """
    spec = _check_method(method)
    sparsity = 0.0 if method == "dense" else _check_sparsity(sparsity)
    _check_int("seed", seed, 0)
    cfg = settings(method, data=data, model=model, epochs=epochs, width=width, profile=profile, **options)
    device = train.resolve_device(device)
    config = _config(method, cfg, sparsity, seed, device)
    path = cache_path(cache_dir or default_cache_dir(), config)
    if cache:
        cached = load_cached(path)
        if cached is not None:
            return cached

    dataset = data_lib.load(cfg.data, root=root, batch_size=cfg.batch_size, seed=seed, limit=cfg.limit)
    ctx = Context(cfg, dataset, sparsity, seed, device, progress)
    train.warm_up(device)  # the process's one-time imports and kernel set-up stay out of train_seconds
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with measure.Emissions(enabled=cfg.measure_emissions) as emissions:
            start = time.perf_counter()
            final = spec.train(ctx)
            seconds = time.perf_counter() - start
        columns = _measure(ctx, final)
    for w in caught:  # recorded in the result, and still shown to the user
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    result = Result(
        method=method, dataset=cfg.data, model=cfg.model, width=cfg.width, seed=seed, target_sparsity=sparsity,
        profile=cfg.profile, epochs=cfg.epochs, epochs_trained=ctx.epochs_trained, prune_epoch=ctx.prune_epoch,
        train_seconds=seconds, emissions_g=emissions.grams, device=str(device), key=path.stem,
        warnings=list(dict.fromkeys(str(w.message) for w in caught if _cropkit_warning(w))),
        config=config, history=ctx.history, **columns)
    if cache:
        try:
            store(path, result)
        except OSError as err:
            warnings.warn(f"the result could not be cached at {path} ({err}); it is returned, but the run will "
                          f"happen again next time. Choose a writable cache_dir (or $CROPKIT_CACHE)", stacklevel=2)
    return result


def _start_worker(threads: int) -> None:
    """A worker process of :func:`compare`: its share of the CPU threads; Ctrl+C is the parent's to handle."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)


def _row_in_worker(job: dict) -> dict:
    """One run in a worker process of :func:`compare`; the run stores its own result in the cache."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a worker's warnings cannot reach the user; the result records them
        return run(**job).row()


def _rows_in_workers(jobs: list[dict], workers: int, bar) -> list[dict]:
    """The rows of ``jobs`` run ``workers`` at a time in spawned processes. An error or Ctrl+C (KeyboardInterrupt)
    ends every worker at once; the runs that finished are already in the cache."""
    import multiprocessing
    import os

    threads = max(1, (os.cpu_count() or 1) // workers)
    pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_start_worker, initargs=(threads,))
    try:
        rows = []
        for row in pool.imap(_row_in_worker, jobs):
            rows.append(row)
            bar.update(1)
        pool.close()
        return rows
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def compare(methods: Sequence[str] = METHODS, data: str | None = None, model: str | None = None,
            sparsity: float = 0.9, seeds: Sequence[int] | None = None, profile: str = "cpu",
            epochs: int | None = None, width: float | None = None, cache: bool = True,
            cache_dir: str | Path | None = None, progress: bool = True, aggregate: bool = True, workers: int = 1,
            device: str | None = None, **options):
    """Run every method over every seed; returns the paper's table (one line per method, in the order given,
    cells 'mean ± std' over seeds, see `cropkit.results.paper_table`) with the per-run rows in
    ``table.attrs["runs"]``, or with ``aggregate=False`` the per-run frame itself. ``seeds=None`` = the
    profile's seeds; a seed given twice is an error. Other arguments as in :func:`run`; all are validated
    before the first run starts.

    ``workers > 1`` runs that many runs at once in separate processes, splitting the CPU threads among them
    (small networks use two cores better as two one-thread runs than as one two-thread run). The results are
    the same; the time columns are then measured with the other workers busy beside them. Ctrl+C stops every
    worker at once; each finished run is already cached, so the same call resumes where it stopped.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    if isinstance(methods, str):
        methods = [methods]
    if not methods:
        raise ValueError(f"compare needs at least one method; choose from {list(METHODS)}")
    if seeds is None:
        seeds = profiles.settings("run", profile).seeds
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("compare needs at least one seed")
    for seed in seeds:
        _check_int("seed", seed, 0)
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"seeds {list(seeds)} repeat {repeated}: a repeated seed is the same run again and would "
                         f"count twice in the mean ± std; give distinct seeds")
    repeated = sorted({m for m in methods if list(methods).count(m) > 1})
    if repeated:
        raise ValueError(f"methods {list(methods)} repeat {repeated}; give each method once")
    _check_int("workers", workers, 1)
    train.resolve_device(device)
    for method in methods:  # fail on a typo before hours of training, not after
        _check_method(method)
        settings(method, data=data, model=model, epochs=epochs, width=width, profile=profile, **options)
    _check_sparsity(sparsity)
    reason = unwritable(cache_dir or default_cache_dir(), folder=True) if cache else None
    if reason:  # said once here: a worker's own warning would not reach the user
        warnings.warn(f"results cannot be cached in {cache_dir or default_cache_dir()} ({reason}); every run is "
                      f"returned, but will happen again next time", stacklevel=2)
    jobs = [dict(method=method, data=data, model=model, sparsity=sparsity, epochs=epochs, seed=seed, profile=profile,
                 width=width, cache=cache, cache_dir=cache_dir, progress=progress and workers == 1, device=device,
                 **options)
            for method in methods for seed in seeds]
    start = time.perf_counter()
    with tqdm(total=len(jobs), desc="runs", unit="run", disable=not progress) as bar:
        if workers == 1:
            rows = []
            for job in jobs:
                bar.set_postfix_str(f"{job['method']} seed {job['seed']}")
                rows.append(run(**job).row())
                bar.update(1)
        else:
            rows = _rows_in_workers(jobs, workers, bar)
    if not aggregate:
        return pd.DataFrame(rows)
    table = paper_table(rows, LABELS, FAMILIES)
    table.attrs["setting"] = dict(data=rows[0]["dataset"], model=rows[0]["model"], sparsity=sparsity,
                                  seeds=list(seeds), profile=profile, workers=workers,
                                  wall_seconds=time.perf_counter() - start)
    return table
