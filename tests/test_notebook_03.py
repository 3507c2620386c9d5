"""Lesson 03 under the smoke profile: every contestant at every sparsity, targets met, LTR's bill as defined."""
from pathlib import Path

import pytest

STEM = "03_lottery_vs_earlycrop"
AT_INIT = ("crop-u", "cropit-u", "snip", "grasp", "random-u")


@pytest.fixture(scope="module")
def lesson(run_notebook):
    return run_notebook(STEM)


def test_every_method_at_every_sparsity_and_seed(lesson):
    present = {(r["method"], r["target_sparsity"], r["seed"]) for r in lesson["rows"]}
    expected = {(m, s, seed) for m in lesson["methods"] for s in lesson["sparsities"] for seed in lesson["seeds"]}
    assert expected <= present, f"missing runs: {sorted(expected - present)}"
    assert {"ltr", "ltr-reinit", "earlycrop-u", *AT_INIT} <= set(lesson["methods"])
    assert {(r["method"], r["seed"]) for r in lesson["rows"] if r["target_sparsity"] == 0} == \
        {("dense", seed) for seed in lesson["seeds"]}, "dense is the reference, once per seed"


def test_sparsities_within_one_percent_of_targets(lesson):
    for r in lesson["rows"]:
        if r["method"] != "dense":
            assert abs(r["weight_sparsity"] - r["target_sparsity"]) <= 0.01, r
            assert 0 <= r["test_acc"] <= 1 and r["train_seconds"] > 0


def test_epochs_follow_each_methods_definition(lesson):
    ltr, epochs = lesson["ltr"], lesson["epochs"]
    # cropkit.methods.ltr: one training, then R rounds of prune → rewind → retrain, each E epochs long
    assert ltr["epochs_per_round"] == epochs and ltr["trainings"] == ltr["rounds"] + 1
    for r in lesson["rows"]:
        if r["method"] in ("ltr", "ltr-reinit"):
            assert r["epochs_trained"] == ltr["trainings"] * ltr["epochs_per_round"], r
        elif r["method"] == "earlycrop-u":  # a dense phase of t epochs (2 <= t <= the cap), then E sparse ones
            t = r["epochs_trained"] - epochs
            assert r["prune_epoch"] == t and 2 <= t <= lesson["max_dense_epochs"], r
        else:
            assert r["epochs_trained"] == epochs, r


def test_ltr_round_by_round(lesson):
    ltr = lesson["ltr"]
    rounds = lesson["ltr_rounds"]
    for method in ("ltr", "ltr-reinit"):
        for sparsity in lesson["sparsities"]:
            for seed in lesson["seeds"]:
                mine = [r for r in rounds if (r["method"], r["target_sparsity"], r["seed"]) == (method, sparsity, seed)]
                assert [r["round"] for r in mine] == list(range(ltr["trainings"]))
                assert all(r["epochs"] == ltr["epochs_per_round"] for r in mine)
                assert mine[0]["round_sparsity"] == 0 and mine[-1]["round_sparsity"] == pytest.approx(sparsity)
                final = next(r for r in lesson["rows"] if (r["method"], r["target_sparsity"], r["seed"]) ==
                             (method, sparsity, seed))
                assert mine[-1]["test_acc"] == pytest.approx(final["test_acc"])


def test_table_figures_and_lesson(lesson, smoke_dir):
    assert [line["method"] for line in lesson["table"]] == ["dense", *lesson["methods"]]
    assert all(line["Weight sparsity"] != "-" for line in lesson["table"][1:])
    for figure in ("accuracy", "ltr_rounds", "pareto"):
        assert (Path(smoke_dir) / f"{STEM}_{figure}.png").stat().st_size > 10_000
    assert lesson["pareto_front_epochs"] and set(lesson["pareto_front_seconds"]) <= set(lesson["methods"])
    assert lesson["ltr_epochs_over_earlycrop"] > 1, "LTR trains R + 1 times; EarlyCroP once plus a short dense phase"
    assert {g["target_sparsity"] for g in lesson["rewinding_gain"]} == set(lesson["sparsities"])
