"""A sweep's jobs through submitit: the executor (one SLURM array job, or processes on this machine), submitting,
waiting, and cancelling on Ctrl+C. `cropkit.experiments.sweeps` plans the jobs and writes the tables.

A job is a :class:`Run`: ``cropkit.run(**kwargs)`` returning the result's row. Pre-empted or timed out on SLURM,
submitit resubmits the same call and `cropkit.run` resumes from its own checkpoint. Cancelled locally (Ctrl+C),
submitit's job controllers print tracebacks of their own: their standard error goes into a log file instead.
"""
from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Sequence

import submitit

from cropkit.core.hardware import allocated_cpus, stderr_into
from cropkit.experiments.results import Result
from cropkit.experiments.runs import run
from cropkit.methods.options import check_int

EXECUTORS = ("local", "slurm")
SLURM = dict(partition=None, gpus_per_job=1, time_min=24 * 60, array_parallelism=32)  # what `slurm=` may change


class Run(submitit.helpers.Checkpointable):
    """A sweep's job: ``cropkit.run(**kwargs)``, returning its `cropkit.Result` (``kwargs["threads"]``: its torch
    threads; on SLURM, unless given, the job's allocation, `cropkit.core.hardware.allocated_cpus`). Pre-empted or
    timed out, submitit calls :meth:`checkpoint`, which resubmits the same call: the run resumes from its own
    checkpoint."""

    def __call__(self, **kwargs) -> Result:
        if kwargs.get("threads") is None and allocated_cpus():  # a SLURM job: torch on the CPUs it was given
            kwargs["threads"] = allocated_cpus()
        return run(**kwargs)

    def checkpoint(self, **kwargs) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(self, **kwargs)


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
    check_resources(gpus_per_job, time_min, array_parallelism)
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


def check_resources(gpus_per_job, time_min, array_parallelism, **_) -> None:
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
    results (or the exception of a job that failed). Ctrl+C cancels the local jobs, then raises KeyboardInterrupt."""
    from tqdm.auto import tqdm

    pending, submitted = [(Run(), kwargs) for kwargs in calls], []
    if kind == "slurm":
        with executor.batch():
            submitted, pending = [executor.submit(fn, **kwargs) for fn, kwargs in pending], []
        print(f"submitted SLURM array job {submitted[0].job_id.split('_')[0]} ({len(submitted)} jobs)")
        watch(submitted)
        if not wait:
            return []
    pauses = _pauses(poll_s)
    try:
        with tqdm(total=len(calls), desc="jobs", unit="job", disable=not progress) as bar:
            while pending or not all(j.done() for j in submitted):
                running = sum(not j.done() for j in submitted)
                for fn, kwargs in pending[:max(0, parallel - running)]:
                    with stderr_into(log):
                        submitted.append(executor.submit(fn, **kwargs))
                pending = pending[max(0, parallel - running):]
                bar.update(sum(j.done() for j in submitted) - bar.n)
                time.sleep(next(pauses))
            bar.update(len(calls) - bar.n)
    except KeyboardInterrupt:  # local jobs end with the sweep (SLURM's keep running: scancel them if need be)
        if kind == "local":
            _cancel(submitted)
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
