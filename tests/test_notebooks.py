"""Every lesson runs headlessly under the smoke profile; stored notebooks carry no outputs; the harness is strict."""
import json
from pathlib import Path

import pytest
from tiny_lessons import tiny_lesson

from cropkit.lessons import lesson_parameters, notebook

NOTEBOOKS = notebook.notebooks()


def test_there_are_lessons():
    assert [p.stem[:2] for p in NOTEBOOKS][:1] == ["00"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    assert not notebook.has_outputs(path), f"{path.name} carries outputs; strip them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_plain_literals_with_profile(path):
    params = lesson_parameters.declared_parameters(path)
    assert params["PROFILE"] == "cpu" and "OUTPUT_DIR" in params
    cell = next(c for c in json.loads(path.read_text())["cells"] if "parameters" in c["metadata"].get("tags", []))
    source = "".join(cell["source"]).splitlines()
    assert all("#" in line for line in source if line.strip()), "every parameter line carries a comment"
    # papermill parses these comments for types; a quote inside one makes it give up on the line
    assert not [line for line in source if "'" in line.split("#", 1)[-1]], "no apostrophes in parameter comments"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_under_smoke_and_writes_json(path, run_notebook):
    results = run_notebook(path.stem)
    assert results["profile"] == "smoke"


def test_unknown_parameter_is_rejected_before_running(tmp_path):
    with pytest.raises(ValueError, match="no parameter.*EPOCS.*its parameters are"):
        notebook.execute(NOTEBOOKS[0], profile="smoke", output_dir=tmp_path, parameters={"EPOCS": 3})
    assert not list(tmp_path.iterdir()), "nothing may run when a parameter is unknown"
    with pytest.raises(ValueError, match="unknown profile"):
        notebook.execute(NOTEBOOKS[0], profile="gpu", output_dir=tmp_path)


def test_over_budget_is_a_warning_recorded_in_the_results(tmp_path):
    """A budget never stops a lesson: running over it warns, and the results say so. (The lesson sleeps longer than
    its budget, so it is over whatever the machine's speed; no time is asserted.)"""
    path = tiny_lesson(tmp_path, "00_sleeps", "import time\ntime.sleep(1)")
    with pytest.warns(UserWarning, match="00_sleeps.ipynb took .* its budget is 0.5 s"):
        results = notebook.execute(path, profile="smoke", output_dir=tmp_path / "out", budget_s=0.5, hang_cap_s=600)
    assert results["answer"] == 42 and results["_over_budget"].endswith("budget 0.5 s")
    assert results["_watchdog"] == {"restarts": 0, "late_messages": results["_watchdog"]["late_messages"], "lost": []}


def test_tour_results(run_notebook, smoke_dir):
    r = run_notebook("00_tour")
    assert r["final_train_loss"] < r["first_train_loss"]
    assert r["params"] > 0 and r["flops_per_sample"] > 0 and r["batch_time_ms"] > 0 and r["peak_memory_bytes"] > 0
    assert len(r["history"]) == r["epochs"]
    assert (Path(smoke_dir) / "00_tour.ipynb").exists() and (Path(smoke_dir) / "00_tour_learning_curve.png").exists()


def test_lesson_03_times_its_phases(run_notebook):
    r = run_notebook("03_lottery_vs_earlycrop")
    phases = r["phase_seconds"]
    assert list(phases)[:3] == ["setup", "bill", "sweep"] and "verdicts" in phases
    assert all(seconds >= 0 for seconds in phases.values())
    if r["runs_replayed"] == 0:  # training is the lesson's cost; replayed from the cache it is not
        assert phases["sweep"] == max(phases.values())
