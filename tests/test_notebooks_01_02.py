"""Lessons 01 and 02 under the smoke profile: what their JSON must hold."""
from pathlib import Path

from cropkit import notebook

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


def test_01_02_are_stored_clean():
    for stem in (NB01, NB02):
        path = notebook.NOTEBOOK_DIR / f"{stem}.ipynb"
        assert not notebook.has_outputs(path)
        assert notebook.declared_parameters(path)["PROFILE"] == "cpu"
