"""Unstructured masks: exact global top-k, zeros that stay zero under any optimizer, deterministic ties,
masks that only shrink; the CroPit and SynFlow schedules; bad input."""
import copy
import io

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from cropkit.core import prune, scores
from cropkit.core.layers import prunable_layers
from cropkit.tasks import models


def mlp():
    return models.build("mlp", (1, 40), 10, width=0.125, seed=0)


def cnn():
    return models.build("cnn", (1, 8, 8), 10, width=0.25, seed=0)


def data(shape=(1, 40), n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, *shape, generator=g), torch.randint(0, 10, (n,), generator=g))]


def n_weights(model):
    return sum(m.weight.numel() for _, m in prunable_layers(model))


def n_zero(model):
    return sum(int((m.weight == 0).sum()) for _, m in prunable_layers(model))


@pytest.mark.filterwarnings("ignore:layer .* would lose every weight")
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.98])
def test_exact_global_sparsity(sparsity):
    model = cnn()
    prune.unstructured(model, scores.magnitude(model), sparsity)
    assert n_zero(model) == round(sparsity * n_weights(model))
    assert sum(int((~m).sum()) for m in prune.masks(model).values()) == round(sparsity * n_weights(model))


def test_selection_is_global_top_k():
    model = mlp()
    s = scores.magnitude(model)
    prune.unstructured(model, s, 0.8)
    flat = torch.cat([v.flatten() for v in s.values()])
    kept = torch.cat([m.flatten() for m in prune.masks(model).values()])
    assert flat[kept].min() >= flat[~kept].max()


@pytest.mark.parametrize("optimizer", [
    lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-2),
    lambda p: torch.optim.SGD(p, lr=1e-1, momentum=0.9, weight_decay=1e-2),
])
def test_zeros_stay_zero_through_training(optimizer):
    model = cnn()
    opt = optimizer(model.parameters())  # created before pruning, as when EarlyCroP-U prunes mid-training
    x, y = data((1, 8, 8))[0]
    for step in range(25):
        if step == 5:  # a few dense steps first, so momentum / Adam state is non-zero at the pruned weights
            prune.unstructured(model, scores.magnitude(model), 0.9)
            pruned = {k: ~m for k, m in prune.masks(model).items()}
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    for name, module in prunable_layers(model):
        assert (module.weight[pruned[f"{name}.weight"]] == 0).all()
    assert n_zero(model) == round(0.9 * n_weights(model))


@pytest.mark.filterwarnings("ignore:layer .* would lose every weight")
def test_ties_break_deterministically_by_position():
    model = mlp()
    equal = {k: torch.ones_like(v) for k, v in scores.magnitude(model).items()}
    prune.unstructured(model, equal, 0.5)
    kept = torch.cat([m.flatten() for m in prune.masks(model).values()])
    # each layer's first weight is reserved (no layer may empty); then the earliest positions fill the budget
    sizes = [m.weight.numel() for _, m in prunable_layers(model)]
    expected = torch.zeros(sum(sizes), dtype=torch.bool)
    expected[torch.tensor([sum(sizes[:i]) for i in range(len(sizes))])] = True
    rest = torch.nonzero(~expected).flatten()[: int(kept.sum()) - len(sizes)]
    expected[rest] = True
    assert torch.equal(kept, expected)
    again = mlp()
    prune.unstructured(again, equal, 0.5)
    assert all(torch.equal(a, b) for a, b in zip(prune.masks(again).values(), prune.masks(model).values()))


def test_masks_only_shrink_and_targets_are_cumulative():
    model = cnn()
    prune.unstructured(model, scores.magnitude(model), 0.5)
    first = prune.masks(model)
    reverse = {k: -v for k, v in scores.random(model).items()}  # a ranking that disagrees with the first
    prune.unstructured(model, reverse, 0.7)
    second = prune.masks(model)
    assert all((second[k] <= first[k]).all() for k in first)
    assert n_zero(model) == round(0.7 * n_weights(model))
    prune.unstructured(model, scores.magnitude(model), 0.6)  # a lower target cannot revive weights
    assert all(torch.equal(prune.masks(model)[k], second[k]) for k in second)


def test_a_layer_never_loses_every_weight():
    model = mlp()
    s = scores.magnitude(model)
    s["3.weight"] = s["3.weight"] - 1e3  # the whole middle layer scores below everything else
    with pytest.warns(UserWarning, match="'3' would lose every weight"):
        prune.unstructured(model, s, 0.9)
    kept = prune.masks(model)["3.weight"]
    assert int(kept.sum()) == 1 and kept.flatten()[torch.argmax(s["3.weight"])]
    assert n_zero(model) == round(0.9 * n_weights(model))  # the reserve came out of the global budget


