"""The one detector callback (`cropkit.training.callbacks.DetectorCallback`): a prune in ``on_fire`` ends the watching,
and a
deadline acts once when the detector stays silent."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import cropkit as ck
from cropkit.core import prune, scores
from cropkit.methods import registry
from cropkit.training import callbacks, timing
from cropkit.training.loop import Trainer


def _loaders(samples: int):
    """``samples`` random 4-feature, 2-class samples: training in batches of 16, testing in one batch; and x."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(samples, 4, generator=g), torch.randint(0, 2, (samples,), generator=g)
    return (DataLoader(TensorDataset(x, y), batch_size=16), DataLoader(TensorDataset(x, y), batch_size=samples)), x


@pytest.mark.parametrize("record_steps", [False, True])
def test_callback_survives_a_structured_prune_in_on_fire(record_steps):
    """A prune in ``on_fire`` replaces the watched tensors: the callback stops feeding the detector there, and
    training goes on for the remaining epochs without error (it used to crash on the next epoch)."""
    loaders, x = _loaders(64)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))

    def prune_nodes(trainer):
        trainer.model = prune.structured(trainer.model, scores.l1_nodes(trainer.model), 0.5, x[:2])
        trainer.reset_optimizer()

    callback = callbacks.DetectorCallback(timing.EarlyCroPDetector(model, threshold=10.0), record_steps=record_steps,
                                          on_fire=prune_nodes)
    trainer = Trainer(model, loaders, epochs=4, progress=False, callbacks=[callback])
    trainer.fit()
    assert callback.fired_epoch == 2 and trainer.epoch == 4 and len(trainer.history.epochs) == 4
    assert trainer.model[0].out_features < 16                          # the prune happened
    assert len(callback.detector.history) == 2                         # fed until it fired, not after
    assert len(callback.step_distances) == (8 if record_steps else 0)  # 4 steps per epoch, epochs 1 and 2


def test_one_detector_callback_in_the_kit():
    assert ck.timing.DetectorCallback is callbacks.DetectorCallback
    assert not hasattr(registry, "WhenFired")


def test_callback_deadline_acts_once_when_the_detector_stays_silent():
    loaders, _ = _loaders(32)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    acts = []
    callback = callbacks.DetectorCallback(timing.EarlyCroPDetector(model, threshold=1e-12), every_steps=1,
                                          deadline=(2, lambda trainer: acts.append(trainer.epoch)))
    Trainer(model, loaders, epochs=3, progress=False, callbacks=[callback]).fit()
    assert acts == [2] and callback.fired_epoch == 2 and callback.fired_step == 4
