"""Sweeps: one job per configuration (method × sparsity × seed) through submitit, all jobs sharing one cache, then
the paper's table (Rachwan et al. 2022, Tables 1–4) from the cache.

    table = cropkit.sweep(["dense", "snap", "earlycrop-s"], sparsity=(0.9, 0.95), seeds=(0, 1, 2), profile="paper",
                          executor="slurm", slurm=dict(partition="gpu", gpus_per_job=1, time_min=600,
                                                       array_parallelism=16), folder="outputs/sweep")

``executor="slurm"`` submits one SLURM array job (submitit's ``SlurmExecutor``; the array runs at most
``array_parallelism`` jobs at once); ``executor="local"`` runs the same jobs as processes on this machine
(submitit's ``LocalExecutor``), ``array_parallelism`` at a time. Every job calls `cropkit.run` with the sweep's
cache folder, so:

- a configuration already in the cache is not submitted (the same sweep called again submits nothing and writes
  the table, which is also how to collect a sweep submitted with ``wait=False``);
- a job that is pre-empted or reaches its time limit is resubmitted by submitit (the job, a
  `cropkit.experiments.executors.Run`, is a ``submitit.helpers.Checkpointable``: its ``checkpoint`` resubmits the same
  call),
  and `cropkit.run` resumes from the run's own per-epoch checkpoint.

This module plans the jobs and writes the tables; `cropkit.experiments.executors` submits them, waits, and cancels
local ones
on Ctrl+C.

A SLURM job runs torch on the CPUs it is given (``cpus_per_task``; 1 without a GPU), its OpenMP threads waiting
passively (`cropkit.experiments.executors.JOB_SETUP`): jobs sharing a node do not oversubscribe it. Where the cluster
keeps no
accounting, the jobs' states come from ``squeue`` (`cropkit.experiments.executors.QueueWatcher`) instead of ``sacct``.

``dry_run=True`` submits nothing: it prints the jobs, cached or to run, the epochs each trains at most
(:func:`planned_epochs`) and an estimate of the device-hours, epochs × the measured time of one dense epoch
(:func:`epoch_seconds`; a structured network's epoch is shorter, a masked one's about as long (docs/performance.md);
the detector's and the scoring's small extra costs are not counted).
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Sequence

from cropkit.core.hardware import device_name
from cropkit.experiments.comparison import check_callbacks, check_methods, check_seeds, write_tables
from cropkit.experiments.executors import (
    EXECUTORS,
    SLURM,
    check_resources,
    make_executor,
    sbatch_header,
    slurm_parameters,
    submit,
)
from cropkit.experiments.profiles import settings as profile_settings
from cropkit.experiments.results import cache_path, config_key, default_cache_dir, load_cached
from cropkit.experiments.runs import configuration, cpus, settings
from cropkit.methods.options import check_int, check_sparsity
from cropkit.paths import unwritable
from cropkit.tasks import data as data_lib
from cropkit.tasks import models
from cropkit.training import loop as train

# The most epochs a method trains, from its settings (the table of `cropkit.methods.registry`): early methods stop their
# dense phase when the detector fires, at the latest after max_dense_epochs.
PLANNED_EPOCHS = {
    "earlycrop-u": lambda c: c.max_dense_epochs + c.epochs,
    "earlycrop-s": lambda c: c.max_dense_epochs + c.epochs,
    "earlybird": lambda c: c.max_dense_epochs + c.epochs,
    "ltr": lambda c: (c.ltr_rounds + 1) * c.epochs,
    "gatedecorators": lambda c: c.ticks + c.epochs,
    "efficientconvnets": lambda c: c.dense_epochs + c.epochs,
}


def planned_epochs(method: str, cfg) -> int:
    """The most epochs ``method`` trains with the settings ``cfg`` (`cropkit.experiments.runs.settings`); the others:
    E."""
    return PLANNED_EPOCHS.get(method, lambda c: c.epochs)(cfg)


@dataclasses.dataclass
class Job:
    """One configuration of a sweep: its run's arguments, its cache entry and whether that already exists. ``key``
    names the run: dense ignores the sparsity, so its jobs at several sparsities are one run."""

    method: str
    sparsity: float
    seed: int
    epochs: int
    key: str
    path: Path | None   # the cached result, or where this machine would store it (None: the jobs' GPU decides)
    cached: bool
    kwargs: dict


def _portable(config: dict, unknown: tuple[str, ...]) -> dict:
    """``config`` without the entries ``unknown`` where a SLURM sweep is submitted, as stored in JSON."""
    import json

    return json.loads(json.dumps({k: v for k, v in config.items() if k not in unknown}, default=str))


def _cached(cache_dir: Path, config: dict, unknown: tuple[str, ...] | None) -> Path | None:
    """The cached result of ``config``, or None. For jobs on other machines (SLURM, ``unknown`` not None) some
    entries of the key are unknown here (the GPU's name, the job's CPU threads): any entry that matches in
    everything else counts."""
    if unknown is None:
        path = cache_path(cache_dir, config)
        return path if load_cached(path) is not None else None
    pattern = f"{config['method']}-{config['data']}-{config['model']}-s{config['seed']}-*.json"
    entries = ((path, load_cached(path)) for path in sorted(cache_dir.glob(pattern)))
    mine = _portable(config, unknown)
    return next((path for path, r in entries if r is not None and _portable(r.config, unknown) == mine), None)


def plan(methods: Sequence[str], sparsities: Sequence[float], seeds: Sequence[int], *, profile: str,
         cache_dir: Path, remote_device: str | None = None, **run_kwargs) -> list[Job]:
    """The jobs of a sweep, validated, each with its cache entry looked up. ``remote_device`` ("cuda"/"cpu"): the
    jobs run elsewhere, on that kind of device; None: here, on ``run_kwargs["device"]``. ``run_kwargs["threads"]``
    are the jobs' torch threads, in a CPU run's key (None on SLURM: the job's own, unknown here)."""
    device = None if remote_device else run_kwargs.get("device")
    arguments = {k: v for k, v in run_kwargs.items() if k not in ("device", "callbacks", "pin_memory")}
    unknown = None if not remote_device else \
        ("device_name",) + (("threads",) if remote_device != "cpu" or run_kwargs.get("threads") is None else ())
    jobs = []
    for method in methods:
        for sparsity in sparsities:
            for seed in seeds:
                cfg, config = configuration(method, sparsity=sparsity, seed=seed, profile=profile, device=device,
                                            **arguments)
                if remote_device:
                    config = {**config, "device": remote_device}
                found = _cached(cache_dir, config, unknown)
                path = found or (None if remote_device else cache_path(cache_dir, config))
                key = config_key(_portable(config, unknown) if remote_device else config)
                jobs.append(Job(method, sparsity, seed, planned_epochs(method, cfg), key, path, found is not None,
                                dict(method=method, sparsity=sparsity, seed=seed, profile=profile,
                                     cache_dir=str(cache_dir), progress=False, **run_kwargs)))
    return jobs


def epoch_seconds(profile: str = "cpu", device: str | None = None, **options) -> tuple[float, str]:
    """(seconds, device described) of one epoch of the dense model on the run's data, here: the training and the
    test evaluation that follows it, after the process's one-time warm-up."""
    cfg = settings("dense", profile=profile, **options)
    device = train.resolve_device(device)
    dataset = data_lib.load(cfg.data, batch_size=cfg.batch_size, seed=0, limit=cfg.limit,
                            num_workers=cfg.num_workers, pin_memory=device.type == "cuda")
    train.warm_up(device)
    model = models.build(cfg.model, dataset.input_shape, dataset.num_classes, width=cfg.width, seed=0)
    trainer = train.Trainer(model, dataset, 1, lr=cfg.lr, weight_decay=cfg.weight_decay, schedule=cfg.schedule,
                            device=device, progress=False)
    start = time.perf_counter()
    trainer.fit()
    return time.perf_counter() - start, f"{device.type} ({device_name(device)})"


# ----------------------------------------------------------------------------- the sweep

def _estimate(todo: list[Job], epoch_time: float | None, profile: str, device, arguments: dict) -> str:
    """The device-hours of the jobs to run: their epochs × the time of one dense epoch (measured here or given)."""
    epochs = sum(job.epochs for job in todo)
    if epoch_time is None:
        epoch_time, where = epoch_seconds(profile, device=device, **arguments)
        unit = "GPU-hours" if where.startswith("cuda") else "CPU-hours of this machine"
        source = f"measured here on {where}" + ("" if unit == "GPU-hours" else
                                                 "; for GPU-hours give --epoch-seconds measured on the jobs' GPU")
    else:
        unit, source = "device-hours", "as given"
    return (f"to run: {epochs} epochs at most; one dense epoch {epoch_time:.3g} s ({source}) → "
            f"≈ {epochs * epoch_time / 3600:.3g} {unit}")


def _listing(jobs: list[Job], unique: dict[str, Job]):
    """The jobs as a frame: method, sparsity, seed, epochs (at most) and status."""
    import pandas as pd

    status = lambda j: "cached" if j.cached else "to run" if unique[j.key] is j else "same run as above"  # noqa
    return pd.DataFrame([dict(method=j.method, sparsity=j.sparsity, seed=j.seed, epochs=j.epochs, status=status(j))
                         for j in jobs])


def _resources(executor: str, slurm: dict | None) -> dict:
    """The jobs' resources: `SLURM` updated by ``slurm``; locally only the time limit, GPUs and parallelism count
    (one process at a time unless ``array_parallelism`` says more)."""
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {list(EXECUTORS)}")
    given = dict(slurm or {})
    if executor == "local":
        unknown = sorted(set(given) - set(SLURM) - {"partition"})
        if unknown:
            raise ValueError(f"a local sweep takes only {sorted(set(SLURM) - {'partition'})} of slurm=; got {unknown}")
        given = {"array_parallelism": 1, **given, "partition": "local"}
    check_resources(**{**SLURM, **given})
    return {**SLURM, **given}


def sweep(methods: Sequence[str], data: str | None = None, model: str | None = None, sparsity=(0.9,),
          seeds: Sequence[int] | None = None, profile: str = "cpu", executor: str = "local",
          cache_dir: str | Path | None = None, folder: str | Path | None = None, slurm: dict | None = None,
          dry_run: bool = False, callbacks: Sequence[train.Callback] = (), wait: bool = True,
          epoch_time: float | None = None, device: str | None = None, pin_memory: bool | None = None,
          progress: bool = True, poll_s: float | None = None, threads: int | None = None, **options):
    """Run every method × sparsity × seed as a submitit job, skipping those already cached; then write the paper
    table of every sparsity into ``folder`` (Markdown and CSV) and return them, indexed by (sparsity, method).

    executor   "local" (this machine's processes) or "slurm" (an array job; needs ``slurm["partition"]``)
    slurm      the jobs' resources: partition, gpus_per_job (1), time_min (24 h), array_parallelism (SLURM: 32,
               local: 1); on SLURM also cpus_per_task (1 without a GPU: the job's torch threads) and any sbatch
               parameter (mem, account, qos, …)
    folder     the tables and, in ``folder/jobs``, submitit's job folders (logs, pickles); None = beside the cache
    cache_dir  the results, shared by every job (None = `cropkit.experiments.results.default_cache_dir`)
    dry_run    print the jobs, their epochs and a device-hours estimate (``epoch_time`` seconds per dense epoch,
               None = measure one here), submit nothing; returns the jobs as a frame
    wait       SLURM only: False = submit and return None; the same call once the jobs finished writes the table
    callbacks  go to every job's run (pickled: `cropkit.training.tracking.TensorBoard` works); other arguments as
               `cropkit.compare`
    threads    every job's torch CPU threads (in a CPU run's key); None = local: `cropkit.experiments.runs.cpus` ÷ the
    jobs
               at once, SLURM: the job's own
    """
    methods = [methods] if isinstance(methods, str) else list(methods)
    check_methods(methods)
    sparsities = tuple(check_sparsity(s) for s in ((sparsity,) if isinstance(sparsity, (int, float)) else sparsity))
    if not sparsities or len(set(sparsities)) < len(sparsities):
        raise ValueError(f"sparsity must be one or more distinct targets in [0, 1); got {list(sparsities)}")
    seeds = check_seeds(profile_settings("run", profile).seeds if seeds is None else seeds)
    resources = _resources(executor, slurm)
    if not wait and executor == "local":
        raise ValueError("wait=False (--no-wait) is for SLURM sweeps; a local sweep runs its jobs as this process's "
                         "children and waits for them")
    parameters = slurm_parameters(**resources) if executor == "slurm" else {}
    if epoch_time is not None and (isinstance(epoch_time, bool) or not isinstance(epoch_time, (int, float))
                                   or not epoch_time > 0):
        raise ValueError(f"epoch_time (--epoch-seconds) must be a number of seconds > 0; got {epoch_time!r}")
    check_callbacks(callbacks, workers=2, remedy="every job of a sweep gets a copy: ")
    cache_dir = Path(cache_dir or default_cache_dir()).expanduser().absolute()  # jobs may start elsewhere
    folder = Path(folder).expanduser().absolute() if folder is not None else cache_dir.parent / "sweep"
    for where, path in (("cache_dir", cache_dir), ("folder", folder)):
        reason = None if dry_run else unwritable(path, folder=True)
        if reason:
            raise ValueError(f"cannot write the sweep's {where} {path}: {reason}")
    arguments = dict(data=data, model=model, **options)
    remote = ("cuda" if resources["gpus_per_job"] > 0 else "cpu") if executor == "slurm" else None
    if executor == "local" and device is None and resources["gpus_per_job"] == 0:
        device = "cpu"  # the local jobs see no GPU (submitit empties CUDA_VISIBLE_DEVICES): their keys say cpu
    if threads is not None:
        check_int("threads", threads, 1)
    elif executor == "local":  # share this machine's CPUs among the jobs at once
        threads = max(1, cpus() // resources["array_parallelism"])
    jobs = plan(methods, sparsities, seeds, profile=profile, cache_dir=cache_dir, remote_device=remote,
                device=device, callbacks=list(callbacks), pin_memory=pin_memory, threads=threads, **arguments)
    unique: dict[str, Job] = {}
    for job in jobs:
        if not job.cached:
            unique.setdefault(job.key, job)
    todo = list(unique.values())
    print(f"{len(jobs)} configurations ({len(methods)} methods × {len(sparsities)} sparsities × {len(seeds)} seeds): "
          f"{sum(j.cached for j in jobs)} cached, {len(todo)} to run ({executor}); cache {cache_dir}")
    if dry_run:
        print(_listing(jobs, unique).to_string(index=False))
    if dry_run:
        print(_estimate(todo, epoch_time, profile, None if remote else device, arguments))
        if executor == "slurm" and todo:
            print(sbatch_header(folder / "jobs" / "%j", len(todo), parameters))
        print("dry run: submitted 0 jobs")
        return _listing(jobs, unique)
    if todo:
        pool = make_executor(executor, folder / "jobs", parameters, resources["time_min"])
        rows = submit(pool, executor, [job.kwargs for job in todo], resources["array_parallelism"], wait, progress,
                      poll_s or (0.5 if executor == "local" else 60), folder / "jobs" / "controllers.log")
        if not wait:
            print(f"submitted {len(todo)} jobs; call the same sweep again when they have finished to write the table")
            return None
        failed = [f"{j.method} p={j.sparsity:g} seed {j.seed}: {e}" for j, e in zip(todo, rows)
                  if isinstance(e, Exception)]
        if failed:
            raise RuntimeError(f"{len(failed)} of {len(todo)} jobs failed (the others are cached; the same sweep "
                               f"retries the failed ones): " + "; ".join(failed))
    print(f"submitted {len(todo)} jobs")
    ran = {job.key: row for job, row in zip(todo, rows)} if todo else {}  # the rows the jobs stored
    rows = [ran[job.key] if job.key in ran else load_cached(job.path).row() for job in jobs]
    frame = write_tables(jobs, rows, folder, seeds=list(seeds), profile=profile, executor=executor)
    frame.attrs.update(submitted=len(todo), cached=len(jobs) - len(todo))
    return frame
