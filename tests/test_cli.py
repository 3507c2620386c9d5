"""The command line: `python -m cropkit run|compare|methods` on the smoke profile."""
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest
from processes import ctrl_c_reaches_it

from cropkit import cli
from cropkit.experiments import results
from cropkit.methods import registry as methods

pytestmark = pytest.mark.usefixtures("one_thread")


def test_run_prints_the_row(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert cli.main(["run", "snap", "--profile", "smoke", "--sparsity", "0.9", "--seed", "0", "--quiet",
                     "--cache-dir", str(tmp_path), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "weight_sparsity" in printed and "node_sparsity" in printed and "snap" in printed
    assert out.exists() and '"history"' in out.read_text()


def test_compare_prints_and_saves_the_table(tmp_path, capsys):
    csv = tmp_path / "t.csv"
    assert cli.main(["compare", "dense", "snap", "--profile", "smoke", "--seeds", "0", "1", "--quiet",
                     "--cache-dir", str(tmp_path), "--csv", str(csv), "--set", "score_batches=1"]) == 0
    printed = capsys.readouterr().out
    assert "Test accuracy" in printed and "SNAP" in printed and "±" in printed
    table = pd.read_csv(csv, index_col=0)
    assert list(table.index) == ["dense", "snap"]
    assert len(pd.read_csv(tmp_path / "t_runs.csv")) == 4


def test_bad_input_is_an_error_message(tmp_path, capsys):
    assert cli.main(["run", "snap", "--profile", "smoke", "--sparsity", "1.5", "--cache-dir", str(tmp_path)]) == 2
    assert "[0, 1)" in capsys.readouterr().err
    assert cli.main(["compare", "snap", "--profile", "smoke", "--set", "nope=1", "--cache-dir", str(tmp_path)]) == 2
    assert "unknown option" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["run", "not-a-method"])


def test_module_entry_point_lists_methods():
    out = subprocess.run([sys.executable, "-m", "cropkit", "methods"], capture_output=True, text=True, check=True)
    assert [line.split()[0] for line in out.stdout.splitlines()] == list(methods.METHODS)


def test_the_command_line_does_not_load_the_lessons_runner():
    """The command line starts without nbclient (only `cropkit lessons` loads it): its schema validation (jsonschema's
    RFC 3987 grammar) took 5 of a command's 7.5 s to import, so a mistyped option waited seconds for its error line."""
    script = ("import sys, cropkit.cli; "
              "print(sorted(m for m in ('nbclient', 'nbformat', 'jsonschema') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("argv, words", [
    (["run", "dense", "--device", "tpu"], "unknown device 'tpu'"),
    (["compare", "dense", "--device", "tpu"], "unknown device 'tpu'"),
    (["compare", "dense", "--device", "cuda:7"], "'cuda:7'"),
    (["run", "dense", "--threads", "0"], "--threads: expected an integer >= 1"),
    (["compare", "dense", "--workers", "0"], "--workers: expected an integer >= 1"),
    (["compare", "dense", "--seeds", "0", "0"], r"repeat \[0\]"),
    (["compare", "dense", "--csv", "{blocker}/t.csv"], "cannot write .*blocker is a file, not a folder"),
    (["compare", "dense", "--json", "{blocker}/t.json"], "cannot write .*blocker is a file, not a folder"),
    (["compare", "dense", "--csv", "{tmp}/t.json"], "must end in .csv"),
    (["run", "dense", "--json", "{blocker}/r.json"], "cannot write .*blocker is a file, not a folder"),
    (["run", "dense", "--set", "lr=1e30"], r"loss became nan in epoch \d+"),
    (["run", "dense", "--set", "width=0.25"], "width is set by a flag of its own"),
    (["run", "dense", "--set", "sanity=shuffle"], "dense does not take option sanity"),
    (["run", "snip", "--set", "sanity=bogus"], "unknown sanity 'bogus'"),
    (["run", "dense", "--tensorboard", "{blocker}/tb"], "TensorBoard cannot write into .*blocker is a file, not a"),
    (["compare", "dense", "--tensorboard", "{blocker}/tb"], "TensorBoard cannot write into .*blocker is a file"),
    (["sweep", "dense", "--tensorboard", "{blocker}/tb", "--folder", "{tmp}/sweep"], "TensorBoard cannot write into"),
])
def test_a_user_mistake_is_one_error_line_and_status_2_before_any_run(tmp_path, capsys, argv, words):
    (tmp_path / "blocker").write_text("")
    cache = tmp_path / "cache"
    argv = [a.format(blocker=tmp_path / "blocker", tmp=tmp_path) for a in argv]
    try:  # any other exception (a traceback for the user) fails the test
        status = cli.main([*argv, "--profile", "smoke", "--quiet", "--cache-dir", str(cache)])
    except SystemExit as exit:  # argparse's own errors
        status = exit.code
    err = capsys.readouterr().err
    assert status == 2 and re.search(words, err), err
    assert err.strip().splitlines()[-1].startswith(("cropkit: error:", "cropkit run: error:",
                                                   "cropkit compare: error:"))
    assert not cache.exists() or not list(cache.glob("*.json"))  # nothing ran (a diverged run is not cached)


def test_missing_and_corrupt_cifar_are_error_lines(tmp_path):
    env = {**os.environ, "CROPKIT_DATA": str(tmp_path / "data")}
    argv = [sys.executable, "-m", "cropkit", "run", "dense", "--profile", "smoke", "--data", "cifar10", "--quiet",
            "--no-cache", "--threads", "1"]
    folder = tmp_path / "data" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    (folder / "data_batch_1").write_bytes(b"not the original file")
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "data_batch_1 failed the MD5 checksum" in done.stderr and "could not be downloaded" not in done.stderr
    (folder / "data_batch_1").unlink()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "cifar10 is not available under" in done.stderr


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux /proc)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc to find the worker processes")
def test_ctrl_c_stops_every_worker_promptly_and_keeps_finished_runs(tmp_path):
    jobs = ["dense", "snap", "ltr", "earlycrop-s", "gatedecorators", "crop-s"]
    seeds = ["0", "1", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "cropkit", "compare", *jobs, "--seeds", *seeds, "--workers", "2",
                             "--profile", "smoke", "--quiet", "--threads", "1", "--cache-dir", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_reaches_it)
    try:
        deadline = time.monotonic() + 240
        while not list(tmp_path.glob("*.json")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no run finished in time"
            time.sleep(0.1)
        workers = _children(proc.pid)
        assert len(workers) >= 2
        proc.send_signal(signal.SIGINT)
        start = time.monotonic()
        _, err = proc.communicate(timeout=60)
        elapsed = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    if elapsed > 10:  # the hang cap is communicate's 60 s; slower than this is worth a look, not a failure
        warnings.warn(f"compare took {elapsed:.1f} s to stop after Ctrl+C", stacklevel=1)
    time.sleep(0.5)
    assert not [pid for pid in workers if _alive(pid)], "worker processes outlived compare"
    cached = list(tmp_path.glob("*.json"))
    assert 1 <= len(cached) < len(jobs) * len(seeds)
    assert all(results.load_cached(path) is not None for path in cached)  # complete results, not half-written


def test_an_unwritable_cache_still_prints_the_result_with_a_warning(tmp_path, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="could not be cached at .*blocker"):
        status = cli.main(["run", "dense", "--profile", "smoke", "--quiet", "--cache-dir", str(blocker / "cache")])
    assert status == 0 and "test_acc" in capsys.readouterr().out
