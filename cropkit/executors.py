"""A sweep's jobs through submitit: the executor (one SLURM array job, or processes on this machine), submitting,
waiting, and cancelling on Ctrl+C. `cropkit.sweeps` plans the jobs and writes the tables.

A job is a :class:`Run`: ``cropkit.run(**kwargs)`` returning the result's row. Pre-empted or timed out on SLURM,
submitit resubmits the same call and `cropkit.run` resumes from its own checkpoint. Cancelled locally (Ctrl+C),
submitit's job controllers print tracebacks of their own: their standard error goes into a log file instead.
"""
from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import submitit

from .options import check_int
from .runs import run

EXECUTORS = ("local", "slurm")
SLURM = dict(partition=None, gpus_per_job=1, time_min=24 * 60, array_parallelism=32)  # what `slurm=` may change


class Run(submitit.helpers.Checkpointable):
    """A sweep's job: ``cropkit.run(**kwargs)``, returning the result's row (``kwargs["threads"]``: its torch
    threads). Pre-empted or timed out, submitit calls :meth:`checkpoint`, which resubmits the same call: the run
    resumes from its own checkpoint."""

    def __call__(self, **kwargs) -> dict:
        return run(**kwargs).row()

    def checkpoint(self, **kwargs) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(self, **kwargs)


def slurm_parameters(partition: str | None = None, gpus_per_job: int = 1, time_min: int = 24 * 60,
                     array_parallelism: int = 32, **extra) -> dict:
    """submitit ``SlurmExecutor`` parameters: the partition, GPUs per job, time limit (minutes) and the array's
    parallelism; ``extra`` goes to sbatch as it is (cpus_per_task, mem, account, qos, constraint, setup, …)."""
    if not partition:
        raise ValueError("a SLURM sweep needs a partition (--partition NAME; `sinfo -s` lists them)")
    _check_resources(gpus_per_job, time_min, array_parallelism)
    return dict(partition=partition, gpus_per_node=gpus_per_job, time=time_min, array_parallelism=array_parallelism,
                **extra)


def _check_resources(gpus_per_job, time_min, array_parallelism, **_) -> None:
    check_int("gpus_per_job", gpus_per_job, 0)
    check_int("time_min (the time limit in minutes)", time_min, 1)
    check_int("array_parallelism", array_parallelism, 1)


def sbatch_header(folder: Path, jobs: int, parameters: dict) -> str:
    """The ``#SBATCH`` lines submitit writes for an array of ``jobs`` jobs (what a dry run shows)."""
    from submitit.slurm.slurm import _make_sbatch_string

    text = _make_sbatch_string(command="...", folder=folder, map_count=jobs, **parameters)
    return "\n".join(line for line in text.splitlines() if line.startswith("#SBATCH"))


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


@contextlib.contextmanager
def _stderr_into(path: Path):
    """This process's standard error (file descriptor 2) appended to ``path`` meanwhile: the processes started
    here inherit it. submitit's local job controllers print a traceback when they are cancelled (Ctrl+C)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "a") as log:
            os.dup2(log.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _cancel(submitted: list, patience_s: float = 10.0) -> None:
    """Cancel local jobs (submitit interrupts them) and wait until they have ended, ``patience_s`` at most."""
    for job in submitted:
        job.cancel(check=False)
    deadline = time.monotonic() + patience_s
    while not all(job.done() for job in submitted) and time.monotonic() < deadline:
        time.sleep(0.05)


def submit(executor, kind: str, calls: list[dict], parallel: int, wait: bool, progress: bool, poll_s: float,
           log: Path) -> list:
    """Submit one :class:`Run` per ``calls`` entry (its arguments; SLURM: one array; local: ``parallel`` processes
    at a time, their controllers' own output into ``log``) and, with ``wait``, wait for them all; returns their
    rows (or the exception of a job that failed). Ctrl+C cancels the local jobs, then raises KeyboardInterrupt."""
    from tqdm.auto import tqdm

    pending, submitted = [(Run(), kwargs) for kwargs in calls], []
    if kind == "slurm":
        with executor.batch():
            submitted, pending = [executor.submit(fn, **kwargs) for fn, kwargs in pending], []
        print(f"submitted SLURM array job {submitted[0].job_id.split('_')[0]} ({len(submitted)} jobs)")
        if not wait:
            return []
    try:
        with tqdm(total=len(calls), desc="jobs", unit="job", disable=not progress) as bar:
            while pending or not all(j.done() for j in submitted):
                running = sum(not j.done() for j in submitted)
                for fn, kwargs in pending[:max(0, parallel - running)]:
                    with _stderr_into(log):
                        submitted.append(executor.submit(fn, **kwargs))
                pending = pending[max(0, parallel - running):]
                bar.update(sum(j.done() for j in submitted) - bar.n)
                time.sleep(poll_s)
            bar.update(len(calls) - bar.n)
    except KeyboardInterrupt:  # local jobs end with the sweep (SLURM's keep running: scancel them if need be)
        if kind == "local":
            _cancel(submitted)
        raise
    return [_result(j) for j in submitted]


def _result(job):
    """The job's row, or a RuntimeError with the last line of its traceback and the path of its log."""
    try:
        return job.result()
    except Exception as err:  # submitit's FailedJobError: the traceback between two lines of dashes, then paths
        parts = str(err).split("-" * 22)
        trace = (parts[1] if len(parts) > 2 else str(err)).strip().splitlines() or [type(err).__name__]
        return RuntimeError(f"{trace[-1]} (log: {job.paths.stderr})")
