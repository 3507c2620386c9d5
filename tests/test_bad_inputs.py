"""Bad input and faults in runs, checkpoints and sweeps: a clear error before anything runs, or a warning and a
run that goes on; never a traceback, a silent substitution or a finished result thrown away."""
from __future__ import annotations

import pytest

import cropkit as ck
from cropkit import cli
from cropkit.experiments import runs
from cropkit.methods import registry
from cropkit.training import tracking

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("given, words", [
    (dict(width=float("inf")), r"width must be a finite number > 0.*got inf"),
    (dict(width=float("nan")), r"width must be a finite number > 0"),
    (dict(width="0.5"), r"width must be a finite number > 0.*got '0.5'"),
    (dict(width=True), r"width must be a finite number > 0"),
    (dict(seed=2**64), r"seed must be an integer in \[0, 2\*\*31\)"),
    (dict(seed=2**32), r"seed must be an integer in \[0, 2\*\*31\)"),
    (dict(seed=-1), r"seed must be an integer in \[0, 2\*\*31\)"),
    (dict(seed=1.0), r"seed must be an integer in \[0, 2\*\*31\)"),
])
def test_width_and_seed_out_of_range_say_what_is_allowed(tmp_path, given, words):
    with pytest.raises(ValueError, match=words):
        ck.run("dense", profile="smoke", cache_dir=tmp_path, progress=False, **given)
    seeds = [given["seed"]] if "seed" in given else None
    rest = {k: v for k, v in given.items() if k != "seed"}
    with pytest.raises(ValueError, match=words):
        ck.compare(["dense"], profile="smoke", seeds=seeds, cache_dir=tmp_path, progress=False, **rest)


@pytest.mark.parametrize("argv, words", [
    (["run", "dense", "--width", "inf"], "width must be a finite number > 0"),
    (["run", "dense", "--seed", str(2**64)], r"seed must be an integer in \[0, 2\*\*31\)"),
    (["compare", "dense", "--seeds", str(2**64)], r"seed must be an integer in \[0, 2\*\*31\)"),
    (["sweep", "dense", "--seeds", str(2**40), "--dry-run"], r"seed must be an integer in \[0, 2\*\*31\)"),
])
def test_width_and_seed_out_of_range_are_one_error_line(tmp_path, capsys, argv, words):
    assert cli.main([*argv, "--profile", "smoke", "--quiet", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cropkit: error:") and len(err.strip().splitlines()) == 1 and words.split()[0] in err


def test_the_largest_seed_allowed_runs():
    cfg, config = runs.configuration("dense", profile="smoke", seed=2**31 - 1)
    assert config["seed"] == 2**31 - 1


@pytest.mark.parametrize("data", ["cartpole", "acrobot"])
def test_a_control_task_with_one_episode_per_batch_is_refused_before_training(tmp_path, monkeypatch, data):
    """One episode per batch: the time-indexed baseline is that episode's return, every advantage is 0, so the loss
    and every pruning score would be exactly 0."""
    monkeypatch.setattr(runs, "_execute", lambda *a, **k: pytest.fail("it trained"))
    with pytest.raises(ValueError, match=r"(?s)batch_size=1.*episodes.*advantage.*>= 2"):
        ck.run("crop-u", data=data, profile="smoke", batch_size=1, cache_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="batch_size=1"):
        runs.settings("dense", data=data, profile="smoke", batch_size=1)
    assert runs.settings("dense", data=data, profile="smoke", batch_size=2).batch_size == 2


STRUCTURED = [m for m in ck.METHODS if registry.FAMILIES[m] == "Structured"]
SHUFFLE = "structured pruning cannot handle ShuffleNetV2: torch-pruning could not trace its channel dependencies"


def test_a_structured_method_on_a_model_it_cannot_trace_is_refused_before_any_epoch(tmp_path, monkeypatch):
    """ShuffleNet's channel shuffle defeats torch-pruning's tracing: said when the run is asked for, not after the
    dense phase of EarlyCroP-S (the surgery's own message)."""
    monkeypatch.setattr(ck.train.Trainer, "fit", lambda self: pytest.fail("an epoch ran"))
    for method in STRUCTURED:
        with pytest.raises(ValueError, match=SHUFFLE):
            ck.run(method, model="shufflenet_v2_x0_5", width=1.0, profile="smoke", cache_dir=tmp_path,
                   progress=False)
    assert runs.settings("snip", model="shufflenet_v2_x0_5", width=1.0, profile="smoke").model == "shufflenet_v2_x0_5"
    assert cli.main(["sweep", "earlycrop-s", "--model", "shufflenet_v2_x0_5", "--width", "1", "--dry-run",
                     "--profile", "smoke", "--quiet", "--cache-dir", str(tmp_path)]) == 2


def test_the_image_shapes_known_before_loading_are_those_the_loaders_give(cifar_root):
    from tinyimagenet_files import WNIDS, write_tinyimagenet

    write_tinyimagenet(cifar_root)  # the real set's 200 classes, of which the tiny one writes a few
    tiny = {"tinyimagenet": len(WNIDS)}
    for name, (shape, classes) in ck.data.IMAGE_SHAPES.items():
        data = ck.data.load(name, batch_size=4, limit=8, download=False)
        assert (data.input_shape, data.num_classes) == (shape, tiny.get(name, classes)), name


def test_a_tensorboard_folder_that_cannot_be_written_is_refused_when_it_is_given(tmp_path):
    (tmp_path / "blocker").write_text("")
    with pytest.raises(ValueError, match="TensorBoard cannot write into .*blocker is a file, not a folder"):
        tracking.TensorBoard(tmp_path / "blocker" / "tb")
    assert tracking.TensorBoard(tmp_path / "new" / "tb").log_dir.is_dir()
