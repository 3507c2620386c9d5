"""Running one method once: its settings (validated against the options' declarations), its cache key, the
training and the cost columns of the paper's result tables (Rachwan et al. 2022, Tables 1–4).

    result = cropkit.run("earlycrop-s", data="digits", model="cnn", sparsity=0.9, epochs=10, seed=0)
"""
from __future__ import annotations

import math
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from . import data as data_lib
from . import measure, models, profiles, tasks, train
from .context import Context
from .methods import METHODS, REGISTRY, Method
from .options import COMMON, PROFILE, check_int, check_sparsity, declared
from .results import Result, cache_path, code_version, default_cache_dir, library_versions, load_cached, store

_ARGUMENTS = ("epochs",)  # declared options that run() takes as arguments of their own


def _check_method(method: str) -> Method:
    if method not in REGISTRY:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    return REGISTRY[method]


def options() -> dict:
    """{name: `cropkit.options.Option`} of every option a run accepts: the common ones and every method's."""
    return declared(m.options for m in REGISTRY.values())


def settings(method: str, *, data=None, model=None, epochs=None, width=None, profile="cpu", **given):
    """The resolved settings of a run: the profile's ``RUN`` values, the declared defaults, then what was given.

    ``model=None`` with a regression or language dataset is that task's model (`cropkit.tasks.default_model`).
    ``None`` means the default, except for an option whose ``None`` has a meaning of its own (``limit=None`` given
    explicitly: the whole training set; omit ``limit`` for the profile's). Unknown option names and invalid
    values raise ``ValueError`` saying what is allowed.
    """
    _check_method(method)
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
    model = model or tasks.default_model(data)  # data="depth" alone means the fcn, not the profile's classifier
    cfg = profiles.settings("run", profile, data=data, model=model, epochs=epochs, width=width,
                            **{k: v for k, v in given.items() if table[k].default is PROFILE})
    for option in table.values():
        if option.default is not PROFILE:
            setattr(cfg, option.name, given.get(option.name, option.default))
    for name in explicit_none:
        setattr(cfg, name, None)
    _check_setting(cfg, table)
    tasks.check_structured(cfg.model, method, REGISTRY[method].family)
    if REGISTRY[method].check is not None:
        REGISTRY[method].check(cfg)
    return cfg


def _check_setting(cfg, table: dict) -> None:
    """Every option against its declaration, then what no single declaration can say."""
    if cfg.data not in data_lib.LOADERS or cfg.data == "synthetic":
        real = [d for d in data_lib.LOADERS if d != "synthetic"]
        raise ValueError(f"unknown data {cfg.data!r}; choose one of {real} "
                         f"(synthetic data is for timing only, never for accuracy)")
    if cfg.model not in models.ZOO and cfg.model not in models.torchvision_names():
        raise ValueError(f"unknown model {cfg.model!r}; choose one of the zoo {list(models.ZOO)} "
                         f"or a torchvision classification model (cropkit.models.torchvision_names())")
    tasks.check_pair(cfg.data, cfg.model)
    for option in table.values():
        option.check(getattr(cfg, option.name))
    if cfg.rewind_epoch > cfg.epochs:
        raise ValueError(f"rewind_epoch ({cfg.rewind_epoch}) must be <= epochs ({cfg.epochs}): θ_k is taken "
                         f"during the first training")
    if not cfg.width > 0:
        raise ValueError(f"width must be > 0; got {cfg.width!r}")


def _config(method: str, cfg, sparsity: float, seed: int, device: torch.device) -> dict:
    """Everything that decides a run's result: the cache key is a hash of this."""
    keys = [o.name for o in COMMON] + list(REGISTRY[method].settings)
    return dict(method=method, data=cfg.data, model=cfg.model, width=cfg.width, seed=seed, sparsity=sparsity,
                profile=cfg.profile, device=device.type, device_name=measure.device_name(device),
                code=code_version(), versions=library_versions(), **{k: getattr(cfg, k) for k in keys})


# ----------------------------------------------------------------------------- run

def _cropkit_warning(w: warnings.WarningMessage) -> bool:
    return Path(w.filename).resolve().parent == Path(__file__).resolve().parent


def _measure(ctx: Context, final: nn.Module) -> dict:
    """The cost columns of the paper's tables for the final model, against the dense model built with the same seed,
    and the task's metric (`cropkit.tasks`): ``test_metric``, ``best_test_metric`` (max or min by the task), and for
    classification also ``test_acc``/``best_test_acc`` (NaN for the other tasks)."""
    reference = ctx.build_model()
    x, y = ctx.batches[0]
    x, y = x.to(ctx.device), y.to(ctx.device)
    task = getattr(ctx.data, "task", tasks.CLASSIFICATION)
    memory = measure.peak_memory(final, x, y, loss_fn=task.loss_fn)
    after = [e for e in ctx.history if ctx.prune_epoch is None or e["epoch"] > ctx.prune_epoch]
    key = f"test_{task.metric}"
    metric = dict(metric=task.metric, test_metric=ctx.history[-1][key],
                  best_test_metric=task.best(e[key] for e in after))
    accuracy = (metric["test_metric"], metric["best_test_metric"]) if key == "test_acc" else (math.nan, math.nan)
    return dict(
        **metric, test_acc=accuracy[0], best_test_acc=accuracy[1],
        weight_sparsity=measure.weight_sparsity(final, reference=reference),
        node_sparsity=measure.node_sparsity(final, reference=reference),
        params=measure.nonzero_param_count(final),
        flops=measure.flops(final, x[:2]),
        nonzero_macs=measure.nonzero_macs(final, x[:1]),
        batch_time_ms=measure.batch_time(final, x, y, loss_fn=task.loss_fn),
        peak_memory_bytes=memory["bytes"], peak_memory_method=memory["method"],
        disk_bytes=measure.disk_size(final), bits_per_nonzero=measure.sparse_bits(final)["bits_per_nonzero"],
    )


def run(method: str, data: str | None = None, model: str | None = None, sparsity: float = 0.9,
        epochs: int | None = None, seed: int = 0, profile: str = "cpu", width: float | None = None,
        cache: bool = True, cache_dir: str | Path | None = None, progress: bool = True,
        device: str | None = None, root: str | Path | None = None, **options) -> Result:
    """Run one method once and measure it. ``None`` = the profile's value (`cropkit.profiles.RUN`),
    except ``limit=None`` given explicitly, which means the whole training set (omit ``limit`` for the profile's).

    sparsity   target weight sparsity in [0, 1); ignored (recorded as 0) for ``dense``
    epochs     epochs of the sparse phase (dense phases come on top, see the module docstring)
    cache      replay a stored result of the identical configuration, else run and store it; False: neither.
               A cache that cannot be written costs nothing but a warning: the result is still returned.
    device     a torch device this machine has ("cpu", "cuda", "cuda:1", ...); None = CUDA if present, else CPU
    options    any declared option (`cropkit.runs.options()`: batch_size, lr, score_batches, limit, …, and the
               methods' own: max_dense_epochs, threshold, rule, ltr_rounds, ticks, …); see ``cropkit run --help``
    """
    spec = _check_method(method)
    sparsity = 0.0 if method == "dense" else check_sparsity(sparsity)
    check_int("seed", seed, 0)
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
