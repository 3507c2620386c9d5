"""Sweeps on a real SLURM cluster: one node started for the session (`slurm_cluster`), driven through the command
line as a researcher would (``cropkit sweep --executor slurm``), on the smoke profile.

Each test checks what only a cluster can show: the array's table and its cache, a requeued job resuming from its
checkpoint to the uninterrupted result, a job past its time limit resubmitted until it finishes, ``scancel`` ending
the sweep with one error line, and a job's batch time beside a local run's (jobs sharing the node used to start a
torch thread per core each: 117× slower). Skipped with the reason where the cluster cannot start (not root, no
apt-get, the daemons fail); with ``CI`` set that is a failure instead, since CI runs as root and must run them.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
import slurm_cluster

from cropkit.core import hardware
from cropkit.experiments import executors

CROPKIT = str(Path(sys.executable).with_name("cropkit"))  # the environment's console script, as a user types it
ON_SLURM = ["--executor", "slurm", "--partition", slurm_cluster.PARTITION, "--gpus-per-job", "0", "--profile", "smoke",
            "--quiet"]


def _unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"the SLURM tests must run on CI: {reason}", pytrace=False)
    pytest.skip(f"no SLURM cluster here: {reason}")


@pytest.fixture(scope="session")
def slurm(tmp_path_factory):
    """A single-node cluster for the session; the tests' subprocesses find it through ``SLURM_CONF``."""
    reason = slurm_cluster.unavailable()
    if reason:
        _unavailable(reason)
    try:
        slurm_cluster.install()
        with slurm_cluster.running(tmp_path_factory.mktemp("slurm")) as cluster, pytest.MonkeyPatch.context() as env:
            env.setenv("SLURM_CONF", str(cluster.conf))  # for sbatch, squeue and submitit in this session
            yield cluster
    except slurm_cluster.ClusterError as err:  # raised by the install or the start only
        _unavailable(str(err))


def _env(cluster, **extra) -> dict:
    """The cluster's environment, without the OpenMP settings `./kit` exports: the jobs must set their own."""
    env = cluster.env(**extra)
    for name in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS"):
        env.pop(name, None)
    return env


