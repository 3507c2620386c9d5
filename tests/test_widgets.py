"""The explorer's logic, driven as a learner would: set ``.value`` on a control, read what was shown (``.last``)."""
import ipywidgets
import pytest

from cropkit.core import scores
from cropkit.lessons import widgets
from cropkit.lessons.explorer import StructuredExplorer

CRITERIA = ("l1_nodes", "random_nodes", "snap_nodes")


@pytest.fixture(scope="module")
def explorer():
    # one thread and one timed step: steady and quick on a shared CI machine; the caches are shared by the tests
    e = StructuredExplorer(model_names=("resnet18", "vgg16"), criteria=CRITERIA, width=0.25,
                                   batch_size=4, repeats=1, threads=1)
    e.update()
    return e


def test_controls_are_the_registries(explorer):
    assert explorer.criterion.options == CRITERIA
    assert explorer.model.options == ("resnet18", "vgg16")
    assert isinstance(explorer.widget, ipywidgets.VBox) and explorer.output in explorer.widget.children


def test_default_criteria_are_every_node_criterion():
    e = StructuredExplorer(model_names=("vgg16",), width=0.125)
    assert e.criterion.options == tuple(scores.NODE_SCORES)


def test_slider_prunes_more_and_costs_fall(explorer):
    explorer.model.value, explorer.criterion.value, explorer.budget.value = "resnet18", "l1_nodes", "weights"
    explorer.sparsity.value = 0.3
    low = explorer.last
    explorer.sparsity.value = 0.9
    high = explorer.last
    assert high is not low and high["target_sparsity"] == 0.9
    assert abs(high["weight_sparsity"] - 0.9) <= 0.01 and abs(low["weight_sparsity"] - 0.3) <= 0.01
    kept = lambda s: sum(k for k, _ in s["layers"].values())  # noqa: E731
    assert kept(high) < kept(low) <= sum(d for _, d in low["layers"].values())
    assert high["node_sparsity"] > low["node_sparsity"] > 0
    for key in ("params_ratio", "flops_ratio", "peak_memory_ratio"):
        assert high[key] < low[key] < 1, key
    assert high["batch_time_ratio"] > 0 and high["batch_time_ms"] > 0
    assert "params 0.1" in StructuredExplorer.summary_text(high)


def test_output_shows_the_summary_and_the_figure(explorer):
    explorer.sparsity.value = 0.5
    outputs = explorer.output.outputs
    assert [o["output_type"] for o in outputs] == ["display_data", "display_data"]
    html = outputs[0]["data"]["text/html"]
    assert f"{explorer.last['params_ratio']:.3f}×" in html and "cropkit-explorer-summary" in html
    assert outputs[1]["data"]["image/png"].startswith("iVBOR")  # base64 of the PNG signature
    assert "updated in" in explorer.status.value


def test_model_switch_changes_layer_names(explorer):
    explorer.model.value = "resnet18"
    resnet_layers = set(explorer.last["layers"])
    explorer.model.value = "vgg16"
    assert explorer.last["model"] == "vgg16"
    assert set(explorer.last["layers"]) != resnet_layers and len(explorer.last["layers"]) == 13
    assert any("shortcut" in name for name in resnet_layers)
    explorer.model.value = "resnet18"


def test_criterion_and_budget_are_followed(explorer):
    explorer.model.value, explorer.budget.value = "vgg16", "weights"
    explorer.sparsity.value = 0.8
    explorer.criterion.value = "random_nodes"
    random_layers = explorer.last["layers"]
    explorer.criterion.value = "snap_nodes"
    assert explorer.last["criterion"] == "snap_nodes" and explorer.last["layers"] != random_layers
    assert ("vgg16", "snap_nodes") in explorer._scores  # scored once, then cached
    explorer.budget.value = "flops"
    assert abs((1 - explorer.last["flops_ratio"]) - 0.8) <= 0.02  # FLOPs of the prunable layers dominate
    explorer.budget.value = "weights"


def test_a_failing_callback_is_recorded_shown_and_raised(explorer, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("boom in the explorer")

    monkeypatch.setattr(explorer, "compute", broken)
    before = len(explorer.errors)
    with pytest.raises(RuntimeError, match="boom in the explorer"):
        explorer.sparsity.value = 0.6
    assert len(explorer.errors) == before + 1 and "boom" in str(explorer.errors[-1])
    shown = explorer.output.outputs[-1]
    assert shown["output_type"] == "error" and shown["ename"] == "RuntimeError"
    assert any("Traceback" in line for line in shown["traceback"])
    assert "failed" in explorer.status.value
    with pytest.raises(widgets.CallbackError, match="1 widget callback"):
        widgets.raise_recorded(explorer.errors[before:])


def test_safe_observe_records_in_the_module_list_by_default():
    slider, output = ipywidgets.IntSlider(value=0), ipywidgets.Output()
    seen = []
    handler = widgets.safe_observe(slider, lambda change: seen.append(change["new"]), output=output)
    slider.value = 1
    assert seen == [1] and not widgets.ERRORS
    slider.unobserve(handler, names="value")
    widgets.safe_observe(slider, lambda change: 1 / 0, output=output)
    try:
        with pytest.raises(ZeroDivisionError):
            slider.value = 2
        assert isinstance(widgets.ERRORS[-1], ZeroDivisionError)
        assert output.outputs[-1]["ename"] == "ZeroDivisionError"
        with pytest.raises(widgets.CallbackError):
            widgets.raise_recorded()
    finally:
        widgets.ERRORS.clear()
    widgets.raise_recorded()  # nothing recorded: no error


def test_bad_arguments_say_what_is_allowed():
    with pytest.raises(ValueError, match="NODE_SCORES"):
        StructuredExplorer(criteria=("crop",))
    with pytest.raises(ValueError, match="budget"):
        StructuredExplorer(budget="time")
