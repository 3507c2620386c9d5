"""Sweeps: a grid of runs (`cropkit.experiments.grid`) as submitit jobs, all sharing one cache, then the paper's
table of every sparsity (Rachwan et al. 2022, Tables 1–4) from the cache.

    table = cropkit.sweep(["dense", "snap", "earlycrop-s"], sparsity=(0.9, 0.95), seeds=(0, 1, 2), profile="paper",
                          executor="slurm", slurm=dict(partition="gpu", gpus_per_job=1, time_min=600,
                                                       array_parallelism=16), folder="outputs/sweep")

``executor="slurm"`` submits one SLURM array job (submitit's ``SlurmExecutor``; at most ``array_parallelism`` jobs
at once); ``executor="local"`` runs the same jobs as processes on this machine (submitit's ``LocalExecutor``),
``array_parallelism`` at a time. Every job calls `cropkit.run` with the sweep's cache folder, so:

- a run already in the cache is not submitted (the same sweep called again submits nothing and writes the table,
  which is also how to collect a sweep submitted with ``wait=False``);
- a job that is pre-empted or reaches its time limit is resubmitted by submitit (the job, a
  `cropkit.experiments.executors.Run`, is a ``submitit.helpers.Checkpointable``) and `cropkit.run` resumes from
  the run's own per-epoch checkpoint.

A SLURM job runs torch on the CPUs it is given (``cpus_per_task``; 1 without a GPU), its OpenMP threads waiting
passively (`cropkit.experiments.executors.JOB_SETUP`): jobs sharing a node do not oversubscribe it. Where the
cluster keeps no accounting, the jobs' states come from ``squeue`` instead of ``sacct``.

``dry_run=True`` submits nothing: it prints the runs, cached or to run, the epochs each trains at most (its
method's entry, `cropkit.methods.method.Method.epochs`) and an estimate of the device-hours: epochs × the measured
time of one dense epoch (:func:`epoch_seconds`; a structured network's epoch is shorter, a masked one's about as
long (docs/performance.md); the detector's and the scoring's small extra costs are not counted).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

from cropkit.core.hardware import device_name
from cropkit.experiments import grid
from cropkit.experiments.comparison import write_tables
from cropkit.experiments.executors import (
    EXECUTORS,
    SLURM,
    check_resources,
    make_executor,
    sbatch_header,
    slurm_parameters,
)
from cropkit.experiments.results import default_cache_dir
from cropkit.experiments.runs import cpus, settings
from cropkit.methods.options import DEFAULT_SPARSITY
from cropkit.paths import unwritable
from cropkit.tasks import data as data_lib
from cropkit.tasks import models
from cropkit.training import loop as train


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

def _estimate(todo: list[grid.Job], epoch_time: float | None, profile: str, device, arguments: dict) -> str:
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


def _listing(jobs: list[grid.Job]):
    """The jobs as a frame: method, sparsity, seed, epochs (at most) and status."""
    import pandas as pd

    return pd.DataFrame([dict(method=j.entry, sparsity=j.sparsity, seed=j.seed, epochs=j.epochs,
                              status="cached" if j.cached else "to run") for j in jobs])


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


def sweep(methods: Sequence[str], data: str | None = None, model: str | None = None, sparsity=(DEFAULT_SPARSITY,),
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
    resources = _resources(executor, slurm)
    if not wait and executor == "local":
        raise ValueError("wait=False (--no-wait) is for SLURM sweeps; a local sweep runs its jobs as this process's "
                         "children and waits for them")
    parameters = slurm_parameters(**resources) if executor == "slurm" else {}
    if epoch_time is not None and (isinstance(epoch_time, bool) or not isinstance(epoch_time, (int, float))
                                   or not epoch_time > 0):
        raise ValueError(f"epoch_time (--epoch-seconds) must be a number of seconds > 0; got {epoch_time!r}")
    grid.check_callbacks(callbacks, remedy="every job of a sweep gets a copy: ")
    cache_dir = Path(cache_dir or default_cache_dir()).expanduser().absolute()  # jobs may start elsewhere
    folder = Path(folder).expanduser().absolute() if folder is not None else cache_dir.parent / "sweep"
    for where, path in (("cache_dir", cache_dir), ("folder", folder)):
        reason = None if dry_run else unwritable(path, folder=True)
        if reason:
            raise ValueError(f"cannot write the sweep's {where} {path}: {reason}")
    remote = ("cuda" if resources["gpus_per_job"] > 0 else "cpu") if executor == "slurm" else None
    if executor == "local" and device is None and resources["gpus_per_job"] == 0:
        device = "cpu"  # the local jobs see no GPU (submitit empties CUDA_VISIBLE_DEVICES): their keys say cpu
    if threads is None and executor == "local":  # share this machine's CPUs among the jobs at once
        threads = max(1, cpus() // resources["array_parallelism"])
    jobs = grid.plan(methods, sparsity, seeds, profile=profile, cache_dir=cache_dir, remote=remote, data=data,
                     model=model, device=device, callbacks=list(callbacks), pin_memory=pin_memory, threads=threads,
                     progress=False, **options)
    todo = [job for job in jobs if not job.cached]
    print(f"{len(jobs)} runs ({len({j.entry for j in jobs})} methods, dense once per seed): "
          f"{len(jobs) - len(todo)} cached, {len(todo)} to run ({executor}); cache {cache_dir}")
    if dry_run:
        print(_listing(jobs).to_string(index=False))
        print(_estimate(todo, epoch_time, profile, None if remote else device, dict(data=data, model=model,
                                                                                   **options)))
        if executor == "slurm" and todo:
            print(sbatch_header(folder / "jobs" / "%j", len(todo), parameters))
        print("dry run: submitted 0 jobs")
        return _listing(jobs)
    results = grid.execute(jobs, executor, progress=progress, submitit=dict(
        executor=make_executor(executor, folder / "jobs", parameters, resources["time_min"]) if todo else None,
        parallel=resources["array_parallelism"], wait=wait, poll_s=poll_s or (0.5 if executor == "local" else 60),
        log=folder / "jobs" / "controllers.log"))
    if not results:
        print(f"submitted {len(todo)} jobs; call the same sweep again when they have finished to write the table")
        return None
    failed = [f"{j.entry} p={j.sparsity:g} seed {j.seed}: {r}" for j, r in zip(jobs, results)
              if isinstance(r, Exception)]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(todo)} jobs failed (the others are cached; the same sweep retries "
                           f"the failed ones): " + "; ".join(failed))
    print(f"submitted {len(todo)} jobs")
    frame = write_tables(jobs, [r.row() for r in results], folder, grid.check_sparsities(sparsity),
                         seeds=list(dict.fromkeys(j.seed for j in jobs)),
                         profile=profile, executor=executor)
    frame.attrs.update(submitted=len(todo), cached=len(jobs) - len(todo))
    return frame
