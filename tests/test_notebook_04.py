"""Notebook 04 under the smoke profile: the invariants of its table, its explorer state and its wide-vs-narrow run."""
from pathlib import Path

import pytest

STEM = "04_structured_pruning"


@pytest.fixture(scope="module")
def results(run_notebook):
    return run_notebook(STEM)


def rows_by_method(table):
    return {row["method"]: row for row in table["rows"]}


def test_tables_hold_dense_unstructured_and_every_structured_method(results):
    assert results["profile"] == "smoke" and results["tables"]
    for table in results["tables"]:
        families = {m: results["families"][m] for m in rows_by_method(table)}
        assert sorted(m for m, f in families.items() if f == "Structured") == sorted(
            ["random-s", "snap", "crop-s", "cropit-s", "earlycrop-s", "earlybird", "gatedecorators",
             "efficientconvnets"])
        assert "dense" in families and "Unstructured" in families.values()


def test_sparsities_are_within_one_percent_of_the_target(results):
    for table in results["tables"]:
        for row in table["rows"]:
            if row["method"] == "dense":
                assert row["weight_sparsity"] == 0 and row["node_sparsity"] == 0
            else:
                assert row["target_sparsity"] == table["sparsity"]
                assert abs(row["weight_sparsity"] - table["sparsity"]) <= 0.01, row["method"]


def test_structured_rows_remove_nodes_and_flops_masks_do_not(results):
    for table in results["tables"]:
        rows = rows_by_method(table)
        dense = rows["dense"]
        for method, row in rows.items():
            family = results["families"][method]
            if family == "Structured":
                assert row["node_sparsity"] > 0, method
                assert row["flops"] < dense["flops"], method
                assert row["params"] < dense["params"], method
            elif family == "Unstructured":
                assert row["node_sparsity"] == 0, method
                assert row["flops"] == dense["flops"], f"{method}: masks leave the dense FLOPs"
                assert row["nonzero_macs"] < dense["nonzero_macs"], method


def test_explorer_state_is_saved_and_consistent(results):
    state = results["explorer"]
    assert state["model"] in ("resnet18", "vgg16") and state["layers"]
    assert all(0 < kept <= dense for kept, dense in state["layers"].values())
    assert abs(state["weight_sparsity"] - state["target_sparsity"]) <= 0.01
    for key in ("params_ratio", "flops_ratio", "peak_memory_ratio"):
        assert 0 < state[key] < 1, key
    assert state["batch_time_ms"] > 0 and results["widget_errors"] == []
    assert results["sweep"] and all(r["params_ratio"] < 1 for r in results["sweep"])


def test_wide_pruned_model_fits_the_memory_of_the_narrow_dense_one(results, smoke_dir):
    w = results["wide_vs_narrow"]
    assert w["narrow_width"] < w["wide_width"]
    assert w["narrow"]["peak_memory_bytes"] <= w["budget_bytes"] < w["wide_dense_bytes"]
    assert abs(w["wide"]["weight_sparsity"] - w["sparsity"]) <= 0.01 and w["wide"]["node_sparsity"] > 0
    for name in ("04_explorer.png", "04_sweep.png", "04_wide_vs_narrow.png", "04_structured_pruning.ipynb"):
        assert (Path(smoke_dir) / name).exists(), name


def test_layouts_score_ratio_and_floor_are_recorded(results):
    """Every structured row's layout (kept ≤ dense, at least one node per layer), the node-score ratio of the
    re-created EarlyCroP-S moment (the last layer is the unit) and the floor row beside the paper rule's."""
    rows = rows_by_method(results["tables"][0])
    assert set(results["layouts"]) == {m for m, f in results["families"].items() if f == "Structured"}
    for layout in results["layouts"].values():
        assert layout and all(1 <= kept <= dense for kept, dense in layout.values())
    layers = results["score_ratio"]["layers"]
    assert layers[-1]["at θ_t"] == pytest.approx(1.0) and all(r["at θ_t"] > 0 for r in layers)
    floor = results["layer_floor"]
    assert len(floor["test_acc"]) == len(results["seeds"])
    assert len(floor["paper_rule_test_acc"]) == len(results["seeds"])
    assert rows["earlycrop-s"]["test_acc"] in floor["paper_rule_test_acc"]
    slow = results["slow_lr"]  # the same EarlyCroP-S rows, only the learning rate changed
    assert slow["lrs"] == [slow["lr"]] and len(slow["test_acc"]) == len(slow["floor_test_acc"]) == len(results["seeds"])
    assert all(0 <= a <= 1 for a in slow["test_acc"] + slow["floor_test_acc"])
    slow_mean = sum(slow["test_acc"]) / len(slow["test_acc"])
    assert f"at {slow['lr']:g} EarlyCroP-S reaches {slow_mean:.1%}" in results["notice"]


def test_the_prose_quotes_what_the_run_printed(results):
    """The 'What to notice' sentences are written from the run: the numbers they quote are the JSON's."""
    text, rows = results["notice"], rows_by_method(results["tables"][0])
    floor = results["layer_floor"]["test_acc"]
    assert f"{sum(floor) / len(floor):.1%}" in text
    assert f"{rows['dense']['test_acc']:.1%}" in text and f"{rows['random-s']['test_acc']:.1%}" in text
    ratio = results["score_ratio"]["layers"][0]
    assert f"{ratio['at θ_t']:.1f}× the last one's" in text


def test_every_run_trains_on_the_lessons_threads(results):
    """THREADS reaches every run of the table and of the floor and learning-rate rows (in the cache key: a run on
    other threads is another run), whether they train in the kernel or, as under the cpu profile, in WORKERS
    processes."""
    from cropkit.lessons.lesson_parameters import parameters

    defaults = {name: spec["default"] for name, spec in
                parameters(Path(__file__).parents[1] / "notebooks" / f"{STEM}.ipynb").items()}
    assert defaults["WORKERS"] == 2 and defaults["OPTIONS"]["lr"] == 0.02
    assert results["workers"] == 1 and results["threads"] == defaults["THREADS"] == 1
    assert {row["threads"] for table in results["tables"] for row in table["rows"]} == {1}
    assert results["slow_lr"]["threads"] == [1]
