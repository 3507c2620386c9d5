"""Running one method once: its settings (validated against the options' declarations), its cache key, the
training and the cost columns of the paper's result tables (Rachwan et al. 2022, Tables 1–4).

    result = cropkit.run("earlycrop-s", data="digits", model="cnn", sparsity=0.9, epochs=10, seed=0)
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from cropkit.core import dependencies, hardware, measure, storage
from cropkit.core.masks import check_sparsity
from cropkit.core.plumbing import is_cropkit_warning, torch_threads
from cropkit.experiments import profiles
from cropkit.experiments.results import (
    Result,
    cache_path,
    code_version,
    default_cache_dir,
    library_versions,
    load_cached,
    store,
)
from cropkit.methods.context import Context
from cropkit.methods.method import Method
from cropkit.methods.options import COMMON, DEFAULT_SPARSITY, PROFILE, check_int, check_seed, check_width, declared
from cropkit.methods.registry import METHODS, REGISTRY
from cropkit.tasks import data as data_lib
from cropkit.tasks import models
from cropkit.tasks import task as tasks
from cropkit.training import checkpoint
from cropkit.training import loop as train

_ARGUMENTS = ("epochs",)  # declared options that run() takes as arguments of their own


def check_method(method: str) -> Method:
    if method not in REGISTRY:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    return REGISTRY[method]


def options() -> dict:
    """{name: `cropkit.methods.options.Option`} of every option a run accepts: the common ones and every method's."""
    return declared(m.options for m in REGISTRY.values())


def settings(method: str, *, data=None, model=None, epochs=None, width=None, profile="cpu", **given):
    """The resolved settings of a run: the profile's ``RUN`` values, the declared defaults, then what was given.

    ``model=None`` with a regression or language dataset is that task's model (`cropkit.tasks.models.default_model`).
    ``None`` means the default, except for an option whose ``None`` has a meaning of its own (``limit=None`` given
    explicitly: the whole training set; omit ``limit`` for the profile's). Unknown option names and invalid
    values raise ``ValueError`` saying what is allowed.
    """
    check_method(method)
    if profile not in profiles.PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {list(profiles.PROFILES)}")
    table = options()
    allowed = sorted(set(table) - set(_ARGUMENTS))
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown}; allowed: {allowed}")
    explicit_none = {k for k, v in given.items() if v is None and table[k].none is not None and table[k].default
                     is PROFILE}
    given = {k: v for k, v in given.items() if v is not None}  # None = the default, as everywhere
    model = model or models.default_model(data)  # data="depth" alone means the fcn, not the profile's classifier
    cfg = profiles.settings("run", profile, data=data, model=model, epochs=epochs, width=width,
                            **{k: v for k, v in given.items() if table[k].default is PROFILE})
    for option in table.values():
        if option.default is not PROFILE:
            setattr(cfg, option.name, given.get(option.name, option.default))
    for name in explicit_none:
        setattr(cfg, name, None)
    _check_setting(cfg, table)
    models.check_structured(cfg.model, method, REGISTRY[method].family)
    if REGISTRY[method].family == "Structured" and cfg.model not in models.ZOO and cfg.data in data_lib.IMAGE_SHAPES:
        _check_traceable(cfg.model, *data_lib.IMAGE_SHAPES[cfg.data])
    if REGISTRY[method].check is not None:
        REGISTRY[method].check(cfg)
    _check_budget(method, cfg)
    return cfg


def _check_budget(method: str, cfg) -> None:
    """An equal budget (``total_epochs``) must leave a sparse phase after the longest phase before the last cut."""
    reads = REGISTRY[method].settings
    before = {k: getattr(cfg, k) for k in ("max_dense_epochs", "ticks", "dense_epochs") if k in reads}
    if cfg.total_epochs is not None and before and cfg.total_epochs <= max(before.values()):
        raise ValueError(f"total_epochs ({cfg.total_epochs}) must exceed {method}'s longest phase before its last cut "
                         f"({', '.join(f'{k}={v}' for k, v in before.items())}): the sparse phase is what is left")


