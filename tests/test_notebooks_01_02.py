"""Lessons 01 and 02 under the smoke profile: what their JSON must hold.

``CROPKIT_CPU_OUTPUT=<dir>`` (a directory where lesson 02 ran under the ``cpu`` profile, e.g. by
``python -m cropkit.notebook --profile cpu``) also checks the premise band of issue 11 on that JSON."""
import json
import os
from pathlib import Path

import pytest

from cropkit.lessons import lesson_parameters, notebook

NB01, NB02 = "01_gradient_flow_and_ntk", "02_rich_to_lazy"


def test_01_identity_and_pruning_sweep(run_notebook):
    r = run_notebook(NB01)
    assert r["profile"] == "smoke"
    assert r["identity"]["max_relative_error"] < 1e-8 and r["identity"]["checks"] > 0
    sparsities = [str(p) for p in r["sparsities"]]
    assert set(r["criteria"]) >= {"crop", "snip", "grasp", "magnitude", "random"}
    for key in ("gf_change", "kernel_distance"):
        for criterion in r["criteria"]:
            assert sorted(r[key][criterion]) == sorted(sparsities), f"{key} misses a sparsity for {criterion}"
            assert all(isinstance(v, float) for v in r[key][criterion].values())
    assert all(-1 <= v <= 0 for v in r["gf_change"]["random"].values())  # random pruning only loses GF here
    assert all(Path(f).stat().st_size > 0 for f in r["figures"])


def test_02_detection_epochs_and_animation(run_notebook):
    r = run_notebook(NB02)
    assert r["profile"] == "smoke"
    for rule in ("seed", "reference"):
        epoch, reason = r["detection_epoch"][rule], r["detection_reason"][rule]
        if epoch is None:
            assert reason and "did not fire" in reason
        else:
            assert isinstance(epoch, int) and epoch >= (2 if rule == "seed" else 3) and reason is None
    assert len(r["delta"]) == r["epochs"]
    gif = Path(r["animation"])
    assert gif.suffix == ".gif" and gif.stat().st_size > 0
    assert gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a")
    assert r["try_this"] and all("detection_epoch" in row for row in r["try_this"])
    check_premise(r)


def test_02_the_prose_quotes_what_the_run_printed(run_notebook):
    """Lesson 02's 'What to notice' lists are written from its run (they cannot drift): Δ, the ratios, the firing
    epochs and the try-this table's NTK distances in the text are the JSON's."""
    r = run_notebook(NB02)
    notice = {part: " ".join(sentences) for part, sentences in r["notice"].items()}
    assert set(notice) == {"run", "premise", "rules", "try"}
    assert f"from {r['delta'][0]:.3g} after epoch 1 to {r['delta'][-1]:.3g} after epoch {r['epochs']}" in notice["run"]
    assert f"is {r['reference_ratios'][0]:.2f} at $t = 3$" in notice["run"]
    for key in ("setting", "digits"):
        row = r["premise"][key]
        said = (f"fires at epoch {row['fire_epoch']}" if row["fire_epoch"]
                else f"did not fire within {row['epochs']} epochs")
        assert f"**{row['run']}**: the reference rule {said}" in notice["premise"]
    for ratios in (r["seed_ratios"], r["reference_ratios"]):
        assert f"{ratios[0]:.2f} to {ratios[-1]:.2f}" in notice["rules"]
    for row in r["try_this"]:
        if row["varied"] == "width":
            assert f"{row['ntk_distance_at_end']:.2f} at width {row['width']:g}" in notice["try"]


PREMISE_KEYS = {"fire_epoch", "epochs", "train_acc_at_fire", "train_acc_final", "loss_at_fire", "loss_final"}


def check_premise(r):
    """Lesson 02's premise record is consistent with its own per-epoch numbers (any profile)."""
    premise = r["premise"]
    assert {"setting", "digits", "by_rule"} <= set(premise)
    assert premise["setting"]["fire_epoch"] == r["detection_epoch"]["reference"]
    assert premise["setting"]["train_acc_final"] == pytest.approx(r["train_acc"][-1])
    assert premise["setting"]["loss_final"] == pytest.approx(r["train_loss"][-1])
    for key in ("setting", "digits"):
        row = premise[key]
        assert PREMISE_KEYS <= set(row) and row["rule"] == "reference" and isinstance(row["holds"], bool)
        assert row == {**premise["by_rule"][key]["reference"], **{k: row[k] for k in ("run", "rule", "tau", "holds")}}
        assert 0 <= row["train_acc_final"] <= 1 and row["loss_final"] >= 0
        if row["fire_epoch"] is None:
            assert row["train_acc_at_fire"] is None and row["loss_at_fire"] is None and not row["holds"]
        else:
            assert 3 <= row["fire_epoch"] <= row["epochs"] and 0 <= row["train_acc_at_fire"] <= 1
            gap = row["train_acc_final"] - row["train_acc_at_fire"]
            assert row["holds"] == (gap >= 0.05 and row["loss_at_fire"] >= 2 * row["loss_final"])
    fire = premise["setting"]["fire_epoch"]
    if fire is not None:
        assert premise["setting"]["train_acc_at_fire"] == pytest.approx(r["train_acc"][fire - 1])
        assert premise["setting"]["loss_at_fire"] == pytest.approx(r["train_loss"][fire - 1])


def test_02_premise_band_under_cpu():
    """Issue 11: under ``cpu`` the detector fires while the network still learns (at least 5 points of train
    accuracy and a clearly higher loss left); on digits it fires at (near) 100 % train accuracy."""
    directory = os.environ.get("CROPKIT_CPU_OUTPUT")
    path = Path(directory or ".") / f"{NB02}.json"
    if not directory or not path.exists():
        pytest.skip("set CROPKIT_CPU_OUTPUT to a directory where lesson 02 ran under the cpu profile")
    r = json.loads(path.read_text())
    assert r["profile"] == "cpu"
    check_premise(r)
    setting, digits = r["premise"]["setting"], r["premise"]["digits"]
    assert setting["holds"] and setting["train_acc_final"] - setting["train_acc_at_fire"] >= 0.05
    assert setting["loss_at_fire"] >= 2 * setting["loss_final"]
    assert digits["fire_epoch"] is None or digits["train_acc_at_fire"] >= 0.98


def test_01_02_are_stored_clean():
    for stem in (NB01, NB02):
        path = notebook.NOTEBOOK_DIR / f"{stem}.ipynb"
        assert not notebook.has_outputs(path)
        assert lesson_parameters.declared_parameters(path)["PROFILE"] == "cpu"
