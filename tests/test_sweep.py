"""Sweeps through submitit: local jobs that fill one cache and write the paper's table; a second call submits
nothing; the dry run's plan; the SLURM parameters as given (no cluster here: nothing is submitted to one)."""
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import submitit
from processes import ctrl_c_reaches_it

import cropkit as ck
from cropkit import cli
from cropkit.experiments import executors, grid, results

SMOKE = ["--profile", "smoke", "--quiet", "--threads", "1"]


def _sweep(tmp_path, *extra) -> list[str]:
    return ["sweep", "dense", "crop-u", "--seeds", "0", "1", "--folder", str(tmp_path / "sweep"), "--cache-dir",
            str(tmp_path / "cache"), *SMOKE, *extra]


def test_a_local_sweep_writes_the_table_and_a_second_call_submits_nothing(tmp_path, capsys):
    done = subprocess.run([sys.executable, "-m", "cropkit", *_sweep(tmp_path, "--array-parallelism", "2")],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "0 cached, 4 to run" in done.stdout and "submitted 4 jobs" in done.stdout
    table = pd.read_csv(tmp_path / "sweep" / "table-p90.csv", index_col="method")
    assert list(table.index) == ["dense", "crop-u"] and list(table["Seeds"]) == [2, 2]  # 4 runs, 2 per row
    runs = pd.read_csv(tmp_path / "sweep" / "table-p90_runs.csv")
    assert sorted(zip(runs["method"], runs["seed"])) == [("crop-u", 0), ("crop-u", 1), ("dense", 0), ("dense", 1)]
    markdown = (tmp_path / "sweep" / "table-p90.md").read_text()
    assert "\n| dense | Dense | 2 |" in markdown and "\n| crop-u | CroP-U | 2 |" in markdown
    for row in runs.itertuples():  # the jobs stored exactly what cropkit.run looks up: every run replays
        assert row.threads == 1  # --threads: a CPU run's threads are in its key, so the replay gives them too
        replay = ck.run(row.method, seed=row.seed, profile="smoke", cache_dir=tmp_path / "cache", progress=False,
                        threads=row.threads)
        assert replay.from_cache and replay.test_acc == row.test_acc
    job_folders = sorted(os.listdir(tmp_path / "sweep" / "jobs"))

    assert cli.main(_sweep(tmp_path)) == 0  # everything cached
    out = capsys.readouterr().out
    assert "4 cached, 0 to run" in out and "submitted 0 jobs" in out
    assert sorted(os.listdir(tmp_path / "sweep" / "jobs")) == job_folders


def test_the_dry_run_lists_the_jobs_their_epochs_and_the_hours(tmp_path, capsys):
    """Smoke: LTR trains (R + 1)·E = 3·2 epochs, EarlyCroP at most max_dense + E = 2 + 2; dense is cached."""
    ck.run("dense", seed=0, profile="smoke", cache_dir=tmp_path / "cache", progress=False, threads=1)  # as SMOKE's
    argv = ["sweep", "dense", "ltr", "earlycrop-u", "--sparsity", "0.5", "0.9", "--seeds", "0", "--dry-run",
            "--folder", str(tmp_path / "sweep"), "--cache-dir", str(tmp_path / "cache"), *SMOKE]
    assert cli.main([*argv, "--epoch-seconds", "3600"]) == 0
    out = capsys.readouterr().out
    lines = [line.split() for line in out.splitlines()]
    assert ["dense", "0.0", "0", "2", "cached"] in lines  # dense ignores the sparsity: one run, at 0
    assert sum(line[:1] == ["dense"] for line in lines) == 1
    assert ["ltr", "0.9", "0", "6", "to", "run"] in lines and ["earlycrop-u", "0.5", "0", "4", "to", "run"] in lines
    assert "to run: 20 epochs at most" in out and "≈ 20 device-hours" in out and "submitted 0 jobs" in out
    assert not (tmp_path / "sweep").exists()
    assert cli.main(argv) == 0  # the epoch measured here, on the CPU
    assert "measured here on cpu" in capsys.readouterr().out.replace("CPU-hours of this machine", "cpu")


def test_slurm_parameters_reach_the_executor_and_the_sbatch_array(tmp_path, monkeypatch, capsys):
    """No cluster here: the executor is built with srun faked, its parameters read back, nothing submitted."""
    parameters = executors.slurm_parameters(partition="gpu", gpus_per_job=2, time_min=90, array_parallelism=8,
                                         cpus_per_task=10)
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))
    executor = executors.make_executor("slurm", tmp_path, parameters, 90)
    assert executor.parameters == dict(partition="gpu", gpus_per_node=2, time=90, array_parallelism=8,
                                       cpus_per_task=10, setup=executors.JOB_SETUP, signal_delay_s=90)
    header = executors.sbatch_header(tmp_path, 10, parameters).splitlines()
    for line in ["#SBATCH --partition=gpu", "#SBATCH --gpus-per-node=2", "#SBATCH --time=90",
                 "#SBATCH --array=0-9%8", "#SBATCH --cpus-per-task=10", *executors.JOB_SETUP]:
        assert line in header
    argv = ["sweep", "dense", "crop-u", "--seeds", "0", "1", "2", "--executor", "slurm", "--dry-run",
            "--epoch-seconds", "1", "--cache-dir", str(tmp_path), *SMOKE]
    assert cli.main([*argv, "--partition", "gpu", "--array-parallelism", "4", "--time-limit", "30"]) == 0
    assert "#SBATCH --array=0-5%4" in capsys.readouterr().out
    assert cli.main([*argv, "--partition", "gpu", "--time-limit", "1"]) == 0  # not warned in the first 25 s
    assert "#SBATCH --signal=USR2@5\n" in capsys.readouterr().out
    assert [executors.warning_seconds(m) for m in (1, 2, 3, 4, 600)] == [5, 30, 60, 90, 90]
    assert cli.main([*argv, "--partition", "cpu", "--gpus-per-job", "0"]) == 0  # one CPU per job unless asked
    assert "#SBATCH --cpus-per-task=1\n" in capsys.readouterr().out
    assert cli.main([*argv, "--partition", "cpu", "--gpus-per-job", "0", "--cpus-per-job", "4"]) == 0
    assert "#SBATCH --cpus-per-task=4\n" in capsys.readouterr().out
    assert cli.main(argv) == 2 and "cropkit: error: a SLURM sweep needs a partition" in capsys.readouterr().err
    assert cli.main(["sweep", "dense", "lottery", *SMOKE]) == 2
    assert "unknown method 'lottery'" in capsys.readouterr().err


