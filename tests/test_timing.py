"""Detectors against hand-made parameter trajectories (the epoch they must fire at is computed by hand)."""
import math
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import prune
from torch.utils.data import DataLoader, TensorDataset

from cropkit.training import timing
from cropkit.training.loop import Trainer


def _linear():
    """θ = (w₁, w₂, b): three numbers we set by hand at every 'epoch'."""
    return nn.Linear(2, 1).double()


def _set(model, w1, w2, b):
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[w1, w2]], dtype=torch.float64))
        model.bias.fill_(b)


# Seed rule, θ₀ = 0.  Δ_t = ‖θ_t‖²:  4, 8, 9, 9.25, 9.5
# ratios |Δ_t − Δ_{t−1}| / Δ_1:      t=2: 1,  t=3: 0.25,  t=4: 0.0625,  t=5: 0.0625
SEED_TRAJECTORY = [(2, 0, 0), (2, 2, 0), (3, 0, 0), (3, 0.5, 0), (3, 0, math.sqrt(0.5))]


def _run(detector_factory, trajectory, start=(0, 0, 0)):
    model = _linear()
    _set(model, *start)
    detector = detector_factory(model)
    fired = []
    for theta in trajectory:
        _set(model, *theta)
        fired.append(detector.update(model))
    return detector, fired


@pytest.mark.parametrize("tau, epoch", [(0.1, 4), (0.3, 3), (1.5, 2), (0.01, None)])
def test_seed_rule_fires_at_the_hand_computed_epoch(tau, epoch):
    det, fired = _run(lambda m: timing.EarlyCroPDetector(m, threshold=tau), SEED_TRAJECTORY)
    assert det.history == pytest.approx([4, 8, 9, 9.25, 9.5])
    assert det.ratio_epochs == [2, 3, 4, 5]
    assert det.ratios == pytest.approx([1, 0.25, 0.0625, 0.0625])
    assert det.fired_at == epoch and not det.forced
    assert fired == [t == epoch for t in range(1, 6)]  # True once, at the firing epoch only
    assert timing.detection_epoch(det.history, tau, "seed") == epoch


# Reference rule: θ_ref = θ_1 = (3, 4, 0), ‖θ_ref‖ = 5;  d_t = ‖θ_t − θ_ref‖ / 5:  0, 1, 1.6, 1.8, 1.85
# ratios |d_t − d_{t−1}| / d_2:   t=3: 0.6,  t=4: 0.2,  t=5: 0.05
REFERENCE_TRAJECTORY = [(3, 4, 0), (6, 8, 0), (3, 4, 8), (3, 4, 9), (3, 4, 9.25)]


@pytest.mark.parametrize("sparsity, epoch", [(0.9, 5), (0.5, 4), (0.3, 3), (0.97, None)])
def test_reference_rule_fires_at_the_hand_computed_epoch(sparsity, epoch):
    det, fired = _run(lambda m: timing.EarlyCroPDetector(m, rule="reference", sparsity=sparsity),
                      REFERENCE_TRAJECTORY, start=(-7, 1, 2))  # θ₀ plays no role in this rule
    assert det.threshold == pytest.approx(1 - sparsity)
    assert det.history == pytest.approx([0, 1, 1.6, 1.8, 1.85])
    assert det.ratio_epochs == [3, 4, 5]
    assert det.ratios == pytest.approx([0.6, 0.2, 0.05])
    assert det.fired_at == epoch
    assert fired == [t == epoch for t in range(1, 6)]
    assert timing.detection_epoch(det.history, 1 - sparsity, "reference") == epoch


