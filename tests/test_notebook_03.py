"""Lesson 03 under the smoke profile: every contestant at every sparsity, targets met, LTR's bill as defined."""
from pathlib import Path

import pytest

STEM = "03_lottery_vs_earlycrop"
AT_INIT = ("crop-u", "snip", "random-u")
EARLY = ("earlycrop-u", "earlycrop-u-magnitude")  # the same detector; CroP or magnitude at θ_t


@pytest.fixture(scope="module")
def lesson(run_notebook):
    return run_notebook(STEM)


def test_every_method_at_every_sparsity_and_seed(lesson):
    present = {(r["method"], r["target_sparsity"], r["seed"]) for r in lesson["rows"]}
    expected = {(m, s, seed) for m in lesson["methods"] for s in lesson["sparsities"] for seed in lesson["seeds"]}
    assert expected <= present, f"missing runs: {sorted(expected - present)}"
    assert {"ltr", "ltr-reinit", *EARLY, *AT_INIT} <= set(lesson["methods"])
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
        elif r["method"] in EARLY:  # a dense phase of t epochs (2 <= t <= the cap), then E sparse ones
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


def test_when_or_how(lesson):
    """Section 4: CroP at init, CroP at θ_t and magnitude at θ_t side by side at the focus sparsity, with the
    firing epoch; the per-layer kept fractions; LTR's cost against dense."""
    rows = {row["method"]: row for row in lesson["when_how"]}
    assert {"CroP-U", "EarlyCroP-U", "EarlyCroP timing, magnitude"} <= set(rows)
    focus = [r for r in lesson["rows"] if r["target_sparsity"] == lesson["focus_sparsity"]]
    for label, method in (("EarlyCroP-U", "earlycrop-u"), ("EarlyCroP timing, magnitude", "earlycrop-u-magnitude"),
                          ("CroP-U", "crop-u")):
        mine = [r for r in focus if r["method"] == method]
        assert rows[label]["test acc"] == pytest.approx(sum(r["test_acc"] for r in mine) / len(mine))
        assert rows[label]["prune epoch (mean)"] == pytest.approx(sum(r["prune_epoch"] for r in mine) / len(mine))
    assert rows["CroP-U"]["prune epoch (mean)"] == 0 and rows["CroP-U"]["train acc at the prune"] is None
    assert 0 <= rows["EarlyCroP-U"]["train acc at the prune"] <= 1
    # the same detector decides both EarlyCroP variants' moment
    assert rows["EarlyCroP-U"]["prune epochs"] == rows["EarlyCroP timing, magnitude"]["prune epochs"]
    kept = lesson["kept_per_layer"]
    assert kept["fire_epoch"] >= 1 and kept["largest"] in {layer["name"] for layer in kept["layers"]}
    assert sum(layer["share of all weights"] for layer in kept["layers"]) == pytest.approx(1)
    for column in ("CroP at θ₀", "CroP at θ_t", "SNIP at θ_t", "magnitude at θ_t"):
        kept_share = sum(layer[column] * layer["share of all weights"] for layer in kept["layers"])
        assert kept_share == pytest.approx(1 - lesson["focus_sparsity"], abs=0.01), column
    assert lesson["ltr_epochs_over_dense"] == lesson["ltr"]["trainings"]
    assert lesson["detector"]["rule"] == "reference" and lesson["detector"]["threshold"] == 0.7


def test_the_prose_quotes_what_the_run_printed(lesson):
    """The 'What to notice' sentences are written from the run (they cannot drift): the focus accuracies, the
    detector's epochs and forced count, and the bill are the JSON's."""
    focus = lesson["focus_sparsity"]
    mean = {(r["method"], r["target_sparsity"]): r["mean"] for r in lesson["accuracy"]}
    assert f"{100 * mean[('earlycrop-u', focus)]:.1f} %" in lesson["notice"]
    assert f"{100 * mean[('crop-u', focus)]:.1f} %" in lesson["notice"]
    early = [r for r in lesson["rows"] if r["method"] == "earlycrop-u" and r["target_sparsity"] == focus]
    epochs = ", ".join(str(int(e)) for e in sorted(r["prune_epoch"] for r in early))
    assert f"after epoch(s) {epochs}" in lesson["notice"]
    R, E = lesson["ltr"]["rounds"], lesson["epochs"]
    assert f"({R} + 1) × {E} = {(R + 1) * E} epochs" in lesson["closing"]


def test_every_run_trains_at_the_lessons_learning_rate_on_its_threads(lesson):
    """The lesson's LR (not the profile's 2e-3, under which its pruned nets had not converged) reaches every run,
    and so do its threads, also in the worker processes the sweep uses."""
    from cropkit.lessons.lesson_parameters import parameters

    defaults = {name: spec["default"] for name, spec in
                parameters(Path(__file__).parents[1] / "notebooks" / f"{STEM}.ipynb").items()}
    assert defaults["LR"] == 0.02 and lesson["lr"] == [defaults["LR"]]
    assert lesson["threads"] == defaults["THREADS"] == 1
