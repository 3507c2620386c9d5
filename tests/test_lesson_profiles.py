"""Each lesson's profile values live beside it: its parameters cell holds the cpu values, `NN_name.profiles.json` the
smoke and paper ones. Every sidecar names declared parameters with values of their types, and the harness gives
papermill the cell, the profile's values on top, and the caller's parameters over both."""
import json
from pathlib import Path

import nbformat
import papermill
import pytest
from tiny_lessons import tiny_lesson

from cropkit.lessons import lesson_parameters, notebook

ROOT = Path(__file__).resolve().parent.parent
LESSONS = notebook.notebooks(ROOT / "notebooks")
SIDECARS = sorted((ROOT / "notebooks").glob("*.profiles.json"))


def test_every_sidecar_belongs_to_a_lesson():
    assert SIDECARS, "the lessons keep their smoke and paper values in notebooks/NN_name.profiles.json"
    assert {p.name for p in SIDECARS} <= {lesson_parameters.sidecar(p).name for p in LESSONS}


@pytest.mark.parametrize("path", [p for p in LESSONS if lesson_parameters.sidecar(p).exists()], ids=lambda p: p.stem)
def test_a_sidecar_holds_smoke_and_paper_values_of_declared_parameters(path):
    table = json.loads(lesson_parameters.sidecar(path).read_text())
    assert set(table) == {"smoke", "paper"}, "the parameters cell is the cpu profile; the sidecar holds the others"
    declared = lesson_parameters.parameters(path)
    for profile, values in table.items():
        assert values and not {"PROFILE", "OUTPUT_DIR"} & set(values), profile
        assert lesson_parameters.profile_values(path, profile, declared) == values  # names and types checked


# ----------------------------------------------------------------------------- what the harness does with them

def _lesson(folder: Path, sidecar: dict | None) -> Path:
    """A tiny lesson declaring EPOCHS and WIDTH, with ``sidecar`` beside it (None: none)."""
    path = tiny_lesson(folder, "00_sized", "pass")
    nb = json.loads(path.read_text())
    nb["cells"][0]["source"] += ("\nEPOCHS = 6  # type: int  epochs\nWIDTH = 0.5  # type: float  width"
                                 "\nLIMIT = None  # type: int|None  samples kept; None keeps them all")
    path.write_text(json.dumps(nb))
    if sidecar is not None:
        lesson_parameters.sidecar(path).write_text(json.dumps(sidecar))
    return path


@pytest.fixture
def given(monkeypatch):
    """The parameters papermill is handed (no kernel starts: the fake writes the lesson's JSON itself)."""
    seen = {}

    def fake(path, output, parameters, cwd, **kwargs):
        seen.update(parameters)
        Path(cwd, f"{Path(path).stem}.json").write_text(json.dumps({"profile": parameters["PROFILE"]}))
        return nbformat.v4.new_notebook()

    monkeypatch.setattr(papermill, "execute_notebook", fake)
    return seen


@pytest.mark.parametrize("profile, parameters, expected", [
    ("smoke", None, {"EPOCHS": 2, "LIMIT": 8}),
    ("smoke", {"EPOCHS": 3, "WIDTH": 1.0}, {"EPOCHS": 3, "LIMIT": 8, "WIDTH": 1.0}),  # the caller's values win
    ("paper", None, {"WIDTH": 2.0, "LIMIT": None}),
    ("cpu", None, {}),  # the cell itself
])
def test_execute_puts_the_profile_under_the_given_parameters(tmp_path, given, profile, parameters, expected):
    path = _lesson(tmp_path, {"smoke": {"EPOCHS": 2, "LIMIT": 8}, "paper": {"WIDTH": 2.0, "LIMIT": None}})
    notebook.execute(path, profile=profile, output_dir=tmp_path / "out", parameters=parameters, budget_s=None)
    assert given == {"PROFILE": profile, "OUTPUT_DIR": str(tmp_path / "out"), **expected}


def test_a_lesson_without_a_sidecar_runs_its_cell_under_every_profile(tmp_path, given):
    path = _lesson(tmp_path, None)
    notebook.execute(path, profile="paper", output_dir=tmp_path / "out", budget_s=None)
    assert given == {"PROFILE": "paper", "OUTPUT_DIR": str(tmp_path / "out")}


@pytest.mark.parametrize("sidecar, message", [
    ({"smoke": {"EPOCS": 2}}, r"00_sized.profiles.json, profile 'smoke'.*no parameter.*EPOCS"),
    ({"smoke": {"EPOCHS": 2.5}}, r"00_sized.profiles.json, profile 'smoke'.*EPOCHS must be int"),
    ({"smoke": {"WIDTH": None}}, r"WIDTH must be float"),
    ({"smoke": {}, "gpu": {}}, r"must map profiles \['smoke', 'paper'\]"),
    ({"cpu": {"EPOCHS": 2}}, r"the parameters cell holds 'cpu'"),
    ({"smoke": {"PROFILE": "paper"}}, r"without \['PROFILE'\]"),
])
def test_a_typo_or_a_wrong_type_in_a_sidecar_stops_the_lesson_before_a_kernel(tmp_path, given, sidecar, message):
    path = _lesson(tmp_path, sidecar)
    with pytest.raises(ValueError, match=message):
        notebook.execute(path, profile="smoke", output_dir=tmp_path / "out")
    assert not given and not (tmp_path / "out").exists()


def test_copy_lessons_carries_the_sidecars(tmp_path, monkeypatch):
    folder = tmp_path / "lessons"
    folder.mkdir()
    _lesson(folder, {"smoke": {"EPOCHS": 2}})
    tiny_lesson(folder, "01_plain", "pass")
    monkeypatch.setattr(notebook, "lessons_dir", lambda: folder)
    copies = notebook.copy_lessons(tmp_path / "mine")
    assert sorted(p.name for p in copies) == ["00_sized.ipynb", "00_sized.profiles.json", "01_plain.ipynb"]
    assert lesson_parameters.profile_values(tmp_path / "mine" / "00_sized.ipynb", "smoke") == {"EPOCHS": 2}