def test_a_slurm_sweep_finds_results_of_any_gpu_and_a_preempted_job_resubmits_itself(tmp_path):
    """The GPU's name is in the key but unknown at submission: a result cached by any GPU of the same kind counts.
    Pre-empted, a job resubmits the same call (cropkit.run then resumes from its checkpoint)."""
    result = ck.run("dense", profile="smoke", cache_dir=tmp_path, progress=False)
    stored = next(tmp_path.glob("dense-*.json"))
    data = json.loads(stored.read_text())
    data["config"].update(device="cuda", device_name="NVIDIA H100 80GB HBM3")
    stored.write_text(json.dumps(data))
    jobs = grid.plan(["dense"], [0.9], [0], profile="smoke", cache_dir=tmp_path, remote="cuda")
    assert jobs[0].cached and jobs[0].path == stored and jobs[0].epochs == result.epochs_trained
    (dense,) = grid.plan(["dense"], [0.5, 0.9], [1], profile="smoke", cache_dir=tmp_path, remote="cuda")
    assert not dense.cached and dense.sparsity == 0.0  # dense ignores the sparsity: one run, not two
    job = executors.Run()
    again = job.checkpoint(method="dense", seed=3)
    assert again.function is job and again.kwargs == dict(method="dense", seed=3) and not again.args


@pytest.mark.parametrize("wrong, message", [(dict(sparsity=(0.9, 0.9)), "distinct"),
                                            (dict(executor="pbs"), "unknown executor"),
                                            (dict(slurm=dict(mem="4G")), "a local sweep takes only"),
                                            (dict(slurm=dict(array_parallelism=0)), "array_parallelism must be"),
                                            (dict(dry_run=True, epoch_time=-1), "epoch_time"),
                                            (dict(wait=False), "for SLURM sweeps")])
def test_a_wrong_sweep_is_refused_before_anything_runs(tmp_path, wrong, message):
    with pytest.raises(ValueError, match=message):
        ck.sweep(["dense"], profile="smoke", cache_dir=tmp_path, **wrong)


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (Linux /proc): a local sweep's job controllers and their jobs."""
    from test_cli import _children

    found = _children(pid)
    for child in list(found):
        found += _descendants(child)
    return found


@pytest.mark.skipif(not os.path.exists("/proc/self/stat"), reason="reads /proc to find the job processes")
def test_ctrl_c_cancels_the_local_jobs_quietly_and_keeps_finished_runs(tmp_path):
    from test_cli import _alive

    cache = tmp_path / "cache"
    argv = ["sweep", "dense", "crop-u", "snap", "--seeds", "0", "1", "2", "--array-parallelism", "2", "--folder",
            str(tmp_path / "sweep"), "--cache-dir", str(cache), *SMOKE]
    proc = subprocess.Popen([sys.executable, "-m", "cropkit", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=ctrl_c_reaches_it)
    try:
        deadline = time.monotonic() + 240
        while not list(cache.glob("*.json")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no job finished in time"
            time.sleep(0.1)
        jobs = _descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert err.strip().splitlines() == [f"cropkit: interrupted; finished runs are cached in {cache}"], err
    deadline = time.monotonic() + 10
    while [pid for pid in jobs if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in jobs if _alive(pid)], "job processes outlived the sweep"
    cached = list(cache.glob("*.json"))
    assert 1 <= len(cached) < 9 and all(results.load_cached(path) is not None for path in cached)
