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
- a job that is pre-empted or reaches its time limit is resubmitted by submitit (the job is a
  ``submitit.helpers.Checkpointable``: its ``checkpoint`` resubmits the same call), and `cropkit.run` resumes from
  the run's own per-epoch checkpoint.

A SLURM job runs torch on the CPUs it is given (``cpus_per_task``; 1 without a GPU), its OpenMP threads waiting
passively (`JOB_SETUP`): jobs sharing a node do not oversubscribe it. Where the cluster keeps no accounting, the
jobs' states come from ``squeue`` (`QueueWatcher`) instead of ``sacct``.

``dry_run=True`` submits nothing: it prints the jobs, cached or to run, the epochs each trains at most
(:func:`planned_epochs`) and an estimate of the device-hours, epochs × the measured time of one dense epoch
(:func:`epoch_seconds`; a structured network's epoch is shorter, a masked one's about as long (docs/performance.md);
the detector's and the scoring's small extra costs are not counted).
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from pathlib import Path
from typing import Sequence

import submitit

from . import data as data_lib
from . import models, train
from .comparison import _check_callbacks, _check_methods, _check_seeds, write_tables
from .measure import device_name
from .options import check_int, check_sparsity
from .profiles import settings as profile_settings
from .results import cache_path, config_key, default_cache_dir, load_cached, unwritable
from .runs import configuration, run, settings

EXECUTORS = ("local", "slurm")
SLURM = dict(partition=None, gpus_per_job=1, time_min=24 * 60, array_parallelism=32)  # what `slurm=` may change

# The most epochs a method trains, from its settings (the table of `cropkit.methods`): early methods stop their
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
    """The most epochs ``method`` trains with the settings ``cfg`` (`cropkit.runs.settings`); the others: E."""
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


class Run(submitit.helpers.Checkpointable):
    """A sweep's job: ``cropkit.run(**kwargs)``, returning the result's row. Pre-empted or timed out, submitit
    calls :meth:`checkpoint`, which resubmits the same call: the run resumes from its own checkpoint.

    ``threads``: torch's CPU threads (a local job's share of this machine); None: the job's SLURM allocation
    (:func:`allocated_cpus`). The row gains the allocation (:func:`allocation`)."""

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def __call__(self, **kwargs) -> dict:
        import torch

        threads = self.threads or allocated_cpus()
        if threads:
            torch.set_num_threads(threads)
        row = run(**kwargs).row()
        row.setdefault("threads", torch.get_num_threads())
        return {**row, **allocation()}

    def checkpoint(self, **kwargs) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(self, **kwargs)


def allocated_cpus() -> int | None:
    """The CPUs SLURM gave this job (``--cpus-per-task``, else all it holds on this node); None outside SLURM.
    torch would otherwise start a thread per core of the whole node and oversubscribe the jobs sharing it."""
    for name in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return None


def allocation() -> dict:
    """What a SLURM job ran on, for its row: the CPUs allocated (``cpus_per_task``) and the job's id (``12_3``: task
    3 of array 12); nothing outside SLURM."""
    if "SLURM_JOB_ID" not in os.environ:
        return {}
    array = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    return dict(cpus_per_task=allocated_cpus(),
                slurm_job="_".join(array) if all(array) else os.environ["SLURM_JOB_ID"])


def _portable(config: dict) -> dict:
    """``config`` without the device's name (unknown where a SLURM sweep is submitted), as stored in JSON."""
    import json

    return json.loads(json.dumps({k: v for k, v in config.items() if k != "device_name"}, default=str))


def _cached(cache_dir: Path, config: dict, remote: bool) -> Path | None:
    """The cached result of ``config``, or None. For jobs on other machines (SLURM) the GPU's name, part of the
    key, is unknown here: any entry that matches in everything else counts."""
    if not remote:
        path = cache_path(cache_dir, config)
        return path if load_cached(path) is not None else None
    pattern = f"{config['method']}-{config['data']}-{config['model']}-s{config['seed']}-*.json"
    entries = ((path, load_cached(path)) for path in sorted(cache_dir.glob(pattern)))
    return next((path for path, r in entries if r is not None and _portable(r.config) == _portable(config)), None)