def _cropkit(cluster, *argv: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([CROPKIT, *argv], env=_env(cluster), capture_output=True, text=True, timeout=timeout)


def _start(cluster, *argv: str) -> subprocess.Popen:
    return subprocess.Popen([CROPKIT, *argv], env=_env(cluster), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _finish(process: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    try:
        out, err = process.communicate(timeout=timeout)
    finally:
        process.kill()
    return process.returncode, out, err


def _sweep_args(tmp: Path, *extra: str) -> list[str]:
    return ["sweep", *extra, "--cache-dir", str(tmp / "cache"), "--folder", str(tmp / "sweep"), *ON_SLURM]


def _local_run(tmp: Path, *extra: str, name: str = "local") -> list[str]:
    """The same configuration run here, in this process's environment (what the jobs are compared with); its
    result goes to ``tmp/<name>.json``."""
    return [CROPKIT, "run", "dense", "--profile", "smoke", "--quiet", "--cache-dir", str(tmp / name),
            "--json", str(tmp / f"{name}.json"), *extra]


def _cached(cache: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(cache.glob("*.json"))]


def _without_seconds(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in history]


def _checkpoint_epoch(cache: Path) -> tuple[int, int] | None:
    """(epoch, mtime in ns) of the run's checkpoint in ``cache``, or None while there is none (it is replaced
    atomically, and deleted once the result is cached)."""
    import torch

    with contextlib.suppress(StopIteration, OSError, RuntimeError, EOFError):
        path = next(cache.glob("*.ckpt.pt"))
        stamp = path.stat().st_mtime_ns
        return torch.load(path, weights_only=True)["epoch"], stamp
    return None


def _wait_for(what: str, condition, timeout: float, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"not after {timeout:.0f} s: {what}")


def _state(cluster, job: str) -> str:
    out = subprocess.run(["squeue", "--noheader", "--format=%T", "--jobs", job], env=cluster.env(),
                         capture_output=True, text=True).stdout.split()
    return out[0] if out else "GONE"


def _job_ids(tmp: Path) -> list[str]:
    """The SLURM ids of the sweep's jobs, from their folders (submitit names each after its job)."""
    jobs = tmp / "sweep" / "jobs"
    return sorted(p.name for p in jobs.iterdir() if p.is_dir() and p.name[0].isdigit()) if jobs.exists() else []


def _hold_at_checkpoint(cluster, tmp: Path, epoch: int) -> tuple[str, int]:
    """Stop (SIGSTOP) the sweep's one job once its run has checkpointed ``epoch`` epochs; returns the job's id and
    the PID of its Python process. SLURM still sees it RUNNING, its clock ticking; SIGCONT lets it go on."""
    job = _wait_for("the job's folder", lambda: _job_ids(tmp), 120)[0]
    task = _wait_for("the job's Python process", lambda: cluster.job_task(job), 120)
    _wait_for(f"the job's checkpoint at epoch {epoch}",
              lambda: (_checkpoint_epoch(tmp / "cache") or (0,))[0] >= epoch, 120, 0.02)
    os.kill(task, signal.SIGSTOP)
    return job, task


# ----------------------------------------------------------------------------- the tests

@pytest.fixture(scope="module")
def array(slurm, tmp_path_factory):
    """A 4-job array (dense and SNIP × seeds 0, 1; two at a time on the node's two CPUs) and, side by side, the
    same dense configuration run here, twice in a row: (folder, the sweep's output)."""
    tmp = tmp_path_factory.mktemp("array")
    sweep = _start(slurm, *_sweep_args(tmp, "dense", "snip", "--seeds", "0", "1"))
    try:
        for n in (1, 2):
            local = subprocess.run(_local_run(tmp, "--threads", "1", name=f"local{n}"), capture_output=True,
                                   text=True, timeout=240)
            assert local.returncode == 0, local.stderr[-3000:]
        status, out, err = _finish(sweep)
    finally:
        sweep.kill()
    assert status == 0, out + err[-3000:]
    return tmp, out + err


@pytest.mark.slow
def test_an_array_of_2_methods_x_2_seeds_builds_the_table_and_a_second_call_submits_nothing(slurm, array):
    tmp, out = array
    assert "0 cached, 4 to run (slurm)" in out and "(4 jobs)" in out and "submitted 4 jobs" in out
    assert out.count("SLURM accounting is off") == 1 and "Bypassing sacct" not in out  # said once, not per poll
    table = pd.read_csv(tmp / "sweep" / "table-p90.csv", index_col="method")
    assert list(table.index) == ["dense", "snip"] and list(table["Seeds"]) == [2, 2]
    runs = pd.read_csv(tmp / "sweep" / "table-p90_runs.csv")
    assert sorted(zip(runs["method"], runs["seed"])) == [("dense", 0), ("dense", 1), ("snip", 0), ("snip", 1)]
    assert list(runs["cpus_per_task"]) == [1] * 4 and list(runs["threads"]) == [1] * 4  # one CPU, one thread
    assert len(set(runs["slurm_job"])) == 4 and len(_cached(tmp / "cache")) == 4
    jobs = sorted(os.listdir(tmp / "sweep" / "jobs"))

    again = _cropkit(slurm, *_sweep_args(tmp, "dense", "snip", "--seeds", "0", "1"))
    assert again.returncode == 0, again.stderr[-3000:]
    assert "4 cached, 0 to run" in again.stdout and "submitted 0 jobs" in again.stdout
    assert sorted(os.listdir(tmp / "sweep" / "jobs")) == jobs


@pytest.mark.slow
def test_a_job_on_a_shared_node_measures_the_batch_time_of_a_local_run(array):
    """The array's dense jobs shared the node with each other and with the same configuration run here meanwhile:
    each job used to start a torch thread per core of the node, spinning while it waited: 117× slower than a local
    run. A job more than 2× the slower local run is warned about (the two are timed at different moments, and on a
    loaded machine a 4× gap was seen with nothing wrong); more than 10× fails, an order of magnitude short of the
    defect. A job may be faster than the local runs, which shared the machine with the array: down to a quarter of
    the faster one (below that it measured something else)."""
    tmp, _ = array
    here = [json.loads((tmp / f"local{n}.json").read_text())["batch_time_ms"] for n in (1, 2)]
    runs = pd.read_csv(tmp / "sweep" / "table-p90_runs.csv")
    dense = runs[runs["method"] == "dense"]["batch_time_ms"]
    print(f"batch time: SLURM jobs {list(dense)} ms, local runs {here} ms")  # shown by pytest -s
    assert len(dense) == 2 and dense.between(min(here) / 4, max(here) * 10).all(), \
        f"jobs {list(dense)} ms, here {here} ms"
    if not dense.between(min(here) / 4, max(here) * 2).all():
        warnings.warn(f"a SLURM job's batch time is more than 2× a local run's: jobs {list(dense)} ms, here {here} ms",
                      stacklevel=1)


@pytest.fixture(scope="module")
def overtime(slurm, tmp_path_factory):
    """A sweep of one job with a 1-minute time limit, held at its first checkpoint (SIGSTOP) as a run that needs
    more time than it has: (folder, the sweep, the job's id, its Python process). SLURM warns it at slurmctld's first
    time-limit check 25 s or more into the job (it checks every 30 s), so it is started early: the held job takes
    no CPU while the tests that need no timing run (`test_a_job_past_its_time_limit_is_resubmitted_and_finishes`)."""
    tmp = tmp_path_factory.mktemp("overtime")
    sweep = _start(slurm, *_sweep_args(tmp, "dense", "--seeds", "2", "--epochs", "60", "--time-limit", "1"))
    try:
        yield (tmp, sweep, *_hold_at_checkpoint(slurm, tmp, epoch=1))
    finally:
        sweep.kill()


@pytest.mark.slow
@pytest.mark.usefixtures("overtime")  # started here to wait for SLURM's warning meanwhile
def test_a_job_requeued_mid_run_resumes_from_its_checkpoint_to_the_uninterrupted_result(slurm, tmp_path):
    """``scontrol requeue`` once the run has checkpointed a few epochs (the job held there with SIGSTOP, so that the
    epoch is known): SLURM kills the job and starts it again; its first checkpoint is past the first start's last,
    and the result equals the same configuration run here without interruption."""
    epochs = ["--epochs", "60"]
    sweep = _start(slurm, *_sweep_args(tmp_path, "dense", "--seeds", "0", *epochs))
    local = subprocess.Popen(_local_run(tmp_path, "--threads", "1", *epochs), stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)  # side by side: the same wall-clock window
    cache = tmp_path / "cache"
    try:
        job, task = _hold_at_checkpoint(slurm, tmp_path, epoch=3)
        subprocess.run(["scontrol", "requeue", job], env=slurm.env(), check=True)
        # SLURM ends the job with SIGCONT and SIGTERM (which submitit ignores), SIGKILL seconds later: time enough
        # for a short run to finish. Killed at once, the job's last checkpoint is the one it was held at.
        os.kill(task, signal.SIGKILL)
        _wait_for("the job back in the queue", lambda: _state(slurm, job) == "PENDING", 60, 0.05)
        before = _checkpoint_epoch(cache)
        resumed = _wait_for("the second start's first checkpoint",
                            lambda: (now := _checkpoint_epoch(cache)) and now[1] != before[1] and now, 120, 0.05)
        assert resumed[0] > before[0], f"started over: epoch {resumed[0]} after {before[0]}"
        print(f"killed with epoch {before[0]} checkpointed; the second start's first checkpoint: epoch {resumed[0]}")
        status, out, err = _finish(sweep)
        assert local.wait(timeout=240) == 0, local.stderr.read()[-3000:]
    finally:
        sweep.kill()
        local.kill()
    assert status == 0, out + err[-3000:]
    [job_result], reference = _cached(cache), json.loads((tmp_path / "local.json").read_text())
    assert _without_seconds(job_result["history"]) == _without_seconds(reference["history"])
    for column in ("test_acc", "best_test_acc", "weight_sparsity", "params", "epochs_trained"):
        assert job_result[column] == reference[column], column


@pytest.mark.slow
@pytest.mark.usefixtures("overtime")
def test_scancel_ends_the_sweep_with_one_error_line_and_keeps_the_finished_runs(slurm, tmp_path):
    sweep = _start(slurm, *_sweep_args(tmp_path, "dense", "--seeds", "0", "1", "2", "3", "--epochs", "20"))
    try:
        _wait_for("a finished job", lambda: _cached(tmp_path / "cache"), 120)
        array = _job_ids(tmp_path)[0].split("_")[0]
        subprocess.run(["scancel", array], env=slurm.env(), check=True)
        status, out, err = _finish(sweep, timeout=60)
    finally:
        sweep.kill()
    finished = _cached(tmp_path / "cache")
    cancelled = 4 - len(finished)
    assert status == 1 and "Traceback" not in err and cancelled > 0, out + err
    message = err.strip().splitlines()[-1]
    assert message.startswith(f"cropkit: error: {cancelled} of 4 jobs failed")
    assert message.count(f"SLURM job {array}_") == message.count("ended CANCELLED without a result") == cancelled
    seeds = {r["seed"] for r in finished}
    assert all(f"seed {s}: SLURM job" not in message for s in seeds)  # the finished ones are not named
    again = _cropkit(slurm, *_sweep_args(tmp_path, "dense", "--seeds", "0", "1", "2", "3", "--dry-run",
                                         "--epochs", "20", "--epoch-seconds", "1"))
    assert f"{len(finished)} cached, {cancelled} to run" in again.stdout  # the same sweep runs only the rest


@pytest.mark.slow
def test_a_job_past_its_time_limit_is_resubmitted_and_finishes(overtime):
    """SLURM wakes the held job (SIGCONT) with its time-limit warning (USR2); submitit checkpoints the call and
    requeues the job, which resumes from the run's checkpoint and finishes."""
    tmp, sweep, job, task = overtime
    log = tmp / "sweep" / "jobs" / job / f"{job}_0_log.out"
    _wait_for("SLURM's time-limit warning", lambda: "Caught signal SIGUSR2" in log.read_text(), 90, 0.2)
    with contextlib.suppress(ProcessLookupError):
        os.kill(task, signal.SIGCONT)
    status, out, err = _finish(sweep)
    assert status == 0, out + err[-3000:]
    assert "this job is timed-out" in log.read_text() and "Requeued job" in log.read_text()
    assert "Job completed successfully" in log.read_text()
    [result] = _cached(tmp / "cache")
    assert result["epochs_trained"] == 60 and len(result["history"]) == 60
    assert not list((tmp / "cache").glob("*.ckpt.pt"))


# ----------------------------------------------------------------------------- without a cluster

def test_squeue_lines_become_submitit_states_and_unlisted_jobs_are_gone():
    states = executors.queue_states("7_0|COMPLETED|node1\n7_1|RUNNING|node1\n7_2|PENDING|\n", ["7_0", "7_1", "7_2",
                                                                                           "7_3"])
    assert {job: s["State"] for job, s in states.items()} == dict(
        [("7_0", "COMPLETED"), ("7_1", "RUNNING"), ("7_2", "PENDING"), ("7_3", "GONE")])
    watcher = executors.QueueWatcher(delay_s=60)
    watcher._info_dict.update(states)
    assert [watcher.is_done(job, mode="cache") for job in ("7_0", "7_1", "7_2", "7_3")] == [True, False, False, True]


def test_a_job_takes_its_threads_from_its_allocation(monkeypatch):
    for name in ("SLURM_CPUS_PER_TASK", "SLURM_CPUS_ON_NODE", "SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID",
                 "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    assert hardware.allocated_cpus() is None and hardware.allocation() == dict(cpus_per_task=None, slurm_job=None)
    monkeypatch.setenv("SLURM_JOB_ID", "44")
    monkeypatch.setenv("SLURM_CPUS_ON_NODE", "8")  # a GPU job that asked for no CPU count: all it holds
    assert hardware.allocated_cpus() == 8 and hardware.allocation() == dict(cpus_per_task=8, slurm_job="44")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "3")
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "41")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "2")
    assert hardware.allocation() == dict(cpus_per_task=3, slurm_job="41_2")


def test_polling_starts_at_a_second_and_backs_off_to_poll_s(monkeypatch):
    clock = iter([0.0, 0.0, 50.0, 300.0, 5000.0, 0.0, 0.0])
    monkeypatch.setattr(executors.time, "monotonic", lambda: next(clock))
    pauses = executors._pauses(60)
    assert [next(pauses) for _ in range(4)] == [1.0, 5.0, 30.0, 60]
    assert next(executors._pauses(0.5)) == 0.5  # local sweeps keep their half second


def test_where_the_cluster_cannot_start_the_tests_say_why(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert "needs root" in slurm_cluster.unavailable()
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no SLURM cluster here: why"):
        _unavailable("why")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must run on CI: why"):
        _unavailable("why")
