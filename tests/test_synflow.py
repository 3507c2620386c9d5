"""SynFlow (Tanaka et al. 2020) as cropkit computes it since it stopped copying the model and computing in float64
every round: the same masks as that computation, float64 where float32 under- or overflows, the model given back
bit for bit."""
import copy

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from cropkit.core import prune, scores
from cropkit.core.derivatives import effective_weights, grad_or_zeros
from cropkit.core.layers import prunable_layers
from cropkit.core.plumbing import eval_mode
from cropkit.tasks import models

pytestmark = pytest.mark.usefixtures("one_thread")


def float64_copy_synflow(model, batches, cast=True):
    """One round as cropkit computed it before: a deep copy in float64, every parameter and buffer made absolute."""
    inputs = batches[0][0]
    linear = copy.deepcopy(model).double()
    with torch.no_grad():
        for t in list(linear.parameters()) + list(linear.buffers()):
            if t.is_floating_point():
                t.abs_()
    ones = torch.ones((1, *inputs.shape[1:]), dtype=torch.float64)
    with eval_mode(linear), parametrize.cached():
        weights = effective_weights(linear)
        grads = grad_or_zeros(linear(ones).sum(), list(weights.values()))
    dtype = next(iter(model.parameters())).dtype if cast else torch.float64
    return {k: (w.detach() * g).abs().to(dtype) for (k, w), g in zip(weights.items(), grads)}


def float64_copy_schedule(model, batches, sparsity, rounds, cast=True):
    for k in range(1, rounds + 1):
        prune.unstructured(model, float64_copy_synflow(model, batches, cast), 1 - (1 - sparsity) ** (k / rounds))
    return prune.masks(model)


NETS = {"cnn": ((1, 8, 8), 0.25), "resnet18": ((3, 16, 16), 0.0625), "vgg16": ((3, 16, 16), 0.0625)}


@pytest.mark.filterwarnings("ignore:layer .* would lose every weight")
@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.99, 0.999])
@pytest.mark.parametrize("name", list(NETS))
def test_masks_equal_the_float64_copy_computation(name, sparsity):
    """Same masks, entry for entry, as the deep-copy float64 rounds (VGG16's exact zero scores — taps that only
    ever see padding — included: equal scores break ties by position on both)."""
    shape, width = NETS[name]
    model = models.build(name, shape, 10, width=width, seed=0)
    batches = [(torch.randn(2, *shape), torch.zeros(2, dtype=torch.long))]
    want = float64_copy_schedule(copy.deepcopy(model), batches, sparsity, 20)
    got = prune.masks(prune.synflow(model, batches, sparsity, iterations=20))
    assert all(torch.equal(got[k], want[k]) for k in want)


def chain(depth, scale):
    """A plain deep chain with every weight ±scale: R = 1ᵀ|W_L|…|W_1|1 = 4^depth · scale^depth · 4 (width 4)."""
    layers = [nn.Linear(4, 4, bias=False) for _ in range(depth)]
    torch.manual_seed(0)
    with torch.no_grad():
        for layer in layers:
            layer.weight.copy_(scale * (1 + 0.5 * torch.rand(4, 4)) * torch.sign(torch.randn(4, 4)))
    return nn.Sequential(*layers)


@pytest.mark.parametrize("scale", [8.0, 0.02], ids=["overflow", "underflow"])
def test_float64_where_float32_cannot_hold_the_product(scale):
    """40 layers: R ≈ (4 · 8)^40 ≈ 1e60 overflows float32, (4 · 0.02)^40 ≈ 1e-44 underflows it. The round is
    recomputed in float64 and returned in float64 (cast back, the overflowing scores would all be inf and tie)."""
    model, batches = chain(40, scale), [(torch.randn(2, 4), torch.zeros(2, dtype=torch.long))]
    with scores.linearised(model):
        float32, flat, _ = scores._synflow_pass(model, (4,), list(prunable_layers(model)))
    positive = flat[flat > 0]
    assert not torch.isfinite(flat).all() or positive.numel() < flat.numel() or positive.min() < 1e-30
    got, want = scores.synflow(model, batches), float64_copy_synflow(model, batches, cast=False)
    assert all(v.dtype == torch.float64 and torch.isfinite(v).all() and (v > 0).all() for v in got.values())
    for k in want:
        torch.testing.assert_close(got[k], want[k], rtol=1e-12, atol=0)
    # the schedule too (before, the scores were cast back to float32: inf for all of them on the overflowing chain)
    want = float64_copy_schedule(copy.deepcopy(model), batches, 0.9, 5, cast=False)
    got = prune.masks(prune.synflow(model, batches, 0.9, iterations=5))
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_the_model_is_given_back_bit_for_bit():
    model = models.build("cnn", (1, 8, 8), 10, width=0.25, seed=0).train()
    with torch.no_grad():
        model[0].weight[0, 0, 0, 0] = -0.0
        model[1].running_mean.uniform_(-1, 1)
    prune.unstructured(model, scores.magnitude(model), 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [(torch.randn(2, 1, 8, 8), torch.zeros(2, dtype=torch.long))]
    scores.synflow(model, batches)
    with pytest.raises(RuntimeError):  # an input the model cannot take: restored all the same
        scores.synflow(model, [(torch.randn(2, 3, 8, 8), torch.zeros(2, dtype=torch.long))])
    state = model.state_dict()
    for k, v in before.items():
        assert torch.equal(state[k], v) and torch.equal(state[k].signbit(), v.signbit()), k
    assert all(m.training for m in model.modules())
    prune.synflow(model, batches, 0.9, iterations=3)  # the schedule changes the masks only
    for k, v in model.state_dict().items():
        if not k.endswith(".mask"):
            assert torch.equal(v, before[k]), k


@pytest.mark.parametrize("values, held", [
    ([0.0, 1.0, 5e3], True),
    ([0.0, 0.0], True),                   # every score zero (only bias paths carry R): nothing to lose
    ([0.0, 1e-31, 1.0], False),           # a nonzero score below 1e-30: float32 is losing it
    ([2e30, 1.0], False),
    ([float("inf"), 1.0], False),
    ([float("nan"), 1.0], False),
    ([1e-30, 1e30], True),
])
def test_the_float32_check(values, held):
    assert scores._held(torch.tensor(values, dtype=torch.float32), r=1.0) is held
    assert not scores._held(torch.tensor([1.0]), r=1e-31) and not scores._held(torch.tensor([1.0]), r=float("nan"))
