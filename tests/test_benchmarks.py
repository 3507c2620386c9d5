"""The benchmarks cannot rot: `python -m benchmarks --quick` runs every one of them and writes sane CSVs.

No timing thresholds here (timings belong to the benchmarks' own PASS/MISS lines, not to tests): only that each
benchmark ran, wrote its CSV and plot with the expected columns, and that its ratios are finite and positive.
"""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent

EXPECTED = {
    "structured_payoff": (["model", "width", "budget", "target_sparsity", "weight_sparsity", "flop_reduction",
                           "share_train", "share_infer", "where"],
                          ["params_ratio", "flops_ratio", "step_ratio", "infer_ratio", "memory_ratio", "disk_ratio"]),
    "masks_alone": (["model", "width", "variant", "target_sparsity", "weight_sparsity", "where"],
                    ["flops_ratio", "nonzero_macs_ratio", "step_ratio", "infer_ratio", "memory_ratio", "disk_ratio"]),
    "scoring_cost": (["model", "width", "criterion", "method", "score_ms", "step_ms", "verdict", "where"],
                     ["steps_per_batch"]),
    "synflow_cost": (["model", "width", "rounds", "sparsity", "verdict", "where"],
                     ["cropkit_s", "authors_s", "ratio", "agreement"]),
    "sparse_kernels": (["model", "width", "sparsity", "verdict", "where"],
                       ["masked_ms", "sparse_ms", "step_ratio", "best_layer_ratio"]),
    "finding_cost": (["method", "test_acc", "epochs_trained", "train_seconds", "verdict", "where"],
                     ["time_ratio", "epochs_ratio"]),
    "vs_torch_pruning": (["part", "pipeline", "test_acc", "weight_sparsity", "shapes_equal", "verdict", "where"],
                         ["step_ratio", "infer_ratio"]),
}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    # One thread: the quick sizes are tiny, and a second thread only adds contention on a shared 2-core machine.
    done = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--threads", "1", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return out, done.stdout


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_quick_benchmark_writes_sane_ratios(quick_run, name):
    out, stdout = quick_run
    assert (out / f"{name}_quick.png").stat().st_size > 0
    frame = pd.read_csv(out / f"{name}_quick.csv")
    columns, ratios = EXPECTED[name]
    assert set(columns + ratios) <= set(frame.columns), set(columns + ratios) - set(frame.columns)
    assert len(frame) > 0
    if name == "vs_torch_pruning":  # ratios live in the timing part; the accuracy part has one row per pipeline
        assert set(frame.part) == {"accuracy", "equal channels"}
        assert frame[frame.part == "equal channels"].shapes_equal.astype(bool).all()
        frame = frame[frame.part == "equal channels"]
    for column in ratios:
        values = frame[column].astype(float)
        assert all(math.isfinite(v) and v > 0 for v in values), (column, values.tolist())


def test_quick_run_prints_targets_and_where(quick_run):
    _, stdout = quick_run
    assert "PASS" in stdout or "MISS" in stdout
    assert "load avg" in stdout and "torch" in stdout


def test_the_eval_every_benchmark_measures_lesson_settings_and_finds_equal_runs(monkeypatch, capsys):
    """benchmarks/eval_every.py: lesson 05's five domains and the mnist1d network; each pair of runs (measured every
    epoch, and after the last only) ends with the same training and final metric; a bad --only is a usage error."""
    from benchmarks import eval_every

    assert set(eval_every.settings()) == {"mnist1d", "depth", "pydoc", "cartpole", "acrobot", "lunarlander"}
    tiny = dict(data="cartpole", model="policy", width=0.25, sparsity=0.8, epochs=3, batch_size=4, limit=30, lr=5e-3,
                schedule="constant", score_batches=1, profile="smoke")
    monkeypatch.setattr(eval_every, "settings", lambda: {"cartpole": tiny})
    found = eval_every.main(["--pairs", "1"])
    assert found["cartpole"]["same"] is True and found["cartpole"]["every"] > 0
    assert "cartpole" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        eval_every.main(["--only", "chess"])