def plan(methods: Sequence[str], sparsities: Sequence[float], seeds: Sequence[int], *, profile: str,
         cache_dir: Path, remote_device: str | None = None, **run_kwargs) -> list[Job]:
    """The jobs of a sweep, validated, each with its cache entry looked up. ``remote_device`` ("cuda"/"cpu"): the
    jobs run elsewhere, on that kind of device; None: here, on ``run_kwargs["device"]``."""
    device = None if remote_device else run_kwargs.get("device")
    arguments = {k: v for k, v in run_kwargs.items() if k not in ("device", "callbacks", "pin_memory")}
    jobs = []
    for method in methods:
        for sparsity in sparsities:
            for seed in seeds:
                cfg, config = configuration(method, sparsity=sparsity, seed=seed, profile=profile, device=device,
                                            **arguments)
                if remote_device:
                    config = {**config, "device": remote_device}
                found = _cached(cache_dir, config, remote=remote_device is not None)
                path = found or (None if remote_device else cache_path(cache_dir, config))
                key = config_key(_portable(config) if remote_device else config)
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


# ----------------------------------------------------------------------------- executors

# Shell lines every SLURM job runs before Python starts: OpenMP's threads, one per allocated CPU, sleep instead of
# spinning while they wait (spinning threads of jobs sharing a node starve each other; `./kit` sets the same).
JOB_SETUP = ["export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}",
             "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-${SLURM_CPUS_ON_NODE:-1}}"]


def slurm_parameters(partition: str | None = None, gpus_per_job: int = 1, time_min: int = 24 * 60,
                     array_parallelism: int = 32, cpus_per_task: int | None = None, setup: Sequence[str] = (),
                     **extra) -> dict:
    """submitit ``SlurmExecutor`` parameters: the partition, GPUs per job, time limit (minutes), the array's
    parallelism and the CPUs per job (default: 1 without a GPU, else the cluster's default); the job's shell runs
    `JOB_SETUP`, then ``setup``; ``extra`` goes to sbatch as it is (mem, account, qos, constraint, …). SLURM warns
    a job :func:`warning_seconds` before its time limit."""
    if not partition:
        raise ValueError("a SLURM sweep needs a partition (--partition NAME; `sinfo -s` lists them)")
    _check_resources(gpus_per_job, time_min, array_parallelism)
    if cpus_per_task is None and gpus_per_job == 0:
        cpus_per_task = 1
    cpus = {} if cpus_per_task is None else dict(cpus_per_task=check_int("cpus_per_task", cpus_per_task, 1))
    return dict(partition=partition, gpus_per_node=gpus_per_job, time=time_min, array_parallelism=array_parallelism,
                **cpus, setup=[*JOB_SETUP, *setup], signal_delay_s=warning_seconds(time_min), **extra)


def warning_seconds(time_min: int) -> int:
    """How long before its time limit SLURM warns a job (USR2; submitit then requeues it): submitit's 90 s, less
    for a short limit. slurmctld looks every 30 s and warns up to 30 s early, and a warning that comes before Python
    has started kills the job instead: so none before halfway through the job (25 s into a 1-minute one)."""
    return min(90, max(5, 30 * time_min - 30))


def _check_resources(gpus_per_job, time_min, array_parallelism, **_) -> None:
    check_int("gpus_per_job", gpus_per_job, 0)
    check_int("time_min (the time limit in minutes)", time_min, 1)
    check_int("array_parallelism", array_parallelism, 1)


def sbatch_header(folder: Path, jobs: int, parameters: dict) -> str:
    """The ``#SBATCH`` lines and the setup lines submitit writes for an array of ``jobs`` jobs (what a dry run
    shows)."""
    from submitit.slurm.slurm import _make_sbatch_string

    text = _make_sbatch_string(command="...", folder=folder, map_count=jobs, **parameters)
    setup = list(parameters.get("setup", ()))
    return "\n".join(line for line in text.splitlines() if line.startswith("#SBATCH") or line in setup)


def make_executor(kind: str, folder: Path, parameters: dict, time_min: int):
    """submitit's executor of ``kind``, its logs and pickles in ``folder/<job id>``. Only a SLURM cluster (where
    ``srun`` exists) can build the SLURM one; nothing is submitted here."""
    if kind == "slurm":
        executor = submitit.SlurmExecutor(folder=folder / "%j")
        executor.update_parameters(**parameters)
    else:
        executor = submitit.LocalExecutor(folder=folder / "%j")
        executor.update_parameters(timeout_min=time_min, gpus_per_node=parameters.get("gpus_per_node", 0))
    return executor


