"""Lesson 06 under the smoke profile: one row per method × disturbance × seed, the disturbances keep the budget,
the layouts add up, the verdicts are the library's on the rows, the sensitivity table is complete."""
import pytest

from cropkit.experiments import verdicts

STEM = "06_what_scores_know"


@pytest.fixture(scope="module")
def lesson(run_notebook):
    return run_notebook(STEM)


def test_one_row_per_method_disturbance_and_seed(lesson):
    runs = lesson["runs"]
    expected = [(m, c, s) for m in lesson["methods"] for c in ["none", *lesson["checks"]] for s in lesson["seeds"]]
    assert sorted((r["method"], r["check"], r["seed"]) for r in runs if r["method"] != "dense") == sorted(expected)
    assert sorted(r["seed"] for r in runs if r["method"] == "dense") == sorted(lesson["seeds"])
    assert set(lesson["checks"]) == set(verdicts.CHECKS) and len(lesson["methods"]) >= 3


def test_every_disturbance_keeps_the_budget_and_the_training(lesson):
    runs = {(r["method"], r["check"], r["seed"]): r for r in lesson["runs"]}
    for (method, check, seed), r in runs.items():
        if method == "dense":
            continue
        assert abs(r["weight_sparsity"] - lesson["sparsity"]) <= 0.01, (method, check)
        plain = runs[(method, "none", seed)]
        assert r["epochs_trained"] == plain["epochs_trained"], "a disturbed run trains as long as the plain one"
        assert r["prune_epoch"] == plain["prune_epoch"], "the detector fires before the prune is disturbed"


def test_the_layouts_add_up_to_the_budget(lesson):
    for method, layout in {**lesson["weight_layouts"], "synflow": lesson["synflow_layout"]}.items():
        kept, dense = (sum(v[i] for v in layout.values()) for i in (0, 1))
        assert 1 - kept / dense == pytest.approx(lesson["sparsity"], abs=0.01), method
    assert set(lesson["node_layouts"]) == {"random-s", "snap", "crop-s", "earlycrop-s", "earlybird", "gatedecorators"}
    for method, layout in lesson["node_layouts"].items():
        assert layout and all(1 <= kept <= dense for kept, dense in layout.values()), method


def test_the_verdicts_are_the_library_rule_on_the_rows(lesson):
    accuracy = {}
    for r in lesson["runs"]:
        accuracy.setdefault((r["method"], r["check"]), []).append(r["test_acc"])
    expected = verdicts.sanity_claims(accuracy, lesson["resolution"])
    assert [(c["claim"], c["verdict"]) for c in lesson["claims"]] == [(c["claim"], c["verdict"]) for c in expected]
    assert len(lesson["claims"]) == len(verdicts.SANITY_CLAIMS)
    for method, k in lesson["knows_which"].items():
        assert k["answer"] == verdicts.knows_which(accuracy, method, lesson["resolution"])["answer"]
        assert k["answer"] in ("yes", "no", verdicts.UNDECIDED)


def test_sensitivity_covers_every_layer_and_sparsity(lesson):
    layers = set(lesson["weight_layouts"]["snip"])
    for table in lesson["sensitivity"].values():
        assert {(r["layer"], r["sparsity"]) for r in table} == {(layer, s) for layer in layers for s in [0.5, 0.9]}
        assert all(0.0 <= r["metric"] <= 1.0 for r in table)
    assert lesson["notice"] and set(lesson["phase_seconds"]) >= {"runs", "profiles", "sensitivity"}
