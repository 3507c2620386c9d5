"""Grids of runs: the one way cropkit runs many. ``plan`` lists the runs of entries × sparsities × seeds, each
validated and keyed once; ``execute`` runs the ones not cached — here, in worker processes, or as submitit jobs
(`cropkit.experiments.executors`: processes on this machine or a SLURM array) — and returns their results.
Worker processes can run with other CPU kernels than this process's (``kernels``, `KERNELS`): per-seed results move
with the instruction set torch's kernels use, and this is how a table shows by how much.

    jobs = grid.plan(["dense", "snip", "earlycrop-u"], sparsities=(0.5, 0.9), seeds=(0, 1), data="mnist1d")
    results = grid.execute(jobs, executor="processes", workers=2)      # one Result per job, in the plan's order

An *entry* is a method of `cropkit.METHODS` or a named variant (`cropkit.methods.registry.VARIANTS`, e.g.
``ltr-reinit``). Dense ignores the sparsity: it is planned once per seed, at sparsity 0. The same run asked for
twice (two entries with the same configuration) is one job. `cropkit.compare`, `cropkit.sweep`, the claims and the
lessons are calls of these two functions.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import multiprocessing
import os
import signal
import warnings
from pathlib import Path
from typing import Sequence

from tqdm.auto import tqdm

from cropkit.core.masks import check_sparsity
from cropkit.experiments import profiles
from cropkit.experiments.results import Result, cache_path, config_key, default_cache_dir, load_cached
from cropkit.experiments.runs import configuration, run
from cropkit.methods.options import DEFAULT_SPARSITY, check_int, check_seed
from cropkit.methods.registry import REGISTRY, resolve
from cropkit.paths import unwritable

EXECUTORS = ("here", "processes", "local", "slurm")

# The CPU kernels a process's runs can use: "native" (what torch picks for this CPU) or restricted to AVX2, by the
# variables that ATen's vectorised kernels, oneDNN's convolutions and MKL's BLAS read when a process loads them
# (a process cannot change its own, so runs with other kernels run in fresh worker processes).
KERNELS = {"native": {},
           "avx2": dict(ATEN_CPU_CAPABILITY="avx2", ONEDNN_MAX_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2")}


@dataclasses.dataclass(frozen=True)
class Job:
    """One run of a grid: what the tables call it (``entry``), its configuration, its cache entry.

    kwargs  `cropkit.run`'s arguments, as the job runs them
    epochs  the most epochs it trains (its method's `cropkit.methods.method.Method.epochs`)
    key     names the run: the hash of its configuration (for a remote job, of what is known where it is planned)
    path    its cached result, or where this machine stores it (None: a remote job's device decides)
    cached  whether its result is in the cache already"""

    entry: str
    method: str
    sparsity: float
    seed: int
    kwargs: dict
    epochs: int
    key: str
    path: Path | None
    cached: bool


def check_entries(entries) -> list[str]:
    """The entries as a list: at least one, each known, none twice."""
    entries = [entries] if isinstance(entries, str) else list(entries)
    if not entries:
        raise ValueError(f"a grid needs at least one method; choose from {list(REGISTRY)}")
    repeated = sorted({e for e in entries if entries.count(e) > 1})
    if repeated:
        raise ValueError(f"methods {entries} repeat {repeated}; give each method once")
    for entry in entries:
        resolve(entry)
    return entries


def check_seeds(seeds) -> tuple[int, ...]:
    """Seeds as a tuple: at least one, each valid, none twice (a repeated seed would count twice in a mean)."""
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("a grid needs at least one seed")
    for seed in seeds:
        check_seed(seed)
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ValueError(f"seeds {list(seeds)} repeat {repeated}: a repeated seed is the same run again and would "
                         f"count twice in the mean ± std; give distinct seeds")
    return seeds


def check_sparsities(sparsities) -> tuple[float, ...]:
    sparsities = tuple(check_sparsity(s) for s in ((sparsities,) if isinstance(sparsities, (int, float))
                                                   else sparsities))
    if not sparsities or len(set(sparsities)) < len(sparsities):
        raise ValueError(f"sparsity must be one or more distinct targets in [0, 1); got {list(sparsities)}")
    return sparsities


def check_callbacks(callbacks, remedy: str = "run them here (executor='here'), or ") -> None:
    """Callbacks go to other processes pickled: one that does not pickle is refused before any run."""
    import pickle

    try:
        pickle.dumps(list(callbacks))
    except Exception as err:  # PicklingError, AttributeError (a local class), TypeError (an open file) ...
        raise ValueError(f"callbacks cannot be sent to other processes ({type(err).__name__}: {err}); {remedy}"
                         f"give callbacks that pickle (defined at a module's top level, holding no open "
                         f"files)") from None


def check_kernels(kernels: str) -> str:
    if kernels not in KERNELS:
        raise ValueError(f"unknown kernels {kernels!r}; choose one of {list(KERNELS)}")
    return kernels


def capability() -> str:
    """The instruction set this process's torch kernels use ("AVX512", "AVX2", "DEFAULT", …)."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


@contextlib.contextmanager
def kernel_environment(kernels: str):
    """The block runs with ``kernels``' variables in ``os.environ`` (processes started in it load torch with them;
    this process's own kernels were fixed when it loaded torch), restored afterwards."""
    capability()  # this process's kernels are fixed before the variables change
    variables = KERNELS[check_kernels(kernels)]
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _check_capability(kernels: str) -> None:
    """In a worker: refuse to run if the restriction did not take (a CPU without those instructions)."""
    wanted = KERNELS[kernels].get("ATEN_CPU_CAPABILITY")
    if wanted and capability() != wanted.upper():
        raise ValueError(f"kernels {kernels!r} asked for but torch runs {capability()} kernels here: this CPU "
                           f"lacks {wanted.upper()}; choose kernels from those it has (native always works)")


def _checked_call(kernels: str, fn, *args):
    _check_capability(kernels)
    return fn(*args)


def call_with_kernels(kernels: str, fn, *args):
    """``fn(*args)`` here under native kernels, else in a fresh process whose torch uses ``kernels`` (``fn`` and
    ``args`` must pickle)."""
    if check_kernels(kernels) == "native":
        return fn(*args)
    from concurrent.futures import ProcessPoolExecutor

    with kernel_environment(kernels), ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_checked_call, kernels, fn, *args).result()


# ----------------------------------------------------------------------------- plan

def _portable(config: dict, unknown: tuple[str, ...]) -> dict:
    """``config`` without the entries ``unknown`` where a remote job is planned, as stored in JSON."""
    return json.loads(json.dumps({k: v for k, v in config.items() if k not in unknown}, default=str))


def _cached(cache_dir: Path, config: dict, unknown: tuple[str, ...] | None) -> Path | None:
    """The cached result of ``config``, or None. For jobs on other machines (``unknown`` not None) some entries of
    the key are unknown here (the GPU's name, the job's CPU threads): any entry that matches in everything else
    counts."""
    if unknown is None:
        path = cache_path(cache_dir, config)
        return path if load_cached(path) is not None else None
    pattern = f"{config['method']}-{config['data']}-{config['model']}-s{config['seed']}-*.json"
    entries = ((path, load_cached(path)) for path in sorted(cache_dir.glob(pattern)))
    mine = _portable(config, unknown)
    return next((path for path, r in entries if r is not None and _portable(r.config, unknown) == mine), None)


def plan(entries: Sequence[str], sparsities=(DEFAULT_SPARSITY,), seeds: Sequence[int] | None = None, *,
         profile: str = "cpu", cache: bool = True, cache_dir: str | Path | None = None, remote: str | None = None,
         **options) -> list[Job]:
    """The jobs of entries × sparsities × seeds (``seeds=None``: the profile's), every name and value checked before
    anything runs, each run's configuration and cache key computed once, its cached result looked up.

    options  `cropkit.run`'s arguments and run options: data, model, epochs, width, device, threads, callbacks,
             pin_memory, progress, batch_size, … (one dict for every job; a variant adds its own options)
    remote   "cpu" or "cuda" when the jobs run on other machines (SLURM): the device's name and, unless given, the
             jobs' threads are unknown here, so a cached result that matches in everything else counts"""
    entries = check_entries(entries)
    sparsities = check_sparsities(sparsities)
    seeds = check_seeds(profiles.settings("run", profile).seeds if seeds is None else seeds)
    if options.get("threads") is not None:
        check_int("threads", options["threads"], 1)
    cache_dir = Path(cache_dir or default_cache_dir()).expanduser().absolute()  # jobs may start elsewhere
    unknown = None if not remote else \
        ("device_name",) + (("threads",) if remote != "cpu" or options.get("threads") is None else ())
    keyed = {k: v for k, v in options.items() if k not in ("callbacks", "pin_memory", "progress", "root")}
    if remote:
        keyed.pop("device", None)
    jobs, seen = [], set()
    for entry in entries:
        method, extra = resolve(entry)
        for sparsity in [0.0] if REGISTRY[method].family == "Dense" else sparsities:
            for seed in seeds:
                cfg, config = configuration(method, sparsity=sparsity, seed=seed, profile=profile, **extra, **keyed)
                if remote:
                    config = {**config, "device": remote}
                found = _cached(cache_dir, config, unknown) if cache else None
                key = config_key(_portable(config, unknown) if remote else config)
                if key in seen:
                    continue
                seen.add(key)
                path = found or (None if remote else cache_path(cache_dir, config))
                kwargs = dict(method=method, sparsity=sparsity, seed=seed, profile=profile, cache=cache,
                              cache_dir=str(cache_dir), **extra, **options)
                jobs.append(Job(entry, method, sparsity, seed, kwargs, REGISTRY[method].epochs(cfg), key, path,
                                found is not None))
    return jobs


# ----------------------------------------------------------------------------- execute

def _quiet_worker() -> None:
    """A worker process: Ctrl+C is the parent's to handle."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run_quietly(kwargs: dict, kernels: str = "native") -> Result:
    """One run in another process; its warnings are recorded in its result (they could not reach the user)."""
    _check_capability(kernels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run(**kwargs)


def _in_processes(jobs: list[Job], workers: int, bar, kernels: str = "native") -> list[Result]:
    """The results of ``jobs``, ``workers`` at a time in spawned processes (their torch with ``kernels``). An error
    or Ctrl+C ends every worker at once; the runs that finished are already in the cache."""
    with kernel_environment(kernels):
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_quiet_worker)
    try:
        results = []
        for result in pool.imap(functools.partial(_run_quietly, kernels=kernels),
                                [{**job.kwargs, "progress": False} for job in jobs]):
            results.append(result)
            bar.update(1)
        pool.close()
        return results
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def execute(jobs: Sequence[Job], executor: str = "here", workers: int = 1, progress: bool = True,
            submitit: dict | None = None, kernels: str = "native") -> list[Result | Exception]:
    """The result of every job, in order: cached ones replayed, the others run.

    executor  "here" (one after the other in this process), "processes" (``workers`` at a time in worker
              processes: give the jobs ``threads`` to share the CPUs), or "local"/"slurm": submitit jobs
              (`cropkit.experiments.executors.submit`, whose arguments ``submitit`` holds); a submitit job that
              failed gives its exception in its place, and a SLURM sweep that does not wait gives []
    kernels   the CPU kernels the runs use (`KERNELS`): other than "native" only with executor "processes" (a
              process's kernels are fixed when it loads torch)
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {list(EXECUTORS)}")
    check_int("workers", workers, 1)
    if check_kernels(kernels) != "native" and executor != "processes":
        raise ValueError(f"kernels {kernels!r} need fresh worker processes: executor='processes' (got {executor!r})")
    if executor != "here":
        check_callbacks([c for job in jobs for c in job.kwargs.get("callbacks", ())])
    cache_dir = {job.kwargs["cache_dir"] for job in jobs if job.kwargs.get("cache")}
    for folder in cache_dir:  # said once here: another process's own warning would not reach the user
        reason = unwritable(folder, folder=True)
        if reason:
            warnings.warn(f"results cannot be cached in {folder} ({reason}); every run is returned, but will "
                          f"happen again next time", stacklevel=2)
    todo = [job for job in jobs if not job.cached]
    if executor in ("local", "slurm"):
        from cropkit.experiments import executors  # deferred: submitit, only for a sweep

        ran = executors.submit(kind=executor, calls=[job.kwargs for job in todo], progress=progress,
                               **(submitit or {})) if todo else []
        if todo and not ran:  # a SLURM array submitted without waiting
            return []
        done = {job.key: result for job, result in zip(todo, ran)}
        return [load_cached(job.path) if job.cached else done[job.key] for job in jobs]
    with tqdm(total=len(jobs), desc="runs", unit="run", disable=not progress) as bar:
        bar.update(len(jobs) - len(todo))
        ran = iter(_in_processes(todo, workers, bar, kernels) if executor == "processes" and todo else
                   _here(todo, bar, progress))
        return [load_cached(job.path) if job.cached else next(ran) for job in jobs]


def _here(jobs: list[Job], bar, progress: bool) -> list[Result]:
    results = []
    for job in jobs:
        bar.set_postfix_str(f"{job.entry} p={job.sparsity:g} seed {job.seed}")
        results.append(run(**{**job.kwargs, "progress": progress and job.kwargs.get("progress", True)}))
        bar.update(1)
    return results