def test_make_permanent_saves_and_reloads_identically():
    model = cnn().eval()
    prune.unstructured(model, scores.random(model), 0.9)
    x = data((1, 8, 8))[0][0]
    before = model(x)
    prune.make_permanent(model)
    assert all(type(m.weight) is nn.Parameter for _, m in prunable_layers(model))
    assert n_zero(model) == round(0.9 * n_weights(model))
    buffer = io.BytesIO()
    torch.save(model, buffer)
    buffer.seek(0)
    torch.testing.assert_close(torch.load(buffer, weights_only=False)(x), before, rtol=0, atol=0)


def test_cropit_targets_follow_the_spec():
    assert prune.cropit_targets(0.9) == pytest.approx([0.5, 0.7, 0.8, 0.85, 0.875, 0.8875, 0.9])
    assert prune.cropit_targets(0.5)[:2] == pytest.approx([0.25, 0.375]) and prune.cropit_targets(0.5)[-1] == 0.5
    assert max(prune.cropit_targets(0.1)) == 0.1  # below the start: capped at p


def test_cropit_unstructured_reaches_the_exact_target():
    model = mlp()
    prune.cropit(model, data(), 0.9)
    assert n_zero(model) == round(0.9 * n_weights(model))


def test_synflow_schedule_reaches_the_exact_target():
    model = mlp()
    prune.synflow(model, data(), 0.9, iterations=5)
    assert n_zero(model) == round(0.9 * n_weights(model))


def test_bad_input_raises_value_error_saying_what_is_allowed():
    model = mlp()
    s = scores.magnitude(model)
    for bad in (1.0, -0.1, 1.5, "0.5", None):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            prune.unstructured(model, s, bad)
    with pytest.raises(ValueError, match="prunable weight"):
        prune.unstructured(model, {"1.weight": s["1.weight"]}, 0.5)
    with pytest.raises(ValueError, match="shape"):
        prune.unstructured(model, {**s, "1.weight": s["1.weight"].T}, 0.5)
    with pytest.raises(ValueError, match="Conv1d, Conv2d or Linear"):
        prune.unstructured(nn.Sequential(nn.ReLU()), {}, 0.5)
    with pytest.raises(ValueError, match="empty"):
        prune.cropit(model, [], 0.5)


def sorted_global_keep(ranked, sizes, n_keep):
    """The selection by a full stable sort (how `_global_keep` worked before it became a linear-time selection)."""
    order = torch.sort(ranked, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank[order] = torch.arange(order.numel())
    reserved = torch.zeros_like(ranked, dtype=torch.bool)
    emptied, start = [], 0
    for i, size in enumerate(sizes):
        best = start + int(torch.argmax(ranked[start:start + size]))
        reserved[best] = True
        if rank[best] >= n_keep:
            emptied.append(i)
        start += size
    rest = order[~reserved[order]]
    keep = reserved.clone()
    keep[rest[:max(n_keep - int(reserved.sum()), 0)]] = True
    return (keep & (ranked > -float("inf"))) | reserved, emptied


@pytest.mark.parametrize("seed", range(40))
def test_selection_equals_a_full_stable_sort(seed):
    """Ties (small integer scores), already-pruned entries (−inf), whole segments below the rest, every budget."""
    from cropkit.core.masks import _global_keep

    g = torch.Generator().manual_seed(seed)
    sizes = torch.randint(1, 30, (int(torch.randint(1, 6, (1,), generator=g)),), generator=g).tolist()
    ranked = torch.randint(0, 1 + seed % 7, (sum(sizes),), generator=g).double()
    ranked[torch.rand(sum(sizes), generator=g) < 0.3] = -float("inf")
    if seed % 3 == 0:
        ranked[: sizes[0]] -= 100  # the first segment scores below everything: it needs its reserve
    for n_keep in range(sum(sizes) + 1):
        keep, emptied = _global_keep(ranked.numpy(), sizes, n_keep)
        want, want_emptied = sorted_global_keep(ranked, sizes, n_keep)
        assert torch.equal(torch.from_numpy(keep), want) and emptied == want_emptied, (sizes, n_keep)


def test_making_a_deep_copy_permanent_leaves_the_original_masked():
    """torch keeps a parametrised weight on a class a deep copy shares with its original: making the copy permanent
    used to delete the original's weight (AttributeError on its next forward)."""
    model = models.build("mlp", (8,), 3, width=0.25, seed=0)
    prune.unstructured(model, scores.magnitude(model), 0.5)
    x = torch.randn(4, 8)
    before, kept = model(x), prune.masks(model)
    copy_ = prune.make_permanent(copy.deepcopy(model))
    assert not any(nn.utils.parametrize.is_parametrized(m) for m in copy_.modules())  # the copy: plain weights
    assert all(torch.equal(kept[k], m) for k, m in prune.masks(model).items())  # the original: still masked
    assert sum(not m.all() for m in kept.values()) == 3
    assert torch.equal(model(x), before) and torch.allclose(copy_(x), before)
