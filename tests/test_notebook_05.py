"""Lesson 05 under the smoke profile: per domain one row per method and sparsity (and dense), targets met, metrics
finite, EarlyCroP-S skipped on the LSTM with the kit's reason, verdicts computed from the rows."""
import math
from pathlib import Path

import pytest

STEM = "05_beyond_classification"
METRICS = {"depth": ("rmse", False), "pydoc": ("log_ppl", False), "cartpole": ("return", True),
           "acrobot": ("return", True), "lunarlander": ("return", True)}


@pytest.fixture(scope="module")
def lesson(run_notebook):
    return run_notebook(STEM)


def test_every_domain_method_and_sparsity_has_its_row(lesson):
    assert lesson["domains"] == ["depth", "pydoc", "cartpole", "acrobot", "lunarlander"]
    assert {"earlycrop-u", "earlycrop-s", "crop-u", "snip", "random-u"} <= set(lesson["methods"])
    for domain in lesson["domains"]:
        methods = [m for m in lesson["methods"] if m not in lesson["skipped"].get(domain, {})]
        rows = [r for r in lesson["rows"] if r["domain"] == domain]
        keys = [(r["method"], r["target_sparsity"]) for r in rows]
        expected = [("dense", 0.0), ("dense-long", 0.0)] + [(m, s) for m in methods
                                                            for s in lesson["sparsities"][domain]]
        assert sorted(keys) == sorted(expected), domain  # each once: no duplicate, none missing
        assert len(lesson["sparsities"][domain]) >= 2
        for r in rows:
            assert r["metric"] == METRICS[domain][0] == lesson["metrics"][domain]["metric"]
            assert r["n"] == len(lesson["seeds"]) and math.isfinite(r["mean"]) and r["std"] >= 0
            assert abs(r["weight_sparsity"] - r["target_sparsity"]) <= 0.01, r  # dense: 0


def test_rows_are_the_mean_of_the_runs(lesson):
    for row in lesson["rows"]:
        runs = [r for r in lesson["runs"] if (r["domain"], r["method"], r["target_sparsity"]) ==
                (row["domain"], row["method"], row["target_sparsity"])]
        assert sorted(r["seed"] for r in runs) == sorted(lesson["seeds"])
        assert row["mean"] == pytest.approx(sum(r["test_metric"] for r in runs) / len(runs))
        assert all(abs(r["weight_sparsity"] - r["target_sparsity"]) <= 0.01 for r in runs)


def test_structured_earlycrop_is_skipped_on_the_lstm_only_with_the_reason(lesson):
    assert set(lesson["skipped"]) == {"pydoc"} and set(lesson["skipped"]["pydoc"]) == {"earlycrop-s"}
    assert "removes whole nodes" in lesson["skipped"]["pydoc"]["earlycrop-s"]
    assert not [r for r in lesson["rows"] if r["domain"] == "pydoc" and r["method"] == "earlycrop-s"]
    fcn_s = [r for r in lesson["runs"] if r["domain"] == "depth" and r["method"] == "earlycrop-s"]
    assert fcn_s and all(r["node_sparsity"] > 0 for r in fcn_s), "EarlyCroP-S removes channels of the fcn"


def test_references_and_detector(lesson):
    refs = lesson["references"]
    assert refs["depth"]["constant-mean predictor"] == pytest.approx(1.0, abs=0.05)  # standardised targets
    assert refs["pydoc"]["uniform over the vocabulary"] == pytest.approx(math.log(1001))
    assert refs["pydoc"]["unigram frequencies"] < refs["pydoc"]["uniform over the vocabulary"]
    assert refs["acrobot"]["random policy"] == -500 and 8 < refs["cartpole"]["random policy"] < 60
    assert -400 < refs["lunarlander"]["random policy"] < -100  # it crashes: -244 on the cpu evaluation episodes
    for domain, methods in lesson["detector"]["per_domain"].items():
        for method, d in methods.items():
            assert d["runs"] == len(lesson["sparsities"][domain]) * len(lesson["seeds"])
            assert all(1 <= e <= d["max_dense_epochs"] for e in d["prune_epochs"]) and 0 <= d["forced"] <= d["runs"]


def test_dense_as_long_trains_as_long_as_the_longest_earlycrop_run(lesson):
    for domain, options in lesson["settings"].items():
        runs = [r for r in lesson["runs"] if r["domain"] == domain]
        longest = max(r["epochs_trained"] for r in runs if r["method"].startswith("earlycrop"))
        assert {r["epochs_trained"] for r in runs if r["method"] == "dense"} == {options["epochs"]}
        as_long = options["epochs"] + options["max_dense_epochs"]
        assert {r["epochs_trained"] for r in runs if r["method"] == "dense-long"} == {as_long} and longest <= as_long


def test_verdicts_follow_the_rule(lesson, smoke_dir):
    for domain, v in lesson["verdicts"].items():
        higher = METRICS[domain][1]
        dense = next(r for r in lesson["rows"] if (r["domain"], r["method"]) == (domain, "dense-long"))
        for r in v["per_sparsity"]:
            assert r["dense"] == pytest.approx(dense["mean"])  # the rule compares with dense trained as long
            gap = r["earlycrop_u"] - r["dense"] if higher else r["dense"] - r["earlycrop_u"]
            assert r["gap_to_dense"] == pytest.approx(gap)
            assert r["close_to_dense"] == (gap >= -r["spread_dense"])
        holds = [r["holds"] for r in v["per_sparsity"]]
        rule = "reproduced" if all(holds) else "not reproduced" if not any(holds) else "mixed"
        assert v["verdict"] == rule or v["verdict"].startswith("undecided: dense does not beat")
    assert (Path(smoke_dir) / f"{STEM}_sweep.png").stat().st_size > 10_000


def test_convergence_is_shown_for_the_supervised_domains(lesson):
    """Depth and pydoc get their rows' training loss at the end (the mean of the runs'), dense's last-epoch fall and
    the range of the pruned rows' end loss over dense's; the control games, whose REINFORCE loss says nothing about
    progress, do not."""
    assert set(lesson["convergence"]) == {"depth", "pydoc"}
    for domain, shown in lesson["convergence"].items():
        for row in shown["train_loss_end"]:
            runs = [r["train_loss_end"] for r in lesson["runs"] if (r["domain"], r["method"], r["target_sparsity"])
                    == (domain, row["method"], row["target_sparsity"])]
            assert runs and row["mean"] == pytest.approx(sum(runs) / len(runs)) and row["mean"] > 0
        assert set(shown["dense_last_epoch_fall"]) == {"dense", "dense-long"}
        dense = next(r["mean"] for r in shown["train_loss_end"] if r["method"] == "dense")
        pruned = [r["mean"] / dense for r in shown["train_loss_end"] if r["method"] not in ("dense", "dense-long")]
        assert shown["pruned_end_over_dense"] == pytest.approx([min(pruned), max(pruned)])