@pytest.mark.parametrize("sparsity, tau, epoch", [(0.3, 0.6, 4), (0.5, 0.4, 4), (0.9, 0.0, 5)])
def test_reference_rule_for_structured_earlycrop(sparsity, tau, epoch):
    """The authors' structured EarlyCroP uses τ = d₂·min(1 − p − 0.1, 0.99): at p = 0.3 the ratio 0.6 at t = 3 is
    not below τ = 0.6 (the unstructured τ = 0.7 fires there); at p >= 0.9 it never fires and the cap decides."""
    make = lambda m: timing.EarlyCroPDetector(m, rule="reference", sparsity=sparsity, structured=True, max_epochs=5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        det, _ = _run(make, REFERENCE_TRAJECTORY, start=(-7, 1, 2))
    assert det.threshold == pytest.approx(tau, abs=1e-12)
    assert det.fired_at == epoch and det.forced == (sparsity >= 0.9)
    assert any("never fires" in str(w.message) for w in caught) == (sparsity >= 0.9)
    assert timing.reference_threshold(sparsity) == pytest.approx(1 - sparsity)


def test_earlycrop_s_uses_the_structured_reference_threshold():
    from types import SimpleNamespace

    from cropkit.methods import earlycrop

    ctx = SimpleNamespace(cfg=SimpleNamespace(rule="reference", threshold=None), sparsity=0.8)
    assert earlycrop._detector_threshold(ctx, structured=True) == dict(sparsity=0.8, structured=True)
    assert earlycrop._detector_threshold(ctx, structured=False) == dict(sparsity=0.8, structured=False)


def test_maximum_dense_phase_forces_firing_with_a_warning():
    steady = [(2, 0, 0), (2, 2, 0), (2, 2, 2), (4, 0, 0), (4, 2, 0)]  # Δ = 4, 8, 12, 16, 20: ratio 1 forever
    with pytest.warns(UserWarning, match="maximum dense phase of 3"):
        det, fired = _run(lambda m: timing.EarlyCroPDetector(m, max_epochs=3), steady)
    assert fired == [False, False, True, False, False]
    assert det.fired_at == 3 and det.forced
    assert len(det.history) == 5  # keeps recording after firing


def test_detector_keeps_theta0_on_device_and_rejects_changed_models():
    model = _linear()
    det = timing.EarlyCroPDetector(model)
    assert all(a.device == p.device and a.data_ptr() != p.data_ptr()
               for a, p in zip(det.anchor.values(), model.parameters()))
    with pytest.raises(ValueError, match="changed"):
        det.update(nn.Linear(3, 1))
    with pytest.raises(ValueError, match="reference rule needs"):
        timing.EarlyCroPDetector(model, rule="reference")
    with pytest.raises(ValueError, match="rule"):
        timing.EarlyCroPDetector(model, rule="paper")


def test_detector_sees_through_pruning_reparametrisation():
    model = _linear()
    det = timing.EarlyCroPDetector(model)
    prune.identity(model, "weight")  # weight → weight_orig + weight_mask
    det.update(model)
    assert det.history == [0.0]


# EarlyBird: 8 BN channels, ratio 0.5 keeps 4. Kept sets per epoch:
#   m1 {0,1,2,3}  m2 {1,2,3,7}  m3..m5 {1,2,3,6}; one swap = 2 of 8 positions differ = 0.25.
# window 3, ε = 0.2: epoch 3: max(d(m3,m1), d(m3,m2)) = 0.25; epoch 4: d(m4,m2) = 0.25; epoch 5: 0 → fires at 5.
KEPT = [{0, 1, 2, 3}, {1, 2, 3, 7}, {1, 2, 3, 6}, {1, 2, 3, 6}, {1, 2, 3, 6}]


def _bn_model():
    return nn.Sequential(nn.BatchNorm1d(3), nn.Linear(3, 3), nn.BatchNorm1d(5))


def _set_gammas(model, kept):
    # kept channels get large |γ| (one of them negative: the mask must use |γ|), the others small ones
    gamma = torch.tensor([(10.0 + i) if i in kept else 0.1 * (i + 1) for i in range(8)])
    gamma[max(kept)] *= -1
    with torch.no_grad():
        model[0].weight.copy_(gamma[:3])
        model[2].weight.copy_(gamma[3:])


def test_earlybird_fires_at_the_hand_computed_epoch():
    model, det = _bn_model(), timing.EarlyBirdDetector(ratio=0.5, epsilon=0.2, window=3)
    fired = []
    for kept in KEPT:
        _set_gammas(model, kept)
        fired.append(det.update(model))
        assert set(det.mask.nonzero().flatten().tolist()) == kept
    assert det.distances == [None, None, 0.25, 0.25, 0.0]
    assert fired == [False, False, False, False, True] and det.fired_at == 5


def test_earlybird_fires_at_a_distance_equal_to_epsilon():
    """The authors' rule is distance ≤ ε (their code returns False only when a distance exceeds ε): with ε = 0.25
    the trajectory above fires as soon as the window is full, at epoch 3."""
    model, det = _bn_model(), timing.EarlyBirdDetector(ratio=0.5, epsilon=0.25, window=3)
    fired = []
    for kept in KEPT:
        _set_gammas(model, kept)
        fired.append(det.update(model))
        if fired[-1]:
            break
    assert det.distances[-1] == 0.25 and fired == [False, False, True] and det.fired_at == 3


def test_earlybird_cap_and_errors():
    model, det = _bn_model(), timing.EarlyBirdDetector(ratio=0.5, epsilon=0.2, window=3, max_epochs=2)
    _set_gammas(model, KEPT[0])
    det.update(model)
    with pytest.warns(UserWarning, match="EarlyBird"):
        assert det.update(model)
    assert det.forced and det.fired_at == 2
    with pytest.raises(ValueError, match="BatchNorm"):
        det.update(nn.Linear(2, 2))


def test_callback_records_when_it_fired_without_pruning():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(64, 4, generator=g), torch.randint(0, 2, (64,), generator=g)
    loaders = (DataLoader(TensorDataset(x, y), batch_size=16), DataLoader(TensorDataset(x, y), batch_size=64))
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    calls = []
    callback = timing.DetectorCallback(timing.EarlyCroPDetector(model, threshold=10.0), record_steps=True,
                                       on_fire=lambda trainer: calls.append(trainer.epoch))
    Trainer(model, loaders, epochs=3, progress=False, callbacks=[callback]).fit()
    assert callback.fired_epoch == callback.detector.fired_at == 2 and calls == [2]  # τ = 10: fires at once
    assert callback.fired_step == 8 and len(callback.step_distances) == 12
    assert callback.step_distances[3] == pytest.approx(callback.detector.history[0])
    assert sum(p.numel() for p in model.parameters()) == 4 * 8 + 8 + 8 * 2 + 2  # nothing was pruned
