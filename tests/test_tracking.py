"""Training callbacks given to a run, and the TensorBoard callback: what it logs is what the run did."""
import pickle

import pytest
import torch

import cropkit as ck
from cropkit.training.callbacks import DetectorCallback
from cropkit.training.loop import Callback
from cropkit.training.tracking import TensorBoard, run_name

torch.set_num_threads(1)
SMOKE = dict(profile="smoke", progress=False, max_dense_epochs=3, limit=128)
pytestmark = pytest.mark.filterwarnings("ignore:EarlyCroP detector.*did not fire")  # smoke: too short to fire


class Spy(Callback):
    """Keeps every trainer it was handed and the detector callbacks the method put beside it."""

    def __init__(self):
        self.trainers, self.detectors = [], []

    def on_train_begin(self, trainer):
        self.trainers.append(trainer)
        self.detectors += [c for c in trainer.callbacks if isinstance(c, DetectorCallback)]


def _scalars(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_tensorboard_logs_what_the_run_did(tmp_path):
    """EarlyCroP-U under smoke: loss/accuracy equal the history, Δ_t the detector's history, sparsity 0 before
    the prune and the target after; the callbacks leave the result unchanged and a cached replay calls none."""
    spy = Spy()
    logged = ck.run("earlycrop-u", cache_dir=tmp_path / "cache", callbacks=[spy, TensorBoard(tmp_path / "tb")],
                    **SMOKE)
    assert len(spy.trainers) == 1 and spy.trainers[0].callbacks[1] is spy  # after the method's own detector
    assert isinstance(spy.trainers[0].callbacks[0], DetectorCallback)
    folders = list((tmp_path / "tb").iterdir())
    assert [f.name for f in folders] == [run_name(logged.config)]
    scalars = _scalars(folders[0])
    steps = [e["epoch"] for e in logged.history]
    for tag, column in [("train/loss", "train_loss"), ("train/acc", "train_acc"), ("test/loss", "test_loss"),
                        ("test/acc", "test_acc"), ("lr", "lr")]:
        assert [s for s, _ in scalars[tag]] == steps
        assert [v for _, v in scalars[tag]] == pytest.approx([e[column] for e in logged.history], rel=1e-6)
    detector = spy.detectors[0].detector
    assert [v for _, v in scalars["detector/distance"]] == pytest.approx(detector.history, rel=1e-6)
    assert [s for s, _ in scalars["detector/ratio"]] == detector.ratio_epochs
    assert [v for _, v in scalars["detector/ratio"]] == pytest.approx(detector.ratios, rel=1e-6)
    weight = dict(scalars["sparsity/weight"])
    assert all(weight[s] == 0 for s in steps if s < logged.prune_epoch)
    assert all(abs(weight[s] - 0.9) < 0.01 for s in steps if s >= logged.prune_epoch)
    assert all(v == 0 for _, v in scalars["sparsity/node"])  # unstructured: every node stays

    plain = ck.run("earlycrop-u", cache=False, **SMOKE)  # the callbacks only observe
    assert plain.history == [{**e, "seconds": p["seconds"]} for e, p in zip(logged.history, plain.history)]
    replay = Spy()
    assert ck.run("earlycrop-u", cache_dir=tmp_path / "cache", callbacks=[replay], **SMOKE).from_cache
    assert replay.trainers == []


def test_global_steps_run_across_trainings_and_node_sparsity(tmp_path):
    """LTR trains R + 1 times: the steps go on across trainings; CroP-S removes nodes from the first epoch."""
    ltr = ck.run("ltr", cache=False, callbacks=[TensorBoard(tmp_path)], **SMOKE)
    scalars = _scalars(tmp_path / run_name(ltr.config))
    assert [s for s, _ in scalars["test/acc"]] == list(range(1, ltr.epochs_trained + 1))
    crop_s = ck.run("crop-s", cache=False, callbacks=[TensorBoard(tmp_path)], **SMOKE)
    node = [v for _, v in _scalars(tmp_path / run_name(crop_s.config))["sparsity/node"]]
    assert node == pytest.approx([crop_s.node_sparsity] * crop_s.epochs_trained) and node[0] > 0


def test_the_command_line_logs_with_tensorboard(tmp_path, capsys):
    from cropkit import cli

    argv = ["run", "dense", "--profile", "smoke", "--quiet", "--no-cache", "--set", "limit=64"]
    assert cli.main([*argv, "--tensorboard", str(tmp_path / "tb")]) == 0
    folder, = (tmp_path / "tb").iterdir()
    assert folder.name.startswith("dense-digits-cnn-p0-s0") and len(_scalars(folder)["test/acc"]) == 2


def test_compare_hands_callbacks_to_workers_only_if_they_pickle(tmp_path):
    """A callback that cannot be pickled cannot reach a worker process: compare says so before any run."""
    assert isinstance(pickle.loads(pickle.dumps(TensorBoard(tmp_path))), TensorBoard)

    class Local(Callback):
        pass

    with pytest.raises(ValueError, match="workers=1"):
        ck.compare(["dense"], callbacks=[Local()], workers=2, cache_dir=tmp_path, **SMOKE)