def _submit(executor, kind: str, jobs: list[Job], parallel: int, wait: bool, progress: bool, poll_s: float) -> list:
    """Submit ``jobs`` (SLURM: one array; local: ``parallel`` processes at a time) and, with ``wait``, wait for
    them all; returns their rows (or the exception of a job that failed)."""
    from tqdm.auto import tqdm

    threads = None if kind == "slurm" else max(1, (os.cpu_count() or 1) // parallel)  # share this machine's CPUs
    pending, submitted = [(Run(threads), job.kwargs) for job in jobs], []
    if kind == "slurm":
        with executor.batch():
            submitted, pending = [executor.submit(fn, **kwargs) for fn, kwargs in pending], []
        print(f"submitted SLURM array job {submitted[0].job_id.split('_')[0]} ({len(submitted)} jobs)")
        watch(submitted)
        if not wait:
            return []
    pauses = _pauses(poll_s)
    try:
        with tqdm(total=len(jobs), desc="jobs", unit="job", disable=not progress) as bar:
            while pending or not all(j.done() for j in submitted):
                running = sum(not j.done() for j in submitted)
                for fn, kwargs in pending[:max(0, parallel - running)]:
                    submitted.append(executor.submit(fn, **kwargs))
                pending = pending[max(0, parallel - running):]
                bar.update(sum(j.done() for j in submitted) - bar.n)
                time.sleep(next(pauses))
            bar.update(len(jobs) - bar.n)
    except KeyboardInterrupt:  # local jobs end with the sweep (SLURM's keep running: scancel them if need be)
        for job in submitted if kind == "local" else []:
            job.cancel(check=False)
        raise
    return [_result(j) for j in submitted]


def _pauses(poll_s: float):
    """Seconds to wait between two looks at the jobs: a tenth of the time waited so far, at least 1 s (or
    ``poll_s`` when shorter) and at most ``poll_s``: a short sweep ends seconds after its jobs, a long one costs the
    cluster a look a minute."""
    start = time.monotonic()
    while True:
        yield min(poll_s, max(1.0, (time.monotonic() - start) / 10))


def _result(job):
    """The job's row, or a RuntimeError with the last line of its traceback (or the state SLURM ended it in: a
    cancelled job leaves no traceback) and the path of its log."""
    if isinstance(job, submitit.SlurmJob) and not job.paths.result_pickle.exists():
        state = (job.state.split() or ["UNKNOWN"])[0]  # "CANCELLED by 0" → CANCELLED
        if state not in ("COMPLETED", "UNKNOWN"):  # else the result may still be on its way: job.result() waits
            ended = "left the queue" if state == "GONE" else f"ended {state}"
            return RuntimeError(f"SLURM job {job.job_id} {ended} without a result (log: {job.paths.stderr})")
    try:
        return job.result()
    except Exception as err:  # submitit's FailedJobError: the traceback between two lines of dashes, then paths
        parts = str(err).split("-" * 22)
        trace = (parts[1] if len(parts) > 2 else str(err)).strip().splitlines() or [type(err).__name__]
        return RuntimeError(f"{trace[-1]} (log: {job.paths.stderr})")


# ----------------------------------------------------------------------------- job states without accounting

class QueueWatcher(submitit.slurm.slurm.SlurmInfoWatcher):
    """submitit's job states from ``squeue`` instead of ``sacct``, for a cluster whose accounting is off: there
    ``sacct`` fails at every look (submitit logs "Bypassing sacct error" each time) and a job that ends without a
    result (cancelled, killed) would look unfinished forever. squeue lists a finished job for ``MinJobAge``
    (default 300 s) and the sweep looks at least once a minute; a job it no longer lists has ended (``GONE``)."""

    def _make_command(self) -> list[str] | None:
        ids = sorted({job.split("_")[0] for job in self._registered - self._finished})
        return ["squeue", "--noheader", "--array", "--states=all", "--format=%i|%T|%N", "--jobs", ",".join(ids)] \
            if ids else None

    def update(self) -> None:
        command = self._make_command()
        if command is None:
            return
        self._num_calls += 1
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:  # slurmctld busy: the states stay as they were until the next look
            done = None
        if done is not None and (done.returncode == 0 or "Invalid job id" in done.stderr):  # or all left squeue
            self._info_dict.update(queue_states(done.stdout, self._registered - self._finished))
        self._last_status_check = time.time()
        self._finished |= {job for job in self._registered if self.is_done(job, mode="cache")}


def queue_states(squeue: str, jobs) -> dict[str, dict]:
    """submitit's ``{job id: {"State": ...}}`` from ``squeue --format=%i|%T|%N`` lines; ``jobs`` it does not list
    are GONE (ended, and forgotten by SLURM)."""
    states = {job: dict(State="GONE") for job in jobs}
    for line in squeue.splitlines():
        job, state, node = (line.split("|") + ["", ""])[:3]
        if job.strip():
            states[job.strip()] = dict(JobID=job.strip(), State=state.strip(), NodeList=node.strip())
    return states


def accounting_off() -> bool:
    """Whether this SLURM cluster keeps no accounting (``AccountingStorageType=accounting_storage/none``)."""
    try:
        done = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "accounting_storage/none" in done.stdout


def watch(jobs: list) -> None:
    """Where accounting is off, the jobs' states come from squeue (`QueueWatcher`), said once."""
    if jobs and accounting_off():
        print("SLURM accounting is off on this cluster (sacct has nothing): the jobs' states come from squeue")
        watcher = QueueWatcher(delay_s=60)
        for job in jobs:
            job.watcher = watcher


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
    _check_resources(**{**SLURM, **given})
    return {**SLURM, **given}


def sweep(methods: Sequence[str], data: str | None = None, model: str | None = None, sparsity=(0.9,),
          seeds: Sequence[int] | None = None, profile: str = "cpu", executor: str = "local",
          cache_dir: str | Path | None = None, folder: str | Path | None = None, slurm: dict | None = None,
          dry_run: bool = False, callbacks: Sequence[train.Callback] = (), wait: bool = True,
          epoch_time: float | None = None, device: str | None = None, pin_memory: bool | None = None,
          progress: bool = True, poll_s: float | None = None, **options):
    """Run every method × sparsity × seed as a submitit job, skipping those already cached; then write the paper
    table of every sparsity into ``folder`` (Markdown and CSV) and return them, indexed by (sparsity, method).

    executor   "local" (this machine's processes) or "slurm" (an array job; needs ``slurm["partition"]``)
    slurm      the jobs' resources: partition, gpus_per_job (1), time_min (24 h), array_parallelism (SLURM: 32,
               local: 1); on SLURM also cpus_per_task (1 without a GPU: the job's torch threads) and any sbatch
               parameter (mem, account, qos, …)
    folder     the tables and, in ``folder/jobs``, submitit's job folders (logs, pickles); None = beside the cache
    cache_dir  the results, shared by every job (None = `cropkit.results.default_cache_dir`)
    dry_run    print the jobs, their epochs and a device-hours estimate (``epoch_time`` seconds per dense epoch,
               None = measure one here), submit nothing; returns the jobs as a frame
    wait       SLURM only: False = submit and return None; the same call once the jobs finished writes the table
    callbacks  go to every job's run (pickled: `cropkit.tracking.TensorBoard` works); other arguments as
               `cropkit.compare`
    """
    methods = [methods] if isinstance(methods, str) else list(methods)
    _check_methods(methods)
    sparsities = tuple(check_sparsity(s) for s in ((sparsity,) if isinstance(sparsity, (int, float)) else sparsity))
    if not sparsities or len(set(sparsities)) < len(sparsities):
        raise ValueError(f"sparsity must be one or more distinct targets in [0, 1); got {list(sparsities)}")
    seeds = _check_seeds(profile_settings("run", profile).seeds if seeds is None else seeds)
    resources = _resources(executor, slurm)
    if not wait and executor == "local":
        raise ValueError("wait=False (--no-wait) is for SLURM sweeps; a local sweep runs its jobs as this process's "
                         "children and waits for them")
    parameters = slurm_parameters(**resources) if executor == "slurm" else {}
    if epoch_time is not None and (isinstance(epoch_time, bool) or not isinstance(epoch_time, (int, float))
                                   or not epoch_time > 0):
        raise ValueError(f"epoch_time (--epoch-seconds) must be a number of seconds > 0; got {epoch_time!r}")
    _check_callbacks(callbacks, workers=2, remedy="every job of a sweep gets a copy: ")
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
    jobs = plan(methods, sparsities, seeds, profile=profile, cache_dir=cache_dir, remote_device=remote,
                device=device, callbacks=list(callbacks), pin_memory=pin_memory, **arguments)
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
        rows = _submit(pool, executor, todo, resources["array_parallelism"], wait, progress,
                       poll_s or (0.5 if executor == "local" else 60))
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