def _check_setting(cfg, table: dict) -> None:
    """Every option against its declaration, then what no single declaration can say."""
    if cfg.data not in data_lib.LOADERS or cfg.data == "synthetic":
        real = [d for d in data_lib.LOADERS if d != "synthetic"]
        raise ValueError(f"unknown data {cfg.data!r}; choose one of {real} "
                         f"(synthetic data is for timing only, never for accuracy)")
    if cfg.model not in models.ZOO and cfg.model not in models.torchvision_names():
        raise ValueError(f"unknown model {cfg.model!r}; choose one of the zoo {list(models.ZOO)} "
                         f"or a torchvision classification model (cropkit.models.torchvision_names())")
    models.check_pair(cfg.data, cfg.model)
    for option in table.values():
        option.check(getattr(cfg, option.name))
    if cfg.rewind_epoch > cfg.epochs:
        raise ValueError(f"rewind_epoch ({cfg.rewind_epoch}) must be <= epochs ({cfg.epochs}): θ_k is taken "
                         f"during the first training")
    check_width(cfg.width)
    if data_lib.DATA_TASKS.get(cfg.data) == "control" and cfg.batch_size < 2:
        raise ValueError(f"batch_size={cfg.batch_size} on {cfg.data!r}: a control task's batch is that many whole "
                         f"episodes, and REINFORCE's baseline at step t is the mean return-to-go over the batch's "
                         f"episodes, so with one episode every advantage is 0 (the loss and every pruning score "
                         f"would be exactly 0); give batch_size >= 2 episodes per batch")


@functools.lru_cache(maxsize=None)
def _check_traceable(name: str, input_shape: tuple[int, ...], num_classes: int) -> None:
    """A ``ValueError`` when structured pruning cannot trace torchvision model ``name`` built for these inputs (the
    surgery's own check, `cropkit.core.dependencies.trace`): said when a run is asked for, not after its dense phase.
    The zoo's models are traced by the tests."""
    model = models.build(name, input_shape, num_classes, seed=0)
    try:
        dependencies.trace(model, torch.zeros(2, *input_shape))
    except ValueError:
        raise
    except Exception as err:  # the forward pass itself: this model cannot take these inputs
        raise ValueError(f"model {name!r} cannot take inputs of shape {tuple(input_shape)} ({type(err).__name__}: "
                         f"{err})") from None


def _config(method: str, cfg, sparsity: float, seed: int, device: torch.device, threads: int | None = None) -> dict:
    """Everything that decides a run's result: the cache key is a hash of this. A CPU run's torch threads
    (``threads``; None: torch's now) change the last digits of its result, so they count; a GPU run's do not."""
    keys = [o.name for o in COMMON] + list(REGISTRY[method].settings)
    cpu = {"threads": threads or torch.get_num_threads()} if device.type == "cpu" else {}
    return dict(method=method, data=cfg.data, model=cfg.model, width=cfg.width, seed=seed, sparsity=sparsity,
                profile=cfg.profile, device=device.type, device_name=hardware.device_name(device), **cpu,
                code=code_version(), versions=library_versions(), **{k: getattr(cfg, k) for k in keys})


