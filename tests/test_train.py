import pytest
import torch

import cropkit as ck
from cropkit.training.loop import Callback, Trainer


def _digits_cnn(seed=0):
    data = ck.data.load("digits", batch_size=64, seed=seed, limit=512)
    return data, ck.models.build("cnn", data.input_shape, data.num_classes, width=0.5, seed=seed)


def test_loss_falls_on_digits():
    data, model = _digits_cnn()
    history = Trainer(model, data, epochs=3, progress=False, device="cpu").fit()
    losses = history.column("train_loss")
    assert losses[-1] < 0.5 * losses[0]
    assert history.epochs[-1]["test_acc"] > 0.6
    assert len(history.step_loss) == 3 * len(data.train)


def test_same_seed_identical_weights():
    runs = []
    for _ in range(2):
        data, model = _digits_cnn(seed=1)
        Trainer(model, data, epochs=1, progress=False, device="cpu", seed=1).fit()
        runs.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*runs))


class Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, t): self.calls.append("begin")
    def on_epoch_begin(self, t): self.calls.append(f"epoch{t.epoch + 1}")
    def on_step_end(self, t): self.calls.append("step")
    def on_epoch_end(self, t): self.calls.append(f"end{t.epoch}")
    def on_train_end(self, t): self.calls.append("done")


def test_callbacks_order_and_counts():
    data = ck.data.load("digits", batch_size=256, limit=512)
    rec = Recorder()
    model = ck.models.build("mlp", data.input_shape, 10, width=0.1)
    Trainer(model, data, epochs=2, callbacks=[rec], progress=False, device="cpu").fit()
    assert rec.calls == ["begin", "epoch1", "step", "step", "end1", "epoch2", "step", "step", "end2", "done"]


class ExtendOnce(Callback):
    """Like EarlyCroP: at epoch 1 'prune' and plan 2 more epochs with a fresh optimizer."""

    def on_epoch_end(self, t):
        if t.epoch == 1:
            t.reset_optimizer(epochs=2, schedule="onecycle")


class StopAt(Callback):
    def on_epoch_end(self, t):
        t.stop = t.epoch >= 2


def test_callbacks_can_change_the_plan():
    data = ck.data.load("digits", batch_size=256, limit=256)
    model = ck.models.build("mlp", data.input_shape, 10, width=0.1)
    trainer = Trainer(model, data, epochs=1, callbacks=[ExtendOnce()], progress=False, device="cpu")
    old = trainer.optimizer
    assert len(trainer.fit().epochs) == 3 and trainer.optimizer is not old
    trainer = Trainer(model, data, epochs=5, callbacks=[StopAt()], progress=False, device="cpu")
    assert len(trainer.fit().epochs) == 2


@pytest.mark.parametrize("kwargs, match", [(dict(optimizer="lion"), "unknown optimizer"),
                                           (dict(schedule="step"), "unknown schedule"),
                                           (dict(epochs=-1), "epochs")])
def test_bad_input(kwargs, match):
    data = ck.data.load("digits", limit=64)
    model = ck.models.build("mlp", data.input_shape, 10, width=0.1)
    with pytest.raises(ValueError, match=match):
        Trainer(model, data, **({"epochs": 1} | kwargs))


def test_a_loss_that_is_not_a_number_stops_training_naming_the_epoch():
    data = ck.data.load("digits", batch_size=256, limit=512)  # two steps per epoch
    model = ck.models.build("mlp", data.input_shape, 10, width=0.1)
    calls = []

    def loss_fn(logits, y):  # finite for three steps, then NaN (what a diverging run produces)
        calls.append(1)
        loss = torch.nn.functional.cross_entropy(logits, y)
        return loss if len(calls) <= 3 else loss * float("nan")

    trainer = Trainer(model, data, epochs=5, loss_fn=loss_fn, progress=False, device="cpu", evaluate_every_epoch=False)
    with pytest.raises(ck.train.DivergedError, match=r"loss became nan in epoch 2, step 4 .*lower learning rate"):
        trainer.fit()
    assert len(trainer.history.epochs) == 1  # the diverged epoch is not recorded as finished