def cpus() -> int:
    """The CPUs this process may run on: its affinity where the system says (a SLURM job's allocation), else the
    machine's count."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# ----------------------------------------------------------------------------- run

def _measure(ctx: Context, final: nn.Module, structured: bool) -> dict:
    """The cost columns of the paper's tables for the final model, against the dense model built with the same seed,
    and the task's metric (`cropkit.tasks.task`): ``test_metric``, ``best_test_metric`` (max or min by the task), and
    for classification also ``test_acc``/``best_test_acc`` (NaN for the other tasks); for a structured method the
    ``layout``: {node layer: [kept, dense] nodes}; for every run the ``weight_layout``: {prunable layer: [kept,
    dense] weights}."""
    reference = ctx.build_model()
    x, y = ctx.batches_for(final)[0]
    x, y = x.to(ctx.device), y.to(ctx.device)
    task = getattr(ctx.data, "task", tasks.CLASSIFICATION)
    memory = measure.peak_memory(final, x, y, loss_fn=task.loss_fn)
    after = [e for e in ctx.history if ctx.prune_epoch is None or e["epoch"] > ctx.prune_epoch]
    key = f"test_{task.metric}"
    metric = dict(metric=task.metric, test_metric=ctx.history[-1][key],
                  best_test_metric=task.best(e[key] for e in after if key in e))
    accuracy = (metric["test_metric"], metric["best_test_metric"]) if key == "test_acc" else (math.nan, math.nan)
    return dict(
        **metric, test_acc=accuracy[0], best_test_acc=accuracy[1],
        weight_sparsity=measure.weight_sparsity(final, reference=reference),
        node_sparsity=measure.node_sparsity(final, reference=reference),
        layout={name: list(kept) for name, kept in measure.kept_nodes(final, reference).items()} if structured else {},
        weight_layout={name: list(kept) for name, kept in measure.kept_weights(final, reference).items()},
        params=measure.nonzero_param_count(final),
        flops=measure.flops(final, x[:2]),
        nonzero_macs=measure.nonzero_macs(final, x[:1]),
        batch_time_ms=measure.batch_time(final, x, y, loss_fn=task.loss_fn),
        peak_memory_bytes=memory["bytes"], peak_memory_method=memory["method"],
        disk_bytes=storage.disk_size(final), bits_per_nonzero=storage.sparse_bits(final)["bits_per_nonzero"],
    )


def configuration(method: str, data: str | None = None, model: str | None = None, sparsity: float = DEFAULT_SPARSITY,
                  epochs: int | None = None, seed: int = 0, profile: str = "cpu", width: float | None = None,
                  device: str | None = None, threads: int | None = None, **options) -> tuple:
    """``(settings, configuration)`` of a run, validated as :func:`run` validates them: the configuration is
    everything that decides the result, and its hash the cache key (``cropkit.experiments.results.cache_path(dir,
    config)``
    is where :func:`run` stores it; `cropkit.sweep` looks there before submitting a job)."""
    check_method(method)
    sparsity = 0.0 if method == "dense" else check_sparsity(sparsity)
    check_seed(seed)
    if threads is not None:
        check_int("threads", threads, 1)
    cfg = settings(method, data=data, model=model, epochs=epochs, width=width, profile=profile, **options)
    _check_strict(method, options)
    return cfg, _config(method, cfg, sparsity, seed, train.resolve_device(device), threads)


def _check_strict(method: str, given: dict) -> None:
    """A ValueError for a strict option (`cropkit.methods.options.Option`) given a value other than its default for a
    method that does not list it: such a run would silently be the plain method."""
    table = options()
    for name, value in given.items():
        default = table[name].default
        if table[name].strict and name not in REGISTRY[method].settings and value not in (None, default):
            readers = [m for m, spec in REGISTRY.items() if name in spec.settings]
            raise ValueError(f"{method} does not take option {name} (got {name}={value!r}); it is an option of "
                             f"{readers} only: run {method} without it ({name}={default!r})")


_UNKEYED = ("progress", "root", "callbacks", "pin_memory")  # run()'s arguments that cannot change a result


def replay(method: str, cache: bool = True, cache_dir: str | Path | None = None, **kwargs) -> Result | None:
    """The cached result :func:`run` called with the same arguments would replay, or None; nothing runs."""
    if not cache:
        return None
    _, config = configuration(method, **{k: v for k, v in kwargs.items() if k not in _UNKEYED})
    return load_cached(cache_path(cache_dir or default_cache_dir(), config))


@contextlib.contextmanager
def _observed(callbacks, config: dict, ctx: Context):
    """Tell the callbacks that listen (``on_run_begin`` / ``on_run_end``) that the run starts and ends."""
    for callback in callbacks:
        getattr(callback, "on_run_begin", lambda *_: None)(config, ctx)
    try:
        yield
    finally:
        for callback in callbacks:
            getattr(callback, "on_run_end", lambda: None)()


def run(method: str, data: str | None = None, model: str | None = None, sparsity: float = DEFAULT_SPARSITY,
        epochs: int | None = None, seed: int = 0, profile: str = "cpu", width: float | None = None,
        cache: bool = True, cache_dir: str | Path | None = None, progress: bool = True,
        device: str | None = None, root: str | Path | None = None, callbacks: Sequence[train.Callback] = (),
        pin_memory: bool | None = None, threads: int | None = None, **options) -> Result:
    """Run one method once and measure it. ``None`` = the profile's value (`cropkit.experiments.profiles.RUN`),
    except ``limit=None`` given explicitly, which means the whole training set (omit ``limit`` for the profile's).

    sparsity   target weight sparsity in [0, 1); ignored (recorded as 0) for ``dense``
    epochs     epochs of the sparse phase (dense phases come on top, see the module docstring)
    cache      replay a stored result of the identical configuration, else run and store it; False: neither.
               A cache that cannot be written costs nothing but a warning: the result is still returned.
               With ``cache=True`` the run also checkpoints at the end of every epoch, to ``<key>.ckpt.pt`` beside
               the cache entry (`cropkit.training.checkpoint`): running the same configuration again after a crash, a
               kill
               or a pre-emption continues from the last finished epoch (on the CPU with the very result of an
               uninterrupted run), and the checkpoint is deleted once the result is cached; delete it by hand to
               start over. ``train_seconds`` of a resumed run is the sum of its segments (the replay of the
               method up to the checkpoint included), ``emissions_g`` covers the last segment only.
    device     a torch device this machine has ("cpu", "cuda", "cuda:1", ...); None = CUDA if present, else CPU
    callbacks  extra `cropkit.training.loop.Callback`s handed to every Trainer the method builds, after its own (e.g.
               `cropkit.training.tracking.TensorBoard`); one with ``on_run_begin(config, ctx)`` / ``on_run_end()`` also
               hears when the run starts and ends. They observe: not in the cache key, and a cached result
               replays without calling them.
    pin_memory page-locked loader batches, for faster host → GPU copies; None = on when ``device`` is CUDA.
               Not in the cache key (it cannot change a result); ``num_workers`` (an option) is.
    threads    torch's CPU threads during the run (put back after it); None = as they are. In the cache key of a
               CPU run (they change the last digits of its result), not of a GPU run
    options    any declared option (`cropkit.experiments.runs.options()`: batch_size, lr, score_batches, limit,
    num_workers, …,
               and the methods' own: max_dense_epochs, threshold, rule, ltr_rounds, ticks, …); see
               ``cropkit run --help``
    """
    cfg, config = configuration(method, data=data, model=model, sparsity=sparsity, epochs=epochs, seed=seed,
                                profile=profile, width=width, device=device, threads=threads, **options)
    spec, sparsity, device = REGISTRY[method], config["sparsity"], train.resolve_device(device)
    path = cache_path(cache_dir or default_cache_dir(), config)
    if cache:
        cached = load_cached(path)
        if cached is not None:
            return cached
    config_text = json.dumps(config, sort_keys=True, default=str)
    ckpt = checkpoint.CheckpointFile(checkpoint.path_for(path), config_text) if cache else None
    with torch_threads(threads):
        try:
            result = _execute(spec, cfg, sparsity, seed, device, progress, root, config, path, ckpt, callbacks,
                              pin_memory)
        except train.DivergedError:  # it would diverge again from its checkpoint
            if ckpt is not None:
                checkpoint.discard(ckpt.path)
            raise
        except checkpoint.CheckpointError as err:  # never a silent wrong resume: start over
            warnings.warn(f"{err}; it is deleted and the run starts over", stacklevel=2)
            checkpoint.discard(ckpt.path)
            ckpt = checkpoint.CheckpointFile(ckpt.path, config_text)
            result = _execute(spec, cfg, sparsity, seed, device, progress, root, config, path, ckpt, callbacks,
                              pin_memory)
    if cache:
        try:
            store(path, result)
            checkpoint.discard(ckpt.path)
        except OSError as err:
            warnings.warn(f"the result could not be cached at {path} ({err}); it is returned, but the run will "
                          f"happen again next time. Choose a writable cache_dir (or $CROPKIT_CACHE)", stacklevel=2)
    return result


def _execute(spec: Method, cfg, sparsity: float, seed: int, device: torch.device, progress: bool, root,
             config: dict, path: Path, ckpt: checkpoint.CheckpointFile | None, callbacks, pin_memory) -> Result:
    """Train (resuming from ``ckpt`` when it holds a checkpoint) and measure."""
    dataset = data_lib.load(cfg.data, root=root, batch_size=cfg.batch_size, seed=seed, limit=cfg.limit,
                            num_workers=cfg.num_workers,
                            pin_memory=device.type == "cuda" if pin_memory is None else pin_memory)
    ctx = Context(cfg, dataset, sparsity, seed, device, progress, callbacks=callbacks, checkpoint=ckpt)
    train.warm_up(device)  # the process's one-time imports and kernel set-up stay out of train_seconds
    with warnings.catch_warnings(record=True) as caught, _observed(callbacks, config, ctx):
        warnings.simplefilter("always")
        with hardware.Emissions(enabled=cfg.measure_emissions) as emissions:
            start = time.perf_counter()
            if ckpt is not None:
                ckpt.started, ckpt.caught = start, caught
            final = spec.train(ctx)
            if ckpt is not None:
                ckpt.check_used()
            seconds = time.perf_counter() - start if ckpt is None else ckpt.seconds()
        columns = _measure(ctx, final, spec.family == "Structured")
    fresh = caught[ckpt.caught_from:] if ckpt is not None else caught  # a replay's warnings are not the run's
    for w in fresh:  # recorded in the result, and still shown to the user
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    recorded = ckpt.warnings() if ckpt is not None else [str(w.message) for w in caught if is_cropkit_warning(w)]
    return Result(
        method=config["method"], dataset=cfg.data, model=cfg.model, width=cfg.width, seed=seed,
        target_sparsity=sparsity, profile=cfg.profile, epochs=cfg.epochs, epochs_trained=ctx.epochs_trained,
        prune_epoch=ctx.prune_epoch, forced=ctx.forced, forced_reason=ctx.forced_reason, train_seconds=seconds,
        emissions_g=emissions.grams, device=str(device), threads=torch.get_num_threads(), cpus=cpus(),
        **hardware.allocation(), key=path.stem, warnings=list(dict.fromkeys(recorded)), config=config,
        history=ctx.history, **columns)