@pytest.mark.parametrize("device, words", [("tpu", "unknown device 'tpu'"), ("cuda:7", "not available|does not exist")])
def test_a_device_this_machine_lacks_is_an_error_saying_what_is_available(device, words):
    with pytest.raises(ValueError, match=words) as err:
        ck.train.resolve_device(device)
    assert "available here: ['cpu'" in str(err.value)


def test_evaluate_on_records_eval_mode_numbers_and_leaves_training_unchanged():
    from torch.utils.data import DataLoader

    from cropkit.training.loop import EvaluateOn

    weights = []
    for callbacks in ((), "evaluate"):
        data = ck.data.load("digits", batch_size=256, limit=512, seed=0)
        model = ck.models.build("mlp", data.input_shape, 10, width=0.1, seed=0)
        hooks = [EvaluateOn(DataLoader(data.train.dataset, batch_size=100))] if callbacks else []
        trainer = Trainer(model, data, epochs=2, callbacks=hooks, progress=False, device="cpu")
        history = trainer.fit()
        weights.append([p.detach().clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*weights)), "evaluating must not change the training"
    last = history.epochs[-1]
    assert (last["train_eval_loss"], last["train_eval_acc"]) == pytest.approx(
        trainer.evaluate(DataLoader(data.train.dataset, batch_size=512)))


@pytest.mark.parametrize("eval_every, measured", [(2, [2, 4, 5]), (5, [5]), (9, [5])])
def test_eval_every_measures_those_epochs_and_the_last_and_changes_nothing_else(eval_every, measured):
    """The oracle is the same training measured every epoch: equal step losses, weights and final test values; the
    records of the other epochs carry no test entries."""
    trained = {}
    for every in (1, eval_every):
        data, model = _digits_cnn(seed=2)
        history = Trainer(model, data, epochs=5, progress=False, device="cpu", seed=2, eval_every=every).fit()
        trained[every] = history, [p.detach().clone() for p in model.parameters()]
    (full, full_weights), (some, some_weights) = trained[1], trained[eval_every]
    assert some.step_loss == full.step_loss and all(torch.equal(a, b) for a, b in zip(full_weights, some_weights))
    assert [e["epoch"] for e in some.epochs if "test_acc" in e] == measured
    assert all(e.get("test_loss") is None for e in some.epochs if e["epoch"] not in measured)
    assert all(some.epochs[k - 1]["test_acc"] == full.epochs[k - 1]["test_acc"] for k in measured)


def test_a_training_stopped_early_is_measured_where_it_stopped():
    data = ck.data.load("digits", batch_size=256, limit=256)
    model = ck.models.build("mlp", data.input_shape, 10, width=0.1)
    history = Trainer(model, data, epochs=5, callbacks=[StopAt()], progress=False, device="cpu", eval_every=4).fit()
    assert [e["epoch"] for e in history.epochs] == [1, 2] and "test_acc" in history.epochs[-1]
    assert "test_acc" not in history.epochs[0]


@pytest.mark.parametrize("every", [0, -1, 1.5, True, "2"])
def test_eval_every_must_be_a_positive_integer(every):
    data, model = _digits_cnn()
    with pytest.raises(ValueError, match="eval_every must be an integer >= 1"):
        Trainer(model, data, epochs=1, progress=False, device="cpu", eval_every=every)


def test_a_run_measured_less_often_keeps_its_final_metric_and_its_own_key(tmp_path):
    """cropkit.run(eval_every=k) on a control task (the test episodes are the dear part): the same final return
    and training losses as every epoch, the best return taken over the measured epochs only, another cache key."""
    common = dict(data="cartpole", model="policy", width=0.25, sparsity=0.8, epochs=5, batch_size=4, limit=30,
                  lr=5e-3, schedule="constant", score_batches=1, seed=0, profile="smoke", progress=False,
                  cache_dir=tmp_path, threads=1)
    every, sparse = ck.run("snip", **common), ck.run("snip", eval_every=3, **common)
    assert sparse.test_metric == every.test_metric
    assert [e["train_loss"] for e in sparse.history] == [e["train_loss"] for e in every.history]
    measured = [e["test_return"] for e in sparse.history if "test_return" in e]
    assert len(measured) == 2 and sparse.best_test_metric == max(measured)
    assert sparse.key != every.key and sparse.config["eval_every"] == 3 and every.config["eval_every"] == 1
